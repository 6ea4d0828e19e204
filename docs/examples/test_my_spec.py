"""Property-based shape tests of my own spec (my_net.res, beside this file), written with
resdsl.testing as docs/testing.md describes. Copy it into your tests and change SPEC.

    pip install 'resdsl[testing]' torch
    python -m pytest test_my_spec.py

resdsl's own CI runs this file (tests/test_docs_example.py).
"""
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resdsl
from resdsl.testing import assert_shapes, input_sizes, variants

torch = pytest.importorskip("torch")

SPEC = Path(__file__).with_name("my_net.res")


def test_my_net_accepts_every_size():
    # every H, W in 1..64, statically: no torch, a fraction of a second
    report = resdsl.verify(SPEC, "my_net", sizes=(1, 64), examples=0)
    assert report.ok, str(report)
    assert report.networks["my_net"].sizes.rule == "any H, W ≥ 1"


@pytest.fixture(scope="module")
def model():
    return resdsl.build(SPEC, "my_net").eval()


@settings(max_examples=10, deadline=None)
@given(shape=input_sizes(SPEC, "my_net", sizes=(1, 64)))
def test_one_model_at_every_accepted_size(model, shape):
    # the model built for 32x32 runs at any accepted size: every layer's real shape is the
    # one resdsl infers for that size
    out = assert_shapes(model, torch.randn(*shape))
    assert out.shape == (shape[0], 10)


@settings(max_examples=5, deadline=None)
@given(shape=input_sizes(SPEC, "my_net", sizes=(1, 16), train=True))
def test_training_where_pytorch_trains(model, shape):
    # train=True draws batch >= 2 where a BN would see one value per channel at batch 1
    model.train()
    try:
        assert_shapes(model, torch.randn(*shape))
    finally:
        model.eval()


@settings(max_examples=8, deadline=None)
@given(variant=variants(SPEC, "my_resnet",
                        depths=st.lists(st.integers(1, 2), min_size=3, max_size=3),
                        width=st.sampled_from([8, 16]), groups=st.sampled_from([1, 2, 4])),
       data=st.data())
def test_every_variant_builds_and_runs(variant, data):
    # each variant of the template, at a size it accepts (built for that size, eval mode)
    shape = data.draw(input_sizes(variant, sizes=(1, 40)), label="input")
    out = assert_shapes(variant, torch.randn(*shape))
    assert out.shape == (shape[0], 10)
