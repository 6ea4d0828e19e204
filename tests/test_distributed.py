"""Training across processes: DDP over gloo (2 processes on 127.0.0.1, CPU) with resdsl's
synchronized BN equals one process training on the concatenated batch.

Each configuration trains 3 SGD steps with uneven per-rank batches (3 and 5 samples): the
parameters, running statistics and outputs after them must equal those of one process, with
plain (unsynchronized) BNs, on all 8 samples, within 1e-5 relative. Each rank's loss is its
share of the whole batch's mean, so that DDP's average of the ranks' gradients is the
gradient of that mean. The three ways to synchronize are all used: build(sync_bn=True),
resdsl.convert_sync_batchnorm and torch's nn.SyncBatchNorm.convert_sync_batchnorm.

It runs in float64: the comparison is of the algorithm, and in float32 two summation orders
of the same gradient already differ by about 1% relative in some BN biases after one step
(their gradient is a sum that nearly cancels), however the batch is split.
"""
from __future__ import annotations

import os
import socket
import time

import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import resdsl  # noqa: E402
from resdsl import runtime  # noqa: E402
from pathlib import Path  # noqa: E402

SPECS = Path(__file__).resolve().parent.parent / "specs"

CONFIGS = [  # (spec, network, how its BNs are synchronized)
    ("cifar.res", "resnet20", "build"),
    ("preact.res", "preact_resnet18", "resdsl"),
    ("resnet.res", "resnet18", "torch"),
]
SPLIT = (3, 5)       # samples per rank
STEPS, LR = 3, 0.05
TIMEOUT_S = 300


def _model(spec: str, net: str, how: str | None):
    """The network to train; `how` synchronizes its BNs (None: plain, the reference)."""
    model = resdsl.build(SPECS / spec, net, sync_bn=how == "build").double()
    if how == "resdsl":
        model = resdsl.convert_sync_batchnorm(model)
    elif how == "torch":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def _train(model, batches, share: slice, scale: float):
    """STEPS of SGD (momentum 0.9) on `share` of each batch; the loss is scale x its sum."""
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    for x, y in batches:
        loss = F.cross_entropy(model(x[share]), y[share], reduction="sum") * scale
        opt.zero_grad()
        loss.backward()
        opt.step()


