"""Checks that need no values or shapes: names, argument lists, block structure, recursion.

Runs over every definition of a file, so a template nobody instantiates is still checked, and
it collects every independent error instead of stopping at the first. Argument binding is done
here, once per call site (`Bindings`), and elaboration reuses it.
"""
from __future__ import annotations

from typing import Iterable

from . import nodes as n
from .errors import Collector, ResdslError, Span, SpecNameError, SpecValueError, did_you_mean
from .loader import Scope
from .functions import FUNCTIONS
from .nodes import branches, head_span, references
from .ops import LAYERS, MERGES, REQUIRED, SHORTCUTS

# Names elaboration defines (resdsl/elaborate.py says what each is).
STAGE_NAMES = ("index", "block_index", "num_blocks")
BUILTIN_NAMES = {
    "in_channels": "`in_channels` is the channel count of a block's input, known inside a "
                   "block whose input has channels (not after a `flatten`)",
    "index": "`index` (a block's place in its stage, from 0) is defined in a stage's block "
             "arguments: `stage s = 4 x b(64, rate = index * 0.1)`",
    "block_index": "`block_index` (a block's place among all the network's stage blocks, from "
                   "0) is defined in a stage's block arguments",
    "num_blocks": "`num_blocks` (the number of stage blocks in the network) is defined in a "
                  "stage's block arguments",
}


def check_scope(scope: Scope, bindings: Bindings | None = None) -> list[ResdslError]:
    """Every static error in the module's own definitions; the calls' bindings go into
    `bindings` for elaboration."""
    errors = Collector()
    bindings = Bindings() if bindings is None else bindings
    for err in scope.duplicates:
        errors.add(err)
    for item in scope.module.items:
        if isinstance(item, (n.BlockDef, n.NetworkDef)):
            _Definition(scope, errors, bindings).run(item)
        elif isinstance(item, n.NetworkInst):
            _Definition(scope, errors, bindings).call(item.call, set(), network=True)
        elif isinstance(item, n.Let):
            _Definition(scope, errors, bindings).expr(item.value, set())
    _recursion(scope, errors)
    return errors.errors


# ---- argument binding ----------------------------------------------------------------------

class Bindings:
    """Each call's arguments matched to its callee's parameters, once per call site and callee:
    the checks bind every call whose callee they can name; elaboration asks for the rest (a
    block passed as an argument) and finds the others done."""

    def __init__(self) -> None:
        self._done: dict[tuple[int, tuple[str, ...]], dict[str, n.Arg]] = {}

    def bind(self, site: object, names: list[str], args: Iterable[n.Arg], what: str,
             span: Span, flags: tuple[str, ...] = ()) -> dict[str, n.Arg]:
        """`bind` of the arguments of `site` (an AST node, alive as long as its program)."""
        key = (id(site), tuple(names))
        if key not in self._done:
            self._done[key] = bind(names, args, what, span, flags)
        return self._done[key]


def bind(names: list[str], args: Iterable[n.Arg], what: str, span: Span,
         flags: tuple[str, ...] = ()) -> dict[str, n.Arg]:
    """Match call arguments to parameter names (no evaluation): too many, unknown, twice.

    A positional argument that is a bare name in `flags` sets that flag: `bn(zero_init)`.
    """
    bound: dict[str, n.Arg] = {}
    positional = 0
    seen_keyword = False
    for arg in args:
        if arg.name is None and isinstance(arg.value, n.Name) and arg.value.id in flags:
            key = arg.value.id
        elif arg.name is None:
            if seen_keyword:
                raise SpecNameError("positional argument after a keyword argument", arg.span,
                                    "put positional arguments first", code="E203")
            while positional < len(names) and names[positional] in bound:
                positional += 1
            if positional >= len(names):
                raise SpecNameError(_too_many(what, names), arg.span,
                                    _signature_hint(what, names), code="E204")
            key = names[positional]
            positional += 1
        else:
            seen_keyword = True
            key = arg.name
            if key not in names:
                raise SpecNameError(f"{what} has no parameter '{key}'", arg.span,
                                    did_you_mean(key, names) or _signature_hint(what, names),
                                    code="E203")
        if key in bound:
            raise SpecNameError(f"argument '{key}' given twice", arg.span, code="E203",
                                notes=[(bound[key].span, "first given here")])
        bound[key] = arg
    return bound


