"""The draw backend: Graphviz diagrams of the graph IR at three levels of detail.

    stage   one box per stage read like Table 1 of the ResNet paper (block kind, the residual
            branch's convs in brackets, x count, output size), plus the stem and head boxes;
    block   every residual unit as one box of its heavy ops (conv, pool, fc) and a `+` junction;
            its shortcut arcs around the box, drawn by kind as in the paper's Figure 3: solid
            identity, dashed projection, dotted zero-pad (option A), dashed and labelled
            avgdown / custom. Units without an add (plain nets) have no arc;
    layer   every op, in frames per stage and per block (each titled left of its first op),
            with output shapes on the edges where they change or cross into a block, once
            per tensor. Runs of identical consecutive blocks collapse to one drawn block
            marked `x n` unless `expand`.

Colours and texts are each op's `look` in the op table (resdsl/ops.py), the same at every level. A node with a truthy `fused` attribute
(set by a fusion pass) is drawn with a double orange border. `to_dot` builds the graphviz
source (needs the `graphviz` Python package); `write` renders it, by the file's extension, with
Graphviz's `dot` program (not needed for `.dot`). Missing pieces are E6xx errors.
"""
from __future__ import annotations

import html
import importlib
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx

from resdsl.errors import ResdslError
from resdsl.ir import shortcut_edges
from resdsl.ops import OPS, PLAIN

LEVELS = ("stage", "block", "layer")
FORMATS = {"svg": "svg", "png": "png", "pdf": "pdf", "dot": "dot", "gv": "dot"}
PNG_DPI = 192  # a PNG's pixels per inch: twice Graphviz's own 96, for today's screens
INSTALL = ("install Graphviz: `apt-get install graphviz`, `brew install graphviz` or "
           "`conda install graphviz`")


class DrawError(ResdslError):
    """E6xx: a diagram that cannot be made or written."""


# ---- the look: one table per concern ------------------------------------------------------

FONT = "Helvetica,Arial,sans-serif"
FUSED = ("#fde3c8", "#d9822b")
ERROR = ("#fbd9d5", "#c0392b")
GREY = "#666666"
# shortcut kind -> edge attributes (paper Figure 3: solid identity, dashed projection)
# (weight 0: the main path, not the arcs, decides where nodes sit)
SHORTCUT = {
    "identity": {"style": "solid", "color": "#333333", "weight": "0"},
    "projection": {"style": "dashed", "color": "#2f5f8f", "weight": "0"},
    "pad": {"style": "dotted", "color": "#333333", "penwidth": "1.6", "weight": "0"},
    "avgdown": {"style": "dashed", "color": "#855c99", "label": "avgdown", "weight": "0"},
    "custom": {"style": "dashed", "color": "#a8524a", "label": "custom", "weight": "0"},
}
# the main path at the layer level: heavier than dot's pull towards narrow clusters, which
# would bend the column to slide it in under the frames' captions
MAIN = {"weight": "10"}
SHORTCUT_BOX = {"projection": "conv", "avgdown": "avgpool", "pad": "pad", "custom": "fc"}


def _x(shape: Iterable[int]) -> str:
    return "\u00d7".join(map(str, shape))


def describe(op: str, a: dict[str, Any], table: bool = False) -> str:
    """Paper-style text of one op: `3×3 conv, 128, /2`, `fc 1000`; `table`: `3×3, 128`."""
    look = OPS[op].look if op in OPS else None
    return look.text(a, table) if look and look.text else op


def _io(op: str) -> bool:
    """The input or output node, which shows its own shape."""
    return op in OPS and OPS[op].kind == "io"


def _heavy_op(op: str) -> bool:
    """Shown at the stage and block levels: convs, pools, fc, the zero-pad shortcut."""
    return op in OPS and OPS[op].look.heavy


def _fused_text(v: Any) -> str:
    if isinstance(v, str):
        return f"fused: {v}"
    if isinstance(v, (list, tuple)):
        return "fused: " + "+".join(map(str, v))
    return "fused"


def _html(*lines: tuple[str, str]) -> str:
    """An HTML-like label of (text, style) lines; style '' | 'small' | 'bold' | 'error'."""
    out = []
    for text, style in lines:
        t = html.escape(text)
        if style == "small":
            t = f'<FONT POINT-SIZE="8" COLOR="{GREY}">{t}</FONT>'
        elif style == "bold":
            t = f"<B>{t}</B>"
        elif style == "error":
            t = f'<FONT COLOR="{ERROR[1]}"><B>{t}</B></FONT>'
        out.append(t)
    return "<" + "<BR/>".join(out) + ">"


