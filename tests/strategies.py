"""Hypothesis strategies for resdsl: random spec texts with independently computed expectations.

Nothing here calls resdsl. A strategy draws a *description* of a network (plain frozen
dataclasses: the input, a stem, stages of residual blocks, loose layers, a head), renders it as
`.res` text, and computes what the compiler must infer for it with straightforward formulas
(PyTorch's size arithmetic, the usual parameter and multiply-accumulate counts) in a small model
written against the language's documented semantics. Tests compare the two.

Public API
----------
Descriptions (all frozen dataclasses, usable as hypothesis values):
  `Conv`, `BN`, `ReLU`, `MaxPool`, `AvgPool`, `Flatten`, `Dropout`, `FC`   layers
  `BlockDef`    a residual block: basic / bottleneck, unit ordering, shortcut kind, ...
  `Stem`, `Head`, `Loose`, `LooseBlock`, `Stage`                          network items
  `NetSpec`     a whole network: `.text`, `.network` (its name), `.lines` (statement -> line),
                `.expect(input_shape=None)` -> `Expected`, and shortcuts for the spec's own
                input: `.expected`, `.expected_params`, `.expected_macs`,
                `.expected_buffers`, `.expected_output_shape`, `.expected_shapes`.
  `Expected`    `shapes` (IR node name -> shape, in the IR's node order, `input`/`output`
                included), `ops` (node -> op), `params`, `buffers`, `macs`, `output_shape`.
  `ExpectedError(code, key)`  what `expect` raises when the spec is invalid for that input;
                `key` names the offending statement (`spec.lines[key]` is its line, None when it
                lies in the bundled std.res).
  `InvalidSpec` a spec with one deliberate mistake: `.spec`, `.text`, `.code` (the expected
                error code), `.line` (the line the error must point at), `.variation`.

Strategies:
  `specs(**options)`           valid `NetSpec`s (see its docstring for the options).
  `nets(family)`               valid `NetSpec`s of one family (FAMILIES): mixed, plain,
                               pre-activation, original units.
  `block_defs(name)`           generated block definitions (shortcut chosen by the caller).
  `invalid_specs(variations)`  `InvalidSpec`s; `INVALID_VARIATIONS` maps variation -> code.
  `mutated_texts()`            valid texts damaged at random (for "only ResdslError" tests).
  `input_shapes()`             (C, H, W) inputs for `--input` overrides.

Semantics modelled (from the language docs / std.res): layers named `kind{n}` per scope unless
labelled; scopes are the network's top level (stem, head and loose layers share it) and each
block instance (`layer1.0`, or `blocka1` for a block used as a statement); shortcut layers are
`<block>.downsample.i`, option A's pad is `<block>.downsample`, the merge is `<block>.add`.
Shortcuts are decided as torchvision does, by the residual branch's *stride* (the product of
its convs' and pools' strides) and widths, not by the input size: a `projection` / `avgdown` /
`pad` shortcut is the identity where the branch has stride 1x1 and keeps the channel count
(then the shapes must agree, else E407); otherwise projection is a 1x1 conv with that stride
plus bn, avgdown an avgpool (kernel = stride = the branch stride, ceil_mode, no padding counted;
left out at stride 1x1) then a 1x1 conv + bn, and pad subsamples by the stride (ceil(H/s);
E407 if the stride is uneven or channels shrink) and adds zero channels. `projection(always)`
always projects. A window too large for its (padded) input, i.e. an output size below 1 by
PyTorch's formula (ceil_mode windows may hang over the end), is E402.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Optional, Union

from hypothesis import assume
from hypothesis import strategies as st

Shape = tuple[int, ...]
Pair = tuple[int, int]
Sym = Union[int, str]  # an int, or a block-body symbol: planes, mid, outc, stride, groups

ORDERINGS = ("original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact")
"""The residual unit orderings of the Identity Mappings paper, Fig. 4 (a) .. (e)."""

SHORTCUTS = ("identity", "pad", "projection", "projection_always", "avgdown", "none", "custom")


# ---- layer descriptions --------------------------------------------------------------------

@dataclass(frozen=True)
class Conv:
    out: Sym
    kernel: Pair = (3, 3)
    stride: Union[Sym, Pair] = 1
    padding: Optional[Pair] = None      # None: the default k // 2 * dilation, odd k; else 0
    groups: Sym = 1
    dilation: int = 1
    bias: bool = False
    label: Optional[str] = None
    kind = "conv"


@dataclass(frozen=True)
class BN:
    zero_init: bool = False
    label: Optional[str] = None
    kind = "bn"


@dataclass(frozen=True)
class ReLU:
    label: Optional[str] = None
    kind = "relu"


@dataclass(frozen=True)
class MaxPool:
    kernel: Pair
    stride: Optional[Pair] = None       # None: the kernel
    padding: Optional[Pair] = None      # None: k // 2 for odd k, else 0
    ceil_mode: bool = False
    label: Optional[str] = None
    kind = "maxpool"


@dataclass(frozen=True)
class AvgPool:
    kernel: Optional[Pair] = None       # None: global, to 1x1
    stride: Optional[Pair] = None
    padding: Optional[Pair] = None
    ceil_mode: bool = False
    count_include_pad: bool = True
    label: Optional[str] = None
    kind = "avgpool"


@dataclass(frozen=True)
class Flatten:
    label: Optional[str] = None
    kind = "flatten"


@dataclass(frozen=True)
class Dropout:
    p: float = 0.5
    label: Optional[str] = None
    kind = "dropout"


@dataclass(frozen=True)
class FC:
    out: int
    bias: bool = True
    label: Optional[str] = None
    kind = "fc"


Layer = Union[Conv, BN, ReLU, MaxPool, AvgPool, Flatten, Dropout, FC]


# ---- blocks --------------------------------------------------------------------------------

@dataclass(frozen=True)
class BlockDef:
    """A residual block with the uniform signature (planes, stride = 1, groups = 1, width = 64).

    basic: two 3x3 convs of `planes`; bottleneck: 1x1 `mid`, 3x3 `mid` (groups), 1x1
    `planes * expansion`, where mid = planes * width / 64 * groups; single: one 3x3 conv of
    `planes`, which reads the input that the shortcut adds. The stride sits on the first 3x3
    (basic, single), the 3x3 (`stride_on="3x3"`, v1.5) or the first 1x1 (v1). `dilation`
    goes on the last 3x3 conv. `shared_preact` moves the first unit's pre-activation layers in
    front of `residual`, so both branches see them. `std=True`: defined in std.res (`use std`).
    """

    name: str
    kind: str = "basic"                 # basic | bottleneck | single
    ordering: str = "original"          # one of ORDERINGS
    shortcut: str = "projection"        # one of SHORTCUTS
    stride_on: str = "3x3"              # bottleneck only: 3x3 | 1x1
    expansion: int = 4                  # bottleneck only
    dilation: int = 1
    shared_preact: bool = False
    zero_init: bool = False
    merge_line: bool = True             # write `merge add` (required when layers follow it)
    custom_bn: bool = True              # custom shortcut: conv then bn
    custom_stride: bool = True          # custom shortcut: its conv has stride = stride
    custom_out: str = "outc"            # custom shortcut: its conv's width (a symbol)
    std: bool = False

    @property
    def out_symbol(self) -> str:
        return "outc" if self.kind == "bottleneck" else "planes"


def block_layers(b: BlockDef) -> tuple[list[Layer], list[list[Layer]], list[Layer], list[Layer]]:
    """(pre, residual units, post, custom shortcut) of a block, in statement order."""
    if b.kind == "basic":
        convs = [Conv("planes", (3, 3), stride="stride"),
                 Conv("planes", (3, 3), dilation=b.dilation)]
    elif b.kind == "single":
        convs = [Conv("planes", (3, 3), stride="stride", dilation=b.dilation)]
    elif b.stride_on == "3x3":
        convs = [Conv("mid", (1, 1)),
                 Conv("mid", (3, 3), stride="stride", groups="groups", dilation=b.dilation),
                 Conv("outc", (1, 1))]
    else:
        convs = [Conv("mid", (1, 1), stride="stride"),
                 Conv("mid", (3, 3), groups="groups", dilation=b.dilation),
                 Conv("outc", (1, 1))]
    units: list[list[Layer]] = []
    for i, c in enumerate(convs):
        last = i == len(convs) - 1
        zi = last and b.zero_init
        units.append({
            "original": [c, BN(zi)] + ([] if last else [ReLU()]),
            "bn_after_add": [c] + ([] if last else [BN(), ReLU()]),
            "relu_before_add": [c, BN(zi), ReLU()],
            "relu_preact": [ReLU(), c, BN(zi)],
            "full_preact": [BN(), ReLU(), c],
        }[b.ordering])
    post: list[Layer] = {"original": [ReLU()], "bn_after_add": [BN(), ReLU()]}.get(b.ordering, [])
    pre: list[Layer] = []
    if b.shared_preact:
        while not isinstance(units[0][0], Conv):
            pre.append(units[0].pop(0))
    custom: list[Layer] = [Conv(b.custom_out, (1, 1), stride="stride" if b.custom_stride else 1)]
    if b.custom_bn:
        custom.append(BN())
    return pre, units, post, custom


# The std.res blocks this module knows, as descriptions (their text lives in std.res); the
# conditional ones (preact_basic, preact_bottleneck) are not in this vocabulary.
STD_BLOCKS: dict[str, BlockDef] = {b.name: b for b in (
    BlockDef("basic", "basic", "original", "projection", zero_init=True, std=True),
    BlockDef("bottleneck", "bottleneck", "original", "projection", zero_init=True, std=True),
    BlockDef("bottleneck_v1", "bottleneck", "original", "projection", stride_on="1x1",
             zero_init=True, std=True),
    BlockDef("basic_a", "basic", "original", "pad", zero_init=True, std=True),
    BlockDef("bottleneck_a", "bottleneck", "original", "pad", zero_init=True, std=True),
    BlockDef("basic_c", "basic", "original", "projection_always", zero_init=True, std=True),
    BlockDef("plain_basic", "basic", "original", "none", std=True),
    BlockDef("plain_bottleneck", "bottleneck", "original", "none", std=True),
    BlockDef("unit_bn_after_add", "basic", "bn_after_add", "projection", std=True),
    BlockDef("unit_relu_before_add", "basic", "relu_before_add", "projection", zero_init=True,
             std=True),
    BlockDef("unit_relu_preact", "basic", "relu_preact", "projection", zero_init=True, std=True),
    BlockDef("unit_full_preact", "basic", "full_preact", "projection", std=True),
    BlockDef("bottleneck_d", "bottleneck", "original", "avgdown", zero_init=True, std=True),
)}


# ---- network descriptions ------------------------------------------------------------------

@dataclass(frozen=True)
class Stem:
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class Head:
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class Loose:
    """A layer written directly in the network body (top-level scope)."""

    layer: Layer


@dataclass(frozen=True)
class Args:
    planes: int
    stride: int = 1
    groups: int = 1
    width: int = 64


@dataclass(frozen=True)
class Stage:
    """`stage NAME = COUNT x BLOCK(planes, stride = .., groups = .., width = ..)`."""

    name: str
    block: BlockDef
    count: int
    args: Args


@dataclass(frozen=True)
class LooseBlock:
    """A block used as a statement in the network body: `blocka 16, stride = 2`."""

    block: BlockDef
    args: Args
    label: Optional[str] = None


Item = Union[Stem, Head, Loose, Stage, LooseBlock]


class ExpectedError(Exception):
    """The model's verdict that a spec is invalid: the code resdsl must report, and the key of
    the statement its span must point at (see `NetSpec.lines`; None: not in the text)."""

    def __init__(self, code: str, key: Optional[tuple]):
        super().__init__(f"{code} at {key}")
        self.code = code
        self.key = key


@dataclass
class Expected:
    """What resdsl must infer for a valid spec."""

    shapes: dict[str, Shape] = field(default_factory=dict)   # IR node order
    ops: dict[str, str] = field(default_factory=dict)
    params: int = 0
    buffers: int = 0
    macs: int = 0

    @property
    def output_shape(self) -> Shape:
        return self.shapes["output"]


@dataclass(frozen=True)
class NetSpec:
    """A network description. `text` renders it; `expect` computes the expectations."""

    input: tuple[int, int, int]
    items: tuple[Item, ...]
    network: str = "net"
    template: bool = False        # a template `network tmpl(height, num_classes = 1000)` + instance
    compact: bool = False         # several statements a line, joined with ';'
    dims_literal: bool = False    # `input 3x32x32` rather than `input 3 x 32 x 32`

    # -- derived
    @property
    def blocks(self) -> list[BlockDef]:
        """The block definitions written in the text (std ones excluded), first use first."""
        seen: dict[str, BlockDef] = {}
        for it in self.items:
            if isinstance(it, (Stage, LooseBlock)) and not it.block.std:
                seen.setdefault(it.block.name, it.block)
        return list(seen.values())

    @property
    def uses_std(self) -> bool:
        return any(isinstance(it, (Stage, LooseBlock)) and it.block.std for it in self.items)

    @cached_property
    def _rendered(self) -> tuple[str, dict[tuple, int]]:
        return _render(self)

    @property
    def text(self) -> str:
        return self._rendered[0]

    @property
    def lines(self) -> dict[tuple, int]:
        """Statement key -> 1-based line: ("stem", i), ("head", i), ("item", i) for loose
        layers, loose blocks and stages, ("def", block, part, i) for a block's statements
        (part: pre | res | post | sc), ("def", block, "shortcut"), ("def", block, "merge"),
        ("input",)."""
        return self._rendered[1]

    def expect(self, input_shape: Optional[tuple[int, int, int]] = None) -> Expected:
        """The expected graph for `input_shape` (default: the spec's own input); raises
        ExpectedError when the spec is invalid for it."""
        return _Model(self, tuple(input_shape or self.input)).run()

    @cached_property
    def expected(self) -> Expected:
        return self.expect()

    @property
    def expected_params(self) -> int:
        return self.expected.params

    @property
    def expected_buffers(self) -> int:
        return self.expected.buffers

    @property
    def expected_macs(self) -> int:
        return self.expected.macs

    @property
    def expected_output_shape(self) -> Shape:
        return self.expected.output_shape

    @property
    def expected_shapes(self) -> dict[str, Shape]:
        return self.expected.shapes

    def error(self, input_shape: Optional[tuple[int, int, int]] = None) -> Optional[ExpectedError]:
        """The model's error for this input, or None when the spec is valid for it."""
        try:
            self.expect(input_shape)
        except ExpectedError as e:
            return e
        return None


# ---- the model: expected shapes and counts -------------------------------------------------

def _pair(v) -> Pair:
    return tuple(v) if isinstance(v, tuple) else (v, v)  # type: ignore[return-value]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def window_out(size: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False) -> int:
    """PyTorch's output size of a conv / pool along one dimension (< 1: the input is too
    small; with ceil_mode a window may hang over the end, as in PyTorch)."""
    num = size + 2 * p - d * (k - 1) - 1
    if not ceil_mode:
        return num // s + 1
    out = _cdiv(num, s) + 1
    if (out - 1) * s >= size + p:   # the last window must start inside the input or left pad
        out -= 1
    return out


class _Namer:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def name(self, kind: str, label: Optional[str]) -> str:
        if label:
            return label
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return f"{kind}{self.counts[kind]}"


class _Model:
    def __init__(self, spec: NetSpec, input_shape: tuple[int, ...]):
        self.spec = spec
        self.e = Expected()
        self.e.shapes["input"] = tuple(input_shape)
        self.e.ops["input"] = "input"

    def run(self) -> Expected:
        top = _Namer()
        cur: Shape = self.e.shapes["input"]
        for idx, it in enumerate(self.spec.items):
            if isinstance(it, (Stem, Head)):
                part = "stem" if isinstance(it, Stem) else "head"
                for i, layer in enumerate(it.layers):
                    cur = self.layer(layer, top.name(layer.kind, layer.label), cur, {},
                                     (part, i))
            elif isinstance(it, Loose):
                cur = self.layer(it.layer, top.name(it.layer.kind, it.layer.label), cur, {},
                                 ("item", idx))
            elif isinstance(it, LooseBlock):
                cur = self.block(it.block, top.name(it.block.name, it.label), it.args, cur)
            else:
                for i in range(it.count):
                    args = it.args if i == 0 else replace(it.args, stride=1)
                    cur = self.block(it.block, f"{it.name}.{i}", args, cur)
        self.node("output", "output", cur)
        return self.e

    def node(self, name: str, op: str, shape: Shape) -> Shape:
        if name in self.e.shapes:           # a label repeated: two nodes of one name
            raise ExpectedError("E202", None)
        self.e.shapes[name] = shape
        self.e.ops[name] = op
        return shape

    # one layer
    def layer(self, L: Layer, name: str, shape: Shape, env: dict[str, int],
              key: Optional[tuple]) -> Shape:
        def fail(code: str):
            raise ExpectedError(code, key)

        def val(v):
            return env[v] if isinstance(v, str) else v

        if isinstance(L, (Conv, BN, MaxPool, AvgPool)) and len(shape) != 3:
            fail("E404")
        if isinstance(L, Conv):
            c, h, w = shape
            out, g = val(L.out), val(L.groups)
            if c % g or out % g:
                fail("E401")
            k, s = L.kernel, _pair(val(L.stride))
            d = (L.dilation, L.dilation)
            p = L.padding if L.padding is not None else tuple(
                ki // 2 * L.dilation if ki % 2 else 0 for ki in k)   # even kernels pad 0
            sizes = [window_out(size, k[i], s[i], p[i], d[i]) for i, size in enumerate((h, w))]
            if min(sizes) < 1:
                fail("E402")
            weight = out * (c // g) * k[0] * k[1]
            self.e.params += weight + (out if L.bias else 0)
            self.e.macs += weight * sizes[0] * sizes[1]
            return self.node(name, "conv", (out, sizes[0], sizes[1]))
        if isinstance(L, BN):
            self.e.params += 2 * shape[0]
            self.e.buffers += 2 * shape[0] + 1
            return self.node(name, "bn", shape)
        if isinstance(L, (ReLU, Dropout)):
            return self.node(name, L.kind, shape)
        if isinstance(L, (MaxPool, AvgPool)):
            c, h, w = shape
            if L.kernel is None:
                return self.node(name, L.kind, (c, 1, 1))
            k = L.kernel
            s = L.stride or k
            p = L.padding if L.padding is not None else tuple(ki // 2 if ki % 2 else 0 for ki in k)
            if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
                fail("E403")
            sizes = [window_out(size, k[i], s[i], p[i], 1, L.ceil_mode)
                     for i, size in enumerate((h, w))]
            if min(sizes) < 1:
                fail("E402")
            return self.node(name, L.kind, (c, sizes[0], sizes[1]))
        if isinstance(L, Flatten):
            return self.node(name, "flatten", (math.prod(shape),))
        if isinstance(L, FC):
            if len(shape) == 3 and shape[1:] != (1, 1):
                fail("E405")
            self.e.params += shape[0] * L.out + (L.out if L.bias else 0)
            self.e.macs += shape[0] * L.out
            return self.node(name, "fc", (L.out,))
        raise AssertionError(L)

    # one block instance
    def block(self, b: BlockDef, path: str, a: Args, x: Shape) -> Shape:
        env = {"planes": a.planes, "stride": a.stride, "groups": a.groups, "width": a.width,
               "mid": a.planes * a.width // 64 * a.groups, "outc": a.planes * b.expansion,
               "double": a.planes * 2}

        def key(*k):
            return None if b.std else ("def", b.name) + k

        pre, units, post, custom = block_layers(b)
        namer = _Namer()
        cur = x
        for i, L in enumerate(pre):
            cur = self.layer(L, f"{path}.{namer.name(L.kind, L.label)}", cur, env,
                             key("pre", i))
        xs = cur
        for i, L in enumerate([L for u in units for L in u]):
            cur = self.layer(L, f"{path}.{namer.name(L.kind, L.label)}", cur, env,
                             key("res", i))
        rs = cur
        if b.shortcut != "none":
            ss = self.shortcut(b, path, xs, rs, env, key)
            if ss != rs:
                raise ExpectedError("E406", key("merge") if b.merge_line else key("shortcut"))
            self.node(f"{path}.add", "add", rs)
        for i, L in enumerate(post):
            cur = self.layer(L, f"{path}.{namer.name(L.kind, L.label)}", cur, env,
                             key("post", i))
        return cur

    def shortcut(self, b: BlockDef, path: str, xs: Shape, rs: Shape, env, key) -> Shape:
        ds = f"{path}.downsample"
        if b.shortcut == "custom":
            cur = xs
            for i, L in enumerate(block_layers(b)[3]):
                cur = self.layer(L, f"{ds}.{i}", cur, env, key("sc", i))
            return cur
        stride = branch_stride([L for u in block_layers(b)[1] for L in u], env)
        same = xs[0] == rs[0] and stride == (1, 1)   # torchvision's rule: no stride, same width
        if b.shortcut == "identity" or (same and b.shortcut != "projection_always"):
            if xs != rs:
                raise ExpectedError("E407", key("shortcut"))
            return xs
        if len(xs) != 3 or len(rs) != 3:
            raise ExpectedError("E404", key("shortcut"))
        if b.shortcut == "pad":
            if rs[0] < xs[0] or stride[0] != stride[1]:
                raise ExpectedError("E407", key("shortcut"))
            t = stride[0]
            return self.node(ds, "pad", (rs[0], _cdiv(xs[1], t), _cdiv(xs[2], t)))
        sk = key("shortcut")
        if b.shortcut == "avgdown":
            cur = xs
            if stride != (1, 1):
                cur = self.layer(AvgPool(stride, stride, (0, 0), True, False), f"{ds}.0", cur,
                                 env, sk)
            cur = self.layer(Conv(rs[0], (1, 1), 1, (0, 0)), f"{ds}.1", cur, env, sk)
            return self.layer(BN(), f"{ds}.2", cur, env, sk)
        cur = self.layer(Conv(rs[0], (1, 1), stride, (0, 0)), f"{ds}.0", xs, env, sk)
        return self.layer(BN(), f"{ds}.1", cur, env, sk)


def branch_stride(layers: list[Layer], env: dict[str, int]) -> Pair:
    """The residual branch's total stride: the product of its convs' and windowed pools'."""
    sh = sw = 1
    for L in layers:
        if isinstance(L, Conv) or (isinstance(L, (MaxPool, AvgPool)) and L.kernel is not None):
            s = env[L.stride] if isinstance(L.stride, str) else (L.stride or L.kernel)
            s = _pair(s)
            sh, sw = sh * s[0], sw * s[1]
    return sh, sw


# ---- rendering -----------------------------------------------------------------------------

_SYM_TEXT = {"planes": "planes", "mid": "mid", "stride": "stride", "groups": "groups"}


def _sym(v, b: Optional[BlockDef]) -> str:
    if isinstance(v, str):
        if v == "outc":
            return f"planes * {b.expansion}" if b else v
        if v == "double":
            return "planes * 2"
        return _SYM_TEXT[v]
    return str(v)


def _pair_text(p) -> str:
    if isinstance(p, str):
        return _sym(p, None)
    a, c = _pair(p)
    return f"{a}x{c}"


def layer_text(L: Layer, b: Optional[BlockDef] = None) -> str:
    """One layer statement, as a user would write it."""
    args: list[str] = []
    if isinstance(L, Conv):
        args = [_sym(L.out, b), _pair_text(L.kernel)]
        if L.stride != 1:
            args.append(f"stride = {_sym(L.stride, b) if isinstance(L.stride, str) else _pair_text(L.stride)}")
        if L.padding is not None:
            args.append(f"padding = {_pair_text(L.padding)}")
        if L.groups != 1:
            args.append(f"groups = {_sym(L.groups, b)}")
        if L.dilation != 1:
            args.append(f"dilation = {L.dilation}")
        if L.bias:
            args.append("bias")
    elif isinstance(L, BN):
        if L.zero_init:
            return _label(L) + "bn(zero_init)"
    elif isinstance(L, (MaxPool, AvgPool)):
        if L.kernel is not None:
            args = [_pair_text(L.kernel)]
        if L.stride is not None:
            args.append(f"stride = {_pair_text(L.stride)}")
        if L.padding is not None:
            args.append(f"padding = {_pair_text(L.padding)}")
        if L.ceil_mode:
            args.append("ceil_mode")
        if isinstance(L, AvgPool) and not L.count_include_pad:
            args.append("count_include_pad = false")
    elif isinstance(L, Dropout):
        args = [repr(L.p)]
    elif isinstance(L, FC):
        args = [str(L.out)] + ([] if L.bias else ["bias = false"])
    text = L.kind + (" " + ", ".join(args) if args else "")
    return _label(L) + text


def _label(L: Layer) -> str:
    return f"{L.label}: " if L.label else ""


class _Writer:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.where: dict[tuple, int] = {}

    def line(self, text: str, *keys: tuple) -> None:
        self.out.append(text)
        for k in keys:
            self.where[k] = len(self.out)

    def stmts(self, indent: str, texts: list[str], keys: list[tuple], compact: bool) -> None:
        if compact and texts:
            self.line(indent + "; ".join(texts), *keys)
        else:
            for t, k in zip(texts, keys):
                self.line(indent + t, k)


def _args_text(a: Args, keyword_planes: bool = False) -> str:
    parts = [f"planes = {a.planes}" if keyword_planes else str(a.planes)]
    if a.stride != 1:
        parts.append(f"stride = {a.stride}")
    if a.groups != 1:
        parts.append(f"groups = {a.groups}")
    if a.width != 64:
        parts.append(f"width = {a.width}")
    return ", ".join(parts)


def _render_block(w: _Writer, b: BlockDef, compact: bool) -> None:
    pre, units, post, custom = block_layers(b)
    k = ("def", b.name)
    w.line(f"block {b.name}(planes, stride = 1, groups = 1, width = 64) {{")
    if b.kind == "bottleneck":
        w.line("  mid = planes * width / 64 * groups")
    w.stmts("  ", [layer_text(L, b) for L in pre], [k + ("pre", i) for i in range(len(pre))],
            compact)
    w.line("  residual {")
    i = 0
    for u in units:
        w.stmts("    ", [layer_text(L, b) for L in u],
                [k + ("res", i + j) for j in range(len(u))], compact)
        i += len(u)
    w.line("  }")
    kind = b.shortcut
    if kind == "custom":
        texts = [layer_text(L, b) for L in custom]
        keys = [k + ("sc", j) for j in range(len(custom))]
        if compact:
            w.line("  shortcut { " + "; ".join(texts) + " }", k + ("shortcut",), *keys)
        else:
            w.line("  shortcut {", k + ("shortcut",))
            w.stmts("    ", texts, keys, False)
            w.line("  }")
    else:
        w.line("  shortcut " + ("projection(always)" if kind == "projection_always" else kind),
               k + ("shortcut",))
    if kind != "none" and (b.merge_line or post):
        w.line("  merge add", k + ("merge",))
    w.stmts("  ", [layer_text(L, b) for L in post], [k + ("post", i) for i in range(len(post))],
            compact)
    w.line("}")
    w.line("")


def _render(spec: NetSpec) -> tuple[str, dict[tuple, int]]:
    w = _Writer()
    w.line("# generated by tests/strategies.py")
    if spec.uses_std:
        w.line("use std")
    w.line("")
    for b in spec.blocks:
        _render_block(w, b, spec.compact)
    c, h, wd = spec.input
    head = spec.items[-1] if spec.items and isinstance(spec.items[-1], Head) else None
    fc_param = spec.template and head is not None and isinstance(head.layers[-1], FC)
    if spec.template:
        w.line(f"network {spec.network}_tmpl(height, num_classes = 1000) {{")
        hs = "height"
    else:
        w.line(f"network {spec.network} {{")
        hs = str(h)
    if spec.dims_literal and not spec.template:
        w.line(f"  input {c}x{h}x{wd}", ("input",))
    else:
        w.line(f"  input {c} x {hs} x {wd}", ("input",))
    for idx, it in enumerate(spec.items):
        if isinstance(it, (Stem, Head)):
            part = "stem" if isinstance(it, Stem) else "head"
            texts = [layer_text(L) for L in it.layers]
            if part == "head" and fc_param:
                L = it.layers[-1]
                texts[-1] = _label(L) + "fc num_classes" + ("" if L.bias else ", bias = false")
            keys = [(part, i) for i in range(len(texts))]
            if spec.compact:
                w.line(f"  {part} {{ " + "; ".join(texts) + " }", *keys)
            else:
                w.line(f"  {part} {{")
                w.stmts("    ", texts, keys, False)
                w.line("  }")
        elif isinstance(it, Loose):
            w.line("  " + layer_text(it.layer), ("item", idx))
        elif isinstance(it, LooseBlock):
            w.line(f"  {_label(it)}{it.block.name} {_args_text(it.args)}", ("item", idx))
        else:
            count = "" if it.count == 1 and idx % 2 else f"{it.count} x "
            w.line(f"  stage {it.name} = {count}{it.block.name}({_args_text(it.args)})",
                   ("item", idx))
    w.line("}")
    if spec.template:
        args = [f"height = {h}"]
        if fc_param:
            args.append(f"num_classes = {head.layers[-1].out}")
        w.line(f"network {spec.network} = {spec.network}_tmpl({', '.join(args)})")
    return "\n".join(w.out) + "\n", w.where


# ---- strategies: valid specs ---------------------------------------------------------------

def input_shapes(min_size: int = 8, max_size: int = 64) -> st.SearchStrategy:
    """(C, H, W) with C in 1..4, square about half the time."""
    size = st.integers(min_size, max_size)
    return st.one_of(
        st.tuples(st.integers(1, 4), size).map(lambda t: (t[0], t[1], t[1])),
        st.tuples(st.integers(1, 4), size, size))


_KERNELS = [(3, 3), (5, 5), (7, 7), (1, 1), (3, 5), (5, 3), (4, 4), (2, 2)]
_MAXPOOLS = [
    MaxPool((3, 3), (2, 2)),                          # torchvision: padding 1 by default
    MaxPool((2, 2)),                                  # stride = kernel, padding 0
    MaxPool((3, 3)),                                  # stride 3
    MaxPool((3, 3), (2, 2), ceil_mode=True),
    MaxPool((3, 3), (2, 2), (0, 0), ceil_mode=True),  # Caffe's ResNet stem
    MaxPool((2, 2), (2, 2), (1, 1), ceil_mode=True),
    MaxPool((3, 3), (2, 2), (0, 0)),
]
_WIDTHS = [8, 16, 24, 32, 64]


@st.composite
def stems(draw) -> tuple[Layer, ...]:
    """A stem: nothing, a bare conv, conv-bn-relu[-maxpool], or a ResNet-D deep stem."""
    form = draw(st.sampled_from(["none", "conv", "cbr", "cbr_pool", "cbr_pool", "deep"]))
    if form == "none":
        return ()
    c = draw(st.sampled_from(_WIDTHS))
    labels = draw(st.booleans())
    if form == "deep":
        layers: list[Layer] = [Conv(c // 2 or 1, (3, 3), 2), BN(), ReLU(), Conv(c // 2 or 1),
                               BN(), ReLU(), Conv(c), BN(), ReLU()]
    else:
        k = draw(st.sampled_from(_KERNELS))
        stride = draw(st.sampled_from([1, 2, (2, 1)]))
        dil = draw(st.sampled_from([1, 1, 1, 2]))
        pad = draw(st.sampled_from([None, None, None, (0, 0), (k[0] // 2, k[1] // 2)]))
        layers = [Conv(c, k, stride, pad, dilation=dil, bias=draw(st.booleans()),
                       label="conv" if labels and draw(st.booleans()) else None)]
        if form != "conv":
            layers += [BN(label="norm" if labels else None),
                       ReLU(label="relu" if labels else None)]
    if form in ("cbr_pool", "deep"):
        mp = draw(st.sampled_from(_MAXPOOLS))
        layers.append(replace(mp, label="maxpool" if labels else None))
    return tuple(layers)


HEAD_FORMS = ("pool_fc", "pool_fc", "preact", "flatten", "dropout", "flatten_dropout",
              "flatten_only")


@st.composite
def heads(draw, allow_none: bool = True, forms: tuple[str, ...] = HEAD_FORMS
          ) -> tuple[Layer, ...]:
    """avgpool + fc, optionally after bn + relu, with flatten / dropout between; or nothing."""
    form = draw(st.sampled_from(list(forms) + (["none"] if allow_none else [])))
    if form == "none":
        return ()
    labels = draw(st.booleans())
    n = draw(st.integers(1, 1000))
    bias = draw(st.booleans()) or draw(st.booleans())
    fc = FC(n, bias, "fc" if labels else None)
    if form == "flatten_only":
        return (Flatten(), fc)
    pool = AvgPool(label="avgpool" if labels else None)
    mid: list[Layer] = {"pool_fc": [], "preact": [], "flatten": [Flatten()],
                        "dropout": [Dropout(draw(st.sampled_from([0.5, 0.2, 0.0, 1.0])))],
                        "flatten_dropout": [Flatten(), Dropout(0.5)]}[form]
    pre: list[Layer] = [BN(), ReLU()] if form == "preact" else []
    return tuple(pre + [pool] + mid + [fc])


@st.composite
def block_defs(draw, name: str, shortcut: str = "projection",
               orderings: tuple[str, ...] = ORDERINGS) -> BlockDef:
    """A generated block definition named `name`, with the given shortcut kind and one of
    the given unit orderings."""
    kind = draw(st.sampled_from(["basic", "bottleneck", "single"]))
    ordering = draw(st.sampled_from(orderings))
    b = BlockDef(
        name=name, kind=kind, ordering=ordering, shortcut=shortcut,
        stride_on=draw(st.sampled_from(["3x3", "1x1"])) if kind == "bottleneck" else "3x3",
        expansion=draw(st.sampled_from([4, 4, 2, 1])) if kind == "bottleneck" else 1,
        dilation=draw(st.sampled_from([1, 1, 1, 2, 3])),
        shared_preact=ordering in ("relu_preact", "full_preact") and draw(st.booleans()),
        zero_init=draw(st.booleans()),
        custom_bn=draw(st.booleans()) or draw(st.booleans()),
    )
    post = block_layers(b)[2]
    return replace(b, merge_line=bool(post) or draw(st.booleans()))


@st.composite
def block_args(draw, b: BlockDef, stride: int, channels: Optional[int] = None) -> Args:
    """A block's arguments; `channels` (the input's) makes keeping the width likelier."""
    choices = [4, 8, 16, 32, 64]
    e = b.expansion if b.kind == "bottleneck" else 1
    if channels is not None and channels % e == 0 and draw(st.booleans()):
        choices = [channels // e]
    planes = draw(st.sampled_from(choices))
    groups = draw(st.sampled_from([1, 1, 2, 4, 8, 32]))
    # mid = planes * width / 64 * groups must divide exactly
    widths = [w for w in (4, 8, 16, 32, 64, 128) if planes * w % 64 == 0]
    width = draw(st.sampled_from(widths)) if draw(st.booleans()) else 64
    return Args(planes, stride, groups, width)


_DEF_NAMES = [f"block{c}" for c in "abcdefghij"]


def _valid(spec: NetSpec) -> bool:
    return spec.error() is None


@st.composite
def specs(draw, min_stages: int = 1, max_stages: int = 4, max_blocks: int = 3,
          std: bool = True, loose: bool = True, head: bool = True,
          shortcuts: tuple[str, ...] = SHORTCUTS, orderings: tuple[str, ...] = ORDERINGS,
          head_forms: tuple[str, ...] = HEAD_FORMS) -> NetSpec:
    """Valid network specs.

    min_stages / max_stages / max_blocks  the stage structure (1-4 stages of 1-3 blocks)
    std        allow blocks from std.res (`use std`; slower to check: std.res is parsed)
    loose      allow loose layers and blocks used as statements between the stages
    head       allow a head (else the output is the last feature map)
    shortcuts  the shortcut kinds blocks may use (std blocks included)
    orderings  the unit orderings (ORDERINGS) blocks may use (std blocks included)
    head_forms the head layouts to draw from (HEAD_FORMS)
    """
    kinds = dict(shortcuts=shortcuts, orderings=orderings)
    inp = draw(input_shapes())
    items: list[Item] = []
    stem = draw(stems())
    if stem:
        items.append(Stem(stem))
    base = dict(input=inp, network=draw(st.sampled_from(["net", "model", "cifar_net"])),
                template=draw(st.booleans()), compact=draw(st.booleans()),
                dims_literal=draw(st.booleans()))
    spec = NetSpec(items=tuple(items), **base)
    assume(_valid(spec))
    defs: list[BlockDef] = []
    n_stages = draw(st.integers(min_stages, max_stages))
    for i in range(n_stages):
        if loose and draw(st.integers(0, 5)) == 0:
            spec = _add_loose(draw, spec, defs, kinds)
        stride = draw(st.sampled_from([1, 2])) if i else draw(st.sampled_from([1, 1, 2]))
        stage = _draw_stage(draw, spec, defs, f"layer{i + 1}", stride, max_blocks, std, kinds)
        spec = replace(spec, items=spec.items + (stage,))
        if not stage.block.std and stage.block not in defs:
            defs.append(stage.block)
    if loose and draw(st.integers(0, 5)) == 0:
        spec = _add_loose(draw, spec, defs, kinds)
    if head:
        h = draw(heads(forms=head_forms))
        if h:
            spec = replace(spec, items=spec.items + (Head(h),))
    assume(_valid(spec))
    return spec


def _fits(b: BlockDef, kinds: dict) -> bool:
    return b.shortcut in kinds["shortcuts"] and b.ordering in kinds["orderings"]


def _draw_stage(draw, spec: NetSpec, defs: list[BlockDef], name: str, stride: int,
                max_blocks: int, std: bool, kinds: dict) -> Stage:
    count = draw(st.integers(1, max_blocks))
    channels = spec.expect().output_shape[0]
    source = draw(st.sampled_from(["new", "new", "new", "reuse", "std"]))
    std_names = sorted(k for k, b in STD_BLOCKS.items() if _fits(b, kinds))
    if source == "std" and std and std_names:
        b = STD_BLOCKS[draw(st.sampled_from(std_names))]
        args = draw(block_args(b, stride, channels))
        stage = Stage(name, b, count, args)
        if _valid(replace(spec, items=spec.items + (stage,))):
            return stage
    if source == "reuse" and defs:
        b = draw(st.sampled_from(defs))
        args = draw(block_args(b, stride, channels))
        stage = Stage(name, b, count, args)
        if _valid(replace(spec, items=spec.items + (stage,))):
            return stage
    b = draw(block_defs(_fresh_name(spec, defs), orderings=kinds["orderings"]))
    args = draw(block_args(b, stride, channels))
    fitting = [k for k in kinds["shortcuts"]
               if _valid(replace(spec, items=spec.items + (Stage(name, replace(b, shortcut=k),
                                                                    count, args),)))]
    assume(fitting)
    b = replace(b, shortcut=draw(st.sampled_from(fitting)))
    if b.shortcut == "none":
        b = replace(b, merge_line=False)
    return Stage(name, b, count, args)


FAMILIES = ("mixed", "plain", "preact", "original")


@st.composite
def nets(draw, family: Optional[str] = None, **options) -> NetSpec:
    """Valid specs of one family: `mixed` (anything `specs` makes), `plain` (no shortcuts:
    the paper's plain nets), `preact` (full pre-activation units, bn + relu in the head) or
    `original` (the 2015 unit with every shortcut kind but none); `options` go to `specs`."""
    family = family or draw(st.sampled_from(FAMILIES))
    kw: dict = {"mixed": {},
                "plain": dict(shortcuts=("none",), orderings=("original",)),
                "preact": dict(orderings=("full_preact",), head_forms=("preact",),
                               shortcuts=tuple(k for k in SHORTCUTS if k != "none")),
                "original": dict(orderings=("original",),
                                 shortcuts=tuple(k for k in SHORTCUTS if k != "none")),
                }[family]
    return draw(specs(**{**kw, **options}))


def _fresh_name(spec: NetSpec, defs: list[BlockDef]) -> str:
    used = {b.name for b in defs} | {b.name for b in spec.blocks}
    return next(n for n in _DEF_NAMES if n not in used)


@st.composite
def _loose_item(draw, spec: NetSpec, defs: list[BlockDef], kinds: dict) -> Item:
    form = draw(st.sampled_from(["relu", "bn", "dropout", "conv", "pool", "block"]))
    if form == "relu":
        return Loose(ReLU())
    if form == "bn":
        return Loose(BN())
    if form == "dropout":
        return Loose(Dropout(0.1))
    if form == "conv":
        return Loose(Conv(draw(st.sampled_from(_WIDTHS)), draw(st.sampled_from([(1, 1), (3, 3)]))))
    if form == "pool":
        return Loose(draw(st.sampled_from([MaxPool((2, 2)), AvgPool((2, 2)),
                                           AvgPool((3, 3), (2, 2), ceil_mode=True),
                                           AvgPool((3, 3), (2, 2), (1, 1), False, False)])))
    b = defs[-1] if defs and draw(st.booleans()) else draw(
        block_defs(_fresh_name(spec, defs), draw(st.sampled_from(kinds["shortcuts"])),
                   kinds["orderings"]))
    if b.shortcut == "none":
        b = replace(b, merge_line=False)
    return LooseBlock(b, draw(block_args(b, draw(st.sampled_from([1, 2])))),
                      draw(st.sampled_from([None, None, "extra"])))


def _add_loose(draw, spec: NetSpec, defs: list[BlockDef], kinds: dict) -> NetSpec:
    item = draw(_loose_item(spec, defs, kinds))
    new = replace(spec, items=spec.items + (item,))
    if _label_clash(new) or not _valid(new):
        return spec
    if isinstance(item, LooseBlock) and not item.block.std and item.block not in defs:
        defs.append(item.block)
    return new


def _label_clash(spec: NetSpec) -> bool:
    """Two top-level names alike (a label repeated): not what a valid spec may contain."""
    labels = [it.label for it in spec.items if isinstance(it, LooseBlock) and it.label]
    for it in spec.items:
        if isinstance(it, (Stem, Head)):
            labels += [L.label for L in it.layers if L.label]
    return len(labels) != len(set(labels))


# ---- strategies: invalid specs -------------------------------------------------------------

INVALID_VARIATIONS: dict[str, str] = {
    "groups": "E401",           # channels not divisible by groups
    "spatial": "E402",          # a kernel larger than the (shrunken) input
    "pool_padding": "E403",     # pool padding more than half the kernel
    "flat": "E404",             # a feature-map layer after flatten
    "fc_unpooled": "E405",      # fc on a map larger than 1x1
    "custom_mismatch": "E406",  # a custom shortcut that does not match the residual
    "identity": "E407",         # shortcut identity where the residual changes the shape
    "pad_reduce": "E407",       # shortcut pad where the residual reduces channels
}


@dataclass(frozen=True)
class InvalidSpec:
    """A spec with one deliberate mistake, and what resdsl must say about it."""

    spec: NetSpec
    code: str
    variation: str

    @property
    def text(self) -> str:
        return self.spec.text

    @property
    def line(self) -> Optional[int]:
        """The line of the statement the error must point at (None: not in this text)."""
        err = self.spec.error()
        assert err is not None
        return self.spec.lines.get(err.key) if err.key else None


def _insert(spec: NetSpec, pos: int, *new: Item) -> NetSpec:
    return replace(spec, items=spec.items[:pos] + tuple(new) + spec.items[pos:])


def _positions(spec: NetSpec) -> list[int]:
    """Top-level insertion points: after the stem, before the head."""
    lo = 1 if spec.items and isinstance(spec.items[0], Stem) else 0
    hi = len(spec.items) - (1 if spec.items and isinstance(spec.items[-1], Head) else 0)
    return list(range(lo, hi + 1))


def _shape_at(spec: NetSpec, pos: int) -> Shape:
    return replace(spec, items=spec.items[:pos], template=False).expect().output_shape


@st.composite
def invalid_specs(draw, variations: tuple[str, ...] = tuple(INVALID_VARIATIONS)) -> InvalidSpec:
    """A valid spec (std blocks left out, so every span lies in the text) with one mistake."""
    var = draw(st.sampled_from(variations))
    spec = draw(specs(std=False, max_stages=3, max_blocks=2))
    pos = draw(st.sampled_from(_positions(spec)))
    c, *hw = _shape_at(spec, pos)
    h, w = hw
    out = draw(st.sampled_from(_WIDTHS))
    if var == "groups":
        g = draw(st.sampled_from([2, 3, 4, 5, 8]))
        out = g * draw(st.integers(1, 8)) + draw(st.integers(1, g - 1))
        bad = _insert(spec, pos, Loose(Conv(out, (3, 3), groups=g)))
    elif var == "spatial":
        k = min(h, w) + draw(st.integers(1, 3))
        form = draw(st.sampled_from(["conv", "maxpool", "avgpool", "dilated", "tall"]))
        layer = {
            "conv": Conv(out, (k, k), padding=(0, 0)),
            "maxpool": MaxPool((k, k), padding=(0, 0)),
            "avgpool": AvgPool((k, k), (1, 1), (0, 0)),
            "dilated": Conv(out, (3, 3), padding=(0, 0), dilation=min(h, w) // 2 + 1),
            "tall": Conv(out, (h + 1, 1), padding=(0, 0)),
        }[form]
        bad = _insert(spec, pos, Loose(layer))
    elif var == "pool_padding":
        k = draw(st.integers(1, 5))
        p = k // 2 + draw(st.integers(1, 2))
        cls = draw(st.sampled_from([MaxPool, AvgPool]))
        bad = _insert(spec, pos, Loose(cls((k, k), padding=(p, p))))
    elif var == "flat":
        after = draw(st.sampled_from([BN(), Conv(out, (1, 1)), MaxPool((2, 2)), AvgPool()]))
        bad = _insert(spec, pos, Loose(Flatten()), Loose(after))
    elif var == "fc_unpooled":
        if (h, w) == (1, 1):
            pos, (h, w) = 0, spec.input[1:]
        bad = _insert(spec, pos, Loose(FC(draw(st.integers(1, 100)))))
    elif var == "custom_mismatch":
        b = draw(block_defs("blockbad", "custom"))
        if (h, w) != (1, 1) and draw(st.booleans()):
            b, args = replace(b, custom_stride=False), draw(block_args(b, 2))
        else:
            wrong = "double" if b.out_symbol == "planes" else "planes"
            b, args = replace(b, custom_out=wrong), draw(block_args(b, 1))
            if b.kind == "bottleneck" and b.expansion == 1:
                b = replace(b, expansion=4)
        bad = _insert(spec, pos, Stage("bad", b, draw(st.integers(1, 2)), args))
    elif var == "identity":
        b = draw(block_defs("blockbad", "identity"))
        args = draw(block_args(b, draw(st.sampled_from([1, 2]))))
        bad = _insert(spec, pos, Stage("bad", b, draw(st.integers(1, 2)), args))
    else:  # pad_reduce
        assume(c >= 2)
        b = replace(draw(block_defs("blockbad", "pad")), kind="basic", stride_on="3x3",
                    expansion=1)
        b = replace(b, merge_line=b.merge_line or bool(block_layers(b)[2]))
        args = Args(draw(st.integers(1, c - 1)), draw(st.sampled_from([1, 2])))
        bad = _insert(spec, pos, Stage("bad", b, 1, args))
    err = bad.error()
    assume(err is not None and err.code == INVALID_VARIATIONS[var])
    return InvalidSpec(bad, err.code, var)


# ---- strategies: damaged texts -------------------------------------------------------------

_JUNK_TOKENS = ["0", "-1", "1.5", "2", "1000000000000", "99999999999999999999999", "x", "3x3",
                "1x1x1", "true", "[1, 2]", "planes", "stride", "(", ")", "{", "}", ";", ",",
                "=", "//", "/ 0", "residual", "shortcut", "merge", "stage", "std", "\"",
                "input", "head", "#", "\\"]
_JUNK_LINES = ["conv 0, 3x3", "conv 8, 0x3", "conv 8, 3x3, stride = 0", "conv 8, 3x3, groups = 3",
               "conv 8, 3x3, dilation = 40, padding = 0", "conv 8, 99x99", "conv 8, 3x3x3",
               "maxpool 3x3, padding = 2", "maxpool 1x1, stride = 0", "avgpool 9x9",
               "avgpool 0x0", "fc 10", "fc 0", "fc 10, bias = 3", "flatten", "bn", "bn(zero_init)",
               "dropout 1.5", "dropout -1", "relu 3", "relu: relu", "conv1: conv 8, 3x3",
               "shortcut identity", "shortcut pad", "shortcut projection(always)",
               "shortcut nonsense", "merge add", "merge mul", "residual { relu }",
               "stage s = 0 x basic(8)", "stage s = 2 x relu(8)", "input 3 x 8 x 8",
               "input 0 x 8 x 8", "blocka 8", "blocka(8, stride = 2)", "use std",
               "use \"nosuch.res\"", "x = 1 / 0", "x = [1, 2][5]", "block q(a) { q a }",
               "network bad = nosuch(1)", "stem { conv 8, 3x3 }", "head { fc 3 }"]


@st.composite
def mutated_texts(draw, max_mutations: int = 3) -> str:
    """A valid spec's text with 1..max_mutations random edits: tokens replaced, lines deleted,
    duplicated, swapped or inserted, the text cut short. Usually invalid; never a crash."""
    text = draw(specs(std=draw(st.integers(0, 4)) == 0, max_stages=3, max_blocks=2)).text
    for _ in range(draw(st.integers(1, max_mutations))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["token", "token", "delete", "dup", "swap", "insert", "cut"]))
        i = draw(st.integers(0, len(lines) - 1))
        if op == "token":
            words = lines[i].split(" ")
            j = draw(st.integers(0, len(words) - 1))
            words[j] = draw(st.sampled_from(_JUNK_TOKENS))
            lines[i] = " ".join(words)
        elif op == "delete":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            lines.insert(i, "  " + draw(st.sampled_from(_JUNK_LINES)))
        text = "\n".join(lines)
        if op == "cut":
            text = text[:draw(st.integers(0, len(text)))]
    return text
