"""Small torch helpers shared by test files (tests/ is not a package: import as `helpers`)."""
from __future__ import annotations

import torch
from torch import nn


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """BN statistics and affine parameters away from 0/1 (mean and bias in [-0.5, 0.5),
    variance and weight in [0.5, 1.5)), so that folding or fusing a BN is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.rand(c, generator=g) - 0.5)