def _too_many(what: str, names: list[str]) -> str:
    if not names:
        return f"{what} takes no arguments"
    return f"{what} takes at most {len(names)} positional argument{'s' if len(names) != 1 else ''}"


def _signature_hint(what: str, names: list[str]) -> str | None:
    return f"parameters: {', '.join(names)}" if names else None


class _Definition:
    """Walks one block or network definition, tracking the local names in force."""

    def __init__(self, scope: Scope, errors: Collector, bindings: Bindings):
        self.scope = scope
        self.errors = errors
        self.bindings = bindings

    def run(self, d: n.BlockDef | n.NetworkDef) -> None:
        if isinstance(d, n.BlockDef) and d.name in LAYERS:
            self.errors.add(SpecNameError(f"block '{d.name}' has the name of a built-in layer",
                                          d.name_span, "choose another name", code="E202"))
        local: set[str] = {"in_channels"} if isinstance(d, n.BlockDef) else set()
        declared: set[str] = set()
        for p in d.params:
            if p.name in declared:
                self.errors.add(SpecNameError(f"parameter '{p.name}' is declared twice", p.span,
                                              code="E202"))
            if p.default is not None:
                self.expr(p.default, local)
            local.add(p.name)
            declared.add(p.name)
        if isinstance(d, n.BlockDef):
            for err in _path_structure_errors(d.body):
                self.errors.add(err)
        else:
            for err in _group_clashes(d.body):
                self.errors.add(err)
        self.stmts(d.body, local)

    def stmts(self, body: Iterable, local: set[str]) -> None:
        for st in body:
            if isinstance(st, n.Let):
                self.expr(st.value, local)
                local.add(st.name)
            elif isinstance(st, n.Layer):
                self.layer(st, local)
            elif isinstance(st, n.Residual):
                self.sequence(st.body, "`residual`")
                self.stmts(st.body, local)
            elif isinstance(st, n.Shortcut):
                self.shortcut(st, local)
            elif isinstance(st, n.Merge):
                if st.op not in MERGES:
                    self.errors.add(SpecNameError(f"unknown merge '{st.op}'", st.span,
                                                  did_you_mean(st.op, MERGES), code="E201"))
            elif isinstance(st, n.Group):
                self.sequence(st.body, f"`{st.kind}`")
                self.stmts(st.body, local)
            elif isinstance(st, n.Stage):
                if st.count is not None:
                    self.expr(st.count, local)
                self.call(st.call, local | set(STAGE_NAMES))
            elif isinstance(st, n.Input):
                self.expr(st.shape, local)
            elif isinstance(st, n.If):   # a let in either branch is visible after it
                self.expr(st.cond, local)
                self.stmts(st.then, local)
                self.stmts(st.orelse, local)

    def layer(self, st: n.Layer, local: set[str]) -> None:
        if st.kind not in LAYERS and st.kind not in local:   # a block's use: `call` checks
            self.call(n.Call(st.kind, st.args, st.span), local, head=head_span(st), site=st)
            return                                           # its arguments
        for a in st.args:
            if not (a.name is None and isinstance(a.value, n.Name) and _is_flag(st.kind, a.value.id)):
                self.expr(a.value, local)
        if st.kind in local:
            return
        kind = LAYERS[st.kind]
        names = kind.names
        bound = self._try(lambda: self.bindings.bind(st, names, st.args, f"`{st.kind}`",
                                                     st.span, kind.flags))
        for p in kind.params:
            if bound is not None and p.default is REQUIRED and p.name not in bound:
                self.errors.add(SpecNameError(f"`{st.kind}` needs its '{p.name}' argument",
                                              st.span, code="E204"))

    def call(self, c: n.Call, local: set[str], network: bool = False,
             head: Span | None = None, site: object = None) -> None:
        """A use of a block (or, with `network`, of a template); `head` is where its name is
        written, when that is not where the call starts (`label: name args`); `site` the
        statement it stands for (default: the call)."""
        found = None if c.name in local else self.scope.lookup(c.name)
        keyword = _misspelt_keyword(c.name) if found is None and c.name not in local and \
            c.name not in LAYERS and not network else None
        if keyword:   # `stge s1 = ...`: the word is the error, not what follows it
            self.errors.add(SpecNameError(f"unknown block '{c.name}'", head or _name_span(c),
                                          keyword, code="E201"))
            return
        for a in c.args:
            self.expr(a.value, local)
        if c.name in local:
            return
        want = n.NetworkDef if network else n.BlockDef
        if found is None and not network and c.name in LAYERS:
            self.errors.add(SpecValueError(
                f"a stage repeats a block, and '{c.name}' is a built-in layer", _name_span(c),
                "define a block that uses it", code="E304"))
            return
        if found is None or not isinstance(found[0], want):
            what = "network template" if network else "block"
            pool = [k for k, (d, _) in self.scope.names.items() if isinstance(d, want)]
            if not network:
                pool += sorted(local)
            hint = did_you_mean(c.name, pool + ([] if network else list(LAYERS))) or (
                None if network else _elsewhere(c.name))
            if found is None:
                msg = f"unknown {what} '{c.name}'"
            else:
                msg = f"'{c.name}' is not a {what}"
            self.errors.add(SpecNameError(msg, head or _name_span(c), hint, code="E201"))
            return
        params = found[0].params
        names = [p.name for p in params]
        bound = self._try(lambda: self.bindings.bind(site or c, names, c.args, f"'{c.name}'",
                                                     c.span))
        if bound is None:
            return
        missing = [p.name for p in params if p.default is None and p.name not in bound]
        if missing:
            self.errors.add(SpecNameError(
                f"'{c.name}' needs an argument for {', '.join(repr(m) for m in missing)}",
                c.span, f"parameters: {', '.join(names)}", code="E204"))

    def shortcut(self, st: n.Shortcut, local: set[str]) -> None:
        if st.label is not None and "." in st.label:
            # the shortcut is one attribute of its block (and a constructor argument): a key
            # path would need containers around it, which no generated class builds
            self.errors.add(SpecNameError(
                f"a shortcut's label names one module, so '{st.label}' cannot nest", st.span,
                f"use a plain label, e.g. '{st.label.replace('.', '_')}'", code="E202"))
        if st.kind is None:
            self.sequence(st.body or (), "a `shortcut { ... }` branch")
            self.stmts(st.body or (), local)
            return
        if st.kind not in SHORTCUTS:
            self.errors.add(SpecNameError(f"unknown shortcut kind '{st.kind}'", st.span,
                                          did_you_mean(st.kind, SHORTCUTS)
                                          or f"kinds: {', '.join(SHORTCUTS)}", code="E201"))
            return
        self._try(lambda: self.bindings.bind(st, [], st.args, f"shortcut {st.kind}", st.span,
                                             SHORTCUTS[st.kind].flags))

    def expr(self, e: n.Expr, local: set[str]) -> None:
        found = references(e)
        for x in found:
            if type(x) is n.Name and x.id not in local and self.scope.lookup(x.id) is None:
                known = x.id in BUILTIN_NAMES
                self.errors.add(SpecNameError(
                    f"'{x.id}' has no value here" if known else f"unknown name '{x.id}'",
                    x.span, BUILTIN_NAMES[x.id] if known else
                    did_you_mean(x.id, list(local) + list(self.scope.names)), code="E201"))
        for f in found:
            if type(f) is n.Func and f.name not in FUNCTIONS:
                self.errors.add(SpecNameError(
                    f"unknown function '{f.name}'", f.span,
                    did_you_mean(f.name, list(FUNCTIONS)) or f"functions: "
                    f"{', '.join(FUNCTIONS)}", code="E201"))

    def sequence(self, body: Iterable, where: str) -> None:
        """A branch or group is a plain sequence of layers and lets (and `if`s of them)."""
        for stmts in branches(body):
            for inner in stmts:
                if isinstance(inner, (n.Residual, n.Shortcut, n.Merge)):
                    self.errors.add(SpecValueError(
                        f"`residual`, `shortcut` and `merge` cannot appear inside {where}",
                        inner.span, "put the nested unit in a block of its own and use it",
                        code="E308"))

    def _try(self, fn):
        try:
            return fn()
        except ResdslError as e:
            self.errors.add(e)
            return None


