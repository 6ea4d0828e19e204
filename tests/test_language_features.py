"""Issue 14's language: comparisons and built-in functions, `if` in blocks and networks,
`in_channels`, a stage's `index` / `block_index` / `num_blocks`, key-path labels, named
shortcut containers, and the even-kernel padding rule. Reference values come from Python's
own functions, timm and PyTorch."""
from __future__ import annotations

import math

import pytest

from resdsl.errors import ResdslError
from resdsl.fmt import format_text
from resdsl.parse import parse
from resdsl.pipeline import check_text


def value(expr: str):
    """The value of a top-level constant `v = expr`."""
    from resdsl.elaborate import Elaborator
    from resdsl.loader import load_text
    program = load_text(f"v = {expr}\n", "t.res")
    (let,) = program.root.module.items
    return Elaborator(program).constant(let, program.root)


def error(text: str, **kw) -> ResdslError:
    with pytest.raises(ResdslError) as info:
        check_text(text, "t.res", **kw)
    return info.value


# ---- expressions ---------------------------------------------------------------------------

@pytest.mark.parametrize("expr, want", [
    ("1 < 2", True), ("2 <= 2", True), ("3 > 4", False), ("1.5 >= 2", False),
    ("2 == 2.0", True), ("true == 1", False), ("[1, 2] == [1, 2]", True), ("3x3 != 3x3", False),
    ("not 1 == 2", True), ("1 == 1 and 2 == 3", False), ("1 == 2 or 2 == 2", True),
    ("1 + 2 * 3 == 7 and not false", True),
    # `and` / `or` stop early: the right side is never evaluated
    ("false and 1 / 0 == 1", False), ("true or 1 / 0 == 1", True),
])
def test_comparisons_and_booleans(expr, want):
    assert value(expr) is want


@pytest.mark.parametrize("expr, want", [
    ("min(3, 1, 2)", 1), ("max([4, 9, 2])", 9), ("abs(-3)", 3), ("floor(2.7)", math.floor(2.7)),
    ("ceil(2.1)", math.ceil(2.1)), ("round(2.5)", round(2.5)), ("round(3.5)", round(3.5)),
    ("int(-2.7)", int(-2.7)), ("log2(8)", math.log2(8)), ("len([1, 2, 3])", 3),
    ("sum([3, 4, 6, 3])", 16), ("max(64 // 16, 8)", 8),
])
def test_builtin_functions_agree_with_python(expr, want):
    got = value(expr)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("v, divisor, round_limit", [
    (c * r, d, lim) for c in (64, 96, 120, 256, 2048) for r in (1 / 16, 0.25, 1 / 3)
    for d in (8, 16) for lim in (0.0, 0.9)])
def test_make_divisible_is_timms(v, divisor, round_limit):
    timm_layers = pytest.importorskip("timm.layers")
    want = timm_layers.make_divisible(v, divisor, round_limit=round_limit)
    assert value(f"make_divisible({v!r}, {divisor}, round_limit = {round_limit!r})") == want


@pytest.mark.parametrize("expr, code", [
    ("1 < true", "E304"), ("1 and true", "E304"), ("not 3", "E304"), ("maxx(1, 2)", "E201"),
    ("log2(0)", "E301"), ("abs(1, 2)", "E204"), ("make_divisible(8, foo = 1)", "E203"),
    ("len(3)", "E304"), ("min()", "E204"), ("floor([1])", "E304"),
])
def test_function_and_operator_errors(expr, code):
    assert error(f"v = {expr}\n").code == code


def test_unknown_function_is_found_by_check_with_a_suggestion():
    e = error("block b(p) { conv mxa(p, 8), 3x3 }\n")
    assert e.code == "E201" and "max" in e.hint


# ---- if --------------------------------------------------------------------------------------

IF_SPEC = """
block unit(planes, stride = 1) {
  if stride != 1 or in_channels != planes {
    bn; relu
    residual { conv planes, 3x3, stride = stride }
    shortcut { conv planes, 1x1, stride = stride }
  } else if planes > 64 {
    residual { conv planes, 1x1 }
    shortcut identity
  } else {
    residual { bn; relu; conv planes, 3x3 }
    shortcut identity
  }
  merge add
}
network n {
  input 16 x 16 x 16
  stage s1 = 2 x unit(16)
  stage s2 = 2 x unit(32, stride = 2)
  stage s3 = 1 x unit(128)
  stage s4 = 1 x unit(128)
}
"""


def test_if_chooses_statements_per_instance():
    g = check_text(IF_SPEC).graphs["n"]
    ops = {v: d["op"] for v, d in g.nodes(data=True)}
    assert ops["s1.0.bn1"] == "bn" and g.nodes["s1.0.conv1"]["block"] == "s1.0"  # else branch
    assert "s2.0.downsample.0" in ops and ops["s2.0.bn1"] == "bn"      # changes dimensions
    assert g.graph["scopes"]["s2.0"]["shortcut"]["kind"] == "custom"
    assert g.graph["scopes"]["s2.1"]["shortcut"]["kind"] == "identity"
    assert "s3.0.downsample.0" in ops                                   # in 32 != 128
    assert g.nodes["s4.0.conv1"]["attrs"]["kernel"] == (1, 1)          # else if planes > 64
    assert g.graph["scopes"]["s4.0"]["shortcut"]["kind"] == "identity"


