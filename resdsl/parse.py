"""Stage 1: text -> AST. Lark builds the LALR parser from grammar/resdsl.lark. `_Fast` runs its
table in one loop that builds `nodes` as it reduces (no parse tree: ten times faster, a fifth
of the memory). Text it does not take (a syntax error, a limit, or one of the rare tokens only
Lark's contextual lexer cuts, as in `3 x3`) Lark parses into a tree, for a non-recursive
Transformer (`ToAst`), and reports the errors of. Both build through `Build`: the same nodes
with the same spans.
"""
from __future__ import annotations

import gc
import re
from copy import copy
from dataclasses import fields, is_dataclass
from functools import lru_cache
from operator import itemgetter
from types import SimpleNamespace
from typing import Iterator, NamedTuple

from lark import Lark, Token
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)
from lark.lexer import BasicLexer
from lark.parsers.lalr_analysis import Shift
from lark.visitors import Transformer_NonRecursive

from . import nodes as n
from .errors import ResdslError, Span, SpecSyntaxError, did_you_mean, printable
from .resources import grammar_file

MAX_NESTING = 64        # brackets and braces open at once
MAX_EXPR_DEPTH = 200    # operators in one expression, counted along its deepest path
MAX_DIGITS = 30         # in one number literal
MAX_KINDS = 10_000       # token texts whose terminal the fast lexer remembers
CHUNK_CHARS = 65_536     # the fast lexer's text at a time
_CHUNK_END = re.compile(r"\n(?![\t \f\r\n;])")
PROMOTE_CHARS = 100_000  # a spec this long: its AST goes to the collector's oldest generation

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
    # (`_Fast._tokens` applies the same rules: newline_continues, and the one before `}`)

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
        return newline_continues(None if prev is None else prev.type,
                                 stack[-1].type if stack else None)


def newline_continues(prev: str | None, inner: str | None) -> bool:
    """Whether a newline after a token of kind `prev` (None: the start), with `inner` the
    innermost bracket open (None: none), is not the end of a statement: Layout's rule, and
    `_Fast._tokens`'s."""
    return prev is None or prev in Layout.CONTINUES or (inner is not None and inner != "LBRACE")


# Every child a builder gets is an entry: (line, col, end_line, end_col, depth, value), the
# value last: a token's text, or the node (tuple, str, None) built for a rule. `_Fast` keeps
# these on its stack (the positions are the text the child covers, parentheses included, as
# Lark's `propagate_positions` counts them; depth, that of its deepest expression).
Entry = tuple
ABSENT: Entry = (0, 0, 0, 0, 0, None)   # a `[x]` left out

# Rules whose node is an expression: each adds one to the depth (operators along the deepest
# path) that MAX_EXPR_DEPTH bounds; leaves count one.
EXPRESSIONS = frozenset({
    "or_", "and_", "not_", "compare", "dims_expr", "add", "sub", "mul", "div", "floordiv",
    "mod", "neg", "index", "func", "list_lit", "int_lit", "float_lit", "dims_lit", "true_lit",
    "false_lit", "name"})


def _maker(cls: type):
    """A function making `cls(*fields)` as its dataclass `__init__` would, setting the slots
    directly (a frozen dataclass's `__init__` goes through `object.__setattr__`, twice as slow;
    a 10 MB spec has millions of nodes and spans); `cls` itself where that cannot be done."""
    names = tuple(f.name for f in fields(cls))
    if getattr(cls, "__slots__", None) != names or "__post_init__" in vars(cls) \
            or not 2 <= len(names) <= 5:
        return cls
    new = object.__new__
    a, b, c, d, e = [getattr(cls, f).__set__ for f in names] + [None] * (5 - len(names))
    # one function per arity: a loop over the setters would cost about what they save

    def make2(v, w):
        o = new(cls)
        a(o, v)
        b(o, w)
        return o

    def make3(v, w, x):
        o = new(cls)
        a(o, v)
        b(o, w)
        c(o, x)
        return o

    def make4(v, w, x, y):
        o = new(cls)
        a(o, v)
        b(o, w)
        c(o, x)
        d(o, y)
        return o

    def make5(v, w, x, y, z):
        o = new(cls)
        a(o, v)
        b(o, w)
        c(o, x)
        d(o, y)
        e(o, z)
        return o
    return (make2, make3, make4, make5)[len(names) - 2]


# the node classes (and Span), as fast constructors taking every field in order
N = SimpleNamespace(**{name: _maker(cls) for name, cls in vars(n).items()
                       if isinstance(cls, type) and is_dataclass(cls)})
new_span = N.Span


def too_deep(span: Span) -> SpecSyntaxError:
    return SpecSyntaxError(f"expression nested more than {MAX_EXPR_DEPTH} deep", span,
                           "split it with a let-binding", code="E104")


