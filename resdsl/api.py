"""The Python API: `resdsl.build(spec) -> nn.Module` and `resdsl.emit_python(spec) -> str`.

Both run the same pipeline as the CLI and the same generated source: `build` executes exactly
the text that `resdsl compile -o model.py` writes. torch is imported only here, lazily.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .elaborate import MAX_LAYERS, concrete_networks
from .errors import SpecNameError
from .graph import MAX_MACS, MAX_PARAMS
from .loader import Program, load, load_text
from .pipeline import check_program, lower


def _program(spec: str | Path, allow_any_path: bool = False) -> Program:
    """A spec given as a path or as text (anything with a newline or a brace is text)."""
    text = str(spec)
    if isinstance(spec, Path) or ("\n" not in text and "{" not in text):
        return load(text, allow_any_path)
    return load_text(text, allow_any_path=allow_any_path)


def _one(program: Program, network: str | None) -> str:
    if network:
        return network
    names = concrete_networks(program.root)
    if len(names) != 1:
        raise SpecNameError(
            f"the spec defines {len(names)} buildable networks; say which with network=...",
            None, f"networks: {', '.join(names)}" if names else None, code="E209")
    return names[0]


def emit_python(spec: str | Path, network: str | None = None, *,
                features: list[str] | None = None, input_shape: tuple[int, int, int] | None = None,
                standalone: bool = False, max_layers: int = MAX_LAYERS, fuse: bool = True,
                kernels: str | None = None, max_params: int = MAX_PARAMS,
                max_macs: int = MAX_MACS, allow_any_path: bool = False,
                **overrides: Any) -> tuple[str, str, Any]:
    """(source, network class name, graph IR as compiled: fused unless `fuse` is False) of
    one network of a spec; `kernels` is the fused BNs' default (see BatchNormAct2d)."""
    from .backends.pytorch import emit

    program = _program(spec, allow_any_path)
    name = _one(program, network)
    checked = check_program(program, [name], overrides or None, max_layers, input_shape,
                            max_params, max_macs)
    net = checked.networks[name]
    g = lower(checked.graphs[name], fuse=fuse, keep=features or ())
    source, cls = emit(net, g, str(program.root.module.file), features, standalone, kernels)
    return source, cls, g


def build(spec: str | Path, network: str | None = None, *, features: list[str] | None = None,
          input_shape: tuple[int, int, int] | None = None, zero_init_residual: bool = False,
          max_layers: int = MAX_LAYERS, fuse: bool = True, kernels: str | None = None,
          max_params: int = MAX_PARAMS, max_macs: int = MAX_MACS, allow_any_path: bool = False,
          **overrides: Any):
    """Compile a network of a spec (a path or the text itself) to an `nn.Module`.

    `overrides` set the network's parameters (`num_classes=10`); `features` names top-level
    layers or stages whose outputs `forward` returns as a list instead of the logits; `fuse`
    runs the fusion pass (docs/passes.md); `kernels` ("auto", "triton", "torch"; None:
    $RESDSL_KERNELS) picks the fused BNs' implementation."""
    from .backends.pytorch import instantiate

    source, cls, g = emit_python(spec, network, features=features, input_shape=input_shape,
                                 max_layers=max_layers, fuse=fuse, kernels=kernels,
                                 max_params=max_params,
                                 max_macs=max_macs, allow_any_path=allow_any_path,
                                 **overrides)
    model = instantiate(source, cls, f"<resdsl {g.graph['name']}>", zero_init_residual)
    model.resdsl_graph = g
    if features:
        model.feature_info = feature_info(g, features)
    return model


def feature_info(g, features: list[str]) -> list[dict[str, Any]]:
    """Channels and stride (reduction) of each requested feature, from the IR, in network
    order (the order `forward` returns them in)."""
    from .graph import path_stride

    order = {v: i for i, v in enumerate(g.nodes)}
    found = []
    for name in dict.fromkeys(features):
        last = [v for v in g.nodes if v == name or v.startswith(name + ".")][-1]
        shape = g.nodes[last]["shape"]
        found.append((order[last], {"name": name, "channels": shape[0],
                                    "reduction": path_stride(g, last)[0] if len(shape) == 3
                                    else None}))
    return [info for _, info in sorted(found, key=lambda t: t[0])]
