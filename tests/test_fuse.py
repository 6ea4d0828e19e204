"""The fusion pass (resdsl/fuse.py) and its lowering to BatchNormAct2d.

The pass: which chains fuse on every unit ordering, stem and pre-activation net, which do not
and why; the modified flag; counts, shapes, verify, text and JSON. The lowering: fused and
unfused builds have one state_dict, load torchvision's weights strictly, and compute the same
values (eval against torchvision; train mode against the unfused build: outputs, running
statistics, num_batches_tracked, gradients), under torch.compile and torch.export too.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
from resdsl.backends import summary

from resdsl import ir
from resdsl.fuse import fuse
from resdsl.ir import Structure
from resdsl.graph import totals
from resdsl.pipeline import check_file, check_text

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
sys.path.insert(0, str(ROOT / "tests"))


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
    assert Structure(g).shortcuts["layer2.0"][1] == "layer2.0.bn2"
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


# ---- lowering: BatchNormAct2d --------------------------------------------------------------

torch = pytest.importorskip("torch")
from torch import nn

import resdsl
from resdsl.errors import ResdslError
from resdsl.runtime import BatchNormAct2d

SMALL = """
use std
use cifar
use resnet

network unit_a = cifar_resnet(unit_original, 1)
network unit_b = cifar_resnet(unit_bn_after_add, 1)
network unit_c = cifar_resnet(unit_relu_before_add, 1)
network unit_d = cifar_resnet(unit_relu_preact, 1)
network unit_e = cifar_resnet(unit_full_preact, 1)
network option_a = cifar_resnet(basic_a, 1)
network plain = cifar_resnet(plain_basic, 1)
network preact = cifar_resnet(preact_bottleneck, 1)
network res_d = resnet_d(bottleneck_d, [1, 1, 1, 1])
"""
SMALL_NETS = ["unit_a", "unit_b", "unit_c", "unit_d", "unit_e", "option_a", "plain", "preact",
              "res_d"]


def pair(spec, name, **kw):
    """(fused, unfused) builds with the same weights."""
    torch.manual_seed(0)
    unfused = resdsl.build(spec, name, fuse=False, **kw)
    model = resdsl.build(spec, name, kernels="torch", **kw)
    model.load_state_dict(unfused.state_dict(), strict=True)
    return model, unfused


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", SMALL_NETS)
def test_fused_build_trains_exactly_like_the_unfused_one(name):
    """Train mode: outputs, gradients, running statistics and num_batches_tracked agree."""
    size = {"res_d": (3, 64, 64)}.get(name)
    model, unfused = pair(SMALL, name, input_shape=size)
    assert any(isinstance(m, BatchNormAct2d) for m in model.modules())
    assert shapes(model) == shapes(unfused)
    x = torch.randn(2, *(size or (3, 32, 32)))
    for step in range(2):
        xs = [x.clone().requires_grad_() for _ in range(2)]
        ys = [m.train()(xi) for m, xi in zip((model, unfused), xs)]
        torch.testing.assert_close(ys[0], ys[1], rtol=1e-5, atol=1e-6)
        for m, y in zip((model, unfused), ys):
            m.zero_grad()
            (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-5, atol=1e-6)
        grads = [{k: p.grad for k, p in m.named_parameters()} for m in (model, unfused)]
        assert grads[0].keys() == grads[1].keys()
        for k in grads[0]:
            torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6, msg=k)
    a, b = model.state_dict(), unfused.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert int(a["bn1.num_batches_tracked" if "bn1.num_batches_tracked" in a
                 else "layer1.0.bn1.num_batches_tracked"]) == 2
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), unfused.eval()(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_weights_load_strictly_and_match(name):
    tv_models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    tv = getattr(tv_models, name)().eval()
    with torch.no_grad():   # non-trivial statistics, so BN does something
        for m in tv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
    model = resdsl.build(SPECS / "resnet.res", name, kernels="torch")
    unfused = resdsl.build(SPECS / "resnet.res", name, fuse=False)
    assert shapes(model) == shapes(unfused) == shapes(tv)
    model.load_state_dict(tv.state_dict(), strict=True)
    assert not [m for m in model.modules() if isinstance(m, nn.ReLU)]
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), tv(x), rtol=1e-5, atol=1e-5)


def test_emitted_block_reads_like_torchvisions():
    source, _, _ = resdsl.emit_python(SPECS / "resnet.res", "resnet50")
    block = source[source.index("class Bottleneck"):source.index("class Resnet50")]
    assert "self.bn3 = BatchNormAct2d(conv3_out, relu=True, residual_at=\"mid\")" in block
    assert ("        out = self.conv3(out)\n"
            "        identity = x if self.downsample is None else self.downsample(x)\n"
            "        out = self.bn3(out, identity)\n"
            "        return out\n") in block
    assert "relu" not in block.replace("relu=True", "")
    unfused, _, _ = resdsl.emit_python(SPECS / "resnet.res", "resnet50", fuse=False)
    assert "BatchNormAct2d" not in unfused and "out = self.relu3(out)" in unfused


def test_each_ordering_lowers_to_one_call():
    source, _, _ = resdsl.emit_python(SMALL, "unit_b")
    assert ("        out = self.conv2(out)\n"
            "        identity = x if self.downsample is None else self.downsample(x)\n"
            "        out = self.bn2(out, identity)\n"
            "        return out\n") in source
    assert 'BatchNormAct2d(planes, relu=True, residual_at="pre")' in source
    source, _, _ = resdsl.emit_python(SMALL, "unit_c")
    assert 'BatchNormAct2d(planes, relu=True, residual_at="post")' in source
    source, _, _ = resdsl.emit_python(SMALL, "unit_d")
    assert 'BatchNormAct2d(planes, residual_at="mid")' in source
    assert "nn.ReLU(inplace=False)" in source   # its input is also the shortcut


def test_features_keep_their_own_modules():
    torch.manual_seed(0)
    model = resdsl.build(SPECS / "resnet.res", "resnet18", features=["bn1", "layer2"],
                         input_shape=(3, 64, 64))
    assert type(model.bn1) is nn.BatchNorm2d and isinstance(model.relu, nn.ReLU)
    assert isinstance(model.layer2[1].bn2, BatchNormAct2d)
    unfused = resdsl.build(SPECS / "resnet.res", "resnet18", features=["bn1", "layer2"],
                           input_shape=(3, 64, 64), fuse=False)
    unfused.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model.eval()(x), unfused.eval()(x)):
            torch.testing.assert_close(a, b)
    assert model.feature_info == unfused.feature_info


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("at", [None, "pre", "mid", "post"])
def test_batchnormact_is_batchnorm_then_add_and_relu(momentum, at):
    """nn.BatchNorm2d's momentum rules (None: cumulative average), train and eval."""
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(5, momentum=momentum)
    fused = BatchNormAct2d(5, momentum=momentum, relu=True, residual_at=at, kernels="torch")
    fused.load_state_dict(ref.state_dict())
    x, r = torch.randn(3, 5, 4, 4), torch.randn(3, 5, 4, 4)

    def unfused(x):
        if at == "pre":
            return torch.relu(ref(x + r))
        y = ref(x)
        return torch.relu(y + r) if at == "mid" else torch.relu(y) + r if at == "post" \
            else torch.relu(y)
    for train in (True, True, False):
        ref.train(train), fused.train(train)
        torch.testing.assert_close(fused(x, r if at else None), unfused(x))
    assert ref.state_dict().keys() == fused.state_dict().keys()
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[k], v)


