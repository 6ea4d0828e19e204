"""`resdsl fmt`: canonical output for hand-written specs, and the three properties that must hold
for every valid input: idempotence, the same AST, and the same comments."""
from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resdsl import nodes as n
from resdsl.errors import ResdslError
from resdsl.fmt import check_formatted, format_expr, format_text, unified_diff
from resdsl.parse import KEYWORDS, parse, parse_with_comments

SPECS = Path(__file__).resolve().parent.parent / "specs"

T1 = """\
use std
# hi
block basic(planes, stride = 1) {
  residual {
    conv planes, 3x3, stride = stride
    bn; relu
    conv planes, 3 x 3
    bn(zero_init)
  }
  shortcut projection(always)
  merge add
  relu
}
network resnet(block, depths, num_classes = 1000) {
  input 3 x 224 x 224
  stem { conv 64, 7x7, stride = 2; bn; relu; maxpool 3x3, stride = 2 }
  stage layer1 = depths[0] x block(64, groups = (1+2)*3 // 2)
  head {
    avgpool
    fc: fc num_classes
  }
}
network resnet18 = resnet(basic, [2, 2, 2, 2])
"""

T1_FORMATTED = """\
use std

# hi
block basic(planes, stride = 1) {
  residual {
    conv planes, 3x3, stride = stride
    bn; relu
    conv planes, 3x3
    bn(zero_init)
  }
  shortcut projection(always)
  merge add
  relu
}

network resnet(block, depths, num_classes = 1000) {
  input 3 x 224 x 224
  stem {
    conv 64, 7x7, stride = 2
    bn
    relu
    maxpool 3x3, stride = 2
  }
  stage layer1 = depths[0] x block(64, groups = (1 + 2) * 3 // 2)
  head {
    avgpool
    fc: fc num_classes
  }
}

network resnet18 = resnet(basic, [2, 2, 2, 2])
"""


def comment_texts(text: str) -> Counter:
    """The multiset of comments in a spec, as fmt writes them (trailing space dropped)."""
    return Counter(str(tok).rstrip() for tok in parse_with_comments(text)[1])


def assert_properties(text: str) -> str:
    """Format `text` and check everything fmt promises about the result; return it."""
    out = format_text(text)
    assert format_text(out) == out, "not idempotent"
    assert parse(out) == parse(text), "AST changed"
    assert comment_texts(out) == comment_texts(text), "comments lost or duplicated"
    assert check_formatted(out)
    if out:
        assert out.endswith("\n") and not out.endswith("\n\n") and not out.startswith("\n")
    assert "\n\n\n" not in out
    assert all(line == line.rstrip() for line in out.split("\n")), "trailing whitespace"
    return out


# ---- canonical output ----------------------------------------------------------------------

def test_t1():
    assert assert_properties(T1) == T1_FORMATTED


MESSY = """\
use   std;use "other.res"
block basic( planes,stride=1 ){
  residual{ conv planes,3 x 3,stride=stride ; bn;relu
  conv planes , k x k
  bn( zero_init ) }
  shortcut projection (always)
  merge add
}
network net( block ,depths,num_classes=1000 ){ input 3 x 224 x 224;
  stem{ conv 64,7x7,stride=2;bn;relu;maxpool 3x3,stride=2 }
  stage layer1=depths [0] x block(64,groups=(1+2)*3//2)
  stage layer2=block(128 )
  head{ avgpool;fc:fc num_classes }
}
network a=net(basic,[2,2,2,2])
network long_name=net(basic,[3,4,6,3,],num_classes=10)
"""

