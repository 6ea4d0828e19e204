"""Fuzzing campaign: generated and mutated inputs through check, summary, compile and draw.

    python benchmarks/fuzz.py --n 100000 --seed 1          # the campaign
    python benchmarks/fuzz.py --n 2000 --time-budget 60     # a quick look
    python benchmarks/fuzz.py --seed 1 --replay 4711        # one input again, with traceback
    python benchmarks/fuzz.py --names --n 20000 --seed 1    # the name campaign

Every input is made from its own generator, `random.Random(f"{seed}-{index}")`, so a run is
reproducible and any single input can be replayed by its index. Kinds of input, in turn:

  bytes      random bytes (some printable), decoded as the loader decodes files
  truncate   a bundled spec (specs/*.res) cut at a random character
  token      a bundled spec with 1-4 token-level edits: delete, duplicate, swap, replace with
             a token of the language's vocabulary or of the file, numbers made extreme
  lines      a bundled spec with lines deleted, duplicated, swapped or spliced from another
  generate   a grammar-aware random spec (blocks of every shortcut kind, stages, stem, head),
             nearly valid: 0-2 token edits

Each input is checked as a file beside the bundled specs (so `use std` and `use "resnet.res"`
resolve), through the same pipeline as `resdsl check`: the static checks of the whole file,
then elaboration and shapes of at most two of its networks, chosen at random (a bundled file
defines up to 14, some of thousands of layers). When it checks, those networks go through the summary (table and JSON), the IR (text and JSON), the
PyTorch backend's Python source (after the passes, as `resdsl compile` lowers it, or in
three cases of ten `resdsl compile --inference`; compiled with Python's `compile`, not
executed) and the Graphviz backend's DOT source at a random
level; a small random sample of small networks is also built as a torch module and run
forward, and a tenth of the inputs go through `fmt` (idempotent, same AST).

The outcome of an input is `ok`, the code of its first error (`E210@backends` when only a
backend finds it: the spec checks but does not compile), or a bug: `internal:<Type>@stage`
(anything but a ResdslError), `nocode` (a ResdslError with code E000) or `nospan:<code>` (an
error about the text, E1xx-E5xx, without a location, or with one outside the text). Bugs are
saved to --crash-dir with their traceback. The table of outcomes is printed last.

With --names, the inputs are tiny specs (3x8x8 inputs, widths 4-16, a few blocks) whose
names in every role (network, template parameter, block, block parameter, let, stage, labels
of layers, nested blocks, shortcuts, custom shortcut layers, stem and head, key paths like
`a.0.b`, numbers) are drawn from Python's keywords and builtins, dunders, underscores, digits
after `_`, nn.Module's attributes, torch's and the runtime's names, the identifiers of an
emitted file, the DSL's own words, lookalikes, very long names, names differing only by case,
and a few non-ASCII ones. The property: `check` refuses it with a coded error located in the
text, or every emit mode's file (python, --standalone, --inference, --no-fuse), written to a
folder and imported, constructs and runs: parameters and output shape as the summary says
(the inference file: its own graph's parameters), the same state_dict keys and outputs as the
python file's (the inference one via from_trained), and resdsl.build and resdsl.optimize
likewise; the built model also pickles (torch.save / torch.load), builds as a features model
(the last top-level item and one more; shapes as the graph says, the last one's output the
network's) and with synchronized BN (one process, a training step too), each with the
python file's outputs. A backend error after check passed is a bug (`checkgap:<code>@<mode>`), as is any
other exception (`internal:<Type>@<mode>`) or a disagreement (`params@`, `shape@`, `values@`,
`keys@build`, `count@features`).
"""
from __future__ import annotations

import argparse
import functools
import os
import random
import re
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
sys.path.insert(0, str(ROOT))

from resdsl import ir  # noqa: E402
from resdsl.backends import draw, summary  # noqa: E402
from resdsl.backends.pytorch import emit  # noqa: E402
from resdsl.elaborate import concrete_networks  # noqa: E402
from resdsl.errors import Renderer, ResdslError  # noqa: E402
from resdsl.fmt import format_text  # noqa: E402
from resdsl.graph import totals  # noqa: E402
from resdsl.loader import decode, load_text  # noqa: E402
from resdsl.parse import parse  # noqa: E402
from resdsl.pipeline import Limits, check_program, lower  # noqa: E402

FILE = str(SPECS / "fuzzed.res")   # the input poses as a file among the bundled specs
BUNDLED = {p.name: p.read_text(encoding="utf-8") for p in sorted(SPECS.glob("*.res"))}
MAX_LAYERS = 20_000                # the bundled specs need ~4,000 (resnet1202)
TORCH_EVERY = 0.02                 # share of checked inputs also built as torch modules
TORCH_MAX_PARAMS = 3_000_000

KEYWORDS = ["use", "block", "network", "residual", "shortcut", "merge", "input", "stage",
            "stem", "head", "true", "false", "x", "add"]
LAYERS = ["conv", "bn", "relu", "maxpool", "avgpool", "fc", "flatten", "dropout"]
WORDS = ["planes", "stride", "groups", "width", "dilation", "padding", "bias", "zero_init",
         "ceil_mode", "count_include_pad", "eps", "momentum", "p", "kernel", "out", "identity",
         "pad", "projection", "always", "avgdown", "none", "basic", "bottleneck", "preact_basic",
         "std", "resnet", "depths", "block", "num_classes", "forward", "training", "self",
         "__init__", "import", "os", "downsample", "_", "layer1"]
