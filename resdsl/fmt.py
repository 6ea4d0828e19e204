"""`resdsl fmt`: one canonical layout for .res specs, keeping every comment.

The AST says what to print; the comment tokens are put back by source position. Every header
(`block b() {`), simple statement and closing `}` becomes one output line, a "chunk". A comment
inside a chunk's source text moves to its own line before it, one after a chunk's end on the
same line trails it, and any other goes on its own line before the next chunk (so a comment at
the end of a body stays there, indented with the body).

Blank lines: exactly one between top-level definitions; elsewhere one where the source had one
or more, never right after `{` or before `}`. Consecutive `network a = f(...)` lines align `=`.
A trailing comment goes two spaces after its line, unless it lines up with others: see
`_comment_columns`. `a; b` rows stay rows, except on the line of their body's `{`: a group
written on one line expands to one statement a line.
"""
from __future__ import annotations

import bisect
import difflib
from collections.abc import Callable
from dataclasses import dataclass

from . import nodes as n
from .ops import LAYERS, SHORTCUTS
from .parse import MAX_DIGITS, parse_with_comments

INDENT = "  "

# Binding strength, loosest first: `or` < `and` < `not` < comparisons < `x` < `+ -` <
# `* / // %` < unary `-` < `a[i]` < atoms. Binary operators are left-associative, so a right
# operand must bind one level tighter; comparisons do not chain, so both operands must.
OR, AND, NOT, COMPARE, DIMS, SUM, PRODUCT, UNARY, POSTFIX, ATOM = range(10)
BINARY = {"+": SUM, "-": SUM, "*": PRODUCT, "/": PRODUCT, "//": PRODUCT, "%": PRODUCT,
          "and": AND, "or": OR, **{op: COMPARE for op in ("==", "!=", "<", "<=", ">", ">=")}}

Pos = tuple[int, int]  # (line, column), 1-based, as lark counts them


# ---- expressions ---------------------------------------------------------------------------

def format_expr(e: n.Expr, need: int = OR) -> str:
    """`e` as text, in parentheses only when it binds looser than its place needs."""
    text = EXPR[type(e)](e)
    return f"({text})" if _level(e) < need else text


def _level(e: n.Expr) -> int:
    """How tightly `e` binds as printed; a compact `3x3` lexes as one atom."""
    if isinstance(e, n.BinOp):
        return BINARY[e.op]
    if isinstance(e, n.Dims):
        return ATOM if _compact(e) else DIMS
    return {n.Neg: UNARY, n.Index: POSTFIX, n.Not: NOT}.get(type(e), ATOM)


def _compact(e: n.Dims) -> bool:
    """True for a kernel-like pair of literal ints, written as one token `3x3`; shapes such
    as `3 x 224 x 224` and sizes with names stay spaced (long literals too)."""
    ints = len(e.items) == 2 and all(isinstance(i, n.Num) and type(i.value) is int and i.value >= 0 for i in e.items)
    return ints and len("x".join(str(i.value) for i in e.items)) <= MAX_DIGITS  # type: ignore


def _num(e: n.Num) -> str:
    """Ints as digits; floats by repr, which round-trips and always lexes as a FLOAT."""
    return repr(e.value) if isinstance(e.value, float) else str(e.value)


def _binop(e: n.BinOp) -> str:
    """`a - b`; parentheses on the right keep `a - (b - c)` meaning what it says."""
    level = BINARY[e.op]
    left = level + 1 if level == COMPARE else level
    return f"{format_expr(e.left, left)} {e.op} {format_expr(e.right, level + 1)}"


def _dims(e: n.Dims) -> str:
    """`3x3` for a pair of literal ints, else `k x k`, `3 x 224 x 224`."""
    if _compact(e):
        return "x".join(str(i.value) for i in e.items)  # type: ignore[union-attr]
    return " x ".join(format_expr(i, SUM) for i in e.items)


def _labelled(label: str | None, text: str) -> str:
    return f"{label}: {text}" if label is not None else text