def _box(op: str, **extra: str) -> dict[str, str]:
    fill, line = (OPS[op].look.fill, OPS[op].look.border) if op in OPS else PLAIN
    return {"shape": "box", "style": "rounded,filled", "fillcolor": fill, "color": line, **extra}


def _merge_text(g: nx.DiGraph, v: str) -> str:
    """A merge's symbol (`+`); a fused node that merged is drawn as the `+` it took in."""
    d = g.nodes[v]
    return describe(d["op"], d["attrs"]) if OPS[d["op"]].look.junction else "+"


def _junction(label: str = "+", **extra: str) -> dict[str, str]:
    return {"shape": "circle", "label": label, "width": "0.24", "fixedsize": "true",
            "fontsize": "12", "style": "filled", "fillcolor": "#ffffff", "color": "#333333",
            **extra}


# ---- structure: sections (stem, units, head) and the parts of a unit ----------------------

@dataclass
class Section:
    """Consecutive nodes drawn together at the block level: a residual unit (an outermost
    block), the stem or head group, a run of bare top-level layers, the input or output."""

    key: str
    kind: str                 # block kind, 'stem', 'head', 'layers', 'io' (input, output)
    stage: str | None
    nodes: list[str] = field(default_factory=list)
    add: str | None = None
    shortcut: str | None = None     # the resolved kind when there is an add
    pre: list[str] = field(default_factory=list)
    residual: list[str] = field(default_factory=list)
    branch: list[str] = field(default_factory=list)   # the shortcut's own nodes
    post: list[str] = field(default_factory=list)

    @property
    def is_unit(self) -> bool:
        return self.kind not in ("io", "stem", "head", "layers")


def chain(g: nx.DiGraph, v: str) -> list[str]:
    """The clusters a node sits in, outermost first: [stage, block, nested block, ...]."""
    d, scopes = g.nodes[v], g.graph["scopes"]
    out, scope = [], d.get("block")
    while scope is not None:
        out.insert(0, scope)
        scope = scopes[scope]["parent"]
    if d.get("stage") and (not out or out[0] != d["stage"]):
        out.insert(0, d["stage"])
    return out


def _section_key(g: nx.DiGraph, v: str) -> tuple[str, str]:
    d, scopes = g.nodes[v], g.graph["scopes"]
    if _io(d["op"]):  # ("?": a node an error names)
        return v, "io"
    stage = d.get("stage")
    if stage and scopes[stage]["kind"] == "group":  # stem { } and head { } groups
        return stage, stage
    c = chain(g, v)
    if d.get("block"):
        unit = c[1] if stage and len(c) > 1 else c[0]
        return unit, scopes[unit]["label"]
    return "", "layers"


def sections(g: nx.DiGraph) -> list[Section]:
    """The graph's nodes cut into consecutive sections, in graph (topological) order."""
    out: list[Section] = []
    for v in g.nodes:
        key, kind = _section_key(g, v)
        if not out or out[-1].key != key and not (kind == out[-1].kind == "layers"):
            out.append(Section(key or v, kind, g.nodes[v].get("stage")))
        out[-1].nodes.append(v)
    merges = {block: v for block, (_, v, _) in shortcut_edges(g).items()}
    for s in out:
        _split(g, s, merges.get(s.key) if s.is_unit else None)
    return out


def _closure(g: nx.DiGraph, start: str, members: set[str]) -> set[str]:
    """`start` and its ancestors inside `members`."""
    seen, todo = set(), [start] if start in members else []
    while todo:
        v = todo.pop()
        if v not in seen:
            seen.add(v)
            todo.extend(u for u in g.predecessors(v) if u in members)
    return seen


