"""Fused BN + add + ReLU (resdsl/kernels.py, chosen by resdsl/runtime.py): the Triton kernels
under TRITON_INTERPRET=1 on CPU tensors, and the torch path, against float64 references built
from nn.BatchNorm + add + relu.

TRITON_INTERPRET is set at the top of this module. When triton reads it (triton 3.x):
`triton.jit` reads it (knobs.runtime.interpret, from the environment on each access) when it
wraps a function. kernels.py jits its kernels at their first Triton call, so the variable only has
to be set before that. But triton.language's own @jit helpers (tl.zeros, tl.sum, tl.cdiv) are
wrapped when triton.language is first imported, and torch._dynamo imports it (any
torch.compile does, so an earlier test in the session could): the kernels therefore use only
builtins (tl.full, tl.reduce), and `test_import_and_late_interpret` checks in a fresh process
that importing resdsl.runtime does not import triton and that the interpreter still takes effect when
triton.language was imported first. Every expected number comes from PyTorch's own modules.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from resdsl import kernels as K
from resdsl import runtime as R
from resdsl.dispatch import kernel_choice
from torch import nn

triton = pytest.importorskip("triton")

# triton 3.6's interpreter turns every loop bound into a 1-element array and int()s it, which
# NumPy >= 1.25 deprecates (and NumPy >= 2.4 refuses: use NumPy < 2.4 with triton 3.6's
# interpreter); triton 3.8 no longer does.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Conversion of an array with ndim > 0 to a scalar is deprecated:DeprecationWarning")

EPS = 1e-5
POSITIONS = [None, "pre", "mid", "post"]


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 32 elements, so that tiny tensors still span several tiles and reduction splits."""
    monkeypatch.setattr(K, "TILE_ELEMENTS", 32)


# ---------------------------------------------------------------- references (PyTorch's modules)

def make_inputs(shape, *, seed=0, mean=0.5, std=2.0, dtype=torch.float64):
    """x, r, w, b, running mean, running var in float64 (cast later), seeded."""
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=g, dtype=torch.float64) * std + mean
    r = torch.randn(shape, generator=g, dtype=torch.float64)
    w = torch.randn(c, generator=g, dtype=torch.float64)
    b = torch.randn(c, generator=g, dtype=torch.float64)
    rm = torch.randn(c, generator=g, dtype=torch.float64)
    rv = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    return [t.to(dtype) for t in (x, r, w, b, rm, rv)]


def reference(x, r, w, b, rm, rv, *, at, relu, training, momentum=0.1, affine=True,
              track=True):
    """float64 nn.BatchNorm + add + relu on float64 copies. Returns (y, bn module)."""
    c = x.shape[1]
    cls = nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d
    bn = cls(c, eps=EPS, momentum=momentum, affine=affine, track_running_stats=track).double()
    if affine:
        bn.weight.data.copy_(w)
        bn.bias.data.copy_(b)
    if track:
        bn.running_mean.copy_(rm)
        bn.running_var.copy_(rv)
    bn.train(training)
    act = torch.relu if relu else (lambda t: t)
    if at is None:
        y = act(bn(x))
    elif at == "pre":
        y = act(bn(x + r))
    elif at == "mid":
        y = act(bn(x) + r)
    else:
        y = act(bn(x)) + r
    return y, bn


