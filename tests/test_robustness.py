"""No input gets anything but a ResdslError out of the front end, and every error points
inside the text it is about: random text, random bytes, token soup in the language's own
vocabulary, and every bundled spec damaged token by token.

Example counts scale with the hypothesis profile (tests/conftest.py): under the default
profile the file runs in about half a minute on two cores."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resdsl.errors import Renderer, ResdslError, Span
from resdsl.loader import load_text
from resdsl.pipeline import Limits, check_program

SPECS = Path(__file__).resolve().parent.parent / "specs"
BUNDLED = sorted(SPECS.glob("*.res"))
SOURCES = {str(p): p.read_text(encoding="utf-8") for p in BUNDLED}
ROOT = str(SPECS / "mutated.res")  # the damaged text poses as a file beside the bundled ones

try:
    from resdsl.fmt import format_text
except ImportError:  # pragma: no cover - fmt is optional for these tests
    format_text = None


def _examples(n: int) -> int:
    """n examples under hypothesis's default profile, scaled by the loaded profile."""
    return max(1, n * settings.default.max_examples // 100)


def _settings(n: int) -> settings:
    return settings(max_examples=_examples(n), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- the property ---------------------------------------------------------------------------

def _inside(span: Span, texts: dict[str, str]) -> None:
    by_path = {os.path.realpath(k): v for k, v in texts.items()}
    assert os.path.realpath(span.file) in by_path, f"span in unknown file {span.file!r}"
    lines = by_path[os.path.realpath(span.file)].split("\n")
    assert 1 <= span.line <= len(lines), span
    assert span.col >= 1, span
    assert span.end_line >= span.line, span
    assert span.end_line > span.line or span.end_col >= span.col, span
    assert span.end_line <= len(lines), span
    assert span.col <= len(lines[span.line - 1]) + 2, span


RAW_TERMINAL = re.compile(r"\$END|\b(LPAR|RPAR|LSQB|RSQB|LBRACE|RBRACE|_NL|__ANON\w*|NAME|INT|"
                          r"FLOAT|DIMS|STRING|COMMA|EQUAL|COLON|[A-Z]{4,})\b")


def front_end(text: str, file: str = ROOT, max_layers: int = 20_000) -> None:
    """Check `text` as a file among the bundled specs; assert that it succeeds or raises a
    ResdslError whose spans (and its notes') lie inside the texts they name."""
    texts = dict(SOURCES, **{file: text})
    try:
        check_program(load_text(text, file, str(SPECS)), limits=Limits(max_layers=max_layers))
    except ResdslError as err:
        assert err.errors
        for e in err.errors:
            assert re.fullmatch(r"E\d{3}", e.code), e.code
            assert e.code != "E000"
            assert e.message
            if e.code in ("E101", "E103"):
                expected = e.message.partition("; expected ")[2]  # the user's text is before
                assert not RAW_TERMINAL.search(expected), e.message
            if e.span is not None:
                _inside(e.span, texts)
            for span, _ in e.notes:
                _inside(span, texts)
        out = Renderer(texts).render(err)
        assert "\x1b" not in out
        assert err.code in out


def formats(text: str) -> None:
    """fmt either formats the text or raises a ResdslError inside it."""
    if format_text is None:
        pytest.skip("resdsl.fmt is not there")
    try:
        out = format_text(text, "mutated.res")
    except ResdslError as err:
        for e in err.errors:
            if e.span is not None:
                _inside(e.span, {"mutated.res": text})
        return
    assert isinstance(out, str)


# ---- random text ----------------------------------------------------------------------------

@_settings(600)
@given(st.text(max_size=300))
def test_random_text(text):
    front_end(text)


@_settings(300)
@given(st.binary(max_size=300))
def test_random_bytes_decoded(data):
    front_end(data.decode("utf-8", errors="replace"))
    front_end(data.decode("latin-1"))


VOCAB = [
    "use", "block", "network", "residual", "shortcut", "merge", "input", "stage", "stem",
    "head", "true", "false", "x", "std", '"std.res"', '"resnet.res"', '"nope.res"',
    "conv", "bn", "relu", "maxpool", "avgpool", "fc", "flatten", "dropout",
    "identity", "pad", "projection", "avgdown", "none", "always", "add", "zero_init",
    "basic", "bottleneck", "resnet", "cifar_resnet", "b", "p", "n", "k", "depths",
    "stride", "groups", "kernel", "padding", "bias", "out", "planes", "width",
    "0", "1", "2", "3", "7", "16", "64", "1000000000000", "3x3", "1x1", "7x7", "3x32x32",
    "0.5", "1e-5", "1e999", "9" * 31,
    "(", ")", "[", "]", "{", "}", ",", "=", ":", ";", "+", "-", "*", "/", "//", "%",
    "\n", "\n", "\n", " ", "  ", "# c\n", "\\\n", "\t",
]


@_settings(800)
@given(st.lists(st.sampled_from(VOCAB), max_size=60))
def test_token_soup(tokens):
    front_end(" ".join(tokens))


# templates that get past the parser: mostly sound values, with a few bad ones mixed in
GOOD = ["1", "2", "8", "3x3", "1x1", "k", "k * 2", "k // 2", "[1, 2][1]", "(k)", "k x k"]
BAD = ["0", "-1", "k / 3", "k // 0", "[1, 2][k]", "true", "0.5", "[1] * k", "1e308 * 1e308",
       "4611686018427387904 * 2", "[]", "[k, k][5]", "blk", "n", "2 ** 3"]
EXPRS = st.one_of(st.sampled_from(GOOD), st.sampled_from(GOOD), st.sampled_from(GOOD),
                  st.sampled_from(BAD))
PLAIN = st.sampled_from([
    "conv {e}, 3x3", "conv 8, {e}", "conv 8, 3x3, stride = {e}", "conv 8, 3x3, groups = {e}",
    "bn(zero_init)", "bn eps = {e}", "relu", "maxpool {e}, stride = 2", "avgpool", "fc {e}",
    "dropout {e}", "flatten", "w = {e}", "maxpool 3x3, padding = {e}", "relu", "bn",
    "conv 8, 3x3", "inner {e}", "a: relu", "conv1: conv 8, 1x1",
])
MISPLACED = st.sampled_from(["residual {{ relu }}", "shortcut identity", "merge add", "blk",
                             "stem {{ relu }}"])


@st.composite
def small_specs(draw):
    """A block, a block using it, a network: mostly sound, now and then with one statement
    where it may not go."""
    def stmts(k):
        return [draw(PLAIN).format(e=draw(EXPRS)) for _ in range(k)]
    bodies = {where: stmts(draw(st.integers(0, 2))) for where in
              ("inner", "pre", "residual", "custom", "stem", "loose", "head")}
    if draw(st.booleans()):
        where = draw(st.sampled_from(sorted(bodies)))
        rows = bodies[where]
        rows.insert(draw(st.integers(0, len(rows))), draw(MISPLACED).format())

    def rows(where, sep="\n    "):
        return sep.join(bodies[where])
    shortcut = draw(st.sampled_from(["identity", "projection", "projection(always)", "pad",
                                     "avgdown", "none", "bogus", "custom", "custom"]))
    if shortcut == "custom":
        shortcut = "{ " + rows("custom", "; ") + " }"
    count = draw(st.sampled_from(["1", "2", "3", "0", "k", "1000000000000", "n"]))
    k = draw(st.sampled_from(["4", "8", "16", "2 * 4", "0", "-4", "k", "true"]))
    return (draw(st.sampled_from(["", "use std\n"]))
            + f"block inner(k = 4) {{\n  {rows('inner')}\n}}\n"
            + f"block blk(k = 4, stride = 1) {{\n  {rows('pre')}\n"
            + f"  residual {{\n    {rows('residual')}\n  }}\n  shortcut {shortcut}\n}}\n"
            + f"network n(k = {k}) {{\n  input 3 x {draw(st.integers(0, 40))} x 16\n"
            + f"  stem {{\n    {rows('stem')}\n  }}\n"
            + f"  stage s = {count} x blk(8, stride = 2)\n  {rows('loose')}\n"
            + f"  head {{\n    {rows('head')}\n  }}\n}}\n")


@_settings(600)
@given(small_specs())
def test_small_specs(text):
    front_end(text)


# ---- damaged bundled specs -------------------------------------------------------------------

TOKEN = re.compile(r'\s+|#[^\n]*|"[^"\n]*"|[A-Za-z_]\w*|\d+(?:x\d+)*|//|.', re.S)


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text)


@st.composite
def mutated(draw, text: str):
    tokens = tokenize(text)
    assert "".join(tokens) == text
    for _ in range(draw(st.integers(1, 4))):
        if not tokens:
            break
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "move", "replace"]))
        if op == "delete":
            del tokens[i]
        elif op == "duplicate":
            tokens.insert(i, tokens[i])
        elif op == "swap":
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "move":
            tok = tokens.pop(i)
            tokens.insert(draw(st.integers(0, len(tokens))), tok)
        else:
            tokens[i] = draw(st.sampled_from(VOCAB))
    return "".join(tokens)


