"""End to end on a GPU: a ResNet-50 training step and inference throughput, four ways.

    python benchmarks/e2e.py [--batch 128] [--steps 20] [--warmup 5] [--no-compile]
                             [--device cuda] [--size 224]

Models (the same weights, channels_last, SGD with momentum, bf16 autocast):
  torchvision            torchvision.models.resnet50(), eager
  torchvision+compile    torch.compile of it
  resdsl                 resdsl.build(specs/resnet.res, "resnet50"): fused BN+add+ReLU, the
                         Triton kernels on CUDA (RESDSL_KERNELS / kernels="auto")
  resdsl+compile         torch.compile of it (the kernels are custom ops: no graph break)

Training step: forward, cross-entropy, backward, optimizer step, on one fixed batch; time per
step = median over rounds of (CUDA events around `--steps` steps) / steps, rounds interleaved
across the models. Inference: eval mode, inference_mode, images per second the same way;
for resdsl also `resdsl.optimize` (BN folded, add+ReLU epilogues). Goal (issue 5, H100): the
resdsl training step 10% faster than torchvision eager (ratio <= 0.909). Ratios are against
torchvision eager in the same run (time / torchvision's time: below 1 is faster). On a CPU (`--device cpu`, small `--batch`) it runs as a
smoke test; its figures mean little. The table is printed last.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
import torchvision  # noqa: E402
from common import header, table  # noqa: E402

import resdsl  # noqa: E402

RESNET = ROOT / "specs" / "resnet.res"
GOAL_STEP = 1 / 1.10


def models(device: str, compile_: bool) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    tv = torchvision.models.resnet50()
    ours = resdsl.build(RESNET, "resnet50")
    ours.load_state_dict(tv.state_dict(), strict=True)
    out = {"torchvision": tv, "resdsl": ours}
    for m in out.values():
        m.to(device, memory_format=torch.channels_last)
    if compile_:
        out["torchvision+compile"] = torch.compile(tv)
        out["resdsl+compile"] = torch.compile(ours)
    return out


class Timer:
    """Seconds of `fn()` run `n` times: CUDA events on a GPU, perf_counter elsewhere."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def __call__(self, fn, n: int) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            for _ in range(n):
                fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return time.perf_counter() - t


def train_step(model, opt, x, y, dtype):
    def step():
        with torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def infer(model, x, dtype):
    def run():
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype,
                                                    enabled=dtype != torch.float32):
            model(x)
    return run


def interleaved(fns: dict, timer: Timer, rounds: int, steps: int, warmup: int) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    per: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for i in range(rounds):
        for k in names[i % len(names):] + names[:i % len(names)]:
            per[k].append(timer(fns[k], steps) / steps)
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--steps", type=int, default=20, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (median)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    ap.add_argument("--no-compile", action="store_true")
    args = ap.parse_args()
    dev, dtype = args.device, getattr(torch, args.dtype)
    name = torch.cuda.get_device_name() if dev.startswith("cuda") else "CPU"
    header(__file__, ROOT, f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
                           f"resdsl {resdsl.__version__}; device {name}")
    print(f"# resnet50, batch {args.batch}, {args.size}x{args.size}, channels_last, autocast "
          f"{args.dtype}; {args.rounds} rounds of {args.steps} steps after {args.warmup} "
          "warm-up steps, interleaved", flush=True)

    ms = models(dev, not args.no_compile)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev).contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device=dev)
    timer = Timer(dev)
    steps = {k: train_step(m.train(), torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9),
                           x, y, dtype) for k, m in ms.items()}
    train = interleaved(steps, timer, args.rounds, args.steps, args.warmup)

    fast = resdsl.optimize(ms["resdsl"].eval())
    evals = {k: m.eval() for k, m in ms.items()}
    evals["resdsl --inference"] = fast.to(dev)
    runs = {k: infer(m, x, dtype) for k, m in evals.items()}
    inference = interleaved(runs, timer, args.rounds, args.steps, args.warmup)
    print()

    med = statistics.median
    rows = [("model", "train step ms", "time ratio", "inference img/s", "time ratio", "goal",
             "result")]
    t0, i0 = med(train["torchvision"]), med(inference["torchvision"])
    for k in evals:
        tr = f"{med(train[k]) * 1e3:.2f}" if k in train else ""
        tr_ratio = f"{med(train[k]) / t0:.3f}" if k in train else ""
        goal = result = ""
        if k == "resdsl":
            goal = f"step <= {GOAL_STEP:.3f}"
            result = "PASS" if med(train[k]) / t0 <= GOAL_STEP else "FAIL"
        rows.append((k, tr, tr_ratio, f"{args.batch / med(inference[k]):.0f}",
                     f"{med(inference[k]) / i0:.3f}", goal, result))
    table(rows)


if __name__ == "__main__":
    main()
