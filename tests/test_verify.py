"""`resdsl verify` (resdsl/verification.py): the input sizes a network accepts, found
statically, and PyTorch's word on them.

The expected size rules are derived by hand from PyTorch's size arithmetic, out = floor((H +
2p - k) / s) + 1 (each derivation is written beside its test), or taken from the reference
systems themselves (PyTorch refusing a size, timm's own models); the scan is also compared
with the independent model of tests/strategies.py on random networks, and with the builder.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import resdsl
from resdsl import ops
from resdsl import verification as V
from resdsl.cli import main
from resdsl.errors import ResdslError, ShapeError
from resdsl.graph import draft_graph
from resdsl.loader import load, load_text
from resdsl.pipeline import check_file, check_text

sys.path.insert(0, os.path.dirname(__file__))
import strategies as S  # (tests/ is not a package)

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"

# The example: a unit whose residual downsamples with a 2x2 max pool (floor(H/2))
# while option A's shortcut subsamples x[:, :, ::2, ::2] (ceil(H/2)): they agree only for
# even H. Two such stages need H/2 even too.
POOL = """use std

block pool_down(planes) {
  residual {
    conv planes, 3x3; bn; relu
    maxpool 2x2, stride = 2
    conv planes, 3x3; bn
  }
  shortcut pad
  merge add
  relu
}

network net {
  input 3 x 32 x 32
  stem {
    conv 16, 3x3
    bn
    relu
  }
  stage layer1 = 2 x basic_a(16)
  stage layer2 = pool_down(32)
STAGE3  head {
    avgpool: avgpool
    fc: fc 10
  }
}
"""
TWO_STAGES = POOL.replace("STAGE3", "  stage layer3 = pool_down(64)\n")
ONE_STAGE = POOL.replace("STAGE3", "")


def sizes_of(text: str, network: str = "net", sizes=(1, 64)):
    return V.analyse(load_text(text), network, sizes)


# ---- hand-derived rules ----------------------------------------------------------------------

def test_pool_and_pad_accept_multiples_of_four():
    # layer2: 2x2/2 pool floor(H/2) = pad's ceil(H/2) iff H even (and the pool needs H >= 2);
    # layer3 the same for H/2: H a multiple of 4, >= 4. The last map is H/4 (exact there).
    s = sizes_of(TWO_STAGES)
    assert s.h == s.w == tuple(range(4, 65, 4))
    assert s.rule == "H and W multiples of 4, ≥ 4"
    assert not s.ok and s.refused.startswith("H, W = 1, 2, 3, 5, 6, 7, … (48 of 64)")
    assert s.output == "10"
    assert s.feature == "layer3.0.relu2, 64 x H/4 x W/4"
    assert not s.accepts(33, 32) and s.accepts(36, 64)


def test_refusals_are_the_builders_located_errors():
    s = sizes_of(TWO_STAGES)
    first, merge = s.refusals[:2]
    # 1x1: the 2x2 pool of layer2 gets a 1x1 map; 3x3: layer2 adds 1x1 (pool) to 2x2 (pad)
    assert first.shape == (3, 1, 1) and first.error.code == "E402"
    assert first.error.span.line == TWO_STAGES.splitlines().index(
        "    maxpool 2x2, stride = 2") + 1
    assert merge.shape == (3, 3, 3) and merge.error.code == "E406"
    assert "(32x1x1)" in merge.error.message and "(32x2x2)" in merge.error.message
    assert merge.error.span.line == TWO_STAGES.splitlines().index("  merge add") + 1
    text = "\n".join(s.lines())
    assert "at 3x3x3:" in text and "error[E406]" in text and "  merge add" in text


def test_one_pool_stage_accepts_even_sizes():
    s = sizes_of(ONE_STAGE)
    assert s.h == tuple(range(2, 65, 2))
    assert s.rule == "H and W even, ≥ 2"
    assert s.feature == "layer2.0.relu2, 32 x H/2 x W/2"


def test_pytorch_refuses_what_the_scan_refuses():
    # the reference: PyTorch itself adds the branches at 36 and cannot at 34 or 33
    torch = pytest.importorskip("torch")
    model = resdsl.build(TWO_STAGES, "net").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 36, 36)).shape == (1, 10)
        for n in (33, 34):
            with pytest.raises(RuntimeError, match="size of tensor"):
                model(torch.randn(1, 3, n, n))


NON_SQUARE = """
block wide_down(planes) {
  residual {
    conv planes, 3x3; bn; relu
    maxpool 1x2, stride = 1x2
  }
  shortcut projection
  merge add
}

