"""The parser: every construct of the language gives the expected AST (compared with nodes
built by hand; spans are left out of equality), and spans point at the right text."""
from __future__ import annotations

import pytest

from resdsl import nodes as n
from resdsl.errors import ResdslError, Span
from resdsl.parse import parse, parse_with_comments


def items(text: str) -> tuple:
    return parse(text).items


def expr(text: str) -> n.Expr:
    """The expression of `v = TEXT`."""
    (let,) = items(f"v = {text}")
    assert isinstance(let, n.Let) and let.name == "v"
    return let.value


def body(text: str) -> tuple:
    """The statements of `block b() { TEXT }`."""
    (blk,) = items("block b() {\n" + text + "\n}")
    return blk.body


def num(v):
    return n.Num(v)


def name(s):
    return n.Name(s)


def pos(v) -> n.Arg:
    return n.Arg(None, v)


def kw(k, v) -> n.Arg:
    return n.Arg(k, v)


def binop(op, a, b):
    return n.BinOp(op, a, b)


# ---- top level -------------------------------------------------------------------------------

def test_empty_text_is_an_empty_module():
    m = parse("")
    assert m == n.Module("<string>", ())
    assert parse("\n\n  \n# only a comment\n").items == ()


def test_module_records_its_file():
    assert parse("x = 1", "net.res").file == "net.res"


def test_use_library_and_path():
    assert items('use std\nuse "lib/other.res"') == (
        n.Use("std", False), n.Use("lib/other.res", True))


def test_top_level_let():
    assert items("width = 64") == (n.Let("width", num(64)),)


def test_block_def_with_params_and_defaults():
    (b,) = items("block basic(planes, stride = 1, groups = 2 * 3) {\n  relu\n}")
    assert b == n.BlockDef("basic", (
        n.Param("planes"), n.Param("stride", num(1)),
        n.Param("groups", binop("*", num(2), num(3)))), (n.Layer("relu", ()),))


def test_block_params_empty_and_trailing_comma_and_multiline():
    assert items("block b() { relu }") == (n.BlockDef("b", (), (n.Layer("relu", ()),)),)
    (b,) = items("block b(\n  p,\n  q = 2,\n) {\n  relu\n}")
    assert b.params == (n.Param("p"), n.Param("q", num(2)))


def test_empty_block_body():
    assert items("block b() {}") == (n.BlockDef("b", (), ()),)
    assert items("block b() {\n}") == (n.BlockDef("b", (), ()),)


def test_block_lets():
    assert body("mid = planes * 4\nconv mid, 1x1") == (
        n.Let("mid", binop("*", name("planes"), num(4))),
        n.Layer("conv", (pos(name("mid")), pos(n.Dims((num(1), num(1)))))))


# ---- expressions -----------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["+", "-", "*", "/", "//", "%"])
def test_binary_operators(op):
    assert expr(f"a {op} 2") == binop(op, name("a"), num(2))


def test_precedence_and_associativity():
    assert expr("1 + 2 * 3") == binop("+", num(1), binop("*", num(2), num(3)))
    assert expr("(1 + 2) * 3") == binop("*", binop("+", num(1), num(2)), num(3))
    assert expr("a - b - c") == binop("-", binop("-", name("a"), name("b")), name("c"))
    assert expr("a / b // c % d") == binop(
        "%", binop("//", binop("/", name("a"), name("b")), name("c")), name("d"))
    assert expr("-a * b") == binop("*", n.Neg(name("a")), name("b"))
    assert expr("a * -b") == binop("*", name("a"), n.Neg(name("b")))


def test_unary_minus():
    assert expr("-3") == n.Neg(num(3))
    assert expr("--x") == n.Neg(n.Neg(name("x")))
    assert expr("-(a + 1)") == n.Neg(binop("+", name("a"), num(1)))


def test_parentheses_leave_no_node():
    assert expr("((7))") == num(7)


def test_integers_and_floats():
    assert expr("42") == num(42) and type(expr("42").value) is int
    for text, value in [("0.5", 0.5), ("1.", 1.0), ("1e-5", 1e-5), ("2.5E+3", 2500.0),
                        ("3e2", 300.0)]:
        e = expr(text)
        assert e == num(value) and type(e.value) is float, text


def test_booleans():
    assert expr("true") == n.Bool(True)
    assert expr("false") == n.Bool(False)


