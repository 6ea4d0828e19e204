"""`resdsl draw` to SVG: time per network and level, in process and end to end (the CLI).

    python benchmarks/draw.py

Goals (issue 6): ResNet-152 at block level and pre-activation ResNet-1001 at stage level render
to SVG in under 5 s each. "In process" is check + build + DOT + `dot -Tsvg`; "CLI" adds Python
start-up and imports (a fresh `resdsl draw` process). Needs Graphviz's `dot` on PATH.
"""
from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from resdsl.backends import draw  # noqa: E402
from resdsl.pipeline import check_file  # noqa: E402

CASES = [  # (spec, network, level, expand, goal in s or None)
    ("resnet.res", "resnet50", "block", False, None),
    ("resnet.res", "resnet152", "block", False, 5.0),
    ("preact.res", "preact_resnet1001", "stage", False, 5.0),
    ("resnet.res", "resnet152", "layer", False, None),
    ("preact.res", "preact_resnet1001", "layer", False, None),
    ("preact.res", "preact_resnet1001", "block", False, None),
    ("resnet.res", "resnet152", "layer", True, None),
]


def in_process(spec: str, network: str, level: str, expand: bool, runs: int = 3) -> tuple:
    times, parts = [], (0.0, 0.0, 0.0)
    for _ in range(runs):
        t0 = time.perf_counter()
        g = check_file(str(ROOT / "specs" / spec), networks=[network]).graphs[network]
        t1 = time.perf_counter()
        dot = draw.to_dot(g, level=level, expand=expand)
        t2 = time.perf_counter()
        svg = draw.render(dot, "svg")
        t3 = time.perf_counter()
        times.append(t3 - t0)
        parts = (t1 - t0, t2 - t1, t3 - t2)
    return statistics.median(times), parts, len(svg)


def cli(spec: str, network: str, level: str, expand: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "resdsl", "draw", str(ROOT / "specs" / spec), "-n", network,
               "--level", level, "-o", str(Path(tmp) / "net.svg")] + (["--expand"] if expand
                                                                       else [])
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t


def main() -> int:
    print(f"# python benchmarks/draw.py — {time.strftime('%Y-%m-%d')}, "
          f"{os.cpu_count()} cores {platform.machine()}, Python {platform.python_version()}, "
          f"{subprocess.run(['dot', '-V'], capture_output=True, text=True, check=True).stderr.strip()}")
    print(f"{'network':18s} {'level':15s} {'build':>6s} {'dot src':>7s} {'render':>7s} "
          f"{'total':>6s} {'CLI':>6s} {'SVG KB':>7s}  goal")
    failed = False
    for spec, network, level, expand, goal in CASES:
        total, (build, src, render), size = in_process(spec, network, level, expand)
        whole = cli(spec, network, level, expand)
        ok = "" if goal is None else ("PASS" if whole < goal else "FAIL")
        failed |= ok == "FAIL"
        name = level + (" --expand" if expand else "")
        print(f"{network:18s} {name:15s} {build:6.2f} {src:7.2f} {render:7.2f} {total:6.2f} "
              f"{whole:6.2f} {size / 1024:7.0f}  {f'CLI < {goal:.0f} s ' + ok if goal else ''}"
              .rstrip())
    print("seconds; build = check + elaborate + graph IR, dot src = to_dot, render = dot -Tsvg,"
          " CLI = a fresh `python -m resdsl draw` process")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