NUMBERS = ["0", "1", "2", "3", "7", "16", "64", "-1", "0.5", "1e-5", "1.", "1e308", "1e999",
           "4611686018427387904", "99999999999999999999999999999", "123456789012345678901234567890123",
           "3x3", "1x1", "0x0", "7x7", "3x224x224", "1x1x1x1", "2x0"]
PUNCT = ["(", ")", "[", "]", "{", "}", ",", ";", ":", "=", "+", "-", "*", "/", "//", "%", "\n",
         "\\\n", "#", '"', "x", "\t", "\r\n", "\ufeff", "×", "@", "'"]
STRINGS = ['"std.res"', '"resnet.res"', '"nosuch.res"', '"../specs/std.res"', '"/etc/passwd"',
           '"."', '""', '"fuzzed.res"', '"cifar.res"']
VOCAB = KEYWORDS + LAYERS + WORDS + NUMBERS + PUNCT + STRINGS
TOKEN = re.compile(r'[ \t]+|\r?\n|#[^\n]*|"[^"\n]*"?|\d+(?:x\d+)+|\d+\.?\d*(?:[eE][+-]?\d+)?'
                   r'|[A-Za-z_]\w*|//|.', re.S)
KINDS = ["bytes", "truncate", "token", "token", "token", "lines", "generate", "generate",
         "generate"]


# ---- inputs --------------------------------------------------------------------------------

def random_bytes(rng: random.Random) -> bytes:
    n = rng.choice([0, 1, 2, 8, 40, 200, 1000])
    if rng.random() < 0.5:
        return rng.randbytes(n)
    alphabet = "".join(VOCAB) + " \n\t{}()[]"
    return "".join(rng.choice(alphabet) for _ in range(n)).encode("utf-8")


def truncate(rng: random.Random) -> str:
    text = rng.choice(list(BUNDLED.values()))
    return text[:rng.randrange(len(text) + 1)]


def mutate_tokens(rng: random.Random, text: str, edits: int) -> str:
    toks = TOKEN.findall(text)
    for _ in range(edits):
        if not toks:
            toks = [rng.choice(VOCAB)]
        i = rng.randrange(len(toks))
        op = rng.choice(["delete", "dup", "swap", "vocab", "vocab", "file", "number", "insert"])
        if op == "delete":
            del toks[i]
        elif op == "dup":
            toks.insert(i, toks[i])
        elif op == "swap":
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
        elif op == "vocab":
            toks[i] = rng.choice(VOCAB)
        elif op == "file":
            toks[i] = rng.choice(toks)
        elif op == "insert":
            toks.insert(i, rng.choice([" ", ""]) + rng.choice(VOCAB) + rng.choice([" ", ""]))
        else:
            nums = [k for k, t in enumerate(toks) if t[:1].isdigit()]
            k = rng.choice(nums) if nums else i
            toks[k] = rng.choice(NUMBERS + [str(rng.randrange(1, 4096)),
                                            f"{rng.randrange(0, 9)}x{rng.randrange(0, 9)}"])
    return "".join(toks)


def mutate_lines(rng: random.Random, text: str) -> str:
    lines = text.split("\n")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.choice(["delete", "dup", "swap", "splice"])
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            other = rng.choice(list(BUNDLED.values())).split("\n")
            a = rng.randrange(len(other))
            lines[i:i] = other[a:a + rng.randint(1, 6)]
    return "\n".join(lines)


def _layer(rng: random.Random, sym: bool) -> str:
    """One layer statement; `sym`: inside a block, may use the block's parameters."""
    w = rng.choice(["planes", "planes * 2", "planes // 2"] if sym else ["8", "16", "32"])
    s = rng.choice(["stride"] if sym else ["1", "2"])
    k = rng.choice(["3x3", "1x1", "5x5", "3", "1x3"])
    return rng.choice([
        f"conv {w}, {k}", f"conv {w}, {k}, stride = {s}", f"conv {w}, 3x3, groups = 2",
        f"conv {w}, 3x3, dilation = 2", f"conv {w}, 1x1, bias", "bn", "bn(zero_init)", "relu",
        "bn; relu", f"maxpool 3x3, stride = {s}", "maxpool 2x2", "avgpool 2x2",
        "avgpool 3x3, stride = 2, ceil_mode", "dropout 0.1", f"label{rng.randrange(3)}: relu"])