def test_lists():
    assert expr("[]") == n.ListExpr(())
    assert expr("[1, 2, 3]") == n.ListExpr((num(1), num(2), num(3)))
    assert expr("[1, 2,]") == n.ListExpr((num(1), num(2)))
    assert expr("[[1], []]") == n.ListExpr((n.ListExpr((num(1),)), n.ListExpr(())))


def test_indexing():
    assert expr("depths[0]") == n.Index(name("depths"), num(0))
    assert expr("a[0][i + 1]") == n.Index(n.Index(name("a"), num(0)),
                                          binop("+", name("i"), num(1)))
    assert expr("[4, 5][1]") == n.Index(n.ListExpr((num(4), num(5))), num(1))


def test_dims_literal():
    assert expr("3x3") == n.Dims((num(3), num(3)))
    assert expr("3x224x224") == n.Dims((num(3), num(224), num(224)))


def test_dims_spaced_and_symbolic():
    assert expr("3 x 224 x 224") == n.Dims((num(3), num(224), num(224)))
    assert expr("k x k") == n.Dims((name("k"), name("k")))
    assert expr("2 * k x k + 1") == n.Dims((binop("*", num(2), name("k")),
                                            binop("+", name("k"), num(1))))


def test_x_is_still_a_name_where_no_size_can_follow():
    assert items("x = 1") == (n.Let("x", num(1)),)
    assert expr("x + 1") == binop("+", name("x"), num(1))
    assert expr("x x x") == n.Dims((name("x"), name("x")))


# ---- layers ----------------------------------------------------------------------------------

def test_layer_without_arguments():
    assert body("relu") == (n.Layer("relu", ()),)


def test_layer_positional_and_keyword_arguments():
    assert body("conv planes, 3x3, stride = 2, bias = true") == (n.Layer("conv", (
        pos(name("planes")), pos(n.Dims((num(3), num(3)))),
        kw("stride", num(2)), kw("bias", n.Bool(True)))),)


def test_layer_flag_in_parentheses():
    assert body("bn(zero_init)") == (n.Layer("bn", (pos(name("zero_init")),)),)
    assert body("bn zero_init") == body("bn(zero_init)")


def test_labelled_layer():
    assert body("fc: fc 10") == (n.Layer("fc", (pos(num(10)),), "fc"),)
    assert body("pool: avgpool") == (n.Layer("avgpool", (), "pool"),)


def test_block_used_as_a_statement():
    assert body("b1: bottleneck 64, stride = 2") == (n.Layer(
        "bottleneck", (pos(num(64)), kw("stride", num(2))), "b1"),)


# ---- residual units --------------------------------------------------------------------------

def test_residual_shortcut_merge():
    assert body("residual {\n  conv 8, 3x3\n  bn\n}\nshortcut identity\nmerge add\nrelu") == (
        n.Residual((n.Layer("conv", (pos(num(8)), pos(n.Dims((num(3), num(3)))))),
                    n.Layer("bn", ()))),
        n.Shortcut("identity"), n.Merge("add"), n.Layer("relu", ()))


@pytest.mark.parametrize("kind", ["identity", "pad", "projection", "avgdown", "none"])
def test_every_shortcut_kind(kind):
    (sc,) = body(f"shortcut {kind}")
    assert sc == n.Shortcut(kind, (), None)


def test_projection_always():
    assert body("shortcut projection(always)") == (
        n.Shortcut("projection", (pos(name("always")),)),)
    assert body("shortcut projection always") == body("shortcut projection(always)")


def test_custom_shortcut_body():
    assert body("shortcut {\n  avgpool 2x2\n  conv 64, 1x1; bn\n}") == (n.Shortcut(None, (), (
        n.Layer("avgpool", (pos(n.Dims((num(2), num(2)))),)),
        n.Layer("conv", (pos(num(64)), pos(n.Dims((num(1), num(1)))))),
        n.Layer("bn", ()))),)
    assert body("shortcut {}") == (n.Shortcut(None, (), ()),)


# ---- networks --------------------------------------------------------------------------------

NET = """\
network resnet(block, depths, num_classes = 1000) {
  input 3 x 224 x 224
  stem {
    conv 64, 7x7, stride = 2
    bn
  }
  stage layer1 = depths[0] x block(64)
  stage layer2 = block(128, stride = 2)
  head {
    fc: fc num_classes
  }
}
"""


