"""The inference pass: every BN whose input is a conv's only output folds into that conv.

Graph surgery only; the weights are folded apart from it by `runtime.fold_state_dict` (the
math, `runtime.fold_conv_bn`, is a pure function). In eval mode BN is the per-channel affine
map y = (x - mean) / sqrt(var + eps) * weight + bias, so conv -> bn is one conv with a bias.

    conv -> bn                  conv(bias)                the bn node leaves the graph
    conv -> bn_act(...)         conv_act(bias, ...)       the fused epilogue joins the conv:
                                                          relu, residual add, or both, in order

A BN after an add (`residual_at == "pre"`), after a pool or at a block's input (pre-activation)
has no conv to fold into and stays; so do a second BN in a row (conv -> bn -> bn: the conv
takes in the first) and one whose residual is its conv's own input. The conv records the BN
it took in (`folded`), so the weights can follow (`runtime.fold_state_dict`). A `conv_act`
lowers to one oneDNN convolution with add and ReLU post-ops on CPU (`runtime.Conv2dAct`).
"""
from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from . import ir
from .fuse import reordered
from .ops import cost


def fold(g: nx.DiGraph, keep: Iterable[str] = ()) -> tuple[nx.DiGraph, bool]:
    """(the inference graph of a verified graph, whether any BN folded): a copy, marked
    `inference` either way; `g` is left unchanged. Each conv that took a BN in records it as
    `folded` = (its name, its eps). BNs named in `keep` (requested features) stay, so their
    output stays a value of its own."""
    out = g.copy()
    out.graph["inference"] = True
    keep = set(keep)
    changed = False
    for v in [v for v, d in g.nodes(data=True) if d["op"] in ("bn", "bn_act") and v not in keep]:
        conv = _conv_before(out, v)
        if conv is not None:
            _fold(out, conv, v)
            changed = True
    out = reordered(out)
    ir.verify(out)
    return out, changed


def _conv_before(g: nx.DiGraph, bn: str) -> str | None:
    """The conv whose output only `bn` reads (on its main input), if any, and which does not
    read the BN's residual itself (relu(bn(conv(x)) + x): the folded conv would take x on two
    ports, and the graph holds one edge per pair of nodes)."""
    d = g.nodes[bn]
    if d["op"] == "bn_act" and d["attrs"]["residual_at"] == "pre":
        return None
    u = next(u for u in g.predecessors(bn) if g.edges[u, bn].get("port", 0) == 0)
    if g.nodes[u]["op"] != "conv" or g.out_degree(u) != 1 or "folded" in g.nodes[u]:
        return None  # (a conv takes in one BN: `folded` and the weights name only one)
    return None if set(g.predecessors(u)) & set(g.predecessors(bn)) else u


def _fold(g: nx.DiGraph, conv: str, bn: str) -> None:
    """Graph surgery: the conv takes the BN in (a bias), and a fused BN's relu / residual add
    with it (`conv_act`, taking the BN's shortcut input and consumers)."""
    c, b = g.nodes[conv], g.nodes[bn]
    attrs = {**c["attrs"], "bias": True}
    fused = "conv+" + b.get("fused", "bn")
    if b["op"] == "bn_act":
        attrs.update(relu=b["attrs"]["relu"], residual_at=b["attrs"]["residual_at"])
        c.update(op="conv_act", absorbed=(*b["absorbed"], bn))
    for u, _, e in list(g.in_edges(bn, data=True)):
        if u != conv:
            g.add_edge(u, conv, **e)  # the shortcut, on port 1
    if g.in_degree(conv) == 2:
        (src,) = [u for u in g.predecessors(conv) if g.edges[u, conv].get("port") != 1]
        g.edges[src, conv]["port"] = 0
    for _, w, e in list(g.out_edges(bn, data=True)):
        g.add_edge(conv, w, **e)
    g.remove_node(bn)
    ins = [g.nodes[u]["shape"] for u in sorted(g.predecessors(conv),
                                               key=lambda u: g.edges[u, conv].get("port", 0))]
    c.update(cost(c["op"], attrs, ins, c["shape"]), attrs=attrs, fused=fused,
             folded=(bn, b["attrs"]["eps"]))
