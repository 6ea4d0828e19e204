"""The modules and functions that emitted model files import (or inline with --standalone),
and the one place that runs the fused ops: resdsl's Triton kernels (resdsl/kernels.py) or
their PyTorch fallback, as resdsl/dispatch.py decides.

Nothing here depends on the compiler, so a generated file stays readable and, standalone,
runs with only torch installed (and uses triton when it is there).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .dispatch import kernel_choice, use_triton
from .kernels import add_act_triton, bn_act_triton


class PadShortcut(nn.Module):
    """Option A shortcut (He et al. 2015, CIFAR nets): subsample by the stride and add zero
    channels, `front` before and `back` after the input's; no parameters."""

    def __init__(self, stride: int, front: int, back: int):
        super().__init__()
        self.stride, self.front, self.back = stride, front, back

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.front, self.back))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, front={self.front}, back={self.back}"


class DropPath(nn.Module):
    """Stochastic depth per sample (timm DropPath): in training each sample's input is zeroed
    with probability `p` and the rest scaled by 1 / (1 - p); in eval, the identity."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        if keep > 0.0:
            mask.div_(keep)
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ChannelConv(nn.Conv1d):
    """ECA's channel conv (timm EcaModule.conv): a 1-channel conv1d of kernel k along the C
    channels of an N x C x 1 x 1 descriptor, no bias; the weight is (1, 1, k) as timm's."""

    def __init__(self, kernel_size: int):
        super().__init__(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return super().forward(x.view(n, 1, -1)).view(n, -1, 1, 1)


class BlurPool2d(nn.Module):
    """Anti-aliased downsampling (Zhang 2019; timm BlurPool2d): reflect-pad, then blur each
    channel with a fixed binomial filt_size x filt_size filter at the stride. The filter is a
    buffer left out of the state_dict, as timm's."""

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2):
        super().__init__()
        self.channels, self.filt_size, self.stride = channels, filt_size, stride
        self.padding = [((stride - 1) + (filt_size - 1)) // 2] * 4
        self.register_buffer("filt", torch.empty(channels, 1, filt_size, filt_size),
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.filt.is_meta:
            return
        from math import comb
        coeffs = torch.tensor([comb(self.filt_size - 1, k) for k in range(self.filt_size)],
                              dtype=torch.float32) / 2 ** (self.filt_size - 1)
        blur = (coeffs[:, None] * coeffs[None, :])[None, None]
        with torch.no_grad():
            self.filt.copy_(blur.repeat(self.channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.padding, mode="reflect")
        return F.conv2d(x, self.filt, stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"{self.channels}, filt_size={self.filt_size}, stride={self.stride}"


RESIDUAL_AT = ("pre", "mid", "post")


class BatchNormAct2d(nn.BatchNorm2d):
    """nn.BatchNorm2d fused with the ReLU and residual add around it (timm's BatchNormAct2d):
    the same parameters and buffers, so weights load unchanged. Public attributes:
    `relu` (apply ReLU), `residual_at` (where forward's `residual` goes: "pre" relu(bn(x + r)),
    "mid" relu(bn(x) + r), "post" relu(bn(x)) + r; None: no residual) and `kernels`
    ("auto": Triton on CUDA tensors, else PyTorch ops; "triton"; "torch"; None: $RESDSL_KERNELS)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, *,
                 relu: bool = False, residual_at: str | None = None, kernels: str | None = None,
                 **kwargs):
        super().__init__(num_features, eps, momentum, **kwargs)
        self.relu, self.residual_at, self.kernels = relu, residual_at, kernels

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        self._check_input_dim(x)
        # the momentum factor and batch-statistics choice exactly as nn.BatchNorm2d.forward
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else factor
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return bn_act(x, self.weight, self.bias, self.running_mean if track else None,
                      self.running_var if track else None, residual, training=batch_stats,
                      momentum=factor, eps=self.eps, relu=self.relu,
                      residual_at=self.residual_at or "mid", kernels=self.kernels)

    def extra_repr(self) -> str:
        at = f", residual_at={self.residual_at!r}" if self.residual_at else ""
        kernels = f", kernels={self.kernels!r}" if self.kernels else ""
        return f"{super().extra_repr()}, relu={self.relu}{at}{kernels}"


def bn_act(x, weight, bias, running_mean, running_var, residual=None, *, training: bool,
           momentum: float, eps: float, relu: bool, residual_at: str = "mid",
           kernels: str | None = None) -> torch.Tensor:
    """act(bn(x) [+ residual]) by `kernels` (resdsl/dispatch.py): the Triton kernels
    (kernels.bn_act_triton) or PyTorch ops (bn_act_torch), with the same arguments."""
    if residual_at not in RESIDUAL_AT:
        raise ValueError(f"residual_at must be one of {RESIDUAL_AT}, got {residual_at!r}")
    fn = bn_act_triton if use_triton(kernel_choice(kernels), x) else bn_act_torch
    return fn(x, weight, bias, running_mean, running_var, residual, training=training,
              momentum=momentum, eps=eps, relu=relu, residual_at=residual_at)


def bn_act_torch(x, weight, bias, running_mean, running_var, residual=None, *, training: bool,
                 momentum: float, eps: float, relu: bool, residual_at: str = "mid") -> torch.Tensor:
    """The PyTorch fallback, and the reference the Triton kernels are tested against:
    F.batch_norm (batch statistics when training or without running ones), then `_epilogue`."""
    if residual is not None and residual_at == "pre":
        x = x + residual
    y = F.batch_norm(x, running_mean, running_var, weight, bias,
                     training or running_mean is None, momentum, eps)
    return _epilogue(y, residual, relu, residual_at)


def add_act(x: torch.Tensor, residual: torch.Tensor, *, relu: bool,
            kernels: str | None = None) -> torch.Tensor:
    """act(x + residual) by `kernels`: the Triton kernel, which has no backward, where it is
    chosen and no gradient is needed; else PyTorch ops (`_epilogue` of the sum)."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or residual.requires_grad)
    if not needs_grad and use_triton(kernel_choice(kernels), x):
        return add_act_triton(x, residual, relu=relu)
    return _epilogue(x + residual, None, relu, None)


def _epilogue(y: torch.Tensor, residual: torch.Tensor | None, relu: bool,
              residual_at: str | None) -> torch.Tensor:
    """The residual add ("mid": before the ReLU, "post": after it) and the ReLU on a fresh
    output y: in place where no backward reads y (a BN's or conv's backward reads its input),
    as torchvision does; the add after a ReLU makes a new tensor (the ReLU's backward reads
    its output)."""
    if residual is not None and residual_at == "mid":
        y += residual
    if relu:
        y = torch.relu_(y)
    if residual is not None and residual_at == "post":
        y = y + residual
    return y


def projection(in_channels: int, out_channels: int, stride: int | tuple[int, int],
               bn: bool = True) -> nn.Sequential:
    """Option B/C shortcut: 1x1 conv with the block's stride, then BN (torchvision's
    `downsample`); without `bn` (folded into the conv for inference) the conv has a bias and
    is a Conv2dAct without activation, as every conv of an inference network is."""
    conv = _shortcut_conv(in_channels, out_channels, stride, bn)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if bn else nn.Sequential(conv)


def avg_down(in_channels: int, out_channels: int, stride: int | tuple[int, int],
             bn: bool = True) -> nn.Sequential:
    """ResNet-D shortcut (timm `avg_down`): average-pool by the stride, then 1x1 conv + BN;
    the pool is an Identity at stride 1 so that parameter names stay `.1` and `.2`; without
    `bn` (folded for inference) the conv is a Conv2dAct with a bias, as in `projection`."""
    pool: nn.Module = nn.Identity()
    if stride not in (1, (1, 1)):
        pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
    conv = _shortcut_conv(in_channels, out_channels, 1, bn)
    return nn.Sequential(pool, conv, nn.BatchNorm2d(out_channels)) if bn else \
        nn.Sequential(pool, conv)


def _shortcut_conv(in_channels: int, out_channels: int, stride: int | tuple[int, int],
                   bn: bool) -> nn.Conv2d:
    """A shortcut's 1x1 conv: without bias before its BN; with the BN folded in (inference),
    a Conv2dAct with a bias and no activation."""
    if bn:
        return nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
    return Conv2dAct(in_channels, out_channels, 1, stride, bias=True, relu=False)


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal (fan_out) convs, BN / GN weight 1
    and bias 0; with `zero_init_residual`, the norms a block lists in `zero_init` start at 0.
    Norms without affine parameters have none to set, and modules built on the meta device no
    values: they are left alone."""
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    if zero_init_residual:
        for m in model.modules():
            for name in getattr(m, "zero_init", ()):
                if m.get_submodule(name).weight is not None:
                    nn.init.constant_(m.get_submodule(name).weight, 0)


class Conv2dAct(nn.Conv2d):
    """A conv of an inference network (resdsl.fold), with the fused epilogue of the BN folded
    into it if any: ReLU and the residual add in their order, relu(conv(x) + r) at "mid",
    relu(conv(x)) + r at "post". Without autograd on CPU in float32, one oneDNN convolution with the add and ReLU
    as post-ops and its weight kept in oneDNN's blocked layout (what inductor emits for the
    same pattern when it freezes weights); elsewhere the conv, then the epilogue in place on
    its fresh output (the Triton add_act kernel on CUDA)."""

    def __init__(self, *args, relu: bool = True, residual_at: str | None = None,
                 kernels: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.relu, self.residual_at, self.kernels = relu, residual_at, kernels
        self._packed: tuple | None = None  # (key, the weight in oneDNN's layout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        choice = kernel_choice(self.kernels)
        if self._onednn(x, choice):
            return self._fused(x, residual)
        y = super().forward(x)
        if self.residual_at == "mid":
            return add_act(y, residual, relu=self.relu, kernels=choice)
        return _epilogue(y, residual, self.relu, self.residual_at)

    def _onednn(self, x: torch.Tensor, choice: str) -> bool:
        """Whether the oneDNN post-op path applies; compiling and scripting are asked first,
        so that tracers never reach what they cannot trace (mkldnn.is_available)."""
        return (not torch.compiler.is_compiling() and not torch.jit.is_scripting()
                and x.device.type == "cpu" and x.dtype == torch.float32 and choice != "triton"
                and self.residual_at != "post" and self.padding_mode == "zeros"
                and not isinstance(self.padding, str) and not torch.is_grad_enabled()
                and torch.backends.mkldnn.is_available())

    def _fused(self, x: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        act = "relu" if self.relu else "none"
        args = (self._packed_weight(x), self.bias, self.padding, self.stride, self.dilation,
                self.groups)
        op = torch.ops.mkldnn._convolution_pointwise
        if residual is None:
            return op(x, *args, act, [], "")
        return op.binary(x, residual, *args, "add", 1.0, "relu" if self.relu else None, [], "")

    def _packed_weight(self, x: torch.Tensor) -> torch.Tensor:
        """The weight reordered once into the layout oneDNN's kernel for x's shape reads (not
        at every call, as a plain weight is); redone when the weight or the shape changes.
        It costs a second copy of the weight. An inference tensor has no version to watch."""
        w = self.weight
        if w.is_inference():
            return w
        key = (w.data_ptr(), w._version, tuple(x.shape))
        if self._packed is None or self._packed[0] != key:
            packed = torch.ops.mkldnn._reorder_convolution_weight(
                w.detach(), self.padding, self.stride, self.dilation, self.groups, x.shape)
            self._packed = (key, packed)
        return self._packed[1]

    def __getstate__(self) -> dict:
        """Without the packed weight: oneDNN's opaque tensors cannot be copied or saved."""
        return {**super().__getstate__(), "_packed": None}

    def extra_repr(self) -> str:
        at = f", residual_at={self.residual_at!r}" if self.residual_at else ""
        return f"{super().extra_repr()}, relu={self.relu}{at}"


def fold_conv_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn_weight: torch.Tensor,
                 bn_bias: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of one conv equal to conv -> eval-mode BN (computed in float64):
    w * s and (b - mean) * s + beta, with s = gamma / sqrt(var + eps) per output channel."""
    f64 = torch.float64
    s = bn_weight.to(f64) * torch.rsqrt(var.to(f64) + eps)
    w = weight.to(f64) * s.reshape(-1, *[1] * (weight.dim() - 1))
    b = (0 if bias is None else bias.to(f64)) - mean.to(f64)
    return w.to(weight.dtype), (b * s + bn_bias.to(f64)).to(weight.dtype)


def fold_state_dict(state: dict[str, torch.Tensor],
                    folded: dict[str, tuple[str, float]]) -> dict[str, torch.Tensor]:
    """A training-layout state_dict (each BN apart) in the folded layout: for every
    {conv: (bn, eps)}, the conv gets the BN's effect as weight and bias and the BN's entries
    go (pairs whose conv is absent are skipped). Everything else is passed through."""
    out = dict(state)
    for conv, (bn, eps) in folded.items():
        if f"{conv}.weight" not in out:
            continue  # a network cut short after its last requested feature
        stats = [out.pop(f"{bn}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        out.pop(f"{bn}.num_batches_tracked", None)
        out[f"{conv}.weight"], out[f"{conv}.bias"] = fold_conv_bn(
            out[f"{conv}.weight"], out.get(f"{conv}.bias"), *stats, eps)
    return out
