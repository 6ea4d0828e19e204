"""The pure-PyTorch pieces that emitted model files import (or inline with --standalone).

Everything here is plain nn.Module / function code with no dependency on the compiler, so a
generated file stays readable and runs with only torch installed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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


def projection(in_channels: int, out_channels: int, stride: int | tuple[int, int]) -> nn.Sequential:
    """Option B/C shortcut: 1x1 conv with the block's stride, then BN (torchvision's
    `downsample`)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                         nn.BatchNorm2d(out_channels))


def avg_down(in_channels: int, out_channels: int, stride: int | tuple[int, int]) -> nn.Sequential:
    """ResNet-D shortcut (timm `avg_down`): average-pool by the stride, then 1x1 conv + BN;
    the pool is an Identity at stride 1 so that parameter names stay `.1` and `.2`."""
    pool: nn.Module = nn.Identity()
    if stride not in (1, (1, 1)):
        pool = nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)
    return nn.Sequential(pool, nn.Conv2d(in_channels, out_channels, 1, bias=False),
                         nn.BatchNorm2d(out_channels))


def init_weights(model: nn.Module, zero_init_residual: bool = False) -> None:
    """torchvision's ResNet initialisation: Kaiming-normal (fan_out) convs, BN weight 1 and
    bias 0; with `zero_init_residual`, the BNs a block lists in `zero_init` start at 0.
    Modules built on the meta device have no values to set: they are left alone."""
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    if zero_init_residual:
        for m in model.modules():
            for name in getattr(m, "zero_init", ()):
                nn.init.constant_(m.get_submodule(name).weight, 0)
