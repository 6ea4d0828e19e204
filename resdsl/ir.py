"""The graph IR: a networkx.DiGraph of ops over tensor edges, `verify`, and its text and JSON
forms. The op set is resdsl/ops.py's table (docs/ir.md lists it).

Node id = the hierarchical name (`layer3.4.conv2`); node attributes:
  op      a key of ops.OPS              attrs   the op's attributes, in the table's order
  shape   output shape, batch left out: (C, H, W) or (F,)
  stage   `layer1` / `stem` / `head` / None      block   innermost block path or None
  role    its part of that block: pre, residual, shortcut, merge, post (None outside blocks)
  span    the spec text that made it             params, buffers, macs, elementwise: counts
  fused, absorbed   on a fused op (`bn_act`, `conv_act`): its ops in order ("bn+add+relu") and
                    the nodes it took in; on a conv a BN folded into: folded = (the BN's name, eps)
Edges run producer -> consumer; the in-edges of an op with several inputs carry `port` 0, 1, ...
(a merge: 0 the residual branch, 1 the shortcut, whose edge also names its `shortcut` kind).
Graph attributes: name, input, inference (after fold.py), and scopes: path -> the record of
each stage, stem / head group and block instance, in the order they start:
  kind    stage | group | block          name    its name in its parent (`layer1`, `0`, `conv1`)
  label   a block's definition name (`basic`); a stage's `2 x basic`; a group's name
  parent  the enclosing block or stage (None: the network)       span   where it is written
  blocks only: role (its part of the parent block), args (the block's arguments), def_span,
  residual (has a residual branch), shortcut ({kind, name, span} as written, or None), merge
Together they give the module tree, so every backend takes the graph alone (`Structure`).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import Span
from .ops import COUNTS, OPS

if TYPE_CHECKING:
    import networkx as nx


def verify(g: nx.DiGraph) -> None:
    """Check our own invariants (not user input), as torch.fx's Graph.lint: a DAG over known
    ops, one input, one output, each node's attributes, inputs and ports as its op's record
    says, and its shape and counts what the op's rules give for its inputs."""
    import networkx as nx
    assert nx.is_directed_acyclic_graph(g), "graph has a cycle"
    unknown = [v for v, d in g.nodes(data=True) if d["op"] not in OPS]
    assert not unknown, f"unknown ops: {unknown}"
    ends = [d["op"] for _, d in g.nodes(data=True) if OPS[d["op"]].kind == "io"]
    assert sorted(ends) == ["input", "output"], f"input and output nodes: {ends}"
    for v, d in g.nodes(data=True):
        op = OPS[d["op"]]
        assert tuple(d["attrs"]) == op.attrs, f"{v}: attrs {list(d['attrs'])}"
        for p in op.params:
            assert p.choices is None or d["attrs"][p.name] in p.choices, f"{v}: {p.name}"
        preds = sorted(g.predecessors(v), key=lambda u: g.edges[u, v].get("port", 0))
        assert len(preds) in op.inputs(d["attrs"]), f"{v}: {len(preds)} inputs"
        if len(preds) > 1:
            ports = [g.edges[u, v].get("port") for u in preds]
            assert ports == list(range(len(preds))), f"{v}: input ports {ports}"
        if op.kind == "fused":
            assert isinstance(d.get("fused"), str) and isinstance(d.get("absorbed"), tuple), v
        assert isinstance(d.get("shape"), tuple), f"{v}: no shape"
        assert all(isinstance(d.get(c), int) for c in COUNTS), f"{v}: counts missing"
        if preds:
            ins = [g.nodes[u]["shape"] for u in preds]
            assert op.shape(d["attrs"], ins) == d["shape"], f"{v}: shape {d['shape']}"
            counts = op.cost(d["attrs"], ins, d["shape"])
            assert all(d[c] == counts[c] for c in COUNTS), f"{v}: counts"


ROLES = ("pre", "residual", "shortcut", "merge", "post")   # a node's part of its block


class Structure:
    """The network's nesting from the graph alone (its `scopes`, each node's `block` and
    `role`), indexed once: each scope's items in order, the first and last node under each
    scope, each block's shortcut edge."""

    def __init__(self, g: nx.DiGraph):
        self.g, self.scopes = g, g.graph["scopes"]
        self._items: dict[tuple[str | None, str | None], list[tuple[str, str]]] = {}
        spans: dict[tuple[str, str], Span] = {}
        for path, s in self.scopes.items():
            if s["kind"] != "group":  # (a stem's or head's layers are the network's own)
                self._items.setdefault((s["parent"], s.get("role")), []).append(("scope", path))
                spans["scope", path] = s["span"]
        self.first: dict[str, str] = {}
        self.last: dict[str, str] = {}
        for v, d in g.nodes(data=True):
            if OPS[d["op"]].kind == "io":
                continue
            self._items.setdefault((d["block"], d["role"]), []).append(("node", v))
            spans["node", v] = d["span"]
            scope = d["block"]
            while scope is not None:
                self.first.setdefault(scope, v)
                self.last[scope] = v
                scope = self.scopes[scope]["parent"]
        self.shortcuts = shortcut_edges(g)
        for items in self._items.values():  # statements of one body: in source order
            items.sort(key=lambda item: (spans[item].line, spans[item].col))

    def items(self, parent: str | None, role: str | None = None) -> list[tuple[str, str]]:
        """("node" | "scope", path) of what `parent` (None: the network) holds in `role`, in
        order: the statements of one body are in source order (a stage's blocks share its
        line and stay in the order they were built)."""
        return self._items.get((parent, role), [])

    def name(self, kind: str, path: str) -> str:
        """An item's name in its parent: a scope's own, a node's path after its block's."""
        if kind == "scope":
            return self.scopes[path]["name"]
        block = self.g.nodes[path]["block"]
        return path[len(block) + 1:] if block else path

    def blocks(self) -> list[str]:
        """Every block instance, nested ones first (post-order), in network order."""
        out: list[str] = []

        def walk(parent: str | None, roles: tuple) -> None:
            for role in roles:
                for path in (p for kind, p in self.items(parent, role) if kind == "scope"):
                    block = self.scopes[path]["kind"] == "block"
                    walk(path, ROLES if block else (None,))
                    if block:
                        out.append(path)
        walk(None, (None,))
        return out