def _split(g: nx.DiGraph, s: Section, add: str | None) -> None:
    """Fill a unit's pre / residual / shortcut-branch / post parts from its merge node (the
    node of its own block that takes the shortcut)."""
    members = set(s.nodes)
    if add is None or add not in members or g.in_degree(add) != 2:
        s.residual = list(s.nodes)
        return
    ports = {g.edges[u, add].get("port"): u for u in g.predecessors(add)}
    r, sc = ports[0], ports[1]
    s.add, s.shortcut = add, g.edges[sc, add].get("shortcut", "identity")
    res, short = _closure(g, r, members), _closure(g, sc, members)
    s.pre = [v for v in s.nodes if v in res and v in short]
    s.residual = [v for v in s.nodes if v in res and v not in short]
    s.branch = [v for v in s.nodes if v in short and v not in res]
    s.post = [v for v in s.nodes if v not in res and v not in short and v != add]


def _heavy(g: nx.DiGraph, nodes: Iterable[str], table: bool = False) -> list[str]:
    return [describe(g.nodes[v]["op"], g.nodes[v]["attrs"], table) for v in nodes
            if _heavy_op(g.nodes[v]["op"])]


def _out_shape(g: nx.DiGraph, nodes: list[str]) -> str:
    shape = g.nodes[nodes[-1]].get("shape")
    return _x(shape) if shape else "?"


# ---- the three views ------------------------------------------------------------------------

def _digraph(g: nx.DiGraph, rankdir: str):
    gv = graphviz_module()
    dot = gv.Digraph(name=str(g.graph.get("name", "network")))
    dot.attr("graph", rankdir=rankdir, fontname=FONT, fontsize="11", nodesep="0.22",
             ranksep="0.28", bgcolor="white", labeljust="l", pad="0.1")
    dot.attr("node", fontname=FONT, fontsize="10", height="0.3", margin="0.1,0.05",
             penwidth="0.9")
    dot.attr("edge", fontname=FONT, fontsize="8", color="#333333", arrowsize="0.6",
             penwidth="0.9", fontcolor=GREY)
    return dot


def _end(dot, g: nx.DiGraph, s: Section) -> str:
    """Draw the input or output node."""
    v = s.nodes[0]
    shape = g.nodes[v].get("shape")
    dot.node(s.key, _html((v, "bold"), (_x(shape) if shape else "?", "small")),
             shape="plaintext", group="main")
    return s.key


def _stage_box(g: nx.DiGraph, group: list[Section]) -> str:
    """A Table-1 row: the stage's name and output size, the first unit's convs in a bracket,
    `× n`, the block kind."""
    first, last = group[0], group[-1]
    shape = g.nodes[last.nodes[-1]].get("shape") or ()
    size = _x(shape[1:]) if len(shape) == 3 else _x(shape)
    kinds = "/".join(dict.fromkeys(s.kind for s in group))
    convs = _heavy(g, first.residual, table=True) or [kinds]
    rows = "".join(f"<TR><TD>{html.escape(c)}</TD></TR>" for c in convs)
    bracket = (f'<TABLE BORDER="1" SIDES="LR" CELLBORDER="0" CELLSPACING="0" '
               f'CELLPADDING="1" COLOR="#333333">{rows}</TABLE>')
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3">'
            f'<TR><TD ALIGN="LEFT"><B>{html.escape(first.stage or first.key)}</B></TD>'
            f'<TD ROWSPAN="3">{bracket}</TD><TD ROWSPAN="3">\u00d7 {len(group)}</TD></TR>'
            f'<TR><TD ALIGN="LEFT">{html.escape(size)}, {shape[0] if shape else "?"}</TD></TR>'
            f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="8" COLOR="{GREY}">'
            f'{html.escape(kinds)}</FONT></TD></TR></TABLE>>')


def stage_view(g: nx.DiGraph, dot) -> None:
    """Input, stem, one box per stage, head, output: a chain."""
    groups: list[list[Section]] = []
    for s in sections(g):
        if groups and s.is_unit and s.stage and groups[-1][0].stage == s.stage:
            groups[-1].append(s)
        else:
            groups.append([s])
    prev = None
    for group in groups:
        s = group[0]
        if s.kind == "io":
            name = _end(dot, g, s)
        elif s.is_unit:
            name = s.stage or s.key
            dot.node(name, _stage_box(g, group), **_box("conv", margin="0.04", group="main"))
        else:
            name = _group_node(dot, g, s)
        if prev:
            dot.edge(prev, name)
        prev = name


def _group_node(dot, g: nx.DiGraph, s: Section) -> str:
    """Stem, head or bare layers: their heavy ops, then the output shape."""
    lines = [(s.key, "bold")] + [(t, "") for t in _heavy(g, s.nodes)]
    lines.append((_out_shape(g, s.nodes), "small"))
    op = next((g.nodes[v]["op"] for v in s.nodes if _heavy_op(g.nodes[v]["op"])), "flatten")
    dot.node(s.key, _html(*lines), **_box(op, group="main"))
    return s.key


