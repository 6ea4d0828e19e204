"""Inputs that once got something other than a ResdslError (or an error without a code or a
location) out of resdsl: found by the fuzzing campaign (benchmarks/fuzz.py) or by fuzzing
the Python API's arguments by hand. Each must now fail cleanly, or succeed.

The campaign itself is a benchmark, not a test: `python benchmarks/fuzz.py --n 100000`
(figures in benchmarks/results/fuzz-cpu.txt). Limits found this way (a `use` chain that
overflowed Python's stack, a block chain checked in cubic time) are in tests/test_limits.py.
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import pytest

from resdsl.errors import ResdslError
from resdsl.pipeline import Limits, check_text

ROOT = Path(__file__).resolve().parent.parent
NET = ("use std\nnetwork t {\n  input 3 x 32 x 32\n  conv 8, 3x3\n"
       "  stage layer1 = 1 x basic(16)\n  avgpool\n  fc 10\n}\n")


# ---- input sizes from Python: were not validated -------------------------------------------
# (3.5, 32, 32) reported E401 "input channels 3.5 are not divisible by 1"; (3, 32) E404 "its
# input is flat"; (0, 32, 32) and (True, 32, 32) checked fine; (3, nan, 4) reached E406 with
# a shape of nan; '3x32x32' was taken as a shape of 7 characters.

@pytest.mark.parametrize("shape,code", [
    ((3, 0, 0), "E301"), ((3, -1, 5), "E301"), ((0, 32, 32), "E301"),
    ((3.5, 32, 32), "E304"), ((3, 32), "E304"), ((3, 32, 32, 1), "E304"),
    ("3x32x32", "E304"), ((True, 32, 32), "E304"), ((3, float("nan"), 4), "E304"),
    ((), "E304"), ((3, "32", 32), "E304"),
])
def test_bad_input_sizes_from_python(shape, code):
    with pytest.raises(ResdslError) as info:
        check_text(NET, input_shape=shape)
    assert info.value.code == code
    assert "input" in info.value.message


@pytest.mark.parametrize("shape", [(3, 1, 1), [3, 32, 32], (3, 17, 40)])
def test_good_input_sizes_from_python(shape):
    g = check_text(NET, input_shape=shape).graphs["t"]
    assert g.graph["input"] == tuple(shape)


def test_bad_input_size_through_the_api():
    pytest.importorskip("torch")
    import resdsl

    with pytest.raises(ResdslError) as info:
        resdsl.build(NET, input_shape=(3, 0, 32))
    assert info.value.code == "E301"


# ---- the campaign's own replay: a few inputs of each kind stay clean ------------------------

def test_campaign_inputs_replay_cleanly():
    """The first inputs of seed 1 (every kind: bytes, truncations, token and line edits of
    the bundled specs, generated specs) end in `ok` or a coded error, as in the campaign."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fuzz
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    outcomes, kinds = Counter(), Counter()
    for index in range(60):
        kind, rng, data = fuzz.make_input(1, index)
        kinds[kind] += 1
        try:
            outcomes[fuzz.run_one(data, rng, Counter())] += 1
        except fuzz.Bug as bug:  # pragma: no cover - a finding
            pytest.fail(f"input {index} ({kind}): {bug.key}\n{bug.detail}")
    assert set(kinds) == {"bytes", "truncate", "token", "lines", "generate"}
    assert outcomes["ok"] > 0 and len(outcomes) > 3


def test_campaign_is_reproducible():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fuzz
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert [fuzz.make_input(7, i)[2] for i in range(20)] == \
        [fuzz.make_input(7, i)[2] for i in range(20)]
    assert os.path.exists(ROOT / "benchmarks" / "fuzz.py")


def test_limits_given_as_none_mean_the_defaults():
    """max_layers=None (or max_params/max_macs) from the API compared None with an int."""
    limits = Limits.given(max_layers=None, max_params=None, max_macs=None)
    g = check_text(NET, limits=limits).graphs["t"]
    assert g.graph["name"] == "t"


# ---- an empty residual branch: found by review -----------------------------------------------
# `residual { }` (or one holding only bindings or an empty nested block) with an identity
# shortcut made `merge add` add a tensor to itself: one edge into the add node, and
# `resdsl compile` stopped with an internal AssertionError (`check` passed).
EMPTY = ("block nothing() {{\n  x = 1\n}}\n"
         "block b() {{\n  residual {{\n    {body}\n  }}\n  shortcut {shortcut}\n}}\n"
         "network n {{\n  input 3 x 8 x 8\n  stage s = 1 x b()\n}}\n")