def _block(rng: random.Random, name: str) -> str:
    """A block of random layers (a residual branch with none, ~6%, is E308 but for
    `shortcut none`) with a random shortcut, merge and post-activation."""
    body = [f"    {_layer(rng, True)}" for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.7:
        body.insert(0, "    conv planes, 3x3, stride = stride")
    kind = rng.choice(["identity", "pad", "projection", "projection(always)", "avgdown", "none",
                       "{ conv planes, 1x1, stride = stride; bn }"])
    pre = "  bn; relu\n" if rng.random() < 0.2 else ""
    merge = "" if kind == "none" or rng.random() < 0.3 else "  merge add\n"
    post = "  relu\n" if merge and rng.random() < 0.5 else ""
    return (f"block {name}(planes, stride = 1) {{\n{pre}  residual {{\n" + "\n".join(body)
            + f"\n  }}\n  shortcut {kind}\n{merge}{post}}}\n")


def generate(rng: random.Random) -> str:
    """A nearly valid spec: random blocks, a network using them (and std's), 0-2 edits."""
    parts = ["use std\n"] if rng.random() < 0.8 else []
    blocks = [f"blk{i}" for i in range(rng.randint(0, 2))]
    parts += [_block(rng, b) for b in blocks]
    avail = blocks + (["basic", "bottleneck", "basic_a", "preact_basic", "bottleneck_d"]
                      if parts and parts[0].startswith("use") else [])
    c, h = rng.choice([1, 3, 4]), rng.choice([8, 16, 32, 33, 64])
    net = [f"  input {c} x {h} x {rng.choice([h, h, 17, 40])}"]
    if rng.random() < 0.7:
        net.append("  stem { conv 16, 3x3; bn; relu }")
    for i in range(rng.randint(0, 4) if avail else 0):
        b = rng.choice(avail)
        stride = rng.choice(["", "", ", stride = 2"])
        net.append(f"  stage layer{i + 1} = {rng.randint(1, 3)} x {b}({rng.choice([8, 16, 32])}"
                   f"{stride})")
    for _ in range(rng.randint(0, 2)):
        net.insert(rng.randint(1, len(net)), "  " + _layer(rng, False))
    if rng.random() < 0.8:
        net.append("  head { avgpool: avgpool; fc: fc " + rng.choice(["10", "num_classes"])
                   + " }")
    if rng.random() < 0.5:
        parts.append("network tmpl(num_classes = 10) {\n" + "\n".join(net) + "\n}\n")
        parts.append(f"network net = tmpl({rng.choice(['', '5', 'num_classes = 3'])})\n")
    else:
        parts.append("network net {\n" + "\n".join(net).replace("num_classes", "10") + "\n}\n")
    text = "\n".join(parts)
    return mutate_tokens(rng, text, rng.choice([0, 0, 1, 1, 2])) if rng.random() < 0.8 else text


def make_input(seed: int, index: int) -> tuple[str, random.Random, str | bytes]:
    rng = random.Random(f"{seed}-{index}")
    kind = rng.choice(KINDS)
    if kind == "bytes":
        return kind, rng, random_bytes(rng)
    if kind == "truncate":
        return kind, rng, truncate(rng)
    if kind == "token":
        return kind, rng, mutate_tokens(rng, rng.choice(list(BUNDLED.values())),
                                        rng.randint(1, 4))
    if kind == "lines":
        return kind, rng, mutate_lines(rng, rng.choice(list(BUNDLED.values())))
    return kind, rng, generate(rng)


# ---- running one input ---------------------------------------------------------------------

class Bug(Exception):
    """A finding: the outcome key and what to save."""

    def __init__(self, key: str, detail: str):
        super().__init__(key)
        self.key, self.detail = key, detail


def _validate(err: ResdslError, texts: dict[str, str]) -> None:
    """Every error has a code; every error about the text points inside it."""
    for e in err.errors:
        if not re.fullmatch(r"E\d{3}", e.code) or e.code == "E000":
            raise Bug("nocode", f"{type(e).__name__}: {e}")
        about_text = e.code[1] in "12345" and e.code != "E504"
        if about_text and e.span is None:
            raise Bug(f"nospan:{e.code}", str(e))
        for span in ([e.span] if e.span else []) + [s for s, _ in e.notes]:
            lines = texts.get(span.file)
            if lines is None:
                raise Bug(f"nospan:{e.code}", f"span in unknown file {span.file}: {e}")
            if not (1 <= span.line <= lines and span.col >= 1 and span.end_line >= span.line):
                raise Bug(f"nospan:{e.code}", f"span {span} outside the text: {e}")
    Renderer(dict(err.sources)).render(err)


def run_one(data: str | bytes, rng: random.Random, stats: Counter) -> str:
    """The outcome of one input (raises Bug for a finding)."""
    stage = "check"
    texts = {str(SPECS / k): v.count("\n") + 1 for k, v in BUNDLED.items()}
    try:
        text = decode(data, FILE) if isinstance(data, bytes) else data
        texts[FILE] = text.count("\n") + 1
        if rng.random() < 0.1:
            stage = "fmt"
            _fmt(text)
        stage = "check"
        program = load_text(text, FILE, str(SPECS))
        names = concrete_networks(program.root)
        names = rng.sample(names, 2) if len(names) > 2 else names
        checked = check_program(program, names, limits=Limits(max_layers=MAX_LAYERS))
        for name in names:
            stage = "backends"
            _backends(checked, name, rng, stats)
        return "ok"
    except Bug:
        raise
    except ResdslError as e:
        _validate(e, texts)
        # an error only a backend finds (E210: a label PyTorch reserves) is an outcome of its
        # own: the spec checks, but does not compile
        return e.code if stage in ("check", "fmt") else f"{e.code}@{stage}"
    except Exception as e:  # noqa: BLE001 - the point of the exercise
        raise Bug(f"internal:{type(e).__name__}@{stage}", traceback.format_exc()) from None


def _fmt(text: str) -> None:
    try:
        out = format_text(text, FILE)
    except ResdslError:
        return  # reported again, and validated, by check
    if format_text(out, FILE) != out or parse(out, FILE) != parse(text, FILE):
        raise Bug("internal:FmtUnstable@fmt", text)


def _backends(checked, name: str, rng: random.Random, stats: Counter) -> None:
    g = checked.graphs[name]
    depth = rng.randint(1, 3)
    summary.table(g, depth)
    summary.to_json(g, depth)
    ir.to_text(g)
    ir.to_json(g)
    ir.verify(g)
    inference = rng.random() < 0.3  # as `resdsl compile --inference` does, else as compile
    g = lower(g, inference=inference)
    source, cls = emit(g, FILE)
    compile(source, "<fuzz>", "exec")
    level = rng.choice(["stage", "block", "layer"] if len(g) < 3000 else ["stage", "block"])
    dot = draw.to_dot(g, level).source
    if not dot.startswith("digraph"):
        raise Bug("internal:NotDot@draw", dot[:200])
    stats["backends"] += 1
    if rng.random() < TORCH_EVERY and totals(g)["params"] <= TORCH_MAX_PARAMS:
        _torch(source, cls, g)
        stats["torch"] += 1


def _torch(source: str, cls: str, g) -> None:
    import torch

    from resdsl.backends.pytorch import instantiate

    model = instantiate(source, cls, "<fuzz>").eval()
    n = sum(p.numel() for p in model.parameters())
    if n != totals(g)["params"]:
        raise Bug("internal:ParamCount@torch", f"{n} != {totals(g)['params']}")
    with torch.no_grad():
        y = model(torch.randn(1, *g.graph["input"]))
    if tuple(y.shape[1:]) != g.nodes["output"]["shape"]:
        raise Bug("internal:OutputShape@torch", f"{tuple(y.shape)} vs IR")


# ---- name fuzzing (--names) ----------------------------------------------------------------
# Tiny specs (3x8x8 inputs, widths 4-16) whose names, in every role a name takes, come from
# the pools below; the property: `check` passes => every emit mode's file imports, constructs
# and runs, with the output shape and parameter count `summary` gives; else a located,
# coded ResdslError.

NAME_MODES = {"python": {}, "standalone": {"standalone": True},
              "inference": {"inference": True}, "no-fuse": {"fuse": False}}
PLAIN = ["a", "b", "blk", "net", "planes", "stride", "width", "conv1", "bn1", "relu", "fc",
         "layer1", "layer2", "downsample", "shortcut", "stem", "head", "avgpool", "out", "mid",
         "Block", "Net", "A", "B"]
DSL = ["use", "block", "network", "residual", "shortcut", "merge", "input", "stage", "stem",
       "head", "true", "false", "x", "and", "or", "not", "if", "else", "conv", "bn", "relu",
       "maxpool", "avgpool", "fc", "flatten", "dropout", "drop_path", "sigmoid", "add", "mul",
       "identity", "projection", "pad", "avgdown", "none", "always", "zero_init", "bias",
       "in_channels", "index", "block_index", "num_blocks", "make_divisible", "log2", "sum",
       "min", "max", "std", "basic", "bottleneck"]
DUNDERS = ["__init__", "__class__", "__dict__", "__slots__", "__x__", "__import__",
           "__builtins__", "__module__", "__qualname__", "__name__", "__file__", "__spec__",
           "__loader__", "__package__", "__doc__", "__all__", "__path__", "__getattr__",
           "__call__", "__annotations__", "__weakref__", "__new__", "__del__", "__future__",
           "__debug__", "__build_class__", "__main__", "___", "____x", "__", "__a", "__a_"]
UNDERSCORE = ["_", "_x", "_X", "_a", "_self", "_x_", "_in", "_out", "_kernels", "_conv",
              "_forward", "_version", "_modules", "_parameters", "_buffers", "_apply",
              "_name", "_triton", "_config", "_RES_CODE", "_register"]
DIGITS = ["_0", "_1", "_2", "_9", "_01", "_12", "__1", "__2", "_1_", "_1x1", "_3x3", "_2d",
          "_1e5", "x_1", "a_0", "n0", "n_0", "_0_0", "_1_2_3", "v2", "layer_1"]
LOOKALIKE = ["l", "I", "O", "l1", "I1", "Il1", "O0", "o0", "rn", "m", "u00e9", "U0001F600",
             "x00", "x41", "N", "xn__mnchen_3ya", "u200b", "uFEFF", "nbsp", "_u2028_",
             "e_0301", "NUL", "CON", "lI", "Il", "Ol0", "OO0O0", "x_x", "xx", "X", "ä_"[:1]]
UNICODE = ["é", "ℌ", "ﬁ", "ａ", "Ω", "a\u200b", "ǅ", "µ", "x²"]  # not NAMEs: E1xx, located
NUMERIC = ["0", "1", "2", "00", "007", "10", "99", "123456789"]  # labels only


@functools.cache
def name_pools() -> dict[str, list[str]]:
    """The names to draw from, by category: Python's keywords, soft keywords and builtins,
    dunders, underscores, digits after `_`, what nn.Module and torch define, what resdsl's
    runtime binds and what an emitted file names (read from one emitted in every mode), the
    DSL's own words, lookalikes; each sorted, so a seed draws the same names everywhere."""
    import ast
    import builtins
    import inspect
    import keyword

    import torch
    from resdsl.backends.pytorch import NN_MODULE_ATTRS, _runtime_names
    from torch import nn

    from resdsl import api, dispatch, kernels, runtime

    # what the runtime binds, and the attributes it and the API set or read on modules
    # (`_resdsl_source`, `resdsl_graph`)
    attrs = {node.attr for m in (dispatch, kernels, runtime, api)
             for node in ast.walk(ast.parse(inspect.getsource(m)))
             if isinstance(node, ast.Attribute)}

    emitted: set[str] = set()
    sample = ("block b(planes, stride = 1) {\n  residual { conv planes, 3x3, stride = stride; "
              "bn; relu; conv planes, 3x3; bn(zero_init) }\n  shortcut projection\n  merge add\n"
              "  relu\n}\nnetwork n { input 3 x 8 x 8; k.0: conv 8, 3x3; k.1: bn; relu; "
              "stage s = 2 x b(8, stride = 2); avgpool; fc 10 }\n")
    for options in NAME_MODES.values():
        for node in ast.walk(ast.parse(api.emit_python(sample, **options)[0])):
            emitted.update([node.id] if isinstance(node, ast.Name) else
                           [node.arg] if isinstance(node, ast.arg) else
                           [node.attr] if isinstance(node, ast.Attribute) else
                           [node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                           else [])
    torch_names = ["torch", "nn", "F", "Tensor", "Module", "functional", "Optional",
                   "OrderedDict", "annotations", "typing", "functools", "resdsl", "runtime",
                   "dispatch", "kernels", "triton", "tl", "os", "sys", "importlib", "math"]
    torch_names += [n for n in dir(nn) if n[:1].isupper()][::3] + \
        [n for n in dir(torch) if n.isidentifier() and not n.startswith("_")][::25]
    return {k: sorted(set(v)) for k, v in {
        "keyword": keyword.kwlist + keyword.softkwlist,
        "builtin": [n for n in dir(builtins)],
        "dunder": DUNDERS,
        "underscore": UNDERSCORE,
        "digits": DIGITS,
        "module": sorted(NN_MODULE_ATTRS | set(dir(nn.Module())) | set(dir(nn.Module))),
        "torch": torch_names,
        "runtime": sorted(_runtime_names() | attrs),
        "emitted": sorted(emitted),
        "dsl": DSL,
        "lookalike": LOOKALIKE,
        "plain": PLAIN,
    }.items()}


NAME_WEIGHTS = {"plain": 2, "keyword": 2, "builtin": 2, "dunder": 2, "underscore": 2,
                "digits": 2, "module": 3, "torch": 2, "runtime": 3, "emitted": 3, "dsl": 1,
                "lookalike": 1, "long": 1, "case": 3, "unicode": 0.1}


class Names:
    """Draws one spec's names. Each spec has a focus, one to three kinds of name, and a
    hostility: the share of its names drawn from the focus; the others are plain and unique
    (`n4`), so that a spec with one hostile name mostly checks and reaches every mode. A
    `case` name is one drawn before, in another case or as it was, so that names differing
    only by case (and one name in several roles) meet."""

    def __init__(self, rng: random.Random):
        self.rng, self.used, self.count = rng, [], 0
        self.pools = name_pools()
        kinds = list(NAME_WEIGHTS)
        self.focus = sorted(set(rng.choices(kinds, list(NAME_WEIGHTS.values()),
                                            k=rng.randint(1, 3))))
        self.hostility = rng.choice([0.1, 0.2, 0.35, 0.6, 0.9])

    def name(self) -> str:
        rng = self.rng
        if rng.random() >= self.hostility:
            self.count += 1
            return f"{rng.choice(['n', 'blk', 'w', 'layer', 'Net', 'b_'])}{self.count}"
        kind = rng.choice(self.focus)
        if kind == "case" and self.used:
            base = rng.choice(self.used)
            name = rng.choice([base, base.upper(), base.lower(), base.capitalize(),
                               base.swapcase(), base[:1].lower() + base[1:]])
        elif kind == "long":
            part = rng.choice(self.pools["plain"] + self.pools["keyword"])
            name = rng.choice([part * rng.choice([20, 64, 300]),
                               "a" * rng.choice([255, 256, 1000, 4096]),
                               "_".join(rng.choice(self.pools["emitted"]) for _ in range(40))])
        elif kind == "unicode":
            name = rng.choice(UNICODE)
        else:
            name = rng.choice(self.pools["plain" if kind == "case" else kind])
        self.used.append(name)
        return name

    def label(self) -> str:
        """A layer's label: a name, a number, or a key path of them (`a.0`, `0.b.1`)."""
        rng = self.rng
        r = rng.random()
        if r < 0.12:
            return rng.choice(NUMERIC)
        if r < 0.3:
            return ".".join(rng.choice(NUMERIC) if rng.random() < 0.4 else self.name()
                            for _ in range(rng.randint(2, 3)))
        return self.name()

    def maybe(self, p: float = 0.6) -> str:
        """`LABEL: ` or nothing."""
        return f"{self.label()}: " if self.rng.random() < p else ""


def name_spec(rng: random.Random) -> str:
    """A tiny spec with names drawn for its network, template parameter, blocks, block
    parameters, lets, stages, labels (layers, nested blocks, shortcuts, custom shortcut
    layers, stem and head, key paths) and the keyword arguments that name parameters."""
    nm = Names(rng)
    out = ["use std"] if rng.random() < 0.25 else []
    width = "8"
    if rng.random() < 0.25:
        top = nm.name()
        out.append(f"{top} = 8")
        width = top
    inner = None
    if rng.random() < 0.3:
        inner, c = nm.name(), nm.name()
        out.append(f"block {inner}({c}) {{\n  {nm.maybe()}conv {c}, 3x3\n  {nm.maybe()}bn\n"
                   f"  {nm.maybe()}relu\n}}")
    blk, planes, stride = nm.name(), nm.name(), nm.name()
    body = []
    w = planes
    if rng.random() < 0.3:
        mid = nm.name()
        body.append(f"  {mid} = {planes} * 2")
        w = mid
    if rng.random() < 0.15:
        body.append(f"  {nm.maybe()}bn; {nm.maybe()}relu")
    res = [f"{nm.maybe()}conv {w}, 3x3, stride = {stride}", f"{nm.maybe()}bn",
           f"{nm.maybe()}relu"]
    if inner and rng.random() < 0.7:
        res.append(f"{nm.maybe(0.8)}{inner}({w})")
    res += [f"{nm.maybe()}conv {w}, 1x1", f"{nm.maybe()}bn(zero_init)"]
    body.append("  residual {\n" + "\n".join(f"    {r}" for r in res) + "\n  }")
    kind = rng.choice(["projection"] * 4 + ["projection(always)", "avgdown", "avgdown", "pad",
                       "identity", "custom", "custom", "custom", "none"])
    if kind == "custom":
        sc = (f"shortcut {{\n    {nm.maybe()}conv {w}, 1x1, stride = {stride}\n"
              f"    {nm.maybe()}bn\n  }}")
    else:
        sc = f"shortcut {kind}"
    body.append(f"  {nm.maybe(0.5)}{sc}")
    if kind != "none":
        body.append("  merge add")
        if rng.random() < 0.6:
            body.append(f"  {nm.maybe()}relu")
    out.append(f"block {blk}({planes}, {stride} = 1) {{\n" + "\n".join(body) + "\n}")
    net, param = nm.name(), nm.name()
    template = rng.random() < 0.3
    lines = ["  input " + rng.choice(["3 x 8 x 8", "3 x 8 x 8", "1 x 6 x 7", "4 x 8 x 8"])]
    if rng.random() < 0.3:
        let = nm.name()
        lines.append(f"  {let} = {width}")
        width = let
    if rng.random() < 0.4:
        lines.append(f"  stem {{\n    {nm.maybe()}conv {width}, 3x3\n    {nm.maybe()}bn\n"
                     f"    {nm.maybe()}relu\n  }}")
    else:
        key = nm.name() if rng.random() < 0.3 else None
        layers = [f"conv {width}, 3x3", "bn", "relu"][:rng.randint(1, 3)]
        for i, layer in enumerate(layers):
            label = f"{key}.{i}: " if key else nm.maybe()
            lines.append(f"  {label}{layer}")
    for _ in range(rng.randint(1, 3)):
        count = rng.choice(["", "1 x ", "2 x "])
        args = rng.choice([f"{rng.choice([4, 8, 16])}", f"{planes} = 8",
                           f"16, {stride} = 2", f"8, {stride} = 1", f"{planes} = 16, {stride} = 2"])
        callee = blk if not out[0].startswith("use") or rng.random() < 0.8 else "basic"
        if callee == "basic":
            args = rng.choice(["8", "16, stride = 2"])
        lines.append(f"  stage {nm.name()} = {count}{callee}({args})")
    if rng.random() < 0.5:
        lines.append(f"  {nm.maybe()}relu")
    classes = param if template else "10"
    if rng.random() < 0.5:
        lines.append(f"  head {{\n    {nm.maybe()}avgpool\n    {nm.maybe()}fc {classes}\n  }}")
    elif rng.random() < 0.7:
        lines += [f"  {nm.maybe()}avgpool", f"  {nm.maybe()}fc {classes}"]
    body = "\n".join(lines) + "\n}"
    if template:
        out.append(f"network {net}({param} = 10) {{\n{body}")
        out.append(f"network {nm.name()} = {net}({rng.choice(['', '5', f'{param} = 3'])})")
    else:
        out.append(f"network {net} {{\n{body}")
    return "\n".join(out) + "\n"


def make_name_input(seed: int, index: int) -> tuple[str, random.Random, str]:
    rng = random.Random(f"names-{seed}-{index}")
    return "names", rng, name_spec(rng)


class _Importer:
    """Writes each emitted file into a folder of its own and imports it as a module, as a user
    of `resdsl compile -o model.py` would (no bytecode written, so no stale cache)."""

    def __init__(self) -> None:
        import tempfile
        sys.dont_write_bytecode = True
        self.dir = Path(tempfile.mkdtemp(prefix="resdsl-fuzz-names-"))
        self.count = 0

    def load(self, source: str, mode: str):
        import importlib.util
        self.count += 1
        name = f"resdsl_fuzz_{mode.replace('-', '_')}_{self.count}"
        path = self.dir / f"{name}.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[name]
            path.unlink()
            self.forget(module)
        return module

    @staticmethod
    def forget(module) -> None:
        """Drop what torch.fx.wrap (which an inlined --standalone runtime calls at import)
        keeps of the module's globals, so that 20,000 imports do not pile up."""
        try:
            from torch.fx import _symbolic_trace
            wrapped = _symbolic_trace._wrapped_fns_to_patch
        except (ImportError, AttributeError):   # pragma: no cover - another torch
            return
        for key in [k for k, v in wrapped.items() if v is module.__dict__]:
            del wrapped[key]


_IMPORTER: _Importer | None = None


def run_names(text: str, rng: random.Random, stats: Counter) -> str:
    """The outcome of one name input (raises Bug for a finding): `check`, then, for each
    network, every emit mode's file imported, constructed and run; `resdsl.build` and
    `resdsl.optimize` too."""
    texts = {str(SPECS / k): v.count("\n") + 1 for k, v in BUNDLED.items()}
    texts[FILE] = text.count("\n") + 1
    try:
        program = load_text(text, FILE, str(SPECS))
        checked = check_program(program, concrete_networks(program.root),
                                limits=Limits(max_layers=MAX_LAYERS))
    except ResdslError as e:
        _validate(e, texts)
        for err in e.errors:
            if err.span is None:
                raise Bug(f"nospan:{err.code}", str(err)) from None
        return e.code
    except Exception as e:  # noqa: BLE001 - the point of the exercise
        raise Bug(f"internal:{type(e).__name__}@check", traceback.format_exc()) from None
    if rng.random() < 0.25:
        _fmt(text)   # (a Bug if fmt is not idempotent or changes the AST)
    for g in checked.graphs.values():
        _name_modes(text, g, stats)
    return "ok"


def _name_modes(text: str, g, stats: Counter) -> None:
    import json

    import torch

    global _IMPORTER
    if _IMPORTER is None:
        _IMPORTER = _Importer()
        torch.set_num_threads(1)   # tiny tensors: one thread is faster, and the cores are shared
        # --standalone inlines the runtime's source, read from disk at each emit: read it once,
        # so that the files match the runtime this process loaded while others edit the tree
        from resdsl.backends import pytorch
        pytorch._runtime_source = functools.cache(pytorch._runtime_source)
    said = json.loads(summary.to_json(g))
    shape, params = tuple(said["output"]), said["totals"]["params"]
    x = torch.randn(2, *g.graph["input"])
    ref_state = ref_out = None
    stage = "python"
    try:
        for mode, options in NAME_MODES.items():
            stage = mode
            lowered = lower(g, fuse=options.get("fuse", True),
                            inference=options.get("inference", False))
            try:
                source, cls = emit(lowered, FILE, None, options.get("standalone", False))
            except ResdslError as e:   # check passed: the backend may not refuse it
                raise Bug(f"checkgap:{e.code}@{mode}", traceback.format_exc()) from None
            network = getattr(_IMPORTER.load(source, mode), cls)
            if mode == "inference":
                model = network.from_trained(ref_state)
                want = totals(lowered)["params"]   # BNs folded: their parameters are gone
            else:
                model = network()
                want = params
                if ref_state is not None:
                    model.load_state_dict(ref_state)   # strict: the same keys as python's
            n = sum(p.numel() for p in model.parameters())
            if n != want:
                raise Bug(f"params@{mode}", f"{n} parameters, summary says {want}\n{source}")
            if mode == "python":   # one training step runs as well
                model.train()
                model(x).sum().backward()
                model.zero_grad()
            with torch.no_grad():
                y = model.eval()(x)
            if tuple(y.shape[1:]) != shape:
                raise Bug(f"shape@{mode}", f"{tuple(y.shape)}, summary says {shape}\n{source}")
            if ref_state is None:
                ref_state, ref_out = model.state_dict(), y
            elif not torch.allclose(y, ref_out, rtol=1e-3, atol=1e-4):
                raise Bug(f"values@{mode}", f"differs from python's by "
                          f"{(y - ref_out).abs().max().item()}\n{source}")
            stats[f"run:{mode}"] += 1
        stage = "build"
        import resdsl
        built = resdsl.build(text, network=g.graph["name"], zero_init_residual=True)
        if list(built.state_dict()) != list(ref_state):
            raise Bug("keys@build", f"{list(built.state_dict())} vs {list(ref_state)}")
        built.load_state_dict(ref_state)
        stage = "optimize"
        with torch.no_grad():
            y = resdsl.optimize(built)(x)
        if not torch.allclose(y, ref_out, rtol=1e-3, atol=1e-4):
            raise Bug("values@optimize", f"differs by {(y - ref_out).abs().max().item()}")
        stats["run:build+optimize"] += 1
        _name_tools(text, g, built, x, ref_state, ref_out, stats)
    except Bug:
        raise
    except Exception as e:  # noqa: BLE001 - the point of the exercise
        raise Bug(f"internal:{type(e).__name__}@{stage}", traceback.format_exc()) from None
    finally:   # build keeps each network's source for tracebacks, by its name: thousands here
        import linecache
        for key in [k for k in linecache.cache if k.startswith("<resdsl ")]:
            del linecache.cache[key]


def _name_tools(text: str, g, built, x, ref_state, ref_out, stats: Counter) -> None:
    """The built model through pickling (torch.save / torch.load), as a features model (the
    last top-level item, whose output is the network's, and one drawn at random) and with
    synchronized BN (one process): each gives the outputs of the python mode."""
    import io

    import torch

    import resdsl
    from resdsl.ir import Structure

    def same(y, stage: str) -> None:
        if not torch.allclose(y, ref_out, rtol=1e-3, atol=1e-4):
            raise Bug(f"values@{stage}", f"differs by {(y - ref_out).abs().max().item()}")

    buf = io.BytesIO()
    torch.save(built, buf)
    buf.seek(0)
    with torch.no_grad():
        same(torch.load(buf, weights_only=False).eval()(x), "pickle")
    s = Structure(g)
    items = [path for _, path in s.items(None)]
    names = [items[len(text) % len(items)], items[-1]]   # (the input's own choice: replayable)
    feats = resdsl.build(text, network=g.graph["name"], features=names)
    feats.load_state_dict(ref_state)
    with torch.no_grad():
        out = feats.eval()(x)
    for info, y in zip(feats.feature_info, out):
        last = info["name"] if info["name"] in g else s.last[info["name"]]
        if tuple(y.shape[1:]) != tuple(g.nodes[last]["shape"]):
            raise Bug("shape@features", f"{info['name']}: {tuple(y.shape)}, the graph says "
                                        f"{g.nodes[last]['shape']}")
    if len(out) != len(dict.fromkeys(names)):
        raise Bug("count@features", f"{len(out)} features for {names}")
    same(out[-1], "features")
    synced = resdsl.build(text, network=g.graph["name"], sync_bn=True)
    synced.load_state_dict(ref_state)
    synced.train()(x).sum().backward()
    with torch.no_grad():
        synced.load_state_dict(ref_state)
        same(synced.eval()(x), "sync_bn")
    stats["run:pickle+features+sync_bn"] += 1


# ---- the campaign --------------------------------------------------------------------------

def save(crash_dir: Path, seed: int, index: int, data, bug: Bug, saved: Counter,
         names: bool = False) -> None:
    saved[bug.key] += 1
    if saved[bug.key] > 3:
        return
    crash_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{'names-' if names else ''}seed{seed}-{index}-{re.sub(r'[^A-Za-z0-9]+', '_', bug.key)}"
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    (crash_dir / f"{stem}.res").write_bytes(raw)
    (crash_dir / f"{stem}.txt").write_text(f"{bug.key}\nreplay: python benchmarks/fuzz.py "
                                           f"{'--names ' if names else ''}--seed {seed} --replay {index}\n\n"
                                           f"{bug.detail}\n")


def table(counts: Counter, kinds: Counter, stats: Counter, n: int, elapsed: float,
          args) -> str:
    bugs = sum(v for k, v in counts.items() if not _expected(k))
    rows = [f"fuzz: seed {args.seed}, {n:,} inputs in {elapsed:.0f} s "
            f"({n / max(elapsed, 1e-9):.0f}/s, {args.jobs} worker(s)); kinds: "
            + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())),
            ("networks imported, constructed and run, per mode: "
             + ", ".join(f"{k[4:]} {v:,}" for k, v in sorted(stats.items())
                         if k.startswith("run:")) if args.names else
             f"checked networks through summary/IR/compile/draw: {stats['backends']:,}; "
             f"built and run in torch: {stats['torch']:,}"),
            "bugs (internal exceptions, missing codes or spans"
            + (", check passing but a mode failing" if args.names else "") + f"): {bugs}", "",
            f"{'outcome':<32} {'count':>8} {'share':>7}",
            f"{'-' * 32} {'-' * 8} {'-' * 7}"]
    for key, v in sorted(counts.items(), key=lambda kv: (kv[0] != "ok", kv[0])):
        rows.append(f"{key:<32} {v:>8,} {100 * v / max(n, 1):>6.2f}%")
    rows.append(f"{'total':<32} {n:>8,} {100.0 if n else 0:>6.2f}%")
    return "\n".join(rows)


