"""Per-kernel timings of the fused BN + add + ReLU Triton kernels (resdsl/kernels.py).

    python benchmarks/kernels.py [--reps 25] [--shapes 0,1,2,3,4] [--dtypes fp32,bf16]
                                 [--layouts nchw,cl] [--ops eval,train,bwd] [--no-compile]

CUDA only. ResNet-50 layer shapes at batch 256 (the stem without residual: bn->relu; the others
bn->add->relu, residual "mid"), float32 and bfloat16 (float32 weight and running stats, as under
autocast), NCHW and channels_last, for three ops:
    eval    forward from running statistics
    train   training forward (batch statistics, running-stat update)
    bwd     backward of the training forward (grads of x, residual, weight, bias)
Each is timed with CUDA events (median of --reps after a warm-up) for
    fused   bn_act(kernels="triton")
    eager   nn.BatchNorm2d + add + relu, unfused (bn_act_torch, autograd by PyTorch)
    compile torch.compile of the same unfused ops
The floor: the fewest bytes the fused op must move, in tensor-sized passes (issue 5):
    eval 3 (read x, r; write y)              stem 2
    train 4 + 1 bit (x twice, r; y; mask)    stem 3
    bwd 6 + 2 bits (dy, x, mask twice; dx, dr)  stem 5 (dy, x twice; dx)
GB/s = floor bytes / time; "%copy" is that against a y.copy_(x) of 2 GiB measured in the same
run. Ratios are eager/fused and compile/fused (> 1: fused is faster). Goals on an H100: every
fused kernel >= 80% of copy bandwidth; eval 2.0x, train 1.8x, bwd 1.25x faster than eager.

Without CUDA it says so, runs a tiny correctness smoke of the kernels under TRITON_INTERPRET=1,
and exits 0.
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from resdsl import runtime as K  # noqa: E402

SHAPES = [(256, 64, 112, 112), (256, 256, 56, 56), (256, 512, 28, 28), (256, 1024, 14, 14),
          (256, 2048, 7, 7)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
LAYOUTS = {"nchw": torch.contiguous_format, "cl": torch.channels_last}
EPS, MOMENTUM = 1e-5, 0.1
GOALS = {"eval": 2.0, "train": 1.8, "bwd": 1.25}


def floor_bytes(op: str, numel: int, itemsize: int, residual: bool) -> float:
    """Minimum bytes the fused op moves (see the module docstring)."""
    passes, mask_bits = {("eval", True): (3, 0), ("eval", False): (2, 0),
                         ("train", True): (4, 1), ("train", False): (3, 0),
                         ("bwd", True): (6, 2), ("bwd", False): (5, 0)}[op, residual]
    return numel * (passes * itemsize + mask_bits / 8)


def cuda_time(fn, reps: int, warmup: int = 3) -> float:
    """Median milliseconds of fn() over reps, CUDA events around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(reps: int) -> float:
    """GB/s of y.copy_(x) over 2 GiB (read + write counted)."""
    x = torch.empty(2**29, dtype=torch.float32, device="cuda")
    y = torch.empty_like(x)
    ms = cuda_time(lambda: y.copy_(x), reps)
    return 2 * x.numel() * 4 / ms / 1e6


def unfused(x, w, b, rm, rv, r, training):
    """nn.BatchNorm2d + add + relu as eager PyTorch runs them."""
    return K.bn_act_torch(x, w, b, rm, rv, r, training=training, momentum=MOMENTUM, eps=EPS,
                          relu=True, residual_at="mid")


def fused(x, w, b, rm, rv, r, training):
    return K.bn_act(x, w, b, rm, rv, r, training=training, momentum=MOMENTUM, eps=EPS, relu=True,
                    residual_at="mid", kernels="triton")


def make_case(shape, dtype, fmt):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(shape, device="cuda", generator=g).to(dtype).contiguous(memory_format=fmt)
    residual = shape[1] != 64  # the stem: bn -> relu
    r = torch.randn(shape, device="cuda", generator=g).to(dtype).contiguous(memory_format=fmt) \
        if residual else None
    c = shape[1]
    w = torch.rand(c, device="cuda") + 0.5
    b = torch.randn(c, device="cuda")
    return x, w, b, torch.zeros(c, device="cuda"), torch.ones(c, device="cuda"), r


