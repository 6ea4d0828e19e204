"""Property-based shape tests of your own specs, for your pytest suite (docs/testing.md).

    input_sizes(spec, network=None, ...)   hypothesis strategy: (batch, C, H, W) it accepts
    variants(spec, template, **ranges)     hypothesis strategy: instances of a template
    assert_shapes(model_or_spec, x)        every layer's real shape is the inferred one

The sizes come from `resdsl verify`'s static analysis (resdsl/verification.py), the
comparison from its PyTorch check. hypothesis is optional (`pip install 'resdsl[testing]'`):
the strategies say how to get it when it is missing (E602); `assert_shapes` needs only
torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ResdslError, ShapeError
from .verification import DEFAULT_BATCH, DEFAULT_SIZES, Sizes, analyse


def hypothesis():
    """The hypothesis package, or E602 saying how to get it."""
    try:
        import hypothesis as h
    except ImportError:
        raise ResdslError("resdsl's property-based checks need the `hypothesis` package",
                          None, "pip install 'resdsl[testing]' (or pip install hypothesis); "
                          "`resdsl verify --examples 0` runs the static part alone",
                          code="E602") from None
    return h


def size_strategy(sizes: Sizes, batch: tuple[int, int] = DEFAULT_BATCH, train: bool = False):
    """(batch, C, H, W) among the sizes `sizes` accepts, mostly among the smallest
    (cheap to run, and where a rule's exceptions lie), smallest first when shrinking; with
    `train`, a batch PyTorch also trains on (2 or more where a BN sees one value at 1)."""
    st = hypothesis().strategies
    hw = (_smallest_first(st, sorted(sizes.pairs, key=lambda p: (p[0] * p[1], p)))
          if sizes.pairs is not None else
          st.tuples(_smallest_first(st, sizes.h), _smallest_first(st, sizes.w)))

    def with_batch(p: tuple[int, int]):
        least = max(batch[0], sizes.min_batch(*p, training=train))
        return st.tuples(st.integers(least, max(least, batch[1])), st.just(sizes.channels),
                         st.just(p[0]), st.just(p[1]))
    return hw.flatmap(with_batch)


SMALL = 64   # how many of the smallest accepted sizes 3 draws in 4 come from


def _smallest_first(st, values):
    """One of `values` (in order), 3 times in 4 among the first SMALL (a large input costs
    much more to run, and tells little more than a small one)."""
    values = list(values)
    if len(values) <= SMALL:
        return st.sampled_from(values)
    small = st.sampled_from(values[:SMALL])
    return st.one_of(small, small, small, st.sampled_from(values))


@dataclass
class Variant:
    """One instance of a network template: the spec, the template's name and the arguments
    drawn for it. `line` is the instance as the language writes it, `text` the spec with it
    appended (as network `variant`); `build` and `check` compile it."""

    spec: str | Path
    template: str
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        given = ", ".join(f"{k} = {_literal(v)}" for k, v in self.args.items())
        return f"network variant = {self.template}({given})"

    @property
    def text(self) -> str:
        from .loader import read_text
        from .pipeline import _is_path

        spec = self.spec
        source = read_text(str(spec)) if isinstance(spec, Path) or _is_path(spec) else spec
        return source.rstrip("\n") + "\n\n" + self.line + "\n"

    def __repr__(self) -> str:
        return f"Variant({self.line!r})"

    def build(self, **options: Any):
        """The nn.Module (resdsl.build's options: input_shape, features, ...)."""
        from .api import build
        return build(self.spec, self.template, **options, **self.args)

    def check(self, input_shape: tuple[int, int, int] | None = None):
        """The graph IR, shaped for `input_shape` (default: the template's input)."""
        from .pipeline import check_program, load_spec
        return check_program(load_spec(self.spec), [self.template], self.args,
                             input_shape).graphs[self.template]


def _literal(v: Any) -> str:
    """A Python value as the language writes it: a str names a block or constant."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(_literal, v)) + "]"
    return str(v) if isinstance(v, str) else repr(v)


def variants(spec: str | Path, template: str, *, build: bool = False, **ranges: Any):
    """Instances of network template `template` of a spec, each argument drawn from its
    range (a hypothesis strategy; any other value is used as it is): `Variant`s, or with
    `build` the built nn.Modules. A variant the template rejects raises its error when it
    is checked or built, as the spec would."""
    st = hypothesis().strategies
    drawn = st.fixed_dictionaries({k: v if isinstance(v, st.SearchStrategy) else st.just(v)
                                   for k, v in ranges.items()})
    found = drawn.map(lambda args: Variant(spec, template, args))
    return found.map(lambda v: v.build()) if build else found


def input_sizes(spec: str | Path | Variant, network: str | None = None, *,
                sizes: tuple[int, int] = DEFAULT_SIZES, batch: tuple[int, int] = DEFAULT_BATCH,
                train: bool = False, **overrides: Any):
    """(batch, C, H, W) the network accepts, H and W in sizes[0]..sizes[1] (every one of
    them checked statically, as `resdsl verify` does); with `train`, only batches PyTorch
    also trains on. A network that accepts none raises the error of the smallest size."""
    from .verification import check_arguments

    check_arguments(spec.spec if isinstance(spec, Variant) else spec, network, sizes, 0, 0,
                    batch)
    found = _sizes(spec, network, sizes, overrides)
    if not found.h or not found.w:
        raise found.refusals[0].error
    return size_strategy(found, batch, train)


def _sizes(spec: str | Path | Variant, network: str | None, sizes: tuple[int, int],
           overrides: dict[str, Any]) -> Sizes:
    if isinstance(spec, Variant):
        spec, network, overrides = spec.spec, spec.template, {**spec.args, **overrides}
    return _analysed(spec, network, tuple(sizes), repr(sorted(overrides.items())), overrides)


_CACHE: dict[tuple, Sizes] = {}


def _analysed(spec: str | Path, network: str | None, sizes: tuple[int, int], key: str,
              overrides: dict[str, Any]) -> Sizes:
    """`analyse` of a spec's network, remembered (strategies are made once per test, a
    variant's once per example)."""
    from .api import _one
    from .pipeline import load_spec

    cached = (str(spec), isinstance(spec, Path), network, sizes, key)
    if cached not in _CACHE:
        program = load_spec(spec)
        if len(_CACHE) >= 64:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[cached] = analyse(program, _one(program, network), sizes,
                                 overrides=overrides or None)
    return _CACHE[cached]


def assert_shapes(model_or_spec: Any, x: Any, network: str | None = None, **overrides: Any):
    """Run a model (made by resdsl.build) or a spec (path, text or Variant: built for x's
    size, in eval mode) on the tensor x, under no_grad, and assert that every lowered
    layer's real input and output shape is the one resdsl infers for x's size, and that
    its parameters and buffers are the summary's; returns the output. An AssertionError
    names the layer and both shapes."""
    from .graph import totals
    from .verification import compare, model_counts

    model = _model(model_or_spec, x, network, overrides)
    g = model.resdsl_graph
    shapes = _shapes_at(g, tuple(x.shape[1:]))
    mismatch = compare(model, x, g, shapes)
    if mismatch is not None:
        raise AssertionError(f"at input {'x'.join(map(str, x.shape))}: {mismatch}")
    want, real = totals(g), model_counts(model)
    assert real["params"] == want["params"], f"parameters: {real['params']:,} in PyTorch, " \
                                             f"{want['params']:,} inferred"
    assert real["buffers"] == want["buffers"], f"buffers: {real['buffers']:,} in PyTorch, " \
                                               f"{want['buffers']:,} inferred"
    import torch
    with torch.no_grad():
        return model(x)


def _model(model_or_spec: Any, x: Any, network: str | None, overrides: dict[str, Any]):
    """The model to check: the one given, or the spec built for x's size (eval mode)."""
    from .api import _bad, build

    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        raise _bad("x", "a tensor of shape (batch, C, H, W)", x)
    if hasattr(model_or_spec, "resdsl_graph"):
        return model_or_spec
    if isinstance(model_or_spec, Variant):
        return model_or_spec.build(input_shape=tuple(shape[1:])).eval()
    if isinstance(model_or_spec, (str, Path)):
        return build(model_or_spec, network, input_shape=tuple(shape[1:]), **overrides).eval()
    raise _bad("model_or_spec", "a model made by resdsl.build, a spec or a Variant",
               model_or_spec)


def _shapes_at(g: Any, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Every node's shape for this input: the graph's own where it was built for it, else
    its shape rules run again (a refused size is the located ShapeError); E212 where a
    layer of the built model would get other channels (an fc after a flatten: the model
    was built for another size)."""
    from .api import _bad
    from .ops import OPS
    from .verification import Replay, inputs

    if input_shape == tuple(g.graph["input"]):
        return {v: d["shape"] for v, d in g.nodes(data=True)}
    if input_shape[0] != g.graph["input"][0]:
        raise _bad("x", f"a tensor with {g.graph['input'][0]} channels", input_shape)
    try:
        shapes = Replay(g).shape_map(input_shape)
    except ShapeError as e:
        e.message = f"at input {'x'.join(map(str, input_shape))}: {e.message}"
        raise
    for v, d in g.nodes(data=True):
        channels = OPS[d["op"]].channels
        if channels and d["attrs"][channels] != shapes[inputs(g, v)[0]][0]:
            built = "x".join(map(str, g.graph["input"]))
            raise _bad("x", f"an input the model runs on: it was built for {built}, and at "
                            f"{'x'.join(map(str, input_shape))} its {v} would get "
                            f"{shapes[inputs(g, v)[0]][0]} {channels.replace('_', ' ')}, not "
                            f"{d['attrs'][channels]} (build it with input_shape=...)",
                       input_shape)
    return shapes
