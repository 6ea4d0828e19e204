"""Property tests of shape and cost inference against an independent model (tests/strategies.py).

Random valid specs must compile to exactly the graph the model predicts: every node's name and
shape in order, parameters, buffers, multiply-accumulates; the IR must verify and survive a JSON
round trip. Deliberately broken specs must fail with the right code at the right line, and
randomly damaged texts must fail only with ResdslError.

Example counts scale with the active hypothesis profile (`max_examples / 100`), so the default
profile runs in well under a minute and a CI profile with more examples runs proportionally more.
"""
from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from resdsl import ir
from resdsl.errors import ResdslError
from resdsl.graph import totals
from resdsl.pipeline import check_text

sys.path.insert(0, os.path.dirname(__file__))
import strategies as S  # noqa: E402  (tests/ is not a package)


def _examples(n: int) -> int:
    """n examples under hypothesis's default profile, scaled by the loaded profile."""
    return max(1, n * settings.default.max_examples // 100)


def _settings(n: int) -> settings:
    suppress = set(settings.default.suppress_health_check) | {HealthCheck.too_slow,
                                                              HealthCheck.filter_too_much}
    return settings(max_examples=_examples(n), deadline=None,
                    suppress_health_check=sorted(suppress, key=lambda h: h.value))


def _graph(spec: S.NetSpec, input_shape=None):
    note(spec.text)
    return check_text(spec.text, input_shape=input_shape).graphs[spec.network]


# ---- valid specs ---------------------------------------------------------------------------

@_settings(200)
@given(S.specs())
def test_inferred_graph_matches_model(spec):
    g = _graph(spec)
    exp = spec.expected
    got = {v: d["shape"] for v, d in g.nodes(data=True)}
    assert list(got) == list(exp.shapes)                     # names, in the IR's order
    assert got == exp.shapes                                 # every node's shape
    assert {v: d["op"] for v, d in g.nodes(data=True)} == exp.ops
    t = totals(g)
    assert t["params"] == spec.expected_params
    assert t["buffers"] == spec.expected_buffers
    assert t["macs"] == spec.expected_macs
    assert g.nodes["output"]["shape"] == spec.expected_output_shape
    assert g.graph["input"] == spec.input


@_settings(100)
@given(S.specs(std=False))
def test_ir_verifies_and_round_trips(spec):
    g = _graph(spec)
    ir.verify(g)
    text = ir.to_json(g)
    back = ir.from_json(text)
    assert ir.same_graph(back, g)
    ir.verify(back)
    assert ir.to_json(back) == text
    assert ir.to_text(back) == ir.to_text(g)
    # the text form has one line per node, in order, each naming its shape
    lines = ir.to_text(g).splitlines()[1:]
    assert [ln.split(" = ", 1)[0] for ln in lines] == list(g.nodes)
    for ln, (v, d) in zip(lines, g.nodes(data=True)):
        assert f" : {ir.shape_str(d['shape'])}" in ln


@_settings(100)
@given(S.specs(std=False))
def test_draft_and_networkx_graph_agree(spec):
    """`check` shapes a Draft; every later stage the networkx.DiGraph made from it: the same
    nodes, edges, attributes and orders."""
    checked = check_text(spec.text)
    d, g = checked.drafts[spec.network], checked.graphs[spec.network]
    assert list(g.nodes(data=True)) == list(d.nodes(data=True))
    assert {(u, v): a for u, v, a in g.edges(data=True)} == d.edges
    for v in g:
        assert list(g.predecessors(v)) == list(d.predecessors(v))
        assert list(g.successors(v)) == [w for u, w in d.edges if u == v]
    assert g.graph == d.graph and totals(g) == totals(d)


@_settings(150)
@given(S.specs(std=False), S.input_shapes(min_size=1, max_size=40))
def test_input_override_matches_model(spec, shape):
    """`--input` reshapes the whole network: the model decides whether it still fits."""
    err = spec.error(shape)
    if err is None:
        g = _graph(spec, shape)
        exp = spec.expect(shape)
        assert {v: d["shape"] for v, d in g.nodes(data=True)} == exp.shapes
        t = totals(g)
        assert (t["params"], t["macs"]) == (exp.params, exp.macs)
        assert g.graph["input"] == shape
    else:
        with pytest.raises(ResdslError) as info:
            _graph(spec, shape)
        assert info.value.code == err.code
        if err.key is not None:
            assert info.value.span.line == spec.lines[err.key]


@_settings(60)
@given(S.specs(std=False, head=False), S.specs(std=False, head=False))
def test_params_do_not_depend_on_input_size(a, b):
    """Parameters are fixed by the channel counts alone: resizing the input (keeping the
    channels) changes MACs, never parameters, wherever both sizes fit."""
    other = (a.input[0],) + b.input[1:]
    if a.error(other) is None:
        assert totals(_graph(a, other))["params"] == a.expected_params


# ---- invalid specs -------------------------------------------------------------------------

def _check_invalid(bad: S.InvalidSpec) -> ResdslError:
    note(bad.text)
    with pytest.raises(ResdslError) as info:
        check_text(bad.text)
    e = info.value
    assert e.code == bad.code, str(e)
    assert e.span is not None and e.span.file == "<string>"
    n_lines = len(bad.text.splitlines())
    assert 1 <= e.span.line <= n_lines
    assert e.span.line == bad.line, (str(e), bad.line)
    return e


@_settings(200)
@given(S.invalid_specs())
def test_invalid_variation_reports_code_and_line(bad):
    _check_invalid(bad)


@pytest.mark.parametrize("variation", sorted(S.INVALID_VARIATIONS))
def test_each_invalid_variation(variation):
    @_settings(15)
    @given(S.invalid_specs((variation,)))
    def run(bad):
        e = _check_invalid(bad)
        assert e.code == S.INVALID_VARIATIONS[variation]
        # shape errors carry the graph built so far and the offending node
        assert getattr(e, "partial_graph", None) is not None
        assert isinstance(getattr(e, "node", None), str)
    run()


@_settings(300)
@given(S.mutated_texts())
def test_damaged_texts_fail_only_with_resdsl_errors(text):
    note(text)
    try:
        check_text(text)
    except ResdslError as e:
        assert e.code != "E000"
        for err in e.errors:
            if err.span is not None and err.span.file == "<string>":
                assert 1 <= err.span.line <= max(1, len(text.splitlines()) + 1), str(err)


@_settings(150)
@given(S.specs(std=False, max_stages=2), st.data())
def test_random_layer_insertions_fail_only_with_resdsl_errors(spec, data):
    """Any built-in layer with any small arguments, anywhere at the top level: either the
    model accepts it and resdsl agrees exactly, or both reject it with the same code."""
    pos = data.draw(st.sampled_from(S._positions(spec)))
    k = data.draw(st.tuples(st.integers(1, 9), st.integers(1, 9)))
    p = data.draw(st.tuples(st.integers(0, 5), st.integers(0, 5)))
    s = data.draw(st.tuples(st.integers(1, 4), st.integers(1, 4)))
    layer = data.draw(st.sampled_from([
        S.Conv(data.draw(st.integers(1, 24)), k, s, p, data.draw(st.integers(1, 6)),
               data.draw(st.integers(1, 3))),
        S.MaxPool(k, s, p, data.draw(st.booleans())),
        S.AvgPool(k, s, p, data.draw(st.booleans()), data.draw(st.booleans())),
        S.AvgPool(), S.Flatten(), S.BN(), S.FC(data.draw(st.integers(1, 50))),
    ]))
    new = S._insert(spec, pos, S.Loose(layer))
    note(new.text)
    err = new.error()
    if err is None:
        g = check_text(new.text).graphs[new.network]
        assert {v: d["shape"] for v, d in g.nodes(data=True)} == new.expected_shapes
        assert totals(g)["macs"] == new.expected_macs
    else:
        with pytest.raises(ResdslError) as info:
            check_text(new.text)
        assert info.value.code == err.code, str(info.value)
        assert info.value.span.line == new.lines[err.key]