def run_both(shape, *, at, relu, training, dtype=torch.float32, kernels="triton", affine=True,
             track=True, layout=None, momentum=0.1, seed=0, mean=0.5, std=2.0):
    """Our bn_act and the float64 reference on the same values, forward and backward.

    Returns (ours, ref) dicts: y, running_mean, running_var, and grads x, r, w, b."""
    x, r, w, b, rm, rv = make_inputs(shape, seed=seed, mean=mean, std=std)
    x, r = x.to(dtype), r.to(dtype)  # the reference sees the same rounded values
    gy = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1),
                     dtype=torch.float64)
    leaves = [t.detach().double().clone().requires_grad_() for t in (x, r, w, b)]
    y_ref, bn = reference(*leaves, rm, rv, at=at, relu=relu, training=training,
                          momentum=momentum, affine=affine, track=track)
    y_ref.backward(gy)
    ref = {"y": y_ref.detach(), "x": leaves[0].grad, "r": leaves[1].grad,
           "w": bn.weight.grad if affine else None, "b": bn.bias.grad if affine else None,
           "running_mean": bn.running_mean if track else None,
           "running_var": bn.running_var if track else None}

    xs = layout(x) if layout else x
    ours_leaves = [t.detach().clone().requires_grad_() for t in (xs, r, w.float(), b.float())]
    rmo, rvo = (rm.float().clone(), rv.float().clone()) if track else (None, None)
    y = R.bn_act(ours_leaves[0], ours_leaves[2] if affine else None,
                 ours_leaves[3] if affine else None, rmo, rvo,
                 ours_leaves[1] if at else None, training=training, momentum=momentum, eps=EPS,
                 relu=relu, residual_at=at or "mid", kernels=kernels)
    y.backward(gy.to(dtype))
    ours = {"y": y.detach(), "x": ours_leaves[0].grad, "r": ours_leaves[1].grad,
            "w": ours_leaves[2].grad, "b": ours_leaves[3].grad,
            "running_mean": rmo, "running_var": rvo}
    return ours, ref


def assert_match(ours, ref, *, atol, rtol, at):
    for key in ("y", "x", "r", "w", "b", "running_mean", "running_var"):
        if ref[key] is None or (key == "r" and at is None):
            assert key == "r" or ours[key] is None, key
            continue
        torch.testing.assert_close(ours[key].double(), ref[key], atol=atol, rtol=rtol,
                                   msg=lambda m, k=key: f"{k}: {m}")


# ---------------------------------------------------------------- dispatch and API

def test_kernel_choice(monkeypatch):
    monkeypatch.delenv("RESDSL_KERNELS", raising=False)
    assert kernel_choice(None) == "auto"
    monkeypatch.setenv("RESDSL_KERNELS", "torch")
    assert kernel_choice(None) == "torch"
    assert kernel_choice("triton") == "triton"
    monkeypatch.setenv("RESDSL_KERNELS", "cuda")
    with pytest.raises(ValueError, match="auto, triton, torch"):
        kernel_choice(None)
    with pytest.raises(ValueError):
        kernel_choice("fast")


LATE_INTERPRET = """
import os, sys
from resdsl import runtime
assert "triton" not in sys.modules, "importing resdsl.runtime imported triton"
import torch, torch._dynamo  # imports triton.language, its @jit helpers built for the GPU
assert "triton.language" in sys.modules
os.environ["TRITON_INTERPRET"] = "1"
x = torch.randn(3, 5, 2, 3, requires_grad=True)
kw = dict(training=True, momentum=0.1, eps=1e-5, relu=True)
y = runtime.bn_act(x, None, None, None, None, x.detach() * 2, kernels="triton", **kw)
(g,) = torch.autograd.grad(y.sum(), x)
y2 = runtime.bn_act(x, None, None, None, None, x.detach() * 2, kernels="torch", **kw)
(g2,) = torch.autograd.grad(y2.sum(), x)
torch.testing.assert_close((y, g), (y2, g2), atol=1e-5, rtol=1e-5)
print("ok")
"""


