"""The Triton kernels compiled, on CUDA tensors (skipped without a GPU; benchmarks/gpu.sh runs
it there, with TRITON_INTERPRET unset): every epilogue, dtype and layout, eval and training
forward and the backward against the PyTorch ops (runtime.bn_act_torch) on the same inputs,
and the synchronized kernels on a one-process NCCL group against the unsynchronized ones.
The interpreted kernels are tested on CPU in test_bn_act.py."""
import os

import pytest
import torch

from resdsl import kernels as K
from resdsl import runtime as R

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get(
    "TRITON_INTERPRET", "0") not in ("", "0"), reason="needs CUDA, kernels compiled")
pytest.importorskip("triton")

EPILOGUES = [(relu, at) for at in (None, "pre", "mid", "post") for relu in (False, True)]
TOL = {torch.float32: 1e-4, torch.bfloat16: 3e-2}


def _inputs(shape, dtype, channels_last, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = (torch.randn(shape, generator=g, device="cuda") * 2 + 0.5).to(dtype)
    r = torch.randn(shape, generator=g, device="cuda").to(dtype)
    x, r = x.contiguous(memory_format=fmt), r.contiguous(memory_format=fmt)
    c = shape[1]
    w = torch.rand(c, generator=g, device="cuda") + 0.5
    b = torch.randn(c, generator=g, device="cuda")
    return x, r, w, b


def _run(fn, x, r, w, b, at, relu, training):
    x, w, b = (t.clone().requires_grad_() for t in (x, w, b))
    r = r.clone().requires_grad_() if at else None
    rm, rv = torch.zeros(x.shape[1], device="cuda"), torch.ones(x.shape[1], device="cuda")
    y = fn(x, w, b, rm, rv, r, training=training, momentum=0.1, eps=1e-5, relu=relu,
           residual_at=at or "mid")
    g = torch.Generator(device="cuda").manual_seed(1)
    y.backward(torch.randn(y.shape, generator=g, device="cuda").to(y.dtype))
    return [y, x.grad, w.grad, b.grad, r.grad if at else y, rm, rv]


@pytest.mark.parametrize("relu,at", EPILOGUES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_compiled_kernels_equal_pytorch(relu, at, dtype, channels_last, training):
    inputs = _inputs((8, 64, 14, 14), dtype, channels_last)
    got = _run(K.bn_act_triton, *inputs, at, relu, training)
    want = _run(R.bn_act_torch, *inputs, at, relu, training)
    for a, e in zip(got, want):
        err = float((a.float() - e.float()).norm() / e.float().norm().clamp_min(1e-12))
        assert err < TOL[dtype], (relu, at, dtype, channels_last, training, err)


@pytest.mark.parametrize("relu,at", EPILOGUES)
def test_synchronized_kernels_on_one_rank_equal_the_fused_ones(relu, at):
    import torch.distributed as dist
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29591")
        dist.init_process_group("nccl", rank=0, world_size=1)
    res = K._RES_CODE[at]

    def sync(x, w, b, rm, rv, r, *, training, momentum, eps, relu, residual_at):
        return K.SyncBnActTriton.apply(x, w, b, rm, rv, r, momentum, eps, relu, res, None)

    inputs = _inputs((8, 64, 14, 14), torch.float32, False)
    got = _run(sync, *inputs, at, relu, True)
    want = _run(K.bn_act_triton, *inputs, at, relu, True)
    for a, e in zip(got, want):
        assert float((a - e).norm() / e.norm().clamp_min(1e-12)) < 1e-5, (relu, at)