@pytest.mark.parametrize("spec", BUNDLED, ids=[p.name for p in BUNDLED])
def test_mutated_bundled_specs(spec):
    @_settings(80)
    @given(mutated(SOURCES[str(spec)]))
    def check(text):
        front_end(text)

    check()


@pytest.mark.parametrize("spec", BUNDLED, ids=[p.name for p in BUNDLED])
def test_mutated_bundled_specs_through_fmt(spec):
    if format_text is None:
        pytest.skip("resdsl.fmt is not there")

    @_settings(100)
    @given(mutated(SOURCES[str(spec)]))
    def check(text):
        formats(text)

    check()


@_settings(300)
@given(st.text(max_size=200))
def test_random_text_through_fmt(text):
    formats(text)


# ---- regressions found by the tests above -----------------------------------------------------

@pytest.mark.parametrize("text", [
    "network n {\n  input 3x8x8\n}\n",                        # a network without ( )
    'use "' + "a" * 5000 + '"\n',                              # file name too long
    "block e() {}\nnetwork n { input 3x8x8; stage s = 1000000000000 x e() }",
    "x0 = 1\n" + "".join(f"x{i} = x{i - 1}\n" for i in range(1, 600)),
    "x = 1 +",
    "x = (1",
    "block b() { residual { relu }; shortcut { residual { relu } } }\n"
    "network n { input 3x8x8; b }",
    "network n { input 3x8x8; stem { merge add } }",
])
def test_regressions(text):
    front_end(text)