def time_op(impl, op, case, reps):
    """Milliseconds of one op of one implementation on one case."""
    x, w, b, rm, rv, r = case
    if op == "eval":
        with torch.no_grad():
            return cuda_time(lambda: impl(x, w, b, rm, rv, r, False), reps)
    if op == "train":
        with torch.no_grad():
            return cuda_time(lambda: impl(x, w, b, rm, rv, r, True), reps)
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, w, b, r)]
    y = impl(leaves[0], leaves[1], leaves[2], rm, rv, leaves[3], True)
    gy = torch.randn_like(y)
    inputs = [t for t in leaves if t is not None]
    return cuda_time(lambda: torch.autograd.grad(y, inputs, gy, retain_graph=True), reps)


def smoke_without_cuda() -> None:
    """Tiny correctness check of the Triton path under the interpreter, against the torch path."""
    os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are first jitted
    try:
        import triton  # noqa: F401
    except ImportError:
        print("triton not installed: no smoke test")
        return
    x = torch.randn(3, 5, 4, 3, requires_grad=True)
    r = torch.randn(3, 5, 4, 3)
    args = (torch.rand(5) + 0.5, torch.randn(5), torch.zeros(5), torch.ones(5), r)
    kw = {"training": True, "momentum": MOMENTUM, "eps": EPS, "relu": True}
    y1 = K.bn_act(x, *args, kernels="triton", **kw)
    (g1,) = torch.autograd.grad(y1.sum(), x)
    y2 = K.bn_act(x, *args, kernels="torch", **kw)
    (g2,) = torch.autograd.grad(y2.sum(), x)
    err = max((y1 - y2).abs().max().item(), (g1 - g2).abs().max().item())
    print(f"interpreter smoke (3x5x4x3, mid+relu, fwd+bwd): max |triton - torch| = {err:.2e}"
          f" -> {'ok' if err < 1e-4 else 'MISMATCH'}")


def versions() -> str:
    try:
        import triton
        tv = triton.__version__
    except ImportError:
        tv = "not installed"
    return f"torch {torch.__version__}, triton {tv}, python {sys.version.split()[0]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--shapes", default=",".join(str(i) for i in range(len(SHAPES))),
                    help="indices into " + " ".join(map(str, SHAPES)))
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--layouts", default="nchw,cl")
    ap.add_argument("--ops", default="eval,train,bwd")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    args = ap.parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(versions())
    if not torch.cuda.is_available():
        print("no CUDA device: the timings need a GPU.")
        smoke_without_cuda()
        return 0
    print("device:", torch.cuda.get_device_name(), "| SMs:",
          torch.cuda.get_device_properties(0).multi_processor_count)
    cfg = torch._dynamo.config  # one compilation per shape, dtype, layout and op
    setattr(cfg, "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit", 256)
    compiled = None if args.no_compile else torch.compile(unfused, dynamic=False)
    copy_gbs = copy_bandwidth(args.reps)
    print(f"copy bandwidth (y.copy_(x), 2 GiB fp32): {copy_gbs:.0f} GB/s")
    rows = []
    for si in (int(i) for i in args.shapes.split(",")):
        shape = SHAPES[si]
        for dname in args.dtypes.split(","):
            for lname in args.layouts.split(","):
                case = make_case(shape, DTYPES[dname], LAYOUTS[lname])
                for op in args.ops.split(","):
                    t_f = time_op(fused, op, case, args.reps)
                    t_e = time_op(unfused, op, case, args.reps)
                    t_c = time_op(compiled, op, case, args.reps) if compiled else float("nan")
                    nbytes = floor_bytes(op, case[0].numel(), case[0].element_size(),
                                         case[5] is not None)
                    gbs = nbytes / t_f / 1e6
                    rows.append((shape, dname, lname, op, t_f, gbs, gbs / copy_gbs, t_e / t_f,
                                 t_c / t_f))
                    print(f"  {shape} {dname} {lname} {op}: fused {t_f:.3f} ms, eager {t_e:.3f},"
                          f" compile {t_c:.3f}", flush=True)
                del case
                torch.cuda.empty_cache()
    print()
    head = (f"{'shape':<22}{'dtype':<6}{'layout':<7}{'op':<6}{'fused ms':>9}{'GB/s':>7}"
            f"{'%copy':>7}{'x eager':>9}{'x compile':>10}  goal")
    print(head)
    print("-" * len(head))
    for shape, dname, lname, op, t_f, gbs, frac, xe, xc in rows:
        ok = frac >= 0.8 and xe >= GOALS[op]
        print(f"{shape!s:<22}{dname:<6}{lname:<7}{op:<6}{t_f:>9.3f}{gbs:>7.0f}"
              f"{100 * frac:>6.0f}%{xe:>9.2f}{xc:>10.2f}  {'PASS' if ok else 'miss'}")
    print(f"(goal: >= 80% of copy bandwidth and eager/fused >= {GOALS}; "
          f"copy {copy_gbs:.0f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