EXPR: dict[type, Callable] = {
    n.Num: _num,
    n.Bool: lambda e: "true" if e.value else "false",
    n.Name: lambda e: e.id,
    n.BinOp: _binop,
    n.Neg: lambda e: "-" + format_expr(e.operand, UNARY),
    n.Not: lambda e: "not " + format_expr(e.operand, NOT),
    n.Func: lambda e: f"{e.name}({_args(e.args)})",
    n.Index: lambda e: f"{format_expr(e.target, POSTFIX)}[{format_expr(e.index)}]",
    n.ListExpr: lambda e: "[" + ", ".join(format_expr(i) for i in e.items) + "]",
    n.Dims: _dims,
}


# ---- statements ----------------------------------------------------------------------------

def _arg(a: n.Arg) -> str:
    """`3x3` or `stride = 2`."""
    return format_expr(a.value) if a.name is None else f"{a.name} = {format_expr(a.value)}"


def _args(args: tuple[n.Arg, ...]) -> str:
    """`planes, 3x3, stride = 2`."""
    return ", ".join(_arg(a) for a in args)


def _with_args(kind: str, args: tuple[n.Arg, ...], flags: tuple[str, ...]) -> str:
    """`conv planes, 3x3`; a leading bare flag is attached as `bn(zero_init)`."""
    first = args[0].value if args and args[0].name is None else None
    if isinstance(first, n.Name) and first.id in flags:
        rest = args[1:]
        return f"{kind}({first.id})" + (", " + _args(rest) if rest else "")
    return kind + (" " + _args(args) if args else "")


def _layer(s: n.Layer) -> str:
    """`fc: fc num_classes`, `bn(zero_init)`."""
    kind = LAYERS.get(s.kind)
    text = _with_args(s.kind, s.args, kind.flags if kind else ())
    return _labelled(s.label, text)


def _stage(s: n.Stage) -> str:
    """`stage layer1 = 3 x basic(64)`; the count is a sum in the grammar."""
    count = "" if s.count is None else format_expr(s.count, SUM) + " x "
    return f"stage {s.name} = {count}{_call(s.call)}"


def _call(c: n.Call) -> str:
    """`resnet(bottleneck, [3, 4, 6, 3])`."""
    return f"{c.name}({_args(c.args)})"


def _params(params: tuple[n.Param, ...]) -> str:
    """`(planes, stride = 1)`."""
    return "(" + ", ".join(p.name if p.default is None else f"{p.name} = {format_expr(p.default)}"
                           for p in params) + ")"


SIMPLE: dict[type, Callable] = {
    n.Use: lambda s: f'use "{s.target}"' if s.is_path else f"use {s.target}",
    n.Let: lambda s: f"{s.name} = {format_expr(s.value)}",
    n.Layer: _layer,
    n.Shortcut: lambda s: _labelled(s.label, "shortcut " + _with_args(
        s.kind, s.args, SHORTCUTS[s.kind].flags if s.kind in SHORTCUTS else ())),
    n.Merge: lambda s: f"merge {s.op}",
    n.Input: lambda s: f"input {format_expr(s.shape)}",
    n.Stage: _stage,
    n.NetworkInst: lambda s: f"network {s.name} = {_call(s.call)}",
}


def _header(s) -> tuple[str, tuple] | None:
    """(`header {`, body) for a statement with a body, else None."""
    if isinstance(s, n.BlockDef):
        return f"block {s.name}{_params(s.params)} {{", s.body
    if isinstance(s, n.NetworkDef):
        params = _params(s.params) if s.params else ""  # `network n {`: nothing to bind
        return f"network {s.name}{params} {{", s.body
    if isinstance(s, n.Residual):
        return "residual {", s.body
    if isinstance(s, n.Shortcut) and s.body is not None:
        return _labelled(s.label, "shortcut {"), s.body
    if isinstance(s, n.Group):
        return f"{s.kind} {{", s.body
    return None


# ---- layout --------------------------------------------------------------------------------

