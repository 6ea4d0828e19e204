"""Unit tests of the graph IR: its text form (`--emit ir`), JSON round trip, `verify`, shape errors
(messages, spans, the partial graph they carry), `--input` overrides, and the size arithmetic of
ceil-mode pools, dilation and padding limits.

Expected values are worked out by hand (or from torchvision's published counts), never taken
from resdsl's own output.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import networkx as nx
import pytest
from click.testing import CliRunner

from resdsl import ir
from resdsl.cli import main
from resdsl.errors import ResdslError, Span
from resdsl.graph import totals
from resdsl.pipeline import check_file, check_text

sys.path.insert(0, os.path.dirname(__file__))
import strategies as S  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"


def graph(text: str, name: str | None = None, **kw) -> nx.DiGraph:
    c = check_text(text, **kw)
    return c.graphs[name] if name else next(iter(c.graphs.values()))


def shape_error(text: str, **kw) -> ResdslError:
    with pytest.raises(ResdslError) as info:
        check_text(text, **kw)
    return info.value


def line_of(text: str, fragment: str) -> int:
    """The 1-based line of the only line containing fragment."""
    hits = [i for i, ln in enumerate(text.splitlines(), 1) if fragment in ln]
    assert len(hits) == 1, (fragment, hits)
    return hits[0]


def resnet_text() -> str:
    return (SPECS / "resnet.res").read_text()


# ---- the text form -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet18_ir() -> list[str]:
    r = CliRunner().invoke(main, ["compile", str(SPECS / "resnet.res"), "-n", "resnet18",
                                  "--emit", "ir", "--no-fuse"])  # fused: tests/test_fuse.py
    assert r.exit_code == 0, r.output
    return r.stdout.splitlines()


@pytest.mark.parametrize("line", [
    "# network resnet18: input 3x224x224",
    "input = input() : 3x224x224",
    "conv1 = conv(in=3, out=64, k=7, s=2, p=3) : 64x112x112 <- input",
    "bn1 = bn() : 64x112x112 <- conv1",
    "relu = relu() : 64x112x112 <- bn1",
    "maxpool = maxpool(k=3, s=2, p=1) : 64x56x56 <- relu",
    "layer1.0.conv1 = conv(in=64, out=64, k=3, s=1, p=1) : 64x56x56 <- maxpool",
    "layer1.0.bn2 = bn(zero_init=true) : 64x56x56 <- layer1.0.conv2",
    "layer1.0.add = add() : 64x56x56 <- layer1.0.bn2, maxpool [identity]",
    "layer1.0.relu2 = relu() : 64x56x56 <- layer1.0.add",
    "layer2.0.conv1 = conv(in=64, out=128, k=3, s=2, p=1) : 128x28x28 <- layer1.1.relu2",
    "layer2.0.downsample.0 = conv(in=64, out=128, k=1, s=2, p=0) : 128x28x28 <- layer1.1.relu2",
    "layer2.0.downsample.1 = bn() : 128x28x28 <- layer2.0.downsample.0",
    "layer2.0.add = add() : 128x28x28 <- layer2.0.bn2, layer2.0.downsample.1 [projection]",
    "layer4.1.add = add() : 512x7x7 <- layer4.1.bn2, layer4.0.relu2 [identity]",
    "avgpool = avgpool(global) : 512x1x1 <- layer4.1.relu2",
    "output = output() : 1000 <- fc",
])
def test_emit_ir_resnet18_lines(resnet18_ir, line):
    assert line in resnet18_ir


def test_emit_ir_resnet18_layout(resnet18_ir):
    assert resnet18_ir[0] == "# network resnet18: input 3x224x224"
    # input, 4 stem layers, 8 basic blocks of 7 nodes, 3 projections of 2, avgpool, fc, output
    assert len(resnet18_ir) == 1 + 1 + 4 + 8 * 7 + 3 * 2 + 2 + 1
    fc = next(ln for ln in resnet18_ir if ln.startswith("fc = "))
    assert fc.startswith("fc = fc(in=512, out=1000") and fc.endswith(") : 1000 <- avgpool")
    names = [ln.split(" = ", 1)[0] for ln in resnet18_ir[1:]]
    assert names.index("layer2.0.downsample.0") < names.index("layer2.0.add")
    assert names[-1] == "output"


def test_emit_ir_with_input_override():
    r = CliRunner().invoke(main, ["compile", str(SPECS / "resnet.res"), "-n", "resnet18",
                                  "--emit", "ir", "--no-fuse", "--input", "3x32x32"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "# network resnet18: input 3x32x32"
    assert "maxpool = maxpool(k=3, s=2, p=1) : 64x8x8 <- relu" in lines
    assert "avgpool = avgpool(global) : 512x1x1 <- layer4.1.relu2" in lines


TINY = """\
block a(planes, stride = 1) {
  residual {
    conv planes, 3x3, stride = stride; bn; relu
    conv planes, 3x3, dilation = 2, groups = 2; bn
  }
  shortcut pad
  merge add
  relu
}