def block_view(g: nx.DiGraph, dot) -> None:
    """Every unit as a box before a `+` junction; its shortcut arcs from the unit's branch
    point to the junction. Units of one stage share a cluster."""
    prev: str | None = None
    secs = sections(g)
    i = 0
    while i < len(secs):
        s = secs[i]
        if s.kind == "io":
            name = _end(dot, g, s)
        elif not s.is_unit:
            name = _group_node(dot, g, s)
        elif not s.stage:  # a block at the network's top level: no stage cluster
            prev, i = _unit(dot, dot, g, s, prev), i + 1
            continue
        else:
            j = i
            while j < len(secs) and secs[j].is_unit and secs[j].stage == s.stage:
                j += 1
            prev = _stage_cluster(dot, g, secs[i:j], prev)
            i = j
            continue
        if prev:
            dot.edge(prev, name)
        prev, i = name, i + 1


def _stage_cluster(dot, g: nx.DiGraph, units: list[Section], prev: str | None) -> str:
    """A stage's units in a cluster, its caption beside the first unit (a cluster label
    would sit where the shortcut arcs cross into the stage)."""
    stage = units[0].stage or units[0].key
    kinds = "/".join(dict.fromkeys(u.kind for u in units))
    with dot.subgraph(name=f"cluster_{stage}") as c:
        c.attr(label="", style="rounded,dashed", color="#9a9a9a")
        for u in units:
            prev = _unit(c, dot, g, u, prev)
        with c.subgraph() as row:
            row.attr(rank="same")
            row.node(f"{stage}.caption", _html(
                (stage, "bold"), (f"{len(units)} \u00d7 {kinds}", ""),
                (_out_shape(g, units[-1].nodes), "small")), shape="plaintext")
            row.edge(f"{stage}.caption", units[0].key, style="invis")
    assert prev is not None
    return prev


def _lines(g: nx.DiGraph, nodes: list[str]) -> str:
    return _html(*[(t, "") for t in _heavy(g, nodes)])


def _unit(c, dot, g: nx.DiGraph, u: Section, prev: str | None) -> str:
    """One unit: [pre] -> body -> + [-> post]; the shortcut runs from the branch point (the
    unit's input, or its pre-layers) to +, through a box when it has layers of its own."""
    def step(name: str, label: str, op: str = "conv", **kw: str) -> str:
        c.node(name, label, **_box(op, group="main", **kw))
        if prev:
            dot.edge(prev, name)
        return name

    if _heavy(g, u.pre):
        prev = step(f"{u.key}.pre", _lines(g, u.pre))
    start = prev
    body = [(f"{u.key} \u00b7 {u.kind}", "small")] + [(t, "") for t in _heavy(g, u.residual)]
    prev = step(u.key, _html(*body))
    if not u.add:
        return prev
    c.node(u.add, **_junction(_merge_text(g, u.add), group="main"))
    dot.edge(prev, u.add)
    style = dict(SHORTCUT.get(u.shortcut or "", SHORTCUT["custom"]))
    label = style.pop("label", None)
    if u.branch:
        box = f"{u.key}.shortcut"
        text = _heavy(g, u.branch) or [describe(g.nodes[v]["op"], g.nodes[v]["attrs"])
                                        for v in u.branch]
        c.node(box, _html(*[(t, "") for t in text]),
               **_box(SHORTCUT_BOX.get(u.shortcut or "", "fc"), fontsize="9",
                      style="rounded,filled," + style["style"]))
        with c.subgraph() as row:  # the box beside the unit, on the arcs' side
            row.attr(rank="same")
            row.edge(u.key, box, style="invis")
        if start:
            dot.edge(start, box, **style)
        start = box
    if start:
        dot.edge(start, u.add, **style, **({"label": label} if label else {}))
    prev = u.add
    if _heavy(g, u.post):
        prev = step(f"{u.key}.post", _lines(g, u.post))
    return prev


# ---- layer level: every op, clusters, collapsed runs -----------------------------------------