def test_if_structure_is_checked_on_every_path_statically():
    text = ("block b(p) {\n  if p > 1 {\n    residual { conv p, 3x3 }\n    shortcut identity\n"
            "  } else {\n    residual { conv p, 3x3 }\n  }\n}\n")
    e = error(text)
    assert e.code == "E308" and "needs a `shortcut`" in e.message and e.span.line == 6


def test_if_needs_a_boolean():
    text = "block b(p) {\n  if p { relu }\n}\nnetwork n {\n  input 3 x 8 x 8\n  b 3\n}\n"
    e = error(text)
    assert e.code == "E304" and e.span.line == 2


def test_in_channels_is_unknown_after_flatten():
    text = ("block b() { fc in_channels }\n"
            "network n {\n  input 3 x 4 x 4\n  flatten\n  b\n}\n")
    e = error(text)
    assert e.code == "E201" and "in_channels" in e.message and "flatten" in e.hint


def test_in_channels_follows_the_input_size_asked_for():
    text = "block b() { conv in_channels * 2, 1x1 }\nnetwork n {\n  input 3 x 8 x 8\n  b\n}\n"
    g = check_text(text, "t.res", input_shape=(5, 8, 8)).graphs["n"]
    assert g.nodes["b1.conv1"]["shape"] == (10, 8, 8)


def test_fmt_keeps_conditionals_and_is_idempotent():
    once = format_text(IF_SPEC)
    assert format_text(once) == once and parse(once) == parse(IF_SPEC)
    assert "  } else if planes > 64 {\n" in once
    nested = "block b(p) {\n  if p > 1 { relu } else {\n    if p > 2 { bn }\n  }\n}\n"
    assert parse(format_text(nested)) == parse(nested)


# ---- a stage's block indices ----------------------------------------------------------------

DROP_SPEC = """
use std
block dp_basic(planes, stride = 1, groups = 1, width = 64, rate = 0.0) {
  residual {
    conv planes, 3x3, stride = stride; bn; relu
    conv planes, 3x3; bn
    drop_path: drop_path rate
  }
  shortcut projection
  merge add
  relu
}
network n(rate = 0.1) {
  input 3 x 32 x 32
  stem { conv1: conv 64, 7x7, stride = 2; bn1: bn; relu: relu; maxpool: maxpool 3x3, stride = 2 }
  stage layer1 = 2 x dp_basic(64, rate = rate * block_index / (num_blocks - 1))
  stage layer2 = 2 x dp_basic(128, stride = 2, rate = rate * block_index / (num_blocks - 1))
  stage layer3 = 2 x dp_basic(256, stride = 2, rate = rate * block_index / (num_blocks - 1))
  stage layer4 = 2 x dp_basic(512, stride = 2, rate = rate * block_index / (num_blocks - 1))
  head { avgpool: avgpool; fc: fc 1000 }
}
"""


def test_drop_path_schedule_is_timms():
    """timm's ResNet gives block i of n the rate drop_path_rate * i / (n - 1)."""
    timm = pytest.importorskip("timm")
    ref = timm.create_model("resnet18", drop_path_rate=0.1)
    want = {k: m.drop_prob for k, m in ref.named_modules() if type(m).__name__ == "DropPath"}
    g = check_text(DROP_SPEC).graphs["n"]
    got = {v[:-len(".drop_path")]: d["attrs"]["p"] for v, d in g.nodes(data=True)
           if d["op"] == "drop_path"}
    want = {k[:-len(".drop_path")]: p for k, p in want.items()}
    assert len(got) == 8 and set(want) <= set(got)   # timm leaves out a rate-0 DropPath
    assert all(math.isclose(got[k], want.get(k, 0.0)) for k in got), (got, want)


def test_index_gives_per_block_widths():
    text = ("use std\nnetwork n {\n  input 3 x 8 x 8\n"
            "  stage s = 3 x basic([8, 16, 24][index])\n}\n")
    g = check_text(text).graphs["n"]
    assert [g.nodes[f"s.{i}.conv2"]["shape"][0] for i in range(3)] == [8, 16, 24]


def test_stage_names_are_only_in_stage_arguments():
    e = error("network n {\n  input 3 x 8 x 8\n  conv index + 1, 3x3\n}\n")
    assert e.code == "E201" and "stage" in e.hint


# ---- labels and containers ------------------------------------------------------------------

DEEP_STEM = """
network n {
  input 3 x 32 x 32
  stem {
    conv1.0: conv 8, 3x3, stride = 2
    conv1.1: bn
    conv1.2: relu
    conv1.3: conv 16, 3x3
    bn1: bn
    act1: relu
    maxpool.0: maxpool 3x3, stride = 1
    maxpool.1: blurpool
  }
  head { global_pool: avgpool; fc: fc 10 }
}
"""