network tiny {
  input 3 x 9 x 9
  conv 4, 3x3, bias
  maxpool 2x2, ceil_mode
  stage layer1 = a(8, stride = 2)
  head { avgpool: avgpool; dropout 0.2; fc 5, bias = false }
}
"""


def test_to_text_small_network():
    got = ir.to_text(graph(TINY)).splitlines()
    assert got[:11] == [
        "# network tiny: input 3x9x9",
        "input = input() : 3x9x9",
        "conv1 = conv(in=3, out=4, k=3, s=1, p=1, bias=true) : 4x9x9 <- input",
        # ceil((9 - 2) / 2) + 1 = 5
        "maxpool1 = maxpool(k=2, s=2, p=0, ceil_mode=true) : 4x5x5 <- conv1",
        "layer1.0.conv1 = conv(in=4, out=8, k=3, s=2, p=1) : 8x3x3 <- maxpool1",
        "layer1.0.bn1 = bn() : 8x3x3 <- layer1.0.conv1",
        "layer1.0.relu1 = relu() : 8x3x3 <- layer1.0.bn1",
        "layer1.0.conv2 = conv(in=8, out=8, k=3, s=1, p=2, g=2, d=2) : 8x3x3 <- layer1.0.relu1",
        "layer1.0.bn2 = bn() : 8x3x3 <- layer1.0.conv2",
        # option A: 4 -> 8 channels, 2 zero channels before and 2 after, ::2 subsampling
        "layer1.0.downsample = pad(s=2, pad_front=2, pad_back=2) : 8x3x3 <- maxpool1",
        "layer1.0.add = add() : 8x3x3 <- layer1.0.bn2, layer1.0.downsample [pad]",
    ]
    assert got[11:14] == [
        "layer1.0.relu2 = relu() : 8x3x3 <- layer1.0.add",
        "avgpool = avgpool(global) : 8x1x1 <- layer1.0.relu2",
        "dropout1 = dropout(p=0.2) : 8x1x1 <- avgpool",
    ]
    # (fc's bias display is left open: only its sizes and operand are pinned here)
    assert got[14].startswith("fc1 = fc(in=8, out=5") and got[14].endswith(": 5 <- dropout1")
    assert got[15:] == ["output = output() : 5 <- fc1"]


def test_tiny_counts():
    t = totals(graph(TINY))
    conv1 = 4 * 3 * 9 + 4
    l_conv1 = 8 * 4 * 9
    l_conv2 = 8 * (8 // 2) * 9
    fc = 8 * 5
    assert t["params"] == conv1 + l_conv1 + l_conv2 + 2 * 8 * 2 + fc
    assert t["macs"] == 4 * 3 * 9 * 81 + l_conv1 * 9 + l_conv2 * 9 + fc
    assert t["buffers"] == 2 * (2 * 8 + 1)


def test_add_operands_residual_first():
    """The add's operands are listed residual (port 0) first, the shortcut (port 1) second,
    and the shortcut edge carries the kind the shortcut resolved to."""
    g = graph(TINY)
    ins = {u: d for u, _, d in g.in_edges("layer1.0.add", data=True)}
    assert ins == {"layer1.0.bn2": {"port": 0},
                   "layer1.0.downsample": {"port": 1, "shortcut": "pad"}}


# ---- JSON ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "resnet50d"])
def test_json_round_trip_bundled(name):
    g = graph(resnet_text(), name, file=str(SPECS / "resnet.res"), networks=[name])
    text = ir.to_json(g)
    back = ir.from_json(text)
    assert ir.same_graph(back, g)
    assert ir.to_json(back) == text
    assert list(back.nodes) == list(g.nodes)
    ir.verify(back)


def test_json_keeps_types():
    g = graph(TINY)
    back = ir.from_json(ir.to_json(g))
    d = back.nodes["layer1.0.conv2"]
    assert d["shape"] == (8, 3, 3) and isinstance(d["shape"], tuple)
    assert d["attrs"]["kernel"] == (3, 3) and isinstance(d["attrs"]["dilation"], tuple)
    assert d["attrs"]["bias"] is False
    assert isinstance(d["span"], Span) and d["span"] == g.nodes["layer1.0.conv2"]["span"]
    assert back.nodes["dropout1"]["attrs"]["p"] == 0.2
    assert back.graph["input"] == (3, 9, 9)
    assert back.edges["layer1.0.downsample", "layer1.0.add"] == {"port": 1, "shortcut": "pad"}
    assert back.nodes["avgpool"]["attrs"]["kernel"] is None


def test_same_graph_notices_differences():
    g = graph(TINY)
    data = json.loads(ir.to_json(g))
    data["nodes"][3]["shape"]["tuple"][1] += 1
    assert not ir.same_graph(ir.from_json(json.dumps(data)), g)

    data = json.loads(ir.to_json(g))
    for e in data["edges"]:
        if e.get("shortcut"):
            e["shortcut"] = "identity"
    assert not ir.same_graph(ir.from_json(json.dumps(data)), g)

    h = ir.from_json(ir.to_json(g))
    h.graph["name"] = "other"
    assert not ir.same_graph(h, g)


# ---- verify --------------------------------------------------------------------------------

@pytest.mark.parametrize("file,name", [("resnet.res", "resnet18"), ("resnet.res", "resnet50d"),
                                       ("resnet.res", "resnext50_32x4d"),
                                       ("cifar.res", "resnet20"), ("cifar.res", "plain20"),
                                       ("preact.res", "resnet110_unit_b")])
def test_verify_bundled(file, name):
    ir.verify(check_file(str(SPECS / file), networks=[name]).graphs[name])


def _broken(edit) -> nx.DiGraph:
    g = graph(TINY).copy()
    edit(g)
    return g


@pytest.mark.parametrize("edit", [
    lambda g: g.remove_edge("layer1.0.downsample", "layer1.0.add"),      # add with one input
    lambda g: g.add_edge("layer1.0.add", "conv1"),                       # a cycle
    lambda g: g.nodes["layer1.0.bn1"].update(op="batchnorm"),
    lambda g: g.nodes["conv1"]["attrs"].pop("dilation"),
    lambda g: g.nodes["conv1"].update(shape=[4, 9, 9]),
    lambda g: g.nodes["conv1"].pop("macs"),
    lambda g: g.add_node("output2", op="output", attrs={}, shape=(5,), params=0, buffers=0,
                         macs=0, elementwise=0),
], ids=["arity", "cycle", "unknown-op", "attrs", "shape-type", "counts", "two-outputs"])
def test_verify_rejects_broken_graphs(edit):
    g = _broken(edit)
    with pytest.raises(AssertionError):
        ir.verify(g)


# ---- shape errors --------------------------------------------------------------------------

MISMATCH = """\
block b(planes, stride = 1) {
  residual {
    conv planes, 3x3, stride = stride
  }
  shortcut {
    conv planes, 1x1
  }
  merge add
}