MESSY_FORMATTED = """\
use std
use "other.res"

block basic(planes, stride = 1) {
  residual {
    conv planes, 3x3, stride = stride
    bn
    relu
    conv planes, k x k
    bn(zero_init)
  }
  shortcut projection(always)
  merge add
}

network net(block, depths, num_classes = 1000) {
  input 3 x 224 x 224
  stem {
    conv 64, 7x7, stride = 2
    bn
    relu
    maxpool 3x3, stride = 2
  }
  stage layer1 = depths[0] x block(64, groups = (1 + 2) * 3 // 2)
  stage layer2 = block(128)
  head {
    avgpool
    fc: fc num_classes
  }
}

network a         = net(basic, [2, 2, 2, 2])
network long_name = net(basic, [3, 4, 6, 3], num_classes = 10)
"""


def test_messy_spacing_semicolons_and_one_line_groups():
    assert assert_properties(MESSY) == MESSY_FORMATTED


COMMENTS = """\
# top
   # top2

use std   # u
use "a.res"
block b(a, # in params
   c = 1) {   # header
  # before residual

  residual { conv a,  # mid
     3x3 ; bn  # after bn
  # end of residual


  }   # close residual
  shortcut {
  }
  merge add # m   \t
  # end of block
}
# before inst
network r1 = b(1)  # t
network resnet_long = b(2)
network q = b(3)

network zz = b(4)
# eof

     # eof2
"""

COMMENTS_FORMATTED = """\
# top
# top2

use std  # u
use "a.res"

# in params
block b(a, c = 1) {  # header
  # before residual

  residual {
    # mid
    conv a, 3x3; bn  # after bn
    # end of residual
  }  # close residual
  shortcut {
  }
  merge add  # m
  # end of block
}

# before inst
network r1          = b(1)  # t
network resnet_long = b(2)
network q           = b(3)

network zz = b(4)
# eof

# eof2
"""


def test_comments_everywhere():
    assert assert_properties(COMMENTS) == COMMENTS_FORMATTED


def test_comments_in_empty_bodies_and_only_comments():
    src = "block b() { # h\n# inside\n}\n"
    assert assert_properties(src) == "block b() {  # h\n  # inside\n}\n"
    empty = "network n {\n}\n\nnetwork m {\n}\n"
    assert assert_properties("network n() {}\nnetwork m { }") == empty
    only = "  # just a comment  \n\n\n#another"
    assert assert_properties(only) == "# just a comment\n\n#another\n"
    assert assert_properties("") == ""
    assert assert_properties("\n\n;\n") == ""


def test_blank_lines():
    src = "x = 1\n\n\ny = 2\nz = 3\nuse std\nblock a() {\n\n\n  relu\n\n\n  relu\n  relu\n\n}\n" \
          "block b() { relu }\n\n\n\nnetwork n = a()"
    assert assert_properties(src) == (
        "x = 1\n\ny = 2\nz = 3\n\nuse std\n\nblock a() {\n  relu\n\n  relu\n  relu\n}\n\n"
        "block b() {\n  relu\n}\n\nnetwork n = a()\n")


def test_blank_line_between_definitions_goes_before_their_comments():
    src = "block a() {\n}\n# about b\n\n# more\nblock b() {\n}\n"
    assert assert_properties(src) == "block a() {\n}\n\n# about b\n\n# more\nblock b() {\n}\n"


