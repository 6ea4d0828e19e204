"""`resdsl draw`: the DOT structure at each level (nodes, edges, clusters, shortcut styles), run
collapsing, fused and error marking, the layer level's layout as `dot` makes it (no edge through
a title, one straight main column, a shape label once per tensor), renders through `dot` and
the PNG resolution, and the errors when Graphviz (the program or the Python package) is
missing."""
from __future__ import annotations

import functools
import itertools
import re
import shlex
import shutil
import struct
import subprocess
import sys
from collections import Counter

import networkx as nx
import pytest
from click.testing import CliRunner
from resdsl.backends import draw as d

from resdsl.cli import main
from resdsl.errors import ResdslError
from resdsl.pipeline import check_file, check_text

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")

# One stage per shortcut kind: projection (layer1.0), identity (layer1.1), pad (layer2.0),
# avgdown (layer3.0), custom (layer4.0), and a plain stage without shortcuts.
ZOO = """\
use std

block custom_sc(planes, stride = 1) {
  residual {
    conv planes, 3x3, stride = stride; bn; relu
  }
  shortcut {
    conv planes, 1x1, stride = stride
  }
  merge add
}

network zoo {
  input 3 x 32 x 32
  stem { conv 16, 3x3; bn; relu }
  stage layer1 = 2 x basic(32)
  stage layer2 = 1 x basic_a(64, stride = 2)
  stage layer3 = 1 x bottleneck_d(16, stride = 2)
  stage layer4 = 1 x custom_sc(64)
  stage layer5 = 2 x plain_basic(64)
  head { avgpool: avgpool; fc: fc 10 }
}
"""

# Four identical blocks after a different first one: layer1.1 .. layer1.3 collapse.
DEEP = """\
use std
network deep {
  input 3 x 32 x 32
  stem { conv 16, 3x3 }
  stage layer1 = 4 x preact_basic(32, stride = 2)
  head { bn; relu; avgpool: avgpool; fc: fc 10 }
}
"""

BAD = """\
use std
network bad {
  input 3 x 32 x 32
  stem { conv 16, 3x3 }
  stage layer1 = 2 x basic_a(16)
  stage layer2 = 2 x basic_a(8, stride = 2)
  head { avgpool: avgpool; fc: fc 10 }
}
"""


# ---- a small reader for the DOT text the graphviz package writes ---------------------------

def _attrs(text: str) -> dict[str, str]:
    """`k=v k2="a b" label=<<B>x</B>>` -> dict (values unquoted, HTML kept in <>)."""
    out, i = {}, 0
    while i < len(text):
        m = re.compile(r"\s*([A-Za-z_]+)=").match(text, i)
        if not m:
            break
        key, i = m.group(1), m.end()
        if text[i] == '"':
            j = i + 1
            while text[j] != '"' or text[j - 1] == "\\":
                j += 1
            out[key], i = text[i + 1:j], j + 1
        elif text[i] == "<":
            depth, j = 0, i
            while True:
                depth += {"<": 1, ">": -1}.get(text[j], 0)
                j += 1
                if depth == 0:
                    break
            out[key], i = text[i:j], j
        else:
            m = re.compile(r"[^\s\]]+").match(text, i)
            out[key], i = m.group(0), m.end()
    return out


NAME = r'(?:"((?:[^"\\]|\\.)*)"|([\w.]+))'