def test_import_and_late_interpret():
    """In a fresh process: importing resdsl.runtime does not import triton; TRITON_INTERPRET set after
    torch._dynamo imported triton.language still runs the kernels in the interpreter."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", LATE_INTERPRET], capture_output=True, text=True,
                         env=env, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_auto_on_cpu_is_the_torch_path():
    x, r, w, b, rm, rv = make_inputs((2, 3, 4, 4), dtype=torch.float32)
    kw = {"training": True, "momentum": 0.1, "eps": EPS, "relu": True}
    got = R.bn_act(x, w, b, rm.clone(), rv.clone(), r, kernels="auto", **kw)
    want = R.bn_act_torch(x, w, b, rm.clone(), rv.clone(), r, **kw)
    assert torch.equal(got, want)


def test_bad_residual_position():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="residual_at"):
        R.bn_act(x, None, None, None, None, x, training=True, momentum=0.1, eps=EPS,
                 relu=False, residual_at="after")


@pytest.mark.parametrize("kernels", ["torch", "triton"])
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 4)])
def test_single_value_per_channel_raises_like_pytorch(kernels, shape):
    x = torch.randn(shape)
    with pytest.raises(ValueError) as want:
        F.batch_norm(x, None, None, training=True)
    with pytest.raises(ValueError) as got:
        R.bn_act(x, None, None, None, None, training=True, momentum=0.1, eps=EPS, relu=True,
                 kernels=kernels)
    assert str(got.value) == str(want.value)
    # eval with running statistics needs no batch statistics: no error
    R.bn_act(x, None, None, torch.zeros(shape[1]), torch.ones(shape[1]), training=False,
             momentum=0.1, eps=EPS, relu=True, kernels=kernels)


def test_kernels_are_interpreted():
    R.add_act(torch.ones(3), torch.ones(3), relu=True, kernels="triton")
    from triton.runtime.interpreter import InterpretedFunction
    assert isinstance(K._bn_stats_kernel, InterpretedFunction)
    assert isinstance(K._add_act_kernel, InterpretedFunction)


# ---------------------------------------------------------------- correctness against PyTorch

CHANNELS_LAST = lambda t: t.contiguous(memory_format=torch.channels_last)
NON_CONTIGUOUS = lambda t: t.transpose(2, 3).contiguous().transpose(2, 3)

SHAPES = [
    pytest.param((3, 5, 3, 3), None, id="nchw-C5-odd"),
    pytest.param((2, 6, 3, 5), CHANNELS_LAST, id="channels_last-C6"),
    pytest.param((4, 3, 1, 1), None, id="hw1"),
    pytest.param((1, 3, 5, 7), None, id="n1-odd"),
    pytest.param((5, 7), None, id="2d"),
    pytest.param((2, 3, 4, 5), NON_CONTIGUOUS, id="non-contiguous"),
]
# every (residual position, relu) pair on the two main layouts; three pairs on the other shapes
# (each case costs ~0.5 s in the interpreter)
def _case(shape, at, relu):
    return pytest.param(*shape.values, at, relu, id=f"{shape.id}-{at}-{'relu' if relu else 'id'}")


CASES = ([_case(shape, at, relu) for shape in SHAPES[:2] for at in POSITIONS
          for relu in (True, False)]
         + [_case(shape, at, relu) for shape in SHAPES[2:]
            for at, relu in (("mid", True), ("pre", True), ("post", False))])


@pytest.mark.parametrize("shape,layout,at,relu", CASES)
def test_training_matches_pytorch(shape, layout, at, relu, small_tiles):
    """Output, running stats (momentum 0.3) and all grads, float32 kernels vs float64 modules."""
    ours, ref = run_both(shape, at=at, relu=relu, training=True, layout=layout, momentum=0.3)
    assert_match(ours, ref, atol=2e-5, rtol=1e-4, at=at)


@pytest.mark.parametrize("at", POSITIONS)
@pytest.mark.parametrize("shape,layout", [SHAPES[0], SHAPES[1], SHAPES[2]])
def test_eval_matches_pytorch(shape, layout, at, small_tiles):
    """Running statistics used and left alone; grads through a frozen BN too."""
    ours, ref = run_both(shape, at=at, relu=True, training=False, layout=layout)
    assert_match(ours, ref, atol=2e-5, rtol=1e-4, at=at)


@pytest.mark.parametrize("at", ["mid", "pre"])
@pytest.mark.parametrize("training", [True, False])
def test_no_affine_no_running_stats(at, training, small_tiles):
    """affine=False and track_running_stats=False (batch statistics even in eval)."""
    ours, ref = run_both((3, 5, 3, 3), at=at, relu=True, training=training, affine=False,
                         track=False)
    assert ours["w"] is None and ours["b"] is None
    assert_match(ours, ref, atol=2e-5, rtol=1e-4, at=at)


def test_layout_preserved(small_tiles):
    x, r, w, b, rm, rv = make_inputs((2, 6, 3, 5), dtype=torch.float32)
    x, r = CHANNELS_LAST(x), CHANNELS_LAST(r)
    y = R.bn_act(x, w, b, rm, rv, r, training=True, momentum=0.1, eps=EPS, relu=True,
                 kernels="triton")
    assert y.is_contiguous(memory_format=torch.channels_last)


def test_cumulative_momentum_resolved_by_caller(small_tiles):
    """momentum=None in nn.BatchNorm2d: the caller passes 1/num_batches_tracked."""
    bn = nn.BatchNorm2d(5, eps=EPS, momentum=None).double()
    rm, rv = torch.zeros(5), torch.ones(5)
    for step in range(1, 4):
        x = make_inputs((3, 5, 2, 3), seed=step)[0]
        bn(x)
        R.bn_act(x.float(), None, None, rm, rv, training=True, momentum=1.0 / step, eps=EPS,
                 relu=False, kernels="triton")
    torch.testing.assert_close(rm.double(), bn.running_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(rv.double(), bn.running_var, atol=1e-6, rtol=1e-5)


# ---------------------------------------------------------------- precision

@pytest.mark.parametrize("dtype,tol,at", [(torch.float16, 2e-3, "mid"),
                                          (torch.bfloat16, 1.6e-2, "mid"),
                                          (torch.bfloat16, 1.6e-2, "pre")])
def test_half_precision(dtype, tol, at, small_tiles):
    """fp16/bf16 activations with float32 weight and running stats (as under autocast).

    Tolerance: a few units of the format's precision (fp16 2^-10, bf16 2^-7) relative to the
    values, since the output and the grads are rounded to it once."""
    ours, ref = run_both((3, 6, 3, 5), at=at, relu=True, training=True, dtype=dtype)
    assert ours["y"].dtype == dtype and ours["x"].dtype == dtype
    assert ours["w"].dtype == torch.float32 and ours["running_mean"].dtype == torch.float32
    assert_match(ours, ref, atol=4 * tol, rtol=4 * tol, at=at)


def test_large_mean_small_spread_keeps_the_variance(small_tiles):
    """mean 1e4, spread 1 in float32: E[x^2]-E[x]^2 would lose the variance entirely.

    The running variance must hold to 1e-4; outputs and grads to 2e-3, since the float32 batch
    mean itself is only good to half an ulp at 1e4 (~5e-4), times |w|/std."""
    ours, ref = run_both((4, 3, 5, 5), at="mid", relu=True, training=True, mean=1e4, std=1.0)
    torch.testing.assert_close(ours["running_var"].double(), ref["running_var"], rtol=1e-4,
                               atol=0)
    assert_match(ours, ref, atol=2e-3, rtol=1e-3, at="mid")


def test_small_magnitudes(small_tiles):
    ours, ref = run_both((4, 3, 5, 5), at="post", relu=True, training=True, mean=1e-3,
                         std=1e-2)
    assert_match(ours, ref, atol=2e-5, rtol=1e-4, at="post")


def test_fp16_overflow_prone(small_tiles):
    """fp16 values near 2000 (x^2 and sums far beyond fp16's 65504): statistics stay finite."""
    ours, ref = run_both((4, 3, 5, 5), at="mid", relu=True, training=True, dtype=torch.float16,
                         mean=2000.0, std=100.0)
    assert torch.isfinite(ours["y"]).all()
    assert_match(ours, ref, atol=1e-2, rtol=1e-2, at="mid")


@pytest.mark.parametrize("at", POSITIONS)
def test_gradcheck_float64(at, small_tiles):
    """float64 inputs compute in float64 in the kernels, so finite differences are meaningful."""
    x, r, w, b, rm, rv = make_inputs((2, 2, 2, 3))
    leaves = [t.clone().requires_grad_() for t in (x, r, w, b)]

    def f(x, r, w, b):
        return R.bn_act(x, w, b, rm.clone(), rv.clone(), r if at else None, training=True,
                        momentum=0.1, eps=EPS, relu=True, residual_at=at or "mid",
                        kernels="triton")

    assert torch.autograd.gradcheck(f, leaves, fast_mode=True)


# ---------------------------------------------------------------- properties of the kernels

def test_deterministic(small_tiles):
    """Same inputs, bitwise-identical outputs, statistics and grads (no atomics)."""
    def once():
        ours, _ = run_both((5, 3, 3, 3), at="mid", relu=True, training=True, seed=3)
        return ours

    a, b = once(), once()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_torch_path_equals_triton_path(small_tiles):
    for at in ("mid", "pre"):
        ours, _ = run_both((3, 5, 3, 3), at=at, relu=True, training=True)
        theirs, _ = run_both((3, 5, 3, 3), at=at, relu=True, training=True, kernels="torch")
        for key in ours:
            if theirs[key] is not None:
                torch.testing.assert_close(ours[key], theirs[key], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("at,relu,expect_mask", [("mid", True, True), ("post", True, False),
                                                ("pre", True, False), (None, True, False)])
def test_saves_only_x_stats_and_a_bit_mask(at, relu, expect_mask):
    """Saved for backward: x (and r for "pre"), per-channel stats, a 1-bit mask for "mid"+ReLU;
    never the output or another activation-sized copy."""
    x, r, w, b, rm, rv = make_inputs((2, 8, 3, 5), dtype=torch.float32)
    x.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        R.bn_act(x, w.requires_grad_(), b, rm, rv, r if at else None, training=True,
                 momentum=0.1, eps=EPS, relu=relu, residual_at=at or "mid", kernels="triton")
    big = [t for t in saved if t.numel() >= x.numel()]
    assert len(big) == (2 if at == "pre" else 1)
    masks = [t for t in saved if t.dtype == torch.uint8 and t.numel()]
    if expect_mask:
        assert len(masks) == 1 and masks[0].numel() <= 2 * 8 * ((3 * 5 + 7) // 8)
    else:
        assert not masks


def test_autograd_function_fallback(small_tiles):
    """The plain autograd.Function used on torch < 2.4 gives the custom op's results."""
    x, r, w, b, rm, rv = make_inputs((3, 4, 2, 3), dtype=torch.float32)
    args = (K._RES_CODE["mid"], True)
    grads = []
    for fwd in (K._FWD_OP, K._BnActFunction.apply):
        leaves = [t.clone().requires_grad_() for t in (x, w, b, r)]
        y = fwd(leaves[0], leaves[1], leaves[2], rm, rv, leaves[3], True, EPS, True, *args)[0]
        grads.append((y, *torch.autograd.grad(y.sum(), leaves)))
    for a, b_ in zip(*grads):
        assert torch.equal(a, b_)


def test_pre_residual_grad_is_the_input_grad():
    x, r, w, b, rm, rv = make_inputs((2, 3, 3, 3), dtype=torch.float32)
    x.requires_grad_()
    r.requires_grad_()
    y = R.bn_act(x, w, b, rm, rv, r, training=True, momentum=0.1, eps=EPS, relu=True,
                 residual_at="pre", kernels="triton")
    y.sum().backward()
    assert torch.equal(x.grad, r.grad)


SM90_COMPILE = """
import collections, os, re
os.environ.pop("TRITON_INTERPRET", None)
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from resdsl import kernels as K
K._triton()

def compile_sm90(fn, sig, const, divisible):
    signature = {n: "constexpr" if n in const else sig[n] for n in fn.arg_names}
    attrs = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(fn.arg_names)
             if n not in const and (sig[n].startswith("*") or n in divisible)}
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=const, attrs=attrs)
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32)).asm["ptx"]
    return collections.Counter(re.findall(r"ld\\.global\\.v4|st\\.global\\.v4", ptx))

ints = {"OUTER": "i32", "C": "i32", "INNER": "i32", "SPLIT": "i32", "inv_count": "fp32"}
io = {n: "*bf16" for n in ("X", "R", "Y", "DY", "DX", "DR")}
st = {n: "*fp32" for n in ("W", "B", "MEAN", "INVSTD", "DB", "DW", "PART_N", "PART_MEAN",
                           "PART_M2", "PART_DB", "PART_DW")}
sig = {**ints, **io, **st, "MASK": "*u8"}
flags = {"HAS_W": True, "HAS_B": True, "RES": 2, "RELU": True, "WRITE_MASK": True, "PRE": False,
         "BATCH_STATS": True, "WRITE_DR": True, "ACC": tl.float32}
for pack_c, blocks in ((False, {"BLOCK_O": 8, "BLOCK_C": 1, "BLOCK_I": 256}),
                       (True, {"BLOCK_O": 32, "BLOCK_C": 64, "BLOCK_I": 1})):
    for fn in (K._bn_stats_kernel, K._bn_act_apply_kernel, K._bn_act_bwd_reduce_kernel,
               K._bn_act_bwd_apply_kernel):
        const = {k: v for k, v in {**flags, **blocks, "PACK_C": pack_c}.items()
                 if k in fn.arg_names}
        vec = compile_sm90(fn, sig, const, ("C", "OUTER") if pack_c else ("C", "INNER", "OUTER"))
        assert vec["ld.global.v4"] > 0, (fn.__name__, pack_c, vec)
print("ok")
"""


def test_kernels_compile_for_sm90():
    """The GPU path, without a GPU: each kernel compiles to sm_90 PTX through ptxas in a fresh
    process (no TRITON_INTERPRET), both layouts, with 128-bit vector loads of the activations
    (16-byte-aligned pointers and sizes divisible by 16, as triton specialises them)."""
    from triton.backends import backends
    if "nvidia" not in backends:
        pytest.skip("triton has no NVIDIA backend here")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", SM90_COMPILE], capture_output=True, text=True,
                         env=env, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


# ---------------------------------------------------------------- add_act

@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("layout", [None, CHANNELS_LAST])
def test_add_act(relu, layout):
    x, r = make_inputs((3, 5, 3, 7), dtype=torch.float32)[:2]
    if layout:
        x, r = layout(x), layout(r)
    want = torch.relu(x.double() + r.double()) if relu else x.double() + r.double()
    for kernels in ("torch", "triton"):
        got = R.add_act(x, r, relu=relu, kernels=kernels)
        torch.testing.assert_close(got.double(), want, atol=1e-6, rtol=1e-6)
    assert R.add_act(x, r, relu=relu, kernels="triton").stride() == x.stride()
    xg = x.clone().requires_grad_()  # a gradient is needed: the torch path, with autograd
    R.add_act(xg, r, relu=relu, kernels="triton").sum().backward()
    assert xg.grad is not None


# ---------------------------------------------------------------- torch.library / compile / export

def _fwd_args(at="mid"):
    x, r, w, b, rm, rv = make_inputs((2, 3, 3, 3), dtype=torch.float32)
    return (x.requires_grad_(), w.requires_grad_(), b.requires_grad_(), rm, rv,
            r.requires_grad_(), True, EPS, True, K._RES_CODE[at], True)


# opcheck's AOT-dispatch check reads .grad of non-leaf tensors itself (pytest turns the warning
# into an error here)
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_opcheck():
    """Schema, fake (meta) impl, autograd registration and AOT dispatch of the custom op."""
    if not hasattr(torch.library, "opcheck"):
        pytest.skip("torch.library.opcheck needs torch >= 2.4")
    torch.library.opcheck(torch.ops.resdsl.bn_act_fwd.default, _fwd_args("mid"))


def _block(x, w, b, rm, rv, r):
    return R.bn_act(x, w, b, rm, rv, r, training=True, momentum=0.1, eps=EPS, relu=True,
                    kernels="triton") * 2


def test_compile_fullgraph():
    """torch.compile(fullgraph=True) through the custom op, forward and backward, on CPU
    (inductor compiles the surrounding ops; the op runs the interpreted kernels)."""
    x, r, w, b, rm, rv = make_inputs((2, 3, 3, 3), dtype=torch.float32)
    leaves = [t.clone().requires_grad_() for t in (x, w, b, r)]
    rm_c, rv_c = rm.clone(), rv.clone()
    compiled = torch.compile(_block, fullgraph=True, backend="inductor")
    y = compiled(leaves[0], leaves[1], leaves[2], rm_c, rv_c, leaves[3])
    y.sum().backward()
    eager = [t.clone().requires_grad_() for t in (x, w, b, r)]
    rm_e, rv_e = rm.clone(), rv.clone()
    y_e = _block(eager[0], eager[1], eager[2], rm_e, rv_e, eager[3])
    y_e.sum().backward()
    torch.testing.assert_close(y, y_e)
    torch.testing.assert_close(rm_c, rm_e)
    torch.testing.assert_close(rv_c, rv_e)
    for a, e in zip(leaves, eager):
        torch.testing.assert_close(a.grad, e.grad)


def test_export():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3, eps=EPS)

        def forward(self, x, r):
            bn = self.bn
            return R.bn_act(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, r,
                            training=False, momentum=0.1, eps=EPS, relu=True, kernels="triton")

    m = Block().eval()
    x, r = make_inputs((2, 3, 3, 3), dtype=torch.float32)[:2]
    ep = torch.export.export(m, (x, r))
    assert "resdsl.bn_act_fwd" in str(ep.graph)
    torch.testing.assert_close(ep.module()(x, r), m(x, r))


# ---------------------------------------------------------------- --standalone files

TINY = """
block unit(planes) {
  residual { conv planes, 3x3; bn; relu; conv planes, 3x3; bn }
  shortcut identity
  merge add
  relu
}
network tiny {
  input 3 x 6 x 5
  conv 4, 3x3
  bn
  relu
  stage s = 1 x unit(4)
}
"""

STANDALONE = """
import sys
sys.modules["resdsl"] = None  # any import of resdsl now fails
import runpy, torch
ns = runpy.run_path(sys.argv[1])
torch.manual_seed(0)
m = ns["Tiny"](kernels="triton").train()
x = torch.randn(2, 3, 6, 5, requires_grad=True)
y = m(x)
(g,) = torch.autograd.grad(y.sum(), x)
for mod in m.modules():
    if hasattr(mod, "kernels"):
        mod.kernels = "torch"
y2 = m(x)
(g2,) = torch.autograd.grad(y2.sum(), x)
torch.testing.assert_close((y, g), (y2, g2), atol=1e-5, rtol=1e-5)
assert not any(k == "resdsl" or k.startswith("resdsl.") for k, v in sys.modules.items() if v)
print("ok")
"""


def test_standalone_file_runs_the_triton_kernels_without_resdsl(tmp_path):
    """--standalone inlines dispatch.py, kernels.py and runtime.py: with triton installed the
    file runs the kernels (interpreted here) where resdsl cannot be imported."""
    import resdsl
    path = tmp_path / "tiny.py"
    path.write_text(resdsl.emit_python(TINY, standalone=True)[0], encoding="utf-8")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "TRITON_INTERPRET": "1"}
    out = subprocess.run([sys.executable, "-c", STANDALONE, str(path)], capture_output=True,
                         text=True, env=env, cwd=tmp_path, check=False, timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_standalone_file_beside_resdsl_uses_the_registered_ops():
    """Executed where resdsl's kernels are loaded, a standalone file registers no second
    `resdsl::bn_act_fwd` (that corrupts the dispatcher on some torch versions): it calls the
    ops there are, and both paths still run."""
    import resdsl
    ns: dict = {"__name__": "standalone_tiny"}
    exec(compile(resdsl.emit_python(TINY, standalone=True)[0], "<tiny>", "exec"), ns)
    assert ns["_FWD_OP"] is torch.ops.resdsl.bn_act_fwd  # resdsl's, looked up, not made again
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 5)
    ours = ns["Tiny"](kernels="triton").train()
    theirs = resdsl.build(TINY, kernels="triton").train()
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), theirs(x))
