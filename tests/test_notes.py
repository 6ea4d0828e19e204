"""Errors raised inside a block or a network template carry notes down the chain of uses to
the network (innermost first), and where the failing value came from an argument written in the
user's file, they point at that argument, the library's line becoming a note (as rustc does for
a macro's expansion). One case per code that can be raised inside a block, each with the whole
rendered message."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from resdsl.errors import Renderer, ResdslError
from resdsl.pipeline import check_text

SPECS = Path(__file__).resolve().parent.parent / "specs"
NET = "network n {{\n  input 3 x 32 x 32\n  {}\n}}\n"
"""The user's network around one statement: with the `use` line, the statement is on line 4."""


def rendered(lib: str | None, user: str, folder: Path) -> tuple[ResdslError, str]:
    """The error of checking `user` as t.res (after `use "lib.res"` when there is a `lib`),
    rendered with the folder's and the bundled specs' paths cut to what a user types."""
    if lib is not None:
        (folder / "lib.res").write_text(lib, encoding="utf-8")
        user = 'use "lib.res"\n' + user
    with pytest.raises(ResdslError) as info:
        check_text(user, "t.res")
    text = Renderer(dict(info.value.sources)).render(info.value)
    return info.value, text.replace(os.getcwd() + os.sep, "").replace(f"{SPECS}{os.sep}",
                                                                      "specs/")