class Dot:
    """Nodes (name -> attrs), edges [(a, b, attrs)], clusters {name: [member nodes]}."""

    def __init__(self, source: str):
        self.source = source
        self.nodes: dict[str, dict[str, str]] = {}
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        self.clusters: dict[str, list[str]] = {}
        stack: list[str] = []
        for line in source.splitlines():
            s = line.strip()
            if m := re.fullmatch(r"subgraph " + NAME + r" \{", s):
                stack.append(m.group(1) or m.group(2))
                self.clusters.setdefault(stack[-1], [])
            elif s == "subgraph {" or s == "{":
                stack.append("")
            elif s == "}":
                if stack:
                    stack.pop()
            elif m := re.fullmatch(NAME + " -> " + NAME + r"(?: \[(.*)\])?", s):
                self.edges.append((m.group(1) or m.group(2), m.group(3) or m.group(4),
                                   _attrs(m.group(5) or "")))
            elif (m := re.fullmatch(NAME + r" \[(.*)\]", s)) and not s.startswith(
                    ("graph ", "node ", "edge ")):
                name = m.group(1) or m.group(2)
                self.nodes[name] = _attrs(m.group(3))
                for c in stack:
                    if c.startswith("cluster_"):
                        self.clusters[c].append(name)

    def edge(self, a: str, b: str) -> dict[str, str]:
        found = [e for x, y, e in self.edges if (x, y) == (a, b)]
        assert len(found) == 1, f"{a} -> {b}: {len(found)} edges"
        return found[0]

    def visible(self) -> nx.DiGraph:
        return nx.DiGraph([(a, b) for a, b, e in self.edges if e.get("style") != "invis"])


def graph(text: str, name: str) -> nx.DiGraph:
    return check_text(text).graphs[name]


def dot_of(g: nx.DiGraph, **kw) -> Dot:
    return Dot(d.to_dot(g, **kw).source)


@pytest.fixture(scope="module")
def zoo() -> nx.DiGraph:
    return graph(ZOO, "zoo")


# ---- block level -----------------------------------------------------------------------------

def test_block_level_units_junctions_and_clusters(zoo):
    dot = dot_of(zoo, level="block")
    units = ["layer1.0", "layer1.1", "layer2.0", "layer3.0", "layer4.0", "layer5.0", "layer5.1"]
    for u in units:
        assert u in dot.nodes
    for stage in ("layer1", "layer2", "layer3", "layer4", "layer5"):
        assert f"cluster_{stage}" in dot.clusters
    assert set(dot.clusters["cluster_layer1"]) >= {"layer1.0", "layer1.0.add", "layer1.1"}
    assert {"input", "stem", "head", "output"} <= set(dot.nodes)
    assert "3×3 conv, 32" in dot.nodes["layer1.0"]["label"]
    assert nx.is_directed_acyclic_graph(dot.visible())
    assert nx.has_path(dot.visible(), "input", "output")


@pytest.mark.parametrize("unit, kind, via", [
    ("layer1.0", "projection", True), ("layer1.1", "identity", False),
    ("layer2.0", "pad", True), ("layer3.0", "avgdown", True), ("layer4.0", "custom", True)])
def test_block_level_shortcut_style_per_kind(zoo, unit, kind, via):
    dot = dot_of(zoo, level="block")
    into = [(a, e) for a, b, e in dot.edges if b == f"{unit}.add" and a != unit]
    assert len(into) == 1
    src, e = into[0]
    want = {"identity": "solid", "projection": "dashed", "pad": "dotted", "avgdown": "dashed",
            "custom": "dashed"}[kind]
    assert e["style"] == want
    assert (src == f"{unit}.shortcut") == via
    if kind in ("avgdown", "custom"):
        assert e["label"] == kind
    else:
        assert "label" not in e


def test_block_level_plain_units_have_no_shortcut(zoo):
    dot = dot_of(zoo, level="block")
    assert "layer5.0.add" not in dot.nodes and "layer5.1.add" not in dot.nodes
    assert dot.edge("layer5.0", "layer5.1") == {}
    assert all("layer5" not in b for a, b, e in dot.edges if e.get("style") in
               ("dashed", "dotted"))


def test_block_level_plain34_beside_resnet34():
    graphs = check_file("specs/plain.res", networks=["plain34", "resnet34"]).graphs
    plain, res = (dot_of(graphs[n], level="block") for n in ("plain34", "resnet34"))
    assert sum(n.endswith(".add") for n in res.nodes) == 16
    assert not any(n.endswith(".add") for n in plain.nodes)
    assert sum(e.get("style") == "dashed" for _, _, e in res.edges) == 6  # 3 projections


# ---- stage level -----------------------------------------------------------------------------

