"""The built-in layers and shortcut kinds: their parameters, defaults and value types.

This table is the single place that says what `conv`, `bn`, ... accept; binding, `fmt` and the
docs read it. Variety lives here as data, not as code paths in the compiler.
"""
from __future__ import annotations

from dataclasses import dataclass

# Value types a parameter accepts (checked in elaborate.py).
INT, POS, NONNEG, PAIR, FLOAT, PROB, BOOL = "int", "pos", "nonneg", "pair", "float", "prob", "bool"


@dataclass(frozen=True)
class P:
    """One parameter of a layer: its name, type, and default (REQUIRED if it has none)."""

    name: str
    type: str
    default: object = None


REQUIRED = object()


@dataclass(frozen=True)
class LayerKind:
    name: str
    params: tuple[P, ...] = ()       # in positional order
    flags: tuple[str, ...] = ()      # BOOL params that may be written bare: `bn(zero_init)`
    doc: str = ""

    def param(self, name: str) -> P | None:
        return next((p for p in self.params if p.name == name), None)


LAYERS: dict[str, LayerKind] = {k.name: k for k in (
    LayerKind("conv", (P("out", POS, REQUIRED), P("kernel", PAIR, REQUIRED), P("stride", PAIR, 1),
                       P("padding", PAIR), P("groups", POS, 1), P("dilation", PAIR, 1),
                       P("bias", BOOL, False)),
              ("bias",), "2-d convolution"),
    LayerKind("bn", (P("zero_init", BOOL, False), P("eps", FLOAT, 1e-5), P("momentum", FLOAT, 0.1)),
              ("zero_init",), "batch normalisation; zero_init starts gamma at 0 on request"),
    LayerKind("relu", (), (), "rectified linear unit"),
    LayerKind("maxpool", (P("kernel", PAIR, REQUIRED), P("stride", PAIR), P("padding", PAIR),
                          P("ceil_mode", BOOL, False)),
              ("ceil_mode",), "max pooling; stride defaults to the kernel"),
    LayerKind("avgpool", (P("kernel", PAIR), P("stride", PAIR), P("padding", PAIR),
                          P("ceil_mode", BOOL, False), P("count_include_pad", BOOL, True)),
              ("ceil_mode",), "average pooling; without a kernel, global (to 1x1)"),
    LayerKind("fc", (P("out", POS, REQUIRED), P("bias", BOOL, True)), (),
              "fully connected; a Cx1x1 input is flattened first"),
    LayerKind("flatten", (), (), "flatten to one dimension per sample"),
    LayerKind("dropout", (P("p", PROB, 0.5),), (), "dropout with probability p"),
)}

# Windowed layers (conv, maxpool, avgpool with a kernel) pad by default (k - 1) // 2 * dilation
# on each side: k // 2 for the odd kernels of every ResNet ("same" size at stride 1), and no
# over-padding for even ones (ResNet-D's 2x2 average pool).

# Shortcut kinds: `shortcut KIND [flags]`. `projection(always)` is option C.
SHORTCUTS: dict[str, tuple[str, ...]] = {
    "identity": (),        # x itself; shapes must agree
    "pad": (),             # option A: subsample by the stride, zero-pad new channels
    "projection": ("always",),  # option B (C with `always`): 1x1 conv + bn where shapes differ
    "avgdown": (),         # ResNet-D: 2x2 avg-pool (when strided), then 1x1 conv + bn
    "none": (),            # plain network: no shortcut, no merge
}

MERGES = ("add",)
