"""Regenerates docs/errors.md: runs `resdsl check` on one small spec per error code and pastes
the rendered output under it, so the page always shows what the compiler really prints.

    python docs/gen_errors.py            # rewrite docs/errors.md
    python docs/gen_errors.py --check    # exit 1 if docs/errors.md is stale or a code is missing

Every `code="E..."` in resdsl/ must have an entry below (the script says which are missing).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "errors.md"

# (code, title, meaning, {file: text}, command[, env]). Every .res file given as text is shown;
# bytes are written raw and not shown; None makes a directory. The command is `resdsl check
# ARGS` for a list of file names, `resdsl ARGS` when it starts with a subcommand, or
# ["python", CODE] for the Python API. `env` adds variables ("PATH": "" empties PATH).
TINY = {"net.res": "use std\nuse resnet\n\nnetwork tiny = resnet(basic, [1, 1, 1, 1])\n"}

EXAMPLES: list[tuple] = [
    # ---- E0xx: input ---------------------------------------------------------------------
    ("E001", "no such file", "The path given on the command line does not exist.",
     {}, ["nosuch.res"]),
    ("E002", "not a regular file", "The path names a directory, a FIFO, a device or a socket: "
     "only regular files are read (a FIFO would block, a device never end); pass the `.res` "
     "files in a directory.",
     {"specs/": None}, ["specs"]),
    ("E003", "cannot read the file",
     "The operating system refused the read: permission denied, a path through a file, an "
     "I/O error. The OS's reason is in the message.",
     {"notes.txt": "not a folder\n"}, ["notes.txt/net.res"]),
    ("E004", "not UTF-8 text",
     "The file holds a NUL byte (binary data) or bytes that are not UTF-8. A UTF-8 byte-order "
     "mark is accepted.",
     {"latin1.res": b"# caf\xe9\nuse std\n"}, ["latin1.res"]),
    ("E005", "file too large", "Specs are at most 10,000,000 bytes.",
     {"huge.res": b"#" * 99 + b"\n" * 1 + (b"#" * 99 + b"\n") * 100_000}, ["huge.res"]),
    # ---- E1xx: syntax --------------------------------------------------------------------
    ("E101", "unexpected token",
     "The text is not in the grammar at this point. The message lists what would be accepted, "
     "and a hint names the common mistakes: a reserved word where a name is expected, two "
     "arguments without a comma, a layer's arguments in parentheses (`conv(16, 3x3)`), a "
     "misspelt keyword (`netwrk`, named at its own place), `*` for a stage's `x`, a block or "
     "template called without parentheses, a missing `=` or `{`, a trailing `,`, `=` for `==`, "
     "an `else` on a line of its own. A `}` that closes a `{` indented differently gets a note.",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  conv 16 3x3\n}\n"},
     ["net.res"]),
    ("E102", "unexpected character",
     "A character that no token starts with: `×` for `x`, single quotes, a stray `@`, `:` "
     "for `=` (`stride: 2`), `use std.res` for `use std`.",
     {"net.res": "use 'std'\n"}, ["net.res"]),
    ("E103", "unexpected end of file",
     "The file ends inside a definition: usually a missing `}`. A note points at the bracket "
     "left open, or at a `}` indented unlike the `{` it closes (the likely place of the "
     "missing one).",
     {"net.res": "block b(planes) {\n  conv planes, 3x3\n"}, ["net.res"]),
    ("E104", "nested too deeply",
     "More than 64 brackets open at once, or an expression more than 200 operators deep. "
     "Bind parts of it with `name = ...` first.",
     {"net.res": "n = " + "(" * 65 + "1" + ")" * 65 + "\n"}, ["net.res"]),
    ("E105", "number literal too long or out of range",
     "A literal has more than 30 digits, or a float literal is not finite.",
     {"net.res": "n = 1234567890123456789012345678901\n"}, ["net.res"]),
    # ---- E2xx: names and arguments -------------------------------------------------------
    ("E201", "unknown name",
     "A name, layer, block, network template, shortcut kind or merge that is not defined "
     "(or not of the kind needed: a network where a block is wanted). Names from other files "
     "need a `use`; the hint names the closest match.",
     {"net.res": "block b(planes) {\n  conv planes, 3x3\n  bn\n  reul\n}\n"}, ["net.res"]),
    ("E202", "defined twice",
     "Two definitions with one name in a file, the same name brought in by two `use`s, a "
     "parameter declared twice, two layers with one name in a scope (often a label that "
     "collides with an automatic name such as `conv1`), or a block named like a built-in layer.",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  conv 16, 3x3\n"
                 "  conv1: conv 16, 3x3\n}\n"}, ["net.res"]),
    ("E203", "bad keyword argument",
     "A keyword the layer or block has no parameter for, an argument given twice, or a "
     "positional argument after a keyword one.",
     {"net.res": "block b(planes, stride = 1) {\n  conv planes, 3x3, strides = stride\n}\n"},
     ["net.res"]),
    ("E204", "wrong number of arguments",
     "A required argument is missing (`conv` needs `out` and `kernel`; a block or network "
     "template needs every parameter without a default), or there are more positional "
     "arguments than parameters.",
     {"net.res": "block b(planes) {\n  conv planes\n}\n"}, ["net.res"]),
    ("E205", "defined in terms of itself",
     "A block that uses itself, directly or through other blocks of the file, or a top-level "
     "`let` whose value depends on itself.",
     {"net.res": "block a(p) {\n  conv p, 3x3\n  b p\n}\n\nblock b(p) {\n  a p\n}\n"},
     ["net.res"]),
    ("E206", "`use` cycle", "Files that `use` each other, directly or in a ring.",
     {"a.res": 'use "b.res"\n', "b.res": 'use "a.res"\n'}, ["a.res"]),
    ("E207", "`use` target not found",
     "`use NAME` names no bundled library (specs/NAME.res), or `use \"path\"` names no file; "
     "paths are relative to the folder of the file that has the `use`.",
     {"net.res": "use stdlib\n"}, ["net.res"]),
    ("E208", "unknown feature name",
     "`--features` (or `features=` in the API) names something that is not a stage or a "
     "top-level layer of the network.",
     TINY, ["compile", "net.res", "--features", "layer5", "-o", "net.py"]),
    ("E209", "which network?",
     "The Python API was given a spec with several buildable networks (or none) and no "
     "`network=`.",
     {"two.res": "use std\nuse resnet\n\nnetwork a = resnet(basic, [1, 1, 1, 1])\n"
                 "network b = resnet(basic, [2, 2, 2, 2])\n"},
     ["python", "import resdsl\n\nresdsl.emit_python(\"two.res\")"]),
    ("E211", "`use` path outside the spec's folder",
     "`use \"path\"` reads only files in the folder of the spec being compiled (and below it; "
     "a bundled library reads its own folder): an absolute path, or one that leaves the folder "
     "with `..` or through a symbolic link, is refused unless `--allow-any-path` is given "
     "(API: `allow_any_path=True`).",
     {"net.res": 'use "../common.res"\n'}, ["net.res"]),
    ("E212", "bad argument to the Python API",
     "An argument of `resdsl.build` or `resdsl.emit_python` has the wrong type or value: the "
     "spec must be a path or spec text (a `pathlib.Path` is a path; a str is a path when it has "
     "no newline and ends in `.res` or names a file), `network` a str, `features` a list of "
     "names, the limits positive ints, `kernels` one of \"auto\", \"triton\", \"torch\" or "
     "None, and the flags (`fuse`, `allow_any_path`, ...) True or False.",
     {"net.res": "network n {\n  input 3 x 8 x 8\n  conv 4, 3x3\n}\n"},
     ["python", "import resdsl\n\nresdsl.build(\"net.res\", allow_any_path=\"no\")"]),
    ("E213", "a model resdsl.optimize cannot take",
     "`resdsl.optimize` takes a model `resdsl.build` made, as it made it: not another module, "
     "not a model optimized already, not one whose layers were replaced since.",
     {"net.res": "network n {\n  input 3 x 8 x 8\n  conv 4, 3x3\n}\n"},
     ["python", "import resdsl\n\nresdsl.optimize(resdsl.optimize(resdsl.build(\"net.res\")))"]),
    ("E214", "weights that do not fit the model",
     "`resdsl.load_backbone(model, state_dict)` loads a whole network's state_dict into a "
     "model built with `features=` (which stops at its last feature): every entry the model "
     "has must be in the state_dict, with its shape; the head's entries are left out.",
     {"net.res": "network n {\n  input 3 x 8 x 8\n  conv 4, 3x3\n}\n"},
     ["python", "import resdsl\n\nresdsl.load_backbone(resdsl.build(\"net.res\"), {})"]),
    # ---- E3xx: values --------------------------------------------------------------------
    ("E301", "value out of range",
     "A number outside its parameter's range: sizes, channels, strides, groups and dilations "
     "must be positive, padding non-negative, `eps`/`momentum` non-negative, dropout `p` in "
     "[0, 1], `input` sizes positive.",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  conv 16, 3x3, stride = 0\n}\n"},
     ["net.res"]),
    ("E302", "division is not exact",
     "`/` on integers must divide evenly, so a channel count never silently rounds. Use `//` "
     "to round down on purpose.",
     {"net.res": "use std\n\nnetwork n(width = 48) {\n  input 3 x 32 x 32\n"
                 "  conv width / 32 * 16, 3x3\n}\n"}, ["net.res"]),
    ("E303", "division by zero", "`/`, `//` or `%` by zero.",
     {"net.res": "use std\n\nnetwork n(groups = 0) {\n  input 3 x 32 x 32\n"
                 "  conv 64 // groups, 3x3\n}\n"}, ["net.res"]),
    ("E304", "wrong type",
     "A value of the wrong kind: a boolean where a number is wanted, a list where a size is, "
     "indexing a number, arithmetic on a block, a built-in layer or a network where a block "
     "is wanted, an `input` that is not C x H x W.",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  conv 16, 3x3, bias = 1\n}\n"},
     ["net.res"]),
    ("E305", "integer out of range",
     "An integer (literal or result) beyond ±2**62, or float arithmetic that overflowed.",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n"
                 "  conv 3037000500 * 3037000500, 3x3\n}\n"}, ["net.res"]),
    ("E306", "index out of range",
     "A list index outside the list; negative indices count from the end.",
     {"net.res": "use std\n\nnetwork net(depths) {\n  input 3 x 32 x 32\n"
                 "  stage layer1 = depths[0] x basic(16)\n"
                 "  stage layer2 = depths[1] x basic(32, stride = 2)\n"
                 "  stage layer3 = depths[2] x basic(64, stride = 2)\n}\n\n"
                 "network tiny = net([1, 1])\n"}, ["net.res"]),
    ("E307", "`input` missing or repeated", "Every network has exactly one `input C x H x W`.",
     {"net.res": "use std\n\nnetwork n {\n  conv 16, 3x3\n}\n"}, ["net.res"]),
    ("E308", "block structure",
     "A block's statements are out of order. The order is: layers, `residual { }`, "
     "`shortcut`, `merge`, layers, with one of each of the three; a `residual` needs a "
     "`shortcut`; `shortcut none` takes no `merge`; nothing of the three nests inside "
     "`residual`. A stage needs at least one block. A residual branch that is merged needs "
     "at least one layer (counting those of its nested blocks).",
     {"net.res": "block b(planes) {\n  residual {\n    conv planes, 3x3\n  }\n"
                 "  shortcut identity\n  relu\n  merge add\n}\n"}, ["net.res"]),
    # ---- E4xx: shapes --------------------------------------------------------------------
    ("E401", "channels not divisible by groups",
     "A grouped conv's input and output channels must both be multiples of `groups`.",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  conv 16, 3x3\n"
                 "  conv 30, 3x3, groups = 4\n}\n"}, ["net.res"]),
    ("E402", "input smaller than the kernel",
     "A conv or pool window (dilated, after padding) is larger than its input; usually too "
     "many stride-2 layers for the input size.",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 4 x 4\n  conv 16, 7x7, padding = 0\n}\n"},
     ["net.res"]),
    ("E403", "pool padding too large",
     "A pool's padding is more than half its kernel (PyTorch refuses it too).",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  maxpool 3x3, padding = 2\n}\n"},
     ["net.res"]),
    ("E404", "a feature-map layer on a flat tensor",
     "`conv`, `bn`, the pools and shortcuts need a C x H x W input, but the tensor was already "
     "flattened (by `flatten` or `fc`).",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  flatten\n  bn\n}\n"},
     ["net.res"]),
    ("E405", "fc on a feature map",
     "`fc` takes a flat tensor or a C x 1 x 1 map; pool or flatten first.",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n  conv 16, 3x3\n  fc 10\n}\n"},
     ["net.res"]),
    ("E406", "branches of different shapes",
     "The residual branch and the shortcut end in different shapes, so `merge add` cannot "
     "add them (typically a custom `shortcut { }` that does not match the residual).",
     {"net.res": "block b(planes, stride = 1) {\n  residual {\n    conv planes, 3x3, stride = stride\n"
                 "  }\n  shortcut {\n    conv planes, 1x1\n  }\n  merge add\n}\n\n"
                 "network n {\n  input 3 x 32 x 32\n  b 16, stride = 2\n}\n"}, ["net.res"]),
    ("E407", "shortcut cannot match the residual",
     "`shortcut identity` where the residual branch changes the shape, or `shortcut pad` "
     "where it reduces channels or subsamples unevenly.",
     {"net.res": "block b(planes) {\n  residual {\n    conv planes, 3x3\n  }\n"
                 "  shortcut identity\n  merge add\n}\n\nnetwork n {\n  input 3 x 32 x 32\n"
                 "  b 16\n}\n"}, ["net.res"]),
    # ---- E5xx: limits --------------------------------------------------------------------
    ("E501", "too many layers",
     "A network expands to more than 100,000 layers (change with `--max-layers N`). A huge "
     "stage is caught before its blocks are built, so a count like 10**12 costs nothing.",
     {"net.res": "use std\n\nnetwork n {\n  input 3 x 32 x 32\n"
                 "  stage layer1 = 20000 x basic(16)\n}\n"}, ["net.res"]),
    ("E502", "nested too deeply",
     "Block instances nested more than 32 deep, which happens when a block reaches itself "
     "through a block argument, or files that `use` each other in a chain more than 64 deep. "
     "The CLI also reports Python running out of stack under this code, as "
     "`error[E502]: input nested too deeply to process`.",
     {"net.res": "block twice(f) {\n  f f\n}\n\nnetwork n {\n  input 3 x 8 x 8\n"
                 "  twice twice\n}\n"}, ["net.res"]),
    ("E503", "list too long", "Lists hold at most 10,000 items.",
     {"net.res": "use std\n\nnetwork n(depths = [2] * 20000) {\n  input 3 x 32 x 32\n}\n"},
     ["net.res"]),
    ("E505", "too many parameters",
     "A network has more than 1,000,000,000 parameters (4 GB of float32 weights); change the "
     "limit with `--max-params N` (API: `max_params=N`). Checked after shape inference, before "
     "any backend allocates anything.",
     {"net.res": "network wide {\n  input 3 x 32 x 32\n  conv 40000, 3x3\n  conv 40000, 3x3\n}\n"},
     ["net.res"]),
    ("E506", "too many multiply-accumulates",
     "A network needs more than 10**12 multiply-accumulates per sample; change the limit with "
     "`--max-macs N` (API: `max_macs=N`). MACs grow with the input size, so `--input` can "
     "reach it too.",
     {"net.res": "network big {\n  input 3 x 8192 x 8192\n  conv 4096, 3x3\n}\n"},
     ["net.res"]),
    ("E507", "attribute too large for PyTorch",
     "A layer's integer attribute (a kernel, stride, padding, dilation, channel or group count)"
     " or an input size is above 2**31 - 1: PyTorch computes output sizes from these in 64-bit "
     "integers, which such values can overflow, so shape inference and PyTorch would disagree.",
     {"net.res": "network n {\n  input 3 x 32 x 32\n  conv 8, 3x3, dilation = 4611686018427387903"
                 "\n}\n"},
     ["net.res"]),
    ("E508", "too many sizes to check pair by pair",
     "`resdsl verify` checks H and W one at a time, except in a network where they meet in a "
     "`merge mul` of two maps (not a 1x1 gate): there every (H, W) pair of `--sizes` is "
     "checked, at most 250,000 pairs (500 sizes).",
     {"net.res": "block gate(planes) {\n  residual {\n    conv planes, 1x1, stride = 1x2\n  }\n"
                 "  shortcut identity\n  merge mul\n}\n\nnetwork net {\n  input 8 x 8 x 1\n"
                 "  gate 8\n}\n"},
     ["verify", "net.res", "--sizes", "1..1000", "--examples", "0"]),
    # ---- E6xx: output and external tools --------------------------------------------------
    ("E601", "Graphviz `dot` not found",
     "`resdsl draw` to .svg, .png or .pdf runs Graphviz's `dot` program; it is not on PATH. "
     "A .dot file needs no program.",
     TINY, ["draw", "net.res", "-o", "net.png"], {"PATH": ""}),
    ("E604", "cannot write the output",
     "The output file of `compile`, `draw` or `fmt` cannot be written; the OS's reason is in "
     "the message.",
     TINY, ["compile", "net.res", "--emit", "ir", "-o", "out/net.txt"]),
    ("E605", "unknown picture format",
     "`resdsl draw -o` must end in .svg, .png, .pdf or .dot. The CLI reports it as a usage "
     "error (exit 2) with this message; the API raises it as E605.",
     TINY, ["draw", "net.res", "-o", "net.bmp"]),
]

# Codes that cannot be triggered on demand here: described, with the text that is printed.
FIXED = [
    ("E602", "optional package missing",
     "A feature needs a Python package that is not installed: `graphviz` for `draw`, `onnx` "
     "and `onnxscript` for `compile --emit onnx`, `hypothesis` for `verify`'s PyTorch part and "
     "`resdsl.testing`. The message names it and the hint the pip command, e.g.:",
     "error[E602]: ONNX export needs the `onnx` package: No module named 'onnx'\n"
     "  hint: pip install onnx onnxscript onnxruntime"),
    ("E603", "Graphviz failed",
     "Graphviz's `dot` ran but failed; its first line of error output is in the message.",
     "error[E603]: Graphviz's `dot` failed: <dot's message>"),
    ("E210", "a layer name PyTorch reserves",
     "A label (or stage, or a shortcut's label) named like an attribute of an nn.Module "
     "(`forward`, `training`, `_parameters`, ...), of every generated class (`zero_init`, "
     "`_resdsl_source`), of a block class (`downsample`) or of the network class (`FOLDED`, "
     "`from_trained`, `resdsl_graph`, `resdsl_options`, `feature_info`, at the top level) "
     "cannot be a submodule name; nor can a name of nn.Sequential's (`append`, `pop`, ...) be "
     "a key path's inner name (`a.append`) or a custom shortcut's layer. `resdsl check` finds "
     "it (from lists of nn.Module's and nn.Sequential's names, without importing torch).",
     "x.res:4:5: error[E210]: 'forward' cannot name a layer in PyTorch: nn.Module (or the "
     "generated block class) already uses it\n  hint: label it differently, e.g. 'forward_'"),
    ("E606", "torch missing",
     "The PyTorch backend (`compile --emit python|onnx`, `resdsl.build`) needs torch.",
     "error[E606]: the PyTorch backend needs torch\n"
     "  hint: pip install torch (e.g. pip install torch==2.13.0)"),
    ("E504", "out of memory",
     "Python ran out of memory building the spec; the CLI prints this instead of a traceback.",
     "error[E504]: out of memory; the spec is too large to build"),
]

HEADER = """\
# Error codes