class Build:
    """One method per grammar rule, named as Lark names its callback (the alias, else the
    rule): (the node's span, the entries of the children the tree keeps) -> a `nodes` value."""

    def __init__(self, file: str):
        self.file = file

    def _tok(self, tok: Entry) -> Span:
        return new_span(self.file, tok[0], tok[1], tok[2], tok[3])

    # -- top level
    def start(self, sp, c):
        return N.Module(self.file, tuple(e[-1] for e in c), sp)

    def use(self, sp, c):
        text = c[0][-1]
        if text.startswith('"'):   # a STRING; a NAME never starts so
            return N.Use(text[1:-1], True, sp)
        return N.Use(text, False, sp)

    def block_def(self, sp, c):
        name, params, body = c
        return N.BlockDef(name[-1], params[-1], body[-1], sp, self._tok(name))

    def network_def(self, sp, c):
        name, params, body = c
        return N.NetworkDef(name[-1], params[-1] or (), body[-1], sp, self._tok(name))

    def network_inst(self, sp, c):
        return N.NetworkInst(c[0][-1], c[1][-1], sp, self._tok(c[0]))

    def params(self, sp, c):
        return tuple(p[-1] for p in c if p[-1] is not None)

    def param(self, sp, c):
        return N.Param(c[0][-1], c[1][-1], sp)

    def body(self, sp, c):
        return tuple(e[-1] for e in c)

    net_body = args = body

    # -- statements
    def let(self, sp, c):
        return N.Let(c[0][-1], c[1][-1], sp)

    def layer(self, sp, c):
        label, kind, args = c
        return N.Layer(kind[-1], args[-1] or (), label[-1], sp)

    def label(self, sp, c):
        return c[0][-1][:-1].rstrip()

    def if_stmt(self, sp, c):
        cond, then, orelse = (e[-1] for e in c)
        orelse = (orelse,) if isinstance(orelse, n.If) else (orelse or ())
        return N.If(cond, then, orelse, sp)

    if_net = if_stmt

    def arg(self, sp, c):
        return N.Arg(None, c[0][-1], sp)

    def kwarg(self, sp, c):
        return N.Arg(c[0][-1], c[1][-1], sp)

    def residual(self, sp, c):
        return N.Residual(c[0][-1], sp)

    def shortcut_kind(self, sp, c):
        return N.Shortcut(c[1][-1], c[2][-1] or (), None, sp, c[0][-1])

    def shortcut_body(self, sp, c):
        return N.Shortcut(None, (), c[1][-1], sp, c[0][-1])

    def merge(self, sp, c):
        return N.Merge(c[0][-1], sp)

    def input(self, sp, c):
        return N.Input(c[0][-1], sp)

    def group(self, sp, c):
        return N.Group(c[0][-1], c[1][-1], sp)

    def stage(self, sp, c):
        name, count, call = c
        return N.Stage(name[-1], count[-1], call[-1], sp)

    def call(self, sp, c):
        return N.Call(c[0][-1], c[1][-1] or (), sp)

    # -- expressions
    def _bin(op):  # noqa: N805 - a factory evaluated in the class body
        def build(self, sp, c):
            return N.BinOp(op, c[0][-1], c[-1][-1], sp)
        return build

    add, sub, mul = _bin("+"), _bin("-"), _bin("*")
    div, floordiv, mod = _bin("/"), _bin("//"), _bin("%")
    and_, or_ = _bin("and"), _bin("or")
    del _bin

    def compare(self, sp, c):
        left, op, right = c
        return N.BinOp(op[-1], left[-1], right[-1], sp)

    def not_(self, sp, c):
        return N.Not(c[0][-1], sp)

    def func(self, sp, c):
        return N.Func(c[0][-1], c[1][-1] or (), sp)

    def neg(self, sp, c):
        return N.Neg(c[0][-1], sp)

    def index(self, sp, c):
        return N.Index(c[0][-1], c[1][-1], sp)

    def dims_expr(self, sp, c):
        return N.Dims(tuple(e[-1] for e in c), sp)

    def list_lit(self, sp, c):
        return N.ListExpr(tuple(e[-1] for e in c if e[-1] is not None), sp)

    def _number(self, tok: Entry) -> str:
        text = tok[-1]
        if len(text) <= MAX_DIGITS:
            return text
        digits = text.split(".")[0].split("e")[0].split("E")[0]
        if len(digits) > MAX_DIGITS:
            raise SpecSyntaxError(f"number literal has {len(digits)} digits", self._tok(tok),
                                  f"numbers in a spec have at most {MAX_DIGITS} digits",
                                  code="E105")
        return text

    def int_lit(self, sp, c):
        text = c[0][-1]
        return N.Num(int(text if len(text) <= MAX_DIGITS else self._number(c[0])), sp)

    def float_lit(self, sp, c):
        value = float(self._number(c[0]))
        if value != value or value in (float("inf"), float("-inf")):
            raise SpecSyntaxError("number literal out of range", sp, code="E105")
        return N.Num(value, sp)

    def dims_lit(self, sp, c):
        parts = c[0][-1].split("x")
        for p in parts:
            if len(p) > MAX_DIGITS:
                raise SpecSyntaxError("number literal too long", sp, code="E105")
        return N.Dims(tuple(N.Num(int(p), sp) for p in parts), sp)

    def true_lit(self, sp, c):
        return N.Bool(True, sp)

    def false_lit(self, sp, c):
        return N.Bool(False, sp)

    def name(self, sp, c):
        return N.Name(c[0][-1], sp)


