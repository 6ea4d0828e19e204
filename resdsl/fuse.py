"""The fusion pass: a BN and the ReLU and residual add next to it become one `bn_act` node.

The chains the five unit orderings of the Identity Mappings paper, the stems and the
pre-activation nets produce (x the BN's input, r the shortcut):

    bn -> relu              relu(bn(x))         bn_act(relu)                   stems, pre-act
    bn -> add -> relu       relu(bn(x) + r)     bn_act(relu, residual_at=mid)  (a) original
    bn -> add               bn(x) + r           bn_act(residual_at=mid)        (d) pre-act merge
    add -> bn -> relu       relu(bn(x + r))     bn_act(relu, residual_at=pre)  (b) BN after add
    bn -> relu -> add       relu(bn(x)) + r     bn_act(relu, residual_at=post) (c) ReLU before add

A bn alone stays `bn`. The bn node keeps its name, so parameter names (and state_dict keys)
do not change, and absorbs its neighbours: they leave the graph, their counts move to it, and
it takes the add's two in-edges (port 0 the residual branch, port 1 the shortcut). A chain
fuses only when every value inside it has no other consumer, its nodes share one block (or
top-level section), the add is reached through its residual port, and none of its nodes is
in `keep` (requested feature outputs keep their own value).
"""
from __future__ import annotations

from collections.abc import Iterable

import networkx as nx

from . import ir
from .ops import COUNTS


def fuse(g: nx.DiGraph, keep: Iterable[str] = ()) -> tuple[nx.DiGraph, bool]:
    """(fused copy of a verified graph, whether anything fused); `g` is left unchanged."""
    keep = set(keep)
    out = g.copy()
    changed = False
    for v in [v for v, d in g.nodes(data=True) if d["op"] == "bn"]:
        chain = _chain(out, v, keep)
        if chain:
            _absorb(out, v, *chain)
            changed = True
    if changed:
        out = reordered(out)
    ir.verify(out)
    return out, changed


def _chain(g: nx.DiGraph, bn: str, keep: set[str]) -> tuple[list[str], bool, str | None] | None:
    """(nodes the bn absorbs, relu, residual_at) of the longest chain through `bn`, or None."""
    scope = (g.nodes[bn]["stage"], g.nodes[bn]["block"])

    def ok(u: str, op: str) -> bool:
        d = g.nodes[u]
        return d["op"] == op and u not in keep and (d["stage"], d["block"]) == scope

    def sole_next(u: str) -> str | None:
        return next(iter(g.successors(u))) if g.out_degree(u) == 1 and u not in keep else None

    if bn in keep:
        return None
    absorbed, relu, at = [], False, None
    (p,) = g.predecessors(bn)
    if ok(p, "add") and g.out_degree(p) == 1:                    # add -> bn
        absorbed, at = [p], "pre"
    s = sole_next(bn)
    if s and ok(s, "relu"):                                      # bn -> relu
        absorbed, relu = absorbed + [s], True
        t = sole_next(s)
        if at is None and t and ok(t, "add") and _residual_port(g, s, t, bn):
            absorbed, at = absorbed + [t], "post"                # bn -> relu -> add
    elif at is None and s and ok(s, "add") and _residual_port(g, bn, s):
        absorbed, at = [s], "mid"                                # bn -> add
        t = sole_next(s)
        if t and ok(t, "relu"):
            absorbed, relu = absorbed + [t], True                # bn -> add -> relu
    return (absorbed, relu, at) if absorbed else None


def _residual_port(g: nx.DiGraph, u: str, add: str, bn: str | None = None) -> bool:
    """Does `u` feed `add` on the residual port, from another node than the shortcut (a
    fused node cannot read one tensor twice)?"""
    (x,) = g.predecessors(bn or u)
    shortcut = next(w for w in g.predecessors(add) if g.edges[w, add].get("port") == 1)
    return g.edges[u, add].get("port") == 0 and shortcut != x


def _absorb(g: nx.DiGraph, bn: str, absorbed: list[str], relu: bool, at: str | None) -> None:
    """Graph surgery: `bn` becomes bn_act, takes the chain's inputs, outputs and counts."""
    d = g.nodes[bn]
    add = next((u for u in absorbed if g.nodes[u]["op"] == "add"), None)
    last = absorbed[-1] if at != "pre" or relu else bn
    order = {"pre": ["add", "bn"], "mid": ["bn", "add"], "post": ["bn", "relu", "add"]}
    ops = order.get(at, ["bn"]) + (["relu"] if relu and at != "post" else [])
    for u in absorbed:
        for c in COUNTS:
            d[c] += g.nodes[u][c]
    inputs = []
    if add is not None:
        sources = {e.get("port"): (u, e) for u, _, e in g.in_edges(add, data=True)}
        first = sources[0][0] if at == "pre" else next(iter(g.predecessors(bn)))
        inputs = [(first, {"port": 0}), (sources[1][0], dict(sources[1][1]))]
    outputs = [(w, dict(e)) for _, w, e in g.out_edges(last, data=True)] if last != bn else []
    g.remove_nodes_from(absorbed)
    for u, e in inputs:
        if g.has_edge(u, bn):
            g.remove_edge(u, bn)
        g.add_edge(u, bn, **e)
    for w, e in outputs:
        g.add_edge(bn, w, **e)
    d.update(op="bn_act", attrs={**d["attrs"], "relu": relu, "residual_at": at},
             fused="+".join(ops), absorbed=tuple(absorbed))


def reordered(g: nx.DiGraph) -> nx.DiGraph:
    """The same graph with nodes in a topological order close to the builder's (a fused bn
    now reads the shortcut, which the builder added after it)."""
    index = {v: i for i, v in enumerate(g.nodes)}
    out = nx.DiGraph(**g.graph)
    for v in nx.lexicographical_topological_sort(g, key=index.__getitem__):
        out.add_node(v, **g.nodes[v])
    out.add_edges_from(g.edges(data=True))
    return out
