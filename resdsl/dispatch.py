"""Which implementation the fused ops run, decided in this one place: the choices, the
environment variable, and the rule for when resdsl's Triton kernels run.

`kernels=` (a network's or module's argument) or else $RESDSL_KERNELS picks one of KERNELS:
"auto" runs the Triton kernels on CUDA tensors where triton is installed and PyTorch ops
elsewhere, "triton" always runs the kernels (on CPU tensors only under TRITON_INTERPRET=1),
"torch" never does. No torch import here: the command line reads the choices too, and
resdsl/runtime.py (inlined with it by --standalone) reads the rule.
"""
from __future__ import annotations

import importlib.util
import os

KERNELS = ("auto", "triton", "torch")
ENV = "RESDSL_KERNELS"
# whether triton is installed, found without importing it (a plain module constant, which
# torch.compile reads without a graph break)
HAS_TRITON = importlib.util.find_spec("triton") is not None


def kernel_choice(kernels: str | None) -> str:
    """The choice asked for: `kernels`, else $RESDSL_KERNELS, else "auto"; checked."""
    choice = os.environ.get(ENV, "auto") if kernels is None else kernels
    if choice not in KERNELS:
        raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {choice!r}")
    return choice


def use_triton(choice: str, x) -> bool:
    """Whether a resolved choice runs the Triton kernels on tensor x."""
    return choice == "triton" or (choice == "auto" and x.is_cuda and HAS_TRITON)