@dataclass
class Line:
    """One output line: a chunk ("stmt", "open", "close") or an own-line "comment"."""

    kind: str
    indent: int
    text: str
    start: Pos           # where it came from, for placing comments and keeping blank lines
    end: Pos             # exclusive
    item: int | None  # the top-level item it belongs to (a comment: the one it precedes)
    trailing: str = ""
    source_col: int = 0  # where the trailing comment started in the source (0-based)
    col: int = 0         # where it starts in the output; 0: two spaces after the text
    inst: tuple[str, str] | None = None  # (name, call) of `network name = call`, to align
    row: bool = False    # a layer or let: may share a line with its neighbours (`bn; relu`)

    @property
    def comment_indent(self) -> int:
        """Indent of comments placed before this line: inside the body before a `}`."""
        return self.indent + 1 if self.kind == "close" else self.indent


class Layout:
    """Turns a parsed module plus its source text into the canonical text."""

    def __init__(self, text: str, module: n.Module):
        self.text = text
        self.lines = text.split("\n")
        self.starts = [0]
        for line in self.lines[:-1]:
            self.starts.append(self.starts[-1] + len(line) + 1)
        self.module = module
        self.chunks: list[Line] = []
        self.cursor = 0

    # -- positions
    def offset(self, pos: Pos) -> int:
        """Character offset of a (line, column) position."""
        return self.starts[pos[0] - 1] + pos[1] - 1

    def pos(self, offset: int) -> Pos:
        """(line, column) of a character offset."""
        line = bisect.bisect_right(self.starts, offset)
        return line, offset - self.starts[line - 1] + 1

    def find(self, offset: int, char: str) -> int:
        """Offset of the next `char` at or after `offset` that is not inside a comment."""
        text = self.text
        while offset < len(text):
            if text[offset] == "#":
                offset = text.find("\n", offset)
                if offset < 0:
                    break
            elif text[offset] == char:
                return offset
            offset += 1
        raise AssertionError(f"no {char!r} after offset {offset} in parsed text")

    # -- chunks
    def chunk(self, kind: str, indent: int, text: str, start: Pos, end: Pos, item: int,
              inst: tuple[str, str] | None = None) -> None:
        """Record one output line and move the cursor past its source text."""
        self.chunks.append(Line(kind, indent, text, start, end, item, inst=inst))
        self.cursor = max(self.cursor, self.offset(end))

    def statement(self, s, indent: int, item: int) -> None:
        """Chunks for one statement: a single line, or header, body and `}`."""
        start = (s.span.line, s.span.col)
        if isinstance(s, n.If):
            return self.conditional(s, indent, item)
        head = _header(s)
        if head is None:
            inst = (s.name, _call(s.call)) if isinstance(s, n.NetworkInst) else None
            end = (s.span.end_line, s.span.end_col)
            self.chunk("stmt", indent, SIMPLE[type(s)](s), start, end, item, inst)
            self.chunks[-1].row = isinstance(s, (n.Layer, n.Let))
            return
        text, body = head
        brace = self.find(self.offset(start), "{")
        self.chunk("open", indent, text, start, self.pos(brace + 1), item)
        for child in body:
            self.statement(child, indent + 1, item)
        close = self.find(self.cursor, "}")
        self.chunk("close", indent, "}", self.pos(close), self.pos(close + 1), item)

    def conditional(self, s: n.If, indent: int, item: int) -> None:
        """`if c {`, its body, then `} else if d {` / `} else {` lines and their bodies, `}`.
        (`else { if ... }` with nothing else in the braces becomes `else if`.)"""
        start = (s.span.line, s.span.col)
        brace = self.find(self.offset(start), "{")
        self.chunk("open", indent, f"if {format_expr(s.cond)} {{", start, self.pos(brace + 1),
                   item)
        while True:
            for child in s.then:
                self.statement(child, indent + 1, item)
            close = self.find(self.cursor, "}")
            if not s.orelse:
                self.chunk("close", indent, "}", self.pos(close), self.pos(close + 1), item)
                return
            nested = s.orelse[0] if len(s.orelse) == 1 and isinstance(s.orelse[0], n.If) else None
            opening = self.find(close + 1, "{")
            if nested is not None and self.offset((nested.span.line, nested.span.col)) < opening:
                brace = self.find(self.offset((nested.span.line, nested.span.col)), "{")
                self.chunk("close", indent, f"}} else if {format_expr(nested.cond)} {{",
                           self.pos(close), self.pos(brace + 1), item)
                s = nested
                continue
            self.chunk("close", indent, "} else {", self.pos(close), self.pos(opening + 1), item)
            for child in s.orelse:
                self.statement(child, indent + 1, item)
            close = self.find(self.cursor, "}")
            self.chunk("close", indent, "}", self.pos(close), self.pos(close + 1), item)
            return

    # -- comments
    def place(self, comments) -> list[Line]:
        """Interleave own-line comments with the chunks and attach trailing ones."""
        before: list[list[Line]] = [[] for _ in range(len(self.chunks) + 1)]
        starts = [c.start for c in self.chunks]
        for tok in sorted(comments, key=lambda t: (t.line, t.column)):
            text, at = str(tok).rstrip(), (tok.line, tok.column)
            k = bisect.bisect_right(starts, at) - 1
            if k >= 0 and at >= self.chunks[k].end and tok.line == self.chunks[k].end[0]:
                assert not self.chunks[k].trailing, "two comments cannot share a line"
                self.chunks[k].trailing, self.chunks[k].source_col = text, tok.column - 1
                continue
            if k < 0 or at >= self.chunks[k].end:
                k += 1  # after chunk k: before the next one
            before[k].append(self._comment(text, at, k))
        out: list[Line] = []
        for k, chunk in enumerate(self.chunks):
            out += before[k]
            out.append(chunk)
        return out + before[-1]

    def _comment(self, text: str, at: Pos, k: int) -> Line:
        """An own-line comment going before chunk k (or at the end of the file)."""
        nxt = self.chunks[k] if k < len(self.chunks) else None
        indent = nxt.comment_indent if nxt else 0
        item = nxt.item if nxt and nxt.kind != "close" and nxt.indent == 0 else None
        return Line("comment", indent, text, at, at, item)

    # -- blank lines
    def blank_before(self, prev: Line, line: Line) -> bool:
        """Whether a blank line separates `prev` and `line` in the output."""
        if line.kind == "close" or prev.kind == "open":
            return False
        if (line.indent == 0 and prev.indent == 0 and prev.kind in ("stmt", "close")
                and line.item is not None and prev.item is not None and line.item != prev.item):
            items = self.module.items
            if _separate(items[prev.item], items[line.item]):
                return True
        return any(not self.lines[i - 1].strip() for i in range(prev.end[0] + 1, line.start[0]))

    def render(self, comments) -> str:
        """The whole canonical text."""
        for i, item in enumerate(self.module.items):
            self.statement(item, 0, i)
        self.chunks = _rows(self.chunks)
        lines = self.place(comments)
        blanks = [i > 0 and self.blank_before(lines[i - 1], lines[i]) for i in range(len(lines))]
        _comment_columns(lines, blanks, _align(lines, blanks))
        out: list[str] = []
        for line, blank in zip(lines, blanks):
            if blank:
                out.append("")
            text = _width_text(line)
            pad = line.col - len(text) if line.col else 2
            out.append(text + " " * pad + line.trailing if line.trailing else text)
        return "\n".join(out) + "\n" if out else ""