def shortcut_edges(g: Any) -> dict[str, tuple[str, str, str]]:
    """block -> (its shortcut's output, the node that merges it, the kind it resolved to):
    the edges that name a `shortcut` kind, one per block whose shortcut merges."""
    return {g.nodes[v]["block"]: (u, v, e["shortcut"]) for u, v, e in g.edges(data=True)
            if e.get("shortcut")}


def path_stride(g: Any, v: str, start: str | None = None) -> tuple[int, int]:
    """The total stride from `start` (default: the input) to v: the product of the convs' and
    pools' strides along the main inputs (port 0; through nested blocks along their residual
    side). A global pool has no stride."""
    sh = sw = 1
    while v != start:
        d = g.nodes[v]
        s = OPS[d["op"]].stride(d["attrs"])
        sh, sw = sh * s[0], sw * s[1]
        preds = list(g.predecessors(v))
        if len(preds) != 1:
            if not preds:
                break
            preds = [next((u for u in preds if g.edges[u, v].get("port", 0) == 0), preds[0])]
        v = preds[0]
    return sh, sw


def _fmt_value(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 2 and v[0] == v[1]:
        return str(v[0])
    if isinstance(v, tuple):
        return "x".join(map(str, v))
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def shape_str(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


_SHORT = {"in_channels": "in", "kernel": "k", "stride": "s", "padding": "p", "groups": "g",
          "dilation": "d", "in_features": "in"}
_ALWAYS = ("in_channels", "out", "kernel", "stride", "padding", "in_features")  # shown as given


def to_text(g: nx.DiGraph) -> str:
    """One line per node, in topological order:
    `layer1.0.conv1 = conv(in=64, out=64, k=3, s=1, p=1) : 64x56x56`."""
    lines = [f"# network {g.graph['name']}: input {shape_str(g.graph['input'])}"]
    for v in g.nodes:  # insertion order: the builder adds nodes in a topological order
        d = g.nodes[v]
        op = OPS[d["op"]]
        shown = op.shown(d["attrs"]) or [
            f"{_SHORT.get(k, k)}={_fmt_value(x)}" for k, x in d["attrs"].items()
            if k in _ALWAYS or (x != op.default(k) and x is not None)]
        args = ", ".join(shown)
        preds = sorted(g.predecessors(v), key=lambda u: g.edges[u, v].get("port", 0))
        srcs = ", ".join(_operand(g, u, v) for u in preds)
        operands = f" <- {srcs}" if srcs else ""
        fused = f"  # fused {d['fused']}" if d.get("fused") else ""
        lines.append(f"{v} = {d['op']}({args}) : {shape_str(d['shape'])}{operands}{fused}")
    return "\n".join(lines) + "\n"


def _operand(g: nx.DiGraph, u: str, v: str) -> str:
    kind = g.edges[u, v].get("shortcut")
    return f"{u} [{kind}]" if kind else u


# ---- JSON ----------------------------------------------------------------------------------

def _encode(v: Any) -> Any:
    if isinstance(v, tuple):
        return {"tuple": [_encode(x) for x in v]}
    if isinstance(v, Span):
        return {"span": [v.file, v.line, v.col, v.end_line, v.end_col]}
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    return v


def _decode(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"tuple"}:
        return tuple(_decode(x) for x in v["tuple"])
    if isinstance(v, dict) and set(v) == {"span"}:
        return Span(*v["span"])
    if isinstance(v, dict):
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


def to_json(g: nx.DiGraph) -> str:
    """A JSON document that `from_json` loads back into an equal graph."""
    data = {
        "graph": _encode(dict(g.graph)),
        "nodes": [{"id": v, **_encode(dict(d))} for v, d in g.nodes(data=True)],
        "edges": [{"source": u, "target": v, **_encode(dict(d))} for u, v, d in g.edges(data=True)],
    }
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def from_json(text: str) -> nx.DiGraph:
    data = json.loads(text)
    import networkx as nx
    g = nx.DiGraph(**_decode(data["graph"]))
    for node in data["nodes"]:
        attrs = _decode({k: x for k, x in node.items() if k != "id"})
        g.add_node(node["id"], **attrs)
    for edge in data["edges"]:
        attrs = _decode({k: x for k, x in edge.items() if k not in ("source", "target")})
        g.add_edge(edge["source"], edge["target"], **attrs)
    return g


def same_graph(a: nx.DiGraph, b: nx.DiGraph) -> bool:
    """Equal nodes, edges and attributes (node order aside)."""
    return (dict(a.graph) == dict(b.graph)
            and dict(a.nodes(data=True)) == dict(b.nodes(data=True))
            and {(u, v): d for u, v, d in a.edges(data=True)}
            == {(u, v): d for u, v, d in b.edges(data=True)})
