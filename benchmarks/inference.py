"""Inference timings on this CPU: `resdsl compile --inference` ResNet-50 against torchvision.

    python benchmarks/inference.py [--runs 9] [--batch 8] [--size 224] [--threads N] [--no-compile]

Models, all float32, eval mode, under torch.inference_mode(), carrying the same weights (a
torchvision resnet50 with random BN statistics, so that folding has something to fold):
  torchvision          torchvision.models.resnet50(), eager
  torchvision fold+cl  the same with its BNs folded by torch.fx's `fuse` and channels_last
                       weights and input: the issue's "folding + channels_last alone" control
  torchvision+compile  torch.compile of the same model (inductor), after its compilation
  resdsl --inference   resdsl.optimize(resdsl.build(resnet50)): BNs folded into the convs,
                       add+ReLU epilogues in place, channels_last (the input is converted inside)
  resdsl --inference+compile   the same under torch.compile

Each round times every model once, in rotating order, after a warm-up; a ratio is the median
of the per-round ratios to torchvision eager (a round's timings share the machine's load).
Goals (issue 5): resdsl --inference <= 0.65x torchvision eager, and faster than
torchvision+compile. Outputs must agree with torchvision's within 1e-4 relative. The table is
printed last.
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
GOAL_VS_EAGER = 0.65


def reference() -> torch.nn.Module:
    """torchvision's resnet50 with BN statistics and affine parameters away from 0/1."""
    torch.manual_seed(0)
    tv = torchvision.models.resnet50()
    with torch.no_grad():
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return tv.eval()


class ChannelsLast(torch.nn.Module):
    """`m` fed a channels_last copy of its input, as resdsl's inference model does inside."""

    def __init__(self, m: torch.nn.Module):
        super().__init__()
        self.m = m.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x.contiguous(memory_format=torch.channels_last))


def models(compile_: bool) -> dict[str, torch.nn.Module]:
    from torch.fx.experimental.optimization import fuse
    tv = reference()
    ours = resdsl.build(RESNET, "resnet50")
    ours.load_state_dict(tv.state_dict(), strict=True)
    fast = resdsl.optimize(ours)
    control = ChannelsLast(fuse(reference()))
    out = {"torchvision": tv, "resdsl --inference": fast, "torchvision fold+cl": control}
    if compile_:
        out["torchvision+compile"] = torch.compile(tv)
        out["resdsl --inference+compile"] = torch.compile(fast)
    return out


def agreement(ms: dict[str, torch.nn.Module], x: torch.Tensor) -> dict[str, float]:
    """Largest difference to torchvision's output, relative to its largest magnitude."""
    with torch.inference_mode():
        want = ms["torchvision"](x)
        return {k: ((m(x) - want).abs().max() / want.abs().max()).item() for k, m in ms.items()}


def measure(ms: dict[str, torch.nn.Module], x: torch.Tensor, runs: int, warmup: int):
    names = list(ms)
    wall: dict[str, list[float]] = {k: [] for k in names}
    with torch.inference_mode():
        for _ in range(warmup):
            for m in ms.values():
                m(x)
        for i in range(runs):
            for k in names[i % len(names):] + names[:i % len(names)]:
                t = time.perf_counter()
                ms[k](x)
                wall[k].append(time.perf_counter() - t)
            print(f"  round {i + 1:2}/{runs}: " + "   ".join(
                f"{k} {wall[k][-1] * 1e3:7.1f} ms" for k in names) + f"   load {load().split()[0]}",
                flush=True)
    return wall


def main() -> None:
    args = forward_args(__doc__, warmup=3, extra=lambda ap: ap.add_argument(
        "--no-compile", action="store_true", help="skip the torch.compile rows"))

    header(__file__, ROOT, f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
                           f"resdsl {resdsl.__version__}; torch threads {torch.get_num_threads()}")
    print(f"# resnet50, batch {args.batch}, {args.size}x{args.size}, float32, eval, inference_mode, "
          f"{args.warmup} warm-up + {args.runs} rounds in rotating order", flush=True)
    ms = models(not args.no_compile)
    x = torch.randn(args.batch, 3, args.size, args.size)
    t = time.perf_counter()
    err = agreement(ms, x)  # also the first call: compilation happens here
    print(f"# first calls (compilation included): {time.perf_counter() - t:.1f} s")
    wall = measure(ms, x, args.runs, args.warmup)
    print(f"# load average after: {load()}")
    print()

    med = statistics.median
    base = wall["torchvision"]
    ratio = {k: med([a / b for a, b in zip(v, base)]) for k, v in wall.items()}
    rows = [("model", "median ms", "min ms", "vs torchvision", "max rel. diff", "goal", "result")]
    for k, v in wall.items():
        goal, result = "", ""
        if k == "resdsl --inference":
            goal = f"<= {GOAL_VS_EAGER}"
            ok = ratio[k] <= GOAL_VS_EAGER
            if "torchvision+compile" in ratio:
                goal += ", < compile"
                ok = ok and ratio[k] < ratio["torchvision+compile"]
            result = "PASS" if ok else "FAIL"
        rows.append((k, f"{med(v) * 1e3:.1f}", f"{min(v) * 1e3:.1f}", f"{ratio[k]:.3f}",
                     f"{err[k]:.1e}", goal, result))
    table(rows)


if __name__ == "__main__":
    main()