@pytest.mark.parametrize("src, expected", [
    ("(a - b) - c", "a - b - c"),
    ("a - (b - c)", "a - (b - c)"),
    ("a + (b * c)", "a + b * c"),
    ("(a + b) * c", "(a + b) * c"),
    ("a / (b * c)", "a / (b * c)"),
    ("(a // b) % c", "a // b % c"),
    ("a*b//c", "a * b // c"),
    ("-(a + b)", "-(a + b)"),
    ("(-a)[0]", "(-a)[0]"),
    ("-(a[0])", "-a[0]"),
    ("(-a) * b", "-a * b"),
    ("-(a * b)", "-(a * b)"),
    ("- - a", "--a"),
    ("a - - b", "a - -b"),
    ("(a * b)[0]", "(a * b)[0]"),
    ("[a, b] [0]", "[a, b][0]"),
    ("depths [ 0 ] [1]", "depths[0][1]"),
    ("((x))", "x"),
    ("[ 1,2 ,]", "[1, 2]"),
    ("[]", "[]"),
    ("(a x b) x c", "(a x b) x c"),
    ("a x (b + 1)", "a x b + 1"),
    ("(3 x 3) + 1", "3x3 + 1"),
    ("3 x 3 + 1", "3 x 3 + 1"),
    ("3 x (4 x 5)", "3 x 4x5"),
    ("3 x (k x 5)", "3 x (k x 5)"),
    ("(3x3)[0]", "3x3[0]"),
    ("-(3 x 3)", "-3x3"),
    ("-(k x 3)", "-(k x 3)"),
    ("[k x k, 3 x 3]", "[k x k, 3x3]"),
    ("1.50", "1.5"),
    ("1e3", "1000.0"),
    ("2.", "2.0"),
    ("1e-5", "1e-05"),
    ("007", "7"),
    ("true", "true"),
    ("false", "false"),
])
def test_expression_layout(src, expected):
    out = assert_properties(f"v = {src}\n")
    assert out == f"v = {expected}\n"


def test_flags_labels_and_shortcuts():
    src = """\
block f() {
  bn zero_init, eps = 0.001
  z: bn (zero_init)
  bn momentum = 0.2
  maxpool 3x3, stride = 2, ceil_mode
  maxpool (ceil_mode), 3x3
  conv bias
  conv (64)
  shortcut projection always
  shortcut projection(other)
  shortcut identity
  my_block(zero_init)
  stem_conv: conv 32, 3x3, stride = 2
}
"""
    assert assert_properties(src) == """\
block f() {
  bn(zero_init), eps = 0.001
  z: bn(zero_init)
  bn momentum = 0.2
  maxpool 3x3, stride = 2, ceil_mode
  maxpool(ceil_mode), 3x3
  conv(bias)
  conv 64
  shortcut projection(always)
  shortcut projection other
  shortcut identity
  my_block zero_init
  stem_conv: conv 32, 3x3, stride = 2
}
"""


def test_rows_joined_with_semicolons_stay_rows():
    src = "block b(c) {\n  residual {\n    conv c, 3x3;bn ;relu\n    conv c, 1x1\n  }\n}\n"
    out = assert_properties(src)
    assert "    conv c, 3x3; bn; relu\n    conv c, 1x1\n" in out


def test_one_line_groups_expand_to_a_statement_a_line():
    src = ("block b(c) { residual { conv c, 3x3; bn; relu }; shortcut identity; merge add }\n"
           "network n { stem { conv 8, 3x3; bn }; if true { relu; bn } else { bn; relu } }\n")
    assert assert_properties(src) == """\
block b(c) {
  residual {
    conv c, 3x3
    bn
    relu
  }
  shortcut identity
  merge add
}

network n {
  stem {
    conv 8, 3x3
    bn
  }
  if true {
    relu
    bn
  } else {
    bn
    relu
  }
}
"""
    # a row on a line of its own stays a row, also after a `{` line (`conv a,` began there)
    kept = "block b(a) {\n  residual {\n    conv a, 3x3; bn; relu\n  }\n}\n"
    assert assert_properties(kept) == kept
    assert assert_properties("block b(a) { conv a,\n 3x3; bn }") == (
        "block b(a) {\n  conv a, 3x3; bn\n}\n")


# README's squeeze-and-excitation block: two comments aligned at column 45, lines apart
SE = """\
block se(rd_ratio = 0.0625) {
  residual {
    avgpool                                 # global: C x 1 x 1
    fc1: conv make_divisible(in_channels * rd_ratio, 8, round_limit = 0.0), 1x1, bias
    act: relu
    gate: sigmoid
  }
  shortcut identity
  merge mul                                 # x * gate
}
"""


def test_aligned_trailing_comments_keep_their_column():
    assert assert_properties(SE) == SE
    messy = SE.replace("    avgpool  ", "avgpool      ").replace("  merge mul", "merge   mul")
    assert assert_properties(messy) == SE  # the column is kept, not the spaces