def _group_clashes(body: tuple) -> list[ResdslError]:
    """A stage, or a block used at the network's top level, named `stem` or `head` in a
    network with that group (in any branch of its `if`s): the group is a scope of the graph
    IR whose path is its keyword, so the two would be one scope, and the stage would vanish
    from the compiled module."""
    groups: set[str] = set()
    named: list[tuple[str, Span]] = []
    stack = list(body)
    while stack:
        st = stack.pop()
        if isinstance(st, n.If):
            stack += list(st.then) + list(st.orelse)
        elif isinstance(st, n.Group):
            groups.add(st.kind)
            stack += list(st.body)
        elif isinstance(st, n.Stage):
            named.append((st.name, st.span))
        elif isinstance(st, n.Layer) and st.label is not None and st.kind not in LAYERS:
            named.append((st.label, st.span))
    return [SpecNameError(f"'{name}' names a stage or block and this network's `{name} {{ }}` "
                          "group", span, f"name it differently, e.g. '{name}_'", code="E202")
            for name, span in sorted(named, key=lambda t: (t[1].line, t[1].col))
            if name in groups]


MAX_PATHS = 64   # the `if` paths through one block body whose structure check() checks


def _path_structure_errors(body: tuple) -> list[ResdslError]:
    """The structure errors of every way through the body's `if`s (up to MAX_PATHS of them;
    elaboration checks the one taken in any case), each reported once."""
    found: dict[tuple, ResdslError] = {}
    for path in _paths(body, MAX_PATHS) or []:
        for e in structure_errors(path):
            found.setdefault((e.message, e.span), e)
    return list(found.values())