network n {
  input 3 x 32 x 32
  b 16, stride = 2
}
"""


def test_add_mismatch_names_both_branches():
    e = shape_error(MISMATCH)
    assert e.code == "E406"
    assert e.message == ("cannot add the residual branch (16x16x16) and the shortcut (16x32x32) "
                         "in block 'b1'")
    assert e.span.line == line_of(MISMATCH, "merge add")
    notes = {span.line: text for span, text in e.notes}
    assert notes == {line_of(MISMATCH, "stride = stride"): "residual branch ends here: 16x16x16",
                     line_of(MISMATCH, "shortcut {"): "shortcut (custom): 16x32x32",
                     # and the chain of uses (issue 17)
                     line_of(MISMATCH, "b 16, stride = 2"): "in block 'b' (<string>:1), used here",
                     line_of(MISMATCH, "network n"): "in network 'n'"}


def test_add_mismatch_without_merge_points_at_the_shortcut():
    text = MISMATCH.replace("  merge add\n", "")
    e = shape_error(text)
    assert e.code == "E406" and e.span.line == line_of(text, "shortcut {")


def test_add_mismatch_carries_the_partial_graph():
    e = shape_error(MISMATCH)
    g = e.partial_graph
    assert e.node == "b1.add" and e.node in g
    assert list(g.nodes) == ["input", "b1.conv1", "b1.downsample.0", "b1.add"]
    assert g.nodes["b1.conv1"]["shape"] == (16, 16, 16)
    assert g.nodes["b1.downsample.0"]["shape"] == (16, 32, 32)
    assert "shape" not in g.nodes["b1.add"]        # the node that failed has no shape


def test_identity_mismatch_partial_graph():
    text = MISMATCH.replace("shortcut {\n    conv planes, 1x1\n  }", "shortcut identity")
    e = shape_error(text)
    assert e.code == "E407" and e.span.line == line_of(text, "shortcut identity")
    assert "3x32x32 -> 16x16x16" in e.message
    # the shortcut could not be built: it is named, but not in the graph
    assert e.node == "b1.downsample" and e.node not in e.partial_graph
    assert e.partial_graph.nodes["b1.conv1"]["shape"] == (16, 16, 16)


def test_groups_error_partial_graph():
    text = "network n {\n  input 3 x 8 x 8\n  conv 12, 3x3\n  conv 10, 3x3, groups = 4\n}\n"
    e = shape_error(text)
    assert e.code == "E401" and e.span.line == 4
    assert "output channels 10" in e.message
    assert e.node == "conv2" and e.node in e.partial_graph
    assert e.partial_graph.nodes["conv1"]["shape"] == (12, 8, 8)


# ---- --input overrides ---------------------------------------------------------------------

def _resnet18_model() -> S.NetSpec:
    """resnet18 described for the independent model in tests/strategies.py."""
    basic = S.STD_BLOCKS["basic"]
    return S.NetSpec(input=(3, 224, 224), items=(
        S.Stem((S.Conv(64, (7, 7), 2), S.BN(), S.ReLU(label="relu"),
                S.MaxPool((3, 3), (2, 2), label="maxpool"))),
        S.Stage("layer1", basic, 2, S.Args(64)),
        S.Stage("layer2", basic, 2, S.Args(128, 2)),
        S.Stage("layer3", basic, 2, S.Args(256, 2)),
        S.Stage("layer4", basic, 2, S.Args(512, 2)),
        S.Head((S.AvgPool(label="avgpool"), S.FC(1000, label="fc"))),
    ), network="resnet18")


def test_model_reproduces_torchvision_resnet18():
    """The independent model itself agrees with torchvision's published numbers."""
    exp = _resnet18_model().expected
    assert exp.params == 11_689_512
    assert round(exp.macs / 1e9, 3) == 1.814


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 224, 224), (1, 64, 48), (4, 17, 9)])
def test_input_override(shape):
    g = graph(resnet_text(), "resnet18", file=str(SPECS / "resnet.res"), networks=["resnet18"],
              input_shape=shape)
    exp = _resnet18_model().expect(shape)
    assert g.graph["input"] == shape
    assert {v: d["shape"] for v, d in g.nodes(data=True)} == exp.shapes
    t = totals(g)
    assert (t["params"], t["macs"]) == (exp.params, exp.macs)
    # only the first conv's weights depend on the input channels
    assert t["params"] == 11_689_512 + 64 * 49 * (shape[0] - 3)