def campaign(seed: int, start: int, n: int, budget: float | None, crash_dir: str,
             progress: int, names: bool = False) -> tuple[Counter, Counter, Counter, int]:
    """Inputs start .. start + n - 1 (of the name campaign with `names`): (outcomes, kinds,
    stats, inputs run)."""
    make, run = (make_name_input, run_names) if names else (make_input, run_one)
    counts, kinds, stats, saved = Counter(), Counter(), Counter(), Counter()
    t0 = time.perf_counter()
    done = 0
    for index in range(start, start + n):
        if budget and time.perf_counter() - t0 > budget:
            break
        kind, rng, data = make(seed, index)
        kinds[kind] += 1
        try:
            outcome = run(data, rng, stats)
        except Bug as bug:
            outcome = bug.key
            save(Path(crash_dir), seed, index, data, bug, saved, names)
            print(f"BUG at input {index} ({kind}): {bug.key}", file=sys.stderr, flush=True)
        counts[outcome] += 1
        done += 1
        if progress and done % progress == 0:
            el = time.perf_counter() - t0
            print(f"[inputs {start:,}+: {done:,} in {el:.0f} s, {done / el:.0f}/s, "
                  f"ok {counts['ok']:,}]", file=sys.stderr, flush=True)
    return counts, kinds, stats, done


