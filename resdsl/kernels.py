"""resdsl's Triton kernels: fused BatchNorm + optional residual add + optional ReLU, and add + ReLU.

    y = act(bn(x + r))      residual_at="pre"   (add -> bn -> relu: BN after addition)
    y = act(bn(x) + r)      residual_at="mid"   (bn -> add -> relu: the original ResNet unit)
    y = act(bn(x)) + r      residual_at="post"  (bn -> relu -> add: ReLU before addition)

with bn(s) = (s - mean) * invstd * w + b, act = ReLU or identity, and no residual covering
bn -> relu and plain bn. Statistics are per channel over N and the spatial dims.

The kernels sit behind custom ops `resdsl::bn_act_fwd` / `resdsl::bn_act_bwd`, so torch.compile
and torch.export trace through. resdsl/runtime.py, which calls them, holds the one choice
between them and PyTorch ops (`kernels=` / RESDSL_KERNELS, resdsl/dispatch.py) and the PyTorch
reference they are tested against (`runtime.bn_act_torch`); `--standalone` files inline this
file with it. triton is imported only when a kernel first runs, and on CPU tensors the kernels
run only under TRITON_INTERPRET=1 (read when the kernels are first jitted, i.e. at the first
Triton call, not when triton is imported).

Layout: every tensor is viewed as (OUTER, C, INNER), dense. NCHW-contiguous: OUTER = N,
INNER = H*W. channels_last: OUTER = N*H*W, INNER = 1 (C is then the contiguous axis; an NCHW
tensor with H*W = 1 is the same thing). Any other strides are copied to NCHW first.

Bytes moved, in passes over one activation-sized tensor (floor from issue 5):
    eval forward        read x, r; write y                                  3
    training forward    read x (stats); read x, r; write y, 1-bit mask      4 (+1/16 in bf16)
                        ("pre" reads r in the stats pass too: 5)
    backward            read dy, x, mask (sums); read dy, x, mask; write dx, dr
                                                                            6 (+2 masks)
                        ("post", "mid" without ReLU, no residual: 5, dr is dy itself;
                         "pre": 7, r read in both passes, dr is dx itself)
Eager PyTorch moves about 7 (eval), 8 (training forward) and 8 (backward).

Arithmetic is float32 (float64 for float64 inputs, so gradcheck works); outputs and grads are
stored in the input dtype, statistics in float32 (the weight's dtype for its grads), as
F.batch_norm does for bf16 activations with float32 parameters under autocast. Element counts
are float32: exact up to 2**24 values per channel (batch 256 at 256x256 would exceed it).

Reductions are deterministic: each program of a reduction kernel reduces a fixed set of tiles
in a fixed order to per-channel partials, and a second small kernel merges the partials (Chan's
parallel-variance formula; each tile is centred on its own mean, so E[x^2]-E[x]^2 never
appears). No atomics: the same inputs give bitwise-identical outputs on every run.
"""
from __future__ import annotations

import functools
import math
import os

import torch

_RES_CODE = {None: 0, "pre": 1, "mid": 2, "post": 3}  # the RES constexpr of the kernels


# --------------------------------------------------------------------------------------------
# Triton kernels. Written at module level like Triton's tutorials, but jitted only by
# `_triton()`: `@_kernel` records the plain function, and `_triton()` imports triton, binds the
# module globals `triton`/`tl` the bodies refer to, and replaces each recorded function by its
# `triton.jit` wrapper (annotations stay strings thanks to `from __future__ import annotations`,
# which triton reads as constexpr markers).
#
# The kernels call only triton.language *builtins* (tl.full, tl.reduce, ...), never its own
# @jit library functions (tl.zeros, tl.sum, tl.cdiv): those are jitted when triton.language is
# first imported, as GPU functions unless TRITON_INTERPRET=1 was already set then, and
# torch._dynamo imports triton.language early. Kept to builtins, the kernels run under the
# interpreter whenever TRITON_INTERPRET=1 is set before the first Triton call of this module.
# --------------------------------------------------------------------------------------------

_KERNELS: list[str] = []
triton = None  # bound by _triton()
tl = None


def _kernel(fn):
    _KERNELS.append(fn.__name__)
    return fn


@functools.cache
def _triton():
    """Import triton and jit the kernels (once). A clear error when triton is missing."""
    global triton, tl
    try:
        import triton as _t
        import triton.language as _tl
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("RESDSL_KERNELS=triton needs the `triton` package "
                           "(pip install triton), or use RESDSL_KERNELS=torch") from e
    triton, tl = _t, _tl
    for name in _KERNELS:
        globals()[name] = triton.jit(globals()[name])
    return triton


@_kernel
def _tile(o0, i0, offs_c, OUTER, C, INNER, PACK_C: tl.constexpr,
          BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr):
    """Element offsets and bounds mask of the (BLOCK_O, BLOCK_C, BLOCK_I) tile at (o0, ., i0).

    PACK_C (INNER == 1, C contiguous) leaves INNER out of the offsets, so that the compiler sees
    the contiguity along C and vectorises the loads (it does along INNER otherwise)."""
    o = o0 + tl.arange(0, BLOCK_O)
    i = i0 + tl.arange(0, BLOCK_I)
    ok = (o < OUTER)[:, None, None] & (offs_c < C)[None, :, None]
    if PACK_C:  # BLOCK_I == INNER == 1, i0 == 0 (not known to the compiler: leave i out)
        offs = (o.to(tl.int64) * C)[:, None, None] + offs_c[None, :, None]
    else:
        offs = ((o.to(tl.int64) * C * INNER)[:, None, None] + (offs_c * INNER)[None, :, None]
                + i[None, None, :])
        ok = ok & (i < INNER)[None, None, :]
    return offs, ok