def _worker(rank: int, port: int, data_path: str, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=len(SPLIT))
    data = torch.load(data_path)
    share = slice(sum(SPLIT[:rank]), sum(SPLIT[:rank + 1]))
    results = {}
    for spec, net, how in CONFIGS:
        model = _model(spec, net, how)
        model.load_state_dict(data["init"][net])
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        _train(ddp, data["batches"], share, len(SPLIT) / sum(SPLIT))
        kinds = sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__})
        results[net] = {"state": model.state_dict(), "kinds": kinds,
                        "out": model.eval()(data["probe"]).detach()}
    torch.save(results, f"{out_path}.{rank}")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(worker, data: dict, tmp_path) -> list[dict]:
    """Run `worker` in len(SPLIT) fresh processes on `data`, within TIMEOUT_S; each rank's
    results."""
    torch.save(data, tmp_path / "data.pt")
    ctx = mp.start_processes(worker, args=(_free_port(), str(tmp_path / "data.pt"),
                                           str(tmp_path / "out")),
                             nprocs=len(SPLIT), join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail(f"the {len(SPLIT)} processes did not finish in {TIMEOUT_S} s")
    return [torch.load(tmp_path / f"out.{r}") for r in range(len(SPLIT))]


def _rel(a, b) -> float:
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def test_ddp_sync_bn_equals_one_process_on_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    n = sum(SPLIT)
    batches = [(torch.randn(n, 3, 32, 32, dtype=torch.float64), torch.randint(0, 10, (n,)))
               for _ in range(STEPS)]
    init = {net: _model(spec, net, None).state_dict() for spec, net, _ in CONFIGS}
    data = {"init": init, "batches": batches, "probe": torch.randn(2, 3, 32, 32, dtype=torch.float64)}
    ranks = _spawn(_worker, data, tmp_path)
    for spec, net, how in CONFIGS:
        ref = _model(spec, net, None)
        ref.load_state_dict(init[net])
        _train(ref, batches, slice(None), 1.0 / n)
        expect_out = ref.eval()(data["probe"]).detach()
        assert "SyncBatchNormAct2d" in ranks[0][net]["kinds"], (net, how)
        assert "BatchNorm2d" not in ranks[0][net]["kinds"], (net, how)  # every BN synced
        for got in ranks:
            state = got[net]["state"]
            assert state.keys() == ref.state_dict().keys()
            for k, v in ref.state_dict().items():
                if v.is_floating_point():
                    assert _rel(state[k], v) < 1e-5, (net, how, k, _rel(state[k], v))
                else:
                    assert torch.equal(state[k], v), (net, how, k)
            assert _rel(got[net]["out"], expect_out) < 1e-5, (net, how)


# ---- one synchronized BN, on either implementation, every epilogue ------------------------

EPILOGUES = [(relu, at) for at in (None, "pre", "mid", "post") for relu in (False, True)]


def _module_worker(rank: int, port: int, data_path: str, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), TRITON_INTERPRET="1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=len(SPLIT))
    data = torch.load(data_path)
    share = slice(sum(SPLIT[:rank]), sum(SPLIT[:rank + 1]))
    results = {}
    for kernels in ("torch", "triton"):
        for relu, at in EPILOGUES:
            m = runtime.SyncBatchNormAct2d(4, relu=relu, residual_at=at, kernels=kernels)
            m.load_state_dict(data["state"])
            x = data["x"][share].clone().requires_grad_()
            r = data["r"][share].clone().requires_grad_() if at else None
            y = m(x, r)
            (y * data["g"][share]).sum().backward()
            results[kernels, relu, at] = {
                "y": y.detach(), "dx": x.grad, "dr": r.grad if at else None,
                "dw": m.weight.grad, "db": m.bias.grad,
                "mean": m.running_mean, "var": m.running_var}
    torch.save(results, f"{out_path}.{rank}")
    dist.destroy_process_group()


def test_sync_bn_module_on_both_implementations_equals_one_process(tmp_path):
    """The Triton path runs under TRITON_INTERPRET=1 here (on CUDA, compiled): per-rank
    kernels around one all_gather forward and one all_reduce backward."""
    torch.manual_seed(0)
    n = sum(SPLIT)
    ref_bn = runtime.BatchNormAct2d(4)
    with torch.no_grad():
        ref_bn.weight.uniform_(0.5, 1.5), ref_bn.bias.uniform_(-0.5, 0.5)
    data = {"state": ref_bn.state_dict(), "x": torch.randn(n, 4, 3, 3) * 2 + 1,
            "r": torch.randn(n, 4, 3, 3), "g": torch.randn(n, 4, 3, 3)}
    ranks = _spawn(_module_worker, data, tmp_path)
    for (kernels, relu, at) in ranks[0]:
        m = runtime.BatchNormAct2d(4, relu=relu, residual_at=at, kernels="torch")
        m.load_state_dict(data["state"])
        x = data["x"].clone().requires_grad_()
        r = data["r"].clone().requires_grad_() if at else None
        y = m(x, r)
        (y * data["g"]).sum().backward()
        got = {k: [rank[kernels, relu, at][k] for rank in ranks] for k in ranks[0][kernels,
                                                                                    relu, at]}
        case = (kernels, relu, at)
        assert _rel(torch.cat(got["y"]), y.detach()) < 1e-5, case
        assert _rel(torch.cat(got["dx"]), x.grad) < 1e-5, case
        if at:
            assert _rel(torch.cat(got["dr"]), r.grad) < 1e-5, case
        assert _rel(sum(got["dw"]), m.weight.grad) < 1e-5, case   # DDP would sum, then average
        assert _rel(sum(got["db"]), m.bias.grad) < 1e-5, case
        for rank_mean, rank_var in zip(got["mean"], got["var"]):
            assert _rel(rank_mean, m.running_mean) < 1e-6, case
            assert _rel(rank_var, m.running_var) < 1e-6, case