def test_batchnormact_without_running_stats():
    ref = nn.BatchNorm2d(3, track_running_stats=False)
    fused = BatchNormAct2d(3, track_running_stats=False, relu=True, kernels="torch")
    x = torch.randn(2, 3, 4, 4)
    for train in (True, False):
        ref.train(train), fused.train(train)
        torch.testing.assert_close(fused(x), torch.relu(ref(x)))


def test_kernels_option_and_environment(monkeypatch):
    model = resdsl.build(SMALL, "unit_a", kernels="torch")
    assert {m.kernels for m in model.modules() if isinstance(m, BatchNormAct2d)} == {"torch"}
    source, _, _ = resdsl.emit_python(SMALL, "unit_a", kernels="triton")
    assert "kernels: str | None = 'triton'" in source
    with pytest.raises(ResdslError, match="kernels") as info:   # at the API's boundary
        resdsl.emit_python(SMALL, "unit_a", kernels="cuda")
    assert info.value.code == "E212"
    model = resdsl.build(SMALL, "unit_a")
    assert {m.kernels for m in model.modules() if isinstance(m, BatchNormAct2d)} == {None}
    monkeypatch.setenv("RESDSL_KERNELS", "fast")
    with pytest.raises(ValueError, match="kernels must be one of"):
        model(torch.randn(1, 3, 32, 32))
    monkeypatch.setenv("RESDSL_KERNELS", "torch")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_triton_kernels_under_the_interpreter(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    torch.manual_seed(0)
    layer = nn.BatchNorm2d(6)
    fused = BatchNormAct2d(6, relu=True, residual_at="mid", kernels="triton")
    x, r = torch.randn(2, 6, 5, 3), torch.randn(2, 6, 5, 3)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    want = torch.relu(layer(xs[0]) + r)
    got = fused(xs[1], r)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    want.sum().backward(), got.sum().backward()
    torch.testing.assert_close(xs[1].grad, xs[0].grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.running_var, layer.running_var)


def test_torch_export_and_compile_of_a_fused_build():
    model, unfused = pair(SMALL, "unit_b")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = unfused.eval()(x)
        exported = torch.export.export(model.eval(), (x,))
        torch.testing.assert_close(exported.module()(x), want)
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), want)
    for m in model.modules():   # the default: $RESDSL_KERNELS read as forward runs
        if isinstance(m, BatchNormAct2d):
            m.kernels = None
    y = torch.compile(model.train(), backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(y, unfused.train()(x), rtol=1e-5, atol=1e-6)


def test_hostile_names_fused():
    import test_pytorch
    model, unfused = pair(test_pytorch.HOSTILE, None)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(x), unfused(x), rtol=1e-5, atol=1e-6)


