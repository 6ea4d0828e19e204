"""Syntax errors name the common mistakes: each case is a small spec and the whole rendered
message, hint (and notes) included."""
from __future__ import annotations

import pytest

from resdsl.errors import Renderer, ResdslError
from resdsl.pipeline import check_text


def rendered(text: str) -> str:
    with pytest.raises(ResdslError) as info:
        check_text(text, "t.res")
    return Renderer(dict(info.value.sources)).render(info.value)


CASES = [
    pytest.param('block b(p) {\n  conv(p, 3x3, stride = 2)\n}\n', """\
t.res:2:9: error[E101]: unexpected ','; expected ')'
  |
2 |   conv(p, 3x3, stride = 2)
  |         ^
  hint: a layer's arguments are not in parentheses: `conv p, 3x3, stride = 2`""",
                 id="parenthesised-arguments"),
    pytest.param('block b(p) {\n  bn()\n}\n', """\
t.res:2:6: error[E101]: unexpected ')'; expected '(', '-', '[', 'false', 'not', 'true', a name, a number or a size like 3x3
  |
2 |   bn()
  |      ^
  hint: a layer without arguments takes no parentheses: `bn`""",
                 id="parenthesised-no-arguments"),
    pytest.param('netwrk n {\n  input 3 x 32 x 32\n}\n', """\
t.res:1:1: error[E101]: 'netwrk' is not a keyword
  |
1 | netwrk n {
  | ^^^^^^
  hint: did you mean 'network'?""",
                 id="misspelt-keyword-top"),
    pytest.param('block b(p) {\n  residul {\n    conv p, 3x3\n  }\n  shortcut identity\n}\n', """\
t.res:2:3: error[E101]: 'residul' is not a keyword
  |
2 |   residul {
  |   ^^^^^^^
  hint: did you mean 'residual'?""",
                 id="misspelt-keyword-block"),
    pytest.param('network n {\n  input 3 x 32 x 32\n  hed {\n    fc 10\n  }\n}\n', """\
t.res:3:3: error[E101]: 'hed' is not a keyword
  |
3 |   hed {
  |   ^^^
  hint: did you mean 'head'?""",
                 id="misspelt-keyword-network"),
    pytest.param('block b(p) {\n  if p > 1 { relu } els { bn }\n}\n', """\
t.res:2:21: error[E101]: unexpected 'els'; expected 'else' or end of line
  |
2 |   if p > 1 { relu } els { bn }
  |                     ^^^
  hint: did you mean 'else'?""",
                 id="near-keyword"),
    pytest.param('network n {\n  input 3 x 32 x 32\n  conv 16, 3x3, stride: 2\n}\n', """\
t.res:3:23: error[E102]: unexpected character ':'
  |
3 |   conv 16, 3x3, stride: 2
  |                       ^
  hint: a value is given with '=': `stride = 2` (a `name:` label goes only before a layer)""",
                 id="colon-for-equals"),
    pytest.param('width: 64\n', """\
t.res:1:6: error[E102]: unexpected character ':'
  |
1 | width: 64
  |      ^
  hint: a value is given with '=': `width = 64` (a `name:` label goes only before a layer)""",
                 id="colon-for-equals-constant"),
    pytest.param('use std.res\n', """\
t.res:1:8: error[E102]: unexpected character '.'
  |
1 | use std.res
  |        ^
  hint: a bundled library is named alone (`use std`), a file in double quotes (`use "std.res"`)""",
                 id="use-with-extension"),
    pytest.param('use std\n\nnetwork n {\n  input 3 x 32 x 32\n  stage s1 = 2 * basic(16)\n}\n', """\
t.res:5:27: error[E101]: unexpected end of line; expected '+', '-' or 'x'
  |
5 |   stage s1 = 2 * basic(16)
  |                           ^
  hint: a stage repeats its block with `x`: `stage s1 = 2 x basic(16)`""",
                 id="star-for-x"),
    pytest.param('use std\n\nnetwork n {\n  input 3 x 32 x 32\n  stage s1 = 2 x basic 16, stride = 2\n}\n', """\
t.res:5:24: error[E101]: unexpected '16'; expected '('
  |
5 |   stage s1 = 2 x basic 16, stride = 2
  |                        ^^
  hint: a stage's block takes its arguments in parentheses: `basic(16, stride = 2)`""",
                 id="stage-call-without-parentheses"),
    pytest.param('use std\nuse resnet\n\nnetwork n = resnet basic, [2, 2, 2, 2]\n', """\
t.res:4:20: error[E101]: unexpected 'basic'; expected '('
  |
4 | network n = resnet basic, [2, 2, 2, 2]
  |                    ^^^^^
  hint: a network template takes its arguments in parentheses: `resnet(basic, [2, 2, 2, 2])`""",
                 id="template-call-without-parentheses"),
    pytest.param('use std\n\nnetwork n {\n  input 3 x 32 x 32\n  stage s1 2 x basic(16)\n}\n', """\
t.res:5:12: error[E101]: unexpected '2'; expected '='
  |
5 |   stage s1 2 x basic(16)
  |            ^
  hint: is an '=' missing? `stage s1 = 2 x basic(16)`""",
                 id="missing-equals"),
    pytest.param('network n {\n  input 3 x 32 x 32\n  conv 16, 3x3,\n}\n', """\
t.res:4:1: error[E101]: unexpected '}'; expected '(', '-', '[', 'false', 'not', 'true', a name, a number or a size like 3x3
  |
4 | }
  | ^
  hint: the ',' that ends line 3 continues the statement on the next line: remove it""",
                 id="trailing-comma"),
    pytest.param('block b(p) {\n  if p = 1 { relu }\n}\n', """\
t.res:2:8: error[E101]: unexpected '='; expected '(', '{' or an operator
  |
2 |   if p = 1 { relu }
  |        ^
  hint: '=' gives a value: to compare, write '=='""",
                 id="equals-for-compare"),
    pytest.param('block b(p) {\n  if p > 1 {\n    relu\n  }\n  else {\n    bn\n  }\n}\n', """\
t.res:5:8: error[E101]: unexpected '{'; expected '(', '-', '=', '[', 'false', 'not', 'true', a name, a number, a size like 3x3 or end of line
  |
5 |   else {
  |        ^
  hint: `else` goes on the line of the `}` before it: `} else {`""",
                 id="else-on-its-own-line"),
    pytest.param('block b {\n  relu\n}\n', """\
t.res:1:9: error[E101]: unexpected '{'; expected '('
  |
1 | block b {
  |         ^
  hint: a block lists its parameters in parentheses, even none: `block b() {`""",
                 id="block-without-parameters"),
    pytest.param('block b(p)\n{\n  relu\n}\n', """\
t.res:1:11: error[E101]: unexpected end of line; expected '{'
  |
1 | block b(p)
  |           ^
  hint: the body's '{' goes here, on this line: `block b(p) {`""",
                 id="brace-on-next-line"),
    pytest.param('block b(p) {\n  if p > 1 relu\n}\n', """\
t.res:2:12: error[E101]: unexpected 'relu'; expected '{' or an operator
  |
2 |   if p > 1 relu
  |            ^^^^
  hint: the body's '{' goes here, on this line: `if p > 1 {`""",
                 id="if-without-braces"),
    pytest.param('block b(p) {\n  relu\n}\n}\n', """\
t.res:4:1: error[E101]: unexpected '}'; expected 'block', 'network', 'use', a name or end of file
  |
4 | }
  | ^
  hint: no '{' is open here: is this '}' one too many?""",
                 id="extra-brace"),
    pytest.param('block b(p) {\n  residual {\n    conv p, 3x3\n  shortcut identity\n}\n', """\
t.res:5:2: error[E103]: unexpected end of file; expected 'if', 'merge', 'residual', 'shortcut', '}', a label or a name
  |
5 | }
  |  ^
t.res:5:1: note: this '}' closes the '{' of line 2, which is indented differently
  |
5 | }
  | ^""",
                 id="unclosed-brace"),
    pytest.param('block b(p) {\n  relu\n  }\n  bn\n}\n', """\
t.res:4:5: error[E101]: unexpected end of line; expected '='
  |
4 |   bn
  |     ^
t.res:3:3: note: this '}' closes the '{' of line 1, which is indented differently
  |
3 |   }
  |   ^""",
                 id="early-brace"),
    pytest.param('block b(p) {\n  residual { relu }\n  shortcut identity\n  merge\n}\n', """\
t.res:4:8: error[E101]: unexpected end of line; expected a name
  |
4 |   merge
  |        ^
  hint: e.g. `merge add`""",
                 id="keyword-alone"),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_syntax_error_hint(text, expected):
    assert rendered(text) == expected


def test_a_name_far_from_any_keyword_is_not_called_one():
    # `stride` is nearest `stem`, but not near enough: the '=' it lacks is the likelier fix
    text = rendered("stride 2\n")
    assert text.startswith("t.res:1:8: error[E101]: unexpected '2'; expected '='\n")
    assert text.endswith("  hint: is an '=' missing? `stride = 2`")


def test_keywords_are_suggested_only_where_they_can_begin_a_statement():
    # `input` begins a statement of a network, not of the top level
    assert "did you mean" not in rendered("inputs 3 x 32 x 32\n")


def test_hints_quote_the_source_printably_and_briefly():
    text = rendered("block b(p) {\n  conv(p, \x1b[31m" + "7" * 100 + ", 3x3)\n}\n")
    hint = text.splitlines()[-1]
    assert "\x1b" not in hint and hint.endswith("…`") and len(hint) < 120


def test_a_huge_line_gets_no_quoting_hint():
    text = rendered("block b(p) {\n  conv(p, " + "1 + " * 100_000 + "1, 3x3)\n}\n")
    assert "hint:" not in text


def test_a_misspelt_stage_keyword_is_one_error_at_the_word():
    """`stge s1 = 2 x basic(16)` parses (a layer `stge` with arguments): check names the
    keyword, at the word, and does not also complain about what follows it."""
    from resdsl.errors import ErrorGroup
    text = "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  stge s1 = 2 x basic(16)\n}\n"
    with pytest.raises((ResdslError, ErrorGroup)) as info:
        check_text(text, "t.res")
    errors = getattr(info.value, "errors", [info.value])
    assert len(errors) == 1
    assert Renderer({"t.res": text}).render(errors[0]) == """\
t.res:5:3: error[E201]: unknown block 'stge'
  |
5 |   stge s1 = 2 x basic(16)
  |   ^^^^
  hint: did you mean 'stage', the keyword? (`stage NAME = N x BLOCK(ARGS)`)"""