def test_aligned_comments_move_right_together():
    src = "".join(f"{code.ljust(22)}# {c}\n" for code, c in [
        ("block b(a) {", "zero"), ("  relu", "one"), ("  conv a,3x3,stride=2 ", "too long"),
        ("  bn", "three")]) + "}\n"
    assert assert_properties(src) == (  # 22 + 2: `conv a, 3x3, stride = 2` is 25 long
        "block b(a) {               # zero\n  relu                     # one\n"
        "  conv a, 3x3, stride = 2  # too long\n  bn                       # three\n}\n")


def test_unaligned_comments_get_two_spaces():
    src = ("use std      # lone\n\nblock b(a) {\n  relu    # x\n  bn       # y\n\n"
           "  relu  # z\n  relu  # w\n}\n")
    out = assert_properties(src)
    assert out.startswith("use std  # lone\n") and "  relu  # x\n  bn  # y\n" in out
    assert "  relu  # z\n  relu  # w\n" in out  # (a blank line splits a column)
    broken = "block b(a) {\n  relu    # x\n\n  bn      # y\n}\n"
    assert assert_properties(broken) == "block b(a) {\n  relu  # x\n\n  bn  # y\n}\n"


def test_instance_run_comments_meet_a_source_column():
    src = ("network a = r(1)            # one\nnetwork bbbb = r(22)        # two\n"
           "network c = r(3)  # three\n")
    assert assert_properties(src) == ("network a    = r(1)         # one\n"
                                      "network bbbb = r(22)        # two\n"
                                      "network c    = r(3)         # three\n")


ROW_STMTS = ["relu", "conv planes, 3x3, stride = 2", "bn(zero_init)", "fc: fc 10",
             "conv a,3x3;bn", "v = [1, 2]", "merge add"]


@st.composite
def commented_blocks(draw) -> str:
    """A block whose lines carry comments in a few columns, some blank lines between."""
    lines = []
    for i in range(draw(st.integers(1, 8))):
        line = "  " + draw(st.sampled_from(ROW_STMTS))
        col = draw(st.sampled_from([None, 0, 14, 14, 30]))
        if col is not None:
            line = line.ljust(col) + " " * draw(st.integers(0 if col > len(line) else 1, 2))
            line += f"# c{i}"
        lines.append(draw(st.sampled_from(["", "", "\n"])) + line)
    return "block b(planes, a) {\n" + "\n".join(lines) + "\n}\n"


def _comment_columns(text: str) -> dict[str, tuple[int, int]]:
    """Comment -> (line, column) in `text`."""
    return {str(t).strip(): (t.line, t.column) for t in parse_with_comments(text)[1]}


@settings(max_examples=300, deadline=None)
@given(commented_blocks())
def test_random_comment_columns(src):
    out = assert_properties(src)
    before, after = _comment_columns(src), _comment_columns(out)
    lines = out.split("\n")
    order = sorted(before, key=lambda c: before[c])
    for c, d in itertools.pairwise(order):
        (l1, c1), (l2, c2) = before[c], before[d]
        blank = any(not x.strip() for x in src.split("\n")[l1:l2 - 1])
        if c1 == c2 and not blank:  # aligned in the source: aligned after
            assert after[c][1] == after[d][1], (c, d)
    for c, (line, col) in after.items():
        code = lines[line - 1][:col - 1]
        assert code.rstrip() and len(code) - len(code.rstrip()) >= 2  # two spaces at least


def test_trailing_comments_align_in_instance_runs():
    src = "network a = r(1)  # one\nnetwork bbbb = r(22)  # two\n"
    assert assert_properties(src) == ("network a    = r(1)   # one\n"
                                      "network bbbb = r(22)  # two\n")


