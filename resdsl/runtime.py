"""The modules and functions that emitted model files import (or inline with --standalone),
and the one place that runs the fused ops: resdsl's Triton kernels (resdsl/kernels.py) or
their PyTorch fallback, as resdsl/dispatch.py decides.

Nothing here depends on the compiler, so a generated file stays readable and, standalone,
runs with only torch installed (and uses triton when it is there).
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from .dispatch import kernel_choice, use_triton
from .kernels import _RES_CODE, SyncBnActTriton, _update_running_stats, gather_moments
from .kernels import add_act_triton, bn_act_triton  # (one line each: --standalone drops them)


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
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """DropPath's function (timm drop_path), a leaf for torch.fx (its mask's shape is x's)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty([x.shape[0]] + [1] * (x.dim() - 1)).bernoulli_(keep)
    if keep > 0.0:
        mask.div_(keep)
    return x * mask


torch.fx.wrap("drop_path")


class ChannelConv(nn.Conv1d):
    """ECA's channel conv (timm EcaModule.conv): a 1-channel conv1d of kernel k along the C
    channels of an N x C x 1 x 1 descriptor, no bias; the weight is (1, 1, k) as timm's."""

    def __init__(self, kernel_size: int):
        super().__init__(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        return self._conv_forward(x.view(n, 1, -1), self.weight, self.bias).view(n, -1, 1, 1)


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
    ("auto": Triton on CUDA tensors, else PyTorch ops; "triton"; "torch"; None: $RESDSL_KERNELS).
    Synchronized across processes: SyncBatchNormAct2d; frozen: FrozenBatchNormAct2d."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, *,
                 relu: bool = False, residual_at: str | None = None, kernels: str | None = None,
                 **kwargs):
        super().__init__(num_features, eps, momentum, **kwargs)
        self.relu, self.residual_at, self.kernels = relu, residual_at, kernels

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_4d(x)
        factor = self._factor()
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return bn_act(x, self.weight, self.bias, self.running_mean if track else None,
                      self.running_var if track else None, residual, batch_stats, factor,
                      self.eps, self.relu, self._at(), self.kernels)

    def _factor(self) -> float:
        """The running statistics' update factor, counting the batch, exactly as
        nn.BatchNorm2d.forward does (momentum None: the cumulative average)."""
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else factor
        return factor

    def _at(self) -> str:
        return "mid" if self.residual_at is None else self.residual_at

    def extra_repr(self) -> str:
        at = f", residual_at={self.residual_at!r}" if self.residual_at else ""
        kernels = f", kernels={self.kernels!r}" if self.kernels else ""
        return f"{super().extra_repr()}, relu={self.relu}{at}{kernels}"


def bn_act(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
           running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
           residual: Optional[torch.Tensor] = None, training: bool = False,
           momentum: float = 0.1, eps: float = 1e-5, relu: bool = False,
           residual_at: str = "mid", kernels: Optional[str] = None) -> torch.Tensor:
    """act(bn(x) [+ residual]) by `kernels` (resdsl/dispatch.py): the Triton kernels
    (kernels.bn_act_triton) or PyTorch ops (bn_act_torch), with the same arguments.
    TorchScript, torch.jit.trace and ONNX export get the PyTorch ops; torch.fx records one
    call of this function (torch.fx.wrap below), whatever runs inside."""
    if residual_at != "pre" and residual_at != "mid" and residual_at != "post":  # RESIDUAL_AT
        raise ValueError(f"residual_at must be one of pre, mid, post, got {residual_at}")
    if torch.jit.is_scripting():
        return bn_act_torch(x, weight, bias, running_mean, running_var, residual, training,
                            momentum, eps, relu, residual_at)
    fn = bn_act_triton if _triton_here(x, kernels) else bn_act_torch
    return fn(x, weight, bias, running_mean, running_var, residual, training=training,
              momentum=momentum, eps=eps, relu=relu, residual_at=residual_at)


@torch.jit.unused
def _triton_here(x: torch.Tensor, kernels: Optional[str]) -> bool:
    """Whether the Triton kernels run on x: as `kernels` chooses, except under torch.jit.trace
    and the ONNX exporters, which record the PyTorch ops (torch.compile and torch.export keep
    the kernels' custom ops)."""
    return use_triton(kernel_choice(kernels), x) and not _tracing()


