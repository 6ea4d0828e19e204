"""End-to-end properties over random networks (tests/strategies.py): spec -> IR -> PyTorch,
Python file, fmt and DOT all agree.

For every generated spec (every block kind and unit ordering, every shortcut kind, groups and
widths, strides, dilation, input sizes; plain, pre-activation, original and mixed nets):

(a) the IR's inferred shape of every node is the real tensor shape in the built module
    (`resdsl.testing.assert_shapes`, as users check their own specs: forward hooks on the
    module of every lowered op, its inputs and its output), also at other input sizes, which
    `resdsl.testing.input_sizes` draws from those the network accepts;
(b) the IR's parameter (and buffer) count is the module's `sum(p.numel())` (assert_shapes
    too), and the independent model's;
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
from hypothesis import HealthCheck, assume, given, note, settings
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

import resdsl  # noqa: E402
from resdsl.testing import assert_shapes, input_sizes  # noqa: E402


def _settings(n: int) -> settings:
    """n examples under hypothesis's default profile (100), scaled by the loaded profile."""
    return settings(max_examples=max(1, n * settings.default.max_examples // 100),
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


def _ir(spec: S.NetSpec, input_shape=None):
    note(spec.text)
    return check_text(spec.text, input_shape=input_shape).graphs[spec.network]


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

    # (a) every lowered op's module has the inferred input and output shapes, (b) the
    # module's parameters and buffers are the summary's, and the independent model's
    y = assert_shapes(model, x)
    t = totals(g)
    assert totals(model.resdsl_graph)["params"] == t["params"]
    assert t["params"] == spec.expect(input_shape).params

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
@given(S.nets(max_stages=2, max_blocks=2, head=False), st.data())
def test_module_file_and_ir_agree_at_other_input_sizes(spec, data):
    # a size the network accepts (resdsl.testing: the static analysis), which the independent
    # model must accept too
    shape = data.draw(input_sizes(spec.text, spec.network, sizes=(8, 48)), label="input")[1:]
    assert spec.error(shape) is None
    _check_module(spec, shape, False)


@_settings(10)
@given(S.nets(max_stages=2, max_blocks=2), st.data())
def test_one_module_at_every_accepted_size(spec, data):
    # the module built for the spec's own input runs at any size the network accepts (where
    # its parameters stay the same: not where a flatten feeds an fc), and every layer's
    # real shape is the one inferred for that size
    model = resdsl.build(spec.text, spec.network).eval()
    shape = data.draw(input_sizes(spec.text, spec.network, sizes=(1, 40), batch=(1, 3)),
                      label="input")
    assert spec.error(shape[1:]) is None
    assume(spec.expect(shape[1:]).params == spec.expected_params)
    y = assert_shapes(model, torch.randn(*shape))
    assert tuple(y.shape[1:]) == spec.expect(shape[1:]).output_shape


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