def test_key_path_labels_give_timms_deep_stem_names():
    torch = pytest.importorskip("torch")
    import resdsl
    model = resdsl.build(DEEP_STEM)
    assert list(model.state_dict()) == [
        "conv1.0.weight", "conv1.1.weight", "conv1.1.bias", "conv1.1.running_mean",
        "conv1.1.running_var", "conv1.1.num_batches_tracked", "conv1.3.weight",
        "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
        "bn1.num_batches_tracked", "fc.weight", "fc.bias"]
    assert isinstance(model.conv1, torch.nn.Sequential)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("body, code", [
    ("conv1: relu; conv1.0: relu", "E202"),     # a layer cannot also be a container
    ("conv1.0: relu; conv1: relu", "E202"),
    ("a.0: relu; a.0: relu", "E202"),
])
def test_label_containers_conflict(body, code):
    assert error(f"network n {{\n  input 3 x 8 x 8\n  {body}\n}}\n").code == code


def test_numeric_labels_and_a_container_called_member_by_member():
    torch = pytest.importorskip("torch")
    import resdsl
    text = ("network n {\n  input 3 x 8 x 8\n  a.0: conv 4, 3x3\n  relu\n  a.1: conv 4, 3x3\n"
            "  0: bn\n}\n")
    model = resdsl.build(text).eval()
    assert [k for k in model.state_dict() if k.endswith("weight")] == \
        ["a.0.weight", "a.1.weight", "0.weight"]
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        want = model.get_submodule("0")(model.a[1](torch.relu(model.a[0](x))))
        torch.testing.assert_close(model(x), want)


def test_a_labelled_shortcut_names_its_container():
    pytest.importorskip("torch")
    import resdsl
    text = """
block pre(planes, stride = 1) {
  bn; relu
  residual { conv planes, 3x3, stride = stride; bn; relu; conv planes, 3x3 }
  shortcut: shortcut projection
  merge add
}
network n {
  input 3 x 8 x 8
  stage layer1 = 1 x pre(8, stride = 2)
}
"""
    keys = list(resdsl.build(text).state_dict())
    assert "layer1.0.shortcut.0.weight" in keys and "layer1.0.shortcut.1.weight" in keys
    assert not any("downsample" in k for k in keys)


# ---- padding --------------------------------------------------------------------------------

def test_even_pool_pads_zero_as_pytorch():
    """The issue's surprise: `avgpool 4x4` is F.avg_pool2d(x, 4), padding 0."""
    torch = pytest.importorskip("torch")
    import resdsl
    model = resdsl.build("network n {\n  input 3 x 8 x 8\n  avgpool 4x4\n}\n").eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model(x), torch.nn.functional.avg_pool2d(x, 4))


# ---- std's pre-activation units, as released --------------------------------------------------

@pytest.mark.parametrize("network, params", [
    # KaimingHe/resnet-1k-layers (resnet-pre-act.lua), as counted in issue 14
    ("preact_resnet164", 1_703_258), ("preact_resnet1001", 10_327_706)])
def test_preact_networks_have_the_released_codes_parameters(network, params):
    from resdsl.pipeline import check_file
    g = check_file("specs/preact.res", networks=[network]).drafts[network]
    assert sum(d["params"] for _, d in g.nodes(data=True)) == params


def test_preact_unit_shares_its_preactivation_only_where_it_changes_dimensions():
    """The released unit: common BN + ReLU and a bare 1x1 conv shortcut in the first unit of
    a stage; BN + ReLU inside the residual branch, identity shortcut, elsewhere."""
    from resdsl.pipeline import check_file
    g = check_file("specs/preact.res", networks=["preact_resnet164"]).drafts["preact_resnet164"]
    roles = {v: d["role"] for v, d in g.nodes(data=True)}
    assert roles["layer2.0.bn1"] == "pre" and roles["layer2.1.bn1"] == "residual"
    assert g.nodes["layer2.0.downsample.0"]["op"] == "conv" and "layer2.0.downsample.1" not in g
    assert g.nodes["layer2.0.conv1"]["attrs"]["stride"] == (2, 2)   # stride on the first 1x1


@pytest.mark.parametrize("text, code", [
    # a key path's container takes nn.Module's attribute: `training` is nn.Module's own
    ("network n {\n  input 3 x 8 x 8\n  training.0: relu\n}\n", "E210"),
    # a shortcut's layers live in one numbered container
    ("block b() {\n  residual { relu }\n  shortcut { a.0: relu }\n}\n"
     "network n {\n  input 3 x 8 x 8\n  b\n}\n", "E202"),
    ("network n {\n  input 3 x 8 x 8\n  conv make_divisible(10, 0), 3x3\n}\n", "E301"),
])
def test_names_and_values_that_cannot_work_are_errors(text, code):
    pytest.importorskip("torch")
    import resdsl
    with pytest.raises(ResdslError) as info:
        resdsl.build(text)
    assert info.value.code == code


@pytest.mark.parametrize("kw", [{"input_shape": (3, 2 ** 40, 8)}])
def test_an_input_size_pytorch_cannot_compute_with_is_a_limit_error(kw):
    e = error("network n {\n  input 3 x 8 x 8\n  conv 4, 3x3\n}\n", **kw)
    assert e.code == "E507"
