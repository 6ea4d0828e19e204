"""PyTorch backend timings: resdsl's ResNet-50 against torchvision's, and build time.

    python benchmarks/pytorch.py [--runs 9] [--batch 8] [--size 224] [--threads N]

1. Eager CPU forward, float32, eval mode, under torch.no_grad(): resdsl.build(resnet50) and
   torchvision.models.resnet50() carrying the same weights, measured interleaved (each round
   times both, and a second torchvision instance as a control, in rotating order) after a
   warm-up. Goal: resdsl / torchvision <= 1.03, judged on the median of the per-round
   ratios (a round's timings share the machine's conditions; on a shared machine the
   medians of two columns can fall in different load phases). The ratio of the medians and
   of the minima are shown too, and the control's ratio: the noise floor.
2. Spec -> module: resdsl.build(specs/resnet.res, "resnet152") (parse, check, emit, exec,
   construct, initialise), median of 3 after a first (cold) build, against
   torchvision.models.resnet152() construction for reference. Goal: < 1 s.

The machine may be shared: the load average is printed before and after; run it several
times and compare. The table is printed last.
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
import torchvision  # noqa: E402
from common import forward_args, header, load, table  # noqa: E402

import resdsl  # noqa: E402

RESNET = ROOT / "specs" / "resnet.res"
GOAL_RATIO = 1.03
GOAL_BUILD_S = 1.0


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def timed2(fn) -> tuple[float, float]:
    """(wall, process CPU) seconds: CPU time is less disturbed by other processes on a
    shared machine (not at all by waiting for a core), wall time is what the goal is about."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def forward(runs: int, batch: int, size: int, warmup: int) -> dict:
    """Time resdsl's model, torchvision's, and a second torchvision instance with the same
    weights (the control: its ratio to the first shows how far chance alone moves a ratio
    on this machine), in rotating order each round."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet50().eval()
    ours = resdsl.build(RESNET, "resnet50").eval()
    ours.load_state_dict(tv.state_dict(), strict=True)
    control = torchvision.models.resnet50().eval()
    control.load_state_dict(tv.state_dict(), strict=True)
    models = {"ours": ours, "tv": tv, "control": control}
    x = torch.randn(batch, 3, size, size)
    wall: dict[str, list[float]] = {k: [] for k in models}
    cpu: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        same = torch.equal(ours(x), tv(x))
        for _ in range(warmup):
            for model in models.values():
                model(x)
        names = list(models)
        for i in range(runs):
            for name in names[i % 3:] + names[:i % 3]:
                w, c = timed2(lambda name=name: models[name](x))
                wall[name].append(w)
                cpu[name].append(c)
            print(f"  round {i + 1:2}/{runs}: resdsl {wall['ours'][-1] * 1e3:7.1f} ms   "
                  f"torchvision {wall['tv'][-1] * 1e3:7.1f} ms   ratio "
                  f"{wall['ours'][-1] / wall['tv'][-1]:.3f}   control ratio "
                  f"{wall['control'][-1] / wall['tv'][-1]:.3f}   load {load().split()[0]}",
                  flush=True)
    med = statistics.median

    def ratio(a: str) -> float:
        return med([x / y for x, y in zip(wall[a], wall["tv"])])
    return {"ours": med(wall["ours"]), "tv": med(wall["tv"]), "control": med(wall["control"]),
            "median_ratio": ratio("ours"), "control_ratio": ratio("control"),
            "ratio_of_medians": med(wall["ours"]) / med(wall["tv"]),
            "min_ours": min(wall["ours"]), "min_tv": min(wall["tv"]),
            "cpu_ours": med(cpu["ours"]), "cpu_tv": med(cpu["tv"]), "same": same}


def build_times(runs: int = 3) -> dict:
    cold = timed(lambda: resdsl.build(RESNET, "resnet152"))
    ours = [timed(lambda: resdsl.build(RESNET, "resnet152")) for _ in range(runs)]
    torchvision.models.resnet152()  # warm-up for symmetry
    tv = [timed(lambda: torchvision.models.resnet152()) for _ in range(runs)]
    return {"cold": cold, "ours": statistics.median(ours), "tv": statistics.median(tv),
            "ours_all": ours, "tv_all": tv}


def main() -> None:
    args = forward_args(__doc__, warmup=2)

    header(__file__, ROOT, f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
                           f"resdsl {resdsl.__version__}; torch threads {torch.get_num_threads()}")
    print(f"# forward: resnet50, batch {args.batch}, {args.size}x{args.size}, float32, eval, "
          f"no_grad, {args.warmup} warm-up + {args.runs} interleaved rounds (resdsl, "
          "torchvision, torchvision control)", flush=True)

    fwd = forward(args.runs, args.batch, args.size, args.warmup)
    print("# build: resnet152, cold build then median of 3; torchvision construction median of 3",
          flush=True)
    b = build_times()
    print(f"  resdsl builds: {', '.join(f'{t:.3f}' for t in b['ours_all'])} s "
          f"(cold {b['cold']:.3f} s); torchvision: {', '.join(f'{t:.3f}' for t in b['tv_all'])} s")
    print(f"# load average after: {load()}")
    print(f"# outputs identical with the same weights: {fwd['same']}")
    print()

    ratio = fwd["median_ratio"]
    rows = [
        ("metric", "resdsl", "torchvision", "ratio", "goal", "result"),
        (f"forward resnet50 b{args.batch} {args.size}px, median ms",
         f"{fwd['ours'] * 1e3:.1f}", f"{fwd['tv'] * 1e3:.1f}", f"{ratio:.3f}", f"<= {GOAL_RATIO}",
         "PASS" if ratio <= GOAL_RATIO else "FAIL"),
        ("  (ratio: median of the per-round ratios, above; of the medians)", "", "",
         f"{fwd['ratio_of_medians']:.3f}", "", ""),
        ("  (control: a 2nd torchvision instance / the 1st)", f"{fwd['control'] * 1e3:.1f}",
         "", f"{fwd['control_ratio']:.3f}", "", ""),
        ("  (min ms)", f"{fwd['min_ours'] * 1e3:.1f}", f"{fwd['min_tv'] * 1e3:.1f}",
         f"{fwd['min_ours'] / fwd['min_tv']:.3f}", "", ""),
        ("  (median process CPU ms)", f"{fwd['cpu_ours'] * 1e3:.1f}",
         f"{fwd['cpu_tv'] * 1e3:.1f}", f"{fwd['cpu_ours'] / fwd['cpu_tv']:.3f}", "", ""),
        ("build resnet152, median s", f"{b['ours']:.3f}", f"{b['tv']:.3f}",
         f"{b['ours'] / b['tv']:.3f}", f"< {GOAL_BUILD_S:g} s",
         "PASS" if b["ours"] < GOAL_BUILD_S else "FAIL"),
        ("  (first build in the process, s)", f"{b['cold']:.3f}", "", "", "", ""),
    ]
    table(rows)


if __name__ == "__main__":
    main()
