"""The abstract syntax tree: frozen dataclasses, each carrying the span of the text it came from
(with slots: a 10 MB spec is millions of nodes, a third smaller so).

Spans are left out of equality, so `parse(fmt(x)) == parse(x)` compares structure only.
Later stages attach to this tree by reading it; they never mutate it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter
from typing import Iterable, Optional, Union

from .errors import Span

NOWHERE = Span("<none>", 0, 0, 0, 0)


def _span() -> Span:
    return field(default=NOWHERE, compare=False, repr=False)  # type: ignore[return-value]


# ---- expressions ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Num:
    value: Union[int, float]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # + - * / // %, a comparison (== != < <= > >=), `and`, `or`
    left: "Expr"
    right: "Expr"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Neg:
    operand: "Expr"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Not:
    operand: "Expr"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Func:
    """A built-in function's call in an expression: `max(planes // 4, 8)`."""

    name: str
    args: tuple["Arg", ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple["Expr", ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Index:
    target: "Expr"
    index: "Expr"
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Dims:
    """`3x3`, `3 x 224 x 224`, `k x k`: a kernel size or a tensor shape."""

    items: tuple["Expr", ...]
    span: Span = _span()


Expr = Union[Num, Bool, Name, BinOp, Neg, Not, Func, ListExpr, Index, Dims]


# ---- statements ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Arg:
    """A call argument: positional when `name` is None, else `name = value`."""

    name: Optional[str]
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Let:
    name: str
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Layer:
    """A built-in layer or a block used as a statement: `[label:] kind args`."""

    kind: str
    args: tuple[Arg, ...]
    label: Optional[str] = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Residual:
    body: tuple["Stmt", ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Shortcut:
    """`shortcut KIND [args]` (built-in kinds) or `shortcut { ... }` (custom branch)."""

    kind: Optional[str]
    args: tuple[Arg, ...] = ()
    body: Optional[tuple["Stmt", ...]] = None
    span: Span = _span()
    label: Optional[str] = None     # the shortcut's container (default `downsample`)


@dataclass(frozen=True, slots=True)
class Merge:
    op: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class If:
    """`if cond { ... } else { ... }`: the statements of one branch, chosen when the block
    (or network) is instantiated; `else if` is an `If` alone in `orelse`."""

    cond: "Expr"
    then: tuple["Stmt", ...]
    orelse: tuple["Stmt", ...] = ()
    span: Span = _span()


Stmt = Union[Let, Layer, Residual, Shortcut, Merge, If]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    default: Optional[Expr] = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Arg, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Input:
    shape: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Group:
    """`stem { ... }` or `head { ... }`: layers at the network's top level, grouped for reading."""

    kind: str
    body: tuple[Stmt, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Stage:
    """`stage NAME = count x block(args)`; count is None when written without `x`."""

    name: str
    count: Optional[Expr]
    call: Call
    span: Span = _span()


NetStmt = Union[Let, Layer, Input, Group, Stage, If]


# ---- top level -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Use:
    """`use std` (a bundled library) or `use "other.res"` (a path relative to this file)."""

    target: str
    is_path: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BlockDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, slots=True)
class NetworkDef:
    name: str
    params: tuple[Param, ...]
    body: tuple[NetStmt, ...]
    span: Span = _span()
    name_span: Span = _span()


@dataclass(frozen=True, slots=True)
class NetworkInst:
    """`network resnet50 = resnet(bottleneck, [3, 4, 6, 3])`."""

    name: str
    call: Call
    span: Span = _span()
    name_span: Span = _span()


Item = Union[Use, BlockDef, NetworkDef, NetworkInst, Let]


@dataclass(frozen=True, slots=True)
class Module:
    file: str
    items: tuple[Item, ...]
    span: Span = _span()


# ---- queries ------------------------------------------------------------------------------

# The expressions directly inside one, by its type (leaves have none): one lookup per node.
_INNER = {
    BinOp: attrgetter("left", "right"), Neg: lambda x: (x.operand,),
    Not: lambda x: (x.operand,), Func: lambda x: [a.value for a in x.args],
    ListExpr: attrgetter("items"), Dims: attrgetter("items"), Index: attrgetter("target", "index"),
}


def subexpressions(e: Expr) -> Iterable[Expr]:
    """An expression and every expression inside it, walked without recursion."""
    inner = _INNER.get
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        kids = inner(type(x))
        if kids is not None:
            stack += kids(x)


def _all(e: Expr, kinds: tuple[type, ...]) -> list:
    """The expressions of these types in an expression, in the order `subexpressions` gives."""
    inner = _INNER.get
    stack, found = [e], []
    while stack:
        x = stack.pop()
        t = type(x)
        if t in kinds:
            found.append(x)
        kids = inner(t)
        if kids is not None:
            stack += kids(x)
    return found


def names_in(e: Expr) -> list[Name]:
    """Every name an expression refers to."""
    return _all(e, (Name,))


def references(e: Expr) -> list[Union[Name, Func]]:
    """Every name and every built-in function call in an expression (one walk for both)."""
    return _all(e, (Name, Func))


def branches(body: Iterable) -> Iterable[tuple]:
    """Every statement list nested in a body: the body itself, then each `if`'s branches
    (without recursion into residual / shortcut bodies)."""
    stack = [tuple(body)]
    while stack:
        stmts = stack.pop()
        yield stmts
        for st in stmts:
            if isinstance(st, If):
                stack += [st.then, st.orelse]


def head_span(st: Layer) -> Span:
    """Where a layer statement's kind is written: after `label: ` as fmt lays it out (the
    node keeps no span of its own for the name)."""
    s = st.span
    start_col = s.col + (len(st.label) + 2 if st.label else 0)
    return Span(s.file, s.line, start_col, s.line, start_col + len(st.kind))
