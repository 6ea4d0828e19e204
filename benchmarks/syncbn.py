"""Per-rank cost of the synchronized BN on one GPU: what SyncBatchNormAct2d adds to the fused
BN besides the network (the collectives run on a 1-process NCCL group, so their transfer is
nothing and the figure is the kernels' and the launches' cost).

    python benchmarks/syncbn.py [--reps 50] [--shape 64,256,56,56] [--dtype bf16]

For one BN -> add -> ReLU of a ResNet-50 shape (batch 64 per rank by default), training
forward + backward, CUDA-event median of --reps after warm-up:
    fused        resdsl bn_act(kernels="triton"), unsynchronized (the floor)
    sync triton  resdsl's synchronized kernels (kernels.SyncBnActTriton): stats partials,
                 all_gather of (count, mean, M2), apply; two sums, all_reduce, apply
    sync torch   resdsl's synchronized PyTorch-ops path (what gloo/CPU runs)
    torch sync   torch's nn.SyncBatchNorm (its CUDA kernels) + add + ReLU
Ratios are against "fused" (> 1: slower than the unsynchronized fused BN). CUDA only: without
a GPU it says so and exits 0.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

import torch
from kernels import cuda_time  # benchmarks/kernels.py (this script's folder)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--shape", default="64,256,56,56")
    ap.add_argument("--dtype", choices=list(DTYPES), default="bf16")
    args = ap.parse_args(argv)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}")
    if not torch.cuda.is_available():
        print("no CUDA device: the timings need a GPU.")
        return 0
    import torch.distributed as dist

    from resdsl import kernels, runtime
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29581")
    dist.init_process_group("nccl", rank=0, world_size=1)
    print("device:", torch.cuda.get_device_name())
    n, c, h, w = map(int, args.shape.split(","))
    x = torch.randn(n, c, h, w, device="cuda", dtype=DTYPES[args.dtype]).requires_grad_()
    r = torch.randn_like(x).requires_grad_()
    dy = torch.randn_like(x)
    wt = torch.ones(c, device="cuda", requires_grad=True)
    bs = torch.zeros(c, device="cuda", requires_grad=True)
    rm, rv = torch.zeros(c, device="cuda"), torch.ones(c, device="cuda")
    group = dist.group.WORLD
    torch_sync = torch.nn.SyncBatchNorm(c).cuda()

    def run(y):
        y.backward(dy)

    cases = {
        "fused": lambda: run(runtime.bn_act(x, wt, bs, rm, rv, r, True, 0.1, 1e-5, True, "mid",
                                            "triton")),
        "sync triton": lambda: run(kernels.SyncBnActTriton.apply(x, wt, bs, rm, rv, r, 0.1,
                                                                 1e-5, True, 2, group)),
        "sync torch": lambda: run(runtime._epilogue(runtime._SyncBatchNorm.apply(
            x, wt, bs, rm, rv, 0.1, 1e-5, group), r, True, "mid")),
        "torch sync": lambda: run(torch.relu(torch_sync(x) + r)),
    }
    times = {k: cuda_time(fn, args.reps) for k, fn in cases.items()}
    print(f"# BN -> add -> ReLU {args.shape} {args.dtype}, training forward + backward, "
          f"median of {args.reps}")
    print(f"{'':14}{'ms':>9}{'vs fused':>10}")
    for k, t in times.items():
        print(f"{k:14}{t:9.3f}{t / times['fused']:10.2f}")
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