# (library text or None, the user's t.res, the rendered error): ids are the codes
CASES = [
    pytest.param('block b(s) {\n  conv 8, 3x3, stride = s\n}\n',
                 NET.format('b 0'), """\
t.res:4:5: error[E301]: `conv` stride must be positive, got 0
  |
4 |   b 0
  |     ^
lib.res:2:25: note: the argument is used here
  |
2 |   conv 8, 3x3, stride = s
  |                         ^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b 0
  |   ^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^""", id="E301"),
    pytest.param(None,
                 'use std\n\nnetwork n {\n  input 3 x 32 x 32\n'
                 '  stage s1 = 2 x bottleneck(16, groups = 3, width = 10)\n}\n', """\
t.res:5:29: error[E302]: 160 / 64 is not a whole number
  |
5 |   stage s1 = 2 x bottleneck(16, groups = 3, width = 10)
  |                             ^^
t.res:5:45: note: this argument is used too
  |
5 |   stage s1 = 2 x bottleneck(16, groups = 3, width = 10)
  |                                             ^^^^^^^^^^
specs/std.res:28:9: note: the arguments are used here
   |
28 |   mid = planes * width / 64 * groups
   |         ^^^^^^^^^^^^^^^^^^^
t.res:5:18: note: in block 'bottleneck' (std.res:27), used by stage 's1' here
  |
5 |   stage s1 = 2 x bottleneck(16, groups = 3, width = 10)
  |                  ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
t.res:3:9: note: in network 'n'
  |
3 | network n {
  |         ^
  hint: use // to round down, or change the values so they divide""", id="E302"),
    pytest.param('block b(d) {\n  conv 8 // d, 3x3\n}\n',
                 NET.format('b 0'), """\
t.res:4:5: error[E303]: division by zero
  |
4 |   b 0
  |     ^
lib.res:2:13: note: the argument is used here
  |
2 |   conv 8 // d, 3x3
  |             ^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b 0
  |   ^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^""", id="E303"),
    pytest.param('block b(flag) {\n  conv 8, 3x3, bias = flag\n}\n',
                 NET.format('b 1'), """\
t.res:4:5: error[E304]: `conv` bias must be true or false, not the integer 1
  |
4 |   b 1
  |     ^
lib.res:2:23: note: the argument is used here
  |
2 |   conv 8, 3x3, bias = flag
  |                       ^^^^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b 1
  |   ^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^""", id="E304"),
    pytest.param('block b(k) {\n  conv k * k, 3x3\n}\n',
                 NET.format('b 3037000500'), """\
t.res:4:5: error[E305]: integer 9223372037000250000 is out of range
  |
4 |   b 3037000500
  |     ^^^^^^^^^^
lib.res:2:8: note: the argument is used here
  |
2 |   conv k * k, 3x3
  |        ^^^^^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b 3037000500
  |   ^^^^^^^^^^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^
  hint: values are limited to ±2**62""", id="E305"),
    pytest.param(None,
                 'use std\nuse resnet\n\nnetwork n = resnet(basic, [1, 1, 1])\n', """\
t.res:4:27: error[E306]: index 3 is out of range for a list of 3
  |
4 | network n = resnet(basic, [1, 1, 1])
  |                           ^^^^^^^^^
specs/resnet.res:19:18: note: the argument is used here
   |
19 |   stage layer4 = depths[3] x block(512, stride = 2, groups = groups, width = width)
   |                  ^^^^^^^^^
t.res:4:13: note: in network template 'resnet' (resnet.res:8), used by network 'n' here
  |
4 | network n = resnet(basic, [1, 1, 1])
  |             ^^^^^^^^^^^^^^^^^^^^^^^^""", id="E306"),
    pytest.param('network tmpl(c) {\n  conv c, 3x3\n}\n',
                 'network n = tmpl(8)\n', """\
lib.res:1:1: error[E307]: network 'tmpl' has no `input` line
  |
1 | network tmpl(c) {
  | ^^^^^^^^^^^^^^^^^
t.res:2:13: note: in network template 'tmpl' (lib.res:1), used by network 'n' here
  |
2 | network n = tmpl(8)
  |             ^^^^^^^
  hint: add one, e.g. `input 3 x 224 x 224`""", id="E307"),
    pytest.param('block b(n) {\n  residual {\n    if n > 0 { conv 8, 3x3 }\n  }\n'
                 '  shortcut identity\n}\n',
                 NET.format('b 0'), """\
lib.res:5:3: error[E308]: the residual branch of block 'b' (b1) has no layers
  |
5 |   shortcut identity
  |   ^^^^^^^^^^^^^^^^^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b 0
  |   ^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^
  hint: a residual unit adds its branch to the shortcut: put a layer in `residual { }`, or use `shortcut none` or a plain block""", id="E308"),
    pytest.param('use std\n\nnetwork tmpl(depths) {\n  input 3 x 32 x 32\n'
                 '  stage s = depths[0] x basic(16)\n}\n',
                 'network n = tmpl([0])\n', """\
t.res:2:18: error[E308]: a stage needs at least 1 block, got 0
  |
2 | network n = tmpl([0])
  |                  ^^^
lib.res:5:13: note: the argument is used here
  |
5 |   stage s = depths[0] x basic(16)
  |             ^^^^^^^^^
t.res:2:13: note: in network template 'tmpl' (lib.res:3), used by network 'n' here
  |
2 | network n = tmpl([0])
  |             ^^^^^^^^^""", id="E308-stage"),
    pytest.param('block b(g) {\n  conv 8, 3x3, groups = g\n}\n',
                 NET.format('b 3'), """\
lib.res:2:3: error[E401]: conv with groups=3: output channels 8 are not divisible by 3
  |
2 |   conv 8, 3x3, groups = g
  |   ^^^^^^^^^^^^^^^^^^^^^^^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b 3
  |   ^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^
  hint: make the channel count a multiple of groups""", id="E401"),
    pytest.param('block b(k) {\n  conv 8, k x k, padding = 0\n}\n',
                 NET.format('b 64'), """\
lib.res:2:3: error[E402]: conv: input size 32 (padded 32) is smaller than the kernel (64)
  |
2 |   conv 8, k x k, padding = 0
  |   ^^^^^^^^^^^^^^^^^^^^^^^^^^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b 64
  |   ^^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^
  hint: use a larger input or a smaller kernel or stride earlier""", id="E402"),
    pytest.param('block b(p) {\n  maxpool 3x3, padding = p\n}\n',
                 NET.format('b 2'), """\
lib.res:2:3: error[E403]: maxpool: padding 2x2 is more than half the kernel 3x3
  |
2 |   maxpool 3x3, padding = p
  |   ^^^^^^^^^^^^^^^^^^^^^^^^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b 2
  |   ^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^
  hint: PyTorch allows padding up to kernel // 2""", id="E403"),
    pytest.param('block b() {\n  flatten\n  bn\n}\n',
                 NET.format('b'), """\
lib.res:3:3: error[E404]: `bn` needs a CxHxW feature map, but its input is flat (3072)
  |
3 |   bn
  |   ^^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b
  |   ^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^
  hint: move `bn` before the flatten / fc""", id="E404"),
    pytest.param('block b() {\n  fc 10\n}\n',
                 NET.format('b'), """\
lib.res:2:3: error[E405]: fc needs a flat input, but gets a 3x32x32 map
  |
2 |   fc 10
  |   ^^^^^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b
  |   ^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^
  hint: add `avgpool` (global) or `flatten` before `fc`""", id="E405"),
    pytest.param('block b(s) {\n  residual { conv 8, 3x3 }\n'
                 '  shortcut { conv 8, 1x1, stride = s }\n}\n',
                 NET.format('b 2'), """\
lib.res:3:3: error[E406]: cannot add the residual branch (8x32x32) and the shortcut (8x16x16) in block 'b1'
  |
3 |   shortcut { conv 8, 1x1, stride = s }
  |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
lib.res:2:14: note: residual branch ends here: 8x32x32
  |
2 |   residual { conv 8, 3x3 }
  |              ^^^^^^^^^^^
lib.res:3:3: note: shortcut (custom): 8x16x16
  |
3 |   shortcut { conv 8, 1x1, stride = s }
  |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
t.res:4:3: note: in block 'b' (lib.res:1), used here
  |
4 |   b 2
  |   ^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^
  hint: make the branches agree in channels and stride""", id="E406"),
    pytest.param(None,
                 'block b(planes) {\n  residual {\n    conv planes, 3x3\n  }\n'
                 '  shortcut identity\n  merge add\n}\n\nnetwork n {\n  input 3 x 32 x 32\n'
                 '  b 16\n}\n', """\
t.res:5:3: error[E407]: `shortcut identity`, but the residual branch changes the shape: 3x32x32 -> 16x32x32
  |
5 |   shortcut identity
  |   ^^^^^^^^^^^^^^^^^
t.res:11:3: note: in block 'b' (t.res:1), used here
   |
11 |   b 16
   |   ^^^^
t.res:9:9: note: in network 'n'
  |
9 | network n {
  |         ^
  hint: use `shortcut projection` (option B) or `shortcut pad` (option A)""", id="E407"),
]


