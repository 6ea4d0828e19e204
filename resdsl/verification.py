"""`resdsl verify`: which input sizes a network accepts, found statically, then checked
against PyTorch at sizes hypothesis draws (`resdsl.verify`; resdsl/testing.py builds on it).

Static part, torch-free. A network's structure never depends on its input size (shortcuts
are chosen by stride and channels, docs/language.md section 7), so it is built once and the
op table's shape rules (resdsl/ops.py) are replayed at every size of the range (`Replay`).
Every rule treats H and W apart or as a conjunction (a window per axis; an add that wants
equal shapes; fc, channel_conv and a gate that want 1x1) except a `mul` where neither input
is a 1x1 gate, so one scan per axis gives the accepted sizes as an H set times a W set (one
scan in all where every attribute is square); a network with a `mul` that mixes the axes is
scanned over the whole grid. The smallest refused sizes are built again by the real builder
for its located error.

PyTorch part (torch and hypothesis): for drawn (batch, H, W) the network is compiled and
built for that size and run under no_grad in eval and in train; forward hooks on the module
of every lowered op compare its real inputs and output with the inferred shapes, and the
module's parameters and buffers are compared with the summary's. PyTorch refuses a batch
with one value per channel in a BN (training) or per group in a GN (`_verify_batch_size`);
where the shapes say so, PyTorch must refuse it.

(The module is not named verify.py: importing a submodule sets the package's attribute of
its name, which would hide the function `resdsl.verify`.)
"""
from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from math import isqrt, prod
from typing import TYPE_CHECKING, Any

from .errors import LimitError, Renderer, ResdslError, ShapeError
from .limits import MAX_LAYERS, MAX_MACS, MAX_PARAMS

if TYPE_CHECKING:
    from pathlib import Path

    from .limits import Limits
    from .loader import Program

Shape = tuple[int, ...]
DEFAULT_SIZES = (1, 256)     # H and W checked statically, and drawn from for PyTorch
DEFAULT_EXAMPLES = 20        # hypothesis examples per network
DEFAULT_BATCH = (1, 2)        # batch 1 meets PyTorch's one-value rule; more adds nothing
MAX_SIZE = 100_000           # the largest H or W a range may reach
MAX_PAIRS = 250_000          # the (H, W) pairs checked where H and W meet in a mul (500 sizes)
MAX_PERIOD = 64              # the longest period a size rule is looked for with
REFUSAL_REASONS = 3          # the smallest refused sizes shown, one per failing layer
# PyTorch's wording when a norm layer sees one value per channel (F._verify_batch_size)
ONE_VALUE = "Expected more than 1 value per channel"


def inputs(g: Any, v: str) -> list[str]:
    """v's inputs in port order (0: the main input or residual branch, 1: the shortcut)."""
    return sorted(g.predecessors(v), key=lambda u: g.edges[u, v].get("port", 0))


class Replay:
    """A shaped graph's shape rules in node order, to run again at another input size: the
    shape inference of resdsl/ops.py without building anything."""

    def __init__(self, g: Any):
        from .ops import OPS

        self.names = list(g.nodes)
        index = {v: i for i, v in enumerate(self.names)}
        self.ops = [g.nodes[v]["op"] for v in self.names]
        self.attrs = [g.nodes[v]["attrs"] for v in self.names]
        self.spans = [g.nodes[v]["span"] for v in self.names]
        self.inputs = [tuple(index[u] for u in inputs(g, v)) for v in self.names]
        self.rules = [OPS[op].shape for op in self.ops]
        assert OPS[self.ops[0]].kind == "io" and all(
            j < i for i, ins in enumerate(self.inputs) for j in ins), "not in topological order"

    def shapes(self, input_shape: Shape) -> list[Shape]:
        """Every node's shape for this input (C, H, W), in node order; a ShapeError naming
        the node (`.node`) where a rule refuses it."""
        out = [tuple(input_shape)]
        for i in range(1, len(self.names)):
            try:
                out.append(self.rules[i](self.attrs[i], [out[j] for j in self.inputs[i]]))
            except ShapeError as e:
                e.node, e.span = self.names[i], e.span or self.spans[i]  # type: ignore[attr-defined]
                raise
        return out

    def shape_map(self, input_shape: Shape) -> dict[str, Shape]:
        """`shapes` by node name."""
        return dict(zip(self.names, self.shapes(input_shape)))


def norm_values(op: str, attrs: dict[str, Any], shape: Shape) -> tuple[int, bool] | None:
    """(values per channel or group at batch 1, whether PyTorch checks only in training) of a
    norm layer: F.batch_norm refuses one value per channel in training, F.group_norm one per
    group always (`_verify_batch_size`); None for other ops."""
    if op in ("bn", "bn_act") and len(shape) == 3:
        return shape[1] * shape[2], True
    if op == "gn" and len(shape) == 3:
        from .ops import gn_groups
        return shape[0] // gn_groups(attrs, shape[0]) * shape[1] * shape[2], False
    return None


def refused_batch(nodes: Iterable[tuple[str, str, dict, Shape]], batch: int,
                  training: bool) -> str | None:
    """The first of (name, op, attrs, shape) PyTorch refuses at this batch (`norm_values`)."""
    for v, op, a, s in nodes:
        n = norm_values(op, a, s)
        if n is not None and batch * n[0] == 1 and (training or not n[1]):
            return v
    return None


