"""The Python API: `resdsl.build(spec) -> nn.Module` and `resdsl.emit_python(spec) -> str`.

Both run the same pipeline as the CLI and the same generated source: `build` executes exactly
the text that `resdsl compile -o model.py` writes. torch is imported only here, lazily.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .dispatch import KERNELS
from .elaborate import concrete_networks
from .errors import ResdslError, SpecNameError, SpecValueError, did_you_mean
from .limits import MAX_LAYERS, MAX_MACS, MAX_PARAMS, Limits
from .loader import Program
from .pipeline import Compiled, compile_network, load_spec


def _one(program: Program, network: str | None) -> str:
    if network:
        return network
    names = concrete_networks(program.root)
    if len(names) != 1:
        raise SpecNameError(
            f"the spec defines {len(names)} buildable networks; say which with network=...",
            None, f"networks: {', '.join(names)}" if names else None, code="E209")
    return names[0]


def _bad(what: str, want: str, value: Any) -> ResdslError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return SpecValueError(f"{what} must be {want}, not {type(value).__name__} {shown}", None,
                          code="E212")


def _check_arguments(spec: Any, network: Any, features: Any, kernels: Any,
                     limits: dict[str, Any], flags: dict[str, Any]) -> None:
    """E212 for an argument of the wrong type or value, at the API's boundary, before any
    stage sees it (booleans must be bool: "no" is not false)."""
    if not isinstance(spec, (str, Path)):
        raise _bad("spec", "a path (str or pathlib.Path) or spec text", spec)
    if network is not None and not isinstance(network, str):
        raise _bad("network", "the name of a network (a str) or None", network)
    if features is not None and not (isinstance(features, (list, tuple)) and all(
            isinstance(f, str) for f in features)):
        raise _bad("features", "a list of layer or stage names (str)", features)
    if kernels is not None and kernels not in KERNELS:
        raise _bad("kernels", f"one of {', '.join(map(repr, KERNELS))} or None", kernels)
    for name, v in limits.items():
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise _bad(name, "a positive int", v)
    for name, v in flags.items():
        if not isinstance(v, bool):
            raise _bad(name, "True or False", v)


def _compiled(spec: str | Path, network: str | None, *, max_layers: int, max_params: int,
              max_macs: int, allow_any_path: bool, **kw: Any) -> Compiled:
    """The pipeline's driver on a spec given as a path or as text, for the PyTorch backend,
    under the limits given (None: the default)."""
    limits = Limits.given(max_layers=max_layers, max_params=max_params, max_macs=max_macs,
                          allow_any_path=allow_any_path)
    program = load_spec(spec, limits)
    try:
        return compile_network(program, _one(program, network), limits=limits, **kw)
    except SpecNameError as e:
        _keyword_hint(e, kw.get("overrides") or {})
        raise


def _keyword_hint(e: SpecNameError, overrides: dict[str, Any]) -> None:
    """E203 for an override the network does not have: where nothing in the spec is close
    and the name is close to one of build's own keywords (`feature=`), the hint names it."""
    import inspect

    if e.code != "E203" or e.hint:
        return
    ours = [p for p, v in inspect.signature(build).parameters.items()
            if v.kind is v.KEYWORD_ONLY]
    for name in overrides:
        close = did_you_mean(name, ours)
        if close and f"'{name}'" in e.message:
            e.hint = f"{close[:-1]}, an argument of resdsl.build (not a network parameter)?"
            return


