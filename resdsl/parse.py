"""Stage 1: text -> AST. Lark (LALR) parses with grammar/resdsl.lark into a tree; a
non-recursive Transformer (deep input cannot overflow the stack) turns it into `nodes`.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterator

from lark import Lark, Token, v_args
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)
from lark.visitors import Transformer_NonRecursive

from . import nodes as n
from .errors import ResdslError, Span, SpecSyntaxError
from .resources import grammar_file

MAX_NESTING = 64        # brackets and braces open at once
MAX_EXPR_DEPTH = 200    # operators in one expression, counted along its deepest path
MAX_DIGITS = 30         # in one number literal

# Terminal names as a user would say them, for "expected ..." messages.
WORDS = {
    "_NL": "end of line", "NAME": "a name", "INT": "a number", "FLOAT": "a number",
    "DIMS": "a size like 3x3", "STRING": "a quoted path", "LPAR": "'('", "RPAR": "')'",
    "LSQB": "'['", "RSQB": "']'", "LBRACE": "'{'", "RBRACE": "'}'", "COMMA": "','",
    "EQUAL": "'='", "COLON": "':'", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'",
    "SLASH": "'/'", "FLOORDIV": "'//'", "PERCENT": "'%'", "X": "'x'", "$END": "end of file",
    "COMPARE": "a comparison", "LABEL": "a label",
}
OPENERS = {"LPAR": "RPAR", "LSQB": "RSQB", "LBRACE": "RBRACE"}
OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "FLOORDIV", "PERCENT", "X", "COMPARE", "AND",
             "OR", "NOT"}
KEYWORDS = {"use", "block", "network", "residual", "shortcut", "merge", "input", "stage",
            "stem", "head", "true", "false", "x", "if", "else", "and", "or", "not"}


def _word(term: str) -> str:
    if term in WORDS:
        return WORDS[term]
    if term.lower() in KEYWORDS:
        return f"'{term.lower()}'"
    return term.lower()


def span_of(file: str, tok: Token, end: Token | None = None) -> Span:
    end = end or tok
    return Span(file, tok.line or 1, tok.column or 1, end.end_line or tok.line or 1,
                end.end_column or (tok.column or 1) + 1)


class Layout:
    """Post-lexer: makes newlines statement separators.

    Drops newlines inside () and [] and after '{' or ',' (not after an operator: see
    docs/language.md), collapses runs, and supplies one before each '}' and at the end, so
    that in the grammar every statement ends in one _NL. Also bounds the nesting depth, which
    keeps every later recursive walk shallow.
    """

    always_accept = ("_NL", "RBRACE")
    CONTINUES = frozenset({"_NL", "LBRACE", "COMMA"})  # a newline after these is dropped

    def __init__(self, file: str):
        self.file = file

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        stack: list[Token] = []
        prev: Token | None = None
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if self._continues(prev, stack):
                    continue
            elif kind in OPENERS:
                stack.append(tok)
                if len(stack) > MAX_NESTING:
                    raise SpecSyntaxError(
                        f"brackets nested more than {MAX_NESTING} deep", span_of(self.file, tok),
                        "split the expression with a let-binding", code="E104")
            elif kind in ("RPAR", "RSQB", "RBRACE"):
                if stack and OPENERS[stack[-1].type] == kind:
                    stack.pop()
                if kind == "RBRACE" and prev is not None and prev.type not in self.CONTINUES:
                    yield Token.new_borrow_pos("_NL", "\n", tok)
            prev = tok
            yield tok
        if not self._continues(prev, stack):
            yield Token("_NL", "\n", 0, prev.end_line, prev.end_column, prev.end_line,
                        prev.end_column, prev.end_pos)

    def _continues(self, prev: Token | None, stack: list[Token]) -> bool:
        """Whether a newline here is not the end of a statement."""
        return prev is None or prev.type in self.CONTINUES or bool(
            stack and stack[-1].type != "LBRACE")


@v_args(meta=True)
class ToAst(Transformer_NonRecursive):
    """Parse tree -> `nodes`, bottom-up, without recursion."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.depth: dict[int, int] = {}

    def _sp(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return n.NOWHERE
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, tok: Token) -> Span:
        return span_of(self.file, tok)

    def _expr(self, node, *children):
        d = 1 + max((self.depth.get(id(c), 1) for c in children), default=0)
        if d > MAX_EXPR_DEPTH:
            raise SpecSyntaxError(f"expression nested more than {MAX_EXPR_DEPTH} deep",
                                  node.span, "split it with a let-binding", code="E104")
        self.depth[id(node)] = d
        return node

    # -- top level
    def start(self, meta, items):
        return n.Module(self.file, tuple(items), self._sp(meta))

    def use(self, meta, c):
        tok = c[0]
        if tok.type == "STRING":
            return n.Use(str(tok)[1:-1], True, self._sp(meta))
        return n.Use(str(tok), False, self._sp(meta))

    def block_def(self, meta, c):
        name, params, body = c
        return n.BlockDef(str(name), params, body, self._sp(meta), self._tok(name))

    def network_def(self, meta, c):
        name, params, body = c
        return n.NetworkDef(str(name), params or (), body, self._sp(meta), self._tok(name))

    def network_inst(self, meta, c):
        return n.NetworkInst(str(c[0]), c[1], self._sp(meta), self._tok(c[0]))

    def params(self, meta, c):
        return tuple(p for p in c if p is not None)

    def param(self, meta, c):
        return n.Param(str(c[0]), c[1], self._sp(meta))

    def body(self, meta, c):
        return tuple(c)

    net_body = body

    # -- statements
    def let(self, meta, c):
        return n.Let(str(c[0]), c[1], self._sp(meta))

    def layer(self, meta, c):
        label, kind, args = c
        return n.Layer(str(kind), args or (), label, self._sp(meta))

    def label(self, meta, c):
        return str(c[0])[:-1].rstrip()

    def if_stmt(self, meta, c):
        cond, then, orelse = c
        orelse = (orelse,) if isinstance(orelse, n.If) else (orelse or ())
        return n.If(cond, then, orelse, self._sp(meta))

    if_net = if_stmt

    def args(self, meta, c):
        return tuple(c)

    def arg(self, meta, c):
        return n.Arg(None, c[0], self._sp(meta))

    def kwarg(self, meta, c):
        return n.Arg(str(c[0]), c[1], self._sp(meta))

    def residual(self, meta, c):
        return n.Residual(c[0], self._sp(meta))

    def shortcut_kind(self, meta, c):
        return n.Shortcut(str(c[1]), c[2] or (), None, self._sp(meta), c[0])

    def shortcut_body(self, meta, c):
        return n.Shortcut(None, (), c[1], self._sp(meta), c[0])

    def merge(self, meta, c):
        return n.Merge(str(c[0]), self._sp(meta))

    def input(self, meta, c):
        return n.Input(c[0], self._sp(meta))

    def group(self, meta, c):
        return n.Group(str(c[0]), c[1], self._sp(meta))

    def stage(self, meta, c):
        name, count, call = c
        return n.Stage(str(name), count, call, self._sp(meta))

    def call(self, meta, c):
        return n.Call(str(c[0]), c[1] or (), self._sp(meta))

    # -- expressions
    def _bin(op):  # noqa: N805 - a factory evaluated in the class body
        def build(self, meta, c):
            return self._expr(n.BinOp(op, c[0], c[-1], self._sp(meta)), c[0], c[-1])
        return build

    add, sub, mul = _bin("+"), _bin("-"), _bin("*")
    div, floordiv, mod = _bin("/"), _bin("//"), _bin("%")
    and_, or_ = _bin("and"), _bin("or")
    del _bin

    def compare(self, meta, c):
        left, op, right = c
        return self._expr(n.BinOp(str(op), left, right, self._sp(meta)), left, right)

    def not_(self, meta, c):
        return self._expr(n.Not(c[0], self._sp(meta)), c[0])

    def func(self, meta, c):
        args = c[1] or ()
        return self._expr(n.Func(str(c[0]), args, self._sp(meta)), *(a.value for a in args))

    def neg(self, meta, c):
        return self._expr(n.Neg(c[0], self._sp(meta)), c[0])

    def index(self, meta, c):
        return self._expr(n.Index(c[0], c[1], self._sp(meta)), c[0], c[1])

    def dims_expr(self, meta, c):
        return self._expr(n.Dims(tuple(c), self._sp(meta)), *c)

    def list_lit(self, meta, c):
        items = tuple(x for x in c if x is not None)
        return self._expr(n.ListExpr(items, self._sp(meta)), *items)

    def _number(self, tok: Token) -> str:
        digits = str(tok).split(".")[0].split("e")[0].split("E")[0]
        if len(digits) > MAX_DIGITS:
            raise SpecSyntaxError(f"number literal has {len(digits)} digits", self._tok(tok),
                                  f"numbers in a spec have at most {MAX_DIGITS} digits",
                                  code="E105")
        return str(tok)

    def int_lit(self, meta, c):
        return n.Num(int(self._number(c[0])), self._tok(c[0]))

    def float_lit(self, meta, c):
        value = float(self._number(c[0]))
        if value != value or value in (float("inf"), float("-inf")):
            raise SpecSyntaxError("number literal out of range", self._tok(c[0]), code="E105")
        return n.Num(value, self._tok(c[0]))

    def dims_lit(self, meta, c):
        tok = c[0]
        parts = str(tok).split("x")
        for p in parts:
            if len(p) > MAX_DIGITS:
                raise SpecSyntaxError("number literal too long", self._tok(tok), code="E105")
        sp = self._tok(tok)
        return n.Dims(tuple(n.Num(int(p), sp) for p in parts), sp)

    def true_lit(self, meta, c):
        return n.Bool(True, self._sp(meta))

    def false_lit(self, meta, c):
        return n.Bool(False, self._sp(meta))

    def name(self, meta, c):
        return n.Name(str(c[0]), self._tok(c[0]))