def _signature(g: nx.DiGraph, s: Section) -> tuple:
    """What makes two units draw the same: kind, ops, attributes, shapes and wiring."""
    members = set(s.nodes)

    def rel(v: str) -> str:
        return v[len(s.key) + 1:] if v in members else "<in>"
    nodes = tuple((rel(v), d["op"], repr(d.get("attrs")), d.get("shape"), repr(d.get("fused")))
                  for v, d in ((v, g.nodes[v]) for v in s.nodes))
    edges = tuple((rel(a), rel(b), repr(sorted(e.items())))
                  for a, b, e in g.in_edges(s.nodes, data=True))
    return s.kind, nodes, edges


def runs(g: nx.DiGraph, secs: list[Section]) -> list[list[Section]]:
    """Runs of two or more identical consecutive units of one stage."""
    out: list[list[Section]] = []
    last = None
    for s in secs:
        sig = (s.stage, _signature(g, s)) if s.is_unit and s.stage else None
        if sig is not None and sig == last:
            out[-1].append(s)
        else:
            out.append([s])
        last = sig
    return [r for r in out if len(r) > 1]


@dataclass
class _Layout:
    """Which IR nodes are drawn, and as which drawn node (a collapsed block's first unit)."""

    rep: dict[str, str] = field(default_factory=dict)
    run_of: dict[str, int] = field(default_factory=dict)
    first: set[str] = field(default_factory=set)
    labels: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # a run's caption

    def drawn(self, v: str) -> bool:
        return v not in self.run_of or v in self.first

    def keep(self, a: str, b: str) -> bool:
        same = a in self.run_of and self.run_of.get(a) == self.run_of.get(b)
        return not same or (a in self.first and b in self.first)


def _layout(g: nx.DiGraph, secs: list[Section], expand: bool) -> _Layout:
    lay = _Layout()
    for i, run in enumerate([] if expand else runs(g, secs)):
        head = run[0]
        lay.first.update(head.nodes)
        lay.labels[head.key] = [(f"\u00d7 {len(run)}", "bold"),
                                (f"{head.key} \u2026 {run[-1].key}", ""), (head.kind, "small")]
        for s in run:
            for v in s.nodes:
                lay.run_of[v] = i
                lay.rep[v] = head.key + v[len(s.key):]
    return lay


def _cluster_label(g: nx.DiGraph, name: str, short: str, depth: int) -> list[tuple[str, str]]:
    """A frame's caption: its name (bold for a stage, stem or head), then its kind."""
    kind = g.graph["scopes"][name]["label"] if name in g.graph["scopes"] else ""
    lines = [(short, "" if depth else "bold")]
    if kind not in ("", name, short):
        lines.append((kind.replace(" x ", " \u00d7 "), "small"))
    return lines


def _tree(g: nx.DiGraph, nodes: list[str], side: set[str]) -> dict:
    """Nested clusters {'nodes': [...], 'sub': {name: tree}, 'lead': node} from each node's
    chain; `lead` is a cluster's first node off the shortcut branches (else its first)."""
    root: dict = {"nodes": [], "sub": {}}
    for v in nodes:
        path = [root]
        for name in chain(g, v):
            path.append(path[-1]["sub"].setdefault(name, {"nodes": [], "sub": {}}))
        path[-1]["nodes"].append(v)
        for t in path:
            if "lead" not in t or t["lead"] in side and v not in side:
                t["lead"] = v
    return root


def _caption(name: str) -> str:
    """The node that carries a cluster's title (a space: no IR node name has one)."""
    return f"{name} caption"


def _emit(dot, g: nx.DiGraph, tree: dict, lay: _Layout, error: tuple | None,
          side: set[str], depth: int = 0, prefix: str = "") -> None:
    """The nodes of `tree` and a frame per subtree, titled by a caption node left of the
    frame's first node (edges route around a node, but cross a cluster's own label)."""
    for v in tree["nodes"]:
        _layer_node(dot, g, v, prefix, error, v in side)
    for name, sub in tree["sub"].items():
        with dot.subgraph(name=f"cluster_{name}") as c:
            run = name in lay.labels
            short = name[len(prefix):] if depth > 1 and name.startswith(prefix) else name
            c.attr(label="", style="rounded,filled" + (",bold" if run else ""),
                   fillcolor="#f7f7f7" if depth else "#ffffff",
                   color="#333333" if run else "#aaaaaa")
            text = lay.labels.get(name) or _cluster_label(g, name, short, depth)
            c.node(_caption(name), _html(*text),
                   shape="plaintext", fontcolor="#333333", height="0.2", margin="0.02,0")
            _emit(c, g, sub, lay, error, side, depth + 1, name + ".")
            lead = sub["lead"]
            inner = next((k for k, t in sub["sub"].items() if t["lead"] == lead), None)
            with c.subgraph() as row:  # left of the first node, or of the inner caption
                row.attr(rank="same")
                row.edge(_caption(name), _caption(inner) if inner else lead, style="invis")


