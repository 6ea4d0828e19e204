"""How the compiler's cost grows with its input: time and peak memory per size, and the slope.

    python benchmarks/scale.py                 # every series (a few minutes)
    python benchmarks/scale.py --only blocks   # one series: blocks, networks, bytes, line

Each measurement is one `resdsl` process (`python -m resdsl ...`, the program a user runs) on
a generated spec in a temporary folder, which is also its AST cache folder (RESDSL_CACHE_DIR: no
cached AST of an earlier run is read; the generated specs `use` no bundled library anyway): the
wall seconds a user waits, from start to exit (interpreter start-up, imports and exit
included), the process's CPU seconds (steadier when others share the machine) and its peak
memory (ru_maxrss, in MiB), from `os.wait4`.

  blocks    `resdsl compile` of one stage of N basic blocks (1k, 2k, 4k, 12k; 12k blocks are
            96k layers, inside the 100k-layer limit), and `resdsl check`, `summary`, `draw`
            (DOT) and `fmt --check` of the same file
  networks  `resdsl check` of a file of N small networks (10k, 100k)
  bytes     `resdsl check` of a spec of constants of about 1 MB and 10 MB
  line      `resdsl check` of 90,000 convs on one line (`;`-separated)

The slope is log(time ratio) / log(size ratio) between a size and the one before, from CPU
time: 1 is linear. Goals (issue 16, this 2-core machine), marked in the last column: 12,000
blocks compile in under 30 s, a 10 MB spec checks in under 15 s and 600 MB, 100,000 networks
check in under 20 s.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import header, table  # noqa: E402

def blocks_spec(n: int) -> str:
    return ("block b(p) {\n  residual {\n    conv p, 3x3; bn; relu\n    conv p, 3x3; bn\n  }\n"
            "  shortcut identity\n  merge add\n  relu\n}\n"
            f"network n {{\n  input 3 x 32 x 32\n  conv 16, 3x3\n  stage s = {n} x b(16)\n}}\n")


def networks_spec(n: int) -> str:
    return "".join(f"network n{i} {{\n  input 3 x 8 x 8\n  conv 4, 3x3\n}}\n" for i in range(n))


def bytes_spec(size: int) -> str:
    lines, total, i = [], 0, 0
    while total < size:
        line = f"c{i} = {i} * 3 + {i % 7} // 2 - [1, 2, 3][{i % 3}]\n"
        lines.append(line)
        total += len(line)
        i += 1
    return "".join(lines) + "network n {\n  input 3 x 8 x 8\n  conv 4, 3x3\n}\n"


def line_spec(n: int) -> str:
    return "network n {\n  input 3 x 8 x 8\n  " + "; ".join(["conv 4, 3x3"] * n) + "\n}\n"


def measure(args: list[str], cwd: str, timeout: float) -> dict:
    """One `resdsl` process: wall and CPU seconds, peak MiB and exit code (or 'timeout')."""
    env = {**os.environ, "RESDSL_CACHE_DIR": cwd}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "resdsl", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    timer.cancel()
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code == -signal.SIGKILL and wall >= timeout:
        return {"wall": float("inf"), "cpu": float("inf"), "mb": float("nan"), "code": "timeout"}
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "mb": usage.ru_maxrss / 1024,
            "code": code}


# (series, size, command) -> (seconds, peak MB or None): the goals of issue 16
GOALS = {("blocks", 12000, "compile"): (30, None), ("bytes", 9_900_000, "check"): (15, 600),
         ("networks", 100_000, "check"): (20, None)}


def goal(name: str, size: int, cmd: str, m: dict) -> str:
    """'< 15 s met, < 600 MB missed': each goal of the measurement, and whether it was met."""
    if (name, size, cmd) not in GOALS:
        return ""
    seconds, mb = GOALS[name, size, cmd]
    out = [f"< {seconds} s " + ("met" if m["wall"] < seconds else "missed")]
    if mb is not None:
        out.append(f"< {mb} MB " + ("met" if m["mb"] < mb else "missed"))
    return ", ".join(out)


SERIES = {
    "blocks": ([1000, 2000, 4000, 12000], blocks_spec,
               [("compile", ["compile", "spec.res", "-o", "out.py"]),
                ("check", ["check", "spec.res"]),
                ("summary", ["summary", "spec.res"]),
                ("draw", ["draw", "spec.res", "-o", "out.dot"]),
                ("fmt", ["fmt", "--check", "spec.res"])]),
    "networks": ([10_000, 100_000], networks_spec, [("check", ["check", "spec.res"])]),
    "bytes": ([1_000_000, 9_900_000], bytes_spec, [("check", ["check", "spec.res"])]),
    "line": ([9_000, 90_000], line_spec, [("check", ["check", "spec.res"])]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(SERIES), action="append")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    header(__file__, ROOT, f"resdsl at {ROOT}")
    rows = [("series", "size", "command", "seconds", "cpu s", "peak MB", "exit", "slope",
             "goal")]
    for name in args.only or list(SERIES):
        sizes, make, commands = SERIES[name]
        with tempfile.TemporaryDirectory() as d:
            results: dict[str, list[tuple[int, dict]]] = {c: [] for c, _ in commands}
            for size in sizes:
                Path(d, "spec.res").write_text(make(size), encoding="utf-8")
                for cmd, argv in commands:
                    m = measure(argv, d, args.timeout)
                    results[cmd].append((size, m))
                    prev = results[cmd][-2] if len(results[cmd]) > 1 else None
                    slope = ""
                    if prev and prev[1]["cpu"] > 0 and math.isfinite(m["cpu"]):
                        slope = f"{math.log(m['cpu'] / prev[1]['cpu']) / math.log(size / prev[0]):.2f}"
                    rows.append((name, f"{size:,}", cmd, f"{m['wall']:.2f}", f"{m['cpu']:.2f}",
                                 f"{m['mb']:.0f}", str(m["code"]), slope,
                                 goal(name, size, cmd, m)))
                    print(*rows[-1], sep="\t", file=sys.stderr, flush=True)
    table(rows)


if __name__ == "__main__":
    main()
