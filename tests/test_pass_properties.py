"""Properties of the passes over random networks (tests/strategies.py), issue 7 item 1 (e):

- fused and unfused builds of the same spec have one state_dict and agree, in train mode
  (outputs, running statistics, num_batches_tracked, every gradient) and in eval mode, with
  PyTorch ops as the fused BNs' kernels (the Triton kernels are held to the same references
  in tests/test_bn_act.py);
- `resdsl.optimize` (BN folding, channels_last) computes what the eval model computes, and
  the IR's parameter count is the folded module's.
"""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, given, note, settings

from resdsl.graph import totals

sys.path.insert(0, os.path.dirname(__file__))
import strategies as S  # noqa: E402  (tests/ is not a package)
from helpers import randomise_bn  # noqa: E402

torch = pytest.importorskip("torch")

import resdsl  # noqa: E402


def _settings(n: int) -> settings:
    """n examples under hypothesis's default profile (100), scaled by the loaded profile."""
    return settings(max_examples=max(1, n * settings.default.max_examples // 100),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


def _pair(spec: S.NetSpec):
    note(spec.text)
    torch.manual_seed(0)
    fused = resdsl.build(spec.text, spec.network, kernels="torch")
    plain = resdsl.build(spec.text, spec.network, fuse=False)
    assert {k: v.shape for k, v in fused.state_dict().items()} == \
        {k: v.shape for k, v in plain.state_dict().items()}
    randomise_bn(plain)
    fused.load_state_dict(plain.state_dict(), strict=True)
    return fused, plain


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@_settings(15)
@given(S.nets(max_stages=2, max_blocks=2))
def test_fused_and_unfused_agree_in_training(spec):
    fused, plain = _pair(spec)
    x = torch.randn(3, *spec.input)
    ys = []
    for model in (fused, plain):
        model.train()
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(1)  # the same dropout masks
        y = model(xi)
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        ys.append((y.detach(), xi.grad))
    _close(*[y for y, _ in ys])
    _close(*[g for _, g in ys])
    grads = [{k: p.grad for k, p in m.named_parameters()} for m in (fused, plain)]
    for k in grads[1]:
        _close(grads[0][k], grads[1][k])
    states = [m.state_dict() for m in (fused, plain)]
    for k in states[1]:
        _close(states[0][k].double(), states[1][k].double())


@_settings(15)
@given(S.nets(max_stages=2, max_blocks=2))
def test_fused_and_unfused_agree_in_eval(spec):
    fused, plain = _pair(spec)
    x = torch.randn(2, *spec.input)
    with torch.no_grad():
        _close(fused.eval()(x), plain.eval()(x))


@_settings(15)
@given(S.nets(max_stages=2, max_blocks=2))
def test_folding_keeps_the_eval_model(spec):
    note(spec.text)
    torch.manual_seed(0)
    model = resdsl.build(spec.text, spec.network)
    randomise_bn(model)
    model.eval()
    fast = resdsl.optimize(model)
    assert totals(fast.resdsl_graph)["params"] == sum(p.numel() for p in fast.parameters())
    x = torch.randn(2, *spec.input)
    with torch.no_grad():
        want, got = model(x), fast(x)
    scale = want.abs().max().clamp_min(1e-6)
    assert ((got - want).abs().max() / scale).item() <= 1e-4
