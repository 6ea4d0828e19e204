"""The op table: every op of the graph IR, defined once.

One `Op` record holds everything the compiler knows about an op: the parameters a spec writes
(types, defaults, bare flags), the attributes the IR adds, its inputs, its shape and cost rules
(pure functions of the attributes and input shapes, as pycls's `complexity` mirrors constructor
arguments), its stride, how it lowers to PyTorch, how `resdsl draw` shows it, and its part in
the passes. Binding, checking, shape inference, the backends and docs/ir.md all read this
table; adding a layer type is adding one record here. The passes (fuse.py, fold.py) match the
ops they rewrite by name.

Sizes follow PyTorch's formulas exactly (floor division, padding, dilation, ceil_mode).
Counting conventions: `macs` are multiply-accumulates of conv and fc only (what torchvision's
GFLOPS and the ResNet paper's FLOPs count); `elementwise` counts the other ops' per-element work
apart: a normalisation 1 (a fused scale-shift), relu 1, add 1, pools one per window element
read. Parameters are weights, biases and a norm's affine pair; BN's running mean, running
variance and num_batches_tracked are buffers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from math import prod
from typing import Any, Callable, Protocol

from .errors import ShapeError

Shape = tuple[int, ...]
Attrs = dict[str, Any]
COUNTS = ("params", "buffers", "macs", "elementwise")

# Value types a parameter accepts (checked in elaborate.py).
INT, POS, NONNEG, PAIR, FLOAT, PROB, BOOL = "int", "pos", "nonneg", "pair", "float", "prob", "bool"
REQUIRED = object()   # the default of a parameter a spec must give


@dataclass(frozen=True)
class P:
    """One attribute of an op: name, value type, default (REQUIRED: none; None: derived from
    the others by the op's `fill`, or absent), whether a spec may write it bare as a flag
    (`bn(zero_init)`), and for attributes the passes set, the values allowed."""

    name: str
    type: str
    default: object = None
    flag: bool = False
    choices: tuple | None = None    # the values it may take, where they are few


class Lowering(Protocol):
    """What an op's `torch` function is given by the PyTorch backend (backends/pytorch.py)."""

    a: Attrs             # the node's attributes
    shape: Shape         # its output shape
    inference: bool      # an inference network (resdsl/fold.py): convs are runtime.Conv2dAct
    inplace: bool        # nothing else reads the node's input, so it may be overwritten

    def slot(self, name: str, value: Any) -> str:
        """A number a shared block class may take as a constructor parameter."""

    def optional(self, keyword: str, default: Any) -> None:
        """`keyword=` (the attribute of that name) where `{OPTIONAL}` stands, written where it
        differs from PyTorch's default or is a parameter of the class."""

    def lit(self, value: Any) -> str:
        """A literal."""

    def changed(self, *names: str) -> str:
        """`, name=value` for each of these attributes that is off the op's own default."""

    def runtime(self, name: str, kernels: bool = False) -> str:
        """A class of resdsl.runtime, which the emitted file then imports; `kernels`: it takes
        the network's kernel choice."""


@dataclass(frozen=True)
class Look:
    """How `resdsl draw` shows an op: fill and border colours, its paper-style text
    (`text(attrs, table)`; None: the op's name), shown at the stage and block levels (`heavy`),
    drawn as a `+`-style junction."""

    fill: str
    border: str
    text: Callable[[Attrs, bool], str] | None = None
    heavy: bool = False
    junction: bool = False


MANY = 2 ** 31   # no limit on a merge's inputs


def _counts(params: int = 0, buffers: int = 0, macs: int = 0, elementwise: int = 0) -> dict[str, int]:
    return {"params": params, "buffers": buffers, "macs": macs, "elementwise": elementwise}


def free(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """Nothing."""
    return _counts()


def _one(n: int = 1) -> Callable[[Attrs], range]:
    return lambda a: range(n, n + 1)


@dataclass(frozen=True)
class Op:
    """One IR op. `kind`: io (input, output), layer (written in a spec), merge (`merge NAME`,
    two or more inputs), shortcut (made by a `shortcut` kind), fused (made by a pass)."""

    name: str
    doc: str
    kind: str
    shape: Callable[[Attrs, list[Shape]], Shape]
    look: Look
    params: tuple[P, ...] = ()          # a spec's positional order, then the IR's own
    channels: str | None = None         # attribute the builder sets to the input's channels
    out_channels: Callable[[Attrs, int | None], int | None] = lambda a, c: c  # None: flat
    fill: Callable[[Attrs], None] | None = None   # defaults that depend on other attributes
    inputs: Callable[[Attrs], range] = field(default_factory=_one)
    cost: Callable[[Attrs, list[Shape], Shape], dict[str, int]] = free
    stride: Callable[[Attrs], tuple[int, int]] = lambda a: (1, 1)
    torch: Callable[[Lowering], str] | None = None   # nn.Module constructor; None: no module
    infix: str | None = None            # a merge's Python operator: `out + identity`
    overwritable: Callable[[Attrs], bool] = lambda a: False  # no backward reads its output
    flatten_input: bool = False         # a Cx1x1 input is flattened first (fc)
    shown: Callable[[Attrs], list[str] | None] = lambda a: None   # IR text instead of attrs
    fusion: str = ""                    # its part in the passes, for docs/ir.md
    also: tuple[str, ...] = ()          # names users write for it elsewhere (for hints)

    @cached_property
    def attrs(self) -> tuple[str, ...]:
        """The IR attributes, in order: the input-derived one, then the parameters."""
        return ((self.channels,) if self.channels else ()) + tuple(p.name for p in self.params)

    @cached_property
    def names(self) -> tuple[str, ...]:
        """The parameters' names, in positional order."""
        return tuple(p.name for p in self.params)

    @cached_property
    def flags(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.flag)

    @cached_property
    def defaults(self) -> dict[str, Any]:
        """Each parameter's default as a value: pairs as (h, w); None where it has none."""
        return {p.name: None if p.default is REQUIRED else (p.default, p.default)
                if p.type == PAIR and p.default is not None else p.default for p in self.params}

    def default(self, name: str) -> Any:
        return self.defaults.get(name)

    def complete(self, given: Attrs) -> Attrs:
        """Every parameter, in order: as given, else its default, then `fill`'s."""
        a = dict(self.defaults)
        a.update(given)
        if self.fill:
            self.fill(a)
        return a


# ---- shape rules -----------------------------------------------------------------------------

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


def same(op: str, feature_map: bool = False) -> Callable[[Attrs, list[Shape]], Shape]:
    """The input's shape, unchanged (a CxHxW one with `feature_map`)."""
    def shape(a: Attrs, ins: list[Shape]) -> Shape:
        return _map(ins[0], op) if feature_map else ins[0]
    shape.__doc__ = "The input's CxHxW, unchanged." if feature_map else "The input's, unchanged."
    return shape


def given(a: Attrs, ins: list[Shape]) -> Shape:
    """The spec's `input` size (or the one asked for), set by the builder."""
    raise AssertionError("the input node's shape is given, not inferred")


def conv_shape(a: Attrs, ins: list[Shape]) -> Shape:
    """(out, ⌊(H + 2p − d(k − 1) − 1) / s⌋ + 1, same for W); channels divisible by groups."""
    c, h, w = _map(ins[0], "conv")
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


def pool_shape(op: str) -> Callable[[Attrs, list[Shape]], Shape]:
    def shape(a: Attrs, ins: list[Shape]) -> Shape:
        """(C, ⌊(H + 2p − k) / s⌋ + 1, ...) (⌈⌉ with ceil_mode); global: (C, 1, 1)."""
        c, h, w = _map(ins[0], op)
        if a["kernel"] is None:
            return (c, 1, 1)
        (kh, kw), (sh, sw), (ph, pw) = a["kernel"], a["stride"], a["padding"]
        if ph * 2 > kh or pw * 2 > kw:
            raise ShapeError(f"{op}: padding {ph}x{pw} is more than half the kernel {kh}x{kw}",
                             hint="PyTorch allows padding up to kernel // 2", code="E403")
        ceil = a["ceil_mode"]
        return (c, _window(h, kh, sh, ph, 1, ceil, op), _window(w, kw, sw, pw, 1, ceil, op))
    return shape


def fc_shape(a: Attrs, ins: list[Shape]) -> Shape:
    """(out,); the input flat or Cx1x1."""
    if len(ins[0]) == 3 and ins[0][1:] != (1, 1):
        raise ShapeError(f"fc needs a flat input, but gets a {'x'.join(map(str, ins[0]))} map",
                         hint="add `avgpool` (global) or `flatten` before `fc`", code="E405")
    return (a["out"],)


def flatten_shape(a: Attrs, ins: list[Shape]) -> Shape:
    """(C·H·W,)."""
    return (prod(ins[0]),)


def pad_shape(a: Attrs, ins: list[Shape]) -> Shape:
    """(C + front + back, ⌈H / s⌉, ⌈W / s⌉)."""
    c, h, w = _map(ins[0], "pad")
    s = a["stride"]
    return (c + a["pad_front"] + a["pad_back"], -(-h // s), -(-w // s))


def merge_shape(a: Attrs, ins: list[Shape]) -> Shape:
    """The inputs' common shape; they must agree."""
    if any(s != ins[0] for s in ins[1:]):
        raise ShapeError("cannot add tensors of different shapes", code="E406")
    return ins[0]


def gate_shape(a: Attrs, ins: list[Shape]) -> Shape:
    """The inputs' common shape, where a Cx1x1 input (a gate) scales a CxHxW one."""
    full = max(ins, key=prod)
    for s in ins:
        if s != full and not (len(s) == 3 and len(full) == 3 and s == (full[0], 1, 1)):
            raise ShapeError(f"cannot multiply {'x'.join(map(str, s))} into "
                             f"{'x'.join(map(str, full))}: the shapes must agree, or one be "
                             "Cx1x1 for the other's C channels", code="E406",
                             hint="a gate is a global `avgpool` branch ending in as many "
                                  "channels as the map it scales")
    return full


def channel_conv_shape(a: Attrs, ins: list[Shape]) -> Shape:
    """The input's Cx1x1 (a pooled descriptor), unchanged."""
    if len(ins[0]) != 3 or ins[0][1:] != (1, 1):
        raise ShapeError(f"channel_conv works across the channels of a Cx1x1 descriptor, but "
                         f"its input is {'x'.join(map(str, ins[0]))}", code="E404",
                         hint="put a global `avgpool` before it, as ECA does")
    return ins[0]


def eca_kernel(a: Attrs) -> int:
    """ECA's kernel size for C channels (timm EcaModule): t = int(|log2 C + beta| / gamma),
    made odd and at least 3; or the `kernel` given."""
    if a["kernel"] is not None:
        return a["kernel"]
    from math import log2
    t = int(abs(log2(a["channels"]) + a["beta"]) / a["gamma"])
    return max(t if t % 2 else t + 1, 3)


def blur_padding(a: Attrs) -> int:
    """timm BlurPool2d's reflect padding per side: ((s - 1) + (f - 1)) // 2."""
    return ((a["stride"] - 1) + (a["filt_size"] - 1)) // 2


def blurpool_shape(a: Attrs, ins: list[Shape]) -> Shape:
    """(C, ⌊(H + 2p − f) / s⌋ + 1, ...), p the reflect padding (smaller than H and W)."""
    c, h, w = _map(ins[0], "blurpool")
    p = blur_padding(a)
    if min(h, w) <= p:
        raise ShapeError(f"blurpool: reflect padding {p} needs an input larger than {p}, got "
                         f"{h}x{w}", hint="use a larger input or a smaller filter",
                         code="E402")
    f, s = a["filt_size"], a["stride"]
    return (c, _window(h, f, s, p, 1, False, "blurpool"), _window(w, f, s, p, 1, False,
                                                                     "blurpool"))


def gn_shape(a: Attrs, ins: list[Shape]) -> Shape:
    """The input's CxHxW; C divisible into the groups (or by the group size)."""
    c = _map(ins[0], "gn")[0]
    if a["groups"] is not None and a["group_size"] is not None:
        raise ShapeError("gn takes `groups` or `group_size`, not both", code="E401",
                         hint="`gn 32` makes 32 groups, `gn group_size = 16` groups of 16")
    what, n = (("groups", a["groups"]) if a["group_size"] is None
               else ("group_size", a["group_size"]))
    if c % n:
        raise ShapeError(f"gn with {what}={n}: channels {c} are not divisible by {n}",
                         hint=f"make the channel count a multiple of {n}, or choose a "
                              f"divisor of {c}", code="E401")
    return ins[0]


def gn_groups(a: Attrs, channels: int) -> int:
    """GroupNorm's number of groups: `groups`, or channels / `group_size`."""
    return a["groups"] if a["group_size"] is None else channels // a["group_size"]


def gn_fill(a: Attrs) -> None:
    """32 groups (the GroupNorm paper's default) unless `group_size` is given."""
    if a["groups"] is None and a["group_size"] is None:
        a["groups"] = 32


def residual(shape: Callable[[Attrs, list[Shape]], Shape]) -> Callable[[Attrs, list[Shape]], Shape]:
    """A fused op's shape: its own op's on the main input, equal to the residual if any."""
    def fused(a: Attrs, ins: list[Shape]) -> Shape:
        out = shape(a, ins[:1])
        return merge_shape(a, [out, *ins[1:]])
    fused.__doc__ = shape.__doc__
    return fused


# ---- cost rules ------------------------------------------------------------------------------

def _elementwise(n: int) -> dict[str, int]:
    """The counts of an op with neither parameters, buffers nor MACs (the most common: a dict
    literal, as the builder asks at every node)."""
    return {"params": 0, "buffers": 0, "macs": 0, "elementwise": n}


def conv_cost(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """params out·in/g·kh·kw (+ out bias); MACs per output element in/g·kh·kw."""
    kh, kw = a["kernel"]
    per_out = a["in_channels"] // a["groups"] * kh * kw
    return {"params": a["out"] * per_out + (a["out"] if a["bias"] else 0), "buffers": 0,
            "macs": prod(out) * per_out, "elementwise": 0}


def bn_cost(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """params 2C (weight, bias); buffers 2C + 1 (running mean and variance, batches tracked);
    1 per element."""
    c = ins[0][0]
    return {"params": 2 * c, "buffers": 2 * c + 1, "macs": 0, "elementwise": prod(out)}


def with_epilogue(cost: Callable[[Attrs, list[Shape], Shape], dict[str, int]]):
    """A fused op's cost: its own op's, plus 1 per element for the residual add and for the
    ReLU it took in."""
    def fused(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
        counts = cost(a, ins, out)
        counts["elementwise"] += prod(out) * ((a["residual_at"] is not None) + a["relu"])
        return counts
    fused.__doc__ = f"{(cost.__doc__ or '').rstrip('.')}; plus 1 per element for the " \
                    "residual add and for the ReLU it took in."
    return fused


def per_element(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """1 per output element."""
    return _elementwise(prod(out))


def per_pair(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """A merge of n inputs: n - 1 per output element."""
    return _elementwise((len(ins) - 1) * prod(out))


def pool_cost(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """One per window element read: out·kh·kw; global: every input element."""
    if a["kernel"] is None:
        return _elementwise(prod(ins[0]))
    return _elementwise(prod(out) * a["kernel"][0] * a["kernel"][1])


def fc_cost(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """params in·out (+ out bias); MACs in·out."""
    return _counts(params=a["in_features"] * a["out"] + (a["out"] if a["bias"] else 0),
                   macs=a["in_features"] * a["out"])


def channel_conv_cost(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """params k; MACs C·k (a 1-channel conv1d along C)."""
    k = eca_kernel(a)
    return _counts(params=k, macs=out[0] * k)


def blurpool_cost(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """A fixed depthwise f×f conv: no parameters (the filter is not saved), MACs out·f·f
    (as fvcore counts the conv it runs)."""
    return _counts(macs=prod(out) * a["filt_size"] ** 2)


def gn_cost(a: Attrs, ins: list[Shape], out: Shape) -> dict[str, int]:
    """params 2C (weight, bias) when affine; no buffers; 1 per element."""
    return _counts(params=2 * ins[0][0] if a["affine"] else 0, elementwise=prod(out))


# ---- strides, defaults -----------------------------------------------------------------------

def window_stride(a: Attrs) -> tuple[int, int]:
    return (1, 1) if a["kernel"] is None else a["stride"]


def window_fill(a: Attrs) -> None:
    """Windowed ops pad an odd kernel k // 2 * dilation on each side by default ("same" size
    at stride 1, as every ResNet pads its 3x3 and 7x7 windows), and an even kernel not at all,
    as PyTorch does (`avgpool 4x4` is F.avg_pool2d(x, 4)); a pool's stride defaults to its
    kernel."""
    if a["kernel"] is None:
        return
    if a["padding"] is None:
        dil = a.get("dilation", (1, 1))
        a["padding"] = tuple(k // 2 * d if k % 2 else 0 for k, d in zip(a["kernel"], dil))
    if a["stride"] is None:
        a["stride"] = a["kernel"]


# ---- PyTorch lowering ------------------------------------------------------------------------

def _conv_args(t: Lowering) -> str:
    a = t.a
    for name, default in (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1)),
                          ("groups", 1)):
        t.optional(name, default)
    return (f"{t.slot('in', a['in_channels'])}, {t.slot('out', a['out'])}, "
            f"{t.slot('k', a['kernel'])}{{OPTIONAL}}, bias={t.lit(a['bias'])}")


def _act_args(t: Lowering) -> str:
    """A fused op's epilogue: `, relu=...` (when set, or always with `always`) and where the
    residual goes."""
    at = t.a.get("residual_at")
    return f", relu={t.lit(t.a['relu'])}" + (f', residual_at="{at}"' if at else "")


def conv_torch(t: Lowering) -> str:
    """nn.Conv2d; in an inference network runtime.Conv2dAct (packed oneDNN weights)."""
    if not t.inference:
        return f"nn.Conv2d({_conv_args(t)})"
    return f"{t.runtime('Conv2dAct', kernels=True)}({_conv_args(t)}, relu=False)"


def conv_act_torch(t: Lowering) -> str:
    return f"{t.runtime('Conv2dAct', kernels=True)}({_conv_args(t)}{_act_args(t)})"


def bn_torch(t: Lowering) -> str:
    return f"nn.BatchNorm2d({t.slot('c', t.shape[0])}{t.changed('eps', 'momentum')})"


def bn_act_torch(t: Lowering) -> str:
    act = ", relu=True" if t.a["relu"] else ""
    at = f', residual_at="{t.a["residual_at"]}"' if t.a["residual_at"] else ""
    return (f"{t.runtime('BatchNormAct2d', kernels=True)}({t.slot('c', t.shape[0])}"
            f"{t.changed('eps', 'momentum')}{act}{at})")


def gn_torch(t: Lowering) -> str:
    c = t.shape[0]
    return (f"nn.GroupNorm({t.slot('g', gn_groups(t.a, c))}, {t.slot('c', c)}"
            f"{t.changed('eps', 'affine')})")


def maxpool_torch(t: Lowering) -> str:
    a = t.a
    ceil = ", ceil_mode=True" if a["ceil_mode"] else ""
    return (f"nn.MaxPool2d({t.slot('k', a['kernel'])}, stride={t.slot('s', a['stride'])}, "
            f"padding={t.slot('p', a['padding'])}{ceil})")


def avgpool_torch(t: Lowering) -> str:
    a = t.a
    if a["kernel"] is None:
        return "nn.AdaptiveAvgPool2d((1, 1))"
    return (f"nn.AvgPool2d({t.slot('k', a['kernel'])}, stride={t.slot('s', a['stride'])}, "
            f"padding={t.slot('p', a['padding'])}, ceil_mode={t.lit(a['ceil_mode'])}, "
            f"count_include_pad={t.lit(a['count_include_pad'])})")


def fc_torch(t: Lowering) -> str:
    a = t.a
    return (f"nn.Linear({t.slot('in', a['in_features'])}, {t.slot('out', a['out'])}, "
            f"bias={t.lit(a['bias'])})")


def channel_conv_torch(t: Lowering) -> str:
    return f"{t.runtime('ChannelConv')}({t.slot('k', eca_kernel(t.a))})"


def blurpool_torch(t: Lowering) -> str:
    return (f"{t.runtime('BlurPool2d')}({t.slot('c', t.shape[0])}, "
            f"{t.slot('f', t.a['filt_size'])}, {t.slot('s', t.a['stride'])})")


def pad_torch(t: Lowering) -> str:
    a = t.a
    return (f"{t.runtime('PadShortcut')}({t.slot('s', a['stride'])}, "
            f"{t.slot('front', a['pad_front'])}, {t.slot('back', a['pad_back'])})")


# ---- drawing ---------------------------------------------------------------------------------

def _x(shape) -> str:
    return "\u00d7".join(map(str, shape))


def _stride(s: tuple[int, int]) -> str:
    return "" if s == (1, 1) else f", /{s[0]}" if s[0] == s[1] else f", /{_x(s)}"


def conv_text(a: Attrs, table: bool) -> str:
    """`3×3 conv, 128, /2` (`3×3, 128` in a stage box)."""
    extra = f", groups {a['groups']}" if a["groups"] > 1 else ""
    if table:
        return f"{_x(a['kernel'])}, {a['out']}{extra}"
    dil = f", dilation {a['dilation'][0]}" if a["dilation"] != (1, 1) else ""
    return f"{_x(a['kernel'])} conv, {a['out']}{_stride(a['stride'])}{extra}{dil}"


def pool_text(kind: str) -> Callable[[Attrs, bool], str]:
    def text(a: Attrs, table: bool) -> str:
        if a["kernel"] is None:
            return f"global {kind} pool"
        return f"{_x(a['kernel'])} {kind} pool{_stride(a['stride'])}"
    return text


CONV = ("#dbe8f6", "#4a78a8")
NORM = ("#fbf0cf", "#b8932a")
POOL = ("#ece0f2", "#855c99")
PLAIN = ("#eeeeee", "#777777")
IO = ("#ffffff", "#555555")

_CONV_PARAMS = (P("out", POS, REQUIRED), P("kernel", PAIR, REQUIRED), P("stride", PAIR, 1),
                P("padding", PAIR), P("groups", POS, 1), P("dilation", PAIR, 1),
                P("bias", BOOL, False, flag=True))
_BN_PARAMS = (P("zero_init", BOOL, False, flag=True), P("eps", FLOAT, 1e-5),
              P("momentum", FLOAT, 0.1))
_RELU = P("relu", BOOL, False)
_AT = (None, "mid", "post", "pre")   # where a fused op adds its residual (None: no residual)
ACT = ("#dff0da", "#5a8f4a")


def _activation(name: str, doc: str, module: str, *params: P) -> Op:
    """An element-wise activation: nn.<module>, its parameters where not PyTorch's default."""
    def torch(t: Lowering) -> str:
        given = [f"{p.name}={t.lit(t.a[p.name])}" for p in params if t.a[p.name] != p.default]
        return f"nn.{module}({', '.join(given)})"
    return Op(name, doc, "layer", same(name), Look(*ACT), params, cost=per_element,
              torch=torch)


def _residual_inputs(a: Attrs) -> range:
    """One input, two with a residual (port 1)."""
    n = 1 + (a["residual_at"] is not None)
    return range(n, n + 1)


OPS: dict[str, Op] = {op.name: op for op in (
    Op("input", "the network's input", "io", given, Look(*IO), inputs=_one(0)),
    Op("conv", "2-d convolution", "layer", conv_shape, Look(*CONV, conv_text, heavy=True),
       _CONV_PARAMS, channels="in_channels", out_channels=lambda a, c: a["out"],
       fill=window_fill, cost=conv_cost, also=("conv2d", "Conv2d", "convolution"),
       stride=window_stride, torch=conv_torch, overwritable=lambda a: True,
       fusion="takes in the BN after it (fold.py)"),
    Op("bn", "batch normalisation; zero_init starts gamma at 0 on request", "layer",
       same("bn", feature_map=True), Look(*NORM), _BN_PARAMS, cost=bn_cost, torch=bn_torch,
       overwritable=lambda a: True, also=("batchnorm", "batch_norm", "BatchNorm2d", "bn2d"),
       fusion="becomes bn_act with the relu and add next to it (fuse.py); folds into the "
              "conv before it (fold.py)"),
    Op("gn", "group normalisation (Wu & He, 2018) over `groups` groups of channels, or groups "
       "of `group_size` channels; zero_init starts gamma at 0 on request (with affine)",
       "layer", gn_shape, Look(*NORM),
       (P("groups", POS), P("group_size", POS), P("eps", FLOAT, 1e-5), P("affine", BOOL, True),
        P("zero_init", BOOL, False, flag=True)),
       fill=gn_fill, cost=gn_cost, torch=gn_torch,
       also=("groupnorm", "group_norm", "GroupNorm")),
    Op("relu", "rectified linear unit", "layer", same("relu"), Look(*ACT),
       cost=per_element, torch=lambda t: f"nn.ReLU(inplace={t.lit(t.inplace)})",
       fusion="joins the bn (or add) before it as relu=True (fuse.py)"),
    _activation("sigmoid", "logistic sigmoid 1 / (1 + exp(-x)): SE's and ECA's gate", "Sigmoid"),
    _activation("silu", "x · sigmoid(x) (swish)", "SiLU"),
    _activation("gelu", "Gaussian error linear unit (exact, erf form)", "GELU"),
    _activation("tanh", "hyperbolic tangent", "Tanh"),
    _activation("hardsigmoid", "relu6(x + 3) / 6 (MobileNetV3's gate)", "Hardsigmoid"),
    _activation("leaky_relu", "max(x, 0) + negative_slope · min(x, 0)", "LeakyReLU",
                P("negative_slope", FLOAT, 0.01)),
    Op("identity", "its input, unchanged (a named no-op, as nn.Identity)", "layer",
       same("identity"), Look(*PLAIN), torch=lambda t: "nn.Identity()"),
    Op("drop_path", "stochastic depth per sample (timm DropPath): in training, zero a "
       "sample's branch with probability p and scale the rest by 1 / (1 - p); in eval, the "
       "identity", "layer", same("drop_path"),
       Look(*PLAIN, lambda a, table: f"drop path {a['p']}"), (P("p", PROB, 0.0),),
       cost=per_element, torch=lambda t: f"{t.runtime('DropPath')}({t.lit(t.a['p'])})"),
    Op("channel_conv", "ECA's 1-d conv across the channels of a Cx1x1 descriptor, no bias; "
       "kernel by timm's rule from C (odd, >= 3) unless given", "layer", channel_conv_shape,
       Look(*CONV, lambda a, table: f"{eca_kernel(a)}-tap channel conv"),
       (P("kernel", POS), P("gamma", FLOAT, 2.0), P("beta", FLOAT, 1.0)), channels="channels",
       cost=channel_conv_cost, torch=channel_conv_torch),
    Op("blurpool", "anti-aliased downsampling (timm BlurPool2d): reflect padding, then a "
       "fixed binomial filt_size x filt_size blur per channel at the stride", "layer",
       blurpool_shape, Look(*POOL, lambda a, table: f"{a['filt_size']}×{a['filt_size']} blur "
                            f"pool{_stride((a['stride'],) * 2)}", heavy=True),
       (P("filt_size", POS, 3), P("stride", POS, 2)), cost=blurpool_cost,
       stride=lambda a: (a["stride"], a["stride"]), torch=blurpool_torch),
    Op("maxpool", "max pooling; stride defaults to the kernel", "layer", pool_shape("maxpool"),
       Look(*POOL, pool_text("max"), heavy=True),
       (P("kernel", PAIR, REQUIRED), P("stride", PAIR), P("padding", PAIR),
        P("ceil_mode", BOOL, False, flag=True)),
       fill=window_fill, cost=pool_cost, stride=window_stride, torch=maxpool_torch),
    Op("avgpool", "average pooling; without a kernel, global (to 1x1)", "layer",
       pool_shape("avgpool"), Look(*POOL, pool_text("avg"), heavy=True),
       (P("kernel", PAIR), P("stride", PAIR), P("padding", PAIR),
        P("ceil_mode", BOOL, False, flag=True), P("count_include_pad", BOOL, True)),
       fill=window_fill, cost=pool_cost, stride=window_stride, torch=avgpool_torch,
       shown=lambda a: ["global"] if a["kernel"] is None else None),
    Op("fc", "fully connected; a Cx1x1 input is flattened first", "layer", fc_shape,
       Look("#f6dcd8", "#a8524a", lambda a, table: f"fc {a['out']}", heavy=True),
       (P("out", POS, REQUIRED), P("bias", BOOL, True)), channels="in_features",
       out_channels=lambda a, c: a["out"],
       cost=fc_cost, torch=fc_torch, flatten_input=True, also=("linear", "Linear", "dense")),
    Op("flatten", "flatten to one dimension per sample", "layer", flatten_shape, Look(*PLAIN),
       out_channels=lambda a, c: None, torch=lambda t: "nn.Flatten()"),
    Op("dropout", "dropout with probability p", "layer", same("dropout"),
       Look(*PLAIN, lambda a, table: f"dropout {a['p']}"), (P("p", PROB, 0.5),),
       torch=lambda t: f"nn.Dropout({t.lit(t.a['p'])})"),
    Op("add", "the sum of its inputs: the residual branch (port 0) and the shortcut (port 1)",
       "merge", merge_shape, Look("#ffffff", "#333333", lambda a, table: "+", junction=True),
       inputs=lambda a: range(2, MANY), cost=per_pair, infix="+",
       overwritable=lambda a: True,
       fusion="joins a bn_act (or conv_act) as its residual add (fuse.py, fold.py)"),
    Op("mul", "the product of its inputs: a Cx1x1 gate (port 0, the residual branch) scales "
       "a CxHxW map (port 1, the shortcut), as squeeze-and-excitation does", "merge",
       gate_shape, Look("#ffffff", "#333333", lambda a, table: "\u00d7", junction=True),
       inputs=lambda a: range(2, MANY), cost=per_pair, infix="*"),
    Op("pad", "option A shortcut: x[:, :, ::s, ::s] with zero channels added", "shortcut",
       pad_shape, Look("#ffffff", "#777777", lambda a, table:
                       f"zero-pad +{a['pad_front'] + a['pad_back']}"
                       f"{_stride((a['stride'],) * 2)}", heavy=True),
       (P("stride", POS), P("pad_front", NONNEG), P("pad_back", NONNEG)),
       stride=lambda a: (a["stride"], a["stride"]), torch=pad_torch),
    Op("bn_act", "bn fused with a relu and/or a residual add: relu(bn(x + r)) at \"pre\", "
       "relu(bn(x) + r) at \"mid\", relu(bn(x)) + r at \"post\"", "fused",
       residual(same("bn", feature_map=True)), Look(*PLAIN),
       _BN_PARAMS + (_RELU, P("residual_at", "str", choices=_AT)),
       inputs=_residual_inputs, cost=with_epilogue(bn_cost), torch=bn_act_torch,
       fusion="made by fuse.py"),
    Op("conv_act", "a conv with a BN folded in and that BN's relu / residual add: "
       "relu(conv(x) + r) at \"mid\", relu(conv(x)) + r at \"post\"", "fused",
       residual(conv_shape), Look(*PLAIN),
       _CONV_PARAMS + (_RELU, P("residual_at", "str", choices=_AT[:3])), channels="in_channels",
       fill=window_fill, inputs=_residual_inputs, cost=with_epilogue(conv_cost),
       stride=window_stride,
       torch=conv_act_torch,
       overwritable=lambda a: not a["relu"], fusion="made by fold.py"),
    Op("output", "the network's output", "io", same("output"), Look(*IO)),
)}

# The ops a spec writes as layers, and the merges `merge NAME` accepts.
LAYERS: dict[str, Op] = {k: op for k, op in OPS.items() if op.kind == "layer"}
MERGES: tuple[str, ...] = tuple(k for k, op in OPS.items() if op.kind == "merge")
DEFAULT_MERGE = "add"   # a block with a shortcut and no `merge` line


def cost(op: str, attrs: Attrs, inputs: list[Shape], out: Shape) -> dict[str, int]:
    """Parameters, buffers, multiply-accumulates and element-wise work of one node."""
    return OPS[op].cost(attrs, inputs, out)


# ---- shortcut kinds --------------------------------------------------------------------------

@dataclass(frozen=True)
class Shortcut:
    """A `shortcut KIND [flags]` of the language: the layers the builder makes for it where the
    branches' shapes differ, and the runtime helper that builds them in PyTorch (None: the
    layers' own modules)."""

    name: str
    doc: str
    flags: tuple[str, ...] = ()
    helper: str | None = None


SHORTCUTS: dict[str, Shortcut] = {s.name: s for s in (
    Shortcut("identity", "x itself; shapes must agree"),
    Shortcut("pad", "option A: subsample by the stride, zero-pad the new channels"),
    Shortcut("projection", "option B (C with `always`): 1x1 conv + bn where shapes differ",
             ("always",), "projection"),
    Shortcut("avgdown", "ResNet-D: 2x2 avg-pool (when strided), then 1x1 conv + bn",
             helper="avg_down"),
    Shortcut("none", "plain network: no shortcut, no merge"),
)}