@pytest.mark.parametrize("body", ["", "y = 2", "nothing"])
@pytest.mark.parametrize("shortcut", ["identity", "projection", "projection(always)", "{ }"])
def test_empty_residual_branch_is_e308(body, shortcut):
    with pytest.raises(ResdslError) as info:
        check_text(EMPTY.format(body=body, shortcut=shortcut))
    (err,) = info.value.errors
    assert err.code == "E308" and "has no layers" in err.message
    assert (err.span.line, err.span.col) == (8, 3)   # the shortcut line


def test_empty_residual_branch_without_a_merge_builds():
    g = check_text(EMPTY.format(body="", shortcut="none")).graphs["n"]
    assert g.nodes["output"]["shape"] == (3, 8, 8)


# ---- a block without any layer: found by the campaign (seed 3, input 1538) ------------------
# An empty residual branch with `shortcut none` is the identity; the PyTorch backend looked
# for the block's first node to name its input channels and stopped with StopIteration.
NOOP = ("block noop(planes) {\n  residual { }\n  shortcut none\n}\n"
        "network n {\n  input 3 x 8 x 8\n  conv 4, 3x3\n  stage s = 2 x noop(4)\n"
        "  conv 5, 1x1\n}\n")


def test_block_without_layers_compiles_to_the_identity(tmp_path):
    import torch

    import resdsl

    spec = tmp_path / "noop.res"
    spec.write_text(NOOP)
    plain = tmp_path / "plain.res"
    plain.write_text(NOOP.replace("  stage s = 2 x noop(4)\n", ""))
    torch.manual_seed(0)
    model = resdsl.build(spec, "n").eval()
    torch.manual_seed(0)
    want = resdsl.build(plain, "n").eval()
    assert [type(m).__name__ for m in model.s] == ["Noop", "Noop"]
    assert not list(model.s.parameters())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), want(x))
        torch.testing.assert_close(resdsl.optimize(model)(x), want(x), rtol=1e-5, atol=1e-5)


# ---- a conv that reads its own BN's residual: found by the campaign (seed 12, input 138) ---
# relu(bn(conv(x)) + x): folding the BN into the conv gave the conv x on both ports, one edge
# in the graph, and `resdsl compile --inference` stopped with a ValueError. That BN stays.
ONE_CONV = ("block one(planes) {\n  residual { conv planes, 3x3; bn }\n  shortcut identity\n"
            "  merge add\n  relu\n}\n"
            "network n {\n  input 3 x 8 x 8\n  conv 4, 3x3\n  stage s = 2 x one(4)\n}\n")


@pytest.mark.parametrize("fuse", [True, False])
def test_conv_reading_its_bns_residual_stays_unfolded(tmp_path, fuse):
    import torch

    import resdsl
    from resdsl.pipeline import lower

    spec = tmp_path / "one.res"
    spec.write_text(ONE_CONV)
    g = lower(check_text(ONE_CONV).graphs["n"], fuse=fuse, inference=True)
    kept = {v for v, d in g.nodes(data=True) if d["op"] in ("bn", "bn_act")}
    assert kept == ({"s.0.bn1", "s.1.bn1"} if fuse else set())  # unfused, the add is apart
    model = resdsl.build(spec, "n", fuse=fuse)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(resdsl.optimize(model)(x), model(x), rtol=1e-5, atol=1e-5)


def test_name_campaign_inputs_replay_cleanly():
    """The first inputs of the name campaign (benchmarks/fuzz.py --names, seed 1): each is
    refused with a located, coded error, or runs in every emit mode as its summary says."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fuzz
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    pytest.importorskip("torch")
    outcomes, stats = Counter(), Counter()
    for index in range(40):
        _, rng, text = fuzz.make_name_input(1, index)
        try:
            outcomes[fuzz.run_names(text, rng, stats)] += 1
        except fuzz.Bug as bug:  # pragma: no cover - a finding
            pytest.fail(f"name input {index}: {bug.key}\n{bug.detail}")
    assert outcomes["ok"] >= 10 and stats["run:standalone"] >= 10 and len(outcomes) > 2
