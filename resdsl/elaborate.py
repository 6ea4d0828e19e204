"""Stage 2: AST -> instance tree. Evaluates expressions, binds arguments, instantiates blocks,
expands stages and names every layer. No shapes yet: `graph.py` adds them.

The expansion limit is enforced while expanding (a stage's size is known from its first two
blocks before the rest are built), so a repeat count of 10**12 costs nothing.
"""
from __future__ import annotations

import operator
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Union

from . import nodes as n
from .check import BUILTIN_NAMES, STAGE_NAMES, Bindings, bind, structure_errors
from .functions import FUNCTIONS, VARIADIC
from .errors import (LimitError, ResdslError, Span, SpecNameError, SpecValueError,
                     did_you_mean)
from .ops import BOOL, DEFAULT_MERGE, FLOAT, INT, LAYERS, NONNEG, PAIR, PROB, REQUIRED, SHORTCUTS
from .limits import MAX_ATTR, MAX_LAYERS
from .loader import Program, Scope
from .nodes import head_span, names_in, subexpressions

MAX_BLOCK_DEPTH = 32
MAX_INT = 2 ** 62
MAX_LIST = 10_000


# ---- values --------------------------------------------------------------------------------

class DimsValue(tuple):
    """The value of `3x3` or `3 x 224 x 224`."""


@dataclass(frozen=True)
class BlockRef:
    """A block as a value: passed as an argument, used as a statement or in a stage."""

    defn: n.BlockDef
    scope: Scope

    @property
    def name(self) -> str:
        return self.defn.name


Value = Union[int, float, bool, tuple, DimsValue, BlockRef]


def describe(v: Value) -> str:
    if isinstance(v, bool):
        return f"the boolean {str(v).lower()}"
    if isinstance(v, int):
        return f"the integer {v}"
    if isinstance(v, float):
        return f"the number {v}"
    if isinstance(v, DimsValue):
        return f"the size {'x'.join(map(str, v))}"
    if isinstance(v, tuple):
        return f"a list of {len(v)}"
    return f"the block '{v.name}'"


# ---- the instance tree ---------------------------------------------------------------------

@dataclass
class LayerNode:
    name: str           # within its parent: conv1, fc, downsample.0
    path: str           # dotted from the network: layer1.0.conv1
    kind: str
    attrs: dict[str, Any]
    span: Span


@dataclass
class ShortcutNode:
    kind: str           # identity | pad | projection | avgdown | none | custom
    path: str           # layer1.0.downsample
    span: Span
    always: bool = False
    body: list["Node"] = field(default_factory=list)


@dataclass
class BlockNode:
    name: str
    path: str
    block: str          # the block definition's name
    span: Span
    args: dict[str, Any] = field(default_factory=dict)
    pre: list["Node"] = field(default_factory=list)
    residual: Optional[list["Node"]] = None
    shortcut: Optional[ShortcutNode] = None
    merge: Optional[str] = None
    post: list["Node"] = field(default_factory=list)
    merge_span: Optional[Span] = None
    def_span: Optional[Span] = None     # where the block is defined
    stage: str | None = None            # the stage it is a block of (for errors' notes)


@dataclass
class GroupNode:
    kind: str           # stem | head
    items: list["Node"]
    span: Span


@dataclass
class StageNode:
    name: str
    path: str
    blocks: list[BlockNode]
    span: Span


@dataclass
class NetNode:
    name: str
    input: tuple[int, int, int]
    items: list["Node"]
    span: Span
    input_span: Span
    args: dict[str, Any] = field(default_factory=dict)
    note: tuple[Span, str] | None = None  # an error's note naming the network (template)
    instance: bool = False              # of a template: the note goes on every error in it


Node = Union[LayerNode, BlockNode, GroupNode, StageNode]


# ---- environments --------------------------------------------------------------------------


class Env:
    """Variables of one definition body (parameters and lets) over its module's scope, each
    with the arguments in the user's file its value came from (`origins`, for errors)."""

    def __init__(self, scope: Scope, elab: "Elaborator", values: dict[str, Value] | None = None,
                 origins: dict[str, tuple[Span, ...]] | None = None):
        self.scope = scope
        self.elab = elab
        self.vars: dict[str, Value] = dict(values or {})
        self.origins: dict[str, tuple[Span, ...]] = dict(origins or {})
        self.lets: list[tuple[str, n.Expr]] = []   # bound, their origins not traced yet

    def let(self, name: str, e: n.Expr) -> None:
        """Bind `name` to the value of `e` (where that came from is traced only if asked)."""
        if self.origins:
            self.lets.append((name, e))
        self.vars[name] = evaluate(e, self)

    def trace(self, e: n.Expr) -> tuple[Span, ...]:
        """The user's arguments the value of `e` is computed from, each once (the lets'
        traced first, in the order they were bound, so a rebound name is traced right)."""
        for name, x in self.lets:
            self.origins[name] = self._spans(x)
        self.lets.clear()
        return self._spans(e)

    def _spans(self, e: n.Expr) -> tuple[Span, ...]:
        if not self.origins:
            return ()
        return tuple(dict.fromkeys(sp for x in names_in(e) for sp in self.origins.get(x.id, ())))

    def lookup(self, name: str, span: Span) -> Value:
        if name in self.vars:
            return self.vars[name]
        found = self.scope.lookup(name)
        if found is None:
            if name in BUILTIN_NAMES:
                raise SpecNameError(f"'{name}' has no value here", span, BUILTIN_NAMES[name],
                                    code="E201")
            raise SpecNameError(f"unknown name '{name}'", span, did_you_mean(name, self.names()),
                                code="E201")
        defn, scope = found
        if isinstance(defn, n.BlockDef):
            return BlockRef(defn, scope)
        if isinstance(defn, n.Let):
            return self.elab.constant(defn, scope)
        raise SpecValueError(f"'{name}' is a network, not a value", span,
                             "networks cannot be passed as arguments", code="E304")

    def names(self) -> list[str]:
        return list(self.vars) + list(self.scope.names) + list(LAYERS)