# ---- the static scan -----------------------------------------------------------------------

@dataclass
class _Watch:
    """What a scan records of each accepted size: the output, the last feature map, flatten
    outputs (an fc's parameters follow them), whether each mul input is 1 on the axis, and
    which norm layers that could see one value per channel do (as bits)."""

    feature: int | None
    feature_channels: int
    flats: list[int]
    gates: list[tuple[int, ...]]
    norms: list[int]
    always: int = 0   # (bits of norms) those PyTorch refuses at one value in eval too (a GN)

    @classmethod
    def of(cls, r: Replay, shapes: list[Shape]) -> _Watch:
        """The nodes to watch, chosen at one accepted size (`shapes`): the feature map is
        the last node that is neither the output nor 1x1; the norm layers those whose
        values per channel at batch 1 are just their H x W (a BN; a GN of single channels)."""
        maps = [i for i, s in enumerate(shapes[:-1]) if len(s) == 3 and s[1:] != (1, 1)]
        values = [norm_values(r.ops[i], r.attrs[i], s) for i, s in enumerate(shapes)]
        norms = [i for i, s in enumerate(shapes)
                 if (values[i] or (0,))[0] == prod(s[1:]) > 0]
        always = sum(1 << k for k, i in enumerate(norms) if not values[i][1])
        feature = maps[-1] if maps else None
        return cls(feature, 0 if feature is None else shapes[feature][0],
                   [i for i, op in enumerate(r.ops) if op == "flatten"],
                   [r.inputs[i] for i, op in enumerate(r.ops) if op == "mul"], norms, always)


@dataclass
class _Seen:
    output: Shape
    feature: int | None
    flats: tuple
    gates: tuple[tuple[bool, ...], ...]
    ones: int                      # bit k: norm k has size 1 on this axis


def _scan(r: Replay, watch: _Watch, make: Callable[[int], Shape], axis: int,
          sizes: Iterable[int]) -> dict[int, _Seen | str]:
    """size -> what it gives, or the node that refuses it, along one axis."""
    out: dict[int, _Seen | str] = {}
    for n in sizes:
        try:
            s = r.shapes(make(n))
        except ShapeError as e:
            out[n] = e.node  # type: ignore[attr-defined]
            continue
        out[n] = _Seen(s[-1], None if watch.feature is None else s[watch.feature][axis],
                       tuple(s[i] for i in watch.flats),
                       tuple(tuple(len(s[j]) == 3 and s[j][axis] == 1 for j in ins)
                             for ins in watch.gates),
                       sum(1 << k for k, i in enumerate(watch.norms) if s[i][axis] == 1))
    return out


def _square(r: Replay) -> bool:
    """Whether every attribute is square (kernels, strides, paddings, dilations), so H and W
    behave alike and one scan of n x n covers both."""
    return all(not (isinstance(x, tuple) and len(x) == 2 and x[0] != x[1])
               for a in r.attrs for x in a.values())


def _separable(h: dict[int, _Seen | str], w: dict[int, _Seen | str], gates: int) -> bool:
    """Whether every mul has an input that is 1x1 at every accepted size (a gate), the one
    rule that could tie H to W."""
    seen = [s for s in (*h.values(), *w.values()) if isinstance(s, _Seen)]
    return all(any(all(s.gates[m][q] for s in seen) for q in range(len(seen[0].gates[m])))
               for m in range(gates)) if seen else True


# ---- describing sets of sizes --------------------------------------------------------------