def _rows(chunks: list[Line]) -> list[Line]:
    """Statements written on one line with `;` stay on one line (`conv c, 3x3; bn; relu` reads
    as one row of the paper's Table 1); only inside bodies, never at top level, and not on the
    line of the body's `{`: `stem { conv 64, 7x7; bn; relu }` expands to a statement a line."""
    out: list[Line] = []
    brace: dict[int, int] = {}  # the indent of a body -> the source line of its `{`
    for c in chunks:
        if c.kind != "stmt" and c.text.endswith("{"):
            brace[c.indent + 1] = c.end[0]
        prev = out[-1] if out else None
        if (prev is not None and c.row and prev.row and c.indent == prev.indent > 0
                and c.start[0] == prev.end[0] != brace.get(c.indent)):
            prev.text, prev.end = f"{prev.text}; {c.text}", c.end
        else:
            out.append(c)
    return out


def _separate(a: n.Item, b: n.Item) -> bool:
    """Top-level items always get a blank line between them, except runs of one-liners
    of the same kind (`use`s, `let`s, `network x = ...`s), which keep the source's."""
    one_liners = (n.Use, n.Let, n.NetworkInst)
    return not (type(a) is type(b) and isinstance(a, one_liners))


def _align(lines: list[Line], blanks: list[bool]) -> list[list[Line]]:
    """Pad names in runs of adjacent `network x = f(...)` lines so their `=` line up; return
    each run's lines with trailing comments (these line up too)."""
    runs, i = [], 0
    while i < len(lines):
        j = i + 1
        if lines[i].inst is not None:
            while j < len(lines) and lines[j].inst is not None and not blanks[j]:
                j += 1
            width = max(len(line.inst[0]) for line in lines[i:j])  # type: ignore[index]
            for line in lines[i:j]:
                name, call = line.inst  # type: ignore[misc]
                line.text = f"network {name.ljust(width)} = {call}"
            runs.append([line for line in lines[i:j] if line.trailing])
        i = j
    return runs


