"""The fusion pass (resdsl/fuse.py) and its lowering to BatchNormAct2d.

The pass: which chains fuse on every unit ordering, stem and pre-activation net, which do not
and why; the modified flag; counts, shapes, verify, text and JSON. The lowering: fused and
unfused builds have one state_dict, load torchvision's weights strictly, and compute the same
values (eval against torchvision; train mode against the unfused build: outputs, running
statistics, num_batches_tracked, gradients), under torch.compile and torch.export too.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from resdsl import ir
from resdsl.backends import summary
from resdsl.fuse import fuse, merge_node
from resdsl.graph import totals
from resdsl.pipeline import check_file, check_text

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def graph(file: str, name: str):
    return check_file(str(SPECS / file), networks=[name]).graphs[name]


def fused(file: str, name: str, keep=()):
    return fuse(graph(file, name), keep)[0]


def chains(g, prefix: str) -> dict[str, str]:
    """node -> its fused ops, for the fused nodes under `prefix`."""
    return {v: d["fused"] for v, d in g.nodes(data=True)
            if d["op"] == "bn_act" and v.startswith(prefix)}


# ---- the pass ------------------------------------------------------------------------------

UNITS = {  # Identity Mappings Fig. 4: the first unit's fused nodes, and what stays unfused
    "resnet110_unit_a": ({"layer1.0.bn1": "bn+relu", "layer1.0.bn2": "bn+add+relu"}, []),
    "resnet110_unit_b": ({"layer1.0.bn1": "bn+relu", "layer1.0.bn2": "add+bn+relu"}, []),
    "resnet110_unit_c": ({"layer1.0.bn1": "bn+relu", "layer1.0.bn2": "bn+relu+add"}, []),
    # (d): the unit's output feeds the next relu and the shortcut, so that relu stays
    "resnet110_unit_d": ({"layer1.0.bn1": "bn+relu", "layer1.0.bn2": "bn+add"},
                         ["layer1.0.relu1"]),
    # (e): the branch ends in a conv, so the add stays
    "resnet110_unit_e": ({"layer1.0.bn1": "bn+relu", "layer1.0.bn2": "bn+relu"},
                         ["layer1.0.add"]),
}


@pytest.mark.parametrize("name", sorted(UNITS))
def test_each_unit_ordering_fuses_its_chains(name):
    want, stays = UNITS[name]
    g = fused("preact.res", name)
    assert chains(g, "layer1.0.") == want
    for v in stays:
        assert g.nodes[v]["op"] in ("relu", "add"), v


def test_absorbed_nodes_leave_and_the_bn_takes_their_edges():
    g = fused("resnet.res", "resnet18")
    for gone in ("relu", "layer1.0.relu1", "layer1.0.add", "layer2.0.add", "layer4.1.relu2"):
        assert gone not in g
    d = g.nodes["layer2.0.bn2"]
    assert d["attrs"] == {"zero_init": True, "eps": 1e-5, "momentum": 0.1, "relu": True,
                          "residual_at": "mid"}
    assert d["absorbed"] == ("layer2.0.add", "layer2.0.relu2")
    ports = {u: e for u, _, e in g.in_edges("layer2.0.bn2", data=True)}
    assert ports == {"layer2.0.conv2": {"port": 0},
                     "layer2.0.downsample.1": {"port": 1, "shortcut": "projection"}}
    assert merge_node(g, "layer2.0") == "layer2.0.bn2"
    assert list(g.successors("layer2.0.bn2")) == ["layer2.1.conv1", "layer2.1.bn2"]


def test_stems_and_preact_heads():
    g = fused("resnet.res", "resnet50")
    assert g.nodes["bn1"]["fused"] == "bn+relu"      # stem bn -> relu
    g = fused("preact.res", "preact_resnet18")
    assert g.nodes["bn1"]["fused"] == "bn+relu"
    # the head's bn -> relu fuses; the last unit's add feeds it from another block: not taken
    assert g.nodes["bn2"]["fused"] == "bn+relu" and g.nodes["bn2"]["attrs"]["residual_at"] is None
    assert g.nodes["layer4.1.add"]["op"] == "add"
    assert chains(g, "layer1.0.") == {"layer1.0.bn1": "bn+relu", "layer1.0.bn2": "bn+relu"}


def test_shortcut_bn_and_plain_bn_stay():
    g = fused("resnet.res", "resnet50")
    # the projection's bn reaches the add through the shortcut port: the residual bn takes it
    assert g.nodes["layer1.0.downsample.1"]["op"] == "bn"
    assert g.nodes["layer1.0.bn3"]["fused"] == "bn+add+relu"
    g = fused("plain.res", "plain18")   # plain: bn -> relu only, no add
    assert {d["fused"] for _, d in g.nodes(data=True) if d["op"] == "bn_act"} == {"bn+relu"}


def test_no_fusion_where_a_value_has_another_consumer():
    g = check_text("""