def _tracing() -> bool:
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def bn_act_torch(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                 running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
                 residual: Optional[torch.Tensor] = None, training: bool = False,
                 momentum: float = 0.1, eps: float = 1e-5, relu: bool = False,
                 residual_at: str = "mid") -> torch.Tensor:
    """The PyTorch fallback, and the reference the Triton kernels are tested against:
    F.batch_norm (batch statistics when training or without running ones), then `_epilogue`."""
    if residual is not None and residual_at == "pre":
        x = x + residual
    y = F.batch_norm(x, running_mean, running_var, weight, bias,
                     training or running_mean is None, momentum, eps)
    return _epilogue(y, residual, relu, residual_at)


def check_4d(x: torch.Tensor) -> None:
    """nn.BatchNorm2d's input check (and message), a leaf for torch.fx (it reads x.dim())."""
    if x.dim() != 4:
        raise ValueError(f"expected 4D input (got {x.dim()}D input)")


torch.fx.wrap("bn_act")
torch.fx.wrap("check_4d")


def add_act(x: torch.Tensor, residual: torch.Tensor, *, relu: bool,
            kernels: str | None = None) -> torch.Tensor:
    """act(x + residual) by `kernels`: the Triton kernel, which has no backward, where it is
    chosen and no gradient is needed; else PyTorch ops (`_epilogue` of the sum)."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or residual.requires_grad)
    if not needs_grad and use_triton(kernel_choice(kernels), x):
        return add_act_triton(x, residual, relu=relu)
    return _epilogue(x + residual, None, relu, None)


def _epilogue(y: torch.Tensor, residual: Optional[torch.Tensor], relu: bool,
              residual_at: Optional[str]) -> torch.Tensor:
    """The residual add ("mid": before the ReLU, "post": after it) and the ReLU on a fresh
    output y: in place where no backward reads y (a BN's or conv's backward reads its input),
    as torchvision does; the add after a ReLU makes a new tensor (the ReLU's backward reads
    its output)."""
    at = "" if residual_at is None else residual_at
    if residual is not None and at == "mid":
        y += residual
    if relu:
        y = torch.relu_(y)
    if residual is not None and at == "post":
        y = y + residual
    return y


def projection(in_channels: int, out_channels: int, stride: int | tuple[int, int],
               bn: bool = True) -> nn.Sequential:
    """Option B/C shortcut: 1x1 conv with the block's stride, then BN (torchvision's
    `downsample`); without `bn` (folded into the conv for inference) the conv has a bias and
    is a Conv2dAct without activation, as every conv of an inference network is."""
    conv = _shortcut_conv(in_channels, out_channels, stride, bn)
    return FusedSequential(conv, nn.BatchNorm2d(out_channels)) if bn else FusedSequential(conv)


def avg_down(in_channels: int, out_channels: int, stride: int | tuple[int, int],
             bn: bool = True) -> nn.Sequential:
    """ResNet-D shortcut (timm `avg_down`): average-pool by the stride, then 1x1 conv + BN;
    the pool is an Identity at stride 1 so that parameter names stay `.1` and `.2`; without
    `bn` (folded for inference) the conv is a Conv2dAct with a bias, as in `projection`."""
    pool: nn.Module = nn.Identity()
    if stride not in (1, (1, 1)):
        pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
    conv = _shortcut_conv(in_channels, out_channels, 1, bn)
    return FusedSequential(pool, conv, nn.BatchNorm2d(out_channels)) if bn else \
        FusedSequential(pool, conv)


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
        """Whether the oneDNN post-op path applies; compiling, scripting and tracing are asked
        first, so that tracers never reach what they cannot trace (mkldnn.is_available)."""
        return (not torch.compiler.is_compiling() and not torch.jit.is_scripting()
                and not _tracing() and x.device.type == "cpu" and x.dtype == torch.float32 and choice != "triton"
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


# ---- across processes, frozen, and under torch's own converters ----------------------------

class SyncBatchNormAct2d(BatchNormAct2d):
    """BatchNormAct2d whose training statistics are those of the whole batch over the processes
    of `process_group` (None: the default group), any backend (gloo on CPU too), batches of
    any size per rank: each rank's (count, mean, M2) are gathered and merged by Chan's formula,
    and the backward all-reduces the two per-channel sums. Outside training, or without an
    initialised group of more than one process, it is BatchNormAct2d."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, *,
                 process_group=None, **kwargs):
        super().__init__(num_features, eps, momentum, **kwargs)
        self.process_group = process_group

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not (self.training and _world_size(self.process_group) > 1):
            return super().forward(x, residual)
        check_4d(x)
        factor = self._factor()
        stats = (self.running_mean, self.running_var) if self.track_running_stats else (None,) * 2
        return sync_bn_act(x, self.weight, self.bias, *stats, residual, factor, self.eps,
                           self.relu, self._at(), self.process_group, self.kernels)


