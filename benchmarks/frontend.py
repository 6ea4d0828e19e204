"""Front-end timings: parse + check of every bundled spec in process, the wall time of
`resdsl check`, and where the command's start-up goes.

    python benchmarks/frontend.py

"check" is what `resdsl check` does to a file: load (parse it and what it `use`s), static
checks, elaboration and graph building with shape inference, for every network the file
defines. Goals (2-core machine): a ResNet-152-only spec checked in under 100 ms in process;
`resdsl check` of it under 300 ms wall, as installed (`pip install` writes .pyc files; the
column without them and `check specs/resnet.res`, 12 networks, are shown for reference). Run it from the environment you want to measure (a fresh
venv is what users get: note that lark uses the `regex` module when it is installed).
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
sys.path.insert(0, str(ROOT))

from resdsl.check import check_scope  # noqa: E402
from resdsl.elaborate import concrete_networks, elaborate  # noqa: E402
from resdsl.graph import build_graph  # noqa: E402
from resdsl.loader import load  # noqa: E402
from resdsl.parse import parse  # noqa: E402
from resdsl.pipeline import check_file  # noqa: E402

RUNS, CLI_RUNS, IMPORT_RUNS = 9, 7, 5
GOAL_INPROC_MS, GOAL_CLI_MS = 100.0, 300.0


def median_ms(fn, runs: int = RUNS) -> float:
    fn()  # warm-up: the parser is built (or read from its cache) on first use
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def resnet152_spec(folder: Path) -> Path:
    """A spec holding only ResNet-152: the `resnet` template of specs/resnet.res, copied."""
    text = (SPECS / "resnet.res").read_text(encoding="utf-8")
    template = re.search(r"^network resnet\(.*?^\}\n", text, re.S | re.M)
    assert template, "specs/resnet.res no longer has `network resnet(...) { ... }`"
    path = folder / "resnet152.res"
    path.write_text("use std\n\n" + template.group(0) +
                    "\nnetwork resnet152 = resnet(bottleneck, [3, 8, 36, 3])\n", encoding="utf-8")
    return path


# ---- in process ------------------------------------------------------------------------------

def in_process(r152: Path) -> tuple[list[tuple], dict[str, float]]:
    rows = []
    for path in sorted(SPECS.glob("*.res")) + [r152]:
        text = path.read_text(encoding="utf-8")
        nets = len(concrete_networks(load(str(path)).root))
        rows.append((path.name if path != r152 else "resnet152-only (tmp)", nets,
                     median_ms(lambda: parse(text, str(path))),
                     median_ms(lambda: load(str(path))),
                     median_ms(lambda: check_file(str(path)))))
    program = load(str(r152))
    net = elaborate(program, "resnet152")
    stages = {
        "load (parse resnet152.res + std.res)": median_ms(lambda: load(str(r152))),
        "static checks": median_ms(lambda: check_scope(program.root)),
        "elaborate": median_ms(lambda: elaborate(program, "resnet152")),
        "graph + shapes": median_ms(lambda: build_graph(net)),
    }
    return rows, stages


# ---- subprocesses ----------------------------------------------------------------------------

def cli_command() -> list[str]:
    exe = Path(sys.executable).parent / "resdsl"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("resdsl")
    return [found] if found else [sys.executable, "-m", "resdsl"]


def wall_ms(cmd: list[str], runs: int = CLI_RUNS, env: dict | None = None,
            fresh_cache: bool = False) -> tuple[float, float]:
    """Median wall time and median CPU time (user + sys) of a command, in ms. CPU time barely
    moves when other work shares the machine; wall time does."""
    import resource

    walls, cpus = [], []
    for i in range(runs + 1):
        e = dict(os.environ, **(env or {}))
        tmp = tempfile.mkdtemp(prefix="resdsl-cache-") if fresh_cache else None
        if tmp:
            e["XDG_CACHE_HOME"] = tmp
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=e, cwd=ROOT, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        dt = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}{proc.stderr}")
        if i or fresh_cache:  # the first run warms the OS caches and is dropped
            walls.append(dt)
            cpus.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    return statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3


def startup(r152: Path, env: dict) -> list[tuple[str, float]]:
    py = [sys.executable]
    cli = cli_command()
    parser = "import resdsl.pipeline, resdsl.parse as p; p._parser()"
    return [
        ("python -c pass", wall_ms(py + ["-c", "pass"], env=env)),
        ("python -c 'import click'", wall_ms(py + ["-c", "import click"], env=env)),
        ("resdsl --version (imports resdsl.cli)", wall_ms(cli + ["--version"], env=env)),
        ("python -c 'import lark'", wall_ms(py + ["-c", "import lark"], env=env)),
        ("python -c 'import networkx'", wall_ms(py + ["-c", "import networkx"], env=env)),
        ("python -c 'import resdsl.pipeline'",
         wall_ms(py + ["-c", "import resdsl.pipeline"], env=env)),
        ("  ... + build the parser (LALR cache warm)", wall_ms(py + ["-c", parser], env=env)),
        ("  ... + build the parser (no cache: first run)",
         wall_ms(py + ["-c", parser], runs=3, env=env, fresh_cache=True)),
        ("resdsl check resnet152-only spec", wall_ms(cli + ["check", str(r152)], env=env)),
        ("resdsl check specs/resnet.res", wall_ms(cli + ["check", "specs/resnet.res"], env=env)),
    ]


def compile_ms() -> float:
    """What importing resdsl costs when its bytecode cannot be cached: compiling its sources."""
    sources = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "resdsl").glob("*.py"))]
    return median_ms(lambda: [compile(s, "<resdsl>", "exec") for s in sources])


# Two settings for resdsl's own bytecode. This workplace sets PYTHONDONTWRITEBYTECODE=1, so a
# source checkout here recompiles resdsl on every start; a user's checkout has .pyc files after
# its first run, and a wheel install has them from the start. Installed dependencies have
# theirs either way (pip compiles them).
PYC_DIRS = [ROOT / d / "__pycache__" for d in ("resdsl", "backends", "grammar", "specs")]
ENVS = {"resdsl no .pyc": {"PYTHONDONTWRITEBYTECODE": "1"},
        "resdsl .pyc": {"PYTHONDONTWRITEBYTECODE": "1"}}


def use_pyc(cached: bool) -> None:
    import compileall

    for d in PYC_DIRS:
        if cached:
            compileall.compile_dir(d.parent, maxlevels=0, quiet=1)
        else:
            shutil.rmtree(d, ignore_errors=True)


# ---- import time -----------------------------------------------------------------------------

def import_profile(module: str, env: dict) -> tuple[float, dict[str, float], list[tuple[str, float, float]]]:
    """Median over runs of `python -X importtime -c "import MODULE"`: the total, self time
    summed by who brought a module in (the first package below the root import that is not
    resdsl, else resdsl itself), and the largest modules by self time."""
    totals, by_owner, selfs, cums = [], defaultdict(list), defaultdict(list), defaultdict(list)
    for _ in range(IMPORT_RUNS + 1):
        e = dict(os.environ, **env)
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                              capture_output=True, text=True, cwd=ROOT, env=e)
        entries = []  # (depth, name, self_us, cumulative_us), in post-order
        for line in proc.stderr.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                entries.append(((len(m.group(3)) - 1) // 2, m.group(4), int(m.group(1)),
                                int(m.group(2))))
        owner_sum: dict[str, float] = defaultdict(float)
        # post-order: a node's children are the entries of depth+1 just before it
        pending: list[list] = []
        for depth, name, self_us, cum_us in entries:
            children = []
            while pending and pending[-1][0] > depth:
                children.append(pending.pop())
            pending.append([depth, name, self_us, cum_us, children[::-1]])
        total = 0

        def walk(node, owner):
            _, name, self_us, _, children = node
            if owner is None and not name.startswith("resdsl") and not name.startswith(
                    "__editable__"):
                owner = name.split(".")[0]
            owner_sum[owner or "resdsl (own modules)"] += self_us
            for c in children:
                walk(c, owner)

        for node in pending:
            if node[1] == module or module.startswith(node[1] + ".") or node[1].startswith(
                    "resdsl") or node[1].startswith("__editable__"):
                total += node[3]
                walk(node, None)
            else:  # interpreter start-up (site, encodings): not the import itself
                owner_sum["(start-up: site, encodings)"] += node[3]
        for depth, name, self_us, cum_us in entries:
            selfs[name].append(self_us)
            cums[name].append(cum_us)
        totals.append(total)
        for k, v in owner_sum.items():
            by_owner[k].append(v)
    med = statistics.median
    owners = {k: med(v + [0] * (IMPORT_RUNS + 1 - len(v))) / 1e3 for k, v in by_owner.items()}
    top = sorted(((n, med(s) / 1e3, med(cums[n]) / 1e3) for n, s in selfs.items()),
                 key=lambda r: -r[1])[:12]
    return med(totals) / 1e3, owners, top


# ---- report ----------------------------------------------------------------------------------

def main() -> int:
    import lark
    import networkx

    try:
        import regex  # noqa: F401
        has_regex = "installed (lark uses it)"
    except ImportError:
        has_regex = "not installed"
    print(f"# python benchmarks/frontend.py — {time.strftime('%Y-%m-%d %H:%M')}, "
          f"{os.cpu_count()} cores (nproc), Python {platform.python_version()}, "
          f"{platform.machine()}")
    print(f"# lark {lark.__version__}, networkx {networkx.__version__}, regex {has_regex}; "
          f"python {sys.executable}; load average {os.getloadavg()[0]:.2f}")
    print(f"# medians: {RUNS} in-process runs after a warm-up, {CLI_RUNS} subprocess runs "
          f"after a warm-up, {IMPORT_RUNS + 1} importtime runs")
    print("# goals: ResNet-152-only spec checked in process < 100 ms; resdsl check < 300 ms wall")

    had_pyc = PYC_DIRS[0].is_dir()
    with tempfile.TemporaryDirectory(prefix="resdsl-bench-") as d:
        r152 = resnet152_spec(Path(d))
        rows, stages = in_process(r152)
        print("\n## In process (ms): parse = this file's text only; load = + its `use`s; "
              "check = load + static checks + elaborate + graph/shapes of every network")
        print(f"{'file':24s} {'networks':>8s} {'parse':>8s} {'load':>8s} {'check':>8s}")
        for name, nets, p, lo, c in rows:
            print(f"{name:24s} {nets:8d} {p:8.2f} {lo:8.2f} {c:8.2f}")
        print("\n## ResNet-152-only spec, check by stage (ms)")
        for name, ms in stages.items():
            print(f"{name:40s} {ms:8.2f}")

        print(f"\n## Wall time of subprocesses (ms, median of {CLI_RUNS} after a warm-up); "
              f"CLI = {' '.join(cli_command())}")
        print(f"PYTHONDONTWRITEBYTECODE here: {os.environ.get('PYTHONDONTWRITEBYTECODE')!r}; "
              f"compiling resdsl/*.py in process: {compile_ms():.1f} ms. Columns: without and "
              "with .pyc files for resdsl's own modules (dependencies have theirs)")
        walls = {}
        for k, env in ENVS.items():
            use_pyc(k == "resdsl .pyc")
            walls[k] = startup(r152, env)
        print(f"{'':48s} " + " ".join(f"{k:>19s}" for k in ENVS))
        print(f"{'command':48s} " + " ".join(f"{'wall':>9s} {'cpu':>9s}" for k in ENVS))
        for i, (name, _) in enumerate(next(iter(walls.values()))):
            print(f"{name:48s} " + " ".join(f"{walls[k][i][1][0]:9.1f} {walls[k][i][1][1]:9.1f}"
                                            for k in ENVS))

    profiles, cli_profiles = {}, {}
    for k, env in ENVS.items():
        use_pyc(k == "resdsl .pyc")
        profiles[k] = import_profile("resdsl.pipeline", env)
        cli_profiles[k] = import_profile("resdsl.cli", env)
    if not had_pyc:
        use_pyc(False)  # leave the tree as it was found
    print("\n## python -X importtime -c 'import resdsl.pipeline' (ms; importtime adds overhead)")
    print(f"{'total of the import':36s} " + " ".join(f"{profiles[k][0]:16.1f}" for k in ENVS))
    print("self time by who brings the module in:")
    owners = sorted({o for k in ENVS for o in profiles[k][1]},
                    key=lambda o: -max(profiles[k][1].get(o, 0) for k in ENVS))
    for o in owners:
        vals = [profiles[k][1].get(o, 0.0) for k in ENVS]
        if max(vals) >= 0.5:
            print(f"  {o:34s} " + " ".join(f"{v:16.1f}" for v in vals))
    for k in ENVS:
        print(f"largest modules by self time, {k} (ms self, ms cumulative):")
        for name, self_ms, cum in profiles[k][2]:
            print(f"  {name:34s} {self_ms:8.1f} {cum:8.1f}")
    for k in ENVS:
        cli_total, cli_owners, _ = cli_profiles[k]
        print(f"import resdsl.cli, {k}: {cli_total:.1f} ms (click {cli_owners.get('click', 0):.1f})")

    r152_ms = rows[-1][4]
    goals = [("ResNet-152 spec checked in process", r152_ms, GOAL_INPROC_MS, True)]
    for k in ENVS:
        w = dict(walls[k])
        goals += [
            (f"resdsl check resnet152-only, {k}", w["resdsl check resnet152-only spec"][0],
             GOAL_CLI_MS, k == "resdsl .pyc"),
            (f"resdsl check specs/resnet.res, {k}", w["resdsl check specs/resnet.res"][0],
             GOAL_CLI_MS, False),
        ]
    print("\n## Goals (info: shown against the same bound, not a goal)")
    print(f"{'what':46s} {'ms':>8s} {'goal':>9s}  result")
    failed = False
    for name, ms, goal, counts in goals:
        ok = ms < goal
        failed |= counts and not ok
        verdict = ("PASS" if ok else "FAIL") if counts else ("info: under" if ok else "info: over")
        print(f"{name:46s} {ms:8.1f} {'< ' + format(goal, '.0f'):>9s}  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
