"""Shape and cost inference: one pure function per op, mirroring the op's arguments.

Sizes follow PyTorch's formulas exactly (floor division, padding, dilation, ceil_mode).
Counting conventions (docs/ir.md): `macs` are multiply-accumulates of conv and fc only (what
torchvision's GFLOPS and the ResNet paper's FLOPs count); `elementwise` counts the other ops'
per-element work separately: bn 1 (a fused scale-shift), relu 1, add 1, pools one per window
element read. Parameters are weights, biases and BN's affine pair; BN's running mean, running
variance and num_batches_tracked are buffers.
"""
from __future__ import annotations

from math import prod
from typing import Any, Callable

from .errors import ShapeError

Shape = tuple[int, ...]


def _map(shape: Shape, op: str) -> Shape:
    if len(shape) != 3:
        raise ShapeError(f"`{op}` needs a CxHxW feature map, but its input is flat "
                         f"({'x'.join(map(str, shape))})",
                         hint=f"move `{op}` before the flatten / fc", code="E404")
    return shape


def _window(size: int, k: int, s: int, p: int, d: int, ceil: bool, what: str) -> int:
    """PyTorch's output size for one spatial dimension of a conv or pool (with ceil_mode a
    window may hang over the edge, as long as it starts inside the padded input)."""
    span = d * (k - 1) + 1
    num = size + 2 * p - span
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    if out < 1:
        raise ShapeError(f"{what}: input size {size} (padded {size + 2 * p}) is smaller than "
                         f"the kernel ({span})", hint="use a larger input or a smaller kernel "
                                                      "or stride earlier", code="E402")
    return out


def conv(a: dict[str, Any], shape: Shape) -> Shape:
    c, h, w = _map(shape, "conv")
    g = a["groups"]
    if c % g or a["out"] % g:
        bad = c if c % g else a["out"]
        which = "input" if c % g else "output"
        raise ShapeError(f"conv with groups={g}: {which} channels {bad} are not divisible by "
                         f"{g}", hint="make the channel count a multiple of groups",
                         code="E401")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["padding"], a["dilation"]
    return (a["out"], _window(h, kh, sh, ph, dh, False, "conv"),
            _window(w, kw, sw, pw, dw, False, "conv"))


def pool(op: str) -> Callable[[dict[str, Any], Shape], Shape]:
    def infer(a: dict[str, Any], shape: Shape) -> Shape:
        c, h, w = _map(shape, op)
        if a["kernel"] is None:
            return (c, 1, 1)
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        if ph * 2 > kh or pw * 2 > kw:
            raise ShapeError(f"{op}: padding {ph}x{pw} is more than half the kernel {kh}x{kw}",
                             hint="PyTorch allows padding up to kernel // 2", code="E403")
        ceil = a["ceil_mode"]
        return (c, _window(h, kh, sh, ph, 1, ceil, op), _window(w, kw, sw, pw, 1, ceil, op))
    return infer


def fc(a: dict[str, Any], shape: Shape) -> Shape:
    if len(shape) == 3 and shape[1:] != (1, 1):
        raise ShapeError(f"fc needs a flat input, but gets a {'x'.join(map(str, shape))} map",
                         hint="add `avgpool` (global) or `flatten` before `fc`", code="E405")
    return (a["out"],)


def pad(a: dict[str, Any], shape: Shape) -> Shape:
    c, h, w = _map(shape, "pad")
    s = a["stride"]
    return (c + a["pad_front"] + a["pad_back"], -(-h // s), -(-w // s))


SHAPES: dict[str, Callable[[dict[str, Any], Shape], Shape]] = {
    "conv": conv,
    "bn": lambda a, s: _map(s, "bn"),
    "relu": lambda a, s: s,
    "dropout": lambda a, s: s,
    "maxpool": pool("maxpool"),
    "avgpool": pool("avgpool"),
    "flatten": lambda a, s: (prod(s),),
    "fc": fc,
    "pad": pad,
    "output": lambda a, s: s,
}


def infer_shape(op: str, attrs: dict[str, Any], inputs: list[Shape]) -> Shape:
    """The output shape of one op; `add` checks its two operands agree."""
    if op == "add":
        a, b = inputs
        if a != b:
            raise ShapeError("cannot add tensors of different shapes", code="E406")
        return a
    return SHAPES[op](attrs, inputs[0])


def cost(op: str, a: dict[str, Any], inp: Shape, out: Shape) -> dict[str, int]:
    """Parameters, buffers, multiply-accumulates and element-wise work of one op."""
    p = b = macs = elem = 0
    n_out = prod(out)
    if op in ("conv", "conv_act"):
        kh, kw = a["kernel"]
        per_out = a["in_channels"] // a["groups"] * kh * kw
        p = a["out"] * per_out + (a["out"] if a["bias"] else 0)
        macs = n_out * per_out
        if op == "conv_act":  # its epilogue: the residual add and the relu
            elem = n_out * ((a["residual_at"] is not None) + a["relu"])
    elif op == "fc":
        p = a["in_features"] * a["out"] + (a["out"] if a["bias"] else 0)
        macs = a["in_features"] * a["out"]
    elif op == "bn":
        p, b, elem = 2 * inp[0], 2 * inp[0] + 1, n_out
    elif op in ("relu", "add"):
        elem = n_out
    elif op == "maxpool":
        kh, kw = a["kernel"]
        elem = n_out * kh * kw
    elif op == "avgpool":
        elem = prod(inp) if a["kernel"] is None else n_out * a["kernel"][0] * a["kernel"][1]
    return {"params": p, "buffers": b, "macs": macs, "elementwise": elem}