def _world_size(group) -> int:
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def sync_bn_act(x, weight, bias, running_mean, running_var, residual, momentum: float,
                eps: float, relu: bool, residual_at: str, process_group=None,
                kernels: str | None = None) -> torch.Tensor:
    """bn_act with the statistics of the batch over every process of the group (training):
    the Triton kernels around the collectives where `kernels` chooses them (CUDA), else
    PyTorch ops (any device and backend: gloo on CPU)."""
    if _triton_here(x, kernels):
        res = _RES_CODE[residual_at if residual is not None else None]
        return SyncBnActTriton.apply(x, weight, bias, running_mean, running_var, residual,
                                     momentum, eps, relu, res, process_group)
    if residual is not None and residual_at == "pre":
        x = x + residual
    y = _SyncBatchNorm.apply(x, weight, bias, running_mean, running_var, momentum, eps,
                             process_group)
    return _epilogue(y, residual, relu, residual_at if residual is not None else None)


torch.fx.wrap("sync_bn_act")


class _SyncBatchNorm(torch.autograd.Function):
    """Batch norm (affine, no activation) over the union of every rank's batch; one all_gather
    of (count, mean, M2) forward, one all_reduce of (sum dy, sum dy * xhat) backward. The
    weight's and bias' grads are this rank's sums (DDP averages them, as for any parameter)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, group):
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        xa, c = x.to(acc), x.shape[1]
        local = x.new_zeros((3, c), dtype=torch.float64)  # the merge in float64: it is tiny
        if x.numel():
            var, mean = torch.var_mean(xa, dim=(0, 2, 3), unbiased=False)
            count = x.numel() // c
            local = torch.stack([torch.full_like(mean, count), mean, var * count]).double()
        n, mean, m2 = gather_moments(local, group)
        total = int(n[0].item()) if c else 0
        if total <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got "
                             f"{total} over all processes")
        if running_mean is not None:
            _update_running_stats(running_mean, running_var, mean, m2 / total, total, momentum)
        mean, invstd = mean.to(acc), torch.rsqrt(m2 / total + eps).to(acc)
        y = _affine((xa - mean[:, None, None]) * invstd[:, None, None], weight, bias)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.group, ctx.total = group, total
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        import torch.distributed as dist
        x, weight, mean, invstd = ctx.saved_tensors
        acc = mean.dtype
        xhat = (x.to(acc) - mean[:, None, None]) * invstd[:, None, None]
        dy = dy.to(acc)
        local = torch.stack([dy.sum((0, 2, 3)), (dy * xhat).sum((0, 2, 3))])
        sums = local.clone()
        dist.all_reduce(sums, group=ctx.group)
        scale = invstd if weight is None else invstd * weight.to(acc)
        dx = (dy - (sums[0] / ctx.total)[:, None, None]
              - xhat * (sums[1] / ctx.total)[:, None, None]) * scale[:, None, None]
        dw = local[1].to(weight.dtype) if weight is not None else None
        db = local[0].to(ctx.bias_dtype) if ctx.bias_dtype is not None else None
        return dx.to(x.dtype), dw, db, None, None, None, None, None


def _affine(xhat: torch.Tensor, weight, bias) -> torch.Tensor:
    if weight is not None:
        xhat = xhat * weight.to(xhat.dtype)[:, None, None]
    if bias is not None:
        xhat = xhat + bias.to(xhat.dtype)[:, None, None]
    return xhat


class FrozenBatchNormAct2d(nn.Module):
    """BatchNormAct2d with fixed statistics and affine (torchvision's FrozenBatchNorm2d: the four
    are buffers, so nothing trains and every mode uses the running statistics), keeping the
    fused ReLU and residual add. Loads a BN's state_dict (num_batches_tracked is dropped)."""

    def __init__(self, num_features: int, eps: float = 1e-5, *, relu: bool = False,
                 residual_at: str | None = None, kernels: str | None = None):
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.relu, self.residual_at, self.kernels = relu, residual_at, kernels
        for name, fill in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0),
                           ("running_var", 1.0)):
            self.register_buffer(name, torch.full((num_features,), fill))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        check_4d(x)
        return bn_act(x, self.weight, self.bias, self.running_mean, self.running_var, residual,
                      False, 0.0, self.eps, self.relu,
                      "mid" if self.residual_at is None else self.residual_at, self.kernels)

    def extra_repr(self) -> str:
        at = f", residual_at={self.residual_at!r}" if self.residual_at else ""
        return f"{self.num_features}, eps={self.eps}, relu={self.relu}{at}"