def test_instances_align_in_runs():
    src = ("network a = r(1)\nnetwork bbb = r(2)\n# c\nnetwork cc = r(3)\nnetwork d = r(4)\n\n"
           "network eeeee = r(5)\n")
    assert assert_properties(src) == (
        "network a   = r(1)\nnetwork bbb = r(2)\n# c\nnetwork cc = r(3)\nnetwork d  = r(4)\n\n"
        "network eeeee = r(5)\n")


def test_stage_counts():
    src = ("network n() { stage a = b(); stage c = 2 * k x b(1); stage d = (k x k) x b();"
           " stage e = 2x3 x b() }")
    assert assert_properties(src) == (
        "network n {\n  stage a = b()\n  stage c = 2 * k x b(1)\n  stage d = (k x k) x b()\n"
        "  stage e = 2x3 x b()\n}\n")


def test_bad_input_raises():
    with pytest.raises(ResdslError):
        format_text("block {")
    with pytest.raises(ResdslError):
        check_formatted("conv 3x")


def test_check_and_diff():
    assert check_formatted(T1_FORMATTED)
    assert not check_formatted(T1)
    diff = unified_diff(T1, format_text(T1), "t1.res")
    assert diff.startswith("--- t1.res\n+++ t1.res (formatted)\n")
    assert "\n-    bn; relu; maxpool 3x3, stride = 2 }\n" not in diff
    assert "\n+    conv 64, 7x7, stride = 2\n+    bn\n+    relu\n" in diff
    assert unified_diff(T1_FORMATTED, T1_FORMATTED, "t1.res") == ""
    assert unified_diff("x = 1", "x = 1\n", "f").endswith("\\ No newline at end of file\n+x = 1\n")


# ---- the bundled specs ---------------------------------------------------------------------

def spec_files() -> list[Path]:
    return sorted(SPECS.glob("*.res"))


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.name)
def test_bundled_specs_round_trip(path):
    assert_properties(path.read_text(encoding="utf-8"))


def test_bundled_specs_round_trip_at_test_time():
    """The glob again at run time, for spec files added after collection started."""
    for path in spec_files():
        assert_properties(path.read_text(encoding="utf-8"))


# ---- random expressions --------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(
    lambda s: s not in KEYWORDS or s == "x")
LEAVES = st.one_of(
    st.integers(0, 10**12).map(n.Num),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(n.Num),
    st.booleans().map(n.Bool),
    NAMES.map(n.Name),
    st.lists(st.integers(0, 999).map(n.Num), min_size=2, max_size=4).map(
        lambda xs: n.Dims(tuple(xs))),
)


def _grow(children):
    """One level of expression nodes over `children`."""
    return st.one_of(
        st.builds(n.BinOp, st.sampled_from(["+", "-", "*", "/", "//", "%"]), children, children),
        st.builds(n.Neg, children),
        st.builds(n.Index, children, children),
        st.lists(children, max_size=3).map(lambda xs: n.ListExpr(tuple(xs))),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: n.Dims(tuple(xs))),
    )