class ToAst(Transformer_NonRecursive):
    """Parse tree -> `nodes`, bottom-up, without recursion, through `Build`: the reference path
    (`_Fast` gives the same result without the tree, and hands any text it cannot take here).
    Each result is an entry too, whose positions are not read (the tree's meta gives spans)."""

    def __init__(self, file: str):
        super().__init__()
        self._build = Build(file)   # (a `_name`: no rule's callback)

    def transform(self, tree):
        return super().transform(tree)[-1]

    def __default__(self, data, children, meta):
        depth, kept = 0, []
        for c in children:
            if isinstance(c, Token):
                c = (c.line, c.column, c.end_line, c.end_column, 0, str(c))
            elif c is None:
                c = ABSENT
            depth = max(depth, c[4])
            kept.append(c)
        sp = n.NOWHERE if meta.empty else Span(self._build.file, meta.line, meta.column,
                                                meta.end_line, meta.end_column)
        node = getattr(Build, data)(self._build, sp, kept)
        if data in EXPRESSIONS:
            depth += 1
            if depth > MAX_EXPR_DEPTH:
                raise too_deep(sp)
        return (0, 0, 0, 0, depth, node)


class _Bail(Exception):
    """The fast path cannot take this text (a syntax error, or something it leaves to Lark):
    the reference path parses it again, and reports what it finds."""


def _gatherer(kept: list, size: int, inlined: bool):
    """A function from a reduction's entries to those the tree keeps, as `_Fast._plan` lists
    them (index; -index-1: an inlined rule's list, spliced in; None: a `[x]` left out), or None
    when all are kept as they are. An inlined rule's children stay a list, which its parent
    extends in place (as Lark's ChildFilterLALR does: long repetitions stay linear)."""
    if size and kept == list(range(size)):
        return None
    if all(i is None or i >= 0 for i in kept) and len(kept) > 1 and not inlined:
        if None not in kept:
            return itemgetter(*kept)
        pick = itemgetter(*(size if i is None else i for i in kept))
        return lambda raw: pick(raw + [ABSENT])
    shape = "".join("n" if i is None else "s" if i < 0 else "v" for i in kept)
    i, j = (-k - 1 if k is not None and k < 0 else k for k in (kept + [None, None])[:2])
    if shape == "v":
        return lambda raw: [raw[i]]
    if shape == "s":
        return lambda raw: raw[i][-1]
    if shape == "sv":
        return lambda raw: _extended(raw[i][-1], [raw[j]])
    if shape == "ss":
        return lambda raw: _extended(raw[i][-1], raw[j][-1])
    if shape == "vs":
        return lambda raw: _extended([raw[i]], raw[j][-1])

    def gather(raw: list) -> list:
        c: list = []
        for k in kept:
            if k is None:
                c.append(ABSENT)
            elif k < 0:
                c += raw[-k - 1][-1]
            else:
                c.append(raw[k])
        return c
    return gather


def _extended(c: list, more: list) -> list:
    c += more
    return c


def _looks_ahead(rx: str) -> bool:
    """Whether a terminal's regular expression ends in a negative lookahead (`3x3` but not
    `3x3a`), the one assertion `_Fast` takes; any other (anchors, lookbehinds, lookaheads
    elsewhere, backreferences) or a capturing group is a `_Bail`."""
    if re.compile(rx).groups or re.search(r"\\[1-9bBAZ]|\(\?(?:[=<]|P=)|\$|(?<!\[)\^", rx):
        raise _Bail(f"a terminal findall cannot take: {rx}")
    ahead = rx.count("(?!")
    if ahead and not (ahead == 1 and rx.endswith(")")
                      and ")" not in rx[rx.index("(?!") + 3:-1]):
        raise _Bail(f"a lookahead before the end of a terminal: {rx}")
    return bool(ahead)