def test_network_definition():
    (net,) = items(NET)
    assert net == n.NetworkDef("resnet", (
        n.Param("block"), n.Param("depths"), n.Param("num_classes", num(1000))), (
        n.Input(n.Dims((num(3), num(224), num(224)))),
        n.Group("stem", (
            n.Layer("conv", (pos(num(64)), pos(n.Dims((num(7), num(7)))),
                             kw("stride", num(2)))),
            n.Layer("bn", ()))),
        n.Stage("layer1", n.Index(name("depths"), num(0)),
                n.Call("block", (pos(num(64)),))),
        n.Stage("layer2", None, n.Call("block", (pos(num(128)), kw("stride", num(2))))),
        n.Group("head", (n.Layer("fc", (pos(name("num_classes")),), "fc"),)),
    ))


def test_network_without_parameter_list():
    assert items("network n {\n  input 3x32x32\n}") == items("network n() {\n  input 3x32x32\n}")
    (net,) = items("network n { input 3x32x32 }")
    assert net == n.NetworkDef("n", (), (n.Input(n.Dims((num(3), num(32), num(32)))),))


def test_network_body_lets_and_loose_layers():
    (net,) = items("network n { w = 8; input 3x8x8; conv w, 3x3 }")
    assert net.body == (
        n.Let("w", num(8)), n.Input(n.Dims((num(3), num(8), num(8)))),
        n.Layer("conv", (pos(name("w")), pos(n.Dims((num(3), num(3)))))))


def test_stage_count_expression():
    (net,) = items("network n { stage s = 2 * k x b(1) }")
    assert net.body == (n.Stage("s", binop("*", num(2), name("k")),
                                n.Call("b", (pos(num(1)),))),)
    (net,) = items("network n { stage s = b() }")
    assert net.body == (n.Stage("s", None, n.Call("b", ())),)


def test_network_instance():
    assert items("network resnet50 = resnet(bottleneck, [3, 4, 6, 3], num_classes = 10)") == (
        n.NetworkInst("resnet50", n.Call("resnet", (
            pos(name("bottleneck")),
            pos(n.ListExpr((num(3), num(4), num(6), num(3)))),
            kw("num_classes", num(10))))),)


# ---- layout: separators, comments, continuation -----------------------------------------------

def test_semicolons_and_newlines_are_the_same():
    assert body("conv 8, 3x3; bn; relu") == body("conv 8, 3x3\nbn\nrelu")
    assert items("x = 1; y = 2") == items("x = 1\ny = 2")
    assert items("x = 1;;\n\n;y = 2;") == items("x = 1\ny = 2")


def test_one_line_bodies():
    assert items("block b() { residual { conv 8, 3x3; bn }; shortcut identity; merge add }") \
        == items("block b() {\n  residual {\n    conv 8, 3x3\n    bn\n  }\n"
                 "  shortcut identity\n  merge add\n}")


def test_comments_are_ignored_and_returned():
    text = "# head\nx = 1  # trailing\n# tail"
    module, comments = parse_with_comments(text)
    assert module.items == (n.Let("x", num(1)),)
    assert [str(c) for c in comments] == ["# head", "# trailing", "# tail"]
    assert [(c.line, c.column) for c in comments] == [(1, 1), (2, 8), (3, 1)]


def test_line_continuation_inside_brackets():
    assert items("x = [1,\n     2,\n     3]") == items("x = [1, 2, 3]")
    assert items("x = (1\n + 2)") == items("x = 1 + 2")
    assert items("network r = resnet(\n  basic,\n  [2, 2, 2, 2]\n)") == \
        items("network r = resnet(basic, [2, 2, 2, 2])")


def test_line_continuation_after_comma_and_backslash():
    assert body("conv 8,\n  3x3,\n  stride = 2") == body("conv 8, 3x3, stride = 2")
    assert items("x = 1 \\\n  + 2") == items("x = 1 + 2")
    assert items("x = 1 + \\\n  2") == items("x = 1 + 2")
    assert items("block b() {\n\n  relu\n\n}") == items("block b() { relu }")


@pytest.mark.parametrize("text", ["x = 1 +\n  2", "x = 3 x\n  224 x 224", "x = 1\n  + 2"])
def test_no_continuation_after_an_operator(text):
    """docs/language.md: a newline after a binary operator ends the line (use ( ) or \\)."""
    with pytest.raises(ResdslError) as info:
        parse(text)
    assert info.value.code == "E101"


def test_crlf_line_ends_and_tabs():
    assert items("x = 1\r\n\ty = 2\r\n") == items("x = 1\ny = 2")