# ---- command line --------------------------------------------------------------------------

def cli(*args):
    from click.testing import CliRunner

    from resdsl.cli import main
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_emit_ir_shows_fused_nodes_and_no_fuse_turns_them_off():
    spec = SPECS / "resnet.res"
    r = cli("compile", spec, "-n", "resnet18", "--emit", "ir")
    assert r.exit_code == 0, r.stdout
    assert "layer1.0.bn2 = bn_act(" in r.stdout and "# fused bn+add+relu" in r.stdout
    r = cli("compile", spec, "-n", "resnet18", "--emit", "ir", "--no-fuse")
    assert "bn_act" not in r.stdout and "layer1.0.add = add()" in r.stdout
    r = cli("compile", spec, "-n", "resnet18", "--no-fuse")
    assert "BatchNormAct2d" not in r.stdout and "nn.BatchNorm2d" in r.stdout
    r = cli("compile", spec, "-n", "resnet18", "--kernels", "torch")
    assert "kernels: str | None = 'torch'" in r.stdout
    summaries = [cli("compile", spec, "-n", "resnet18", "--emit", "summary", *flag).stdout
                 for flag in ([], ["--no-fuse"])]
    assert summaries[0] == summaries[1]
    r = cli("compile", spec, "-n", "resnet18", "--emit", "json")
    assert ir.same_graph(ir.from_json(r.stdout), fused("resnet.res", "resnet18"))


def test_random_specs_fused_equal_unfused():
    """Random valid specs of every family (custom shortcuts and nested orderings included):
    the fused build's outputs and input gradient in train mode equal the unfused build's."""
    import strategies as S
    from hypothesis import HealthCheck, given, note, settings

    @settings(max_examples=max(1, 6 * settings.default.max_examples // 100), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(S.nets())
    def run(spec):
        note(spec.text)
        model, unfused = pair(spec.text, spec.network)
        x = torch.randn(2, *spec.input)
        xs = [x.clone().requires_grad_() for _ in range(2)]
        ys = []
        for m, xi in zip((model, unfused), xs):
            torch.manual_seed(1)  # the same dropout masks
            ys.append(m.train()(xi))
        torch.testing.assert_close(ys[0], ys[1], rtol=1e-5, atol=1e-5)
        for y in ys:
            (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        torch.testing.assert_close(xs[0].grad, xs[1].grad, rtol=1e-4, atol=1e-5)
    run()