class _Fast:
    """The parse `Lark.parse` + `Layout` + `ToAst` gives, in one loop and without a tree: the
    text is cut with one regular expression made of the grammar's terminals (Lark's basic
    lexer's, in its order, keywords told from names the same way; findall gives the strings,
    and each one's terminal is found once and remembered: see `_kind`), the tokens go
    through the rules of `Layout`, and Lark's own LALR table drives the reductions, each one
    calling the same `Build` method with the span `propagate_positions` would give.

    Lark's contextual lexer tries, in each state, only the terminals that state takes. When
    the parser takes each token this lexer cuts, the contextual lexer cuts the same ones (a
    keyword where only a name fits is the one case told apart here: it cuts a name). A token
    the parser does not take, and any error a builder raises, stop this path with `_Bail`.
    """

    CLOSERS = ("RPAR", "RSQB", "RBRACE")

    def __init__(self, lark: Lark):
        conf = copy(lark.lexer_conf)
        conf.skip_validation = True
        lexer = BasicLexer(conf)
        terminals = lexer.scanner.terminals
        if len(terminals) >= 100 or conf.g_regex_flags:
            raise _Bail("terminals beyond one regular expression")
        self.ignore = frozenset(conf.ignore)
        self.newlines = lexer.newline_types
        # blanks before a token go with it (one match instead of two), when they are one
        # ignored class of characters, `[...]+`
        blanks = [t.pattern.to_regexp() for t in terminals
                  if t.name in self.ignore and t.name not in self.newlines]
        lead = blanks[0][:-1] + "*" if len(blanks) == 1 and re.fullmatch(
            r"\[[^\]]+\]\+", blanks[0]) else ""
        regexps = [t.pattern.to_regexp() for t in terminals]
        self.match_at = re.compile(lead + "(?:" + "|".join(
            f"(?P<{t.name}>{rx})" for t, rx in zip(terminals, regexps)) + ")").match
        # the same, with no group (findall gives the strings, no Match objects: twice as
        # fast) and any other character last, so the matches follow each other
        self.findall = re.compile(lead + "(?:" + "".join(
            f"(?:{rx})|" for rx in regexps) + r"[\s\S])").findall
        self.contextual = {t.name: re.compile(rx).fullmatch
                           for t, rx in zip(terminals, regexps) if _looks_ahead(rx)}
        self.kinds: dict[str, tuple[str, int]] = {}
        self.keywords: dict[str, dict[str, str]] = {}
        for name, callback in lexer.callback.items():
            if name in self.ignore:
                continue
            words = getattr(getattr(callback, "scanner", None), "terminals", None)
            if words is None or any(w.pattern.flags or w.pattern.type != "str" for w in words):
                raise _Bail(f"a lexer callback on {name}")
            self.keywords[name] = {w.pattern.value: w.name for w in words}
        self.names = {kw: name for name, words in self.keywords.items() for kw in words.values()}
        self.special = self.newlines | self.ignore | {"_NL", *OPENERS, *self.CLOSERS}
        if self.special & (set(self.keywords) | set(self.names)):
            raise _Bail("a keyword Layout looks at")

        table = lark.parse_interactive("").parser_state.parse_conf
        self.start, self.end = table.start_state, table.end_state
        if sorted(table.states) != list(range(len(table.states))):
            raise _Bail("states not numbered")
        rules = {arg for acts in table.states.values() for action, arg in acts.values()
                 if action is not Shift}
        deep = {r.origin.name for r in rules if (r.alias or r.origin.name) in EXPRESSIONS}
        while True:   # the rules an expression can hold: their entries carry its depth
            more = {s.name for r in rules if r.origin.name in deep for s in r.expansion
                    if not s.is_term} - deep
            if not more:
                break
            deep |= more
        plans = {r: self._plan(r, r.origin.name in deep) for r in rules}
        self.table = [{sym: arg if action is Shift else plans[arg]
                       for sym, (action, arg) in table.states[s].items()}
                      for s in range(len(table.states))]
        self.gotos: dict[tuple, tuple] = {}

    @staticmethod
    def _plan(rule, deep: bool):
        """What reducing `rule` does: the rule's name, for a `?rule` passing its one child on
        (only the state changes); else (size, goto, gather, build, deep, expression): gather
        takes the children the tree keeps (None: all of them); build is the `Build` method, or
        None when the gathered value is the result (an inlined `_rule`'s list of entries, for
        its parent, or a `?rule`'s one child, in parentheses); deep, the two children whose
        depths the entry's is the greater of (None: no depth)."""
        # names as plain str: a freshly built Lark's are Tokens (a cached one's str), and the
        # parse loop tells a passed-on `?rule` by `type(act) is str`
        size, name = len(rule.expansion), str(rule.alias or rule.origin.name)
        origin = str(rule.origin.name)
        single = rule.options.expand1 and not rule.alias
        empty = rule.options.empty_indices
        nones = ([len(run) for run in "".join("01"[b] for b in empty).split("0")] if empty
                 else [0] * (size + 1))
        kept: list = []   # index: that child; -index-1: an inlined rule's children; None
        for i, sym in enumerate(rule.expansion):
            kept += [None] * nones[i]
            if not sym.is_term:
                kept.append(-i - 1 if sym.name.startswith("_") else i)
            elif not (sym.filter_out or rule.options.keep_all_tokens):
                kept.append(i)
        kept += [None] * nones[size]
        inner = [i for i, sym in enumerate(rule.expansion) if not sym.is_term]
        if deep and len(inner) > 2:
            raise _Bail(f"{name}: an expression of more than two rules")
        pair = (inner[0], inner[-1]) if deep and inner else None
        if single and len(kept) == 1 and kept[0] is not None and kept[0] >= 0:
            if size == 1:
                return origin
            child = kept[0]
            return size, origin, lambda raw: raw[child][-1], None, pair, False
        if name.startswith("_"):
            build = None
        elif not hasattr(Build, name) or single or (size == 0 and name != "start"):
            raise _Bail(f"no builder for {name}")
        else:
            build = getattr(Build, name)
        return (size, origin, _gatherer(kept, size, build is None), build, pair,
                name in EXPRESSIONS)

    def _goto(self, below: int, symbol: str, kind: str) -> tuple:
        """The state after `symbol` over state `below`, with `kind` next, and the action there,
        after any run of `?rule` reductions that only pass one child on (each changes the top
        state, from the same state below); remembered, as it depends on these three only."""
        table = self.table
        state = table[below][symbol]
        act = table[state].get(kind)
        while type(act) is str:
            state = table[below][act]
            act = table[state].get(kind)
        self.gotos[below, symbol, kind] = state, act
        return state, act

    def parse(self, text: str, file: str) -> tuple[n.Module, list[Token]]:
        table, gotos, goto_of, names = self.table, self.gotos, self._goto, self.names
        build, span = Build(file), new_span
        states, stack = [self.start], []
        comments: list[Token] = []
        for kind, tok in self._tokens(text, comments):
            act = table[states[-1]].get(kind)
            if act is None and kind in names:    # a keyword where only a name fits:
                kind = names[kind]               # the contextual lexer cuts a name
                act = table[states[-1]].get(kind)
            if type(act) is str:                 # a `?rule` passing one child on
                key = (states[-2], act, kind)
                states[-1], act = gotos.get(key) or goto_of(*key)
            while True:
                if type(act) is int:             # shift
                    states.append(act)
                    stack.append(tok)
                    break
                if act is None:
                    if states[-1] == self.end:
                        return stack[-1][-1], comments
                    raise _Bail(kind)
                size, goto, gather, fn, deep, expression = act
                if size:
                    raw = stack[-size:]
                    del stack[-size:], states[-size:]
                    first, last = raw[0], raw[-1]
                    depth = 0 if deep is None else max(raw[deep[0]][4], raw[deep[1]][4])
                    c = raw if gather is None else gather(raw)
                    if fn is None:
                        value = c
                    else:
                        value = fn(build, span(file, first[0], first[1], last[2], last[3]), c)
                        if expression:
                            depth += 1
                            if depth > MAX_EXPR_DEPTH:
                                raise _Bail("too deep")
                    entry = (first[0], first[1], last[2], last[3], depth, value)
                else:                            # only `start`, of an empty file
                    entry = ABSENT[:5] + (fn(build, n.NOWHERE, []),)
                key = (states[-1], goto, kind)
                nxt, act = gotos.get(key) or goto_of(*key)
                states.append(nxt)
                stack.append(entry)
        raise _Bail("no end")

    @staticmethod
    def _chunks(text: str) -> Iterator[tuple[int, int]]:
        """The text some 64 KB of lines at a time, for findall (a list of a 10 MB spec's 4 M
        matches at once would be 160 MB): a chunk ends after a newline that no blank,
        newline or `;` follows, where only a newline's match ends, no path of the regular
        expression reads past it, and so each chunk's matches are the whole text's."""
        cut, pos = _CHUNK_END.search, 0
        while pos < len(text):
            m = cut(text, pos + CHUNK_CHARS)
            end = m.end() if m else len(text)
            yield pos, end
            pos = end

    def _kind(self, text: str, pos: int, whole: str) -> tuple[str, int]:
        """(terminal, blanks before it) of the match `whole` at `pos`, from the pattern with
        a group per terminal; remembered for `whole` (up to MAX_KINDS texts) where that is
        its terminal wherever it is the expression's match. It is unless a terminal that
        looks ahead matches it or took it: every other path of the regular expression reads
        only the text it takes, so where the match is `whole` again, the path that took it
        here can take it there, and an earlier path that took it there would have here."""
        m = self.match_at(text, pos)
        if m is None or m.end() != pos + len(whole):
            raise _Bail("unexpected character")   # the last alternative took it
        kind = m.lastgroup
        found = kind, m.start(kind) - pos
        if len(self.kinds) < MAX_KINDS and kind not in self.contextual \
                and not any(fits(whole[found[1]:]) for fits in self.contextual.values()):
            self.kinds[whole] = found
        return found

    def _tokens(self, text: str, comments: list[Token]):
        """(kind, entry) after `Layout`'s rules (kept in step with Layout.process), then $END."""
        ignore, newlines, keywords = self.ignore, self.newlines, self.keywords
        continues, openers, closers = Layout.CONTINUES, OPENERS, self.CLOSERS
        special = self.special
        kinds, kind_at, findall = self.kinds, self._kind, self.findall
        line, line_start, pos = 1, 0, 0
        prev, prev_tok, stack = None, None, []
        for chunk in self._chunks(text):
            for whole in findall(text, *chunk):
                kind, lead = kinds.get(whole) or kind_at(text, pos, whole)
                start = pos + lead
                pos += len(whole)
                value = whole[lead:] if lead else whole
                if kind in keywords:
                    kind = keywords[kind].get(value, kind)
                elif kind in special:   # what may hold a newline, is ignored, or Layout looks at
                    first, col = line, start - line_start + 1
                    if kind in newlines and "\n" in value:
                        line += value.count("\n")
                        line_start = start + value.rindex("\n") + 1
                    if kind in ignore:
                        if kind == "COMMENT":
                            comments.append(Token(kind, value, start, first, col, line,
                                                  pos - line_start + 1, pos))
                        continue
                    tok = (first, col, line, pos - line_start + 1, 0, value)
                    if kind == "_NL":
                        if newline_continues(prev, stack[-1] if stack else None):
                            continue
                    elif kind in openers:
                        stack.append(kind)
                        if len(stack) > MAX_NESTING:
                            raise _Bail("nested too deep")
                    elif kind in closers:
                        if stack and openers[stack[-1]] == kind:
                            stack.pop()
                        if kind == "RBRACE" and prev is not None and prev not in continues:
                            yield "_NL", tok
                    prev, prev_tok = kind, tok
                    yield kind, tok
                    continue
                prev = kind
                prev_tok = (line, start - line_start + 1, line, pos - line_start + 1, 0, value)
                yield kind, prev_tok
        if not newline_continues(prev, stack[-1] if stack else None):
            yield "_NL", (prev_tok[2], prev_tok[3], prev_tok[2], prev_tok[3], 0, "\n")
        yield "$END", None


