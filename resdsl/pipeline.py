"""The one function that chains the stages: load -> check -> elaborate -> graph (shapes).

Every command goes through here, so `check` validates exactly what `compile` would build.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

from .check import check_scope
from .elaborate import MAX_LAYERS, NetNode, Value, concrete_networks, elaborate
from .errors import Collector, ResdslError
from .graph import build_graph
from .loader import Program, load, load_text


@dataclass
class Checked:
    """A program whose static checks passed, with the networks elaborated so far."""

    program: Program
    networks: dict[str, NetNode] = field(default_factory=dict)
    graphs: dict[str, nx.DiGraph] = field(default_factory=dict)


def check_program(program: Program, networks: list[str] | None = None,
                  overrides: dict[str, Value] | None = None,
                  max_layers: int = MAX_LAYERS,
                  input_shape: tuple[int, int, int] | None = None) -> Checked:
    """Static checks over the whole file, then elaboration and shape inference of each
    network asked for (by default every concrete one); all independent errors are raised
    together."""
    errors = Collector()
    for err in check_scope(program.root):
        errors.add(err)
    result = Checked(program)
    if not errors.errors:
        for name in networks if networks is not None else concrete_networks(program.root):
            try:
                net = elaborate(program, name, overrides, max_layers)
                result.networks[name] = net
                result.graphs[name] = build_graph(net, input_shape)
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


def check_file(path: str, **kw) -> Checked:
    return check_program(load(path), **kw)


def check_text(text: str, file: str = "<string>", **kw) -> Checked:
    return check_program(load_text(text, file), **kw)