@pytest.mark.parametrize("lib, user, expected", CASES)
def test_error_inside_a_definition_names_its_uses(lib, user, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err, text = rendered(lib, user, tmp_path)
    assert [e.code for e in err.errors] == [expected.split("error[")[1][:4]]
    assert text == expected


def test_nested_blocks_give_a_note_per_use(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lib = "block inner(s) {\n  conv 8, 3x3, stride = s\n}\n\nblock outer(s) {\n  inner s\n}\n"
    assert rendered(lib, NET.format("outer 0"), tmp_path)[1] == """\
t.res:4:9: error[E301]: `conv` stride must be positive, got 0
  |
4 |   outer 0
  |         ^
lib.res:2:25: note: the argument is used here
  |
2 |   conv 8, 3x3, stride = s
  |                         ^
lib.res:6:3: note: in block 'inner' (lib.res:1), used here
  |
6 |   inner s
  |   ^^^^^^^
t.res:4:3: note: in block 'outer' (lib.res:5), used here
  |
4 |   outer 0
  |   ^^^^^^^
t.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^"""


@pytest.mark.parametrize("lib", [
    "block b(p) {\n  p = p * 2\n  q = 7\n  conv p / 3 + q, 3x3\n}\n",   # a parameter rebound
    "block b(p, q = p * 2) {\n  conv q / 3, 3x3\n}\n",              # through a default
], ids=["rebound", "default"])
def test_the_value_is_traced_through_lets_and_defaults(lib, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, text = rendered(lib, NET.format("b 5"), tmp_path)
    assert text.startswith("t.res:4:5: error[E302]: 10 / 3 is not a whole number\n")
    assert "note: the argument is used here" in text


def test_a_library_value_stays_on_the_library_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err, text = rendered("block b(p) {\n  conv 7 / 2, 3x3\n}\n", NET.format("b 5"), tmp_path)
    assert text.startswith("lib.res:2:8: error[E302]: 7 / 2 is not a whole number\n")
    assert [note for _, note in err.notes] == ["in block 'b' (lib.res:1), used here",
                                               "in network 'n'"]


def test_an_error_in_the_users_own_block_stays_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err, _ = rendered(None, "block b(p) {\n  conv p / 2, 3x3\n}\n" + NET.format("b 5"), tmp_path)
    assert str(err) == "t.res:2:8: error[E302]: 5 / 2 is not a whole number"
    assert [(str(sp), note) for sp, note in err.notes] == [
        ("t.res:6:3", "in block 'b' (t.res:1), used here"), ("t.res:4:9", "in network 'n'")]


def test_each_network_using_the_block_reports_its_own_argument(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    user = NET.format("b 5") + NET.format("b 7").replace("network n", "network m")
    err, _ = rendered("block b(p) {\n  conv p / 2, 3x3\n}\n", user, tmp_path)
    assert [str(e) for e in err.errors] == [
        "t.res:4:5: error[E302]: 5 / 2 is not a whole number",
        "t.res:8:5: error[E302]: 7 / 2 is not a whole number"]
    assert [e.notes[-1][1] for e in err.errors] == ["in network 'n'", "in network 'm'"]


def test_an_error_in_the_network_itself_has_no_notes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err, _ = rendered(None, NET.format("conv 7 / 2, 3x3"), tmp_path)
    assert err.notes == ()


def test_blocks_nested_too_deep_are_not_noted_at_every_level(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    user = "block twice(f) {\n  f f\n}\n\nnetwork n {\n  input 3 x 8 x 8\n  twice twice\n}\n"
    err, _ = rendered(None, user, tmp_path)
    assert err.code == "E502" and err.notes == ()