class _Parser:
    """One Lark instance per process; its post-lexer and comment list are re-aimed at each new
    file (guarded by a lock, since they hold per-parse state). Text goes to `_Fast` first;
    what it hands back, Lark parses into a tree for `ToAst`, and reports the syntax errors of."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.layout = Layout("<string>")
        self.comments: list[Token] = []
        self.lark = Lark(grammar_file().read_text(encoding="utf-8"), parser="lalr",
                         lexer="contextual", propagate_positions=True, maybe_placeholders=True,
                         postlex=self.layout, cache=_cache_file(),
                         lexer_callbacks={"COMMENT": self.comments.append})
        try:
            self.fast: _Fast | None = _Fast(self.lark)
        except Exception:  # noqa: BLE001 - a grammar, or a Lark, it was not written for:
            self.fast = None   # Lark alone (tests/test_parse_fast.py checks it is on)

    def parse(self, text: str, file: str) -> tuple[n.Module, list[Token]]:
        # A big spec's AST is millions of objects and no cycles. The cycle collector, which
        # would walk all of them again and again as they pile up, is off meanwhile; after, they
        # go straight to its oldest generation (gc.freeze + unfreeze: an O(1) move), instead of
        # being walked once more by each younger generation's collection on the way there.
        collecting = gc.isenabled()
        gc.disable()
        try:
            with self.lock:
                return self._parse(text, file)
        finally:
            if collecting:
                if len(text) >= PROMOTE_CHARS and not gc.get_freeze_count():
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()

    def _parse(self, text: str, file: str) -> tuple[n.Module, list[Token]]:
        if self.fast is not None:
            try:
                return self.fast.parse(text, file)
            except (_Bail, ResdslError):
                pass
        self.layout.file = file
        self.comments.clear()
        try:
            tree = self.lark.parse(text)
            return ToAst(file).transform(tree), list(self.comments)
        except VisitError as e:
            raise e.orig_exc from None
        finally:
            self.comments.clear()


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
    """Lark's exception -> our error, saying in words what was expected, with a hint (and
    notes on unbalanced braces) for the common mistakes."""
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else "?"
        shown = repr(ch)[1:-1] if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"U+{ord(ch):04X}"
        span = Span(file, e.line, e.column, e.line, e.column + 1)
        return SpecSyntaxError(f"unexpected character '{shown}'", span,
                               _char_hint(ch, text, e.pos_in_stream), code="E102")
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        line, col = _end_of(text)
        expected = _expected(_acceptable(e) if isinstance(e, UnexpectedToken) else e.expected)
        return SpecSyntaxError(f"unexpected end of file; expected {expected}",
                               Span(file, line, col, line, col + 1), code="E103",
                               notes=_bracket_notes(text, file, len(text)))
    assert isinstance(e, UnexpectedToken)
    at = _at(e, text)
    tok, word = at.tok, _misspelt_keyword(at, text)
    if word is not None and at.before is not None:
        return SpecSyntaxError(f"'{at.before}' is not a keyword", span_of(file, at.before), word,
                               code="E101")
    expected = _expected(at.accepts)
    found = "end of line" if tok.type == "_NL" else f"'{tok}'"
    if tok.type == "_NL" and tok.line is None:
        line, col = _end_of(text)
        span = Span(file, line, col, line, col + 1)
    else:
        span = span_of(file, tok)
        if tok.type == "_NL":
            span = Span(file, span.line, span.col, span.line, span.col + 1)
    notes = _bracket_notes(text, file, _offset(tok, text), open_too=False) if at.depth == 0 \
        else []
    return SpecSyntaxError(f"unexpected {found}; expected {expected}", span, _token_hint(at),
                           code="E101", notes=notes)


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


def _char_hint(ch: str, text: str, pos: int) -> str | None:
    line = text[max(text.rfind("\n", 0, pos) + 1, pos - MAX_HINTED):pos]
    named = re.search(r"([A-Za-z_]\w*)\s*$", line)
    if ch == ":" and named:   # `stride: 2`, `width: 64`: where no label can be
        value = re.split(r"[,)#;\n]", text[pos + 1:pos + 201])[0].strip() or "..."
        return f"a value is given with '=': `{named.group(1)} = {_shown(value)}` (a " \
               "`name:` label goes only before a layer)"
    if ch == ":":
        return "a label goes right before its colon: `fc: fc 10`, `conv1.0: conv 32, 3x3`"
    used = re.match(r"\s*use\s+([\w.]+)$", line + "." if ch == "." else "")
    if used:   # `use std.res`
        name = used.group(1)[:-1]
        return f'a bundled library is named alone (`use {name}`), a file in double quotes ' \
               f'(`use "{name}.res"`)'
    if ch in "\"'":
        return 'paths in `use` are written in double quotes: use "other.res"'
    if not ch.isprintable() or ord(ch) > 127:
        return "is this a text file? specs are plain UTF-8 text"
    return None


# ---- hints for common mistakes -----------------------------------------------------------------

MAX_HINTED = 500   # characters of a line that hints read

# The keywords that begin a statement: at the top level, in a block's body, in a network's.
STARTS = {None: ("use", "block", "network"), "block": ("residual", "shortcut", "merge", "if"),
          "network": ("input", "stage", "stem", "head", "if")}
USAGE = {"merge": "merge add", "shortcut": "shortcut projection", "input": "input 3 x 224 x 224",
         "use": "use std", "stage": "stage layer1 = 2 x basic(64)"}


class _At(NamedTuple):
    """Where the parser stopped: the token it could not take, the one it took before, what it
    would take (the parser's set and the lexer's), and the token's line cut around it."""

    tok: Token
    before: Token | None
    accepts: set[str]
    lexed: set[str]
    prefix: str     # the line before the token
    rest: str       # the line from the token, up to a comment or a ';'
    depth: int      # braces open at the token
    where: str | None   # the word before the outermost of them: "block", "network", ...