def emit_python(spec: str | Path, network: str | None = None, *,
                features: list[str] | None = None, input_shape: tuple[int, int, int] | None = None,
                standalone: bool = False, max_layers: int = MAX_LAYERS, fuse: bool = True,
                kernels: str | None = None, max_params: int = MAX_PARAMS,
                max_macs: int = MAX_MACS, allow_any_path: bool = False, inference: bool = False,
                sync_bn: bool = False, **overrides: Any) -> tuple[str, str, Any]:
    """(source, network class name, graph IR as compiled: fused unless `fuse` is False) of
    one network of a spec; `kernels` is the fused BNs' default (see BatchNormAct2d);
    `inference` folds BNs into convs (the network's `from_trained` loads trained weights);
    `sync_bn` synchronizes the BNs across processes (resdsl.convert_sync_batchnorm)."""
    from .backends.pytorch import emit

    _check_arguments(spec, network, features, kernels,
                     dict(max_layers=max_layers, max_params=max_params, max_macs=max_macs),
                     dict(standalone=standalone, fuse=fuse, allow_any_path=allow_any_path,
                          inference=inference, sync_bn=sync_bn))
    c = _compiled(spec, network, max_layers=max_layers, max_params=max_params, max_macs=max_macs,
                  allow_any_path=allow_any_path, overrides=overrides, input_shape=input_shape,
                  fuse=fuse, inference=inference, features=features)
    source, cls = emit(c.lowered, c.file, features, standalone, kernels, sync_bn)
    return source, cls, c.lowered


def build(spec: str | Path, network: str | None = None, *, features: list[str] | None = None,
          input_shape: tuple[int, int, int] | None = None, zero_init_residual: bool = False,
          max_layers: int = MAX_LAYERS, fuse: bool = True, kernels: str | None = None,
          max_params: int = MAX_PARAMS, max_macs: int = MAX_MACS, allow_any_path: bool = False,
          sync_bn: bool = False, **overrides: Any):
    """Compile a network of a spec (a path or the text itself) to an `nn.Module`.

    `overrides` set the network's parameters (`num_classes=10`); `features` names top-level
    layers or stages whose outputs `forward` returns as a list instead of the logits; `fuse`
    runs the fusion pass (docs/passes.md); `kernels` ("auto", "triton", "torch"; None:
    $RESDSL_KERNELS) picks the fused BNs' implementation; `sync_bn` computes every BN's
    training statistics over all processes (resdsl.convert_sync_batchnorm, any
    torch.distributed backend). A `pathlib.Path` is a path; a str
    is a path when it has no newline and ends in `.res` or names an existing file, and spec
    text otherwise. A bad argument is a ResdslError (E212), as every error here is."""
    _check_arguments(spec, network, features, kernels,
                     dict(max_layers=max_layers, max_params=max_params, max_macs=max_macs),
                     dict(zero_init_residual=zero_init_residual, fuse=fuse,
                          allow_any_path=allow_any_path, sync_bn=sync_bn))
    c = _compiled(spec, network, max_layers=max_layers, max_params=max_params, max_macs=max_macs,
                  allow_any_path=allow_any_path, overrides=overrides, input_shape=input_shape,
                  fuse=fuse, features=features)
    return _module(c.lowered, {"features": features, "kernels": kernels, "file": c.file,
                               "sync_bn": sync_bn}, zero_init_residual)


def _module(g, opts: dict[str, Any], zero_init_residual: bool = False):
    """The nn.Module of a lowered graph (the code `resdsl compile` writes, executed), with
    what `optimize` needs to compile it again: its graph and options."""
    from .backends.pytorch import emit, instantiate

    source, cls = emit(g, opts["file"], opts["features"], False, opts["kernels"],
                       opts.get("sync_bn", False) and not g.graph.get("inference"))
    name = g.graph["name"] + (" inference" if g.graph.get("inference") else "")
    model = instantiate(source, cls, f"<resdsl {name}>", zero_init_residual)
    model.resdsl_graph, model.resdsl_options = g, opts
    if opts["features"]:
        model.feature_info = feature_info(g, opts["features"])
    return model


