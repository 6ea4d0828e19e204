"""User errors: one class hierarchy with stable codes, spans and hints, rendered like rustc.

Every problem with a user's input is a `ResdslError`; anything else escaping the compiler is a
bug. `assert` guards only our own invariants. The codes are listed in docs/errors.md.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Sequence


@dataclass(frozen=True, slots=True)  # slots: a 10 MB spec's AST holds millions
class Span:
    """A region of a source file: 1-based line and column, end column exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class ResdslError(Exception):
    """A problem with the user's input: a code, a message, where, and what might fix it."""

    code = "E000"

    def __init__(self, message: str, span: Span | None = None, hint: str | None = None,
                 code: str | None = None, notes: Sequence[tuple[Span, str]] = ()):
        super().__init__(message)
        self.message = message
        self.span = span
        self.hint = hint
        self.notes = tuple(notes)
        self.sources: dict[str, str] = {}  # texts the spans point into, for rendering
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        where = f"{self.span}: " if self.span else ""
        return f"{where}error[{self.code}]: {self.message}"

    @property
    def errors(self) -> list[ResdslError]:
        return [self]


class InputError(ResdslError):
    """E0xx: the file itself cannot be read."""


class SpecSyntaxError(ResdslError):
    """E1xx: the text is not in the language."""


class SpecNameError(ResdslError):
    """E2xx: names, arguments and references."""


class SpecValueError(ResdslError):
    """E3xx: values out of range or of the wrong type."""


class ShapeError(ResdslError):
    """E4xx: tensor shapes that do not fit together."""


class LimitError(ResdslError):
    """E5xx: a spec too large or too deep to build."""


class ErrorGroup(ResdslError):
    """Several independent errors found in one run, reported together."""

    def __init__(self, errors: Iterable[ResdslError]):
        flat = [e for err in errors for e in err.errors]
        assert flat, "an ErrorGroup needs at least one error"
        first = flat[0]
        super().__init__(first.message, first.span, first.hint, first.code, first.notes)
        self._errors = flat

    def __str__(self) -> str:
        return "\n".join(ResdslError.__str__(e) for e in self._errors)

    @property
    def errors(self) -> list[ResdslError]:
        return list(self._errors)


class Collector:
    """Gathers independent errors so that one run reports all of them."""

    def __init__(self) -> None:
        self.errors: list[ResdslError] = []

    def add(self, err: ResdslError) -> None:
        self.errors.extend(err.errors)

    def raise_if_any(self) -> None:
        if self.errors:
            raise self.errors[0] if len(self.errors) == 1 else ErrorGroup(self.errors)

    @staticmethod
    def raise_all(errors: Iterable[ResdslError]) -> None:
        collector = Collector()
        for err in errors:
            collector.add(err)
        collector.raise_if_any()


def did_you_mean(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """A hint naming the closest candidate, or None when nothing is as close as `cutoff`."""
    close = difflib.get_close_matches(name, sorted(set(candidates) - {name}), n=1,
                                      cutoff=cutoff)
    return f"did you mean '{close[0]}'?" if close else None


@dataclass
class Renderer:
    """Formats errors with the source line and a caret run, optionally in colour."""

    sources: dict[str, str] = field(default_factory=dict)
    color: bool = False

    def render(self, err: ResdslError) -> str:
        return "\n".join(self._one(e) for e in err.errors)

    def _paint(self, text: str, style: str) -> str:
        if not self.color:
            return text
        codes = {"error": "1;31", "hint": "1;36", "note": "1;34", "bold": "1", "caret": "1;31"}
        return f"\x1b[{codes[style]}m{text}\x1b[0m"

    def _one(self, err: ResdslError) -> str:
        head = f"{self._paint('error', 'error')}[{err.code}]: {self._paint(err.message, 'bold')}"
        lines = [f"{err.span}: {head}" if err.span else head]
        if err.span:
            lines += self._excerpt(err.span, "caret")
        for span, text in err.notes:
            lines.append(f"{span}: {self._paint('note', 'note')}: {text}")
            lines += self._excerpt(span, "note")
        if err.hint:
            lines.append(f"  {self._paint('hint', 'hint')}: {err.hint}")
        return "\n".join(lines)

    def _excerpt(self, span: Span, style: str) -> list[str]:
        text = self._source(span.file)
        if text is None:
            return []
        src_lines = text.split("\n")  # as the lexer counts lines: not str.splitlines()
        if not 1 <= span.line <= len(src_lines):
            return []
        line = printable(src_lines[span.line - 1].rstrip("\r"))
        end = span.end_col if span.end_line == span.line else len(line) + 1
        line, col, end = _window(line, span.col, end)
        width = max(1, min(end, len(line) + 1) - col)
        gutter = str(span.line)
        pad = " " * len(gutter)
        caret = " " * (col - 1) + "^" * width
        return [f"{pad} |", f"{gutter} | {line}", f"{pad} | {self._paint(caret, style)}"]

    def _source(self, file: str) -> str | None:
        if file not in self.sources:
            try:
                with open(file, encoding="utf-8") as fh:
                    self.sources[file] = fh.read()
            except (OSError, UnicodeDecodeError, ValueError):
                return None
        return self.sources[file]


MAX_SHOWN = 200  # characters of a source line shown in an excerpt


def printable(line: str) -> str:
    """The line as it may be echoed to a terminal: tabs as spaces, control characters as '?'
    (one column each, so the caret still lines up, and no escape sequence gets through)."""
    return "".join(" " if c == "\t" else c if c.isprintable() else "?" for c in line)


def _window(line: str, col: int, end: int) -> tuple[str, int, int]:
    """A long line cut to MAX_SHOWN characters around `col`, with the columns moved to match."""
    if len(line) <= MAX_SHOWN:
        return line, col, end
    start = max(0, min(col - 1 - MAX_SHOWN // 4, len(line) - MAX_SHOWN))
    head = "… " if start else ""
    tail = " …" if start + MAX_SHOWN < len(line) else ""
    shift = len(head) - start
    shown = head + line[start:start + MAX_SHOWN]
    return shown + tail, col + shift, min(end + shift, len(shown) + 1)
