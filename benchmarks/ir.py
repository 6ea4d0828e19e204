"""Elaboration + shape/cost inference time, and its cost per layer, for depths 20 to 1202.

    python benchmarks/ir.py

Goals (issue 3): ResNet-152 in under 150 ms and pre-activation ResNet-1001 in under 1 s, in
process on the project's 2-core machine; time per layer roughly flat across depths (linear).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resdsl.elaborate import elaborate  # noqa: E402
from resdsl.graph import build_graph  # noqa: E402
from resdsl.loader import load  # noqa: E402

CASES = [  # (spec, network, goal in ms or None)
    ("cifar.res", "resnet20", None),
    ("cifar.res", "resnet56", None),
    ("cifar.res", "resnet110", None),
    ("resnet.res", "resnet50", None),
    ("resnet.res", "resnet152", 150.0),
    ("preact.res", "preact_resnet164", None),
    ("preact.res", "preact_resnet1001", 1000.0),
    ("cifar.res", "resnet1202", None),
]


def measure(spec: str, network: str, runs: int = 7) -> tuple[float, int]:
    program = load(str(ROOT / "specs" / spec))
    times, nodes = [], 0
    for _ in range(runs + 1):  # the first run warms caches and is dropped
        t = time.perf_counter()
        g = build_graph(elaborate(program, network))
        times.append(time.perf_counter() - t)
        nodes = g.number_of_nodes()
    return statistics.median(times[1:]) * 1e3, nodes


def main() -> int:
    rows, failed = [], False
    for spec, network, goal in CASES:
        ms, nodes = measure(spec, network)
        ok = "" if goal is None else ("PASS" if ms < goal else "FAIL")
        failed |= ok == "FAIL"
        rows.append((network, nodes, ms, ms * 1e3 / nodes, f"< {goal:.0f} ms" if goal else "", ok))
    print(f"{'network':20s} {'nodes':>6s} {'ms':>9s} {'us/node':>8s}  goal")
    for name, nodes, ms, per, goal, ok in rows:
        print(f"{name:20s} {nodes:6d} {ms:9.1f} {per:8.1f}  {goal} {ok}".rstrip())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