def _paths(body: tuple, limit: int) -> list[list] | None:
    """The statement sequences a body can take, choosing a branch at each `if`; None where
    there would be more than `limit`."""
    paths: list[list] = [[]]
    for st in body:
        if not isinstance(st, n.If):
            for p in paths:
                p.append(st)
            continue
        then, orelse = _paths(st.then, limit), _paths(st.orelse, limit)
        if then is None or orelse is None or len(paths) * (len(then) + len(orelse)) > limit:
            return None
        paths = [p + o for p in paths for o in then + orelse]
    return paths


def structure_errors(body: Iterable) -> list[ResdslError]:
    """Order inside a block: [layers] residual shortcut [merge] [layers]."""
    errors: list[ResdslError] = []
    seen: dict[type, n.Stmt] = {}

    def bad(msg: str, st, hint: str | None = None, notes=()) -> None:
        errors.append(SpecValueError(msg, st.span, hint, code="E308", notes=notes))

    for st in body:
        kind = type(st)
        if kind in (n.Residual, n.Shortcut, n.Merge) and kind in seen:
            bad(f"a block has one `{_word(kind)}`", st, notes=[(seen[kind].span, "first here")])
        if kind is n.Shortcut and n.Residual not in seen:
            bad("`shortcut` comes after a `residual { ... }` branch", st)
        if kind is n.Merge and n.Shortcut not in seen:
            bad("`merge` comes after `shortcut`", st)
        if kind is n.Merge and getattr(seen.get(n.Shortcut), "kind", "") == "none":
            bad("`shortcut none` has nothing to merge", st, hint="remove the `merge` line")
        if kind is n.Layer and n.Residual in seen and n.Merge not in seen and \
                getattr(seen.get(n.Shortcut), "kind", "") != "none":
            bad("a layer between `residual` and `merge`", st,
                hint="to apply it to the sum, write `merge add` before it; else move it into "
                     "the residual branch")
        seen.setdefault(kind, st)
    if n.Residual in seen and n.Shortcut not in seen:
        bad("a `residual` branch needs a `shortcut`", seen[n.Residual],
            hint="add `shortcut identity`, `shortcut projection`, `shortcut pad` or "
                 "`shortcut none`")
    return errors