class _Parser:
    """One Lark instance per process; its transformer, post-lexer and comment list are
    re-aimed at each new file (guarded by a lock, since they hold per-parse state)."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.to_ast = ToAst("<string>")
        self.layout = Layout("<string>")
        self.comments: list[Token] = []
        self.lark = Lark(grammar_file().read_text(encoding="utf-8"), parser="lalr",
                         lexer="contextual", propagate_positions=True, maybe_placeholders=True,
                         postlex=self.layout, cache=_cache_file(),
                         lexer_callbacks={"COMMENT": self.comments.append})

    def parse(self, text: str, file: str) -> tuple[n.Module, list[Token]]:
        with self.lock:
            self.to_ast.file = self.layout.file = file
            self.to_ast.depth.clear()
            self.comments.clear()
            try:
                tree = self.lark.parse(text)
                return self.to_ast.transform(tree), list(self.comments)
            except VisitError as e:
                raise e.orig_exc from None
            finally:
                self.to_ast.depth.clear()


def _cache_file() -> str | bool:
    """Lark caches the LALR tables (checked against the grammar's hash) in the user's own
    cache folder, so start-up stays fast; a pickle is never read from a shared folder."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "resdsl")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return False
    if not os.access(folder, os.W_OK):
        return False
    from . import __version__
    return os.path.join(folder, f"lalr-{__version__}.cache")


@lru_cache(maxsize=None)
def _parser() -> _Parser:
    return _Parser()


def parse_with_comments(text: str, file: str = "<string>") -> tuple[n.Module, list[Token]]:
    """Parse and also return the comment tokens (for `fmt`)."""
    try:
        return _parser().parse(text, file)
    except ResdslError:
        raise
    except UnexpectedInput as e:
        raise _syntax_error(e, text, file) from None


def parse(text: str, file: str = "<string>") -> n.Module:
    """Parse spec text into a `nodes.Module`; raises SpecSyntaxError with a span."""
    return parse_with_comments(text, file)[0]


def _syntax_error(e: UnexpectedInput, text: str, file: str) -> SpecSyntaxError:
    """Lark's exception -> our error, saying in words what was expected."""
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else "?"
        shown = repr(ch)[1:-1] if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"U+{ord(ch):04X}"
        span = Span(file, e.line, e.column, e.line, e.column + 1)
        return SpecSyntaxError(f"unexpected character '{shown}'", span,
                               _char_hint(ch), code="E102")
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        line, col = _end_of(text)
        expected = _expected(_acceptable(e) if isinstance(e, UnexpectedToken) else e.expected)
        return SpecSyntaxError(f"unexpected end of file; expected {expected}",
                               Span(file, line, col, line, col + 1), code="E103")
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    expected = _expected(_acceptable(e))
    found = "end of line" if tok.type == "_NL" else f"'{tok}'"
    if tok.type == "_NL" and tok.line is None:
        line, col = _end_of(text)
        span = Span(file, line, col, line, col + 1)
    else:
        span = span_of(file, tok)
        if tok.type == "_NL":
            span = Span(file, span.line, span.col, span.line, span.col + 1)
    hint = None
    before = _last_token(e)
    if str(tok) in KEYWORDS and "NAME" in e.expected:
        hint = f"'{tok}' is a reserved word; choose another name"
    elif before is not None and str(before) in KEYWORDS and tok.type in ("COLON", "EQUAL"):
        hint = f"'{before}' is a reserved word; choose another name"
    elif before is not None and before.type in OPERATORS and tok.type == "_NL":
        hint = "a line cannot end in an operator: put the expression in ( ) or end the " \
               "line with \\"
    elif "_NL" in e.expected and tok.type in ("NAME", "INT", "DIMS", "FLOAT"):
        hint = "separate arguments with ',' and statements with a new line or ';'"
    return SpecSyntaxError(f"unexpected {found}; expected {expected}", span, hint, code="E101")


def _acceptable(e: UnexpectedToken) -> set[str]:
    """What the parser could take where it stopped (the lexer's own set, e.expected, also
    holds the post-lexer's always-accepted terminals and misses keywords)."""
    try:
        return set(e.interactive_parser.accepts()) or set(e.expected)
    except Exception:  # noqa: BLE001 - only a message depends on it
        return set(e.expected)


def _last_token(e: UnexpectedToken) -> Token | None:
    """The token the parser took just before the unexpected one, if it is at hand."""
    try:
        last = e.interactive_parser.parser_state.value_stack[-1]
    except (AttributeError, IndexError):
        return None
    return last if isinstance(last, Token) else None


BINARY_ONLY = OPERATORS - {"MINUS", "NOT"}   # operators that only follow an operand


def _expected(terms) -> str:
    """What the parser could take, in words; operators (and `[`) as one "an operator"."""
    terms = {t for t in terms if not t.startswith("__")}
    if len(terms & BINARY_ONLY) >= 3:   # after an operand: `-` and `[` go on it too
        terms = (terms - BINARY_ONLY - {"MINUS", "LSQB"}) | {"__operator"}
    words = sorted({"an operator" if t == "__operator" else _word(t) for t in terms})
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _end_of(text: str) -> tuple[int, int]:
    """Just after the last thing in the text (not on the empty line after its last newline)."""
    lines = text.rstrip().split("\n")
    return len(lines), len(lines[-1]) + 1


def _char_hint(ch: str) -> str | None:
    if ch == ":":
        return "a label goes right before its colon: `fc: fc 10`, `conv1.0: conv 32, 3x3`"
    if ch in "\"'":
        return 'paths in `use` are written in double quotes: use "other.res"'
    if not ch.isprintable() or ord(ch) > 127:
        return "is this a text file? specs are plain UTF-8 text"
    return None
