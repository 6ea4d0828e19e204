"""The one function that chains the stages: load -> check -> elaborate -> graph (shapes),
and `lower`, the passes between the graph and a backend.

Every command goes through here, so `check` validates exactly what `compile` would build.
`check` and `summary` report the graph as the spec writes it; `compile` and `resdsl.build`
lower it first (fusion), which changes no shape or count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from .check import check_scope
from .elaborate import MAX_LAYERS, NetNode, Value, concrete_networks, elaborate
from .errors import Collector, ResdslError
from .graph import MAX_MACS, MAX_PARAMS, Draft, check_costs, draft_graph
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


def check_program(program: Program, networks: list[str] | None = None,
                  overrides: dict[str, Value] | None = None,
                  max_layers: int = MAX_LAYERS,
                  input_shape: tuple[int, int, int] | None = None,
                  max_params: int = MAX_PARAMS, max_macs: int = MAX_MACS) -> Checked:
    """Static checks over the whole file, then elaboration and shape inference of each
    network asked for (by default every concrete one), then the limits on parameters and
    MACs; all independent errors are raised together."""
    max_layers = MAX_LAYERS if max_layers is None else max_layers   # None: the default
    max_params = MAX_PARAMS if max_params is None else max_params
    max_macs = MAX_MACS if max_macs is None else max_macs
    errors = Collector()
    for err in check_scope(program.root):
        errors.add(err)
    result = Checked(program)
    if not errors.errors:
        for name in networks if networks is not None else concrete_networks(program.root):
            try:
                net = elaborate(program, name, overrides, max_layers)
                g = draft_graph(net, input_shape)
                check_costs(g, net.span, max_params, max_macs)
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


def check_file(path: str, allow_any_path: bool = False, **kw) -> Checked:
    return check_program(load(path, allow_any_path), **kw)


def check_text(text: str, file: str = "<string>", allow_any_path: bool = False,
               **kw) -> Checked:
    """Check spec text; `use "path"` resolves against the folder of `file` (a real path), or
    the current folder for `<string>`."""
    return check_program(load_text(text, file, allow_any_path=allow_any_path), **kw)


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
        g = fold(g, keep)
    return g