# ---- expressions ---------------------------------------------------------------------------

def evaluate(e: n.Expr, env: Env) -> Value:
    """The value of an expression: integers stay exact, `/` must divide evenly."""
    t = type(e)
    if t is n.Num:
        v = e.value
        return v if type(v) is int and -MAX_INT <= v <= MAX_INT else _check_int(v, e.span)
    if t is n.BinOp:
        op = e.op
        if op in ARITHMETIC:
            return _binop(e, evaluate(e.left, env), evaluate(e.right, env))
        if op in COMPARISONS:
            return _compare(e, evaluate(e.left, env), evaluate(e.right, env))
        left = _boolean(evaluate(e.left, env), e.left.span, op)   # `and`, `or`
        if left == (op == "or"):     # decided by the left operand alone
            return left
        return _boolean(evaluate(e.right, env), e.right.span, op)
    if t is n.Name:
        return env.lookup(e.id, e.span)
    if t is n.Bool:
        return e.value
    if t is n.Neg:
        v = _number(evaluate(e.operand, env), e.operand.span, "negate")
        return _check_int(-v, e.span)
    if t is n.Not:
        return not _boolean(evaluate(e.operand, env), e.operand.span, "not")
    if t is n.Func:
        return _call(e, env)
    if t is n.ListExpr:
        return tuple(evaluate(x, env) for x in e.items)
    if t is n.Dims:
        return DimsValue(_integer(evaluate(x, env), x.span, "a size") for x in e.items)
    if t is n.Index:
        return _index(e, evaluate(e.target, env), evaluate(e.index, env))
    raise AssertionError(f"unknown expression node {e!r}")


# operator -> (what it does, in words; the function on two numbers; None for `/`, exact)
ARITHMETIC = {"+": ("add", operator.add), "-": ("subtract", operator.sub),
              "*": ("multiply", operator.mul), "/": ("divide", None),
              "//": ("divide", operator.floordiv), "%": ("take the remainder of", operator.mod)}


COMPARISONS = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b,
               "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
               ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _boolean(v: Value, span: Span, what: str) -> bool:
    if not isinstance(v, bool):
        raise SpecValueError(f"`{what}` needs true or false, not {describe(v)}", span,
                             "compare it to get a boolean, e.g. `stride != 1`", code="E304")
    return v


def _compare(e: n.BinOp, a: Value, b: Value) -> bool:
    """Numbers compare by value; `==` and `!=` also compare booleans, lists, sizes and
    blocks (the same definition)."""
    if e.op in ("==", "!="):
        if isinstance(a, bool) != isinstance(b, bool):
            return e.op == "!="
        return COMPARISONS[e.op](a, b)
    x = _number(a, e.left.span, f"compare ({e.op})")
    y = _number(b, e.right.span, f"compare ({e.op})")
    return COMPARISONS[e.op](x, y)


def _call(e: n.Func, env: Env) -> Value:
    """A built-in function's value (resdsl/functions.py); its arguments bound like a
    layer's, each checked to be a number (or a list where it takes one)."""
    f = FUNCTIONS.get(e.name)
    if f is None:
        raise SpecNameError(f"unknown function '{e.name}'", e.span,
                            did_you_mean(e.name, list(FUNCTIONS))
                            or f"functions: {', '.join(FUNCTIONS)}", code="E201")
    if f.params == VARIADIC:
        if any(a.name is not None for a in e.args) or not e.args:
            raise SpecNameError(f"`{e.name}` takes one or more values (or one list)", e.span,
                                code="E204")
        values = [evaluate(a.value, env) for a in e.args]
        if len(values) == 1 and isinstance(values[0], tuple) \
                and not isinstance(values[0], DimsValue) and values[0]:
            values, spans = list(values[0]), [e.args[0].span] * len(values[0])
        else:
            spans = [a.span for a in e.args]
        return f.fn(_number(v, sp, f"take the {e.name} of") for v, sp in zip(values, spans))
    bound = bind(list(f.params), e.args, f"`{e.name}`", e.span)
    missing = [p for p in f.params if p not in bound and p not in f.defaults]
    if missing:
        raise SpecNameError(f"`{e.name}` needs its '{missing[0]}' argument", e.span,
                            f"usage: {e.name}({', '.join(f.params)})", code="E204")
    args = {p: evaluate(bound[p].value, env) if p in bound else f.defaults[p] for p in f.params}
    for p, v in args.items():
        span = bound[p].value.span if p in bound else e.span
        if f.takes == "numbers":
            _number(v, span, f"use as {e.name}'s {p}")
        elif not isinstance(v, tuple) or isinstance(v, DimsValue):
            raise SpecValueError(f"`{e.name}` takes a list, not {describe(v)}", span,
                                 code="E304")
        elif f.takes == "list of numbers":
            for x in v:
                _number(x, span, e.name)
    why = f.domain(*args.values())
    if why:
        raise SpecValueError(why, e.span, code="E301")
    try:
        return _check_int(f.fn(*args.values()), e.span)
    except OverflowError:
        raise SpecValueError(f"`{e.name}` overflowed", e.span, code="E305") from None