Every problem with an input is reported with a stable code, the file, line and column, the
source line with a caret under the culprit, and often a hint. One run reports every independent
error it finds (then a closing `N errors` line). Colour is used only on a terminal, never under
`NO_COLOR` or `TERM=dumb`.

An error inside a block or a network template is followed by notes naming each use of it, down
to the network (`in block 'bottleneck' (std.res:27), used by stage 's1' here`, then `in network
'n'`). When the value at fault came from an argument written in the file being checked, the
error points at that argument, and the library's line becomes a note (`the argument is used
here`), as rustc does for a macro's expansion.

Every `resdsl` command exits with 0 on success, 1 when an input has errors, 2 for a usage error
(a bad option). Anything else escaping the compiler is a bug in resdsl, reported as
`internal error: ...` with exit code 70 (`RESDSL_DEBUG=1` shows the traceback).

| range | class | what |
| --- | --- | --- |
| E0xx | `InputError` | the file cannot be read |
| E1xx | `SpecSyntaxError` | the text is not in the language |
| E2xx | `SpecNameError` | names, arguments and references |
| E3xx | `SpecValueError` | values out of range or of the wrong type |
| E4xx | `ShapeError` | tensor shapes that do not fit together |
| E5xx | `LimitError` | a spec too large or too deep to build |
| E6xx | `ResdslError`, `DrawError` | writing output, external tools, optional packages |

All classes derive from `resdsl.errors.ResdslError` (its fallback code `E000` is never issued);
the Python API (`resdsl.build`, `resdsl.emit_python`) raises them as exceptions, and `str(e)`
gives the `file:line:col: error[CODE]: message` line.
The outputs below are produced by `python docs/gen_errors.py`, which runs each example
(`--check` tells whether this page is stale); do not edit them by hand.
"""


def _setup(tmp: Path, files: dict) -> None:
    for name, text in files.items():
        path = tmp / name
        if text is None:
            path.mkdir(parents=True, exist_ok=True)
        elif isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")


COMMANDS = {"check", "fmt", "summary", "compile", "draw", "verify"}


def _argv(cmd: list[str]) -> tuple[list[str], str]:
    """The argv to run and the command line to show."""
    if cmd[0] == "python":  # API code: its ResdslError printed as str() + hint, no traceback
        wrapped = ("from resdsl.errors import ResdslError\ntry:\n" +
                   "".join(f"    {line}\n" for line in cmd[1].splitlines()) +
                   "except ResdslError as e:\n    print(f'{type(e).__name__}: {e}')\n"
                   "    print(f'  hint: {e.hint}') if e.hint else None\n")
        return [sys.executable, "-c", wrapped], "python example.py"
    args = cmd if cmd[0] in COMMANDS else ["check", *cmd]
    return [sys.executable, "-m", "resdsl", *args], "resdsl " + " ".join(args)


def _run(tmp: Path, cmd: list[str], extra: dict | None = None) -> str:
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT), **(extra or {}))
    if env.get("PATH") == "":
        env["PATH"] = str(tmp / "empty-path")
    argv, _ = _argv(cmd)
    proc = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)
    out = (proc.stdout + proc.stderr).replace(str(tmp) + os.sep, "").rstrip("\n")
    return out if cmd[0] == "python" else out + f"\n(exit {proc.returncode})"


def _shown(files: dict) -> list[tuple[str, str]]:
    return [(name, text) for name, text in files.items()
            if isinstance(text, str) and name.endswith(".res")]


def render() -> str:
    parts = [HEADER]
    section = ""
    titles = {"0": "Input (E0xx)", "1": "Syntax (E1xx)", "2": "Names and arguments (E2xx)",
              "3": "Values (E3xx)", "4": "Shapes (E4xx)", "5": "Limits (E5xx)",
              "6": "Output and tools (E6xx)"}
    entries = sorted([(e[0], e) for e in EXAMPLES] + [(f[0], f) for f in FIXED])
    for code, entry in entries:
        if code[1] != section:
            section = code[1]
            parts.append(f"## {titles[section]}\n")
        if entry in FIXED:
            _, title, meaning, text = entry
            parts.append(f"### {code}: {title}\n\n{meaning}\n\n```console\n{text}\n```\n")
            continue
        _, title, meaning, files, cmd, *env = entry
        with tempfile.TemporaryDirectory(prefix="resdsl-err-") as d:
            tmp = Path(d)
            _setup(tmp, files)
            output = _run(tmp, cmd, env[0] if env else None)
        parts.append(f"### {code}: {title}\n\n{meaning}\n")
        for name, text in _shown(files):
            parts.append(f"```\n# {name}\n{text.rstrip()}\n```\n")
        if cmd[0] == "python":
            parts.append(f"```python\n# example.py\n{cmd[1]}\n```\n")
        shown_env = "".join(f"{k}={v} " if v else f"{k}= "
                            for k, v in (env[0] if env else {}).items())
        parts.append(f"```console\n$ {shown_env}{_argv(cmd)[1]}\n{output}\n```\n")
    return "\n".join(parts)


def _codes_in_source() -> set[str]:
    codes = set()
    for path in [*(ROOT / "resdsl").glob("*.py"), *(ROOT / "backends").glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        codes |= set(re.findall(r'code="(E\d{3})"', text))
        codes |= set(re.findall(r"error\[(E\d{3})\]", text))
    return codes


def main() -> int:
    documented = {e[0] for e in EXAMPLES} | {f[0] for f in FIXED}
    missing = sorted(_codes_in_source() - documented)
    if missing:
        print(f"codes without an entry in docs/gen_errors.py: {', '.join(missing)}",
              file=sys.stderr)
        return 1
    text = render()
    if "--check" in sys.argv[1:]:
        if OUT.read_text(encoding="utf-8") != text:
            print("docs/errors.md is stale: run python docs/gen_errors.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