def test_input_override_at_32():
    g = graph(resnet_text(), "resnet18", file=str(SPECS / "resnet.res"), networks=["resnet18"],
              input_shape=(3, 32, 32))
    assert g.nodes["conv1"]["shape"] == (64, 16, 16)
    assert g.nodes["maxpool"]["shape"] == (64, 8, 8)
    assert g.nodes["layer2.0.add"]["shape"] == (128, 4, 4)
    assert g.nodes["layer4.1.relu2"]["shape"] == (512, 1, 1)
    assert g.nodes["output"]["shape"] == (1000,)


def test_input_override_can_fail():
    text = "network n {\n  input 3 x 32 x 32\n  conv 8, 5x5, padding = 0\n}\n"
    assert graph(text).nodes["conv1"]["shape"] == (8, 28, 28)
    e = shape_error(text, input_shape=(3, 4, 32))
    assert e.code == "E402" and e.span.line == 3


# ---- size arithmetic: ceil_mode, dilation, padding limits ----------------------------------

def _one(layer: str, shape=(2, 10, 10)) -> tuple[int, ...]:
    c, h, w = shape
    return graph(f"network n {{\n  input {c} x {h} x {w}\n  {layer}\n}}\n").nodes["output"]["shape"]


@pytest.mark.parametrize("layer,shape,want", [
    # floor((10 + 2 - 3) / 2) + 1 = 5; ceil: 6 (the last window starts at 10 <= 10 + 1 - 1)
    ("maxpool 3x3, stride = 2", (2, 10, 10), (2, 5, 5)),
    ("maxpool 3x3, stride = 2, ceil_mode", (2, 10, 10), (2, 6, 6)),
    # 5 with k2 s2 p1: ceil((5 + 2 - 2) / 2) + 1 = 4, but the 4th window would start in the
    # right padding (3 * 2 >= 5 + 1), so PyTorch drops it: 3
    ("maxpool 2x2, stride = 2, padding = 1, ceil_mode", (2, 5, 5), (2, 3, 3)),
    ("maxpool 2x2, stride = 2, padding = 1", (2, 5, 5), (2, 3, 3)),
    # the stride defaults to the kernel; non-square everything
    ("maxpool 3x2", (2, 10, 9), (2, 4, 4)),      # padding (1, 0) by default
    ("maxpool 3x2, ceil_mode", (2, 10, 9), (2, 4, 5)),
    # a ceil-mode window may hang over the end when it starts inside the input
    ("maxpool 3x3, stride = 2, padding = 0, ceil_mode", (2, 2, 2), (2, 1, 1)),
    ("avgpool 3x3, stride = 2, padding = 0, ceil_mode", (2, 4, 4), (2, 2, 2)),
    # dilation: default padding (k - 1) // 2 * d keeps the size
    ("conv 8, 3x3, dilation = 2", (2, 10, 10), (8, 10, 10)),
    ("conv 8, 3x3, dilation = 3, stride = 2", (2, 10, 10), (8, 5, 5)),
    # explicit padding 0: 10 - 2 * 3 = 4
    ("conv 8, 3x3, dilation = 3, padding = 0", (2, 10, 10), (8, 4, 4)),
    ("conv 8, 5x3, dilation = 2x1, padding = 0", (2, 10, 10), (8, 2, 8)),
    # an even kernel pads 0 by default, as nn.Conv2d(2, 8, 4): 10 - 4 + 1 = 7
    ("conv 8, 4x4", (2, 10, 10), (8, 7, 7)),
])
def test_window_sizes(layer, shape, want):
    assert _one(layer, shape) == want