def test_stage_level_is_a_chain_of_table_rows(zoo):
    dot = dot_of(zoo, level="stage")
    order = ["input", "stem", "layer1", "layer2", "layer3", "layer4", "layer5", "head",
             "output"]
    assert list(dot.nodes) == order
    assert [(a, b) for a, b, _ in dot.edges] == list(itertools.pairwise(order))
    label = dot.nodes["layer1"]["label"]
    assert "× 2" in label and "3×3, 32" in label and "32×32, 32" in label and "basic" in label
    assert "× 1" in dot.nodes["layer3"]["label"] and "bottleneck_d" in dot.nodes["layer3"]["label"]


def test_stage_level_preact1001():
    g = check_file("specs/preact.res", networks=["preact_resnet1001"]).graphs[
        "preact_resnet1001"]
    dot = dot_of(g, level="stage")
    assert [n for n in dot.nodes if n.startswith("layer")] == ["layer1", "layer2", "layer3"]
    assert all("× 111" in dot.nodes[f"layer{i}"]["label"] for i in (1, 2, 3))


# ---- layer level -----------------------------------------------------------------------------

def test_layer_level_expanded_draws_every_op_in_nested_clusters(zoo):
    dot = dot_of(zoo, level="layer", expand=True)
    assert set(zoo.nodes) <= set(dot.nodes)
    assert "layer1.0.conv1" in dot.clusters["cluster_layer1.0"]
    assert "layer1.0.conv1" in dot.clusters["cluster_layer1"]
    assert "conv1" in dot.clusters["cluster_stem"]
    assert "cluster_head" in dot.clusters
    assert dot.edge("conv1", "bn1")["label"] == "16×32×32"  # shapes where they change
    assert "label" not in dot.edge("bn1", "relu1")
    assert dot.visible().number_of_edges() == zoo.number_of_edges()


def test_layer_level_shortcut_edges(zoo):
    dot = dot_of(zoo, level="layer", expand=True)
    assert dot.edge("layer1.0.downsample.1", "layer1.0.add")["style"] == "dashed"
    assert dot.edge("layer1.0.downsample.0", "layer1.0.downsample.1")["style"] == "dashed"
    assert dot.edge("layer1.0.relu2", "layer1.1.add")["style"] == "solid"
    assert dot.edge("layer2.0.downsample", "layer2.0.add")["style"] == "dotted"
    assert dot.edge("layer3.0.downsample.2", "layer3.0.add")["label"] == "avgdown"
    assert dot.edge("layer4.0.downsample.0", "layer4.0.add")["label"] == "custom"
    assert not any(b.startswith("layer5") and e.get("style") not in (None, "invis")
                   for a, b, e in dot.edges)


def test_layer_level_collapses_identical_runs():
    g = graph(DEEP, "deep")
    dot = dot_of(g, level="layer")
    assert "layer1.0.conv1" in dot.nodes and "layer1.1.conv1" in dot.nodes
    assert not any(n.startswith(("layer1.2.", "layer1.3.")) for n in dot.nodes)
    label = next(n for n in dot.source.splitlines() if "× 3" in n)
    assert "layer1.1 … layer1.3" in label
    assert dot.edge("layer1.1.add", "bn1")  # the run's output leaves from its drawn block
    assert nx.is_directed_acyclic_graph(dot.visible())
    assert nx.has_path(dot.visible(), "input", "output")
    full = dot_of(g, level="layer", expand=True)
    assert set(g.nodes) <= set(full.nodes) and "× 3" not in full.source


def test_collapse_needs_same_shapes():
    # the same ops and attributes in every block, but each halves the map: nothing collapses
    text = """\
block down(planes) {
  residual { conv planes, 3x3, stride = 2; bn }
  shortcut projection
}
network halves {
  input 3 x 32 x 32
  stage layer1 = 3 x down(8)
}
"""
    g = graph(text, "halves")
    assert d.runs(g, d.sections(g)) == []
    dot = dot_of(g, level="layer")
    assert "layer1.2.conv1" in dot.nodes and "<B>×" not in dot.source
    same = graph(text.replace("stride = 2", "stride = 1"), "halves")
    assert [[s.key for s in r] for r in d.runs(same, d.sections(same))] == [
        ["layer1.1", "layer1.2"]]  # layer1.0 differs: its shortcut projects 3 -> 8 channels