@_kernel
def _chan_merge(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Chan et al.'s merge of two (count, mean, sum of squared deviations) triples."""
    n = n_a + n_b
    delta = mean_b - mean_a
    frac = n_b / tl.maximum(n, 1.0)
    return n, mean_a + delta * frac, m2_a + m2_b + delta * delta * n_a * frac


@_kernel
def _add(a, b):
    return a + b


@_kernel
def _sum2(t):
    """Sum a (BLOCK_O, BLOCK_C, BLOCK_I) tile over O and I: one value per channel."""
    return tl.reduce(tl.reduce(t, 2, _add), 0, _add)


@_kernel
def _store_mask(MASK, keep, o0, i0, c0, OUTER, C, INNER, PACK_C: tl.constexpr,
                BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr):
    """Pack the boolean tile `keep` 8 elements to a byte along the contiguous axis and store it.

    Mask layout: (OUTER, ceil(C/8)) bytes when INNER == 1 (PACK_C), else (OUTER, C, ceil(INNER/8));
    bit k of a byte is element 8*j + k. Tiles start at multiples of 8 on the packed axis."""
    bits = 1 << tl.arange(0, 8)
    o = o0 + tl.arange(0, BLOCK_O)
    if PACK_C:
        k = tl.reshape(keep.to(tl.int32), [BLOCK_O, BLOCK_C // 8, 8])
        byte = tl.reduce(k * bits[None, None, :], 2, _add).to(tl.uint8)
        cg = c0 // 8 + tl.arange(0, BLOCK_C // 8)
        CB = (C + 7) // 8
        offs = o.to(tl.int64)[:, None] * CB + cg[None, :]
        tl.store(MASK + offs, byte, mask=(o < OUTER)[:, None] & (cg < CB)[None, :])
    else:
        k = tl.reshape(keep.to(tl.int32), [BLOCK_O, BLOCK_C, BLOCK_I // 8, 8])
        byte = tl.reduce(k * bits[None, None, None, :], 3, _add).to(tl.uint8)
        c = c0 + tl.arange(0, BLOCK_C)
        ig = i0 // 8 + tl.arange(0, BLOCK_I // 8)
        IB = (INNER + 7) // 8
        offs = ((o.to(tl.int64) * C * IB)[:, None, None] + (c * IB)[None, :, None]
                + ig[None, None, :])
        ok = (o < OUTER)[:, None, None] & (c < C)[None, :, None] & (ig < IB)[None, None, :]
        tl.store(MASK + offs, byte, mask=ok)


@_kernel
def _load_mask(MASK, o0, i0, c0, OUTER, C, INNER, PACK_C: tl.constexpr,
               BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr):
    """The boolean (BLOCK_O, BLOCK_C, BLOCK_I) tile that `_store_mask` packed."""
    bits = tl.arange(0, 8)
    o = o0 + tl.arange(0, BLOCK_O)
    if PACK_C:
        cg = c0 // 8 + tl.arange(0, BLOCK_C // 8)
        CB = (C + 7) // 8
        offs = o.to(tl.int64)[:, None] * CB + cg[None, :]
        byte = tl.load(MASK + offs, mask=(o < OUTER)[:, None] & (cg < CB)[None, :], other=0)
        k = (byte.to(tl.int32)[:, :, None] >> bits[None, None, :]) & 1
        keep = tl.reshape(k, [BLOCK_O, BLOCK_C, BLOCK_I])
    else:
        c = c0 + tl.arange(0, BLOCK_C)
        ig = i0 // 8 + tl.arange(0, BLOCK_I // 8)
        IB = (INNER + 7) // 8
        offs = ((o.to(tl.int64) * C * IB)[:, None, None] + (c * IB)[None, :, None]
                + ig[None, None, :])
        ok = (o < OUTER)[:, None, None] & (c < C)[None, :, None] & (ig < IB)[None, None, :]
        byte = tl.load(MASK + offs, mask=ok, other=0)
        k = (byte.to(tl.int32)[:, :, :, None] >> bits[None, None, None, :]) & 1
        keep = tl.reshape(k, [BLOCK_O, BLOCK_C, BLOCK_I])
    return keep != 0


@_kernel
def _channel_affine(W, B, MEAN, INVSTD, offs_c, C, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
                    ACC: tl.constexpr):
    """Per-channel (mean, invstd, w, scale, b) with bn(s) = (s - mean) * scale + b.

    (s - mean) first: s * scale + (b - mean * scale) cancels catastrophically when |mean|
    is much larger than the spread."""
    c_ok = offs_c < C
    mean = tl.load(MEAN + offs_c, mask=c_ok, other=0.0)
    invstd = tl.load(INVSTD + offs_c, mask=c_ok, other=0.0)
    w = tl.load(W + offs_c, mask=c_ok, other=1.0).to(ACC) if HAS_W else 1.0
    b = tl.load(B + offs_c, mask=c_ok, other=0.0).to(ACC) if HAS_B else mean * 0.0
    return mean, invstd, w, invstd * w, b


@_kernel
def _bn_stats_kernel(
    X, R,                     # input and residual (R read only for "pre": s = x + r)
    PART_N, PART_MEAN, PART_M2,  # (SPLIT, C) partials out (ACC)
    OUTER, C, INNER,          # the (OUTER, C, INNER) view
    SPLIT,                    # programs per channel block; program s takes o-blocks s, s+SPLIT..
    PRE: tl.constexpr,        # add R before the statistics
    PACK_C: tl.constexpr,     # INNER == 1: C is the contiguous axis
    ACC: tl.constexpr,        # compute dtype: float64 for float64 inputs, else float32
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr,
):
    """Per-channel (count, mean, M2) partials of s = x (+ r): one read of x (and r).

    Grid (cdiv(C, BLOCK_C), SPLIT). Each tile is centred on its own mean, then merged into the
    running triple with Chan's formula, in a fixed order (deterministic)."""
    pid_c = tl.program_id(0)
    pid_s = tl.program_id(1)
    offs_c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.full([BLOCK_C], 0.0, ACC)
    mean = tl.full([BLOCK_C], 0.0, ACC)
    m2 = tl.full([BLOCK_C], 0.0, ACC)
    for o0 in range(pid_s * BLOCK_O, OUTER, SPLIT * BLOCK_O):
        for i0 in range(0, INNER, BLOCK_I):
            offs, ok = _tile(o0, i0, offs_c, OUTER, C, INNER, PACK_C, BLOCK_O, BLOCK_I)
            s = tl.load(X + offs, mask=ok, other=0.0).to(ACC)
            if PRE:
                s += tl.load(R + offs, mask=ok, other=0.0).to(ACC)
            n_t = _sum2(ok.to(ACC))
            mean_t = _sum2(s) / tl.maximum(n_t, 1.0)
            d = tl.where(ok, s - mean_t[None, :, None], 0.0)
            n, mean, m2 = _chan_merge(n, mean, m2, n_t, mean_t, _sum2(d * d))
    c_ok = offs_c < C
    tl.store(PART_N + pid_s * C + offs_c, n, mask=c_ok)
    tl.store(PART_MEAN + pid_s * C + offs_c, mean, mask=c_ok)
    tl.store(PART_M2 + pid_s * C + offs_c, m2, mask=c_ok)


@_kernel
def _bn_stats_finalize_kernel(
    PART_N, PART_MEAN, PART_M2,  # (SPLIT, C) partials from _bn_stats_kernel
    MEAN, INVSTD, VAR,           # (C,) out (ACC): batch mean, 1/sqrt(var + eps), biased var
    C, SPLIT, eps,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Merge the SPLIT partials of each channel (Chan, fixed order). Touches only C-sized data."""
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = offs_c < C
    n = tl.full([BLOCK_C], 0.0, ACC)
    mean = tl.full([BLOCK_C], 0.0, ACC)
    m2 = tl.full([BLOCK_C], 0.0, ACC)
    for s in range(SPLIT):
        n, mean, m2 = _chan_merge(
            n, mean, m2,
            tl.load(PART_N + s * C + offs_c, mask=c_ok, other=0.0),
            tl.load(PART_MEAN + s * C + offs_c, mask=c_ok, other=0.0),
            tl.load(PART_M2 + s * C + offs_c, mask=c_ok, other=0.0))
    var = m2 / tl.maximum(n, 1.0)
    tl.store(MEAN + offs_c, mean, mask=c_ok)
    tl.store(INVSTD + offs_c, 1.0 / tl.sqrt(var + eps), mask=c_ok)
    tl.store(VAR + offs_c, var, mask=c_ok)


@_kernel
def _bn_act_apply_kernel(
    X, R, Y,                  # input, residual, output (same dense layout)
    MASK,                     # uint8 bit-packed ReLU mask out (when WRITE_MASK)
    W, B, MEAN, INVSTD,       # (C,) affine (optional) and statistics (ACC)
    OUTER, C, INNER,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr,
    RES: tl.constexpr,        # 0 none, 1 pre, 2 mid, 3 post
    RELU: tl.constexpr,
    WRITE_MASK: tl.constexpr, PACK_C: tl.constexpr,
    ACC: tl.constexpr,        # compute dtype: float64 for float64 inputs, else float32
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr,
):
    """y = act(bn(x (+r)) (+r)) (+r): read x, r; write y (+ 1 bit per element for "mid"+ReLU).

    The pointwise pass of both the training and the eval forward (eval: 3 passes, the floor).
    Grid (cdiv(OUTER, BLOCK_O) * cdiv(INNER, BLOCK_I), cdiv(C, BLOCK_C)), one tile each."""
    i_blocks = (INNER + BLOCK_I - 1) // BLOCK_I
    o0 = (tl.program_id(0) // i_blocks) * BLOCK_O
    i0 = (tl.program_id(0) % i_blocks) * BLOCK_I
    c0 = tl.program_id(1) * BLOCK_C
    offs_c = c0 + tl.arange(0, BLOCK_C)
    mean, _i, _w, scale, b = _channel_affine(W, B, MEAN, INVSTD, offs_c, C, HAS_W, HAS_B, ACC)
    offs, ok = _tile(o0, i0, offs_c, OUTER, C, INNER, PACK_C, BLOCK_O, BLOCK_I)
    y = tl.load(X + offs, mask=ok, other=0.0).to(ACC)
    if RES != 0:
        r = tl.load(R + offs, mask=ok, other=0.0).to(ACC)
    if RES == 1:
        y += r
    y = (y - mean[None, :, None]) * scale[None, :, None] + b[None, :, None]
    if RES == 2:
        y += r
    if RELU:
        y = tl.maximum(y, 0.0)
    if WRITE_MASK:
        _store_mask(MASK, y > 0.0, o0, i0, c0, OUTER, C, INNER, PACK_C, BLOCK_O, BLOCK_C, BLOCK_I)
    if RES == 3:
        y += r
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=ok)


@_kernel
def _masked_grad(DY, X, R, MASK, offs, ok, mean, invstd, scale, b, o0, i0, c0,
                 OUTER, C, INNER, RES: tl.constexpr, RELU: tl.constexpr, PACK_C: tl.constexpr,
                 ACC: tl.constexpr,
                 BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr):
    """(dz, xhat) of a tile: dz = dL/d(bn output) (dy through the ReLU), xhat = (s-mean)*invstd.

    The ReLU mask comes from the saved bits for "mid"; otherwise it is recomputed from s."""
    dy = tl.load(DY + offs, mask=ok, other=0.0).to(ACC)
    s = tl.load(X + offs, mask=ok, other=0.0).to(ACC)
    if RES == 1:
        s += tl.load(R + offs, mask=ok, other=0.0).to(ACC)
    if RELU:
        if RES == 2:
            keep = _load_mask(MASK, o0, i0, c0, OUTER, C, INNER, PACK_C,
                              BLOCK_O, BLOCK_C, BLOCK_I)
        else:
            keep = (s - mean[None, :, None]) * scale[None, :, None] + b[None, :, None] > 0.0
        dy = tl.where(keep, dy, 0.0)
    xhat = tl.where(ok, (s - mean[None, :, None]) * invstd[None, :, None], 0.0)
    return dy, xhat


@_kernel
def _bn_act_bwd_reduce_kernel(
    DY, X, R, MASK,           # upstream grad, BN input (R for "pre"), saved bits ("mid"+ReLU)
    W, B, MEAN, INVSTD,       # (C,) affine (optional) and saved statistics
    PART_DB, PART_DW,         # (SPLIT, C) partial sums (ACC) of dz and dz * xhat out
    OUTER, C, INNER, SPLIT,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, RES: tl.constexpr, RELU: tl.constexpr,
    PACK_C: tl.constexpr,
    ACC: tl.constexpr,        # compute dtype: float64 for float64 inputs, else float32
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr,
):
    """Backward pass 1: per-channel partials of sum(dz) and sum(dz * xhat).

    Reads dy, x (and r for "pre"), the 1-bit mask: 2 passes (+1/16).
    Grid (cdiv(C, BLOCK_C), SPLIT)."""
    pid_c = tl.program_id(0)
    pid_s = tl.program_id(1)
    c0 = pid_c * BLOCK_C
    offs_c = c0 + tl.arange(0, BLOCK_C)
    mean, invstd, _w, scale, b = _channel_affine(W, B, MEAN, INVSTD, offs_c, C, HAS_W, HAS_B,
                                                     ACC)
    db = tl.full([BLOCK_C], 0.0, ACC)
    dw = tl.full([BLOCK_C], 0.0, ACC)
    for o0 in range(pid_s * BLOCK_O, OUTER, SPLIT * BLOCK_O):
        for i0 in range(0, INNER, BLOCK_I):
            offs, ok = _tile(o0, i0, offs_c, OUTER, C, INNER, PACK_C, BLOCK_O, BLOCK_I)
            dz, xhat = _masked_grad(DY, X, R, MASK, offs, ok, mean, invstd, scale, b,
                                    o0, i0, c0, OUTER, C, INNER, RES, RELU, PACK_C,
                                    ACC, BLOCK_O, BLOCK_C, BLOCK_I)
            db += _sum2(dz)
            dw += _sum2(dz * xhat)
    c_ok = offs_c < C
    tl.store(PART_DB + pid_s * C + offs_c, db, mask=c_ok)
    tl.store(PART_DW + pid_s * C + offs_c, dw, mask=c_ok)


@_kernel
def _sum_partials_kernel(
    PART_DB, PART_DW,         # (SPLIT, C) partials
    DB, DW,                   # (C,) out (ACC): sum(dz) = grad of bias, sum(dz*xhat) = grad of w
    C, SPLIT,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Sum the SPLIT partials of each channel in a fixed order."""
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = offs_c < C
    db = tl.full([BLOCK_C], 0.0, ACC)
    dw = tl.full([BLOCK_C], 0.0, ACC)
    for s in range(SPLIT):
        db += tl.load(PART_DB + s * C + offs_c, mask=c_ok, other=0.0)
        dw += tl.load(PART_DW + s * C + offs_c, mask=c_ok, other=0.0)
    tl.store(DB + offs_c, db, mask=c_ok)
    tl.store(DW + offs_c, dw, mask=c_ok)


@_kernel
def _bn_act_bwd_apply_kernel(
    DY, X, R, MASK, W, B, MEAN, INVSTD,
    DB, DW,                   # (C,) sums from _sum_partials_kernel
    DX, DR,                   # grads out: of the BN input, and of r for "mid"+ReLU (= dz)
    OUTER, C, INNER,
    inv_count,                # 1 / (OUTER * INNER)
    HAS_W: tl.constexpr, HAS_B: tl.constexpr, RES: tl.constexpr, RELU: tl.constexpr,
    PACK_C: tl.constexpr,
    BATCH_STATS: tl.constexpr,  # mean/invstd came from this batch (training): the full BN grad
    WRITE_DR: tl.constexpr,
    ACC: tl.constexpr,        # compute dtype: float64 for float64 inputs, else float32
    BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_I: tl.constexpr,
):
    """Backward pass 2: dx = w*invstd*(dz - mean(dz) - xhat*mean(dz*xhat)), and dr = dz.

    Reads dy, x (r), mask; writes dx (and dr): 3-4 passes. Same grid as the apply kernel."""
    i_blocks = (INNER + BLOCK_I - 1) // BLOCK_I
    o0 = (tl.program_id(0) // i_blocks) * BLOCK_O
    i0 = (tl.program_id(0) % i_blocks) * BLOCK_I
    c0 = tl.program_id(1) * BLOCK_C
    offs_c = c0 + tl.arange(0, BLOCK_C)
    c_ok = offs_c < C
    mean, invstd, w, scale, b = _channel_affine(W, B, MEAN, INVSTD, offs_c, C, HAS_W, HAS_B,
                                                    ACC)
    offs, ok = _tile(o0, i0, offs_c, OUTER, C, INNER, PACK_C, BLOCK_O, BLOCK_I)
    dz, xhat = _masked_grad(DY, X, R, MASK, offs, ok, mean, invstd, scale, b,
                            o0, i0, c0, OUTER, C, INNER, RES, RELU, PACK_C,
                            ACC, BLOCK_O, BLOCK_C, BLOCK_I)
    if WRITE_DR:
        tl.store(DR + offs, dz.to(DR.dtype.element_ty), mask=ok)
    if BATCH_STATS:
        db = tl.load(DB + offs_c, mask=c_ok, other=0.0) * inv_count
        dw = tl.load(DW + offs_c, mask=c_ok, other=0.0) * inv_count
        dz = dz - db[None, :, None] - xhat * dw[None, :, None]
    dx = dz * (invstd * w)[None, :, None]
    tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=ok)


@_kernel
def _add_act_kernel(
    X, R, Y,                  # flat, same dense layout
    N,                        # numel
    RELU: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """y = act(x + r): read x, r; write y (3 passes, the floor)."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < N
    y = (tl.load(X + offs, mask=ok, other=0.0).to(tl.float32)
         + tl.load(R + offs, mask=ok, other=0.0).to(tl.float32))
    if RELU:
        y = tl.maximum(y, 0.0)
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=ok)


# --------------------------------------------------------------------------------------------
# Launch configuration and layout
# --------------------------------------------------------------------------------------------

def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _view_dims(x: torch.Tensor) -> tuple[int, int, int]:
    """(OUTER, C, INNER) of a dense tensor in the layout `_dense` gives it."""
    n, c = x.shape[0], x.shape[1]
    inner = math.prod(x.shape[2:])
    if inner > 1 and _is_channels_last(x):
        return n * inner, c, 1
    return n, c, inner


def _is_channels_last(x: torch.Tensor) -> bool:
    return (x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last))


def _dense(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """`x` as NCHW-contiguous or channels_last (the layout of `like`, default its own); other
    strides are copied to NCHW-contiguous."""
    ref = x if like is None else like
    if _is_channels_last(ref):
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


# Elements per tile (~2048 suits a GPU; tests shrink it to exercise many tiles and splits).
TILE_ELEMENTS = 2048


def _config(outer: int, c: int, inner: int, device: torch.device) -> dict:
    """Tile shape (BLOCK_O, BLOCK_C, BLOCK_I), reduction split and warps for one (OUTER, C, INNER).

    INNER > 1 (NCHW): one channel per tile, rows of BLOCK_I contiguous elements (a power of two
    >= 8 wasting little of INNER). INNER == 1: BLOCK_C contiguous channels (>= 8, a multiple of
    8 for the mask bytes). About TILE_ELEMENTS elements per tile. SPLIT programs per channel
    block share a reduction so that about 4 programs per SM run (4 in all under the interpreter)."""
    cap = max(8, min(1024, TILE_ELEMENTS))
    if inner > 1:
        bc, bi = 1, min(max(_pow2(inner), 8), cap)
        for cand in (bi, bi // 2, bi // 4, bi // 8, bi // 16):
            if cand >= 64 and -(-inner // cand) * cand <= 1.07 * inner:
                bi = cand
                break
    else:
        bc, bi = min(max(_pow2(c), 8), 64, cap), 1
    bo = max(1, min(_pow2(outer), TILE_ELEMENTS // (bc * bi)))
    c_blocks = -(-c // bc)
    target = 4 * torch.cuda.get_device_properties(device).multi_processor_count \
        if device.type == "cuda" else 4
    split = max(1, min(-(-target // c_blocks), -(-outer // bo)))
    return {"BLOCK_O": bo, "BLOCK_C": bc, "BLOCK_I": bi, "split": split, "c_blocks": c_blocks,
            "tiles": -(-outer // bo) * -(-inner // bi), "num_warps": 4}


def _mask_shape(outer: int, c: int, inner: int) -> tuple[int, ...]:
    return (outer, -(-c // 8)) if inner == 1 else (outer, c, -(-inner // 8))


def _acc(x: torch.Tensor) -> torch.dtype:
    """Compute/statistics dtype: float64 for float64 inputs (gradcheck), float32 otherwise."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _tl_acc(x: torch.Tensor):
    return tl.float64 if x.dtype == torch.float64 else tl.float32


def _check_triton_device(x: torch.Tensor) -> None:
    if not x.is_cuda and os.environ.get("TRITON_INTERPRET", "0").lower() not in ("1", "true", "on", "yes"):
        raise RuntimeError("the Triton kernels run on CPU tensors only under TRITON_INTERPRET=1 "
                           "(set it before the first Triton call); use RESDSL_KERNELS=torch")


# --------------------------------------------------------------------------------------------
# Forward and backward implementations (functional: no input is mutated)
# --------------------------------------------------------------------------------------------

def _fwd_impl(x, weight, bias, running_mean, running_var, residual,
              batch_stats: bool, eps: float, relu: bool, res: int, save_mask: bool):
    """(y, mask, mean, invstd, var) with batch statistics (batch_stats) or the running ones.

    mean/invstd/var are (C,) float32 (float64 for float64 x); var is the biased batch variance
    (the running variance in eval); mask is the packed ReLU bits for "mid"+ReLU when save_mask,
    else empty."""
    x, r = _prepare(x, residual)
    if batch_stats:
        mean, invstd, var = _finalize(x, _stat_parts(x, r, res), eps)
    else:
        mean = running_mean.detach().to(_acc(x), copy=True)
        var = running_var.detach().to(_acc(x), copy=True)
        invstd = torch.rsqrt(var + eps)
    y, mask = _apply(x, r, weight, bias, mean, invstd, relu, res, save_mask)
    return y, mask, mean, invstd, var


def _prepare(x, residual):
    """x and the residual dense in one layout, triton loaded, the device checked."""
    _check_triton_device(x)
    _triton()
    x = _dense(x)
    return x, (_dense(residual, like=x) if residual is not None else None)


def _launch(x: torch.Tensor) -> tuple[dict, dict, dict]:
    """(config, tile sizes, float32/64 tensor options) of the kernels on x."""
    cfg = _config(*_view_dims(x), x.device)
    blocks = {k: cfg[k] for k in ("BLOCK_O", "BLOCK_C", "BLOCK_I")}
    return cfg, blocks, {"dtype": _acc(x), "device": x.device}


def _stat_parts(x, r, res: int) -> list[torch.Tensor]:
    """(count, mean, M2) partials, each (split, C), of x (+ r for "pre"): one read."""
    outer, c, inner = _view_dims(x)
    cfg, blocks, f32 = _launch(x)
    parts = [torch.empty((cfg["split"], c), **f32) for _ in range(3)]
    _bn_stats_kernel[(cfg["c_blocks"], cfg["split"])](
        x, r if r is not None else x, *parts, outer, c, inner, cfg["split"], PRE=res == 1,
        PACK_C=inner == 1, ACC=_tl_acc(x), num_warps=cfg["num_warps"], **blocks)
    return parts


def _finalize(x, parts: list[torch.Tensor], eps: float):
    """(mean, invstd, biased var) of the partials, merged in a fixed order."""
    c = x.shape[1]
    _cfg, _blocks, f32 = _launch(x)
    mean, invstd, var = (torch.empty((c,), **f32) for _ in range(3))
    _bn_stats_finalize_kernel[(triton.cdiv(c, 256),)](*parts, mean, invstd, var, c,
                                                     parts[0].shape[0], eps, ACC=_tl_acc(x),
                                                     BLOCK_C=256)
    return mean, invstd, var


def _apply(x, r, weight, bias, mean, invstd, relu: bool, res: int, save_mask: bool):
    """(y, mask): act(bn(x) [+ r]) with the given statistics, and the ReLU bits for
    "mid"+ReLU when save_mask (else an empty mask)."""
    outer, c, inner = _view_dims(x)
    cfg, blocks, _f32 = _launch(x)
    y = torch.empty_like(x)
    write_mask = save_mask and relu and res == 2
    mask = torch.empty(_mask_shape(outer, c, inner) if write_mask else (0,),
                       dtype=torch.uint8, device=x.device)
    _bn_act_apply_kernel[(cfg["tiles"], cfg["c_blocks"])](
        x, r if r is not None else x, y, mask if write_mask else x,
        weight if weight is not None else x, bias if bias is not None else x, mean, invstd,
        outer, c, inner, HAS_W=weight is not None, HAS_B=bias is not None, RES=res, RELU=relu,
        WRITE_MASK=write_mask, PACK_C=inner == 1, ACC=_tl_acc(x), num_warps=cfg["num_warps"],
        **blocks)
    return y, mask


def _fwd_fake(x, weight, bias, running_mean, running_var, residual,
              batch_stats, eps, relu, res, save_mask):
    x = _dense(x)
    outer, c, inner = _view_dims(x)
    write_mask = save_mask and relu and res == 2
    mask = x.new_empty(_mask_shape(outer, c, inner) if write_mask else (0,), dtype=torch.uint8)
    stats = [x.new_empty((c,), dtype=_acc(x)) for _ in range(3)]
    return (torch.empty_like(x), mask, *stats)


def _bwd_impl(dy, x, residual, weight, bias, mean, invstd, mask,
              batch_stats: bool, relu: bool, res: int):
    """(dx, dr, dw, db): dr is written only for "mid"+ReLU (else empty: the caller passes dy or
    dx on); dw/db are (C,) float32/64 sums (empty without weight/bias)."""
    x, r = _prepare(x, residual)
    dy = _dense(dy, like=x)
    db, dw = _grad_sums(dy, x, r, mask, weight, bias, mean, invstd, relu, res)
    dx, dr = _grad_apply(dy, x, r, mask, weight, bias, mean, invstd, db, dw,
                         1.0 / (x.numel() // x.shape[1]), batch_stats, relu, res)
    return (dx, dr, dw if weight is not None else x.new_empty((0,), dtype=_acc(x)),
            db if bias is not None else x.new_empty((0,), dtype=_acc(x)))


def _grad_flags(x, weight, bias, relu: bool, res: int) -> dict:
    return {"HAS_W": weight is not None, "HAS_B": bias is not None, "RES": res, "RELU": relu,
            "PACK_C": _view_dims(x)[2] == 1, "ACC": _tl_acc(x)}


def _grad_sums(dy, x, r, mask, weight, bias, mean, invstd, relu: bool, res: int):
    """(sum dz, sum dz * xhat) per channel, dz the gradient at the BN's output (backward
    pass 1: one read of dy, x and the mask)."""
    outer, c, inner = _view_dims(x)
    cfg, blocks, f32 = _launch(x)
    split = cfg["split"]
    part_db, part_dw = torch.empty((split, c), **f32), torch.empty((split, c), **f32)
    _bn_act_bwd_reduce_kernel[(cfg["c_blocks"], split)](
        dy, x, r if r is not None else x, mask if mask.numel() else x,
        weight if weight is not None else x, bias if bias is not None else x, mean, invstd,
        part_db, part_dw, outer, c, inner, split, num_warps=cfg["num_warps"],
        **_grad_flags(x, weight, bias, relu, res), **blocks)
    db, dw = torch.empty((c,), **f32), torch.empty((c,), **f32)
    _sum_partials_kernel[(triton.cdiv(c, 256),)](part_db, part_dw, db, dw, c, split,
                                                  ACC=_tl_acc(x), BLOCK_C=256)
    return db, dw


def _grad_apply(dy, x, r, mask, weight, bias, mean, invstd, db, dw, inv_count: float,
                batch_stats: bool, relu: bool, res: int):
    """(dx, dr) from the sums of pass 1 over `1 / inv_count` values per channel (backward
    pass 2); dr is written only for "mid"+ReLU, else empty."""
    outer, c, inner = _view_dims(x)
    cfg, blocks, _f32 = _launch(x)
    write_dr = relu and res == 2
    dx = torch.empty_like(x)
    dr = torch.empty_like(x) if write_dr else x.new_empty((0,))
    _bn_act_bwd_apply_kernel[(cfg["tiles"], cfg["c_blocks"])](
        dy, x, r if r is not None else x, mask if mask.numel() else x,
        weight if weight is not None else x, bias if bias is not None else x, mean, invstd,
        db, dw, dx, dr if write_dr else dx, outer, c, inner, inv_count,
        BATCH_STATS=batch_stats, WRITE_DR=write_dr, num_warps=cfg["num_warps"],
        **_grad_flags(x, weight, bias, relu, res), **blocks)
    return dx, dr


def _bwd_fake(dy, x, residual, weight, bias, mean, invstd, mask, batch_stats, relu, res):
    x = _dense(x)
    c = x.shape[1]
    dr = torch.empty_like(x) if relu and res == 2 else x.new_empty((0,))
    acc = _acc(x)
    return (torch.empty_like(x), dr,
            x.new_empty((c if weight is not None else 0,), dtype=acc),
            x.new_empty((c if bias is not None else 0,), dtype=acc))


# --------------------------------------------------------------------------------------------
# Autograd: custom ops (torch >= 2.4) or a plain autograd.Function (torch 2.3)
# --------------------------------------------------------------------------------------------

_FWD_SCHEMA = ("(Tensor x, Tensor? weight, Tensor? bias, Tensor? running_mean, "
               "Tensor? running_var, Tensor? residual, bool batch_stats, float eps, bool relu, "
               "int res, bool save_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)")
_BWD_SCHEMA = ("(Tensor dy, Tensor x, Tensor? residual, Tensor? weight, Tensor? bias, "
               "Tensor mean, Tensor invstd, Tensor mask, bool batch_stats, bool relu, int res) "
               "-> (Tensor, Tensor, Tensor, Tensor)")


def _setup_context(ctx, inputs, output):
    x, weight, bias, _rm, _rv, residual, batch_stats, _eps, relu, res, _save = inputs
    _y, mask, mean, invstd, _var = output
    ctx.save_for_backward(x, residual if res == 1 else None, weight, bias, mean, invstd, mask)
    ctx.flags = (batch_stats, relu, res, residual.dtype if residual is not None else None)
    ctx.mark_non_differentiable(mask, mean, invstd, _var)


def _backward(ctx, dy, *_unused):
    """Grads of (x, weight, bias, running_mean, running_var, residual, flags...)."""
    x, residual, weight, bias, mean, invstd, mask = ctx.saved_tensors
    batch_stats, relu, res, res_dtype = ctx.flags
    if res == 2 and relu and mask.numel() == 0:
        raise RuntimeError("bn_act: the ReLU mask was not saved (forward ran without grad)")
    dx, dr, dw, db = _BWD_OP(dy, x, residual, weight, bias, mean, invstd, mask,
                             batch_stats, relu, res)
    if res_dtype is not None:
        dr = (dx if res == 1 else dr if (res == 2 and relu) else dy).to(res_dtype)
    else:
        dr = None
    dw = dw.to(weight.dtype) if weight is not None else None
    db = db.to(bias.dtype) if bias is not None else None
    return dx, dw, db, None, None, dr, None, None, None, None, None


class _BnActFunction(torch.autograd.Function):
    """The same forward and backward as a plain autograd.Function, for torch < 2.4 (no
    torch.library.custom_op; torch.compile then breaks the graph around it)."""

    @staticmethod
    def forward(ctx, *inputs):
        out = _fwd_impl(*inputs)
        _setup_context(ctx, inputs, out)
        return out

    @staticmethod
    def backward(ctx, *grads):
        return _backward(ctx, *grads)


def _register():
    """(fwd, bwd) callables: torch.ops.resdsl.* custom ops, or autograd.Function on torch < 2.4.
    Where the ops exist already (this file inlined in a --standalone model beside resdsl, or two
    such files in one process) those are used: registering an op a second time corrupts the
    dispatcher's state on some torch versions (crashes later, at a call)."""
    if not (hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_autograd")):
        return _BnActFunction.apply, _bwd_impl  # pragma: no cover - torch 2.3
    try:
        return torch.ops.resdsl.bn_act_fwd, torch.ops.resdsl.bn_act_bwd
    except AttributeError:
        pass
    fwd = torch.library.custom_op("resdsl::bn_act_fwd", _fwd_impl, mutates_args=(),
                                  schema=_FWD_SCHEMA)
    fwd.register_fake(_fwd_fake)
    bwd = torch.library.custom_op("resdsl::bn_act_bwd", _bwd_impl, mutates_args=(),
                                  schema=_BWD_SCHEMA)
    bwd.register_fake(_bwd_fake)
    fwd.register_autograd(_backward, setup_context=_setup_context)
    return fwd, bwd


_FWD_OP, _BWD_OP = _register()


# --------------------------------------------------------------------------------------------
# The kernels' entry points (runtime.bn_act and Conv2dAct choose between them and PyTorch ops)
# --------------------------------------------------------------------------------------------

def _verify_batch_size(size: torch.Size) -> None:
    """PyTorch's check (and message) for batch statistics of a single value per channel."""
    if math.prod(size[:1] + size[2:]) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, "
                         f"got input size {size}")


def bn_act_triton(x, weight, bias, running_mean, running_var, residual=None, *,
                  training: bool, momentum: float, eps: float, relu: bool,
                  residual_at: str = "mid") -> torch.Tensor:
    """act(bn(x) [+ residual]) with the residual added before BN ("pre"), after BN ("mid") or
    after the activation ("post"), by the Triton kernels; see the module docstring.

    Batch statistics are used when `training` or when there are no running statistics (as
    nn.BatchNorm2d does); with running statistics and `training` they are updated in place,
    `momentum` being the factor already resolved by the caller (nn.BatchNorm2d's
    exponential_average_factor), the variance unbiased. Non-contiguous inputs (other than
    channels_last) are copied to NCHW-contiguous; gradients flow to x, residual, weight and
    bias (not through the returned statistics)."""
    batch_stats = training or running_mean is None
    if batch_stats:
        _verify_batch_size(x.size())
    res = _RES_CODE[residual_at if residual is not None else None]
    x = _dense(x)
    residual = _dense(residual, like=x) if residual is not None else None
    save_mask = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, weight, bias, residual))
    y, _mask, mean, _invstd, var = _FWD_OP(x, weight, bias, running_mean, running_var, residual,
                                           batch_stats, eps, relu, res, save_mask)
    if training and running_mean is not None:
        _update_running_stats(running_mean, running_var, mean, var, x.numel() // x.shape[1],
                              momentum)
    return y


def _update_running_stats(running_mean, running_var, mean, var, count, momentum) -> None:
    """running = (1 - m) * running + m * batch, with the unbiased variance (as F.batch_norm)."""
    with torch.no_grad():
        unbiased = var * (count / (count - 1))
        acc = torch.promote_types(running_mean.dtype, mean.dtype)
        running_mean.copy_(running_mean.to(acc) * (1 - momentum) + mean * momentum)
        running_var.copy_(running_var.to(acc) * (1 - momentum) + unbiased * momentum)


def merge_moments(stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count, mean, M2) per channel of the union of parts, from each part's (count, mean, M2)
    stacked as (parts, 3, C): Chan et al.'s pairwise formula in closed form, so E[x^2] - E[x]^2
    never appears; parts with count 0 drop out."""
    n_r, mean_r, m2_r = stats.unbind(1)
    n = n_r.sum(0)
    mean = (n_r * mean_r).sum(0) / n.clamp_min(1)
    m2 = (m2_r + n_r * (mean_r - mean) ** 2).sum(0)
    return n, mean, m2


def gather_moments(local: torch.Tensor, group) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count, mean, M2) over every rank of `group` from this rank's (3, C) float64 triple:
    one all_gather (the triples of uneven batches are still the same size)."""
    import torch.distributed as dist
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, local, group=group)
    return merge_moments(torch.stack(parts))


class SyncBnActTriton(torch.autograd.Function):
    """Synchronized BN with its epilogue on the Triton kernels: this rank's statistics
    partials (one read of x), one all_gather of (count, mean, M2), the apply kernel; backward:
    pass 1's two sums, one all_reduce of them, pass 2 over the whole batch's count. The
    weight's and bias' grads are this rank's sums (DDP averages them, as any parameter's)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, residual, momentum, eps,
                relu, res, group):
        x, r = _prepare(x, residual)
        local = torch.stack(merge_moments(torch.stack(_stat_parts(x, r, res), 1))).double()
        n, mean, m2 = gather_moments(local, group)
        total = int(n[0].item()) if n.numel() else 0
        if total <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got "
                             f"{total} over all processes")
        if running_mean is not None:
            _update_running_stats(running_mean, running_var, mean, m2 / total, total, momentum)
        mean, invstd = mean.to(_acc(x)), torch.rsqrt(m2 / total + eps).to(_acc(x))
        save = any(ctx.needs_input_grad[i] for i in (0, 1, 2, 5))  # x, weight, bias, residual
        y, mask = _apply(x, r, weight, bias, mean, invstd, relu, res, save)
        ctx.save_for_backward(x, r if res == 1 else None, weight, bias, mean, invstd, mask)
        ctx.flags = (relu, res, residual.dtype if residual is not None else None, group, total)
        return y

    @staticmethod
    def backward(ctx, dy):
        import torch.distributed as dist
        x, r, weight, bias, mean, invstd, mask = ctx.saved_tensors
        relu, res, res_dtype, group, total = ctx.flags
        dy = _dense(dy, like=x)
        db, dw = _grad_sums(dy, x, r, mask, weight, bias, mean, invstd, relu, res)
        sums = torch.stack([db, dw])
        dist.all_reduce(sums, group=group)
        dx, dr = _grad_apply(dy, x, r, mask, weight, bias, mean, invstd, sums[0].contiguous(),
                             sums[1].contiguous(), 1.0 / total, True, relu, res)
        dres = None if res_dtype is None else \
            (dx if res == 1 else dr if (res == 2 and relu) else dy).to(res_dtype)
        return (dx, dw.to(weight.dtype) if weight is not None else None,
                db.to(bias.dtype) if bias is not None else None, None, None, dres,
                None, None, None, None, None)


def add_act_triton(x, residual, *, relu: bool) -> torch.Tensor:
    """act(x + residual) by one Triton kernel, for inference after BN folding: it has no
    backward (the caller takes PyTorch ops where a gradient is needed)."""
    _check_triton_device(x)
    _triton()
    x = _dense(x)
    r = _dense(residual, like=x)
    y = torch.empty_like(x)
    block = 1024
    _add_act_kernel[(triton.cdiv(x.numel(), block),)](x, r, y, x.numel(), RELU=relu, BLOCK=block)
    return y
