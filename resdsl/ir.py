"""The graph IR: a networkx.DiGraph of ops over tensor edges, its closed op set, `verify`, and
its text and JSON forms.

Node id = the hierarchical name (`layer3.4.conv2`); node attributes:
  op      one of OPS below          attrs   the op's arguments (ints, tuples, bools, floats)
  shape   output shape, batch left out: (C, H, W) or (F,)
  stage   `layer1` / `stem` / `head` / None      block   innermost block path or None
  span    the spec text that made it             params, buffers, macs, elementwise: counts
  fused, absorbed   on `bn_act` (and `conv_act`): its ops in order ("bn+add+relu") and the
                    nodes it took in; on a conv a BN folded into: folded = (the BN's name, eps)
Edges run producer -> consumer; the in-edges of an `add` (and of a `bn_act` with a residual)
carry `port` 0 (residual) and 1 (shortcut) and the shortcut edge its `shortcut` kind. Graph
attributes: name, input.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from .errors import Span

if TYPE_CHECKING:
    import networkx as nx

# op -> its attributes. This is the whole op set; every backend handles exactly these.
OPS: dict[str, tuple[str, ...]] = {
    "input": (),
    "conv": ("in_channels", "out", "kernel", "stride", "padding", "groups", "dilation", "bias"),
    "bn": ("zero_init", "eps", "momentum"),
    # bn fused with a relu and/or a residual add (resdsl/fuse.py): relu(bn(x + r)) at "pre",
    # relu(bn(x) + r) at "mid", relu(bn(x)) + r at "post"; residual_at None: no add
    "bn_act": ("zero_init", "eps", "momentum", "relu", "residual_at"),
    # a conv with a BN folded into it (resdsl/fold.py) and the relu / residual add that BN had
    # absorbed, in the same order: relu(conv(x) + r) at "mid", relu(conv(x)) + r at "post"
    "conv_act": ("in_channels", "out", "kernel", "stride", "padding", "groups", "dilation",
                 "bias", "relu", "residual_at"),
    "relu": (),
    "maxpool": ("kernel", "stride", "padding", "ceil_mode"),
    "avgpool": ("kernel", "stride", "padding", "ceil_mode", "count_include_pad"),  # kernel None: global
    "flatten": (),
    "fc": ("in_features", "out", "bias"),
    "dropout": ("p",),
    "add": (),
    "pad": ("stride", "pad_front", "pad_back"),  # option A: x[:, :, ::s, ::s], zero channels
    "output": (),
}

COUNTS = ("params", "buffers", "macs", "elementwise")


def verify(g: nx.DiGraph) -> None:
    """Check our own invariants (not user input): a DAG over known ops, one input, one output,
    arities right, every node shaped and counted."""
    import networkx as nx
    assert nx.is_directed_acyclic_graph(g), "graph has a cycle"
    ins = [v for v, d in g.nodes(data=True) if d["op"] == "input"]
    outs = [v for v, d in g.nodes(data=True) if d["op"] == "output"]
    assert len(ins) == 1 and len(outs) == 1, f"inputs {ins}, outputs {outs}"
    for v, d in g.nodes(data=True):
        assert d["op"] in OPS, f"{v}: unknown op {d['op']}"
        assert set(d["attrs"]) == set(OPS[d["op"]]), f"{v}: attrs {sorted(d['attrs'])}"
        want = 0 if d["op"] == "input" else 2 if _binary(d) else 1
        assert g.in_degree(v) == want, f"{v}: {g.in_degree(v)} inputs, wants {want}"
        if want == 2:
            ports = sorted(e.get("port") for _, _, e in g.in_edges(v, data=True))
            assert ports == [0, 1], f"{v}: input ports {ports}"
        if d["op"] == "bn_act":
            assert d["attrs"]["residual_at"] in (None, "pre", "mid", "post"), f"{v}: residual_at"
            assert isinstance(d.get("fused"), str) and isinstance(d.get("absorbed"), tuple), v
        assert isinstance(d.get("shape"), tuple), f"{v}: no shape"
        assert all(isinstance(d.get(c), int) for c in COUNTS), f"{v}: counts missing"


def _binary(d: dict[str, Any]) -> bool:
    return d["op"] == "add" or (d["op"] in ("bn_act", "conv_act")
                                and d["attrs"]["residual_at"] is not None)


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
_DEFAULTS = {"groups": 1, "dilation": (1, 1), "bias": False, "ceil_mode": False,
             "zero_init": False, "relu": False, "eps": 1e-5, "momentum": 0.1, "count_include_pad": True}


def to_text(g: nx.DiGraph) -> str:
    """One line per node, in topological order:
    `layer1.0.conv1 = conv(in=64, out=64, k=3, s=1, p=1) : 64x56x56`."""
    lines = [f"# network {g.graph['name']}: input {shape_str(g.graph['input'])}"]
    for v in g.nodes:  # insertion order: the builder adds nodes in a topological order
        d = g.nodes[v]
        shown = [f"{_SHORT.get(k, k)}={_fmt_value(x)}" for k, x in d["attrs"].items()
                 if k in ("in_channels", "out", "kernel", "stride", "padding", "in_features")
                 or (_DEFAULTS.get(k, object()) != x and x is not None)]
        if d["op"] == "avgpool" and d["attrs"]["kernel"] is None:
            shown = ["global"]
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
