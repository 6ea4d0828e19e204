"""The graph IR: a networkx.DiGraph of ops over tensor edges, `verify`, and its text and JSON
forms. The op set is resdsl/ops.py's table (docs/ir.md lists it).

Node id = the hierarchical name (`layer3.4.conv2`); node attributes:
  op      a key of ops.OPS              attrs   the op's attributes, in the table's order
  shape   output shape, batch left out: (C, H, W) or (F,)
  stage   `layer1` / `stem` / `head` / None      block   innermost block path or None
  span    the spec text that made it             params, buffers, macs, elementwise: counts
  fused, absorbed   on a fused op (`bn_act`, `conv_act`): its ops in order ("bn+add+relu") and
                    the nodes it took in; on a conv a BN folded into: folded = (the BN's name, eps)
Edges run producer -> consumer; the in-edges of an op with several inputs carry `port` 0, 1, ...
(a merge: 0 the residual branch, 1 the shortcut, whose edge also names its `shortcut` kind).
Graph attributes: name, input.
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
