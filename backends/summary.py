"""The summary backend: a torchinfo-like table of the graph IR, collapsible by depth.

Depth 1 rows are the stem, the stages and the head; depth 2 the blocks; depth 3 their layers
(and deeper for nested blocks and shortcut layers). Counts are exact integers from the op table (resdsl/ops.py).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import networkx as nx

from resdsl.graph import totals
from resdsl.ir import shape_str
from resdsl.ops import COUNTS, OPS


@dataclass
class Row:
    name: str
    op: str
    shape: str
    params: int
    buffers: int
    macs: int
    elementwise: int
    depth: int


def display_path(name: str, stage: str | None) -> list[str]:
    """`layer1.0.conv1` -> [layer1, 0, conv1]; stem's `conv1` -> [stem, conv1]."""
    parts = name.split(".")
    if stage and parts[0] != stage:
        parts = [stage] + parts
    return parts


def rows(g: nx.DiGraph, depth: int = 2) -> list[Row]:
    """Rows for every group of nodes down to `depth` path components, parents before their
    children as torchinfo nests them, in graph order; a parent's counts include its children."""
    out: dict[str, Row] = {}
    scopes = g.graph["scopes"]
    for v, d in g.nodes(data=True):
        if OPS[d["op"]].kind == "io":
            continue
        path = display_path(v, d["stage"])
        for level in range(1, min(depth, len(path)) + 1):
            key = ".".join(path[:level])
            leaf = level == len(path)
            if key not in out:
                op = d["op"] if leaf else _group_label(scopes, path[:level])
                out[key] = Row(v if leaf else key, op, "", 0, 0, 0, 0, level)
            row = out[key]
            row.shape = shape_str(d["shape"])
            for c in COUNTS:
                setattr(row, c, getattr(row, c) + d[c])
    return list(out.values())


def _group_label(scopes: dict[str, dict], parts: list[str]) -> str:
    """What a row of several nodes is: a stage's `2 x basic`, a block's kind, `shortcut` for a
    block's shortcut layers; nothing for the stem and head (plain sequences)."""
    key = ".".join(parts)
    if key in scopes and scopes[key]["kind"] != "group":
        return scopes[key]["label"]
    if parts[0] in scopes and scopes[parts[0]]["kind"] == "group" and len(parts) > 1:
        return _group_label(scopes, parts[1:])
    owner = scopes.get(".".join(parts[:-1]), {})
    return "shortcut" if (owner.get("shortcut") or {}).get("name") == parts[-1] else ""


def _num(n: int) -> str:
    return f"{n:,}" if n else "--"


def table(g: nx.DiGraph, depth: int = 2) -> str:
    """The summary as aligned text, totals last."""
    body = [(("  " * (r.depth - 1)) + r.name.split(".")[-1] if r.depth > 1 else r.name, r.op, r.shape, _num(r.params), _num(r.macs))
            for r in rows(g, depth)]
    head = ("name", "op", "output", "params", "MACs")
    widths = [max(len(x[i]) for x in body + [head]) for i in range(5)]
    rule = "-" * (sum(widths) + 8)

    def line(cells) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    t = totals(g)
    out = [f"network {g.graph['name']}: input {shape_str(g.graph['input'])}", rule, line(head),
           rule, *(line(b) for b in body), rule,
           f"params        {t['params']:>16,}   ({t['params'] / 1e6:.3f} M)",
           f"buffers       {t['buffers']:>16,}   (BN running statistics)",
           f"MACs          {t['macs']:>16,}   ({t['macs'] / 1e9:.3f} G, conv + fc)",
           f"element-wise  {t['elementwise']:>16,}   ({t['elementwise'] / 1e9:.3f} G, bn relu add pool)",
           f"output        {shape_str(g.nodes['output']['shape']):>16}"]
    return "\n".join(out) + "\n"


def overview(graphs: dict[str, nx.DiGraph]) -> str:
    """One line per network: the file's model zoo at a glance."""
    head = ("network", "input", "output", "params", "MACs (G)")
    body = []
    for name, g in graphs.items():
        t = totals(g)
        body.append((name, shape_str(g.graph["input"]), shape_str(g.nodes["output"]["shape"]),
                     f"{t['params']:,}", f"{t['macs'] / 1e9:.3f}"))
    widths = [max(len(x[i]) for x in body + [head]) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))).rstrip()
             for r in [head] + body]
    return "\n".join(lines) + "\n"


def to_json(g: nx.DiGraph, depth: int = 2) -> str:
    return json.dumps({
        "network": g.graph["name"],
        "input": list(g.graph["input"]),
        "output": list(g.nodes["output"]["shape"]),
        "totals": totals(g),
        "rows": [asdict(r) for r in rows(g, depth)],
    }, indent=1) + "\n"