def _check_int(v, span: Span):
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT:
        raise SpecValueError(f"integer {_short(v)} is out of range", span,
                             f"values are limited to ±2**62", code="E305")
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        raise SpecValueError("arithmetic overflowed to infinity", span, code="E305")
    return v


def _short(v: int) -> str:
    s = str(v) if abs(v) < 10 ** 40 else f"with {len(str(abs(v)))} digits"
    return s


def _number(v: Value, span: Span, what: str) -> Union[int, float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise SpecValueError(f"cannot {what} {describe(v)}", span, code="E304")
    return v


def _integer(v: Value, span: Span, what: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SpecValueError(f"{what} must be an integer, not {describe(v)}", span, code="E304")
    return v


def _binop(e: n.BinOp, a: Value, b: Value) -> Value:
    what, fn = ARITHMETIC[e.op]
    if type(a) is int and type(b) is int and fn is not None and (b or e.op in ("+", "-", "*")):
        v = fn(a, b)   # the common case: two integers, no division by zero
        return v if -MAX_INT <= v <= MAX_INT else _check_int(v, e.span)
    if isinstance(a, tuple) and not isinstance(a, DimsValue):
        return _list_op(e, a, b)
    x, y = _number(a, e.left.span, what), _number(b, e.right.span, what)
    if e.op in ("+", "-", "*"):
        return _check_int(fn(x, y), e.span)
    if y == 0:
        raise SpecValueError("division by zero", e.right.span, code="E303")
    if fn is not None:
        return _check_int(fn(x, y), e.span)
    if isinstance(x, int) and isinstance(y, int):
        if x % y:
            raise SpecValueError(f"{x} / {y} is not a whole number", e.span,
                                 "use // to round down, or change the values so they divide",
                                 code="E302")
        return x // y
    return _check_int(x / y, e.span)


def _list_op(e: n.BinOp, a: tuple, b: Value) -> Value:
    if e.op == "+" and isinstance(b, tuple) and not isinstance(b, DimsValue):
        if len(a) + len(b) > MAX_LIST:
            raise LimitError(f"list longer than {MAX_LIST}", e.span, code="E503")
        return a + b
    if e.op == "*" and isinstance(b, int) and not isinstance(b, bool):
        if b < 0 or len(a) * b > MAX_LIST:
            raise LimitError(f"list of {len(a)} repeated {b} times is out of range", e.span,
                             code="E503")
        return a * b
    raise SpecValueError(f"cannot use '{e.op}' on a list and {describe(b)}", e.span,
                         "lists support + (join) and * (repeat)", code="E304")


def _index(e: n.Index, target: Value, index: Value) -> Value:
    if not isinstance(target, tuple):
        raise SpecValueError(f"cannot index {describe(target)}", e.target.span, code="E304")
    i = _integer(index, e.index.span, "an index")
    if not -len(target) <= i < len(target):
        raise SpecValueError(f"index {i} is out of range for a list of {len(target)}",
                             e.index.span, code="E306")
    return target[i]


# ---- elaboration ---------------------------------------------------------------------------

class Namer:
    """Names layers within one scope: a label, else the kind and its ordinal (conv1, conv2)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.used: dict[str, Span] = {}
        self.containers: dict[str, Span] = {}   # `conv1` of a label `conv1.0`

    def name(self, kind: str, label: str | None, span: Span) -> str:
        if label is None:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            label = f"{kind}{self.counts[kind]}"
        self.claim(label, span)
        return label

    def claim(self, name: str, span: Span) -> None:
        """A name for one layer; a dotted label (`conv1.0`) makes its prefixes containers,
        which no layer may be named."""
        if name in self.used:
            raise SpecNameError(f"two layers named '{name}' in one scope", span,
                                "give one of them another label", code="E202",
                                notes=[(self.used[name], "first named here")])
        if name in self.containers:
            raise SpecNameError(f"'{name}' names a layer and the container of "
                                f"'{name}.{'...'}'", span, "give the layer another label",
                                code="E202", notes=[(self.containers[name], "used here")])
        parts = name.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix in self.used:
                raise SpecNameError(f"'{name}' would put a layer inside the layer '{prefix}'",
                                    span, f"label the layer '{prefix}' differently, or this "
                                    "one", code="E202",
                                    notes=[(self.used[prefix], "that layer")])
            self.containers.setdefault(prefix, span)
        self.used[name] = span


@dataclass
class Body:
    """What a block body elaborates to, filled in statement order."""

    pre: list[Node] = field(default_factory=list)
    residual: Optional[list[Node]] = None
    shortcut: Optional[ShortcutNode] = None
    merge: Optional[str] = None
    post: list[Node] = field(default_factory=list)
    merge_span: Optional[Span] = None


class _Unordered(Exception):
    """A constant evaluated directly uses a let with no value yet (see Elaborator.constant)."""


class Elaborator:
    def __init__(self, program: Program, max_layers: int = MAX_LAYERS,
                 bindings: Bindings | None = None, input_channels: int | None = None):
        self.program = program
        self.input_channels = input_channels   # --input's, over the spec's `input`
        self.channels: int | None = None       # of the value being built on, as it goes
        self.stage_blocks = 0                  # stage blocks built so far (block_index)
        self.num_blocks: int | None = None
        self.max_layers = max_layers
        self.bindings = Bindings() if bindings is None else bindings
        self.count = 0      # layers built so far
        self.blocks = 0     # block instances built so far (an empty block costs one too)
        self.depth = 0
        self.constants: dict[int, Value] = {}
        self.failed: dict[int, ResdslError] = {}
        self.direct = False                        # evaluating a constant the direct way
        self.root_file = program.root.module.file  # the user's file: arguments there are theirs
        self.traced: ResdslError | None = None     # the error last given its notes of uses

    # -- constants and counting
    def constant(self, let: n.Let, scope: Scope) -> Value:
        """A top-level let's value. The lets it depends on are evaluated first, in order, so
        a long chain of constants costs no recursion; an error is kept and raised again.
        First it is evaluated directly, which holds where every let it uses has its value
        already (constants written in order: no walk to order them); anything else, an error
        included, goes the ordered way, so the value or the error is the same."""
        key = id(let)
        if key in self.failed:
            raise self.failed[key]
        if key in self.constants:
            return self.constants[key]
        if self.direct:
            raise _Unordered
        self.direct = True
        try:
            self.constants[key] = value = evaluate(let.value, Env(scope, self))
            return value
        except (_Unordered, ResdslError):
            pass
        finally:
            self.direct = False
        return self.ordered(let, scope)

    def ordered(self, let: n.Let, scope: Scope) -> Value:
        """`let`'s value, the lets it depends on evaluated first, in order; an error is kept
        (and raised again by `constant`)."""
        try:
            for d, s in self._let_order(let, scope):
                self.constants[id(d)] = evaluate(d.value, Env(s, self))
        except ResdslError as e:
            self.failed[id(let)] = e
            raise
        return self.constants[id(let)]

    def _let_order(self, let: n.Let, scope: Scope) -> list[tuple[n.Let, Scope]]:
        """The unevaluated lets `let` depends on, and itself, dependencies first."""
        order: list[tuple[n.Let, Scope]] = []
        state: dict[int, str] = {}  # "open" while on the current path, then "done"
        stack: list[tuple[n.Let, Scope, bool]] = [(let, scope, False)]
        while stack:
            d, s, finished = stack.pop()
            key = id(d)
            if finished:
                state[key] = "done"
                order.append((d, s))
                continue
            if key in self.failed:
                raise self.failed[key]
            if key in self.constants or state.get(key) == "done":
                continue
            if state.get(key) == "open":
                raise SpecNameError(f"'{d.name}' is defined in terms of itself", d.span,
                                    code="E205")
            state[key] = "open"
            stack.append((d, s, True))
            for name in (x.id for x in names_in(d.value)):
                found = s.lookup(name)
                if found is not None and isinstance(found[0], n.Let):
                    stack.append((found[0], found[1], False))
        return order

    def _grow(self, k: int, span: Span, blocks: int = 0) -> None:
        self.count += k
        self.blocks += blocks
        if self.count > self.max_layers or self.blocks > self.max_layers:
            what = "layers" if self.count > self.max_layers else "blocks"
            raise LimitError(f"the network expands to more than {self.max_layers:,} {what}",
                             span, "raise the limit with --max-layers if you mean it",
                             code="E501")

    # -- networks
    def network(self, name: str, overrides: dict[str, Value] | None = None) -> NetNode:
        found = self.program.root.lookup(name)
        if found is None or isinstance(found[0], (n.BlockDef, n.Let)):
            nets = network_names(self.program.root)
            raise SpecNameError(f"no network named '{name}'", None,
                                did_you_mean(name, nets) or f"networks: {', '.join(nets)}",
                                code="E201")
        defn, scope = found
        env = Env(scope, self)
        explicit: dict[str, Value] = {}
        origins: dict[str, tuple[Span, ...]] = {}
        if isinstance(defn, n.NetworkInst):
            call = defn.call
            target = scope.lookup(call.name)
            if target is None or not isinstance(target[0], n.NetworkDef):
                raise SpecNameError(f"no network template named '{call.name}'", call.span,
                                    did_you_mean(call.name, network_names(scope)), code="E201")
            template, tscope = target
            explicit, origins = self._explicit(call, [p.name for p in template.params],
                                               call.args, env, f"network '{template.name}'",
                                               call.span)
            span = defn.span
        else:
            template, tscope, span = defn, scope, defn.span
        for key, value in (overrides or {}).items():
            if key not in [p.name for p in template.params]:
                raise SpecNameError(f"network '{template.name}' has no parameter '{key}'", span,
                                    did_you_mean(key, [p.name for p in template.params]),
                                    code="E203")
            explicit[key] = _from_python(value, env, f"parameter '{key}'", span)
        env, note = Env(tscope, self, origins=origins), _network_note(name, defn, template)
        instance = isinstance(defn, n.NetworkInst)
        try:
            self._complete(template.params, explicit, env, f"network '{template.name}'", span)
            net = self._network_body(name, template, env, span)
        except ResdslError as e:
            if instance or e is self.traced:  # in a template, or in a block it uses
                self._used(e, template, env, note)
            raise
        net.note, net.instance = note, instance
        return net

    def _used(self, e: ResdslError, defn: n.BlockDef | n.NetworkDef, env: Env,
              note: tuple[Span, str]) -> None:
        """Note where `defn`, in which `e` was raised, was used (the notes go innermost
        first); the first also points `e` at the user's argument its value came from."""
        if e.code == "E502":  # blocks nested too deep: a note per level would bury it
            return
        if e is not self.traced:
            self.traced = e
            _point_at_argument(e, defn, env)
        e.notes += (note,)

    def _network_body(self, name: str, t: n.NetworkDef, env: Env, span: Span) -> NetNode:
        namer = Namer()
        items: list[Node] = []
        shape: tuple[int, int, int] | None = None
        input_span = span
        self.body, self.body_env = t.body, Env(env.scope, self, dict(env.vars))
        for stmt in self._flat(t.body, env):
            if isinstance(stmt, n.Input):
                if shape is not None:
                    raise SpecValueError("a network has one `input`", stmt.span, code="E307",
                                         notes=[(input_span, "first given here")])
                shape, input_span = self._input(stmt, env), stmt.span
                self.channels = self.input_channels or shape[0]
            elif isinstance(stmt, n.Group):
                items.append(GroupNode(stmt.kind, self._sequence(stmt.body, env, namer, ""),
                                       stmt.span))
            elif isinstance(stmt, n.Stage):
                namer.claim(stmt.name, stmt.span)
                items.append(self._stage(stmt, env))
            else:
                items.extend(self._sequence((stmt,), env, namer, ""))
        if shape is None:
            raise SpecValueError(f"network '{t.name}' has no `input` line", t.span,
                                 "add one, e.g. `input 3 x 224 x 224`", code="E307")
        return NetNode(name, shape, items, span, input_span, dict(env.vars))

    def _flat(self, stmts: Iterable[n.Stmt], env: Env) -> Iterator[n.Stmt]:
        """The statements in force: each `if` replaced by its chosen branch, its condition
        evaluated when the statements before it have been."""
        for st in stmts:
            if isinstance(st, n.If):
                cond = _boolean(evaluate(st.cond, env), st.cond.span, "if")
                yield from self._flat(st.then if cond else st.orelse, env)
            else:
                yield st

    def _total_blocks(self) -> int:
        """`num_blocks`: the stage blocks of the whole network, from a walk over its body
        that evaluates only the lets, conditions and stage counts."""
        if self.num_blocks is None:
            env, total = Env(self.body_env.scope, self, dict(self.body_env.vars)), 0
            for st in self._flat(self.body, env):
                if isinstance(st, n.Let):
                    env.let(st.name, st.value)
                elif isinstance(st, n.Stage):
                    total += 1 if st.count is None else _integer(
                        evaluate(st.count, env), st.count.span, "a stage's block count")
            self.num_blocks = total
        return self.num_blocks

    def _input(self, stmt: n.Input, env: Env) -> tuple[int, int, int]:
        v = evaluate(stmt.shape, env)
        if not isinstance(v, DimsValue) or len(v) != 3:
            raise SpecValueError(f"`input` needs channels x height x width, not {describe(v)}",
                                 stmt.shape.span, "e.g. `input 3 x 224 x 224`", code="E304")
        for x in v:
            if x < 1:
                raise SpecValueError(f"input sizes must be positive, got {x}", stmt.shape.span,
                                     code="E301")
            fits(x, stmt.shape.span, "an input size")
        return (v[0], v[1], v[2])

    def _stage(self, st: n.Stage, env: Env) -> StageNode:
        count = 1 if st.count is None else _integer(evaluate(st.count, env), st.count.span,
                                                     "a stage's block count")
        if count < 1:
            raise SpecValueError(f"a stage needs at least 1 block, got {count}",
                                 st.count.span if st.count else st.span, code="E308")
        ref = self._block_ref(st.call.name, env, st.call.span)
        names = [p.name for p in ref.defn.params]
        bound = self.bindings.bind(st.call, names, st.call.args, f"block '{ref.name}'",
                                   st.call.span)
        origins = self._origins(bound, env)
        later = {k: v for k, v in origins.items() if k != "stride"}  # blocks after the first
        per_block = any(x.id in STAGE_NAMES and x.id not in env.vars
                        for a in bound.values() for x in names_in(a.value))
        explicit = {k: evaluate(a.value, env) for k, a in bound.items()} if not per_block else {}
        blocks: list[BlockNode] = []
        for i in range(count):
            if i == 2:  # the size of the stage is known now: check before building the rest
                self._check_stage(st, count, size)
            if per_block:
                explicit = {k: evaluate(a.value, self._stage_env(env, i))
                            for k, a in bound.items()}
            args = dict(explicit, stride=1) if i > 0 and "stride" in names else explicit
            self.stage_blocks += 1
            before = (self.count, self.blocks)
            blocks.append(self._instantiate(ref, args, origins if i == 0 else later, str(i),
                                            f"{st.name}.{i}", st.call.span, st.name))
            size = (self.count - before[0], self.blocks - before[1])
        return StageNode(st.name, st.name, blocks, st.span)

    def _stage_env(self, env: Env, i: int) -> Env:
        """A stage's environment for its block `i`: with `index`, `block_index` and
        `num_blocks` (a spec's own names of these stay)."""
        names = {"index": i, "block_index": self.stage_blocks, "num_blocks": None}
        values = {k: v for k, v in names.items() if k not in env.vars}
        if "num_blocks" in values:
            values["num_blocks"] = self._total_blocks()
        return Env(env.scope, self, {**env.vars, **values})

    def _check_stage(self, st: n.Stage, count: int, size: tuple[int, int]) -> None:
        """Every block after the first is built alike: fail before building the rest."""
        layers, blocks = size
        if self.count + (count - 2) * layers > self.max_layers:
            what = f"{count:,} blocks of {layers} layers, more than the limit of " \
                   f"{self.max_layers:,} layers"
        elif self.blocks + (count - 2) * blocks > self.max_layers:
            what = f"{count:,} blocks, more than the limit of {self.max_layers:,} blocks"
        else:
            return
        raise LimitError(f"stage '{st.name}' expands to {what}", st.span,
                         "raise the limit with --max-layers if you mean it", code="E501")

    def _block_ref(self, name: str, env: Env, span: Span) -> BlockRef:
        if name in LAYERS and name not in env.vars:
            raise SpecValueError(f"a stage repeats a block, and '{name}' is a built-in layer",
                                 span, "define a block that uses it", code="E304")
        v = env.lookup(name, span)
        if not isinstance(v, BlockRef):
            raise SpecValueError(f"'{name}' is {describe(v)}, not a block", span, code="E304")
        return v

    # -- calls
    def _explicit(self, site: object, names: list[str], args: Iterable[n.Arg], env: Env,
                  what: str, span: Span
                  ) -> tuple[dict[str, Value], dict[str, tuple[Span, ...]]]:
        """The values of a call's arguments (bound once per call site and callee), and their
        origins in the user's file."""
        bound = self.bindings.bind(site, names, args, what, span)
        return {k: evaluate(a.value, env) for k, a in bound.items()}, self._origins(bound, env)

    def _origins(self, bound: dict[str, n.Arg], env: Env) -> dict[str, tuple[Span, ...]]:
        """Where each argument's value came from in the user's file: the argument itself
        where it is written there, else the origins of the names in it."""
        out = {}
        for k, a in bound.items():
            spans = (a.span,) if a.span.file == self.root_file else env.trace(a.value)
            if spans:
                out[k] = spans
        return out

    def _complete(self, params: Iterable[n.Param], explicit: dict[str, Value], env: Env,
                  what: str, span: Span) -> dict[str, Value]:
        """Bind the parameters in the callee's `env`: the given values, else the defaults
        (each seeing the parameters before it)."""
        for p in params:
            if p.name in explicit:
                env.vars[p.name] = explicit[p.name]
            elif p.default is not None:
                env.let(p.name, p.default)
            else:
                raise SpecNameError(f"{what} needs an argument for '{p.name}'", span,
                                    code="E204")
        return {p.name: env.vars[p.name] for p in params}

    def _instantiate(self, ref: BlockRef, explicit: dict[str, Value],
                     origins: dict[str, tuple[Span, ...]], name: str, path: str, span: Span,
                     stage: str | None = None) -> BlockNode:
        if self.depth >= MAX_BLOCK_DEPTH:
            raise LimitError(f"blocks nested more than {MAX_BLOCK_DEPTH} deep", span,
                             "does a block use itself through a block argument?", code="E502")
        self._grow(0, span, blocks=1)
        self.depth += 1
        given = {} if self.channels is None else {"in_channels": self.channels}
        env = Env(ref.scope, self, given, origins)
        try:
            values = self._complete(ref.defn.params, explicit, env, f"block '{ref.name}'", span)
            body = self._block_body(ref.defn, env, path, span)
        except ResdslError as e:
            self._used(e, ref.defn, env, (span, use_note(ref.name, ref.defn.name_span, stage)))
            raise
        finally:
            self.depth -= 1
        return BlockNode(name, path, ref.name, span, values, body.pre, body.residual,
                         body.shortcut, body.merge, body.post, body.merge_span,
                         ref.defn.name_span, stage)

    # -- bodies
    def _block_body(self, defn: n.BlockDef, env: Env, path: str, span: Span) -> Body:
        """The body's statements in order (the `if`s resolved, the order checked again where
        there were any); the channels flow through the pre-layers, the residual branch (the
        shortcut starts from its input) and the post-layers."""
        namer, body, stmts = Namer(), Body(), []
        branch_input = None
        for stmt in self._flat(defn.body, env):
            stmts.append(stmt)
            if isinstance(stmt, n.Let):
                env.let(stmt.name, stmt.value)
            elif isinstance(stmt, n.Residual):
                branch_input = self.channels
                body.residual = self._sequence(stmt.body, env, namer, path)
            elif isinstance(stmt, n.Shortcut):
                after, self.channels = self.channels, branch_input
                body.shortcut = self._shortcut(stmt, env, path, namer)
                self.channels = after
            elif isinstance(stmt, n.Merge):
                body.merge, body.merge_span = stmt.op, stmt.span
            else:
                target = body.pre if body.residual is None else body.post
                target.extend(self._sequence((stmt,), env, namer, path))
        if len(stmts) != len(defn.body) or any(isinstance(s, n.If) for s in defn.body):
            errors = structure_errors(stmts)
            if errors:
                raise errors[0]
        if body.shortcut is not None and body.shortcut.kind != "none" and body.merge is None:
            body.merge, body.merge_span = DEFAULT_MERGE, body.shortcut.span
        return body

    def _shortcut(self, sc: n.Shortcut, env: Env, path: str, namer: Namer) -> ShortcutNode:
        if sc.label is not None:
            namer.claim(sc.label, sc.span)
        spath = _join(path, sc.label or "downsample")
        if sc.kind is None:
            namer = _IndexNamer()
            return ShortcutNode("custom", spath, sc.span,
                                body=self._sequence(sc.body or (), env, namer, spath))
        flags = self.bindings.bind(sc, [], sc.args, f"shortcut {sc.kind}", sc.span,
                                   SHORTCUTS[sc.kind].flags)
        self._grow({"projection": 2, "avgdown": 3}.get(sc.kind, 0), sc.span)
        return ShortcutNode(sc.kind, spath, sc.span, always="always" in flags)

    def _sequence(self, stmts: Iterable[n.Stmt], env: Env, namer: "Namer", path: str) -> list[Node]:
        out: list[Node] = []
        for stmt in self._flat(stmts, env):
            if isinstance(stmt, n.Let):
                env.let(stmt.name, stmt.value)
            elif isinstance(stmt, n.Layer):
                out.append(self._layer(stmt, env, namer, path))
            else:  # the checker rejects these before elaboration
                raise AssertionError(f"statement {type(stmt).__name__} in a sequence")
        return out

    def _layer(self, st: n.Layer, env: Env, namer: "Namer", path: str) -> Node:
        if st.kind in LAYERS and st.kind not in env.vars:
            kind = LAYERS[st.kind]
            bound = self.bindings.bind(st, kind.names, st.args, f"`{st.kind}`", st.span,
                               kind.flags)
            attrs = kind.complete({p.name: self._attr(kind, p, bound.get(p.name), env, st.span)
                                   for p in kind.params
                                   if p.name in bound or p.default is REQUIRED})
            name = namer.name(st.kind, st.label, st.span)
            self._grow(1, st.span)
            self.channels = kind.out_channels(attrs, self.channels)
            return LayerNode(name, _join(path, name), st.kind, attrs, st.span)
        ref = self._block_ref_stmt(st, env)
        explicit, origins = self._explicit(st, [p.name for p in ref.defn.params], st.args,
                                           env, f"block '{ref.name}'", st.span)
        name = namer.name(ref.name, st.label, st.span)
        return self._instantiate(ref, explicit, origins, name, _join(path, name), st.span)

    def _block_ref_stmt(self, st: n.Layer, env: Env) -> BlockRef:
        try:
            v = env.lookup(st.kind, st.span)
        except SpecNameError:
            raise SpecNameError(f"unknown layer or block '{st.kind}'", head_span(st),
                                did_you_mean(st.kind, env.names()), code="E201") from None
        if not isinstance(v, BlockRef):
            raise SpecValueError(f"'{st.kind}' is {describe(v)}, not a layer or block",
                                 head_span(st), code="E304")
        return v

    def _attr(self, op, p, arg: n.Arg | None, env: Env, span: Span) -> Any:
        """One given (or missing required) argument of a layer, checked against its type."""
        if arg is None:
            raise SpecNameError(f"`{op.name}` needs its '{p.name}' argument", span,
                                _usage(op.name), code="E204")
        if isinstance(arg.value, n.Name) and arg.name is None and arg.value.id == p.name \
                and p.type == BOOL:
            return True
        return coerce(evaluate(arg.value, env), p.type, f"`{op.name}` {p.name}", arg.value.span)


class _IndexNamer(Namer):
    """Names a custom shortcut's layers 0, 1, ... as nn.Sequential does."""

    def name(self, kind: str, label: str | None, span: Span) -> str:
        if label is not None and "." in label:
            raise SpecNameError(f"a shortcut's layers are numbered in one container, so "
                                f"'{label}' cannot nest", span, "use a plain label, or put "
                                "the layers in a block of their own", code="E202")
        name = label or str(len(self.used))
        self.claim(name, span)
        return name


def _usage(layer: str) -> str:
    kind = LAYERS[layer]
    required = [p.name for p in kind.params if p.default is REQUIRED]
    return f"usage: {layer} {', '.join(required)}" if required else f"usage: {layer}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# ---- errors' notes of where a definition was used ------------------------------------------

def use_note(block: str, def_span: Span | None, stage: str | None) -> str:
    """The note on an error inside a block, at the block's use: which block, used by what."""
    where = f" ({_line(def_span)})" if def_span else ""
    by = f"by stage '{stage}' " if stage else ""
    return f"in block '{block}'{where}, used {by}here"


def _network_note(name: str, defn: n.NetworkDef | n.NetworkInst, template: n.NetworkDef
                  ) -> tuple[Span, str]:
    """The note naming the network on an error in it: where its template is used, else its
    own name."""
    if isinstance(defn, n.NetworkInst):
        return defn.call.span, (f"in network template '{template.name}' "
                                f"({_line(template.name_span)}), used by network '{name}' here")
    return defn.name_span, f"in network '{name}'"


def _line(span: Span) -> str:
    return f"{os.path.basename(span.file)}:{span.line}"


def _point_at_argument(e: ResdslError, defn: n.BlockDef | n.NetworkDef, env: Env) -> None:
    """Where the value that failed on a library's line came from arguments in the user's
    file, point `e` at the first of them, the library's line becoming a note (as rustc does
    for a macro's expansion)."""
    if e.span is None or e.span.file == env.elab.root_file:
        return
    for x in _enclosing(defn, e.span):
        origins = env.trace(x)
        if origins:
            first, *rest = sorted(origins, key=lambda sp: (sp.line, sp.col))
            used = "the arguments are used here" if rest else "the argument is used here"
            e.notes = (*((sp, "this argument is used too") for sp in rest), (x.span, used),
                       *e.notes)
            e.span = first
            return


def _enclosing(defn: n.BlockDef | n.NetworkDef, span: Span) -> list[n.Expr]:
    """The expressions written in `defn` whose text holds `span`, innermost first."""
    found = [x for e in _expressions(defn) for x in subexpressions(e) if _within(span, x.span)]
    return sorted(found, key=lambda x: (-x.span.line, -x.span.col, x.span.end_line,
                                        x.span.end_col))


def _within(inner: Span, outer: Span) -> bool:
    return inner.file == outer.file and (outer.line, outer.col) <= (inner.line, inner.col) \
        and (inner.end_line, inner.end_col) <= (outer.end_line, outer.end_col)


def _expressions(defn: n.BlockDef | n.NetworkDef) -> Iterator[n.Expr]:
    """Every top-level expression of a definition: its defaults and its body's (walked
    without recursion)."""
    yield from (p.default for p in defn.params if p.default is not None)
    stack: list = list(defn.body)
    while stack:
        st = stack.pop()
        if isinstance(st, n.Let):
            yield st.value
        elif isinstance(st, n.Input):
            yield st.shape
        elif isinstance(st, n.If):
            yield st.cond
            stack += [*st.then, *st.orelse]
        elif isinstance(st, n.Stage):
            yield from ([st.count] if st.count is not None else [])
            yield from (a.value for a in st.call.args)
        else:  # a layer, residual, shortcut, merge or group
            yield from (a.value for a in getattr(st, "args", ()))
            stack += list(getattr(st, "body", None) or ())


def coerce(v: Value, typ: str, what: str, span: Span) -> Any:
    """Check a layer argument's value against its declared type; pairs become (h, w)."""
    if typ == BOOL:
        if not isinstance(v, bool):
            raise SpecValueError(f"{what} must be true or false, not {describe(v)}", span,
                                 code="E304")
        return v
    if typ in (FLOAT, PROB):
        x = _number(v, span, f"use as {what}")
        if typ == PROB and not 0 <= x <= 1:
            raise SpecValueError(f"{what} must be between 0 and 1, got {x}", span, code="E301")
        if typ == FLOAT and x < 0:
            raise SpecValueError(f"{what} must not be negative, got {x}", span, code="E301")
        return float(x)
    if typ == PAIR:
        items = tuple(v) if isinstance(v, DimsValue) else (v, v)
        if len(items) != 2:
            raise SpecValueError(f"{what} must be a number or HxW, not {describe(v)}", span,
                                 code="E304")
        return tuple(_positive(_integer(x, span, what), span, what, zero_ok="padding" in what)
                     for x in items)
    x = _integer(v, span, what)
    return _positive(x, span, what, zero_ok=typ in (NONNEG, INT))


def _positive(x: int, span: Span, what: str, zero_ok: bool = False) -> int:
    if x < 0 or (x == 0 and not zero_ok):
        raise SpecValueError(f"{what} must be {'non-negative' if zero_ok else 'positive'}, "
                             f"got {x}", span, code="E301")
    return fits(x, span, what)


def fits(x: int, span: Span | None, what: str) -> int:
    """E507 for a value PyTorch's size arithmetic could overflow on."""
    if x > MAX_ATTR:
        raise LimitError(f"{what} {_short(x)} is more than {MAX_ATTR:,} (2**31 - 1)", span,
                         "PyTorch computes sizes from it in 64-bit integers, which a larger "
                         "value can overflow", code="E507")
    return x


def _from_python(v: Any, env: Env, what: str, span: Span) -> Value:
    """A value given from Python (`build(spec, num_classes=10)`) as the language's own: lists
    become tuples, a string names a block or constant of the spec."""
    if isinstance(v, (DimsValue, bool, BlockRef)):
        return v
    if isinstance(v, (int, float)):
        return _check_int(v, span)
    if isinstance(v, (list, tuple)):
        return tuple(_from_python(x, env, what, span) for x in v)
    if isinstance(v, str):
        return env.lookup(v, span)
    raise SpecValueError(f"{what}: a Python {type(v).__name__} is not a value of the language",
                         span, "pass an int, float, bool, list, or the name of a block",
                         code="E304")


def network_names(scope: Scope) -> list[str]:
    return [k for k, (d, _) in scope.names.items() if isinstance(d, (n.NetworkDef, n.NetworkInst))]


def concrete_networks(scope: Scope) -> list[str]:
    """The networks a file defines that can be built as they stand: instances, and templates
    whose parameters all have defaults."""
    out = []
    for name, d in scope.own.items():
        if isinstance(d, n.NetworkInst) or (
                isinstance(d, n.NetworkDef) and all(p.default is not None for p in d.params)):
            out.append(name)
    return out


def elaborate(program: Program, network: str, overrides: dict[str, Value] | None = None,
              max_layers: int = MAX_LAYERS, bindings: Bindings | None = None,
              input_channels: int | None = None) -> NetNode:
    """Build the instance tree of one network of the program's root file; `bindings`: the
    checks' (resdsl/check.py), so no call is bound twice; `input_channels`: those of an
    input size asked for instead of the spec's."""
    return Elaborator(program, max_layers, bindings, input_channels).network(network, overrides)


def constant_errors(program: Program) -> list[ResdslError]:
    """The errors in the values of the root file's top-level constants. They take no
    parameters, so they are evaluated even where nothing uses them: `x = 7 / 2` is an error
    in a library file too."""
    elab, errors = Elaborator(program), []
    for item in program.root.module.items:
        if isinstance(item, n.Let):
            try:
                elab.constant(item, program.root)
            except ResdslError as e:
                errors.append(e)
    return errors