@pytest.mark.parametrize("layer,shape", [
    ("maxpool 3x3, stride = 2, ceil_mode", (1, 10, 10)),
    ("maxpool 2x2, stride = 2, padding = 1, ceil_mode", (1, 5, 5)),
    ("maxpool 3x3, stride = 2, padding = 0, ceil_mode", (1, 2, 2)),
    ("avgpool 3x2, stride = 2, padding = 1x0, ceil_mode", (1, 7, 6)),
    ("maxpool 3x2", (1, 10, 9)),
])
def test_pool_sizes_match_pytorch(layer, shape):
    torch = pytest.importorskip("torch")
    c, h, w = shape
    g = graph(f"network n {{\n  input {c} x {h} x {w}\n  {layer}\n}}\n")
    a = next(d for _, d in g.nodes(data=True) if d["op"] in ("maxpool", "avgpool"))["attrs"]
    cls = torch.nn.MaxPool2d if "maxpool" in layer else torch.nn.AvgPool2d
    pool = cls(a["kernel"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"])
    assert tuple(pool(torch.zeros(1, *shape)).shape[1:]) == g.nodes["output"]["shape"]


def test_dilation_in_ir_text_and_params():
    g = graph("network n {\n  input 2 x 10 x 10\n  conv 8, 3x3, dilation = 2\n}\n")
    assert "conv1 = conv(in=2, out=8, k=3, s=1, p=2, d=2) : 8x10x10 <- input" in \
        ir.to_text(g).splitlines()
    t = totals(g)
    assert t["params"] == 8 * 2 * 9                   # dilation adds no weights
    assert t["macs"] == 8 * 2 * 9 * 100


def test_kernel_larger_than_input():
    text = "network n {\n  input 3 x 8 x 8\n  conv 8, 3x3, stride = 2\n  conv 8, 7x7, padding = 0\n}\n"
    e = shape_error(text)
    assert e.code == "E402" and e.span.line == 4
    assert "input size 4" in e.message
    text = "network n {\n  input 3 x 8 x 8\n  maxpool 3x3, stride = 2, padding = 0\n}\n"
    assert _one("maxpool 3x3, stride = 2, padding = 0", (3, 3, 3)) == (3, 1, 1)
    e = shape_error(text, input_shape=(3, 2, 2))
    assert e.code == "E402" and e.span.line == 3


@pytest.mark.parametrize("layer", ["maxpool 3x3, padding = 2", "avgpool 1x1, padding = 1",
                                   "avgpool 4x2, padding = 1x2", "maxpool 2x2, padding = 2x0"])
def test_pool_padding_more_than_half_the_kernel(layer):
    text = f"network n {{\n  input 3 x 32 x 32\n  conv 8, 3x3\n  {layer}\n}}\n"
    e = shape_error(text)
    assert e.code == "E403" and e.span.line == 4
    assert "more than half the kernel" in e.message


@pytest.mark.parametrize("layer", ["maxpool 2x2, padding = 1", "avgpool 4x2, padding = 2x1"])
def test_pool_padding_half_the_kernel_is_fine(layer):
    text = f"network n {{\n  input 3 x 32 x 32\n  {layer}\n}}\n"
    graph(text)


@pytest.mark.parametrize("layer", ["bn", "conv 4, 1x1", "maxpool 2x2", "avgpool"])
def test_feature_map_layer_after_flatten(layer):
    text = f"network n {{\n  input 3 x 4 x 4\n  flatten\n  {layer}\n}}\n"
    e = shape_error(text)
    assert e.code == "E404" and e.span.line == 4
    assert "(48)" in e.message


def test_bn_after_fc():
    text = "network n {\n  input 3 x 4 x 4\n  avgpool\n  fc 10\n  bn\n}\n"
    e = shape_error(text)
    assert e.code == "E404" and e.span.line == 5
    assert e.message == "`bn` needs a CxHxW feature map, but its input is flat (10)"


def test_fc_on_a_map():
    text = "network n {\n  input 3 x 4 x 4\n  conv 8, 3x3\n  fc 10\n}\n"
    e = shape_error(text)
    assert e.code == "E405" and e.span.line == 4 and "8x4x4" in e.message
    # a C x 1 x 1 map and a flat tensor are both fine
    assert _one("fc 10", (7, 1, 1)) == (10,)
    g = graph("network n {\n  input 3 x 4 x 4\n  flatten\n  fc 10\n}\n")
    assert g.nodes["fc1"]["attrs"]["in_features"] == 48
    assert totals(g)["params"] == 48 * 10 + 10


# ---- known bugs ----------------------------------------------------------------------------

SHRINKING = """\
block b(planes) {
  residual {
    conv planes, 3x3, padding = 0
  }
  shortcut KIND
}

network n {
  input 8 x 16 x 16
  b 8
}
"""


@pytest.mark.parametrize("kind", ["projection", "pad", "avgdown"])
def test_shortcut_error_names_the_kind_written(kind):
    text = SHRINKING.replace("KIND", kind)
    e = shape_error(text)
    assert e.code == "E407" and e.span.line == line_of(text, "shortcut")
    assert "`shortcut identity`" not in e.message
    assert kind in e.message
