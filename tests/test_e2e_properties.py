"""End-to-end properties over random networks (tests/strategies.py): spec -> IR -> PyTorch,
Python file, fmt and DOT all agree.

For every generated spec (every block kind and unit ordering, every shortcut kind, groups and
widths, strides, dilation, input sizes; plain, pre-activation, original and mixed nets):

(a) the IR's inferred shape of every node is the real tensor shape in the built module
    (forward hooks on every leaf module named like an IR node);
(b) the IR's parameter (and buffer) count is the module's `sum(p.numel())`;
(c) the emitted Python file, written to disk and imported, and `resdsl.build` give modules
    with identical state_dict keys and, with the same weights, identical outputs;
(d) `fmt` is stable (formatting its output changes nothing) and re-parses to the same AST,
    which compiles to the same IR;
(f) the drawing backend produces DOT at every level.

(Item (e) of issue 7, fused against unfused modules, lives with the fusion pass's tests.)

Example counts scale with the hypothesis profile (tests/conftest.py): the default and `ci`
profiles run this file in well under a minute on one core; `--hypothesis-profile=long` runs
ten times as many.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from resdsl import ir
from resdsl.backends import draw
from resdsl.fmt import format_text
from resdsl.graph import totals
from resdsl.parse import parse
from resdsl.pipeline import check_text

sys.path.insert(0, os.path.dirname(__file__))
import strategies as S  # noqa: E402  (tests/ is not a package)

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import resdsl  # noqa: E402

# layers the PyTorch backend always makes a module of, under the IR node's own name (a bn
# may absorb its relu and the residual add: its module then outputs the sum, of the same
# shape; the passes may fold more, so only these are required to stay modules)
MODULE_OPS = {"conv", "fc", "maxpool", "avgpool"}


def _settings(n: int) -> settings:
    """n examples under hypothesis's default profile (100), scaled by the loaded profile."""
    return settings(max_examples=max(1, n * settings.default.max_examples // 100),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


def _ir(spec: S.NetSpec, input_shape=None):
    note(spec.text)
    return check_text(spec.text, input_shape=input_shape).graphs[spec.network]


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {k: m for k, m in model.named_modules()
            if k and not list(m.children()) and not isinstance(m, nn.Identity)}


def _hooked_shapes(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, tuple], torch.Tensor]:
    """Every leaf module's output shape (without the batch) in one forward pass."""
    seen: dict[str, tuple] = {}
    handles = [m.register_forward_hook(
        lambda mod, args, out, name=name: seen.__setitem__(name, tuple(out.shape[1:])))
        for name, m in _leaves(model).items()]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in handles:
            h.remove()
    return seen, y


def _import_file(source: str, folder: str, stem: str):
    path = Path(folder) / f"{stem}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- (a) (b) (c): the spec's IR, the built module and the emitted file ----------------------

def _check_module(spec: S.NetSpec, input_shape, standalone: bool) -> None:
    g = _ir(spec, input_shape)
    model = resdsl.build(spec.text, spec.network, input_shape=input_shape).eval()
    x = torch.randn(2, *g.graph["input"])

    # (a) every leaf module named like an IR node outputs the node's inferred shape, and every
    # layer that always becomes a module did become one
    seen, y = _hooked_shapes(model, x)
    shapes = {v: d["shape"] for v, d in g.nodes(data=True)}
    assert {v for v in seen if v in shapes} >= {
        v for v, d in g.nodes(data=True) if d["op"] in MODULE_OPS}
    for name, shape in seen.items():
        if name in shapes:
            assert shape == shapes[name], name
    assert tuple(y.shape[1:]) == shapes["output"]

    # (b) parameters and buffers
    t = totals(g)
    assert sum(p.numel() for p in model.parameters()) == t["params"]
    assert sum(b.numel() for b in model.buffers()) == t["buffers"]
    assert t["params"] == spec.expect(input_shape).params  # and the independent model agrees

    # (c) the file `resdsl compile -o` writes, imported, against resdsl.build
    source, cls, _ = resdsl.emit_python(spec.text, spec.network, input_shape=input_shape,
                                        standalone=standalone)
    with tempfile.TemporaryDirectory(prefix="resdsl-e2e-") as d:
        module = _import_file(source, d, f"gen_{spec.network}")
        other = getattr(module, cls)().eval()
    assert list(other.state_dict()) == list(model.state_dict())
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(other(x), y)


@_settings(20)
@given(S.nets(max_stages=3, max_blocks=2), st.booleans())
def test_module_file_and_ir_agree(spec, standalone):
    _check_module(spec, None, standalone)


@_settings(8)
@given(S.nets(max_stages=2, max_blocks=2, head=False), S.input_shapes(min_size=8, max_size=48))
def test_module_file_and_ir_agree_at_other_input_sizes(spec, shape):
    shape = (spec.input[0],) + shape[1:]   # the channels are the network's
    if spec.error(shape) is None:
        _check_module(spec, shape, False)


@pytest.mark.parametrize("family", S.FAMILIES)
def test_each_family(family):
    @_settings(3)
    @given(S.nets(family, max_stages=2, max_blocks=2))
    def run(spec):
        _check_module(spec, None, False)
    run()


# ---- (d) fmt, (f) draw ---------------------------------------------------------------------

@_settings(60)
@given(S.nets())
def test_fmt_is_stable_and_keeps_the_network(spec):
    text = spec.text
    out = format_text(text)
    note(out)
    assert format_text(out) == out
    assert parse(out) == parse(text)
    assert ir.to_text(check_text(out).graphs[spec.network]) == ir.to_text(_ir(spec))


HAVE_DOT = shutil.which("dot") is not None


@_settings(40)
@given(S.nets(), st.sampled_from(["stage", "block", "layer"]), st.booleans())
def test_draw_produces_dot(spec, level, expand):
    g = _ir(spec)
    src = draw.to_dot(g, level, expand=expand).source
    assert src.startswith("digraph") and src.rstrip().endswith("}")
    assert draw.to_dot(g, level, expand=expand).source == src   # deterministic
    if level == "layer" and expand:    # every layer of the IR is drawn
        for v, d in g.nodes(data=True):
            if d["op"] == "conv":
                assert v.rsplit(".", 1)[-1] in src
    if HAVE_DOT and level == "block":  # Graphviz accepts it
        proc = subprocess.run(["dot", "-Tcanon"], input=src, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
