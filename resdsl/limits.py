"""The limits a spec is built under, each default written once: what a network may expand to
(E501, layers and blocks), its parameters (E505) and multiply-accumulates per sample (E506),
and whether `use` may read outside the spec's folder (E211). The stages enforce them
(elaborate.py, graph.py, loader.py); the API and the command line pass one `Limits`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_LAYERS = 100_000
MAX_PARAMS = 1_000_000_000   # 4 GB of float32 weights
MAX_MACS = 10 ** 12          # multiply-accumulates per sample
MAX_ATTR = 2 ** 31 - 1       # a layer's integer attribute or an input size (E507): PyTorch's
                             # size arithmetic on it fits int64


@dataclass(frozen=True)
class Limits:
    max_layers: int = MAX_LAYERS
    max_params: int = MAX_PARAMS
    max_macs: int = MAX_MACS
    allow_any_path: bool = False

    @classmethod
    def given(cls, **limits: Any) -> Limits:
        """Limits from options where None (not given) means the default."""
        return cls(**{k: v for k, v in limits.items() if v is not None})