def _at(e: UnexpectedToken, text: str) -> _At:
    tok = e.token
    line, col = (tok.line, tok.column) if tok.line is not None else _end_of(text)
    src = text.split("\n")[line - 1] if line <= text.count("\n") + 1 else ""
    src = src if len(src) <= MAX_HINTED else ""   # no hint quotes or searches a huge line
    rest = re.split(r"[#;]", src[col - 1:])[0].strip() if tok.type != "_NL" else ""
    braces = [i for i in _brackets(text, _offset(tok, text))[0] if text[i] == "{"]
    where = re.match(r"\s*(\w*)", text[text.rfind("\n", 0, braces[0]) + 1:braces[0]]).group(1) \
        if braces else None
    return _At(tok, _last_token(e), _acceptable(e), set(e.expected), src[:col - 1], rest,
               len(braces), where)


def _offset(tok: Token, text: str) -> int:
    return tok.start_pos if tok.line is not None and tok.start_pos is not None else len(text)


def _misspelt_keyword(at: _At, text: str) -> str | None:
    """`stge s1 = ...`, `netwrk n {`: a name that begins a statement, close to a keyword."""
    b = at.before
    if b is None or b.type != "NAME" or str(b) in KEYWORDS or b.line is None:
        return None
    start = text.split("\n")[b.line - 1][:b.column - 1].rstrip()
    if start and not start.endswith(("{", ";")):
        return None
    return did_you_mean(str(b), STARTS.get(at.where, ()), cutoff=0.75)