network net {
  input 3 x 8 x 8
  conv 8, 3x3
  wide_down 16
}
"""


def test_each_axis_has_its_rule():
    # H: a 1x1 window at stride 1 keeps H, as the projection's 1x1 conv does; W: the pool's
    # floor(W/2) against the projection's floor((W - 1)/2) + 1 = ceil(W/2): W even
    s = sizes_of(NON_SQUARE, sizes=(1, 32))
    assert s.h == tuple(range(1, 33)) and s.w == tuple(range(2, 33, 2))
    assert s.rule == "any H ≥ 1; W even, ≥ 2"
    assert s.refused == "W = 1, 3, 5, 7, 9, 11, … (16 of 32)"
    assert s.output == "16 x H x W/2"


GATE = """
block gate(planes) {
  residual {
    conv planes, 1x1, stride = 1x2
  }
  shortcut identity
  merge mul
}

network net {
  input 8 x 8 x 1
  gate 8
}
"""


def test_a_mul_that_ties_h_to_w_is_scanned_pair_by_pair():
    # the branch is 8 x H x ceil(W/2), the shortcut 8 x H x W: a mul takes equal shapes
    # (W = 1) or a 1x1 gate (H = 1, W <= 2): not a product of an H set and a W set
    s = sizes_of(GATE, sizes=(1, 12))
    assert s.pairs == frozenset({(h, 1) for h in range(1, 13)} | {(1, 2)})
    assert s.accepts(5, 1) and s.accepts(1, 2) and not s.accepts(2, 2)
    assert "not every pair" in s.rule and not s.ok


def test_pairs_are_bounded_where_h_and_w_meet_in_a_mul(tmp_path):
    """E508: a pair-by-pair scan of 1..100000 would be 10**10 pairs (it ran for hours)."""
    assert V.MAX_PAIRS == 500 ** 2
    assert sizes_of(GATE, sizes=(1, 500)).pairs   # 250,000 pairs: checked
    with pytest.raises(ResdslError) as e:
        sizes_of(GATE, sizes=(1, 501))
    assert e.value.code == "E508" and "251,001 pairs, more than 250,000" in e.value.message
    assert e.value.hint == ("check at most 500 sizes, e.g. --sizes 1..500 "
                            "(resdsl.verify: sizes=(1, 500))")
    spec = tmp_path / "gate.res"
    spec.write_text(GATE)
    r = CliRunner().invoke(main, ["verify", str(spec), "--sizes", "1..100000", "--examples", "0"])
    assert r.exit_code == 1 and "error[E508]" in r.stderr and f"{spec}:10:1" in r.stderr


def test_resnet50_accepts_every_size():
    # 7x7/2 pad 3, 3x3/2 pad 1 pool, 3x3/2 pad 1 convs: each ceil(H/2), never below 1; the
    # projections' 1x1/2 convs give floor((H - 1)/2) + 1 = ceil(H/2) too, so every add
    # agrees. layer4's input is ceil(H/16): 2 or less for H <= 32, where its stride-2 3x3
    # makes a 1x1 map, one value per channel for the BN after it at batch 1.
    s = V.analyse(load(str(SPECS / "resnet.res")), "resnet50", (1, 96))
    assert s.ok and s.rule == "any H, W ≥ 1" and s.output == "1000"
    assert s.feature == "layer4.2.relu3, 2048 x ceil(H/32) x ceil(W/32)"
    assert s.batch_one == [("training at batch 1: PyTorch refuses it where H and W ≤ 32: "
                            "layer4.0.bn2 sees one value per channel at 32x32; batch ≥ 2 "
                            "works")]
    assert s.min_batch(32, 32, training=True) == 2 and s.min_batch(33, 1, training=True) == 1
    assert s.min_batch(1, 1) == 1


def test_blur_pools_need_a_map_of_two():
    # timm's BlurPool2d (filt 3, stride 2) reflect-pads 1, so its input must be >= 2; each
    # halves (ceil), so layer4's, after the stem's stride 2 and three blur pools, is
    # ceil(H/16) >= 2: H >= 17
    s = V.analyse(load(str(SPECS / "timm.res")), "resnetblur18", (1, 48))
    assert s.h == s.w == tuple(range(17, 49))
    assert s.rule == "any H, W ≥ 17"
    assert {r.error.code for r in s.refusals} == {"E402"}


AA_ACCEPTED = [h for h in range(1, 70) if h >= 31 and h % 32 in (31, 0, 1, 2)]


def test_avgpool_antialiasing_accepts_four_sizes_in_thirty_two():
    # resnetaa50: stem ceil(H/2), then a 2x2 avg pool: b = floor(ceil(H/2)/2) = (H+1)//4;
    # each stage's 2x2 pool (floor) meets a 1x1/2 projection (ceil), so b, b/2, b/4 must
    # be even: b a multiple of 8, H + 1 in 32..35 (mod 32)
    s = V.analyse(load(str(SPECS / "timm.res")), "resnetaa50", (1, 69))
    assert list(s.h) == AA_ACCEPTED == [31, 32, 33, 34, 63, 64, 65, 66]
    assert s.rule == "H and W ≡ 31..34 (mod 32), ≥ 31"


def test_timm_agrees_on_the_antialiased_sizes():
    # the reference system: timm's own resnetaa50 runs at the accepted sizes, fails at others
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    model = timm.create_model("resnetaa50", pretrained=False).eval()
    with torch.no_grad():
        for n in (31, 34):
            assert model(torch.randn(1, 3, n, n)).shape == (1, 1000)
        for n in (35, 36):
            with pytest.raises(RuntimeError):
                model(torch.randn(1, 3, n, n))


# ---- rules as text ---------------------------------------------------------------------------

@pytest.mark.parametrize("values, text", [
    (range(1, 65), "any H, W ≥ 1"),
    (range(2, 65, 2), "H and W even, ≥ 2"),
    (range(5, 65, 2), "H and W odd, ≥ 5"),
    (range(8, 65, 8), "H and W multiples of 8, ≥ 8"),
    ([h for h in range(1, 65) if h % 4 == 1], "H and W ≡ 1 (mod 4), ≥ 1"),
    (range(1, 33), "H and W ≤ 32"),
    ([1, 2, 3, 5, 9, 10], "H and W in 1..3, 5, 9..10"),
    ([1, 2, 3, *range(8, 65, 2)], "H and W ≤ 3, or even ≥ 8"),
    ([], "no H, W in 1..64"),
])
def test_describe(values, text):
    assert V.describe(values, 1, 64, ("H", "W")) == text


@pytest.mark.parametrize("f, text", [
    (lambda h: -(-h // 32), "ceil(H/32)"),
    (lambda h: h // 4, "floor(H/4)"),
    (lambda h: (h - 1) // 2 + 1, "ceil(H/2)"),       # a 3x3/2 conv, pad 1
    (lambda h: (h - 3) // 2 + 1, "floor((H - 1)/2)"),  # a 3x3/2 conv, no padding
    (lambda h: h - 2, "H - 2"),
    (lambda h: 7, "7"),
])
def test_formula(f, text):
    assert V.formula([(h, f(h)) for h in range(3, 200)], "H") == text


# ---- against the independent model and the builder -------------------------------------------

@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(S.nets(max_stages=3, max_blocks=2), st.data())
def test_the_scan_agrees_with_the_independent_model(spec, data):
    note(spec.text)
    s = V.accepted_sizes(*_built(spec.text, spec.network), (1, 24))
    c = spec.input[0]
    for h, w in [(n, n) for n in range(1, 25)] + data.draw(
            st.lists(st.tuples(st.integers(1, 24), st.integers(1, 24)), max_size=12)):
        expected = spec.error((c, h, w))
        note(f"{h}x{w}: {expected}")
        assert s.accepts(h, w) == (expected is None)
        if expected is None:
            assert s.replay.shapes((c, h, w))[-1] == spec.expect((c, h, w)).output_shape


def _built(text: str, network: str):
    checked = check_text(text, networks=[network])
    return checked.networks[network], checked.drafts[network]


@pytest.mark.parametrize("text, network", [(TWO_STAGES, "net"), (NON_SQUARE, "net"),
                                           (GATE, "net")], ids=["pool", "non-square", "gate"])
def test_the_scan_agrees_with_the_builder_on_every_pair(text, network):
    net, draft = _built(text, network)
    s = V.accepted_sizes(net, draft, (1, 16))
    c = draft.graph["input"][0]
    for h in range(1, 17):
        for w in range(1, 17):
            try:
                draft_graph(net, (c, h, w))
                built = True
            except ShapeError:
                built = False
            assert s.accepts(h, w) == built, (h, w)


# ---- every bundled network -------------------------------------------------------------------

# Where a bundled network refuses sizes in 1..40, the rule derived above; all others accept all.
KNOWN = {**{n: range(17, 41) for n in ("resnetblur18", "resnetblur50", "resnetblur50d",
                                        "resnetblur101d")},
         **{n: [h for h in AA_ACCEPTED if h <= 40] for n in (
             "resnetaa34d", "resnetaa50", "resnetaa50d", "resnetaa101d", "seresnetaa50d",
             "seresnextaa101d_32x8d", "seresnextaa201d_32x8d")}}
BUNDLED = sorted(p for p in SPECS.glob("*.res") if p.stem != "std")


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_every_bundled_network_statically(path):
    checked = check_file(str(path))
    assert checked.drafts
    for name, draft in checked.drafts.items():
        s = V.accepted_sizes(checked.networks[name], draft, (1, 40))
        want = tuple(KNOWN.get(name, range(1, 41)))
        assert s.h == s.w == want, name
        assert s.pairs is None and s.output == str(draft.nodes["output"]["shape"][0])


# one of each kind of unit, shortcut and layer: a deep stem and avgdown, option C, option A,
# BN after the add, SE gates and groups, ECA's channel conv, blur pools, group norm
TORCH_SAMPLE = [("resnet.res", "resnet50d"),
                ("resnet_v1.res", "resnet34_c"), ("cifar.res", "resnet20"),
                ("preact.res", "resnet110_unit_b"), ("timm.res", "seresnext26d_32x4d"),
                ("timm.res", "ecaresnet26t"), ("timm.res", "resnetblur18"),
                ("timm.res", "resnet50_gn")]


@pytest.mark.parametrize("file, name", TORCH_SAMPLE, ids=[n for _, n in TORCH_SAMPLE])
def test_a_sample_of_bundled_networks_in_pytorch(file, name):
    pytest.importorskip("torch")
    v = V.verify_network(load(str(SPECS / file)), name, (1, 40), examples=2, batch=(1, 2))
    assert v.pytorch.ok, "\n".join(v.lines())
    assert v.pytorch.examples >= 2   # the smallest accepted size, and one drawn at least


# ---- the PyTorch check finds what is wrong ---------------------------------------------------

def test_a_wrong_shape_rule_is_caught_at_the_layer(monkeypatch):
    # a bug in the op table: a max pool that rounds up. The scan then accepts odd sizes,
    # and PyTorch's floor disagrees at the pool; hypothesis' example is an odd size.
    pytest.importorskip("torch")
    pool = ops.OPS["maxpool"]

    def ceil_shape(a, ins):
        return pool.shape({**a, "ceil_mode": True}, ins)
    monkeypatch.setitem(ops.OPS, "maxpool", dataclasses.replace(pool, shape=ceil_shape))
    v = V.verify_network(load_text(ONE_STAGE), "net", (1, 24), examples=6, batch=(1, 2))
    assert v.sizes.ok   # the buggy rule accepts everything
    assert not v.pytorch.ok
    (_, _, h, w), m = v.pytorch.failure
    assert m.node == "layer2.0.maxpool1" and (h % 2 or w % 2)
    assert "layer2.0.maxpool1" in "\n".join(v.lines())


def test_hypothesis_shrinks_to_the_smallest_disagreement(monkeypatch):
    from resdsl import verification

    def wrong_from_11(program, name, batch, h, w, sizes, limits=None, overrides=None):
        return verification.Mismatch("conv1", "output", (1,), (2,)) if h >= 11 else None
    monkeypatch.setattr(verification, "check_example", wrong_from_11)
    program = load_text(ONE_STAGE.replace("pool_down(32)", "basic_a(32, stride = 2)"))
    s = V.analyse(program, "net", (1, 64))
    found = V.check_pytorch(program, "net", s, examples=30, seed=3)
    assert found.failure is not None
    assert found.failure[0] == (1, 3, 11, 1)


def test_compare_names_the_layer_whose_shape_differs():
    torch = pytest.importorskip("torch")
    model = resdsl.build(ONE_STAGE, "net").eval()
    g = model.resdsl_graph
    shapes = {v: d["shape"] for v, d in g.nodes(data=True)}
    x = torch.randn(2, 3, 32, 32)
    assert V.compare(model, x, g, shapes) is None
    shapes["layer2.0.maxpool1"] = (32, 17, 17)
    m = V.compare(model, x, g, shapes)
    assert m.node == "layer2.0.maxpool1" and m.what == "output"
    assert m.real == (2, 32, 16, 16) and m.inferred == (2, 32, 17, 17)
    assert "layer2.0.maxpool1 (<string>:" in str(m)


def test_replay_is_the_builders_shape_inference():
    net, draft = _built(TWO_STAGES, "net")
    for n in (4, 8, 36):
        built = draft_graph(net, (3, n, n))
        assert V.Replay(draft).shape_map((3, n, n)) == {
            v: d["shape"] for v, d in built.nodes(data=True)}


# ---- the Python API and the command line -----------------------------------------------------

def test_api_static_only():
    report = resdsl.verify(TWO_STAGES, sizes=(1, 16), examples=0)
    assert not report.ok and list(report.networks) == ["net"]
    assert report.networks["net"].pytorch is None
    assert "accepts: H and W multiples of 4, ≥ 4" in str(report)
    assert str(report).endswith("net: sizes rejected")


def test_api_with_pytorch():
    pytest.importorskip("torch")
    report = resdsl.verify(str(SPECS / "cifar.res"), ["resnet20"], sizes=(1, 16), examples=2)
    assert report.ok, str(report)
    assert "pytorch: " in str(report) and str(report).endswith("resnet20: ok")


@pytest.mark.parametrize("kw", [{"sizes": (0, 5)}, {"sizes": (5, 2)}, {"sizes": "1..5"},
                                {"examples": -1}, {"seed": 1.5}, {"batch": (0, 2)},
                                {"network": 3}])
def test_api_bad_arguments_are_E212(kw):
    with pytest.raises(ResdslError) as e:
        resdsl.verify(TWO_STAGES, **kw)
    assert e.value.code == "E212"


def test_api_spec_errors_are_raised():
    with pytest.raises(ResdslError) as e:
        resdsl.verify(TWO_STAGES, "nosuch", examples=0)
    assert e.value.code == "E201"


def run(*args: str):
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result


def test_cli_refused_sizes_exit_1(tmp_path):
    path = tmp_path / "pool.res"
    path.write_text(TWO_STAGES, encoding="utf-8")
    r = run("verify", str(path), "--sizes", "1..32", "--examples", "0")
    assert r.exit_code == 1
    assert "accepts: H and W multiples of 4, ≥ 4" in r.stdout
    assert "error[E406]" in r.stdout and r.stdout.rstrip().endswith("net: sizes rejected")


def test_cli_accepted_exit_0():
    r = run("verify", str(SPECS / "cifar.res"), "-n", "resnet20", "--sizes", "1..16",
            "--examples", "2", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert "accepts: any H, W ≥ 1" in r.stdout and "pytorch: " in r.stdout


@pytest.mark.parametrize("sizes", ["0..4", "4..2", "x", "1..", "1..1000000"])
def test_cli_bad_sizes_exit_2(sizes):
    r = run("verify", str(SPECS / "cifar.res"), "--sizes", sizes)
    assert r.exit_code == 2 and "--sizes" in r.output


def test_cli_unknown_network_exit_1():
    r = run("verify", str(SPECS / "cifar.res"), "-n", "nosuch", "--examples", "0")
    assert r.exit_code == 1 and "error[E201]" in r.stderr


def test_cli_defaults_are_the_apis():
    options = {p.name: p.default for p in main.commands["verify"].params}
    assert options["sizes"] == "{}..{}".format(*V.DEFAULT_SIZES)
    assert options["examples"] == V.DEFAULT_EXAMPLES


def test_static_part_needs_no_torch():
    code = ("import sys; from click.testing import CliRunner; from resdsl.cli import main; "
            f"r = CliRunner().invoke(main, ['verify', {str(SPECS / 'cifar.res')!r}, '-n', "
            "'resnet20', '--sizes', '1..8', '--examples', '0']); "
            "print(r.exit_code, 'torch' in sys.modules, 'hypothesis' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["0", "False", "False"]