def test_fused_nodes_are_marked(zoo):
    g = zoo.copy()
    g.nodes["layer1.0.conv1"]["fused"] = ("conv", "bn", "relu")
    node = dot_of(g, level="layer", expand=True).nodes["layer1.0.conv1"]
    assert node["peripheries"] == "2" and node["fillcolor"] == d.FUSED[0]
    assert "fused: conv+bn+relu" in node["label"]
    assert "peripheries" not in dot_of(zoo, level="layer").nodes["layer1.0.conv1"]


def test_output_is_deterministic(zoo):
    for level in d.LEVELS:
        assert d.to_dot(zoo, level=level).source == d.to_dot(zoo.copy(), level=level).source


def test_rankdir(zoo):
    assert "rankdir=LR" in d.to_dot(zoo, rankdir="LR").source


# ---- layer level: the layout dot makes of it ------------------------------------------------

def _layout(dot_text: str) -> tuple[dict, list]:
    """`dot -Tplain`: nodes {name: (x, y, w, h)} and edges [(a, b, points)], in inches."""
    out = subprocess.run(["dot", "-Tplain"], input=dot_text, capture_output=True, text=True,
                         check=True).stdout
    nodes, edges = {}, []
    for line in out.splitlines():
        f = shlex.split(line)
        if f[0] == "node":
            nodes[f[1]] = tuple(map(float, f[2:6]))
        elif f[0] == "edge" and f[-2] != "invis":
            n = int(f[3])
            edges.append((f[1], f[2], [tuple(map(float, f[4 + 2 * i:6 + 2 * i]))
                                       for i in range(n)]))
    return nodes, edges


