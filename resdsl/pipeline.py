"""The one driver of the stages, for the API and the command line alike: load -> check ->
elaborate -> graph (shapes) -> passes, under one set of `Limits` (resdsl/limits.py).

`check` validates exactly what `compile` would build. `check` and `summary` report the graph
as the spec writes it; `compile` and `resdsl.build` lower it first (`lower`: fusion, and BN
folding for inference), which changes no shape or count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .check import Bindings, check_scope
from .elaborate import NetNode, Value, concrete_networks, constant_errors, elaborate
from .errors import Collector, ResdslError
from .backends.pytorch import check_names
from .graph import Draft, check_costs, check_input_shape, draft_graph
from .ir import Structure
from .limits import Limits
from .loader import Program, load, load_text

if TYPE_CHECKING:
    import networkx as nx


@dataclass
class Checked:
    """A program whose static checks passed, with the networks elaborated and shaped so far.
    `graphs` are their graph IRs; `resdsl check` stops at the drafts and never imports
    networkx."""

    program: Program
    networks: dict[str, NetNode] = field(default_factory=dict)
    drafts: dict[str, Draft] = field(default_factory=dict)

    @cached_property
    def graphs(self) -> dict[str, nx.DiGraph]:
        return {name: d.to_networkx() for name, d in self.drafts.items()}


def load_spec(spec: str | Path, limits: Limits = Limits()) -> Program:
    """A spec given as a path or as text: a `Path` is a path; a str is a path when it has no
    newline and ends in `.res` or names an existing file, or has no brace either (so that a
    missing file is E001, not a syntax error); anything else is spec text."""
    if isinstance(spec, Path) or _is_path(spec):
        return load(str(spec), limits.allow_any_path)
    return load_text(spec, allow_any_path=limits.allow_any_path)


def _is_path(text: str) -> bool:
    import os
    if "\n" in text:
        return False
    if text.endswith(".res") or "{" not in text:
        return True
    try:
        return os.path.isfile(text)
    except (OSError, ValueError):
        return False


def check_program(program: Program, networks: list[str] | None = None,
                  overrides: dict[str, Value] | None = None,
                  input_shape: tuple[int, int, int] | None = None,
                  limits: Limits = Limits()) -> Checked:
    """Static checks over the whole file (then its top-level constants' values), then
    elaboration and shape inference of each network asked for (by default every concrete one),
    then the limits on parameters and MACs; all independent errors are raised together."""
    errors, bindings = Collector(), Bindings()
    for err in check_scope(program.root, bindings):
        errors.add(err)
    if not errors.errors:
        for err in constant_errors(program):
            errors.add(err)
    result = Checked(program)
    if not errors.errors:
        for name in networks if networks is not None else concrete_networks(program.root):
            try:
                shape = None if input_shape is None else check_input_shape(input_shape)
                net = elaborate(program, name, overrides, limits.max_layers, bindings,
                                None if shape is None else shape[0])
                g = draft_graph(net, shape)
                check_costs(g, net.span, limits.max_params, limits.max_macs)
                check_names(Structure(g))
                result.networks[name], result.drafts[name] = net, g
            except ResdslError as e:
                errors.add(e)
    _dedupe(errors)
    try:
        errors.raise_if_any()
    except ResdslError as e:
        e.sources.update(program.sources)
        raise
    return result


def _dedupe(errors: Collector) -> None:
    seen, unique = set(), []
    for e in errors.errors:
        key = (e.code, e.span, e.message)
        if key not in seen:
            seen.add(key)
            unique.append(e)
    errors.errors = unique


def check_file(path: str, limits: Limits = Limits(), **kw) -> Checked:
    return check_program(load(path, limits.allow_any_path), limits=limits, **kw)


def check_text(text: str, file: str = "<string>", limits: Limits = Limits(), **kw) -> Checked:
    """Check spec text; `use "path"` resolves against the folder of `file` (a real path), or
    the current folder for `<string>`."""
    return check_program(load_text(text, file, allow_any_path=limits.allow_any_path),
                         limits=limits, **kw)


@dataclass
class Compiled:
    """One network through every stage: the checked program, the graph as the spec writes it
    (what summary and draw show) and the graph a backend compiles (after the passes)."""

    checked: Checked
    name: str
    graph: nx.DiGraph
    lowered: nx.DiGraph

    @property
    def file(self) -> str:
        return str(self.checked.program.root.module.file)


def compile_network(program: Program, name: str, *, overrides: dict[str, Value] | None = None,
                    input_shape: tuple[int, int, int] | None = None,
                    limits: Limits = Limits(), fuse: bool = True, inference: bool = False,
                    features: list[str] | tuple[str, ...] | None = None) -> Compiled:
    """Check, build and lower one network: what `resdsl compile` and `resdsl.build` both run.
    (The names PyTorch reserves are checked on the spec's own graph, in check_program: a pass
    may fuse a labelled layer away.)"""
    checked = check_program(program, [name], overrides or None, input_shape, limits)
    g = checked.graphs[name]
    return Compiled(checked, name, g, lower(g, fuse=fuse, keep=features or (),
                                            inference=inference))


def lower(g: nx.DiGraph, *, fuse: bool = True, keep: list[str] | tuple[str, ...] = (),
          inference: bool = False) -> nx.DiGraph:
    """The graph a backend compiles: `g` after the passes (resdsl/fuse.py unless `fuse` is
    False; resdsl/fold.py with `inference`); `keep` names nodes whose own output must
    survive (requested features)."""
    from .fold import fold
    from .fuse import fuse as fuse_pass
    if fuse:
        g, _ = fuse_pass(g, keep)
    if inference:
        g, _ = fold(g, keep)
    return g
