"""resdsl.testing: the hypothesis strategies and `assert_shapes` users test their specs with.

What the strategies draw is checked against the builder and against PyTorch (a refused
size must fail there too); `assert_shapes` must catch a wrong inferred shape and name it.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resdsl
from resdsl import testing as T
from resdsl.errors import ResdslError, ShapeError
from resdsl.pipeline import check_text

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parent.parent
MY_NET = ROOT / "docs" / "examples" / "my_net.res"

# a 2x2/2 max pool (floor(H/2)) against option A's subsampling (ceil(H/2)): even H only
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
  input 3 x 16 x 16
  conv 8, 3x3
  pool_down 16
  avgpool: avgpool
  fc: fc 10
}
"""
QUICK = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@QUICK
@given(T.input_sizes(POOL, sizes=(1, 40), batch=(1, 3)))
def test_input_sizes_draws_what_the_network_accepts(shape):
    b, c, h, w = shape
    assert 1 <= b <= 3 and c == 3 and h % 2 == 0 and w % 2 == 0 and h <= 40
    check_text(POOL, input_shape=(c, h, w))   # the builder accepts it


def test_a_refused_size_fails_in_pytorch_too():
    model = resdsl.build(POOL).eval()
    with torch.no_grad(), pytest.raises(RuntimeError):
        model(torch.randn(1, 3, 17, 17))


@QUICK
@given(T.input_sizes(POOL, sizes=(1, 4), batch=(1, 2), train=True))
def test_train_draws_batches_pytorch_trains_on(shape):
    # at 2x2 the pool makes 1x1 maps: a BN then sees one value per channel at batch 1
    model = resdsl.build(POOL).train()
    with torch.no_grad():
        model(torch.randn(*shape))
    assert shape[0] == 2 or shape[2] * shape[3] > 4


def test_batch_one_training_at_a_one_by_one_map_is_refused_by_pytorch():
    model = resdsl.build(POOL).train()
    with torch.no_grad(), pytest.raises(ValueError, match="more than 1 value per channel"):
        model(torch.randn(1, 3, 2, 2))


def test_input_sizes_of_a_network_that_accepts_none():
    with pytest.raises(ShapeError) as e:
        T.input_sizes(POOL, sizes=(1, 1))
    assert e.value.code == "E402"


def test_variant_line_and_text():
    v = T.Variant(MY_NET, "my_resnet", {"depths": [1, 2, 1], "width": 8, "groups": 2})
    assert v.line == "network variant = my_resnet(depths = [1, 2, 1], width = 8, groups = 2)"
    assert repr(v) == f"Variant({v.line!r})"
    g = check_text(v.text).graphs["variant"]
    assert [d["shape"] for _, d in g.nodes(data=True)] == [
        d["shape"] for _, d in v.check().nodes(data=True)]
    assert "layer2.1.conv2" in g and "layer2.2.conv2" not in g


@settings(max_examples=3, deadline=None)
@given(T.variants(MY_NET, "my_resnet", build=True,
                  depths=st.lists(st.integers(1, 2), min_size=3, max_size=3),
                  width=st.sampled_from([8, 16]), num_classes=5))
def test_variants_build(model):
    assert isinstance(model, torch.nn.Module)
    y = T.assert_shapes(model, torch.randn(2, 3, 9, 7))
    assert y.shape == (2, 5)


def test_a_variant_the_template_rejects_raises_its_error():
    v = T.Variant(MY_NET, "my_resnet", {"depths": [1, 1, 1], "width": 8, "groups": 3})
    with pytest.raises(ResdslError) as e:
        v.check()
    assert e.value.code == "E401"


def test_assert_shapes_on_a_spec_builds_for_the_input():
    y = T.assert_shapes(POOL, torch.randn(2, 3, 22, 10))
    assert y.shape == (2, 10)


def test_assert_shapes_names_a_wrong_shape():
    model = resdsl.build(POOL).eval()
    model.resdsl_graph.nodes["pool_down1.maxpool1"]["shape"] = (16, 9, 9)
    with pytest.raises(AssertionError, match=r"pool_down1\.maxpool1 \(<string>:\d+\): output "
                                             r"is 1x16x8x8 in PyTorch, 1x16x9x9 inferred"):
        T.assert_shapes(model, torch.randn(1, 3, 16, 16))


def test_assert_shapes_at_a_refused_size_is_the_located_error():
    model = resdsl.build(POOL).eval()
    with pytest.raises(ShapeError) as e:
        T.assert_shapes(model, torch.randn(1, 3, 15, 16))
    assert e.value.code == "E406" and e.value.message.startswith("at input 3x15x16:")


@pytest.mark.parametrize("x", [torch.randn(3, 16, 16), torch.randn(1, 4, 16, 16), "x"])
def test_assert_shapes_bad_input_is_E212(x):
    with pytest.raises(ResdslError) as e:
        T.assert_shapes(resdsl.build(POOL), x)
    assert e.value.code == "E212"


def test_assert_shapes_where_a_flatten_feeds_an_fc():
    # the fc's in_features are the flattened map: a model built for 8x8 cannot take 10x10
    flat = "network net {\n  input 3 x 8 x 8\n  conv 4, 3x3\n  flatten\n  fc 10\n}\n"
    model = resdsl.build(flat).eval()
    T.assert_shapes(model, torch.randn(1, 3, 8, 8))
    with pytest.raises(ResdslError, match="fc1 would get 400 in features, not 256") as e:
        T.assert_shapes(model, torch.randn(1, 3, 10, 10))
    assert e.value.code == "E212"
    T.assert_shapes(flat, torch.randn(1, 3, 10, 10))   # built for that size, it can


def test_hypothesis_missing_is_E602(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ResdslError) as e:
        T.input_sizes(POOL)
    assert e.value.code == "E602" and "resdsl[testing]" in e.value.hint
