"""Fused BatchNorm + optional residual add + optional ReLU (installed as resdsl.backends.bn_act).

Torch path only for now; the Triton kernels follow.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

KERNEL_CHOICES = ("auto", "triton", "torch")
RESIDUAL_POSITIONS = ("pre", "mid", "post")


def resolve_kernels(kernels: str | None) -> str:
    """The kernel choice: `kernels`, or $RESDSL_KERNELS when None, default "auto"."""
    choice = os.environ.get("RESDSL_KERNELS", "auto") if kernels is None else kernels
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"kernels must be one of {', '.join(KERNEL_CHOICES)}, got {choice!r}")
    return choice


def _act(y: torch.Tensor, relu: bool) -> torch.Tensor:
    return torch.relu(y) if relu else y


def bn_act_torch(x, weight, bias, running_mean, running_var, residual=None, *,
                 training: bool, momentum: float, eps: float, relu: bool,
                 residual_at: str = "mid") -> torch.Tensor:
    """The reference: F.batch_norm, add and relu composed (autograd by PyTorch)."""
    if residual is not None and residual_at == "pre":
        x = x + residual
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    if residual is None or residual_at == "pre":
        return _act(y, relu)
    if residual_at == "mid":
        return _act(y + residual, relu)
    return _act(y, relu) + residual


def bn_act(x, weight, bias, running_mean, running_var, residual=None, *,
           training: bool, momentum: float, eps: float, relu: bool,
           residual_at: str = "mid", kernels: str | None = None) -> torch.Tensor:
    """act(bn(x) [+ residual]) with the residual added before BN ("pre"), after BN ("mid") or
    after the activation ("post")."""
    if residual_at not in RESIDUAL_POSITIONS:
        raise ValueError(f"residual_at must be one of {RESIDUAL_POSITIONS}, got {residual_at!r}")
    choice = resolve_kernels(kernels)
    if choice == "triton":
        raise NotImplementedError("the Triton path of bn_act is not written yet")
    return bn_act_torch(x, weight, bias, running_mean, running_var, residual, training=training,
                        momentum=momentum, eps=eps, relu=relu, residual_at=residual_at)


def add_act(x, residual, *, relu: bool, kernels: str | None = None) -> torch.Tensor:
    """act(x + residual), for inference after BN folding."""
    choice = resolve_kernels(kernels)
    if choice == "triton":
        raise NotImplementedError("the Triton path of add_act is not written yet")
    return _act(x + residual, relu)
