"""The inference pass (issue #5, item 4): BN folded into the conv before it.

- the math against PyTorch's own `torch.nn.utils.fusion.fuse_conv_bn_weights` and against a
  conv followed by an eval-mode nn.BatchNorm2d, in float64;
- the graph surgery: which BNs fold (every BN that reads a conv's only output) and which stay
  (after an add, at a pre-activation block's input, a requested feature), counts and verify;
- `resdsl.optimize(model)` and `resdsl compile --inference`: outputs equal the unfolded eval
  model (and torchvision's) within 1e-4 relative for every bundled family, channels_last.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402
from torch import nn  # noqa: E402

import resdsl  # noqa: E402
from resdsl.errors import ResdslError  # noqa: E402
from resdsl import ir  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.fold import fold  # noqa: E402
from resdsl.graph import totals  # noqa: E402
from resdsl.runtime import fold_conv_bn, fold_state_dict  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from helpers import randomise_bn  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"
RESNET = SPECS / "resnet.res"


def rel_close(got: torch.Tensor, want: torch.Tensor, tol: float = 1e-4) -> None:
    err = ((got - want).abs().max() / want.abs().max()).item()
    assert err <= tol, f"max difference {err:.2e} of the largest output"


# ---- the math ------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [False, True])
def test_fold_math_equals_pytorchs(bias):
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    g = torch.Generator().manual_seed(1)
    w, b = torch.randn(6, 4, 3, 3, generator=g), torch.randn(6, generator=g) if bias else None
    gamma, beta = torch.randn(6, generator=g), torch.randn(6, generator=g)
    mean, var = torch.randn(6, generator=g), torch.rand(6, generator=g) + 0.1
    got_w, got_b = fold_conv_bn(w, b, gamma, beta, mean, var, 1e-3)
    want_w, want_b = fuse_conv_bn_weights(w, b, mean, var, 1e-3, gamma, beta)
    torch.testing.assert_close(got_w, want_w)
    torch.testing.assert_close(got_b, want_b)


def test_folded_conv_equals_conv_then_eval_bn_in_float64():
    torch.manual_seed(2)
    conv = nn.Conv2d(5, 7, 3, padding=1, bias=False).double()
    bn = nn.BatchNorm2d(7, eps=1e-5).double()
    randomise_bn(bn)
    bn.eval()
    x = torch.randn(2, 5, 9, 11, dtype=torch.float64)
    w, b = fold_conv_bn(conv.weight, None, bn.weight, bn.bias, bn.running_mean,
                        bn.running_var, bn.eps)
    torch.testing.assert_close(nn.functional.conv2d(x, w, b, padding=1), bn(conv(x)),
                               rtol=1e-12, atol=1e-12)


def test_fold_state_dict_moves_each_bn_into_its_conv():
    state = {"c.weight": torch.ones(2, 1, 1, 1), "n.weight": torch.tensor([2.0, 3.0]),
             "n.bias": torch.tensor([1.0, 0.0]), "n.running_mean": torch.tensor([1.0, 1.0]),
             "n.running_var": torch.tensor([3.0, 8.0]), "n.num_batches_tracked": torch.tensor(5),
             "fc.weight": torch.zeros(1)}
    out = fold_state_dict(state, {"c": ("n", 1.0)})
    assert sorted(out) == ["c.bias", "c.weight", "fc.weight"]
    # scale = gamma / sqrt(var + eps) = 2/2, 3/3; bias = (0 - mean) * scale + beta
    torch.testing.assert_close(out["c.weight"].flatten(), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(out["c.bias"], torch.tensor([0.0, -1.0]))
    assert "n.weight" in state  # the input is left alone


# ---- the graph surgery ---------------------------------------------------------------------

def graph(file: str, network: str, *, fuse: bool = True, features=()):
    from resdsl.pipeline import check_file, lower

    g = check_file(str(SPECS / file), networks=[network]).graphs[network]
    return lower(g, fuse=fuse, keep=features)


def graph_of(text: str):
    from resdsl.pipeline import check_text, lower

    return lower(next(iter(check_text(text).graphs.values())))


@pytest.mark.parametrize("fuse", [True, False])
def test_resnet50_folds_every_bn(fuse):
    g, changed = fold(graph("resnet.res", "resnet50", fuse=fuse))
    assert changed
    ir.verify(g)
    ops = [d["op"] for _, d in g.nodes(data=True)]
    assert "bn" not in ops and "bn_act" not in ops
    folded = {v: d["folded"] for v, d in g.nodes(data=True) if d.get("folded")}
    assert len(folded) == 53 and folded["layer1.0.downsample.0"] == ("layer1.0.downsample.1", 1e-5)
    assert all(g.nodes[v]["attrs"]["bias"] for v in folded)
    assert g.graph["inference"] is True
    assert ir.from_json(ir.to_json(g)).nodes(data=True) == g.nodes(data=True)
    if fuse:  # bn3 = bn+add+relu joins conv3, which takes the shortcut
        d = g.nodes["layer1.0.conv3"]
        assert d["op"] == "conv_act" and d["fused"] == "conv+bn+add+relu"
        assert (d["attrs"]["relu"], d["attrs"]["residual_at"]) == (True, "mid")
        assert {u: g.edges[u, "layer1.0.conv3"]["port"] for u in
                g.predecessors("layer1.0.conv3")} == {"layer1.0.conv2": 0,
                                                      "layer1.0.downsample.0": 1}
        assert "layer1.0.bn3" not in g


def test_parameters_after_folding_are_the_modules():
    model = resdsl.build(RESNET, "resnet50")
    fast = resdsl.optimize(model.eval())
    g = fast.resdsl_graph
    assert totals(g)["params"] == sum(p.numel() for p in fast.parameters())
    # every BN's 2C parameters go, each conv gains C of bias: 53 BNs, 26,560 channels
    assert totals(model.resdsl_graph)["params"] - totals(g)["params"] == 26560


def test_bns_without_a_conv_before_them_stay():
    """Pre-activation: the BN at each block's input reads the previous block's sum, and the
    BN-after-addition unit (b) normalises the sum: neither has a conv to fold into."""
    g, changed = fold(graph("preact.res", "preact_resnet18"))
    assert changed
    stay = {v for v, d in g.nodes(data=True) if d["op"] in ("bn", "bn_act")}
    assert "layer1.0.bn1" in stay and "layer2.0.bn1" in stay
    assert g.nodes["layer1.0.conv1"]["folded"][0] == "layer1.0.bn2"
    b, _ = fold(graph("preact.res", "resnet110_unit_b"))
    assert all(d["attrs"]["residual_at"] == "pre" for v, d in b.nodes(data=True)
               if d["op"] == "bn_act" and d["attrs"]["residual_at"])


def test_a_requested_feature_keeps_its_bn():
    g, _ = fold(graph("resnet.res", "resnet18", features=["bn1"]), keep=["bn1"])
    assert g.nodes["bn1"]["op"] == "bn" and not g.nodes["conv1"].get("folded")


def test_nothing_to_fold_is_no_change():
    """A graph without a conv -> BN pair comes back unchanged but for its `inference` mark."""
    g = graph("resnet.res", "resnet18")
    plain = fold(g)[0]
    again, changed = fold(plain)
    assert not changed and ir.same_graph(again, plain)
    bare, changed = fold(graph_of("network n {\n  input 3 x 8 x 8\n  bn\n  relu\n  avgpool\n  fc 2\n}\n"))
    assert not changed and bare.graph["inference"] is True


# ---- optimize / compile --inference --------------------------------------------------------

CASES = [
    ("resnet.res", "resnet18", (3, 64, 64)),
    ("resnet.res", "resnet50", (3, 64, 64)),
    ("resnet.res", "resnext50_32x4d", (3, 64, 64)),
    ("resnet.res", "resnet50d", (3, 64, 64)),
    ("resnet_v1.res", "resnet18_a", (3, 64, 64)),
    ("cifar.res", "resnet20", (3, 32, 32)),
    ("plain.res", "plain18", (3, 64, 64)),
    ("preact.res", "preact_resnet18", (3, 64, 64)),
    *[("preact.res", f"resnet110_unit_{u}", (3, 32, 32)) for u in "abcde"],
]


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("file,network,shape", CASES, ids=[c[1] for c in CASES])
def test_optimize_equals_the_eval_model(file, network, shape, fuse):
    torch.manual_seed(0)
    model = resdsl.build(SPECS / file, network, input_shape=shape, fuse=fuse)
    randomise_bn(model)
    model.eval()
    fast = resdsl.optimize(model)
    assert not fast.training
    x = torch.randn(2, *shape)
    with torch.no_grad():
        rel_close(fast(x), model(x))
    assert totals(fast.resdsl_graph)["params"] == sum(p.numel() for p in fast.parameters())
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) or \
        sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules()) < \
        sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_optimize_traces_whole_under_compile_and_export():
    """The folded model has no graph break under torch.compile (Conv2dAct's oneDNN path is
    decided before anything dynamo cannot trace) and exports; both equal it eagerly."""
    model = resdsl.build(RESNET, "resnet18", input_shape=(3, 32, 32))
    randomise_bn(model)
    fast = resdsl.optimize(model.eval())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = fast(x)
        compiled = torch.compile(fast, backend="aot_eager", fullgraph=True)
        rel_close(compiled(x), want)
        rel_close(torch.export.export(fast, (x,)).module()(x), want)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_a_conv_takes_in_one_bn_of_two_in_a_row(fuse):
    """conv -> bn -> bn (found by test_pass_properties): the first BN folds, the second stays;
    folding both recorded only the second, and its weights did not follow (the state_dict
    kept the first BN's entries, and load_state_dict refused them)."""
    text = "network n {\n  input 3 x 8 x 8\n  conv 4, 3x3\n  bn\n  bn\n  relu\n  conv 2, 1x1\n}\n"
    model = resdsl.build(text, "n", fuse=fuse)
    randomise_bn(model)
    model.eval()
    fast = resdsl.optimize(model)
    assert type(fast).FOLDED == {"conv1": ("bn1", 1e-5)}
    assert sum(isinstance(m, nn.BatchNorm2d) for m in fast.modules()) == 1
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        rel_close(fast(x), model(x))


def test_optimize_keeps_features():
    model = resdsl.build(RESNET, "resnet18", features=["bn1", "layer2"])
    randomise_bn(model)
    model.eval()
    fast = resdsl.optimize(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for got, want in zip(fast(x), model(x)):
            rel_close(got, want)
    assert fast.feature_info == model.feature_info


def test_optimize_wants_a_resdsl_model():
    with pytest.raises(ResdslError, match="resdsl.build") as info:
        resdsl.optimize(nn.Linear(2, 2))
    assert info.value.code == "E213"


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_compile_inference_loads_torchvision_weights(tmp_path):
    tv = pytest.importorskip("torchvision").models.resnet50()
    randomise_bn(tv, seed=3)
    tv.eval()
    out = tmp_path / "r50_inference.py"
    result = CliRunner().invoke(main, ["compile", str(RESNET), "-n", "resnet50", "--inference",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "BatchNorm" not in text.split("class Resnet50")[1].split("def forward")[0]
    model = load_module(out, "r50_inference").Resnet50.from_trained(tv.state_dict())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        rel_close(model(x), tv(x))
    again = tmp_path / "again.py"
    CliRunner().invoke(main, ["compile", str(RESNET), "-n", "resnet50", "--inference",
                              "-o", str(again)])
    assert again.read_bytes() == out.read_bytes()


def test_compile_inference_ir_shows_the_folds():
    result = CliRunner().invoke(main, ["compile", str(RESNET), "-n", "resnet18", "--inference",
                                       "--emit", "ir"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "conv1 = conv_act(in=3, out=64, k=7, s=2, p=3, bias=true, relu=true) : 64x112x112 " \
           "<- input  # fused conv+bn+relu" in lines
    assert "layer1.0.conv2 = conv_act(in=64, out=64, k=3, s=1, p=1, bias=true, relu=true, " \
           "residual_at=mid) : 64x56x56 <- layer1.0.conv1, maxpool [identity]  " \
           "# fused conv+bn+add+relu" in lines
    names = [line.split(" = ")[0] for line in lines[1:]]  # in a topological order
    assert names.index("layer2.0.downsample.0") < names.index("layer2.0.conv2")


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("at", [None, "mid", "post"])
def test_conv_act_paths_agree(at, relu):
    """Conv2dAct: the oneDNN post-op path (no autograd, CPU float32) and the plain one equal
    the conv followed by the epilogue written out."""
    from resdsl.runtime import Conv2dAct

    torch.manual_seed(4)
    m = Conv2dAct(6, 8, 3, stride=2, padding=1, bias=True, relu=relu, residual_at=at)
    x = torch.randn(2, 6, 9, 9).contiguous(memory_format=torch.channels_last)
    r = torch.randn(2, 8, 5, 5) if at else None
    want = nn.functional.conv2d(x, m.weight, m.bias, 2, 1)
    want = want + r if at == "mid" else want
    want = torch.relu(want) if relu else want
    want = want + r if at == "post" else want
    with torch.no_grad():
        fast = m(x, r)
    slow = m(x, r)
    assert slow.requires_grad
    torch.testing.assert_close(fast, want.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(slow.detach(), want.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups,dilation", [(1, 1), (3, 1), (1, 2)])
def test_conv_act_packed_weight_follows_weight_and_shape(groups, dilation):
    """The oneDNN path keeps its weight packed between calls: a new shape, an in-place change
    of the weight (load_state_dict) and a replaced weight are each seen at the next call;
    the module still deep-copies and saves after a call (the packed copy is left out)."""
    import copy
    import io

    from resdsl.runtime import Conv2dAct

    torch.manual_seed(5)
    m = Conv2dAct(24, 48, 3, padding=dilation, dilation=dilation, groups=groups, bias=True)

    def check(x):
        with torch.no_grad():
            want = nn.functional.conv2d(x, m.weight, m.bias, 1, dilation, dilation, groups)
            torch.testing.assert_close(m(x), want.relu(), rtol=1e-5, atol=1e-5)

    x = torch.randn(2, 24, 7, 5).contiguous(memory_format=torch.channels_last)
    check(torch.randn(1, 24, 4, 11))
    check(x)
    m.load_state_dict({"weight": torch.randn_like(m.weight), "bias": m.bias.detach()})
    check(x)
    m.weight = nn.Parameter(torch.randn_like(m.weight))
    check(x)
    with torch.inference_mode():
        m.weight = nn.Parameter(torch.randn_like(m.weight))  # an inference tensor
    check(x)
    twin = copy.deepcopy(m)
    torch.save(m, io.BytesIO())
    with torch.no_grad():
        torch.testing.assert_close(twin(x), m(x))


def test_conv_act_checks_its_kernels():
    from resdsl.runtime import Conv2dAct

    m = Conv2dAct(2, 2, 1, relu=True, kernels="cuda")
    with pytest.raises(ValueError, match="kernels must be one of"):
        m(torch.randn(1, 2, 3, 3))


def test_compile_inference_reports_feature_strides():
    """The folded graph's conv_act nodes keep their strides in the reported reductions."""
    result = CliRunner().invoke(main, ["compile", str(RESNET), "-n", "resnet18", "--inference",
                                       "--features", "layer2,layer4", "-o", "-"])
    assert result.exit_code == 0
    assert result.stderr.endswith("output layer2 128ch/8, layer4 512ch/32\n")