def _misspelt_keyword(name: str) -> str | None:
    """A hint when an unknown block's name is a misspelt statement keyword (`stge`)."""
    from .parse import KEYWORDS
    words = KEYWORDS - {"x", "true", "false", "and", "or", "not", "else"}
    close = did_you_mean(name, words, cutoff=0.75)
    if close is None:
        return None
    form = " (`stage NAME = N x BLOCK(ARGS)`)" if "'stage'" in close else ""
    return f"{close[:-1]}, the keyword?{form}"


def _elsewhere(name: str) -> str | None:
    """A hint for a block name the file cannot see: a layer's other name (`batchnorm`), or a
    block of a bundled library the file does not `use`."""
    for op in LAYERS.values():
        if name in op.also or name.lower() in op.also:
            return f"did you mean '{op.name}'? (resdsl's name for {op.doc.split(';')[0]})"
    from .loader import library_blocks
    for lib, blocks in library_blocks().items():
        if name in blocks:
            return f"'{name}' is a block of the bundled library {lib}: add `use {lib}`"
    return None


def _is_flag(kind: str, name: str) -> bool:
    return kind in LAYERS and name in LAYERS[kind].flags


def _word(kind: type) -> str:
    return {n.Residual: "residual", n.Shortcut: "shortcut", n.Merge: "merge"}[kind]


def _name_span(c: n.Call) -> Span:
    s = c.span
    return Span(s.file, s.line, s.col, s.line, s.col + len(c.name))


def _recursion(scope: Scope, errors: Collector) -> None:
    """A block that uses itself, directly or through others, would never finish expanding.
    One depth-first walk (linear in the uses; every cycle has a back edge), reporting each
    cycle found once."""
    graph: dict[str, list[tuple[str, Span]]] = {}
    for item in scope.module.items:
        if isinstance(item, n.BlockDef):
            graph[item.name] = list(_block_uses(item, scope))
    reported: set[frozenset] = set()
    for start, path in _back_edges(graph):
        names = frozenset(name for name, _ in path)
        if names not in reported:
            reported.add(names)
            chain = " -> ".join([start] + [name for name, _ in path])
            errors.add(SpecNameError(f"block '{start}' uses itself: {chain}", path[0][1],
                                     "a block cannot contain itself", code="E205"))


def _block_uses(d: n.BlockDef, scope: Scope):
    params = {p.name for p in d.params}
    stack: list = list(d.body)
    while stack:
        st = stack.pop()
        if isinstance(st, n.If):
            stack += list(st.then) + list(st.orelse)
        elif isinstance(st, n.Residual):
            stack += list(st.body)
        elif isinstance(st, n.Shortcut) and st.body:
            stack += list(st.body)
        elif isinstance(st, n.Layer) and st.kind not in params and st.kind not in LAYERS:
            found = scope.lookup(st.kind)
            if found and isinstance(found[0], n.BlockDef) and found[1] is scope:
                yield st.kind, st.span


def _back_edges(graph: dict[str, list[tuple[str, Span]]]):
    """For each back edge of a depth-first walk: (block, the (block, span) edges from it
    back to itself). Iterative, so a long chain of blocks costs no recursion."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for root in graph:
        if root in state:
            continue
        state[root] = 1
        path: list[tuple[str, Span | None]] = [(root, None)]
        where = {root: 0}
        todo = [iter(graph[root])]
        while todo:
            step = next(todo[-1], None)
            if step is None:
                todo.pop()
                name, _ = path.pop()
                del where[name]
                state[name] = 2
                continue
            nxt, span = step
            if state.get(nxt) == 1:
                yield nxt, [e for e in path[where[nxt] + 1:]] + [(nxt, span)]
            elif nxt not in state and nxt in graph:
                state[nxt] = 1
                where[nxt] = len(path)
                path.append((nxt, span))
                todo.append(iter(graph[nxt]))
