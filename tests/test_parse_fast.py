"""The parser's fast path (`parse._Fast`: one regular expression, Lark's LALR table, no parse
tree) gives exactly what Lark's own parse and `ToAst` give: the same nodes with the same spans,
the same comment tokens, and, for text it hands back, the same errors. Compared on the bundled
specs, on texts made to probe the lexer and the post-lexer, and on random and damaged ones."""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resdsl import parse as P
from resdsl.errors import ResdslError, Span

sys.path.insert(0, os.path.dirname(__file__))
import strategies as S  # noqa: E402  (tests/ is not a package)

SPECS = sorted((Path(__file__).resolve().parent.parent / "specs").glob("*.res"))


def whole(x):
    """A node as nested tuples, spans included (equality leaves them out)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, (type, Span)):
        return (type(x).__name__,) + tuple((f.name, whole(getattr(x, f.name)))
                                          for f in dataclasses.fields(x))
    if isinstance(x, (tuple, list)):
        return tuple(whole(y) for y in x)
    return x


def outcome(parse, text: str):
    try:
        module, comments = parse(text, "t.res")
    except ResdslError as e:
        return ("error", type(e), e.code, str(e), e.hint, e.span)
    return ("ok", whole(module), [(t.type, str(t), t.start_pos, t.line, t.column, t.end_line,
                                   t.end_column, t.end_pos) for t in comments])


def lark_only(text: str, file: str):
    """What the parser gives without its fast path."""
    parser = P._parser()
    fast, parser.fast = parser.fast, None
    try:
        return P.parse_with_comments(text, file)
    finally:
        parser.fast = fast


def fast_only(text: str, file: str):
    with P._parser().lock:
        return P._parser().fast.parse(text, file)


def same(text: str) -> bool:
    """Both paths agree; returns whether the fast one took the text itself."""
    expected = outcome(lark_only, text)
    assert outcome(P.parse_with_comments, text) == expected
    try:
        result = fast_only(text, "t.res")
    except (P._Bail, ResdslError):
        return False
    assert outcome(lambda text, file: result, text) == expected
    return True


def test_the_fast_path_is_on():
    assert P._parser().fast is not None


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_bundled_specs_take_the_fast_path_and_agree(path):
    assert same(path.read_text(encoding="utf-8"))


TAKEN = [
    "", "\n\n", "   ", "# only a comment", "a = 1", "a = 1\n", "a = 1   ", "a = 1 # c\n",
    "a = 1;b = 2;;\n", "a = (1 + 2) * 3", "a = ((1))", "a = [1, 2,]", "a = []", "a = [ ]",
    "a = f()", "a = max(1, 2)", "a = -x[0][1]", "a = not a or b and c", "a = 3 x 8 x 8",
    "a = 3x3", "a = 1 < 2", "a = 2 // 3 % 4 / 5", "a = 1.5e3", "a = 1e3", "a = 2.",
    "a = 1 +\\\n 2", "a = [1,\n 2]", "a = (1\n + 2)", "use std", 'use "other.res"',
    "network n(block, n = 2) { input 3 x 8 x 8\n conv 8, 3x3 }",   # keywords as names
    "block b(head, stem, x, use) { conv head, 3x3 }", "block b() { use }", "stage = 1",
    "block b() {\n  c1.0: conv 8, 3x3, stride = 2  # c\n  bn\n}",
    "block b() { residual { conv 8, 3x3 }\n shortcut identity\n merge add }",
    "block b() { sc: shortcut { conv 8, 1x1 }\n merge add }",
    "block b(p) { if p > 1 { relu } else if p { bn } else { conv p, 3x3 } }",
    ("network n { input 3 x 8 x 8\n stem { conv 8, 3x3 }\n stage s = 2 x b(8)\n"
     "  head { fc: fc 10 } }"),
    "network r = resnet(bottleneck, [3, 4, 6, 3])",
    "a = 1\r\nb = 2\r\n", "\tlet_ = 1\f", "a = 1\n\n\n  \nb = 2", "a = 1 # \x00 é",
]


@pytest.mark.parametrize("text", TAKEN, ids=range(len(TAKEN)))
def test_texts_the_fast_path_takes(text):
    assert same(text)


HANDED_BACK = [
    "a = ", "a = 1 2", "a = (1", "a = 1)", "}", "a = 1:", "a: conv", "conv 3 x3",
    "a = 1" + "0" * 40, "a = 1.5e999", "a = " + "(" * 70 + "1" + ")" * 70,
    "a = " + "-" * 250 + "1", "a = " + " + ".join(["1"] * 250),
    "network n { input 3 x 8 x 8 }\n$", "a = 'x'", "a = \"x\"",
]


@pytest.mark.parametrize("text", HANDED_BACK, ids=range(len(HANDED_BACK)))
def test_texts_handed_back_give_lark_s_errors(text):
    assert not same(text)


_WORDS = ["a", "b1", "_x", "x", "use", "block", "network", "residual", "shortcut", "merge",
          "input", "stage", "stem", "head", "if", "else", "and", "or", "not", "true", "false",
          "0", "12", "3x3", "1x2x3", "1.5", "2e3", "\"p.res\"", "l1:", "c.0:", "(", ")", "[",
          "]", "{", "}", ",", "=", "+", "-", "*", "/", "//", "%", "==", "<=", ">", ";", "\n",
          "\n\n", "# c\n", "\\\n", "conv", "relu", "fc"]


@settings(max_examples=max(1, 4 * settings.default.max_examples), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_WORDS), st.sampled_from(["", " ", "  ", "\t"])),
                max_size=40))
def test_random_token_soup(words):
    same("".join(w + gap for w, gap in words))


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.specs())
def test_random_specs(spec):
    assert same(spec.text)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(S.mutated_texts())
def test_damaged_specs(text):
    same(text)


def test_the_fast_path_of_a_freshly_built_lark_equals_a_cached_ones(monkeypatch):
    """A Lark built from the grammar (no LALR cache yet: a fresh machine) names its rules with
    Tokens, a cached one with str; the fast path crashed on the former (seen in this session:
    `too many values to unpack` at the first `resdsl check` with an empty cache)."""
    monkeypatch.setattr(P, "_cache_file", lambda: False)
    fresh = P._Parser()
    assert fresh.fast is not None
    text = (Path(__file__).resolve().parent.parent / "specs" / "std.res").read_text()
    got = fresh.fast.parse(text, "std.res")
    want = P._parser().parse(text, "std.res")
    assert got[0] == want[0]


def test_the_node_makers_make_what_the_classes_make():
    """parse.N's constructors set slots directly: equal objects, with their spans, that
    pickle; and every node class has one (a class they cannot make is itself)."""
    import pickle

    from resdsl import nodes as n
    span = Span("f.res", 1, 2, 3, 4)
    classes = [c for c in vars(n).values() if isinstance(c, type) and dataclasses.is_dataclass(c)]
    assert len(classes) > 20 and all(getattr(P.N, c.__name__) is not c for c in classes)
    for cls in classes:
        values = [f"v{i}" for i in range(len(dataclasses.fields(cls)) - 1)] + [span]
        if cls is Span:
            values = ["f.res", 1, 2, 3, 4]
        made = getattr(P.N, cls.__name__)(*values)
        assert type(made) is cls and made == cls(*values)
        assert [getattr(made, f.name) for f in dataclasses.fields(cls)] == values
        assert pickle.loads(pickle.dumps(made)) == made
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, dataclasses.fields(cls)[0].name, None)


@pytest.mark.parametrize("chunk", [1, 2, 7, 64])
@settings(max_examples=max(1, settings.default.max_examples // 2), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.lists(st.tuples(st.sampled_from(_WORDS), st.sampled_from(["", " ", "\t", "\n", ";"])),
             max_size=40).map(lambda ws: "".join(w + gap for w, gap in ws)),
    S.specs().map(lambda spec: spec.text)))
def test_the_lexer_s_chunks_change_no_token(monkeypatch, chunk, text):
    """The fast lexer runs findall a chunk of lines at a time (parse.CHUNK_CHARS, 64 KB);
    with chunks of a few characters every newline it may cut at is one, and the parse still
    equals Lark's."""
    monkeypatch.setattr(P, "CHUNK_CHARS", chunk)
    same(text)


def test_a_spec_of_many_chunks_parses_as_lark_parses_it():
    lines = ["x{i} = {i} * 3 + [1, 2][{j}]  # c", "", "  ", "y{i} = 1;z{i} = 2", "\tw{i} = \\",
             "  3x3", "network n{i} {{", "  input 3 x 8 x 8", "  l{i}.0 : conv 4, 3x3; bn",
             "", "}}"]
    text = "\n".join(line.format(i=i, j=i % 2) for i in range(3000) for line in lines) + "\n"
    assert len(text) > 4 * P.CHUNK_CHARS
    assert same(text)