def _width_text(line: Line) -> str:
    """A line as written, without its trailing comment."""
    return INDENT * line.indent + line.text


def _aligned(lines: list[Line], blanks: list[bool]) -> list[list[Line]]:
    """Runs of trailing comments the source had in one column: consecutive ones, with no
    blank line between them (each starts out at its source column)."""
    runs: list[list[Line]] = []
    last: Line | None = None
    for line, blank in zip(lines, blanks):
        if blank:
            last = None
        if not line.trailing:
            continue
        if last is not None and line.source_col == last.source_col:
            runs[-1].append(line)
        else:
            runs.append([line])
        last = line
    aligned = [run for run in runs if len(run) > 1]
    for run in aligned:
        for line in run:
            line.col = line.source_col
    return aligned


def _comment_columns(lines: list[Line], blanks: list[bool], runs: list[list[Line]]) -> None:
    """Set `col` for the trailing comments that line up: those aligned in the source, and
    those of a run of `network x = ...` lines (`runs`). A group starts at its source column,
    or further right if a line is too long for it: two spaces after its longest line. Any
    other comment: two spaces after its line (`col` 0)."""
    groups = _aligned(lines, blanks) + [run for run in runs if len(run) > 1]
    changed = True
    while changed:  # a line in two groups moves both (columns only grow: this ends)
        changed = False
        for group in groups:
            col = max(max(line.col for line in group),
                      max(len(_width_text(line)) + 2 for line in group))
            for line in group:
                changed |= line.col != col
                line.col = col


# ---- entry points --------------------------------------------------------------------------

def format_text(text: str, file: str = "<string>") -> str:
    """The canonical layout of a spec; raises ResdslError if it does not parse."""
    module, comments = parse_with_comments(text, file)
    return Layout(text, module).render(comments)


def check_formatted(text: str, file: str = "<string>") -> bool:
    """True when `text` is already in canonical layout (for `fmt --check`)."""
    return format_text(text, file) == text


def unified_diff(old: str, new: str, file: str = "<string>") -> str:
    """A unified diff from `old` to `new` (for `fmt --diff`); empty when they are equal."""
    lines = difflib.unified_diff(_split(old), _split(new), fromfile=file,
                                 tofile=f"{file} (formatted)")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def _split(text: str) -> list[str]:
    """Lines with their ends, split only at line feeds, as the lexer counts lines."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]