def optimize(model):
    """The inference version of a model `resdsl.build` made, as `resdsl compile --inference`
    writes it: each BN that follows a conv folded into the conv (from the model's current
    weights and running statistics), fused add+ReLU epilogues kept, channels_last, eval mode.
    Its outputs equal `model.eval()`'s up to rounding. The model itself is left as it is."""
    import torch

    from .fold import fold
    from .runtime import fold_state_dict

    g, opts = getattr(model, "resdsl_graph", None), getattr(model, "resdsl_options", None)
    if g is None or not isinstance(opts, dict):
        raise SpecValueError(f"resdsl.optimize takes a model made by resdsl.build, not "
                             f"{type(model).__name__}", None,
                             "build it with resdsl.build(spec) first", code="E213")
    if g.graph.get("inference"):
        raise SpecValueError("this model is optimized already", None,
                             "optimize the model resdsl.build made", code="E213")
    fast = _module(fold(g, keep=opts["features"] or ())[0], opts)
    # what the emitted from_trained does, on the model already made
    try:
        fast.load_state_dict(fold_state_dict(model.state_dict(), type(fast).FOLDED))
    except (KeyError, RuntimeError) as e:
        lines = [x.strip() for x in str(e).strip().splitlines() if x.strip()]
        first = (lines[1] if len(lines) > 1 else lines[0])[:200]
        raise SpecValueError("the model's layers no longer match the spec it was built from "
                             f"(a layer replaced or removed?): {first}", None,
                             "optimize the model as resdsl.build made it, then change it",
                             code="E213") from None
    return fast.eval().to(memory_format=torch.channels_last)


class FeatureInfo(list):
    """The features a `features=` model returns, in order: a list of dicts with resdsl's keys
    (`name`, `channels`, `reduction`) and timm's (`module`, `num_chs`, `reduction`), and
    timm's FeatureInfo methods, so detection code written for timm backbones reads it."""

    def get(self, key: str, idx: int | list[int] | None = None):
        """The value of `key` of every feature (idx None), of one, or of a list of them."""
        if idx is None:
            return [f[key] for f in self]
        return [self[i][key] for i in idx] if isinstance(idx, (list, tuple)) else self[idx][key]

    def get_dicts(self, keys: list[str] | None = None, idx: int | list[int] | None = None):
        pick = (lambda f: dict(f)) if keys is None else (lambda f: {k: f[k] for k in keys})
        if idx is None:
            return [pick(f) for f in self]
        return [pick(self[i]) for i in idx] if isinstance(idx, (list, tuple)) else pick(self[idx])

    def channels(self, idx: int | list[int] | None = None):
        return self.get("num_chs", idx)

    def reduction(self, idx: int | list[int] | None = None):
        return self.get("reduction", idx)

    def module_name(self, idx: int | list[int] | None = None):
        return self.get("module", idx)


def feature_info(g, features: list[str]) -> FeatureInfo:
    """Channels and stride (reduction) of each requested feature, from the IR, in network
    order (the order `forward` returns them in)."""
    from .ir import Structure, path_stride

    order = {v: i for i, v in enumerate(g.nodes)}
    last_of = Structure(g).last
    found = []
    for name in dict.fromkeys(features):
        last = name if name in g else last_of[name]
        shape = g.nodes[last]["shape"]
        reduction = path_stride(g, last)[0] if len(shape) == 3 else None
        found.append((order[last], {"name": name, "channels": shape[0], "reduction": reduction,
                                    "module": name, "num_chs": shape[0]}))
    return FeatureInfo(info for _, info in sorted(found, key=lambda t: t[0]))


def load_backbone(model, state_dict: dict) -> list[str]:
    """Load the state_dict of a whole network (resdsl's, torchvision's or timm's layout) into
    `model`, a `features=` model that stops at its last feature: the entries of the layers it
    lacks (the head) are left out, and every entry it has must be there and fit (E214).
    Returns the keys left out."""
    import torch

    if not (isinstance(model, torch.nn.Module) and isinstance(state_dict, dict)):
        raise _bad("load_backbone's arguments", "an nn.Module and a state_dict (dict)",
                   model if not isinstance(model, torch.nn.Module) else state_dict)
    own = model.state_dict().keys()
    missing = [k for k in own if k not in state_dict]
    if missing:
        raise SpecValueError(f"the state_dict lacks {len(missing)} of the model's entries, "
                             f"first {missing[0]!r}", None,
                             "pass the whole network's state_dict, of the same architecture",
                             code="E214")
    try:
        model.load_state_dict({k: v for k, v in state_dict.items() if k in own})
    except RuntimeError as e:
        lines = [x.strip() for x in str(e).splitlines() if x.strip()]
        raise SpecValueError(f"the state_dict does not fit the model: "
                             f"{(lines[1] if len(lines) > 1 else lines[0])[:200]}", None,
                             "pass the state_dict of the same architecture", code="E214") \
            from None
    return [k for k in state_dict if k not in own]