def _layer_node(dot, g: nx.DiGraph, v: str, prefix: str, error: tuple | None,
                side: bool) -> None:
    d = g.nodes[v]
    op = d.get("op", "?")
    look = OPS[op].look if op in OPS else None
    short = v.removeprefix(prefix)
    if _io(op):
        shape = d.get("shape")
        dot.node(v, _html((op, "bold"), (_x(shape) if shape else "?", "small")),
                 shape="plaintext", group="main")
        return
    extra: dict[str, str] = {} if side else {"group": "main"}
    lines = [(describe(op, d["attrs"]) if "attrs" in d else short, "")]
    junction = look is not None and look.junction
    if not junction and short != lines[0][0] and not re.fullmatch(re.escape(op) + r"\d*", short):
        lines.append((short, "small"))
    if d.get("fused"):
        lines.append((_fused_text(d["fused"]), "small"))
        extra.update(fillcolor=FUSED[0], color=FUSED[1], peripheries="2", penwidth="1.2")
    if error and v == error[0]:
        lines.append((f"error {error[1]}", "error"))
        extra.update(fillcolor=ERROR[0], color=ERROR[1], penwidth="2.2")
    if junction and set(extra) <= {"group"}:
        dot.node(v, **_junction(_merge_text(g, v), **extra))
    else:
        dot.node(v, _html(*lines), **_box(op, **extra))


def _edge_label(g: nx.DiGraph, a: str, b: str, section: dict[str, str],
                branch: dict[str, str]) -> str:
    """The producer's output shape, where it changes or enters another section; once per
    tensor, so not on the way into a shortcut branch (the main path's edge has it), nor
    into a merge's shortcut port, nor at the input or output (their nodes show it)."""
    d = g.nodes[a]
    shown = (g.edges[a, b].get("port") == 1 or b in branch and a not in branch
             or _io(d["op"]) or _io(g.nodes[b].get("op", "?")))
    if "shape" not in d or shown:
        return ""
    preds = list(g.predecessors(a))
    changed = not preds or g.nodes[preds[0]].get("shape") != d["shape"]
    crosses = a not in branch and section.get(a) != section.get(b)
    return _x(d["shape"]) if changed or crosses else ""


def _shortcut_edges(secs: list[Section]) -> dict[str, str]:
    """Node -> shortcut kind, for the nodes of every shortcut branch."""
    out = {}
    for s in secs:
        for v in s.branch:
            out[v] = s.shortcut or "custom"
    return out


def layer_view(g: nx.DiGraph, dot, expand: bool = False,
               error: tuple[str, str, str] | None = None) -> None:
    """Every op; collapsed runs of identical blocks unless `expand`; `error` = (node, code,
    message) marks a node in red and adds a note with the message."""
    if error and error[0] not in g:
        g = _with_missing(g, error[0])
    dot.attr("graph", newrank="true")  # captions share a rank with nodes of inner clusters
    secs = sections(g)
    lay = _layout(g, secs, expand)
    kinds = _shortcut_edges(secs)
    side = set(kinds)
    _emit(dot, g, _tree(g, [v for v in g.nodes if lay.drawn(v)], side), lay, error, side)
    section = {v: s.key for s in secs for v in s.nodes}
    seen = set()
    for a, b, e in g.edges(data=True):
        if not lay.keep(a, b):
            continue
        ra, rb = lay.rep.get(a, a), lay.rep.get(b, b)
        if (ra, rb) in seen:
            continue
        seen.add((ra, rb))
        kind = e.get("shortcut") or kinds.get(b)
        style = dict(SHORTCUT.get(kind, SHORTCUT["custom"]) if kind else MAIN)
        if kind and not (e.get("port") == 1 and kind in ("avgdown", "custom")):
            style.pop("label", None)
        label = style.pop("label", None) or _edge_label(g, a, b, section, kinds)
        dot.edge(ra, rb, **style, **({"label": label} if label else {}))
    if error:
        _error_note(dot, g, error, lay)