def _shard(a: tuple) -> tuple[Counter, Counter, Counter, int]:
    return campaign(*a)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="inputs to run (default 100,000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="first input index")
    ap.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                    help="stop after this long, reporting what ran")
    ap.add_argument("--jobs", type=int, default=1,
                    help="worker processes; input i is the same whichever runs it")
    ap.add_argument("--crash-dir", default=str(ROOT / "benchmarks" / "results" / "fuzz-crashes"))
    ap.add_argument("--progress", type=int, default=5000, metavar="N",
                    help="a progress line every N inputs per worker (0: none)")
    ap.add_argument("--replay", type=int, default=None, metavar="INDEX",
                    help="run one input, print it and any traceback")
    ap.add_argument("--names", action="store_true",
                    help="name fuzzing: tiny specs with hostile names, every emit mode run")
    args = ap.parse_args(argv)
    if args.replay is not None:
        return replay(args.seed, args.replay, args.names)
    start = time.perf_counter()
    jobs = max(1, args.jobs)
    bounds = [args.start + args.n * k // jobs for k in range(jobs + 1)]
    shards = [(args.seed, bounds[k], bounds[k + 1] - bounds[k], args.time_budget,
               args.crash_dir, args.progress, args.names) for k in range(jobs)]
    if jobs == 1:
        results = [_shard(shards[0])]
    else:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(_shard, shards)
    counts, kinds, stats, done = Counter(), Counter(), Counter(), 0
    for c, k, s, d in results:
        counts.update(c)
        kinds.update(k)
        stats.update(s)
        done += d
    print(table(counts, kinds, stats, done, time.perf_counter() - start, args), flush=True)
    return 1 if any(not _expected(k) for k in counts) else 0


def _expected(outcome: str) -> bool:
    """ok, or a user error with a code (possibly found by a backend: `E210@backends`)."""
    return outcome == "ok" or bool(re.fullmatch(r"E\d{3}(@\w+)?", outcome))


def replay(seed: int, index: int, names: bool = False) -> int:
    kind, rng, data = (make_name_input if names else make_input)(seed, index)
    print(f"# input {index} of seed {seed} ({kind}):")
    print(data if isinstance(data, str) else repr(data))
    try:
        print("outcome:", (run_names if names else run_one)(data, rng, Counter()))
    except Bug as bug:
        print(f"outcome: {bug.key}\n{bug.detail}")
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