def _reserved(at: _At) -> str | None:
    if str(at.tok) in KEYWORDS and "NAME" in at.lexed:
        return f"'{at.tok}' is a reserved word; choose another name"
    if at.before is not None and str(at.before) in KEYWORDS and at.tok.type in ("COLON",
                                                                               "EQUAL"):
        return f"'{at.before}' is a reserved word; choose another name"
    return None


def _line_ends_in_operator(at: _At) -> str | None:
    if at.before is not None and at.before.type in OPERATORS and at.tok.type == "_NL":
        return "a line cannot end in an operator: put the expression in ( ) or end the line " \
               "with \\"
    return None


def _near_keyword(at: _At) -> str | None:
    """`} els {`: a name where a keyword close to it fits."""
    if at.tok.type != "NAME":
        return None
    return did_you_mean(str(at.tok), [t.lower() for t in at.accepts if t.lower() in KEYWORDS])


def _parenthesised(at: _At) -> str | None:
    """`conv(16, 3x3)`: a layer statement's arguments are not in parentheses."""
    line = at.prefix + at.rest
    m = re.match(r"\s*(?:[\w.]+\s*:\s*)?([A-Za-z_]\w*)\s*\(", line)
    if m is None or m.group(1) in KEYWORDS or len(at.prefix) < m.end():
        return None
    inner = re.split(r"[#;]", line[m.end():])[0].strip()
    inner = inner[:-1].rstrip() if inner.endswith(")") else inner
    if not inner:
        return f"a layer without arguments takes no parentheses: `{m.group(1)}`"
    return f"a layer's arguments are not in parentheses: `{m.group(1)} {_shown(inner)}`"


def _call_without_parentheses(at: _At) -> str | None:
    """`stage s = 2 x basic 16`, `network n = resnet basic, [...]`: a call needs ( )."""
    head = at.prefix.lstrip()
    if at.before is None or at.before.type != "NAME" or "LPAR" not in at.accepts \
            or not head.startswith(("stage ", "network ")) or "=" not in head:
        return None
    what = "a stage's block" if head.startswith("stage") else "a network template"
    return f"{what} takes its arguments in parentheses: `{at.before}({_shown(at.rest)})`"


def _star_repeat(at: _At) -> str | None:
    """`stage s = 2 * basic(16)`: a stage repeats its block with `x`."""
    m = re.match(r"\s*(stage\s.*=.+?)\s*\*\s*([A-Za-z_]\w*\s*\(.*)", at.prefix + at.rest)
    if m is None or "X" not in at.accepts:
        return None
    call = re.split(r"[#;]", m.group(2))[0].strip()
    return f"a stage repeats its block with `x`: `{_shown(m.group(1))} x {_shown(call)}`"


def _trailing_comma(at: _At) -> str | None:
    b = at.before
    if b is None or b.type != "COMMA" or at.tok.line is None or at.tok.line == b.line:
        return None
    return f"the ',' that ends line {b.line} continues the statement on the next line: " \
           "remove it"


