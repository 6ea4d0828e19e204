"""Stage 3: instance tree -> graph IR, with shapes and counts inferred as each node is added.

Shapes are needed while building: a `projection` shortcut is the identity where the residual
branch keeps the shape and a 1x1 conv + bn where it does not. On a shape error the partial
graph and the offending node travel with the exception, so `draw` can show the mistake.

The graph also records the network's nesting, so that every later stage takes the graph alone:
the graph's `scopes` hold each stage, stem / head group and block instance (a block with its
arguments and its shortcut as written), and each node its stage, innermost block and role in
that block (pre, residual, shortcut, merge, post); docs/ir.md has the fields.

The builder fills a `Draft`, the few DiGraph methods it needs over plain dicts, because
`import networkx` costs more than all the rest of `resdsl check` (benchmarks/results/
frontend-cpu.txt): `draft_graph` is what `check` needs, `build_graph` the networkx.DiGraph
that every later stage takes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, NamedTuple, Optional

from .elaborate import (BlockNode, BlockRef, GroupNode, LayerNode, NetNode, Node, ShortcutNode,
                        StageNode, fits, use_note)
from .errors import LimitError, ResdslError, ShapeError, Span, SpecNameError, SpecValueError
from .ir import path_stride, shape_str
from .limits import MAX_MACS, MAX_PARAMS
from .ops import COUNTS, OPS

if TYPE_CHECKING:
    import networkx as nx


class _Nodes(dict):
    """`g.nodes[v]` and `g.nodes(data=True)`, as on a networkx.DiGraph."""

    def __call__(self, data: bool = False) -> Iterator:
        return iter(self.items() if data else self)


class _Edges(dict):
    """`g.edges[u, v]` and `g.edges(data=True)`, as on a networkx.DiGraph."""

    def __call__(self, data: bool = False) -> Iterator:
        return ((u, v, d) for (u, v), d in self.items()) if data else iter(self)


class Draft:
    """A directed graph under construction: the subset of networkx.DiGraph's interface that
    building, shape inference, `path_stride` and `totals` use, in the same insertion order."""

    def __init__(self, **graph: Any):
        self.graph = graph
        self.nodes = _Nodes()
        self.edges: _Edges = _Edges()
        self._pred: dict[str, list[str]] = {}

    def __contains__(self, v: object) -> bool:
        return v in self.nodes

    def add_node(self, v: str, **attrs: Any) -> None:
        assert v not in self.nodes, v
        self.nodes[v], self._pred[v] = attrs, []

    def add_edge(self, u: str, v: str, **attrs: Any) -> None:
        assert u in self.nodes and v in self.nodes and (u, v) not in self.edges, (u, v)
        self.edges[u, v] = attrs
        self._pred[v].append(u)

    def predecessors(self, v: str) -> Iterator[str]:
        return iter(self._pred[v])

    def to_networkx(self) -> nx.DiGraph:
        """The same graph as a networkx.DiGraph (the graph IR), sharing the attribute values."""
        import networkx as nx
        g = nx.DiGraph(**self.graph)
        g.add_nodes_from(self.nodes.items())
        g.add_edges_from((u, v, d) for (u, v), d in self.edges.items())
        return g


class Ctx(NamedTuple):
    """Where a node goes: its stage (or stem / head group), innermost block and role there."""

    stage: Optional[str] = None
    block: Optional[str] = None
    role: Optional[str] = None

    def within(self, block: str, role: str) -> "Ctx":
        return Ctx(self.stage, block, role)


class Builder:
    def __init__(self, net: NetNode, input_shape: tuple[int, int, int] | None = None):
        shape = tuple(input_shape or net.input)
        self.g = Draft(name=net.name, input=shape, scopes={})
        self.net = net
        self.noted: ResdslError | None = None  # the error last given a note of a block's use
        self.g.add_node("input", op="input", attrs={}, shape=shape, stage=None, block=None,
                        role=None, span=net.input_span, params=0, buffers=0, macs=0,
                        elementwise=0)

    def build(self) -> Draft:
        try:
            out = self.seq(self.net.items, "input", Ctx())
        except ResdslError as e:
            if self.net.note and (self.net.instance or e is self.noted):
                e.notes += (self.net.note,)   # in a template, or in a block it uses
            raise
        self.add("output", "output", {}, [out], self.net.span, Ctx())
        return self.g

    # -- nodes
    def add(self, name: str, op: str, attrs: dict[str, Any], srcs: list[str], span: Span,
            ctx: Ctx, edges: list[dict] | None = None) -> str:
        if name in self.g:
            raise SpecNameError(f"two nodes named '{name}'", span,
                                "labels must not repeat a generated name", code="E202",
                                notes=[(self.g.nodes[name]["span"], "first here")])
        in_shapes = [self.g.nodes[s]["shape"] for s in srcs]
        record = OPS[op]
        attrs = {k: attrs[k] for k in record.attrs}  # one attribute order, the op table's
        self.g.add_node(name, op=op, attrs=attrs, stage=ctx.stage, block=ctx.block,
                        role=ctx.role, span=span)
        for i, s in enumerate(srcs):
            self.g.add_edge(s, name, **((edges or [{}] * len(srcs))[i]))
        try:
            shape = record.shape(attrs, in_shapes)
        except ShapeError as e:
            raise self._locate(e, name, span) from None
        self.g.nodes[name].update(shape=shape, **record.cost(attrs, in_shapes, shape))
        return name

    def _locate(self, e: ResdslError, name: str, span: Span) -> ResdslError:
        e.span = e.span or span
        e.partial_graph = self.g  # type: ignore[attr-defined]
        e.node = name  # type: ignore[attr-defined]
        return e

    def shape(self, v: str) -> tuple[int, ...]:
        return self.g.nodes[v]["shape"]

    # -- structure
    def scope(self, path: str, kind: str, label: str, span: Span) -> None:
        """Record a stage or a stem / head group in the graph's `scopes` (docs/ir.md; block
        instances are recorded by `block`), in the order they start, so that the backends
        need nothing but the graph."""
        self.g.graph["scopes"][path] = {"kind": kind, "name": path, "label": label,
                                        "parent": None, "span": span}

    def seq(self, items: list[Node], cur: str, ctx: Ctx) -> str:
        for item in items:
            if isinstance(item, LayerNode):
                cur = self.layer(item, cur, ctx)
            elif isinstance(item, BlockNode):
                cur = self.block(item, cur, ctx, ctx.block)
            elif isinstance(item, GroupNode):
                self.scope(item.kind, "group", item.kind, item.span)
                cur = self.seq(item.items, cur, Ctx(item.kind, ctx.block, ctx.role))
            elif isinstance(item, StageNode):
                kinds = sorted({b.block for b in item.blocks})
                self.scope(item.path, "stage", f"{len(item.blocks)} x {'/'.join(kinds)}",
                           item.span)
                for b in item.blocks:
                    cur = self.block(b, cur, Ctx(item.name), item.path)
        return cur

    def layer(self, node: LayerNode, cur: str, ctx: Ctx) -> str:
        attrs, channels = dict(node.attrs), OPS[node.kind].channels
        if channels:
            attrs[channels] = self.shape(cur)[0]
        return self.add(node.path, node.kind, attrs, [cur], node.span, ctx)

    def block(self, b: BlockNode, cur: str, outer: Ctx, parent: str | None) -> str:
        """A block instance (in `parent`: a block, a stage or the network): its scope, then
        its nodes; an error in them gets a note of where the block was used."""
        try:
            return self._unit(b, cur, outer, parent)
        except ResdslError as e:
            e.notes += ((b.span, use_note(b.block, b.def_span, b.stage)),)
            self.noted = e
            raise

    def _unit(self, b: BlockNode, cur: str, outer: Ctx, parent: str | None) -> str:
        """`block`'s nodes, each with its role in the unit (pre, residual, shortcut, merge,
        post)."""
        sc = b.shortcut
        self.g.graph["scopes"][b.path] = {
            "kind": "block", "name": b.name, "label": b.block, "parent": parent, "span": b.span,
            "role": outer.role, "args": {k: _plain(v) for k, v in b.args.items()},
            "def_span": b.def_span, "residual": b.residual is not None,
            "shortcut": None if sc is None else {
                "kind": sc.kind, "name": sc.path[len(b.path) + 1:], "span": sc.span},
            "merge": b.merge}
        x = self.seq(b.pre, cur, outer.within(b.path, "pre"))
        if b.residual is None:
            return x
        r = self.seq(b.residual, x, outer.within(b.path, "residual"))
        assert sc is not None, "the checker requires a shortcut after a residual"
        if sc.kind == "none":
            return self.seq(b.post, r, outer.within(b.path, "post"))
        if r == x:   # nothing to add to the shortcut (and with an identity, x + x)
            raise self._locate(SpecValueError(
                f"the residual branch of block '{b.block}' ({b.path}) has no layers", sc.span,
                "a residual unit adds its branch to the shortcut: put a layer in `residual "
                "{ }`, or use `shortcut none` or a plain block", code="E308"), b.path, sc.span)
        s, kind = self.shortcut(sc, x, r, outer.within(b.path, "shortcut"), b.merge)
        try:
            out = self.add(f"{b.path}.{b.merge}", b.merge, {}, [r, s], b.merge_span or sc.span,
                           outer.within(b.path, "merge"),
                           [{"port": 0}, {"port": 1, "shortcut": kind}])
        except ShapeError as e:
            e.message = (f"cannot {b.merge} the residual branch ({shape_str(self.shape(r))}) "
                         f"and the shortcut ({shape_str(self.shape(s))}) in block '{b.path}'")
            e.notes = ((self.g.nodes[r]["span"], f"residual branch ends here: "
                                                 f"{shape_str(self.shape(r))}"),
                       (sc.span, f"shortcut ({kind}): {shape_str(self.shape(s))}"))
            e.hint = "make the branches agree in channels and stride"
            raise
        return self.seq(b.post, out, outer.within(b.path, "post"))

    def shortcut(self, sc: ShortcutNode, x: str, r: str, ctx: Ctx, merge: str) -> tuple[str, str]:
        """The shortcut's output node and the kind it resolved to (`identity` where the
        residual branch keeps the channels and stride, unless the kind always projects; the
        identity must then fit the merge: the same shape, or a gate's for `mul`)."""
        xs, rs = self.shape(x), self.shape(r)
        if sc.kind == "custom":
            return self.seq(sc.body, x, ctx), "custom"
        stride = self.branch_stride(x, r)
        same = xs[:1] == rs[:1] and stride == (1, 1)  # torchvision: stride 1, same channels
        if sc.kind == "identity" or (same and not sc.always):
            if xs != rs and not _merges(merge, [rs, xs]):
                hint = ("use `shortcut projection` (option B) or `shortcut pad` (option A)"
                        if sc.kind == "identity" else
                        "the branch keeps its channels and stride, so the shortcut is the "
                        "identity; make the residual branch keep the map size (padding)")
                raise self._locate(ShapeError(
                    f"`shortcut {sc.kind}`, but the residual branch changes the shape: "
                    f"{shape_str(xs)} -> {shape_str(rs)}", sc.span, hint,
                    code="E407"), f"{sc.path}", sc.span)
            return x, "identity"
        if len(xs) != 3 or len(rs) != 3:
            raise self._locate(ShapeError("a shortcut needs feature maps on both branches",
                                          sc.span, code="E404"), sc.path, sc.span)
        make = {"pad": self._pad, "projection": self._project, "avgdown": self._avg_down}
        return make[sc.kind](sc, x, xs, rs, stride, ctx), sc.kind

    def _project(self, sc: ShortcutNode, x: str, xs, rs, stride, ctx: Ctx, index: int = 0) -> str:
        """Option B/C: 1x1 conv with the branch's stride, then bn (`downsample.0`, `.1`)."""
        conv = self.add(f"{sc.path}.{index}", "conv", {
            "in_channels": xs[0], **OPS["conv"].complete(
                {"out": rs[0], "kernel": (1, 1), "stride": stride, "padding": (0, 0)})},
            [x], sc.span, ctx)
        return self.add(f"{sc.path}.{index + 1}", "bn", OPS["bn"].complete({}), [conv], sc.span,
                        ctx)

    def _avg_down(self, sc: ShortcutNode, x: str, xs, rs, stride, ctx: Ctx) -> str:
        """ResNet-D: where strided, a stride x stride average pool (`downsample.0`), then the
        projection at stride 1 (`.1`, `.2`)."""
        if stride != (1, 1):
            x = self.add(f"{sc.path}.0", "avgpool", OPS["avgpool"].complete({
                "kernel": stride, "padding": (0, 0), "ceil_mode": True,
                "count_include_pad": False}), [x], sc.span, ctx)
        return self._project(sc, x, xs, rs, (1, 1), ctx, index=1)

    def branch_stride(self, x: str, r: str) -> tuple[int, int]:
        """The total stride of the residual branch from x to r. Deciding by stride rather
        than by shape keeps a network's parameters independent of its input size."""
        return path_stride(self.g, r, x)

    def _pad(self, sc: ShortcutNode, x: str, xs, rs, stride, ctx: Ctx) -> str:
        """Option A: subsample by the stride, zero channels added on both sides."""
        if rs[0] < xs[0] or stride[0] != stride[1]:
            raise self._locate(ShapeError(
                f"`shortcut pad` cannot turn {shape_str(xs)} into {shape_str(rs)}", sc.span,
                "option A only subsamples evenly and adds channels; use `shortcut projection`",
                code="E407"), sc.path, sc.span)
        extra = rs[0] - xs[0]
        return self.add(sc.path, "pad", {"stride": stride[0], "pad_front": extra // 2,
                                         "pad_back": extra - extra // 2}, [x], sc.span, ctx)


def _merges(merge: str, shapes: list) -> bool:
    """Whether the merge op takes inputs of these shapes."""
    try:
        OPS[merge].shape({}, shapes)
    except ShapeError:
        return False
    return True


def _plain(v: Any) -> Any:
    """A block argument as IR data: a block passed as an argument by its name."""
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    return v.name if isinstance(v, BlockRef) else v


def build_graph(net: NetNode, input_shape: tuple[int, int, int] | None = None) -> nx.DiGraph:
    """The graph IR of an elaborated network, shaped for `input_shape` (default: the spec's)."""
    return draft_graph(net, input_shape).to_networkx()


def draft_graph(net: NetNode, input_shape: tuple[int, int, int] | None = None) -> Draft:
    """`build_graph` without networkx: every shape and count, for checking."""
    if input_shape is not None:
        input_shape = check_input_shape(input_shape)
    return Builder(net, input_shape).build()


def check_input_shape(shape: Any) -> tuple[int, int, int]:
    """An input size given from Python or the command line: three positive integers."""
    if not (isinstance(shape, (tuple, list)) and len(shape) == 3 and all(
            isinstance(x, int) and not isinstance(x, bool) for x in shape)):
        raise SpecValueError(f"an input size is (C, H, W), three integers, not {shape!r}"[:200],
                             None, "e.g. input_shape=(3, 224, 224)", code="E304")
    if min(shape) < 1:
        raise SpecValueError(f"input sizes must be positive, got {tuple(shape)}", None,
                             code="E301")
    for x in shape:
        fits(x, None, "an input size")
    return (shape[0], shape[1], shape[2])


def totals(g: nx.DiGraph | Draft) -> dict[str, int]:
    return {c: sum(d[c] for _, d in g.nodes(data=True)) for c in COUNTS}



def check_costs(g: nx.DiGraph | Draft, span: Span | None, max_params: int = MAX_PARAMS,
                max_macs: int = MAX_MACS) -> None:
    """E505/E506 when a shaped network needs more parameters or MACs than the limits: checked
    after shape inference, before any backend allocates anything."""
    t = totals(g)
    name = g.graph["name"]
    if t["params"] > max_params:
        raise LimitError(f"network '{name}' has {t['params']:,} parameters, more than the "
                         f"limit of {max_params:,}", span,
                         "raise the limit with --max-params N (API: max_params=N) if you mean "
                         "it", code="E505")
    if t["macs"] > max_macs:
        raise LimitError(f"network '{name}' needs {t['macs']:,} multiply-accumulates per "
                         f"sample, more than the limit of {max_macs:,}", span,
                         "raise the limit with --max-macs N (API: max_macs=N) if you mean it",
                         code="E506")