def _fused_like(old: nn.Module) -> dict:
    """The fused epilogue of a BN (relu, residual_at, kernels), to carry over to its
    replacement; a plain BN's is none."""
    return {k: getattr(old, k, d) for k, d in (("relu", False), ("residual_at", None),
                                                ("kernels", None))}


def _to_sync(bn: nn.Module, like: nn.Module, process_group=None) -> SyncBatchNormAct2d:
    """A SyncBatchNormAct2d sharing `bn`'s parameters and buffers, with `like`'s epilogue."""
    new = SyncBatchNormAct2d(bn.num_features, bn.eps, bn.momentum, affine=bn.affine,
                             track_running_stats=bn.track_running_stats,
                             process_group=process_group, device="meta", **_fused_like(like))
    for name in ("weight", "bias"):
        setattr(new, name, getattr(bn, name))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        new._buffers[name] = bn._buffers.get(name)
    new.train(bn.training)
    return new


def _to_frozen(bn: nn.Module, like: nn.Module) -> FrozenBatchNormAct2d:
    """A FrozenBatchNormAct2d holding `bn`'s statistics and affine (copies, detached), with
    `like`'s epilogue."""
    ref = bn.running_mean if bn.running_mean is not None else bn.weight
    new = FrozenBatchNormAct2d(bn.num_features, bn.eps, **_fused_like(like)).to(ref.device)
    with torch.no_grad():
        for name in ("weight", "bias", "running_mean", "running_var"):
            value = getattr(bn, name)
            if value is not None:
                getattr(new, name).copy_(value.detach())
    return new


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """`module` with every 2-D BN (resdsl's fused ones, nn.BatchNorm2d, nn.SyncBatchNorm) a
    SyncBatchNormAct2d over `process_group` that keeps its ReLU and residual add; in place
    below the top, as nn.SyncBatchNorm.convert_sync_batchnorm (the result is returned)."""
    return _replace_norms(module, lambda bn: _to_sync(bn, bn, process_group))


def freeze_batch_norm(module: nn.Module) -> nn.Module:
    """`module` with every 2-D BN a FrozenBatchNormAct2d of its current statistics and
    affine, fusion kept (as timm's freeze_batch_norm_2d, for detection backbones)."""
    return _replace_norms(module, lambda bn: _to_frozen(bn, bn))


def _replace_norms(module: nn.Module, make) -> nn.Module:
    """`module` with `make(bn)` in place of every 2-D BN below it (or instead of it)."""
    if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
        return make(module)
    for name, child in module.named_children():
        module.add_module(name, _replace_norms(child, make))
    return module


def _fused(m: nn.Module | None) -> bool:
    return isinstance(m, (BatchNormAct2d, FrozenBatchNormAct2d)) and bool(
        m.relu or m.residual_at)


def _frozen_bn(m: nn.Module) -> bool:
    """A frozen BN of torchvision's or timm's kind: its four statistics as buffers."""
    return "Frozen" in type(m).__name__ and all(
        k in m._buffers for k in ("weight", "bias", "running_mean", "running_var"))


