"""Every error code the front end issues: the code, and the rendered text a user reads
(file:line:col, message, the source line, the caret run, the hint)."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from resdsl.errors import ErrorGroup, InputError, Renderer, ResdslError
from resdsl.loader import MAX_FILE_BYTES
from resdsl.pipeline import Limits, check_file, check_text

RESDSL = Path(__file__).resolve().parent.parent / "resdsl"
BACKENDS = Path(__file__).resolve().parent.parent / "backends"

NET = "network n {{\n  input 3 x 32 x 32\n  {}\n}}\n"
"""A network around one statement: the statement is on line 3, from column 3."""


def failure(text: str, file: str = "net.res", **limits) -> ResdslError:
    with pytest.raises(ResdslError) as info:
        check_text(text, file, Limits(**limits))
    return info.value


def render(err: ResdslError) -> str:
    return Renderer(dict(err.sources)).render(err)


def codes(err: ResdslError) -> list[str]:
    return [e.code for e in err.errors]


# ---- one case per code: (code, spec text, rendered error) ------------------------------------

CASES = [
    # -- syntax
    pytest.param("E101", "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  conv 16 3x3\n}\n", """\
net.res:5:11: error[E101]: unexpected '3x3'; expected ',', an operator or end of line
  |
5 |   conv 16 3x3
  |           ^^^
  hint: separate arguments with ',' and statements with a new line or ';'""",
                 id="E101-missing-comma"),
    pytest.param("E101", "block b() {\n  relu\n}\nnetwork = 3\n", """\
net.res:4:9: error[E101]: unexpected '='; expected a name
  |
4 | network = 3
  |         ^
  hint: 'network' is a reserved word; choose another name""", id="E101-keyword-as-name"),
    pytest.param("E101", "x = 2 ** 3\n", """\
net.res:1:8: error[E101]: unexpected '*'; expected '(', '-', '[', 'false', 'true', a name, a number or a size like 3x3
  |
1 | x = 2 ** 3
  |        ^""", id="E101-double-star"),
    pytest.param("E101", "block b() { conv 8, }\n", """\
net.res:1:21: error[E101]: unexpected '}'; expected '(', '-', '[', 'false', 'not', 'true', a name, a number or a size like 3x3
  |
1 | block b() { conv 8, }
  |                     ^""", id="E101-trailing-comma"),
    pytest.param("E101", "{\n", """\
net.res:1:1: error[E101]: unexpected '{'; expected 'block', 'network', 'use', a name or end of file
  |