def test_bundled_spec_round_numbers():
    """A whole realistic block, as std.res writes it."""
    (b,) = items("""\
block bottleneck(planes, stride = 1, groups = 1, width = 64) {
  mid = planes * width / 64 * groups
  residual {
    conv mid, 1x1; bn; relu
    conv mid, 3x3, stride = stride, groups = groups; bn; relu
    conv planes * 4, 1x1; bn(zero_init)
  }
  shortcut projection
  merge add
  relu
}""")
    one = n.Dims((num(1), num(1)))
    assert b.body[0] == n.Let("mid", binop("*", binop("/", binop(
        "*", name("planes"), name("width")), num(64)), name("groups")))
    assert b.body[1].body[-1] == n.Layer("bn", (pos(name("zero_init")),))
    assert b.body[1].body[-2] == n.Layer("conv", (pos(binop("*", name("planes"), num(4))),
                                                  pos(one)))
    assert b.body[2:] == (n.Shortcut("projection"), n.Merge("add"), n.Layer("relu", ()))


# ---- spans -----------------------------------------------------------------------------------

SPANNED = """\
use std
block b(p) {
  conv p, 3x3
  residual { relu }
  shortcut identity
}
network n = t(b, 7)
"""


def _at(sp: Span) -> tuple[int, int, int, int]:
    return (sp.line, sp.col, sp.end_line, sp.end_col)


def test_spans_of_items_and_names():
    use, blk, inst = parse(SPANNED, "f.res").items
    assert use.span.file == "f.res"
    assert _at(use.span) == (1, 1, 1, 8)
    assert _at(blk.span) == (2, 1, 6, 2)
    assert _at(blk.name_span) == (2, 7, 2, 8)
    assert _at(inst.span) == (7, 1, 7, 20)
    assert _at(inst.name_span) == (7, 9, 7, 10)


def test_spans_of_statements_and_expressions():
    blk = parse(SPANNED).items[1]
    conv, res, sc = blk.body
    assert _at(conv.span) == (3, 3, 3, 14)
    assert _at(conv.args[0].value.span) == (3, 8, 3, 9)
    assert _at(conv.args[1].value.span) == (3, 11, 3, 14)
    assert _at(res.span) == (4, 3, 4, 20)
    assert _at(res.body[0].span) == (4, 14, 4, 18)
    assert _at(sc.span) == (5, 3, 5, 20)
    assert _at(blk.params[0].span) == (2, 9, 2, 10)


def test_span_of_a_binary_expression_and_keyword_argument():
    (b,) = items("block b() {\n  conv 2 * q + 1, 3x3, stride = 2\n}")
    conv = b.body[0]
    assert _at(conv.args[0].value.span) == (2, 8, 2, 17)
    assert _at(conv.args[0].value.left.span) == (2, 8, 2, 13)
    assert _at(conv.args[2].span) == (2, 24, 2, 34)


def test_spans_ignore_equality():
    a = parse("x = 1")
    b = parse("\n\n   x    =    1")
    assert a == b
    assert a.items[0].span != b.items[0].span


def test_parse_raises_only_resdsl_errors():
    with pytest.raises(ResdslError):
        parse("block {")


# ---- the on-disk cache of the bundled library's AST ------------------------------------------

def test_bundled_library_ast_is_cached_on_disk(tmp_path, monkeypatch):
    from resdsl import loader
    from resdsl.resources import specs_dir

    monkeypatch.setenv("RESDSL_CACHE_DIR", str(tmp_path))
    std = specs_dir() / "std.res"
    text = std.read_text()
    loader._parse.cache_clear()
    first = loader._parse(text, str(std))
    (entry,) = tmp_path.glob("std-*.pickle")
    loader._parse.cache_clear()
    assert loader._parse(text, str(std)) == first == parse(text, str(std))
    entry.write_bytes(b"not a pickle")  # a damaged entry is parsed again and replaced
    loader._parse.cache_clear()
    assert loader._parse(text, str(std)) == first
    assert entry.read_bytes() != b"not a pickle"
    loader._parse.cache_clear()
    loader._parse(text + "\n# edited\n", str(std))  # only the file as shipped is cached
    assert len(list(tmp_path.glob("std-*.pickle"))) == 1
    monkeypatch.setenv("RESDSL_CACHE_DIR", str(tmp_path / "file" / "x"))
    (tmp_path / "file").write_text("")  # a cache folder that cannot be made: still parses
    loader._parse.cache_clear()
    assert loader._parse(text, str(std)) == first
    loader._parse.cache_clear()
