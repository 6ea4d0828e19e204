"""resdsl: a declarative architecture compiler for residual networks."""
__version__ = "0.1.0"


def build(*args, **kwargs):
    """Compile a spec to an `nn.Module`; see `resdsl.api.build` (imports torch lazily)."""
    from .api import build as _build
    return _build(*args, **kwargs)


def emit_python(*args, **kwargs):
    """The Python source `build` executes; see `resdsl.api.emit_python`."""
    from .api import emit_python as _emit
    return _emit(*args, **kwargs)


def optimize(model):
    """The inference version of a built model: BNs folded into convs, channels_last, eval;
    see `resdsl.api.optimize`."""
    from .api import optimize as _optimize
    return _optimize(model)
