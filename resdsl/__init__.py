"""resdsl: a declarative architecture compiler for residual networks.

The public functions are those of the modules named in _PUBLIC, imported on first use (so
`import resdsl` and the command line stay free of torch until a model is built)."""
__version__ = "0.1.0"

_PUBLIC = {
    "build": "api", "emit_python": "api", "optimize": "api", "load_backbone": "api",
    "convert_sync_batchnorm": "runtime", "freeze_batch_norm": "runtime",
    "verify": "verification",
}


def __getattr__(name: str):
    """`resdsl.build` and the others: the functions themselves, with their signatures."""
    if name not in _PUBLIC:
        raise AttributeError(f"module 'resdsl' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])