def _equals_for_compare(at: _At) -> str | None:
    if at.tok.type == "EQUAL" and "COMPARE" in at.accepts:
        return "'=' gives a value: to compare, write '=='"
    return None


def _missing_equals(at: _At) -> str | None:
    """`stage s1 2 x basic(16)`, `network n resnet(...)`, `x 3`: the '=' left out."""
    if "EQUAL" not in at.accepts or at.tok.type in ("_NL", "LBRACE", "RBRACE", "EQUAL") \
            or not re.fullmatch(r"\s*((stage|network)\s+)?[A-Za-z_]\w*\s*", at.prefix):
        return None
    return f"is an '=' missing? `{_shown(at.prefix.strip())} = {_shown(at.rest)}`"


def _else_on_its_own_line(at: _At) -> str | None:
    if at.before is not None and str(at.before) == "else" and at.tok.type == "LBRACE":
        return "`else` goes on the line of the `}` before it: `} else {`"
    return None


def _block_without_parameters(at: _At) -> str | None:
    head = at.prefix.strip()
    if at.tok.type == "LBRACE" and "LPAR" in at.accepts and head.startswith("block"):
        return f"a block lists its parameters in parentheses, even none: " \
               f"`{_shown(head)}() {{`"
    return None


def _missing_brace(at: _At) -> str | None:
    """`block b(p)` + newline + `{`, `residual(`, `if c relu`: the body's '{' belongs here."""
    head = at.prefix.strip()
    if "LBRACE" in at.accepts and at.tok.type != "LBRACE" and head:
        return f"the body's '{{' goes here, on this line: `{_shown(head)} {{`"
    return None


def _extra_brace(at: _At) -> str | None:
    if at.tok.type == "RBRACE" and at.depth == 0:
        return "no '{' is open here: is this '}' one too many?"
    return None


def _keyword_alone(at: _At) -> str | None:
    word = str(at.before) if at.before is not None else None
    if word in USAGE and at.tok.type == "_NL":
        return f"e.g. `{USAGE[word]}`"
    return None


def _separate(at: _At) -> str | None:
    if "_NL" in at.lexed and at.tok.type in ("NAME", "INT", "DIMS", "FLOAT"):
        return "separate arguments with ',' and statements with a new line or ';'"
    return None


# The first that applies gives the hint of an unexpected token.
TOKEN_HINTS = (_reserved, _line_ends_in_operator, _near_keyword, _else_on_its_own_line,
               _parenthesised, _call_without_parentheses, _star_repeat, _trailing_comma,
               _equals_for_compare, _missing_equals, _block_without_parameters,
               _missing_brace, _extra_brace, _keyword_alone, _separate)


def _token_hint(at: _At) -> str | None:
    return next((h for h in (rule(at) for rule in TOKEN_HINTS) if h), None)


def _shown(source: str, width: int = 60) -> str:
    """A piece of the user's line as a hint quotes it: printable, and cut when long."""
    source = printable(source)
    return source if len(source) <= width else source[:width - 1] + "…"


BRACKETS = re.compile(r'#[^\n]*|"[^"\n]*"|[][(){}]')   # comments and paths skipped


def _brackets(text: str, end: int) -> tuple[list[int], tuple[int, int] | None]:
    """The offsets of the brackets still open at `end`, and the first '}' (first on its line)
    that closes a '{' on a line indented differently from its own: the likely place of a
    missing or an extra '}'. One pass, so a long line costs no more than a short one."""
    opened: list[tuple[int, int]] = []   # (offset, indentation of its line)
    odd, line_start, indent, prev = None, -1, 0, 0
    for m in BRACKETS.finditer(text, 0, end):
        pos, c = m.start(), m.group()
        nl = text.rfind("\n", prev, pos)
        first = nl >= 0 or line_start < 0   # nothing matched before it on its line
        if first:
            line_start = nl + 1
            lead = text[line_start:pos]
            indent = len(lead) - len(lead.lstrip(" \t"))
            first = indent == pos - line_start
        prev = m.end()
        if c in "([{":
            opened.append((pos, indent))
        elif c in ")]}" and opened:
            start, width = opened.pop()
            if c == "}" and odd is None and first and indent != width:
                odd = (start, pos)
    return [pos for pos, _ in opened], odd


def _bracket_notes(text: str, file: str, end: int, open_too: bool = True
                   ) -> list[tuple[Span, str]]:
    """For an error at `end`: where a '}' closes a '{' of other indentation, else (with
    `open_too`) the innermost bracket left open."""
    opened, odd = _brackets(text, end)
    if odd is not None:
        why = f"this '}}' closes the '{{' of line {_place(text, odd[0])[0]}, which is " \
              "indented differently"
        return [(_span_at(text, file, odd[1]), why)]
    if opened and open_too:
        return [(_span_at(text, file, opened[-1]), f"this '{text[opened[-1]]}' is not closed")]
    return []


def _place(text: str, pos: int) -> tuple[int, int]:
    """The 1-based line and column of an offset."""
    return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _span_at(text: str, file: str, pos: int) -> Span:
    line, col = _place(text, pos)
    return Span(file, line, col, line, col + 1)