1 | {
  | ^""", id="E101-brace-at-top-level"),
    pytest.param("E102", "use 'std'\n", """\
net.res:1:5: error[E102]: unexpected character '''
  |
1 | use 'std'
  |     ^
  hint: paths in `use` are written in double quotes: use "other.res\"""", id="E102-quote"),
    pytest.param("E102", "x = 3 × 3\n", """\
net.res:1:7: error[E102]: unexpected character '×'
  |
1 | x = 3 × 3
  |       ^
  hint: is this a text file? specs are plain UTF-8 text""", id="E102-times-sign"),
    pytest.param("E102", "x = \x1b[31m\n", """\
net.res:1:5: error[E102]: unexpected character '\\x1b'
  |
1 | x = ?[31m
  |     ^
  hint: is this a text file? specs are plain UTF-8 text""", id="E102-escape-not-echoed"),
    pytest.param("E103", "block b(p) {\n  conv p, 3x3\n", """\
net.res:2:14: error[E103]: unexpected end of file; expected 'if', 'merge', 'residual', 'shortcut', '}', a label or a name
  |
2 |   conv p, 3x3
  |              ^
net.res:1:12: note: this '{' is not closed
  |
1 | block b(p) {
  |            ^""", id="E103-open-brace"),
    pytest.param("E103", "x = [1, 2\n\n", """\
net.res:1:10: error[E103]: unexpected end of file; expected ',', ']' or an operator
  |
1 | x = [1, 2
  |          ^
net.res:1:5: note: this '[' is not closed
  |
1 | x = [1, 2
  |     ^""", id="E103-open-bracket"),
    pytest.param("E101", "x = 1 +\n  2\n", """\
net.res:1:8: error[E101]: unexpected end of line; expected '(', '-', '[', 'false', 'true', a name, a number or a size like 3x3
  |
1 | x = 1 +
  |        ^
  hint: a line cannot end in an operator: put the expression in ( ) or end the line with \\""",
                 id="E101-operator-at-line-end"),
    pytest.param("E104", "x = " + "(" * 65 + "1" + ")" * 65 + "\n", """\
net.res:1:69: error[E104]: brackets nested more than 64 deep
  |
1 | x = (((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))
  |                                                                     ^
  hint: split the expression with a let-binding""", id="E104-brackets"),
    pytest.param("E105", "x = 1" + "0" * 30 + "\n", """\
net.res:1:5: error[E105]: number literal has 31 digits
  |
1 | x = 1000000000000000000000000000000
  |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  hint: numbers in a spec have at most 30 digits""", id="E105-digits"),
    pytest.param("E105", "x = 1e999\n", """\
net.res:1:5: error[E105]: number literal out of range
  |
1 | x = 1e999
  |     ^^^^^""", id="E105-float"),
    # -- names and arguments
    pytest.param("E201", "use std\nnetwork n {\n  input 3 x 32 x 32\n  stage s = 2 x bottlneck(16)\n}\n",
                 """\
net.res:4:17: error[E201]: unknown block 'bottlneck'
  |
4 |   stage s = 2 x bottlneck(16)
  |                 ^^^^^^^^^
  hint: did you mean 'bottleneck'?""", id="E201-block"),
    pytest.param("E201", NET.format("conv widht, 3x3").replace("network n {", "width = 8\nnetwork n {"),
                 """\
net.res:4:8: error[E201]: unknown name 'widht'
  |
4 |   conv widht, 3x3
  |        ^^^^^
  hint: did you mean 'width'?""", id="E201-name"),
    pytest.param("E201", "block b() {\n  r: relu_\n}\n", """\
net.res:2:6: error[E201]: unknown block 'relu_'
  |
2 |   r: relu_
  |      ^^^^^
  hint: did you mean 'relu'?""", id="E201-labelled-layer"),
    pytest.param("E201", "block b() {\n  residual { relu }\n  shortcut projecton\n}\n", """\
net.res:3:3: error[E201]: unknown shortcut kind 'projecton'
  |
3 |   shortcut projecton
  |   ^^^^^^^^^^^^^^^^^^
  hint: did you mean 'projection'?""", id="E201-shortcut"),
    pytest.param("E201", "block b() {\n  residual { relu }\n  shortcut identity\n  merge mull\n}\n",
                 """\
net.res:4:3: error[E201]: unknown merge 'mull'
  |
4 |   merge mull
  |   ^^^^^^^^^^
  hint: did you mean 'mul'?""", id="E201-merge"),
    pytest.param("E202", "block b() { relu }\nblock b() { bn }\n", """\
net.res:2:7: error[E202]: 'b' is defined twice
  |
2 | block b() { bn }
  |       ^
net.res:1:7: note: first defined here
  |
1 | block b() { relu }
  |       ^
  hint: rename one of them""", id="E202-twice"),
    pytest.param("E202", "block conv() { relu }\n", """\
net.res:1:7: error[E202]: block 'conv' has the name of a built-in layer
  |
1 | block conv() { relu }
  |       ^^^^
  hint: choose another name""", id="E202-builtin"),
    pytest.param("E202", "block b(p, p) { relu }\n", """\
net.res:1:12: error[E202]: parameter 'p' is declared twice
  |
1 | block b(p, p) { relu }
  |            ^""", id="E202-parameter"),
    pytest.param("E202", NET.format("relu: relu\n  relu: relu"), """\
net.res:4:3: error[E202]: two layers named 'relu' in one scope
  |
4 |   relu: relu
  |   ^^^^^^^^^^
net.res:3:3: note: first named here
  |
3 |   relu: relu
  |   ^^^^^^^^^^
  hint: give one of them another label""", id="E202-layer-names"),
    pytest.param("E203", NET.format("conv 8, 3x3, strides = 2"), """\
net.res:3:16: error[E203]: `conv` has no parameter 'strides'
  |
3 |   conv 8, 3x3, strides = 2
  |                ^^^^^^^^^^^
  hint: did you mean 'stride'?""", id="E203-unknown-keyword"),
    pytest.param("E203", NET.format("conv 8, kernel = 3x3, 2"), """\
net.res:3:25: error[E203]: positional argument after a keyword argument
  |
3 |   conv 8, kernel = 3x3, 2
  |                         ^
  hint: put positional arguments first""", id="E203-positional-after-keyword"),
    pytest.param("E203", NET.format("conv 8, 3x3, stride = 2, stride = 1"), """\
net.res:3:28: error[E203]: argument 'stride' given twice
  |
3 |   conv 8, 3x3, stride = 2, stride = 1
  |                            ^^^^^^^^^^
net.res:3:16: note: first given here
  |
3 |   conv 8, 3x3, stride = 2, stride = 1
  |                ^^^^^^^^^^""", id="E203-twice"),
    pytest.param("E204", NET.format("conv 8"), """\
net.res:3:3: error[E204]: `conv` needs its 'kernel' argument
  |
3 |   conv 8
  |   ^^^^^^""", id="E204-missing"),
    pytest.param("E204", NET.format("relu 1"), """\
net.res:3:8: error[E204]: `relu` takes no arguments
  |
3 |   relu 1
  |        ^""", id="E204-no-arguments"),
    pytest.param("E204", NET.format("dropout 0.1, 0.2"), """\
net.res:3:16: error[E204]: `dropout` takes at most 1 positional argument
  |
3 |   dropout 0.1, 0.2
  |                ^^^
  hint: parameters: p""", id="E204-too-many"),
    pytest.param("E204", "block b(p) { relu }\n" + NET.format("stage s = 2 x b()"), """\
net.res:4:17: error[E204]: 'b' needs an argument for 'p'
  |
4 |   stage s = 2 x b()
  |                 ^^^
  hint: parameters: p""", id="E204-block-argument"),
    pytest.param("E205", "block a() { b }\nblock b() { a }\n", """\
net.res:1:13: error[E205]: block 'a' uses itself: a -> b -> a
  |
1 | block a() { b }
  |             ^
  hint: a block cannot contain itself""", id="E205-blocks"),
    pytest.param("E205", "x = y + 1\ny = x\n", """\
net.res:1:1: error[E205]: 'x' is defined in terms of itself
  |
1 | x = y + 1
  | ^^^^^^^^^""", id="E205-constants"),
    # -- values
    pytest.param("E301", NET.format("conv 8, 3x3, stride = 0"), """\
net.res:3:25: error[E301]: `conv` stride must be positive, got 0
  |
3 |   conv 8, 3x3, stride = 0
  |                         ^""", id="E301-stride"),
    pytest.param("E301", NET.format("conv 8, 3x3, groups = -2"), """\
net.res:3:25: error[E301]: `conv` groups must be positive, got -2
  |
3 |   conv 8, 3x3, groups = -2
  |                         ^^""", id="E301-groups"),
    pytest.param("E301", NET.format("conv 0, 3x3"), """\
net.res:3:8: error[E301]: `conv` out must be positive, got 0
  |
3 |   conv 0, 3x3
  |        ^""", id="E301-channels"),
    pytest.param("E301", NET.format("conv 8, 0x3"), """\
net.res:3:11: error[E301]: `conv` kernel must be positive, got 0
  |
3 |   conv 8, 0x3
  |           ^^^""", id="E301-kernel"),
    pytest.param("E301", "network n {\n  input 3 x 0 x 32\n}\n", """\
net.res:2:9: error[E301]: input sizes must be positive, got 0
  |
2 |   input 3 x 0 x 32
  |         ^^^^^^^^^^""", id="E301-input"),
    pytest.param("E301", NET.format("dropout 1.5"), """\
net.res:3:11: error[E301]: `dropout` p must be between 0 and 1, got 1.5
  |
3 |   dropout 1.5
  |           ^^^""", id="E301-probability"),
    pytest.param("E302", NET.format("conv 10 / 4, 3x3"), """\
net.res:3:8: error[E302]: 10 / 4 is not a whole number
  |
3 |   conv 10 / 4, 3x3
  |        ^^^^^^
  hint: use // to round down, or change the values so they divide""", id="E302"),
    pytest.param("E302", "half = 7 / 2\n", """\
net.res:1:8: error[E302]: 7 / 2 is not a whole number
  |
1 | half = 7 / 2
  |        ^^^^^
  hint: use // to round down, or change the values so they divide""", id="E302-unused-constant"),
    pytest.param("E303", NET.format("conv 8 // (2 - 2), 3x3"), """\
net.res:3:14: error[E303]: division by zero
  |
3 |   conv 8 // (2 - 2), 3x3
  |              ^^^^^""", id="E303"),
    pytest.param("E304", NET.format("conv 8, 3x3, bias = 1"), """\
net.res:3:23: error[E304]: `conv` bias must be true or false, not the integer 1
  |
3 |   conv 8, 3x3, bias = 1
  |                       ^""", id="E304-bool"),
    pytest.param("E304", NET.format("conv [8], 3x3"), """\
net.res:3:8: error[E304]: `conv` out must be an integer, not a list of 1
  |
3 |   conv [8], 3x3
  |        ^^^""", id="E304-list"),
    pytest.param("E304", NET.format("conv 8, 3x3x3"), """\
net.res:3:11: error[E304]: `conv` kernel must be a number or HxW, not the size 3x3x3
  |
3 |   conv 8, 3x3x3
  |           ^^^^^""", id="E304-pair"),
    pytest.param("E304", "network n {\n  input 3 x 32\n}\n", """\
net.res:2:9: error[E304]: `input` needs channels x height x width, not the size 3x32
  |
2 |   input 3 x 32
  |         ^^^^^^
  hint: e.g. `input 3 x 224 x 224`""", id="E304-input"),
    pytest.param("E304", NET.format("stage s = 2 x conv(8)"), """\
net.res:3:17: error[E304]: a stage repeats a block, and 'conv' is a built-in layer
  |
3 |   stage s = 2 x conv(8)
  |                 ^^^^
  hint: define a block that uses it""", id="E304-stage-of-a-layer"),
    pytest.param("E304", "block b(p) { p }\n" + NET.format("b(3)"), """\
net.res:1:14: error[E304]: 'p' is the integer 3, not a layer or block
  |
1 | block b(p) { p }
  |              ^
net.res:4:3: note: in block 'b' (net.res:1), used here
  |
4 |   b(3)
  |   ^^^^
net.res:2:9: note: in network 'n'
  |
2 | network n {
  |         ^""", id="E304-not-a-block"),
    pytest.param("E304", "x = n\n" + NET.format("conv x, 3x3"), """\
net.res:1:5: error[E304]: 'n' is a network, not a value
  |
1 | x = n
  |     ^
  hint: networks cannot be passed as arguments""", id="E304-network-as-value"),
    pytest.param("E305", NET.format("conv 4611686018427387904 * 2, 3x3"), """\
net.res:3:8: error[E305]: integer 9223372036854775808 is out of range
  |
3 |   conv 4611686018427387904 * 2, 3x3
  |        ^^^^^^^^^^^^^^^^^^^^^^^
  hint: values are limited to ±2**62""", id="E305"),
    pytest.param("E306", NET.format("conv [8, 16][2], 3x3"), """\
net.res:3:16: error[E306]: index 2 is out of range for a list of 2
  |
3 |   conv [8, 16][2], 3x3
  |                ^""", id="E306"),
    pytest.param("E307", "network n {\n  conv 8, 3x3\n}\n", """\
net.res:1:1: error[E307]: network 'n' has no `input` line
  |
1 | network n {
  | ^^^^^^^^^^^
  hint: add one, e.g. `input 3 x 224 x 224`""", id="E307-missing"),
    pytest.param("E307", "network n {\n  input 3 x 32 x 32\n  input 3 x 32 x 32\n}\n", """\
net.res:3:3: error[E307]: a network has one `input`
  |
3 |   input 3 x 32 x 32
  |   ^^^^^^^^^^^^^^^^^
net.res:2:3: note: first given here
  |
2 |   input 3 x 32 x 32
  |   ^^^^^^^^^^^^^^^^^""", id="E307-twice"),
    pytest.param("E308", "block b(p) { relu }\n" + NET.format("stage s = 0 x b(1)"), """\
net.res:4:13: error[E308]: a stage needs at least 1 block, got 0
  |
4 |   stage s = 0 x b(1)
  |             ^""", id="E308-stage-count"),
    pytest.param("E308", "block b() {\n  residual { relu }\n  relu\n  shortcut identity\n}\n", """\
net.res:3:3: error[E308]: a layer between `residual` and `merge`
  |
3 |   relu
  |   ^^^^
  hint: to apply it to the sum, write `merge add` before it; else move it into the residual branch""", id="E308-layer-before-merge"),
    pytest.param("E308", "block b() {\n  merge add\n}\n", """\
net.res:2:3: error[E308]: `merge` comes after `shortcut`
  |
2 |   merge add
  |   ^^^^^^^^^""", id="E308-merge-without-shortcut"),
    pytest.param("E308", "block b() {\n  shortcut identity\n}\n", """\
net.res:2:3: error[E308]: `shortcut` comes after a `residual { ... }` branch
  |
2 |   shortcut identity
  |   ^^^^^^^^^^^^^^^^^""", id="E308-shortcut-without-residual"),
    pytest.param("E308", "block b() {\n  residual { relu }\n}\n", """\
net.res:2:3: error[E308]: a `residual` branch needs a `shortcut`
  |
2 |   residual { relu }
  |   ^^^^^^^^^^^^^^^^^
  hint: add `shortcut identity`, `shortcut projection`, `shortcut pad` or `shortcut none`""",
                 id="E308-residual-without-shortcut"),
    pytest.param("E308", "block b() {\n  residual {\n    residual { relu }\n  }\n  shortcut identity\n}\n",
                 """\
net.res:3:5: error[E308]: `residual`, `shortcut` and `merge` cannot appear inside `residual`
  |
3 |     residual { relu }
  |     ^^^^^^^^^^^^^^^^^
  hint: put the nested unit in a block of its own and use it""", id="E308-nested-residual"),
    pytest.param("E308", "block b() {\n  residual { relu }\n  shortcut none\n  merge add\n}\n", """\
net.res:4:3: error[E308]: `shortcut none` has nothing to merge
  |
4 |   merge add
  |   ^^^^^^^^^
  hint: remove the `merge` line""", id="E308-merge-after-none"),
    pytest.param("E308", "block b() {\n  residual { relu }\n  residual { relu }\n"
                         "  shortcut identity\n}\n", """\
net.res:3:3: error[E308]: a block has one `residual`
  |
3 |   residual { relu }
  |   ^^^^^^^^^^^^^^^^^
net.res:2:3: note: first here
  |
2 |   residual { relu }
  |   ^^^^^^^^^^^^^^^^^""", id="E308-two-residuals"),
    # -- shapes
    pytest.param("E401", NET.format("conv 8, 3x3, groups = 3"), """\
net.res:3:3: error[E401]: conv with groups=3: output channels 8 are not divisible by 3
  |
3 |   conv 8, 3x3, groups = 3
  |   ^^^^^^^^^^^^^^^^^^^^^^^
  hint: make the channel count a multiple of groups""", id="E401"),
    pytest.param("E402", NET.format("conv 8, 33x33, padding = 0"), """\
net.res:3:3: error[E402]: conv: input size 32 (padded 32) is smaller than the kernel (33)
  |
3 |   conv 8, 33x33, padding = 0
  |   ^^^^^^^^^^^^^^^^^^^^^^^^^^
  hint: use a larger input or a smaller kernel or stride earlier""", id="E402"),
    pytest.param("E403", NET.format("maxpool 2x2, padding = 2"), """\
net.res:3:3: error[E403]: maxpool: padding 2x2 is more than half the kernel 2x2
  |
3 |   maxpool 2x2, padding = 2
  |   ^^^^^^^^^^^^^^^^^^^^^^^^
  hint: PyTorch allows padding up to kernel // 2""", id="E403"),
    pytest.param("E404", NET.format("flatten\n  conv 8, 3x3"), """\
net.res:4:3: error[E404]: `conv` needs a CxHxW feature map, but its input is flat (3072)
  |
4 |   conv 8, 3x3
  |   ^^^^^^^^^^^
  hint: move `conv` before the flatten / fc""", id="E404"),
    pytest.param("E405", NET.format("fc 10"), """\
net.res:3:3: error[E405]: fc needs a flat input, but gets a 3x32x32 map
  |
3 |   fc 10
  |   ^^^^^
  hint: add `avgpool` (global) or `flatten` before `fc`""", id="E405"),
    pytest.param("E406", "block b() {\n  residual { conv 8, 3x3 }\n  shortcut { conv 8, 1x1, stride = 2 }\n}\n"
                 + NET.format("b"), """\
net.res:3:3: error[E406]: cannot add the residual branch (8x32x32) and the shortcut (8x16x16) in block 'b1'
  |
3 |   shortcut { conv 8, 1x1, stride = 2 }
  |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
net.res:2:14: note: residual branch ends here: 8x32x32
  |
2 |   residual { conv 8, 3x3 }
  |              ^^^^^^^^^^^
net.res:3:3: note: shortcut (custom): 8x16x16
  |
3 |   shortcut { conv 8, 1x1, stride = 2 }
  |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
net.res:7:3: note: in block 'b' (net.res:1), used here
  |
7 |   b
  |   ^
net.res:5:9: note: in network 'n'
  |
5 | network n {
  |         ^
  hint: make the branches agree in channels and stride""", id="E406"),
    pytest.param("E407", "block b() {\n  residual { conv 8, 3x3 }\n  shortcut identity\n}\n"
                 + NET.format("b"), """\
net.res:3:3: error[E407]: `shortcut identity`, but the residual branch changes the shape: 3x32x32 -> 8x32x32
  |
3 |   shortcut identity
  |   ^^^^^^^^^^^^^^^^^
net.res:7:3: note: in block 'b' (net.res:1), used here
  |
7 |   b
  |   ^
net.res:5:9: note: in network 'n'
  |
5 | network n {
  |         ^
  hint: use `shortcut projection` (option B) or `shortcut pad` (option A)""", id="E407-identity"),
    pytest.param("E407", "block b() {\n  residual { conv 2, 3x3, stride = 2 }\n  shortcut pad\n}\n"
                 + NET.format("b"), """\
net.res:3:3: error[E407]: `shortcut pad` cannot turn 3x32x32 into 2x16x16
  |
3 |   shortcut pad
  |   ^^^^^^^^^^^^
net.res:7:3: note: in block 'b' (net.res:1), used here
  |
7 |   b
  |   ^
net.res:5:9: note: in network 'n'
  |
5 | network n {
  |         ^
  hint: option A only subsamples evenly and adds channels; use `shortcut projection`""",
                 id="E407-pad"),
    # -- limits
    pytest.param("E501", "block b(p) { conv p, 3x3; relu }\n" + NET.format("stage s = 1000000000000 x b(8)"),
                 """\
net.res:4:3: error[E501]: stage 's' expands to 1,000,000,000,000 blocks of 2 layers, more than the limit of 100,000 layers
  |
4 |   stage s = 1000000000000 x b(8)
  |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  hint: raise the limit with --max-layers if you mean it""", id="E501-stage"),
    pytest.param("E501", "block e() {}\n" + NET.format("stage s = 1000000000000 x e()"), """\
net.res:4:3: error[E501]: stage 's' expands to 1,000,000,000,000 blocks, more than the limit of 100,000 blocks
  |
4 |   stage s = 1000000000000 x e()
  |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  hint: raise the limit with --max-layers if you mean it""", id="E501-empty-blocks"),
    pytest.param("E502", "block wrap(inner) { inner(inner) }\n" + NET.format("wrap(wrap)"), """\
net.res:1:21: error[E502]: blocks nested more than 32 deep
  |
1 | block wrap(inner) { inner(inner) }
  |                     ^^^^^^^^^^^^
  hint: does a block use itself through a block argument?""", id="E502"),
    pytest.param("E503", "x = [0] * 100000\n", """\
net.res:1:5: error[E503]: list of 1 repeated 100000 times is out of range
  |
1 | x = [0] * 100000
  |     ^^^^^^^^^^^^""", id="E503-repeat"),
    pytest.param("E503", "x = [0] * 6000\ny = x + x\n", """\
net.res:2:5: error[E503]: list longer than 10000
  |
2 | y = x + x
  |     ^^^^^""", id="E503-join"),
    pytest.param("E507", "network n {\n  input 3 x 32 x 32\n  conv 8, 3x3, dilation = 4611686018427387903\n}\n", """\
net.res:3:27: error[E507]: `conv` dilation 4611686018427387903 is more than 2,147,483,647 (2**31 - 1)
  |
3 |   conv 8, 3x3, dilation = 4611686018427387903
  |                           ^^^^^^^^^^^^^^^^^^^
  hint: PyTorch computes sizes from it in 64-bit integers, which a larger value can overflow""",
                 id="E507-dilation"),
    pytest.param("E507", "network n {\n  input 3 x 4294967296 x 8\n}\n", """\
net.res:2:9: error[E507]: an input size 4294967296 is more than 2,147,483,647 (2**31 - 1)
  |
2 |   input 3 x 4294967296 x 8
  |         ^^^^^^^^^^^^^^^^^^
  hint: PyTorch computes sizes from it in 64-bit integers, which a larger value can overflow""",
                 id="E507-input"),
]


@pytest.mark.parametrize("code, text, expected", CASES)
def test_error_code_and_rendering(code, text, expected):
    err = failure(text)
    assert codes(err) == [code]
    assert render(err) == expected


def test_every_code_in_the_source_has_a_case():
    """A new `code="E..."` in resdsl/ needs a case here (E0xx and the CLI's own are below)."""
    in_source = set()
    for path in list(RESDSL.glob("*.py")) + list(BACKENDS.glob("*.py")):
        in_source |= set(re.findall(r'code="(E\d{3})"', path.read_text(encoding="utf-8")))
    covered = {p.values[0] for p in CASES} | {
        "E001", "E002", "E003", "E004", "E005", "E206", "E207", "E208", "E209", "E210",
            "E211", "E212", "E213", "E214", "E505", "E506", "E508"}
    # E210: tests/test_pytorch.py; E211, E505, E506: test_limits.py; E212, E213: test_api_errors.py
    # E214: test_ecosystem.py; E508 (verify's pairs): test_verify.py
    drawing = {c for c in in_source if c.startswith("E6")}  # backends/draw.py, tested there
    assert in_source - drawing <= covered, sorted(in_source - drawing - covered)


# ---- syntax messages speak in words -----------------------------------------------------------

SYNTAX_ERRORS = [
    "x = (1", "x = [1,", "block b() {", "block b( {", "network n = ", "use", "use 3",
    "block b() { conv 1,, 2 }", "x = 1 2", "x = )", "}", "block b() { residual }",
    "block b() { shortcut }", "network n { stage s }", "network n { stage = b() }",
    "network n { input }", "block b() { a: }", "x == 1",
    "network n { stem }", "block 1b() {}", "x = [1 2]", "x = 3 x", "x = a[", "x = a[]",
    "block b() { merge }", "block b(p q) {}", "network n { head { } ", "x = true false",
    "block b() {\n  conv 8 3x3\n}", "x = 1\n  y = 2 3",
]


@pytest.mark.parametrize("text", SYNTAX_ERRORS)
def test_syntax_errors_name_no_lark_terminals(text):
    err = failure(text)
    assert codes(err)[0] in ("E101", "E103"), render(err)
    msg = err.message
    assert "expected" in msg
    assert not re.search(r"\$END|\b(LPAR|RPAR|LSQB|RSQB|LBRACE|RBRACE|_NL|__ANON\w*|NAME|INT|"
                         r"FLOAT|DIMS|STRING|COMMA|EQUAL|COLON)\b", msg), msg
    assert err.span is not None and err.span.line >= 1 and err.span.col >= 1


def test_a_colon_without_a_label_is_an_unexpected_character_with_a_hint():
    err = failure("block b() { : relu }")
    assert err.code == "E102" and "label" in err.hint


@pytest.mark.parametrize("text, word", [
    ("network n {\n  input = 3\n}\n", "input"),
    ("block b() {\n  merge = 2\n}\n", "merge"),
])
def test_reserved_word_as_name_gets_a_hint(text, word):
    # (`residual: relu` is a layer labelled `residual`: a label is any key path)
    err = failure(text)
    assert err.code == "E101"
    assert err.hint == f"'{word}' is a reserved word; choose another name"


def test_long_line_excerpt_keeps_the_caret_under_the_culprit():
    text = "x = " + "1 + " * 150 + ")\n"
    out = render(failure(text))
    _, src, caret = out.splitlines()[1:4]
    col = caret.index("^")
    assert src[col] == ")"
    assert src.startswith("1 | … ")
    assert len(src) < 220


def test_form_feed_and_unicode_line_separators_do_not_shift_lines():
    """Lines are counted at '\\n' only, as the lexer counts them."""
    out = render(failure("x = 1\x0c\n# a\u2028b\x1cc\x85d\nz = ?\n"))
    assert out.splitlines()[0].startswith("net.res:3:5: error[E102]")
    assert out.splitlines()[2] == "3 | z = ?"


def test_e104_expression_depth():
    err = failure("x = " + "-" * 201 + "1\n")
    assert err.code == "E104"
    assert err.message == "expression nested more than 200 deep"
    assert err.hint == "split it with a let-binding"
    assert (err.span.line, err.span.col) == (1, 6)


def test_e104_ten_thousand_parentheses():
    err = failure("x = " + "(" * 10_000 + "1" + ")" * 10_000)
    assert err.code == "E104"
    assert (err.span.line, err.span.col) == (1, 69)


def test_e105_five_thousand_digits():
    err = failure("x = " + "7" * 5000)
    assert err.code == "E105"
    assert err.message == "number literal has 5000 digits"
    lines = render(err).splitlines()
    assert lines[2].endswith(" …")
    assert lines[3].count("^") == 196  # the digits shown: 200 characters less "x = "


# ---- several errors at once -------------------------------------------------------------------

def test_independent_errors_are_all_reported():
    text = ("use std\n"
            "block a() { residual { relu } }\n"
            "block a() { relu }\n"
            "block c() { conv 8, foo = 1 }\n"
            "block d() { bottlnek(1) }\n")
    err = failure(text)
    assert isinstance(err, ErrorGroup)
    assert codes(err) == ["E202", "E308", "E203", "E201"]
    assert [(e.span.line, e.span.col) for e in err.errors] == [(3, 7), (2, 13), (4, 21), (5, 13)]
    out = render(err)
    assert out.count("error[") == 4
    assert "hint: did you mean 'bottleneck'?" in out


def test_errors_in_several_networks_are_all_reported():
    text = ("network a {\n  input 3 x 8 x 8\n  conv 0, 3x3\n}\n"
            "network b {\n  input 3 x 8 x 8\n  conv 8, 3x3, stride = 0\n}\n")
    err = failure(text)
    assert codes(err) == ["E301", "E301"]
    assert [e.span.line for e in err.errors] == [3, 7]


def test_one_error_per_constant_cycle():
    err = failure("x = y\ny = z\nz = y\n")
    assert codes(err) == ["E205"]
    assert err.span.line == 2


@pytest.mark.parametrize("text, where", [
    ("block b() {\n  residual { relu }\n  shortcut {\n    residual { relu }\n  }\n}\n",
     "a `shortcut { ... }` branch"),
    ("block b() {\n  residual { relu }\n  shortcut { merge add }\n}\n",
     "a `shortcut { ... }` branch"),
    ("network n {\n  input 3 x 8 x 8\n  stem { residual { relu } }\n}\n", "`stem`"),
    ("network n {\n  input 3 x 8 x 8\n  head {\n    shortcut identity\n  }\n}\n", "`head`"),
])
def test_units_inside_branches_and_groups(text, where):
    """These used to reach the elaborator and fail an assertion there."""
    err = failure(text)
    assert codes(err) == ["E308"]
    assert err.message == f"`residual`, `shortcut` and `merge` cannot appear inside {where}"


def test_a_failing_constant_is_reported_once():
    err = failure("x = 1 / 0\ny = x + 1\nz = x * 2\n")
    assert codes(err) == ["E303"]


# ---- limits -----------------------------------------------------------------------------------

def test_e501_repeat_count_fails_fast():
    text = "block b(p) { conv p, 3x3; relu }\n" + NET.format("stage s = 1000000000000 x b(8)")
    start = time.perf_counter()
    err = failure(text)
    assert err.code == "E501"
    assert time.perf_counter() - start < 1.0


def test_e501_empty_blocks_fail_fast():
    start = time.perf_counter()
    err = failure("block e() {}\n" + NET.format("stage s = 1000000000000 x e()"))
    assert err.code == "E501"
    assert time.perf_counter() - start < 1.0


def test_e501_max_layers_raises_the_limit():
    text = "block b(p) { conv p, 3x3; relu }\n" + NET.format("stage s = 60 x b(8)")
    assert failure(text, max_layers=100).code == "E501"
    assert list(check_text(text, limits=Limits(max_layers=200)).networks) == ["n"]


def test_e501_blocks_multiplying_through_blocks():
    chain = "block e() {}\nblock d0() { e; e }\n" + "".join(
        f"block d{i}() {{ d{i - 1}; d{i - 1} }}\n" for i in range(1, 25))
    start = time.perf_counter()
    err = failure(chain + NET.format("d24"), max_layers=1000)
    assert err.code == "E501"
    assert err.message == "the network expands to more than 1,000 blocks"
    assert time.perf_counter() - start < 2.0


def test_long_chain_of_constants_is_no_recursion_error():
    lets = "x0 = 1\n" + "".join(f"x{i} = x{i - 1} + 1\n" for i in range(1, 1500))
    result = check_text(lets + NET.format("conv x1499 // 100, 3x3"))
    assert result.networks["n"].items[0].attrs["out"] == 15


def test_deep_expressions_inside_deep_blocks():
    """Expression depth and block depth both at their limits, together."""
    deep = "-" * 197 + "8"
    chain = "block d0() { conv " + deep + " * -1, 1x1 }\n" + "".join(
        f"block d{i}() {{ d{i - 1} }}\n" for i in range(1, 31))
    result = check_text(chain + NET.format("d30"))
    assert "n" in result.networks


# ---- file errors (E0xx) -----------------------------------------------------------------------

def file_failure(path) -> ResdslError:
    with pytest.raises(ResdslError) as info:
        check_file(str(path))
    return info.value


def test_e001_missing_file(tmp_path):
    err = file_failure(tmp_path / "nosuch.res")
    assert isinstance(err, InputError)
    assert render(err) == f"error[E001]: no such file: '{tmp_path / 'nosuch.res'}'"


def test_e002_directory(tmp_path):
    err = file_failure(tmp_path)
    assert render(err) == (f"error[E002]: '{tmp_path}' is a directory, not a spec file\n"
                           "  hint: pass a .res file")


def test_e003_path_through_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    err = file_failure(tmp_path / "notes.txt" / "net.res")
    assert err.code == "E003"
    assert render(err) == f"error[E003]: cannot read '{tmp_path / 'notes.txt' / 'net.res'}': " \
                          "Not a directory"


def test_e003_name_too_long(tmp_path):
    err = file_failure(tmp_path / ("a" * 5000 + ".res"))
    assert err.code == "E003"
    assert "File name too long" in err.message


def test_e003_permission_denied(tmp_path, monkeypatch):
    """(As root a mode-000 file is readable, so the refusal is simulated.)"""
    path = tmp_path / "secret.res"
    path.write_text("x = 1\n")

    real_open = os.open

    def refuse(p, *a, **k):
        if str(p) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(p, *a, **k)

    monkeypatch.setattr(os, "open", refuse)
    assert render(file_failure(path)) == f"error[E003]: cannot read '{path}': permission denied"


def test_e004_binary_and_not_utf8(tmp_path):
    (tmp_path / "bin.res").write_bytes(b"x = 1\x00\x01")
    (tmp_path / "latin1.res").write_bytes("x = 1 # café".encode("latin-1"))
    assert render(file_failure(tmp_path / "bin.res")) == (
        f"error[E004]: '{tmp_path / 'bin.res'}' is binary data, not a spec\n"
        "  hint: specs are plain UTF-8 text")
    assert render(file_failure(tmp_path / "latin1.res")) == (
        f"error[E004]: '{tmp_path / 'latin1.res'}' is not UTF-8 text (byte 11)\n"
        "  hint: specs are plain UTF-8 text")


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "bom.res").write_bytes("\ufeffx = 1\n".encode("utf-8"))
    assert check_file(str(tmp_path / "bom.res")).networks == {}


def test_e005_too_large(tmp_path):
    big = tmp_path / "huge.res"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    assert render(file_failure(big)) == (
        f"error[E005]: '{big}' is larger than 10,000,000 bytes, the most a spec may be")


def test_e002_endless_device():
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    start = time.perf_counter()
    err = failure('use "/dev/zero"\n', allow_any_path=True)
    assert err.code == "E002" and "a device, not a regular file" in err.message
    assert failure('use "/dev/zero"\n').code == "E211"  # not without the flag
    assert time.perf_counter() - start < 5


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_e002_a_fifo_is_refused_at_once_not_waited_on(tmp_path):
    """Issue 16: `resdsl check fifo.res`, or `use` of one, blocked forever."""
    fifo = tmp_path / "lib.res"
    os.mkfifo(fifo)
    start = time.perf_counter()
    assert render(file_failure(fifo)) == (
        f"error[E002]: '{fifo}' is a FIFO, not a regular file\n"
        "  hint: specs are read from regular files")
    spec = tmp_path / "net.res"
    spec.write_text('use "lib.res"\n', encoding="utf-8")
    err = file_failure(spec)
    assert err.code == "E002" and err.span.line == 1 and err.span.file == str(spec)
    assert time.perf_counter() - start < 5


# ---- `use` errors -----------------------------------------------------------------------------

def test_e206_use_cycle(tmp_path):
    (tmp_path / "a.res").write_text('use "b.res"\n')
    (tmp_path / "b.res").write_text('\nuse "a.res"\n')
    err = file_failure(tmp_path / "a.res")
    assert codes(err) == ["E206"]
    assert render(err) == f"""\
{tmp_path / 'b.res'}:2:1: error[E206]: `use` cycle: a.res -> b.res -> a.res
  |
2 | use "a.res"
  | ^^^^^^^^^^^
  hint: move the shared definitions into a file both can use"""


def test_e206_file_using_itself(tmp_path):
    (tmp_path / "self.res").write_text('use "self.res"\n')
    err = file_failure(tmp_path / "self.res")
    assert err.code == "E206"
    assert err.message == "`use` cycle: self.res -> self.res"


def test_e207_missing_file(tmp_path):
    (tmp_path / "net.res").write_text('use std\nuse "nope.res"\n')
    err = file_failure(tmp_path / "net.res")
    assert render(err) == f"""\
{tmp_path / 'net.res'}:2:1: error[E207]: `use`: no such file 'nope.res'
  |
2 | use "nope.res"
  | ^^^^^^^^^^^^^^
  hint: paths are relative to the spec's folder ({tmp_path})"""


def test_e207_unknown_library():
    err = failure("use stdd\nuse nonsense\n")
    assert codes(err) == ["E207", "E207"]
    assert render(err) == """\
net.res:1:1: error[E207]: no bundled library named 'stdd'
  |
1 | use stdd
  | ^^^^^^^^
  hint: did you mean 'std'?
net.res:2:1: error[E207]: no bundled library named 'nonsense'
  |
2 | use nonsense
  | ^^^^^^^^^^^^
  hint: bundled: cifar, plain, preact, resnet, resnet_v1, std, timm; use "file.res" for a file of your own"""


def test_e202_two_uses_defining_one_name(tmp_path):
    (tmp_path / "one.res").write_text("block b() { relu }\nblock c() { relu }\n")
    (tmp_path / "two.res").write_text("block b() { bn }\nblock c() { bn }\n")
    (tmp_path / "net.res").write_text('use "one.res"\nuse "two.res"\n')
    err = file_failure(tmp_path / "net.res")
    net = tmp_path / "net.res"
    assert render(err) == f"""\
{net}:2:1: error[E202]: 'b' and 'c' are defined both by `use one.res` and by `use two.res`
  |
2 | use "two.res"
  | ^^^^^^^^^^^^^
{net}:1:1: note: first brought in here
  |
1 | use "one.res"
  | ^^^^^^^^^^^^^
  hint: define each name in one file only, or define it here to choose"""


def test_own_definition_settles_a_clash_between_uses(tmp_path):
    (tmp_path / "one.res").write_text("block b() { relu }\n")
    (tmp_path / "two.res").write_text("block b() { bn }\n")
    (tmp_path / "net.res").write_text('use "one.res"\nuse "two.res"\nblock b() { relu }\n')
    check_file(str(tmp_path / "net.res"))


def test_errors_in_a_used_file_point_into_it(tmp_path):
    (tmp_path / "lib.res").write_text("block b() {\n  conv 8 3x3\n}\n")
    (tmp_path / "net.res").write_text('use "lib.res"\n')
    err = file_failure(tmp_path / "net.res")
    assert err.code == "E101"
    assert err.span.file == str(tmp_path / "lib.res")
    assert render(err).splitlines()[2] == "2 |   conv 8 3x3"


# ---- values given from Python -----------------------------------------------------------------

RESNET = str(Path(__file__).resolve().parent.parent / "specs" / "resnet.res")


@pytest.mark.parametrize("value, code", [
    (None, "E304"), ("nosuch", "E201"), (object(), "E304"), ({"a": 1}, "E304"),
    (2 ** 70, "E305"), (3.5, "E304"), ([1, 2], "E304"),
])
def test_bad_override_values_are_user_errors(value, code):
    with pytest.raises(ResdslError) as info:
        check_file(RESNET, networks=["resnet18"], overrides={"num_classes": value})
    assert info.value.code == code
    assert info.value.span is not None and info.value.span.file == RESNET


def test_override_values_from_python():
    r = check_file(RESNET, networks=["resnet18"],
                   overrides={"depths": [1, 1, 1, 1], "block": "bottleneck", "num_classes": 10})
    net = r.networks["resnet18"]
    assert net.args["depths"] == (1, 1, 1, 1)
    assert [len(s.blocks) for s in net.items if hasattr(s, "blocks")] == [1, 1, 1, 1]
    assert net.items[1].blocks[0].block == "bottleneck"


# ---- API-level errors (E208, E209) ------------------------------------------------------------

TWO = "network a {\n  input 3 x 8 x 8\n  conv 4, 3x3\n}\nnetwork b {\n  input 3 x 8 x 8\n}\n"


def test_e209_which_network():
    pytest.importorskip("torch")
    from resdsl.api import emit_python

    with pytest.raises(ResdslError) as info:
        emit_python(TWO)
    assert render(info.value) == ("error[E209]: the spec defines 2 buildable networks; say which "
                                  "with network=...\n  hint: networks: a, b")


def test_e208_unknown_feature():
    pytest.importorskip("torch")
    from resdsl.api import emit_python

    with pytest.raises(ResdslError) as info:
        emit_python(TWO, "a", features=["nope"])
    assert render(info.value) == ("error[E208]: no top-level layer or stage named 'nope' to take "
                                  "features from\n  hint: choose from conv1")


@pytest.mark.parametrize("text, hint", [
    ("network n {\n  input 3 x 8 x 8\n  batchnorm\n}\n",
     "did you mean 'bn'? (resdsl's name for batch normalisation)"),
    ("network n {\n  input 3 x 8 x 8\n  Linear 10\n}\n",
     "did you mean 'fc'? (resdsl's name for fully connected)"),
    ("network n {\n  input 3 x 8 x 8\n  stage s = 2 x basic(8)\n}\n",
     "'basic' is a block of the bundled library std: add `use std`"),
])
def test_unknown_names_users_bring_from_elsewhere_get_a_hint(text, hint):
    """Issue 17's first two: `batchnorm` for `bn`, a std block without `use std`."""
    err = failure(text)
    assert err.code == "E201" and err.hint == hint