def _with_missing(g: nx.DiGraph, node: str) -> nx.DiGraph:
    """A copy of a partial graph with the node an error names but the builder never added
    (a shortcut that could not be made), after the last node and in its block."""
    g = g.copy()
    last = list(g.nodes)[-1]
    parts = node.split(".")
    blocks = [p for p in (".".join(parts[:i]) for i in range(len(parts), 0, -1))
              if p in g.graph["scopes"]]
    g.add_node(node, op="?", stage=g.nodes[last].get("stage"),
               block=blocks[0] if blocks else None)
    g.add_edge(last, node)
    return g


def _error_note(dot, g: nx.DiGraph, error: tuple[str, str, str], lay: _Layout) -> None:
    node, code, message = error
    text = "\n".join(textwrap.wrap(f"error[{code}]: {message}", 48))
    dot.node("error-note", _html(*[(t, "") for t in text.splitlines()]), shape="note",
             color=ERROR[1], fontcolor=ERROR[1], style="filled", fillcolor="#ffffff")
    dot.edge(lay.rep.get(node, node), "error-note", color=ERROR[1], style="dashed",
             arrowhead="none")


# ---- entry points -------------------------------------------------------------------------

def graphviz_module():
    """The `graphviz` Python package, or E602 saying how to get it."""
    try:
        return importlib.import_module("graphviz")
    except ImportError:
        raise DrawError("drawing needs the `graphviz` Python package, which is not installed",
                        hint="pip install 'graphviz>=0.20' (a dependency of resdsl); for "
                             "formats other than .dot also " + INSTALL, code="E602") from None


def to_dot(g: nx.DiGraph, level: str = "block", rankdir: str = "TB", expand: bool = False,
           error: tuple[str, str, str] | None = None):
    """The diagram as a `graphviz.Digraph` (its `.source` is the DOT text)."""
    assert level in LEVELS, level
    dot = _digraph(g, rankdir.upper())
    if level == "stage":
        stage_view(g, dot)
    elif level == "block":
        block_view(g, dot)
    else:
        layer_view(g, dot, expand, error)
    return dot


def format_of(path: str) -> str:
    """The output format named by a file's extension."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise DrawError(f"cannot tell a picture format from '{path}'", code="E605",
                        hint="end the file name in .svg, .png, .pdf or .dot")
    return FORMATS[ext]


def render(dot, fmt: str, dpi: int = PNG_DPI) -> bytes:
    """The diagram in `fmt`: DOT text as is, anything else through Graphviz's `dot`; a PNG
    at `dpi` pixels per inch (the vector formats have no resolution)."""
    if fmt == "dot":
        return dot.source.encode("utf-8")
    gv = graphviz_module()
    if fmt == "png":
        dot = dot.copy()
        dot.attr("graph", dpi=str(dpi))
    try:
        return dot.pipe(format=fmt, quiet=True)
    except gv.ExecutableNotFound:
        raise DrawError(f"writing .{fmt} needs Graphviz's `dot` program, which is not on PATH",
                        hint=INSTALL + "; or write a .dot file and render it elsewhere",
                        code="E601") from None
    except gv.CalledProcessError as e:
        why = (e.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise DrawError(f"Graphviz's `dot` failed: {why[0] if why else e}",
                        code="E603") from None


def write(dot, path: str, dpi: int = PNG_DPI) -> None:
    """Render by the file's extension (a PNG at `dpi`) and write the file."""
    data = render(dot, format_of(path), dpi)
    try:
        Path(path).write_bytes(data)
    except OSError as e:
        raise DrawError(f"cannot write '{path}': {e.strerror or e}", code="E604") from None


def draw(g: nx.DiGraph, path: str, dpi: int = PNG_DPI, **kw: Any) -> None:
    """`to_dot` then `write`."""
    write(to_dot(g, **kw), path, dpi)


def located(err: ResdslError) -> tuple[nx.DiGraph, tuple[str, str, str]] | None:
    """The partial graph and (node, code, message) of the first error of a group that carries
    one (a shape error found while building), or None."""
    for e in err.errors:
        g = getattr(e, "partial_graph", None)
        if g is not None:
            return g.to_networkx(), (getattr(e, "node", ""), e.code, e.message)
    return None