network t {
  input 3 x 8 x 8
  conv 4, 3x3, padding = 1
  b
}
block b() {
  bn
  residual { relu; conv 4, 3x3, padding = 1; bn; relu }
  shortcut identity
}
""", networks=["t"]).graphs["t"]
    h, changed = fuse(g)
    assert changed
    # read by the branch's relu and by the shortcut: neither it nor the relu fuses
    assert h.nodes["b1.bn1"]["op"] == "bn" and h.nodes["b1.relu1"]["op"] == "relu"
    assert h.nodes["b1.bn2"]["fused"] == "bn+relu+add"
    assert set(h.predecessors("b1.bn2")) == {"b1.conv1", "b1.bn1"}
    assert ir.to_text(h).count("bn_act") == 1


def test_nothing_to_fuse_is_reported():
    g = check_text("network t {\n  input 3 x 8 x 8\n  conv 4, 3x3\n  bn\n  conv 4, 3x3\n}\n",
                   networks=["t"]).graphs["t"]
    h, changed = fuse(g)
    assert not changed and ir.same_graph(g, h)


def test_requested_features_keep_their_own_output():
    g = fused("resnet.res", "resnet18", keep=["bn1"])
    assert g.nodes["bn1"]["op"] == "bn" and g.nodes["relu"]["op"] == "relu"
    g = fused("resnet.res", "resnet18", keep=["relu"])
    assert g.nodes["bn1"]["op"] == "bn" and g.nodes["relu"]["op"] == "relu"
    # a stage's output is a value the chain already ends with: its fusion stays
    g = fused("resnet.res", "resnet18", keep=["layer1"])
    assert g.nodes["layer1.1.bn2"]["fused"] == "bn+add+relu"


ALL = [("resnet.res", "resnet18"), ("resnet.res", "resnet50"), ("resnet.res", "resnet50d"),
       ("resnet_v1.res", "resnet18_a"), ("cifar.res", "resnet20"), ("cifar.res", "plain20"),
       ("preact.res", "preact_resnet164")] + [("preact.res", n) for n in sorted(UNITS)]


@pytest.mark.parametrize("file,name", ALL)
def test_counts_shapes_and_forms_survive(file, name):
    g = graph(file, name)
    h, changed = fuse(g)
    assert changed
    ir.verify(h)
    assert totals(h) == totals(g)
    assert h.nodes["output"]["shape"] == g.nodes["output"]["shape"]
    for v, d in h.nodes(data=True):
        assert d["shape"] == g.nodes[v]["shape"]
    assert list(h.nodes) == list(nx_topo(h))   # text order stays topological
    assert summary.table(g, 1) == summary.table(h, 1)   # per stage: the same numbers
    assert ir.same_graph(ir.from_json(ir.to_json(h)), h)
    text = ir.to_text(h)
    assert "bn_act(" in text and "# fused bn+" in text
    assert fuse(h)[1] is False                  # idempotent


def nx_topo(g):
    seen: set[str] = set()
    for v in g.nodes:
        assert all(u in seen for u in g.predecessors(v)), v
        seen.add(v)
        yield v


def test_text_of_a_fused_unit():
    text = ir.to_text(fused("resnet.res", "resnet18"))
    assert ("layer1.0.bn2 = bn_act(zero_init=true, relu=true, residual_at=mid) : 64x56x56 "
            "<- layer1.0.conv2, maxpool [identity]  # fused bn+add+relu\n") in text
    assert "bn1 = bn_act(relu=true) : 64x112x112 <- conv1  # fused bn+relu\n" in text


def test_verify_catches_a_broken_fused_node():
    g = fused("resnet.res", "resnet18")
    bad = copy.deepcopy(g)
    bad.nodes["layer1.0.bn2"]["attrs"]["residual_at"] = None
    with pytest.raises(AssertionError, match="inputs"):
        ir.verify(bad)
    bad = copy.deepcopy(g)
    bad.nodes["layer1.0.bn2"]["attrs"]["residual_at"] = "side"
    with pytest.raises(AssertionError, match="residual_at"):
        ir.verify(bad)


_ = os  # (used by the lowering tests below)