def _curve(points: list) -> list:
    """Points along a piecewise cubic Bézier (what -Tplain gives for a spline)."""
    out = []
    for k in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[k:k + 4]
        for i in range(21):
            t = i / 20
            out.append(tuple((1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t ** 2
                             * c + t ** 3 * e for a, b, c, e in zip(p0, p1, p2, p3)))
    return out


@functools.cache
def _laid_out(spec: str, net: str) -> tuple:
    """(the DOT, its nodes, its edges) of a network's layer level as Graphviz lays it out,
    once for the tests that measure the layout."""
    g = check_file(spec, networks=[net]).graphs[net]
    dot = d.to_dot(g, level="layer")
    return (dot, *_layout(dot.source))


LAID_OUT = [("specs/resnet.res", "resnet50"), ("specs/preact.res", "preact_resnet18"),
            ("docs/diagrams/preact_units.res", "preact_units")]


@needs_dot
@pytest.mark.parametrize("spec, net", LAID_OUT)
def test_layer_level_no_edge_crosses_a_title(spec, net):
    # the titles are caption nodes left of each frame's first op: dot routes every edge
    # around them (it drew the frames' own labels where the shortcut arcs came in)
    dot, nodes, edges = _laid_out(spec, net)
    captions = {v: box for v, box in nodes.items() if v.endswith(" caption")}
    assert len(captions) >= 5 and 'label=""' in dot.source
    for a, b, points in edges:
        for x, y in _curve(points):
            for v, (cx, cy, w, h) in captions.items():
                assert not (abs(x - cx) < w / 2 and abs(y - cy) < h / 2), (a, b, v)
    parsed = Dot(dot.source)
    for a, b, e in parsed.edges:
        if e.get("style") == "invis":  # caption -> its frame's first op or inner caption
            assert nodes[a][0] < nodes[b][0] and nodes[a][1] == nodes[b][1], (a, b)


@needs_dot
@pytest.mark.parametrize("spec, net", LAID_OUT)
def test_layer_level_main_path_is_one_straight_column(spec, net):
    # (pre-activation units bent it step by step under the captions before MAIN's weight)
    dot, nodes, _ = _laid_out(spec, net)
    main = [v for v, a in Dot(dot.source).nodes.items() if a.get("group") == "main"]
    xs = {round(nodes[v][0], 2) for v in main}
    assert len(main) > 20 and max(xs) - min(xs) < 0.05, sorted(xs)


@pytest.mark.parametrize("spec, net", [(None, "zoo"), ("specs/resnet.res", "resnet50"),
                                       ("specs/preact.res", "preact_resnet18")])
def test_layer_level_labels_each_tensor_once(zoo, spec, net):
    g = zoo if spec is None else check_file(spec, networks=[net]).graphs[net]
    dot = dot_of(g, level="layer", expand=True)
    shapes = Counter(a for a, b, e in dot.edges
                     if "label" in e and e["label"] not in ("avgdown", "custom"))
    assert shapes and max(shapes.values()) == 1
    assert "label" not in dot.edge("input", next(g.successors("input")))  # shown on input
    if net == "resnet50":  # it was `64×56×56  64×56×56` side by side
        assert dot.edge("maxpool", "layer1.0.conv1")["label"] == "64×56×56"
        assert "label" not in dot.edge("maxpool", "layer1.0.downsample.0")
        assert "label" not in dot.edge("fc", "output")
        assert dot.edge("layer1.0.downsample.0", "layer1.0.downsample.1")["label"] == "256×56×56"


def test_layer_level_run_caption():
    dot = dot_of(graph(DEEP, "deep"), level="layer")
    label = dot.nodes["layer1.1 caption"]["label"]
    assert "<B>× 3</B>" in label and "layer1.1 … layer1.3" in label and "preact_basic" in label
    assert "layer1.1 caption" in dot.clusters["cluster_layer1.1"]
    assert dot.edge("layer1 caption", "layer1.0 caption")["style"] == "invis"
    assert dot.edge("layer1.1 caption", "layer1.1.bn1")["style"] == "invis"


# ---- shape errors: drawn up to the error ------------------------------------------------------

def test_partial_graph_marks_the_offending_node():
    with pytest.raises(ResdslError) as info:
        check_text(BAD)
    g, (node, code, message) = d.located(info.value)
    assert (node, code) == ("layer2.0.downsample", "E407") and node not in g
    dot = dot_of(g, level="layer", error=(node, code, message))
    assert dot.nodes[node]["color"] == d.ERROR[1]
    assert node in dot.clusters["cluster_layer2.0"]
    assert "E407" in dot.nodes["error-note"]["label"]
    assert dot.edge(node, "error-note")


def test_partial_graph_with_the_node_present():
    text = BAD.replace("stage layer2", "conv 10, 3x3, groups = 4\n  stage layer2")
    with pytest.raises(ResdslError) as info:
        check_text(text)
    found = d.located(info.value)
    assert found is not None
    g, (node, code, _) = found
    assert (node, code) == ("conv2", "E401") and node in g and "shape" not in g.nodes[node]
    dot = dot_of(g, level="layer", error=found[1])
    assert dot.nodes[node]["color"] == d.ERROR[1] and "error E401" in dot.nodes[node]["label"]
    assert dot.edge("layer1.0.relu2", node)["label"] == "16×32×32"  # layer1.1 collapsed


def test_cli_draws_up_to_the_error(tmp_path):
    spec = tmp_path / "bad.res"
    spec.write_text(BAD)
    out = tmp_path / "bad.dot"
    r = CliRunner().invoke(main, ["draw", str(spec), "--level", "layer", "-o", str(out)])
    assert r.exit_code == 1
    assert "error[E407]" in r.output and "drawn up to the error" in r.output
    assert d.ERROR[1] in out.read_text()
    r = CliRunner().invoke(main, ["draw", str(spec), "-o", str(tmp_path / "b.dot")])
    assert r.exit_code == 1 and "--level layer" in r.output
    assert not (tmp_path / "b.dot").exists()


# ---- the CLI and rendering --------------------------------------------------------------------

def test_cli_writes_dot_by_extension(tmp_path):
    out = tmp_path / "net.dot"
    r = CliRunner().invoke(main, ["draw", "specs/resnet.res", "-n", "resnet18", "-o", str(out),
                                  "--level", "stage", "--rankdir", "LR"])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.startswith("digraph resnet18") and "rankdir=LR" in text


def test_cli_rejects_unknown_extension(tmp_path):
    r = CliRunner().invoke(main, ["draw", "specs/resnet.res", "-n", "resnet18",
                                  "-o", str(tmp_path / "net.jpeg")])
    assert r.exit_code == 2 and ".svg" in r.output


@needs_dot
@pytest.mark.parametrize("ext, magic", [("svg", b"<?xml"), ("png", b"\x89PNG"),
                                        ("pdf", b"%PDF")])
def test_cli_renders_bundled_spec(tmp_path, ext, magic):
    out = tmp_path / f"net.{ext}"
    r = CliRunner().invoke(main, ["draw", "specs/resnet.res", "-n", "resnet50", "-o", str(out)])
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert data.startswith(magic)
    if ext == "svg":
        assert b"<title>layer4.2</title>" in data and b"stroke-dasharray" in data


@needs_dot
def test_render_each_level_of_the_zoo(zoo):
    for level in d.LEVELS:
        assert b"<svg" in d.render(d.to_dot(zoo, level=level), "svg")


def test_without_dot_only_dot_output_works(tmp_path, monkeypatch, zoo):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    dot = d.to_dot(zoo)
    d.write(dot, str(tmp_path / "ok.dot"))
    assert (tmp_path / "ok.dot").read_text().startswith("digraph zoo")
    with pytest.raises(d.DrawError) as info:
        d.write(dot, str(tmp_path / "no.svg"))
    assert info.value.code == "E601" and "apt-get install graphviz" in info.value.hint
    assert "brew install graphviz" in info.value.hint and "conda" in info.value.hint
    assert not (tmp_path / "no.svg").exists()


def test_cli_without_dot(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    r = CliRunner().invoke(main, ["draw", "specs/resnet.res", "-n", "resnet18",
                                  "-o", str(tmp_path / "net.png")])
    assert r.exit_code == 1 and "error[E601]" in r.output and "apt-get" in r.output


def test_without_the_python_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)  # makes `import graphviz` fail
    with pytest.raises(d.DrawError) as info:
        d.graphviz_module()
    assert info.value.code == "E602" and "pip install" in info.value.hint
    r = CliRunner().invoke(main, ["draw", "specs/resnet.res", "-n", "resnet18",
                                  "-o", str(tmp_path / "net.dot")])
    assert r.exit_code == 1 and "error[E602]" in r.output


def test_unwritable_output(tmp_path, zoo):
    with pytest.raises(d.DrawError) as info:
        d.write(d.to_dot(zoo), str(tmp_path / "no" / "such" / "dir.dot"))
    assert info.value.code == "E604"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG")
    return struct.unpack(">II", data[16:24])


@needs_dot
def test_png_resolution(zoo):
    dot = d.to_dot(zoo, level="stage")
    w, h = _png_size(dot.pipe(format="png"))  # Graphviz's own 96 per inch
    w2, h2 = _png_size(d.render(dot, "png"))
    assert d.PNG_DPI == 192 and abs(w2 - 2 * w) <= 2 and abs(h2 - 2 * h) <= 2
    w3, _ = _png_size(d.render(dot, "png", dpi=48))
    assert abs(w3 - w / 2) <= 1
    assert "dpi" not in dot.source  # the diagram itself is untouched


@needs_dot
def test_cli_dpi(tmp_path):
    sizes = []
    for dpi in ("96", "288"):
        out = tmp_path / f"r18-{dpi}.png"
        r = CliRunner().invoke(main, ["draw", "specs/resnet.res", "-n", "resnet18", "-o",
                                      str(out), "--dpi", dpi])
        assert r.exit_code == 0, r.output
        sizes.append(_png_size(out.read_bytes()))
    (w, h), (w3, h3) = sizes
    assert w > 400 and abs(w3 - 3 * w) <= 3 and abs(h3 - 3 * h) <= 3


@pytest.mark.parametrize("out", [["-o", "net.svg"], ["-o", "net.pdf"], []])
def test_cli_dpi_is_for_png_only(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["draw", f"{d.Path(__file__).parent.parent}/specs/resnet.res",
                                  "-n", "resnet18", *out, "--dpi", "300"])
    assert r.exit_code == 2 and "--dpi" in r.output and ".png" in r.output
    assert not list(tmp_path.iterdir())


def test_cli_dpi_help_names_the_default():
    r = CliRunner().invoke(main, ["draw", "--help"])
    assert f"[default: {d.PNG_DPI}," in " ".join(r.output.split())