EXPRS = st.recursive(LEAVES, _grow, max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(EXPRS)
def test_random_expressions_round_trip(e):
    src = f"block b() {{\n  x = {format_expr(e)}\n}}\n"
    parsed = parse(src).items[0].body[0].value
    assert repr(parsed) == repr(e)  # repr, unlike ==, tells 1 from 1.0
    assert format_text(src) == src


# ---- random layouts ------------------------------------------------------------------------

COMMENT_TEXTS = st.sampled_from(["# a", "#b  ", "#", "# {x}; y", "## c\t"])
SEPS = st.sampled_from(["\n", ";", "; ", "\n\n", "\n \n\n", " ; \n", "C\n", "\nC\n", "\n\nC\n\n",
                        ";C\n"])
OPENS = st.sampled_from(["", "\n", "C\n", "\n\n", "\nC\n\n"])
CLOSES = st.sampled_from(["", "\n", "\nC\n", "C\n", "\n\n", ";"])
SIMPLE_STMTS = st.sampled_from([
    "relu", "bn(zero_init)", "bn zero_init", "conv planes,3x3 , stride=2", "conv a,C\n  3x3",
    "v = [1,\n 2]", "v=(a-\n b) - c", "shortcut projection (always)", "merge add", "fc: fc 10",
    "conv (\nC\na)", "shortcut pad", "conv a \\\n , 3x3",
])
NET_STMTS = st.sampled_from([
    "input 3 x 32 x 32", "stage l = 2 x b(1,C\n 2)", "stage m = b()", "relu", "w = 4",
])


def _fill(draw, text: str) -> str:
    """Replace each C placeholder with a random comment."""
    while "C" in text:
        text = text.replace("C", " " * draw(st.integers(0, 2)) + draw(COMMENT_TEXTS), 1)
    return text


@st.composite
def bodies(draw, stmts, depth: int = 0) -> str:
    """`{ ... }` with random statements, separators, comments and nested bodies."""
    parts = [draw(OPENS)]
    for i in range(draw(st.integers(0, 4))):
        if i:
            parts.append(draw(SEPS))
        if depth < 2 and stmts is SIMPLE_STMTS and draw(st.integers(0, 4)) == 0:
            parts.append(draw(st.sampled_from(["residual ", "shortcut "])) +
                         draw(bodies(stmts, depth + 1)))
        elif depth < 1 and stmts is NET_STMTS and draw(st.integers(0, 3)) == 0:
            parts.append(draw(st.sampled_from(["stem", "head"])) + draw(bodies(SIMPLE_STMTS, 2)))
        else:
            parts.append(draw(stmts))
    parts.append(draw(CLOSES))
    return _fill(draw, "{" + "".join(parts) + "}")


@st.composite
def programs(draw) -> str:
    """A whole random spec: top-level items of every kind, messily separated."""
    items = []
    for i in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            items.append(draw(st.sampled_from(["use std", 'use "a.res"', "k = 3"])))
        elif kind == 1:
            items.append(f"network n{i} = f(1,\nC\n [2])" if draw(st.booleans())
                         else f"network name{'_' * i} = f({i})")
        elif kind in (2, 3):
            items.append(f"block b{i}(a, C\nc = 1) " + draw(bodies(SIMPLE_STMTS)))
        else:
            params = draw(st.sampled_from(["(a)", "", "()", "(a = 1,)"]))
            items.append(f"network t{i}{params} " + draw(bodies(NET_STMTS)))
    seps = [draw(st.sampled_from(["\n", ";", "\n\n\n", "C\n", "\nC\n", "\nC\n\nC\n"]))
            for _ in items]
    text = draw(st.sampled_from(["", "C\n", "\n\n"])) + "".join(
        item + sep for item, sep in zip(items, seps)) + draw(st.sampled_from(["", "C", "\nC\n"]))
    return _fill(draw, text)


@settings(max_examples=500, deadline=None)
@given(programs())
def test_random_layouts_keep_ast_comments_and_are_idempotent(src):
    assert_properties(src)


def test_sizes_compact_only_for_pairs():
    """Kernel-like pairs print as one token `3x3`; shapes of three or more stay spaced."""
    assert assert_properties("v = 3 x 3") == "v = 3x3\n"
    assert assert_properties("v = 3x224x224") == "v = 3 x 224 x 224\n"
    long = " x ".join(["1"] * 16)
    assert assert_properties(f"v = {long}") == f"v = {long}\n"


def test_deep_nesting_at_the_parser_limits():
    assert_properties("v = " + "-" * 199 + "a")
    assert_properties("v = " + " + ".join(["a"] * 200))
    assert_properties("v = a" + "[0]" * 199)
    assert_properties("block b() {" + "residual {" * 62 + "relu" + "}" * 62 + "}")


def test_crlf_tabs_and_tricky_comment_text():
    src = "block b(a, # {\r\n\tc) { relu# }\r\n\r\n\r\n\tbn }  # ☃ \r\n"
    assert assert_properties(src) == "# {\nblock b(a, c) {\n  relu  # }\n\n  bn\n}  # ☃\n"