def _adopt(old: nn.Module | None, new):
    """What a generated module keeps when `new` replaces its child `old`: where `old` is a BN
    and `new` is torch's SyncBatchNorm or a frozen BN (what torch's and timm's converters put
    there), resdsl's equivalent with old's fused ReLU and residual add (and, synchronized, on
    any backend); any other replacement of a BN that applies those would silently drop
    them, and is an error."""
    if not isinstance(old, nn.BatchNorm2d) or new is old or isinstance(
            new, (BatchNormAct2d, FrozenBatchNormAct2d)):
        return new
    if isinstance(new, nn.SyncBatchNorm):
        return _to_sync(new, old, new.process_group)
    if _frozen_bn(new):
        return _to_frozen(new, old)
    if not _fused(old):
        return new
    what = " and ".join(x for x in (["the ReLU"] if old.relu else [])
                        + ([f"the residual add ({old.residual_at})"] if old.residual_at else []))
    raise TypeError(
        f"this {type(old).__name__} also applies {what} after it; a {type(new).__name__} in "
        "its place would drop that. Use resdsl.convert_sync_batchnorm(model) or "
        "resdsl.freeze_batch_norm(model), or build with fuse=False (resdsl compile --no-fuse) "
        "to replace norms freely")


class FusedModule(nn.Module):
    """The base of every generated block and network class. A fused BN child that torch's or
    timm's converters replace keeps its ReLU and residual add (`_adopt`); and the classes that
    resdsl.build executes (no module file to import) pickle with their source."""

    def add_module(self, name: str, module: nn.Module | None) -> None:
        super().add_module(name, _adopt(self._modules.get(name), module))

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, nn.Module) and "_modules" in self.__dict__:
            value = _adopt(self._modules.get(name), value)
        super().__setattr__(name, value)

    def __reduce_ex__(self, protocol):
        source = type(self).__dict__.get("_resdsl_source")
        if source is None:
            return super().__reduce_ex__(protocol)
        return rebuild_generated, (*source, type(self).__qualname__), self.__getstate__()


class FusedSequential(FusedModule, nn.Sequential):
    """nn.Sequential with FusedModule's adoption: a spec's dotted labels (`conv1.0`), and
    the projection and avg_down shortcuts."""


GENERATED_MODULE = "resdsl_generated"


@functools.lru_cache(maxsize=64)
def load_generated(source: str, filename: str) -> dict:
    """The namespace of generated model source (resdsl.build's, or a pickled model's) executed
    once per process and text; its classes remember the source to pickle with. linecache
    holds the text under `filename` and the text's digest (two texts of one network, with
    and without features, are two files: TorchScript and tracebacks read lines there) while
    a class of it lives: a loop building thousands of networks keeps the lines of those
    still in use, and of the last 64 texts."""
    import hashlib
    import linecache
    import weakref

    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    name = f"{filename[:-1]} {digest}>" if filename.endswith(">") else f"{filename} {digest}"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    namespace: dict = {"__name__": GENERATED_MODULE}
    exec(compile(source, name, "exec"), namespace)  # noqa: S102 - resdsl's own output
    classes = [value for value in namespace.values()
               if isinstance(value, type) and value.__module__ == GENERATED_MODULE]
    for cls in classes:
        cls._resdsl_source = (source, filename)
    # each class's methods hold the namespace, which holds every class: one lives as they do
    _LINES_USED[name] = _LINES_USED.get(name, 0) + 1
    weakref.finalize(classes[0], _lines_unused, name)
    return namespace


_LINES_USED: dict[str, int] = {}   # a generated text's linecache name -> its namespaces alive


def _lines_unused(name: str) -> None:
    import linecache

    _LINES_USED[name] -= 1
    if not _LINES_USED[name]:
        del _LINES_USED[name]
        linecache.cache.pop(name, None)


def rebuild_generated(source: str, filename: str, qualname: str) -> nn.Module:
    """An empty instance of a generated class, for pickle to fill in (see FusedModule)."""
    cls = load_generated(source, filename)[qualname]
    return cls.__new__(cls)
