"""Issue 14's ops against their references: SE and ECA gates (a `mul` merge) against timm's
SEModule and EcaModule, blurpool against timm's BlurPool2d, drop_path against timm's DropPath,
the activations against torch.nn.functional, and the counts against fvcore."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm_layers = pytest.importorskip("timm.layers")

import resdsl  # noqa: E402
from resdsl.pipeline import check_text  # noqa: E402

GATES = """
block se(rd_ratio = 0.0625) {
  residual {
    avgpool
    fc1: conv make_divisible(in_channels * rd_ratio, 8, round_limit = 0.0), 1x1, bias
    act: relu
    fc2: conv in_channels, 1x1, bias
    gate: sigmoid
  }
  shortcut identity
  merge mul
}

block eca() {
  residual {
    avgpool
    conv: channel_conv
    gate: sigmoid
  }
  shortcut identity
  merge mul
}

network gated(c = 64, rd_ratio = 0.0625) {
  input c x 9 x 7
  se: se rd_ratio
  eca: eca
}
"""


def _ours(c: int, rd_ratio: float = 0.0625):
    return resdsl.build(GATES, c=c, rd_ratio=rd_ratio).eval()


@pytest.mark.parametrize("c, rd_ratio", [(64, 0.0625), (256, 0.0625), (96, 0.25), (2048, 0.25)])
def test_se_and_eca_equal_timms(c, rd_ratio):
    se = timm_layers.SEModule(c, rd_ratio=rd_ratio).eval()
    eca = timm_layers.EcaModule(c).eval()
    model = _ours(c, rd_ratio)
    model.se.load_state_dict(se.state_dict(), strict=True)
    model.eca.load_state_dict(eca.state_dict(), strict=True)   # conv.weight: 1 x 1 x k
    x = torch.randn(2, c, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(model(x), eca(se(x)), rtol=1e-5, atol=1e-6)
    counted = check_text(GATES, "t.res", overrides={"c": c, "rd_ratio": rd_ratio}).graphs[
        "gated"]
    params = sum(d["params"] for _, d in counted.nodes(data=True))
    assert params == sum(p.numel() for p in se.parameters()) + sum(
        p.numel() for p in eca.parameters())


@pytest.mark.parametrize("c", [32, 64, 256, 512, 1024, 2048, 3])
def test_eca_kernel_rule_is_timms(c):
    g = check_text(GATES, "t.res", overrides={"c": c}).graphs["gated"]
    ours = g.nodes["eca.conv"]["params"]
    assert ours == timm_layers.EcaModule(c).conv.weight.numel()


@pytest.mark.parametrize("filt, stride, size", [(3, 2, (9, 7)), (5, 2, (8, 8)), (3, 1, (6, 5))])
def test_blurpool_equals_timms(filt, stride, size):
    text = (f"network n {{\n  input 6 x {size[0]} x {size[1]}\n"
            f"  blurpool {filt}, {stride}\n}}\n")
    model = resdsl.build(text).eval()
    ref = timm_layers.BlurPool2d(6, filt_size=filt, stride=stride)
    assert list(model.state_dict()) == list(ref.state_dict()) == []   # nothing to save
    x = torch.randn(2, 6, *size)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))
    assert check_text(text).graphs["n"].nodes["output"]["shape"] == tuple(ref(x).shape[1:])


def test_drop_path_is_timms_in_training_and_the_identity_in_eval():
    model = resdsl.build("network n {\n  input 4 x 3 x 3\n  drop_path 0.25\n}\n")
    ref = timm_layers.DropPath(0.25)
    x = torch.randn(64, 4, 3, 3)
    torch.manual_seed(0)
    got = model.train()(x)
    torch.manual_seed(0)
    torch.testing.assert_close(got, ref.train()(x))
    assert (got == 0).all(dim=(1, 2, 3)).any() and torch.equal(model.eval()(x), x)


@pytest.mark.parametrize("layer, fn", [
    ("sigmoid", torch.sigmoid), ("silu", torch.nn.functional.silu),
    ("gelu", torch.nn.functional.gelu), ("tanh", torch.tanh),
    ("hardsigmoid", torch.nn.functional.hardsigmoid),
    ("leaky_relu", torch.nn.functional.leaky_relu),
    ("leaky_relu 0.2", lambda x: torch.nn.functional.leaky_relu(x, 0.2)),
    ("identity", lambda x: x),
])
def test_activations_equal_pytorchs(layer, fn):
    model = resdsl.build(f"network n {{\n  input 3 x 4 x 4\n  {layer}\n}}\n").eval()
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x), fn(x))


def test_macs_of_the_new_convs_are_fvcores():
    """fvcore counts one flop per multiply-accumulate of every conv: the SE and ECA convs and
    the blur pool's depthwise one."""
    fvcore = pytest.importorskip("fvcore.nn")
    text = GATES.replace("  eca: eca\n", "  eca: eca\n  blurpool\n")
    model = resdsl.build(text).eval()
    x = torch.randn(1, 64, 9, 7)
    flops = fvcore.FlopCountAnalysis(model, x)
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    g = check_text(text).graphs["gated"]
    assert sum(d["macs"] for _, d in g.nodes(data=True)) == flops.by_operator()["conv"]


def test_a_gate_between_the_last_bn_and_the_add_ends_the_fused_chain():
    """The BN before an SE gate feeds the gate and the product: it stays a plain bn (fusing
    the add into it would skip the gate), while the BN + ReLUs before it still fuse."""
    text = GATES.split("network gated")[0] + """
block se_basic(planes) {
  residual {
    conv planes, 3x3; bn; relu
    conv planes, 3x3; bn
    se: se
  }
  shortcut identity
  merge add
  relu
}
network n {
  input 16 x 8 x 8
  stage s = 2 x se_basic(16)
}
"""
    source, _, lowered = resdsl.emit_python(text)
    ops = {v: d["op"] for v, d in lowered.nodes(data=True)}
    assert ops["s.0.bn1"] == "bn_act" and ops["s.0.bn2"] == "bn" and ops["s.0.add"] == "add"
    model = resdsl.build(text).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        b = model.s[0]
        r = b.bn2(b.conv2(b.bn1(b.conv1(x))))
        want = torch.relu(r * b.se.gate(b.se.fc2(b.se.act(b.se.fc1(r.mean((2, 3), True))))) + x)
        torch.testing.assert_close(b(x), want)