def _intervals(values: Sequence[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _periodic_from(members: set[int], lo: int, hi: int, p: int) -> int:
    """The smallest t >= lo from which membership repeats with period p up to hi."""
    t = hi - p
    while t >= lo and (t in members) == (t + p in members):
        t -= 1
    return max(lo, t + 1)


def size_rule(values: Iterable[int], lo: int, hi: int):
    """(intervals below the periodic part, (its first member, period, residues) or None): the
    description with the fewest intervals, then the shortest period."""
    members = set(values)
    best = None
    for p in range(1, max(1, min(MAX_PERIOD, (hi - lo + 1) // 2)) + 1):
        t = _periodic_from(members, lo, hi, p)
        tail = sorted(v for v in members if v >= t)
        head = _intervals(sorted(v for v in members if v < t))
        key = (len(head), p)
        if best is None or key < best[0]:
            best = (key, head, (tail[0], p, frozenset(v % p for v in tail)) if tail else None)
    assert best is not None
    return best[1], best[2]


def _kind(p: int, residues: frozenset[int]) -> str:
    """`even`, `odd`, `multiples of 4`, `≡ 31..34 (mod 32)`: the periodic part's condition."""
    if p == 2:
        return "even" if residues == {0} else "odd"
    if residues == {0}:
        return f"multiples of {p}"
    return f"≡ {' or '.join(_residue_runs(p, residues))} (mod {p})"


def _residue_runs(p: int, residues: frozenset[int]) -> list[str]:
    """Residues mod p as runs, one may wrap past p: {31, 0, 1, 2} mod 32 is `31..34`."""
    start = next((r for r in sorted(residues) if (r - 1) % p not in residues), None)
    if start is None:
        return [f"0..{p - 1}"]
    runs, r = [], start
    for _ in range(p):
        if r % p in residues:
            if runs and runs[-1][1] == r - 1:
                runs[-1][1] = r
            else:
                runs.append([r, r])
        r += 1
    return [f"{a}..{b}" if b > a else str(a) for a, b in runs]


def _head(head: list[tuple[int, int]]) -> str:
    if len(head) == 1 and head[0][0] == 1 and head[0][1] > 1:
        return f"≤ {head[0][1]}"
    if len(head) == 1 and head[0][0] == head[0][1]:
        return f"= {head[0][0]}"
    shown = [f"{a}..{b}" if b > a else str(a) for a, b in head[:5]]
    return "in " + ", ".join(shown) + (", …" if len(head) > 5 else "")


def describe(values: Iterable[int], lo: int, hi: int, names: Sequence[str]) -> str:
    """A set of sizes as a person reads it: `any H, W ≥ 1`, `H and W even, ≥ 4`, `H ≤ 32`."""
    values = sorted(values)
    subject = " and ".join(names)
    if not values:
        return f"no {', '.join(names)} in {lo}..{hi}"
    head, tail = size_rule(values, lo, hi)
    if not head:
        m, p, residues = tail
        if p == 1:
            return f"any {', '.join(names)} ≥ {m}"
        return f"{subject} {_kind(p, residues)}, ≥ {m}"
    text = f"{subject} {_head(head)}"
    if tail:
        m, p, residues = tail
        text += f", or ≥ {m}" if p == 1 else f", or {_kind(p, residues)} ≥ {m}"
    return text


def _listed(values: Sequence[int], limit: int = 6) -> str:
    shown = ", ".join(map(str, values[:limit]))
    return shown + (", …" if len(values) > limit else "")


# ---- the output size as a function of the input --------------------------------------------

def formula(points: Iterable[tuple[int, int]], var: str) -> str | None:
    """The simplest `floor((var + c) / s)` through every (x, y), as text (`ceil(H/32)`,
    `H/4`, `H - 2`, `7`), or None when there is none: a power-of-two s first (strides
    multiply), then exact division, ceil, floor, any offset; then the smaller s."""
    pts = sorted(set(points))
    ys = {y for _, y in pts}
    if len(ys) == 1:
        return str(ys.pop())
    top = max(x for x, _ in pts)
    fits = []
    for s in sorted(set(range(1, min(top, 128) + 1)) | {2 ** k for k in range(top.bit_length())}):
        c = _offsets(pts, s)
        if c is not None:
            text = _floor_text(var, s, *c)
            rank = 0 if "/" in text and "(" not in text else 1 if s == 1 or text.startswith(
                ("ceil(", "floor(" + var)) else 2
            fits.append(((s & (s - 1) != 0, rank, s), text))
    return min(fits)[1] if fits else None


def _offsets(pts: list[tuple[int, int]], s: int) -> tuple[int, int] | None:
    """The c with floor((x + c) / s) = y at every point, as an interval, or None:
    s*y - x <= c <= s*y - x + s - 1."""
    lo, hi = -(10 ** 18), 10 ** 18
    for x, y in pts:
        lo, hi = max(lo, s * y - x), min(hi, s * y - x + s - 1)
        if lo > hi:
            return None
    return lo, hi


def _floor_text(var: str, s: int, lo: int, hi: int) -> str:
    if s == 1:
        c = 0 if lo <= 0 <= hi else lo
        return var if c == 0 else f"{var} {'+' if c > 0 else '-'} {abs(c)}"
    if lo <= 0 and s - 1 <= hi:
        return f"{var}/{s}"
    if lo <= s - 1 <= hi:
        return f"ceil({var}/{s})"
    if lo <= 0 <= hi:
        return f"floor({var}/{s})"
    c = min(range(lo, hi + 1), key=abs)
    return f"floor(({var} {'+' if c > 0 else '-'} {abs(c)})/{s})"


# ---- what one network accepts --------------------------------------------------------------

@dataclass
class Refusal:
    """A refused input size with the builder's located error for it."""

    shape: tuple[int, int, int]
    error: ResdslError


@dataclass
class Sizes:
    """The input sizes one network accepts over a range, found statically: `accepts(h, w)`,
    the accepted H and W (`pairs` where they are not a product), a readable `rule`, the
    smallest refused sizes with their reasons, and the output size as a function of H, W."""

    network: str
    channels: int
    lo: int
    hi: int
    h: tuple[int, ...]
    w: tuple[int, ...]
    pairs: frozenset[tuple[int, int]] | None
    rule: str
    refused: str | None
    refusals: list[Refusal]
    output: str
    feature: str | None
    batch_one: list[str]
    counts: str
    replay: Replay = field(repr=False)
    sources: dict[str, str] = field(repr=False, default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every H, W of the range is accepted."""
        return self.refused is None

    def accepts(self, h: int, w: int) -> bool:
        """Whether the network accepts an H x W input (of the range)."""
        if self.pairs is not None:
            return (h, w) in self.pairs
        return h in self._h and w in self._w

    @functools.cached_property
    def _h(self) -> frozenset[int]:
        return frozenset(self.h)

    @functools.cached_property
    def _w(self) -> frozenset[int]:
        return frozenset(self.w)

    def min_batch(self, h: int, w: int, training: bool = False) -> int:
        """The smallest batch PyTorch runs at this size: 2 where a norm layer would see one
        value per channel at batch 1 (a BN in training, a GN with one channel per group)."""
        r = self.replay
        shapes = r.shapes((self.channels, h, w))
        return 2 if refused_batch(zip(r.names, r.ops, r.attrs, shapes), 1, training) else 1

    def lines(self, color: bool = False) -> list[str]:
        """The report, one line per finding (the refusals' errors rendered with their spec
        lines, indented)."""
        head = (f"{self.network}: input {self.channels} x H x W, every H, W in "
                f"{self.lo}..{self.hi} checked statically ({self.seconds:.2f} s)")
        out = [head, f"  accepts: {self.rule}"]
        if self.refused:
            out.append(f"  rejects: {self.refused}")
            render = Renderer(dict(self.sources), color=color).render
            for r in self.refusals:
                out.append(f"  at {'x'.join(map(str, r.shape))}:")
                out += ["    " + line for line in render(r.error).split("\n")]
        out.append(f"  output: {self.output}")
        if self.feature:
            out.append(f"  last feature map: {self.feature}")
        out.append(f"  {self.counts}")
        out += [f"  {line}" for line in self.batch_one]
        return out


def analyse(program: Program, name: str, sizes: tuple[int, int] = DEFAULT_SIZES,
            limits: Limits | None = None, overrides: dict[str, Any] | None = None) -> Sizes:
    """Which H, W in sizes[0]..sizes[1] network `name` accepts, and what it gives there."""
    from .limits import Limits

    start = time.perf_counter()
    net, draft = _shaped(program, name, limits or Limits(), overrides, *sizes)
    found = accepted_sizes(net, draft, sizes, program.sources)
    found.seconds = time.perf_counter() - start
    return found


def accepted_sizes(net: Any, draft: Any, sizes: tuple[int, int] = DEFAULT_SIZES,
                   sources: dict[str, str] | None = None) -> Sizes:
    """`analyse` of a network elaborated and shaped once, at any size it accepts (its
    graph's structure is the same at every size)."""
    start = time.perf_counter()
    lo, hi = sizes
    r = Replay(draft)
    c, h0, w0 = draft.graph["input"]
    watch = _Watch.of(r, r.shapes((c, h0, w0)))
    span = range(lo, hi + 1)
    if _square(r):
        h = w = _scan(r, watch, lambda n: (c, n, n), 1, span)
    else:
        h = _scan(r, watch, lambda n: (c, n, w0), 1, span)
        w = _scan(r, watch, lambda n: (c, h0, n), 2, span)
    if _separable(h, w, len(watch.gates)):
        found = _product(r, watch, net, net.name, c, (h0, w0), lo, hi, h, w)
    else:
        _bound_pairs(net, lo, hi)
        found = _grid(r, net, net.name, c, lo, hi)
    found.sources = dict(sources or {})
    found.seconds = time.perf_counter() - start
    return found


def _shaped(program: Program, name: str, limits: Limits, overrides: dict[str, Any] | None,
            lo: int, hi: int):
    """(the network elaborated, its graph draft) at its own input size, or at another size
    of the range where its own is refused; the spec's error where none is accepted."""
    from .pipeline import check_program

    first: ResdslError | None = None
    for shape in (None, hi, (lo + hi) // 2, lo):
        try:
            size = None if shape is None else (_channels(program, name, overrides, limits),
                                               shape, shape)
            checked = check_program(program, [name], overrides, size, limits)
            return checked.networks[name], checked.drafts[name]
        except ResdslError as e:
            first = first or e
            if not all(x.code.startswith("E4") for x in e.errors):
                raise
    assert first is not None
    raise first


def _channels(program: Program, name: str, overrides: dict[str, Any] | None,
              limits: Limits) -> int:
    """The network's input channels, from its `input` line."""
    from .elaborate import elaborate
    return elaborate(program, name, overrides, limits.max_layers).input[0]


def _product(r: Replay, watch: _Watch, net, name: str, c: int, own: tuple[int, int],
             lo: int, hi: int, h: dict, w: dict) -> Sizes:
    """The report where the accepted sizes are the accepted H times the accepted W."""
    square = h is w
    ah = tuple(n for n, s in h.items() if isinstance(s, _Seen))
    aw = tuple(n for n, s in w.items() if isinstance(s, _Seen))
    rh = [n for n, s in h.items() if isinstance(s, str)]
    rw = [n for n, s in w.items() if isinstance(s, str)]
    if square:
        rule = describe(ah, lo, hi, ("H", "W"))
        refused = f"H, W = {_listed(rh)} ({len(rh)} of {hi - lo + 1})" if rh else None
        shapes = [((c, n, n), h[n]) for n in rh]
    else:
        rules = [describe(ah, lo, hi, ("H",)), describe(aw, lo, hi, ("W",))]
        rule = "; ".join(rules)
        parts = [f"{k} = {_listed(v)} ({len(v)} of {hi - lo + 1})"
                 for k, v in (("H", rh), ("W", rw)) if v]
        refused = "; ".join(parts) or None
        shapes = [((c, n, own[1]), h[n]) for n in rh] + [((c, own[0], n), w[n]) for n in rw]
    seen_h = [(n, h[n]) for n in ah]
    seen_w = [(n, w[n]) for n in aw]
    return Sizes(name, c, lo, hi, ah, aw, None, rule, refused, _refusals(net, shapes),
                 _output(seen_h, seen_w), _feature(r, watch, seen_h, seen_w),
                 _batch_one(r, watch, seen_h, seen_w, square, lo, hi),
                 _counts(seen_h, seen_w), r)


def _bound_pairs(net, lo: int, hi: int) -> None:
    """E508: where H and W meet in a mul every pair is checked, so the range's square is
    bounded (1..100000 would be 10**10 pairs: hours, where a product scan takes seconds)."""
    pairs, most = (hi - lo + 1) ** 2, isqrt(MAX_PAIRS)
    if pairs > MAX_PAIRS:
        raise LimitError(
            f"H and W of '{net.name}' meet in a `merge mul`, so every (H, W) pair is checked: "
            f"sizes {lo}..{hi} are {pairs:,} pairs, more than {MAX_PAIRS:,}", net.span,
            f"check at most {most} sizes, e.g. --sizes {lo}..{lo + most - 1} "
            f"(resdsl.verify: sizes=({lo}, {lo + most - 1}))", code="E508")


def _grid(r: Replay, net, name: str, c: int, lo: int, hi: int) -> Sizes:
    """The report of a network whose H and W interact (a mul of two maps): every pair."""
    ok: dict[tuple[int, int], Shape] = {}
    refused: list[tuple[tuple[int, int, int], str]] = []
    for hh in range(lo, hi + 1):
        for ww in range(lo, hi + 1):
            try:
                ok[hh, ww] = r.shapes((c, hh, ww))[-1]
            except ShapeError as e:
                refused.append(((c, hh, ww), e.node))  # type: ignore[attr-defined]
    ah = tuple(sorted({p[0] for p in ok}))
    aw = tuple(sorted({p[1] for p in ok}))
    rule = "; ".join([describe(ah, lo, hi, ("H",)), describe(aw, lo, hi, ("W",))])
    shown = sorted(refused, key=lambda t: (t[0][1] * t[0][2], t[0]))
    if refused:
        rule += f", not every pair (H and W meet in a mul): {len(refused)} refused"
    out = next(iter(ok.values()), ())
    output = "x".join(map(str, out)) + " (at the first accepted size; H and W interact)"
    return Sizes(name, c, lo, hi, ah, aw, frozenset(ok), rule,
                 f"{len(refused)} of {(hi - lo + 1) ** 2} pairs, e.g. "
                 f"{_listed(['x'.join(map(str, s[1:])) for s, _ in shown], 4)}"
                 if refused else None, _refusals(net, shown), output, None, [],
                 "parameters: see `resdsl summary`", r)


def _refusals(net, refused: list[tuple[tuple[int, int, int], str]]) -> list[Refusal]:
    """The smallest refused sizes, one per refusing spec line, with the builder's located
    error."""
    from .graph import draft_graph

    out, nodes, spans = [], set(), set()
    for shape, node in refused:
        if node in nodes:
            continue
        nodes.add(node)
        try:
            draft_graph(net, shape)
        except ResdslError as e:
            if e.span not in spans:
                spans.add(e.span)
                out.append(Refusal(shape, e))
        else:
            raise AssertionError(f"the scan refuses {shape} at {node}, the builder does not")
        if len(out) == REFUSAL_REASONS:
            break
    return out


def _axis_text(seen: list[tuple[int, _Seen]], pick: Callable[[_Seen], int | None],
               var: str) -> str:
    text = formula([(n, pick(s)) for n, s in seen], var)
    return text or f"(not a simple function of {var})"


def _output(seen_h: list, seen_w: list) -> str:
    """The network's output size as a function of H and W."""
    if not seen_h or not seen_w:
        return "none (no size accepted)"
    out = seen_h[0][1].output
    if len(out) == 3:
        return (f"{out[0]} x {_axis_text(seen_h, lambda s: s.output[1], 'H')} x "
                f"{_axis_text(seen_w, lambda s: s.output[2], 'W')}")
    flat = {s.output for _, s in seen_h + seen_w}
    return str(out[0]) if len(flat) == 1 else "flat, its length varies with H and W"


def _feature(r: Replay, watch: _Watch, seen_h: list, seen_w: list) -> str | None:
    """The last feature map wider than 1x1 (the one a head pools), where the output is
    flat or 1x1."""
    if watch.feature is None or not seen_h or not seen_w or r.inputs[-1] == (watch.feature,):
        return None
    return (f"{r.names[watch.feature]}, {watch.feature_channels} x "
            f"{_axis_text(seen_h, lambda s: s.feature, 'H')} x "
            f"{_axis_text(seen_w, lambda s: s.feature, 'W')}")


def _counts(seen_h: list, seen_w: list) -> str:
    """Parameters and buffers: the same at every size unless a flatten feeds an fc."""
    flats = {s.flats for _, s in seen_h + seen_w}
    if len(flats) > 1:
        return "parameters: they vary with H and W (a flatten feeds an fc)"
    return "parameters and buffers: the same at every size"


def _batch_one(r: Replay, watch: _Watch, seen_h: list, seen_w: list, square: bool,
               lo: int, hi: int) -> list[str]:
    """Where PyTorch refuses batch 1 among the accepted sizes: in training where a BN sees
    one value per channel, and in eval too where a GN of single channels does."""
    lines = []
    for mask, when in (((1 << len(watch.norms)) - 1, "training"), (watch.always, "eval")):
        uh = [(n, s.ones & mask) for n, s in seen_h if s.ones & mask]
        uw = [(n, s.ones & mask) for n, s in seen_w if s.ones & mask]
        if not uh or not uw:
            continue
        (hh, mh), (ww, mw) = uh[-1], uw[-1]
        both = mh & mw or mh
        node = r.names[watch.norms[(both & -both).bit_length() - 1]]
        exact = len(uh) * len(uw) <= 200_000 and all(a & b for _, a in uh for _, b in uw)
        hs, ws = [n for n, _ in uh], [n for n, _ in uw]
        where = (describe(hs, lo, hi, ("H", "W")) if square else
                 f"{describe(hs, lo, hi, ('H',))} and {describe(ws, lo, hi, ('W',))}")
        lines.append(f"{when} at batch 1: PyTorch refuses it where {where}"
                     f"{'' if exact else ' (at some of those sizes)'}: {node} sees one "
                     f"value per channel at {hh}x{ww}; batch ≥ 2 works")
    return lines


# ---- PyTorch's word ------------------------------------------------------------------------

@dataclass
class Mismatch:
    """Where PyTorch and the inferred shapes or counts disagree: the op (None: the model),
    what was compared, PyTorch's value and the inferred one, or the error PyTorch raised."""

    node: str | None
    what: str
    real: Any = None
    inferred: Any = None
    span: Any = None
    error: BaseException | None = None
    mode: str = ""

    def __str__(self) -> str:
        where = f" ({self.span.file.split('/')[-1]}:{self.span.line})" if self.span else ""
        who = f"{self.node}{where}" if self.node else "the model"
        if self.error is not None:
            first = (str(self.error).strip().splitlines() or [""])[0][:200]
            return f"{who}: PyTorch raised {type(self.error).__name__}: {first}"
        return f"{who}: {self.what} is {_shown(self.real)} in PyTorch, {_shown(self.inferred)} " \
               "inferred"


def _shown(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, tuple) else f"{v:,}" if isinstance(v, int) \
        else str(v)


def compare(model: Any, x: Any, g: Any, shapes: dict[str, Shape]) -> Mismatch | None:
    """Run `model` on x (no grad, in its own mode) with hooks on the module of every lowered
    op of `g`: the first real input or output whose shape is not the inferred one (`shapes`,
    for x's size), an op without a module or that never ran, the output, or the error
    PyTorch raised (at the op it raised in)."""
    import torch

    from .ops import OPS

    modules, batch = dict(model.named_modules()), x.shape[0]
    found: list[Mismatch] = []
    running: list[str] = []
    ran: set[str] = set()

    def before(v: str, preds: list[str], flat: bool, module: Any, args: tuple) -> None:
        running.append(v)
        for i, u in enumerate(preds[:len(args)]):
            want = (batch, prod(shapes[u])) if flat else (batch, *shapes[u])
            if isinstance(args[i], torch.Tensor) and tuple(args[i].shape) != want:
                found.append(Mismatch(v, f"input {i}", tuple(args[i].shape), want,
                                      g.nodes[v]["span"]))

    def after(v: str, module: Any, args: tuple, out: Any) -> None:
        running.pop()
        ran.add(v)
        want = (batch, *shapes[v])
        if isinstance(out, torch.Tensor) and tuple(out.shape) != want:
            found.append(Mismatch(v, "output", tuple(out.shape), want, g.nodes[v]["span"]))

    hooked = [v for v, d in g.nodes(data=True) if OPS[d["op"]].torch is not None]
    for v in hooked:
        if v not in modules:
            return Mismatch(v, "module", "missing", f"a module for {g.nodes[v]['op']}",
                            g.nodes[v]["span"])
    handles = []
    error: BaseException | None = None
    try:
        for v in hooked:
            preds, flat = inputs(g, v), OPS[g.nodes[v]["op"]].flatten_input
            handles.append(modules[v].register_forward_pre_hook(
                functools.partial(before, v, preds, flat)))
            handles.append(modules[v].register_forward_hook(functools.partial(after, v)))
        with torch.no_grad():
            try:
                y = model(x)
            except Exception as e:  # noqa: BLE001 - PyTorch's refusal is the finding
                error = e
    finally:
        for h in handles:
            h.remove()
    if found:
        return found[0]
    if error is not None:
        v = running[-1] if running else None
        return Mismatch(v, "error", span=g.nodes[v]["span"] if v else None, error=error)
    never = [v for v in hooked if v not in ran]
    if never:
        return Mismatch(never[0], "run", "never called", "called", g.nodes[never[0]]["span"])
    if isinstance(y, torch.Tensor) and tuple(y.shape) != (batch, *shapes["output"]):
        return Mismatch("output", "output", tuple(y.shape), (batch, *shapes["output"]))
    return None


def model_counts(model: Any) -> dict[str, int]:
    """A module's parameters and buffers as the summary counts them: elements, of the
    buffers its state_dict saves (a blur pool's fixed filter is not one)."""
    saved = set(model.state_dict())
    return {"params": sum(p.numel() for p in model.parameters()),
            "buffers": sum(b.numel() for k, b in model.named_buffers() if k in saved)}


def _counts_differ(model: Any, want: dict[str, int]) -> Mismatch | None:
    real = model_counts(model)
    for what, label in (("params", "parameters"), ("buffers", "buffers")):
        if real[what] != want[what]:
            return Mismatch(None, label, real[what], want[what])
    return None


def _refusal_expected(g: Any, x: Any, model: Any, training: bool) -> Mismatch | None:
    """Where the shapes say PyTorch refuses this batch (a norm layer seeing one value per
    channel): that it does."""
    nodes = ((v, d["op"], d["attrs"], d["shape"]) for v, d in g.nodes(data=True))
    node = refused_batch(nodes, x.shape[0], training)
    if node is None:
        return None
    m = compare(model, x, g, {v: d["shape"] for v, d in g.nodes(data=True)})
    if m is not None and isinstance(m.error, ValueError) and ONE_VALUE in str(m.error):
        return Mismatch(node, "skip")
    return Mismatch(node, "batch", "accepted" if m is None else str(m),
                    "refused (one value per channel)", g.nodes[node]["span"])


def check_example(program: Program, name: str, batch: int, h: int, w: int, sizes: Sizes,
                  limits: Limits | None = None,
                  overrides: dict[str, Any] | None = None) -> Mismatch | None:
    """Build network `name` for (h, w), run it at this batch in eval and in train, and
    compare every lowered op's real shapes and the counts with the inferred ones; also the
    static scan's shapes with the builder's at this size."""
    import torch

    from .graph import totals
    from .limits import Limits
    from .pipeline import compile_network

    shape = (sizes.channels, h, w)
    try:
        c = compile_network(program, name, overrides=overrides, input_shape=shape,
                            limits=limits or Limits())
    except ResdslError as e:
        return Mismatch(getattr(e, "node", None), "build", str(e), "accepted", e.span)
    static = sizes.replay.shape_map(shape)
    for v, d in c.graph.nodes(data=True):
        if static.get(v) != d["shape"]:
            return Mismatch(v, "statically scanned shape", static.get(v), d["shape"], d["span"])
    model = _built(c.lowered, c.file)
    counted = _counts_differ(model, totals(c.graph))
    if counted:
        return counted
    x = torch.randn(batch, *shape)
    for training in (False, True):
        model.train(training)
        m = _refusal_expected(c.lowered, x, model, training) or compare(
            model, x, c.lowered, {v: d["shape"] for v, d in c.lowered.nodes(data=True)})
        if m is not None and m.what != "skip":
            m.mode = "train" if training else "eval"
            return m
    return None


_LAST_BUILT: list = []   # [(architecture, module)]: the last one, kept for the next size


def _built(g: Any, file: str) -> Any:
    """The module of a lowered graph, reused from the previous example when the graph is the
    same network at another size (every node's op and attributes equal): building it is most
    of an example's time, and nothing of a module depends on the input's size."""
    from .api import _module

    arch = (file, tuple((v, d["op"], repr(d["attrs"])) for v, d in g.nodes(data=True)))
    if not (_LAST_BUILT and _LAST_BUILT[0][0] == arch):
        _LAST_BUILT[:] = [(arch, _module(g, {"features": None, "kernels": None, "file": file}))]
    return _LAST_BUILT[0][1]


@dataclass
class Agreement:
    """The PyTorch check of one network: how many (batch, H, W) ran, and the smallest one
    (hypothesis shrinks it) where PyTorch disagreed, with what."""

    examples: int
    failure: tuple[tuple[int, int, int, int], Mismatch] | None
    batch: tuple[int, int]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.failure is None

    def lines(self) -> list[str]:
        if self.examples == 0:
            return ["  pytorch: nothing to run (no size of the range is accepted)"]
        if self.failure is None:
            b0, b1 = self.batch
            line = (f"  pytorch: {self.examples} examples (batch {b0}..{b1}, eval and train): "
                    f"every layer's shapes and the counts agree ({self.seconds:.1f} s)")
            return [line]
        (b, c, h, w), m = self.failure
        mode = f", {m.mode}" if m.mode else ""
        head = (f"  pytorch: disagrees; hypothesis' smallest example: batch {b}, input "
                f"{c}x{h}x{w}{mode} ({self.examples} examples, {self.seconds:.1f} s)")
        return [head, f"    {m}"]


def check_pytorch(program: Program, name: str, sizes: Sizes, examples: int = DEFAULT_EXAMPLES,
                  seed: int = 0, batch: tuple[int, int] = DEFAULT_BATCH,
                  limits: Limits | None = None,
                  overrides: dict[str, Any] | None = None) -> Agreement:
    """Hypothesis draws accepted (batch, H, W) (the smallest first) and `check_example` runs
    each; on a disagreement hypothesis shrinks it to the smallest it can find."""
    from .testing import hypothesis, size_strategy

    _torch()
    hypothesis()
    from hypothesis import HealthCheck, Phase, Verbosity, example, given, settings
    from hypothesis import seed as seeded

    start = time.perf_counter()
    tried: set[tuple[int, ...]] = set()
    failures: list[tuple[tuple[int, int, int, int], Mismatch]] = []

    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              print_blob=False, report_multiple_bugs=False, verbosity=Verbosity.quiet,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @seeded(seed)
    @given(size_strategy(sizes, batch))
    def run(shape: tuple[int, int, int, int]) -> None:
        tried.add(shape)
        m = check_example(program, name, shape[0], shape[2], shape[3], sizes, limits, overrides)
        if m is not None:
            failures.append((shape, m))
            raise AssertionError(str(m))

    if not sizes.h or not sizes.w:
        return Agreement(0, None, batch, 0.0)
    smallest = min(sizes.pairs) if sizes.pairs else (sizes.h[0], sizes.w[0])
    try:
        example((batch[0], sizes.channels, *smallest))(run)()
    except AssertionError:
        if not failures:
            raise
    return Agreement(len(tried), failures[-1] if failures else None, batch,
                     time.perf_counter() - start)


def _torch():
    """torch, or E606 saying how to get it (or to run the static part alone)."""
    try:
        import torch
    except ImportError:
        raise ResdslError("the PyTorch part of `resdsl verify` needs torch", None,
                          "pip install torch, or --examples 0 (examples=0) for the static "
                          "part alone", code="E606") from None
    return torch


# ---- the command ---------------------------------------------------------------------------

@dataclass
class Verified:
    """One network: what sizes it accepts (statically) and PyTorch's word on it (None when
    no examples were asked for)."""

    sizes: Sizes
    pytorch: Agreement | None

    @property
    def ok(self) -> bool:
        return self.sizes.ok and (self.pytorch is None or self.pytorch.ok)

    def lines(self, color: bool = False) -> list[str]:
        pytorch = self.pytorch.lines() if self.pytorch else []
        return self.sizes.lines(color) + pytorch + [self.verdict()]

    def verdict(self) -> str:
        """`resnet50: ok`, or what is wrong."""
        problems = [p for p, bad in (("sizes rejected", not self.sizes.ok),
                                     ("PyTorch disagrees", not (self.pytorch is None or
                                                                self.pytorch.ok))) if bad]
        return f"{self.sizes.network}: {'; '.join(problems) or 'ok'}"


@dataclass
class Report:
    """`resdsl.verify`'s result: each network's `Verified`, in order; `ok` when all are."""

    networks: dict[str, Verified]

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.networks.values())

    def __str__(self) -> str:
        return "\n".join(line for v in self.networks.values() for line in v.lines())


def verify_network(program: Program, name: str, sizes: tuple[int, int] = DEFAULT_SIZES,
                   examples: int = DEFAULT_EXAMPLES, seed: int = 0,
                   batch: tuple[int, int] = DEFAULT_BATCH, limits: Limits | None = None,
                   overrides: dict[str, Any] | None = None) -> Verified:
    """The static analysis of one network, then (with examples) the PyTorch check."""
    found = analyse(program, name, sizes, limits, overrides)
    agreement = check_pytorch(program, name, found, examples, seed, batch, limits,
                              overrides) if examples else None
    return Verified(found, agreement)


def verify(spec: str | Path, network: str | list[str] | None = None, *,
           sizes: tuple[int, int] = DEFAULT_SIZES, examples: int = DEFAULT_EXAMPLES,
           seed: int = 0, batch: tuple[int, int] = DEFAULT_BATCH,
           max_layers: int = MAX_LAYERS, max_params: int = MAX_PARAMS,
           max_macs: int = MAX_MACS, allow_any_path: bool = False,
           **overrides: Any) -> Report:
    """Which input sizes H, W in sizes[0]..sizes[1] each network of a spec (a path or the
    text; `network`: one name, several, or None for every buildable one) accepts, found
    statically, then `examples` hypothesis examples (batch in `batch`, seeded) run in
    PyTorch in eval and in train and compared op by op (0: the static part alone, which
    needs no torch). `overrides` set the network's parameters. `report.ok` says whether
    every size was accepted and PyTorch agreed; `print(report)` is `resdsl verify`'s text.
    Spec errors are raised (ResdslError), as by `resdsl.build`."""
    from .elaborate import concrete_networks
    from .limits import Limits
    from .pipeline import load_spec

    names = check_arguments(spec, network, sizes, examples, seed, batch)
    limits = Limits.given(max_layers=max_layers, max_params=max_params, max_macs=max_macs,
                          allow_any_path=allow_any_path)
    program = load_spec(spec, limits)
    return Report({name: verify_network(program, name, sizes, examples, seed, batch, limits,
                                        overrides or None)
                   for name in names or concrete_networks(program.root)})


def check_arguments(spec: Any, network: Any, sizes: Any, examples: Any, seed: Any,
                    batch: Any) -> list[str]:
    """The networks asked for, after E212 for any argument of the wrong type or value (at
    the API's boundary, as resdsl.build checks its own)."""
    from .api import _bad, _check_arguments

    names = [network] if isinstance(network, str) else network
    if names is not None and not (isinstance(names, (list, tuple)) and names and all(
            isinstance(n, str) for n in names)):
        raise _bad("network", "a network's name, a list of names, or None", network)
    _check_arguments(spec, None, None, None, {}, {})
    for what, v in (("sizes", sizes), ("batch", batch)):
        if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(
                isinstance(n, int) and not isinstance(n, bool) for n in v)
                and 1 <= v[0] <= v[1] <= MAX_SIZE):
            raise _bad(what, f"(lo, hi) with 1 <= lo <= hi <= {MAX_SIZE}", v)
    for what, v in (("examples", examples), ("seed", seed)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _bad(what, "an int >= 0", v)
    return list(names or [])
