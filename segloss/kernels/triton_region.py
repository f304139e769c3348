"""Triton kernels of the region losses' per-class sums (:mod:`segloss.kernels.cuda_region`).

They walk the logits as :mod:`segloss.kernels.triton_pixelwise`'s kernels do (its ``_tile`` and
``_locate``: ``(N, C, P)`` through three strides, tiles of ``BLOCK_P`` pixels within one image,
all math in float32). The forward pass sums ``p_c y_c``, ``p_c`` and ``y_c`` per class over the
valid pixels, per program (summed by torch afterwards: deterministic, no float atomics); the
backward pass turns the sums' gradients into ``dL/dz`` in one read of the logits.
"""

from __future__ import annotations

import triton
import triton.language as tl

from segloss.kernels.triton_pixelwise import _locate, _store_tile, _tile


@triton.jit
def region_sums_kernel(z_ptr, y_ptr, part_ptr, flags_ptr, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index, programs,
                       BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr, NUM_STEPS: tl.constexpr):
    """Per image ``n`` and program (``programs`` per image, grid ``N * programs``): ``sum p_c y_c``,
    ``sum p_c``, ``sum y_c`` over the valid pixels of the image's tiles ``pid, pid + programs, ...``.

    ``part`` ``(N, programs, 3, C)`` float32; ``flags`` ``(N, programs, 2)`` int32 (bad labels,
    pixels with non-finite logits). No one-hot tensor is formed: ``y`` enters as a comparison.
    """
    pid = tl.program_id(0)
    n = pid // programs
    first = pid - n * programs
    if INDEX_64:
        n = n.to(tl.int64)
    cls = tl.arange(0, BLOCK_C)
    acc_tp = tl.zeros((BLOCK_C,), tl.float32)
    acc_p = tl.zeros((BLOCK_C,), tl.float32)
    acc_g = tl.zeros((BLOCK_C,), tl.float32)
    acc_bad = tl.zeros((1,), tl.int32)
    acc_nonfinite = tl.zeros((1,), tl.int32)
    for step in range(0, NUM_STEPS):
        if INDEX_64:  # widen before the product (see _locate)
            p = (first + step * programs).to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
        else:
            p = (first + step * programs) * BLOCK_P + tl.arange(0, BLOCK_P)
        in_range, valid, bad, cls, cls_ok, z, y, is_t = _tile(
            z_ptr, y_ptr, n, p, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index, BLOCK_C, BLOCK_P, INDEX_64)
        m = tl.max(z, axis=0)
        e = tl.exp(z - m[None, :])
        s = tl.sum(e, axis=0)
        probs = tl.where(valid[None, :], e / s[None, :], 0.0)
        acc_tp += tl.sum(tl.where(is_t, probs, 0.0), axis=1)
        acc_p += tl.sum(probs, axis=1)
        acc_g += tl.sum(is_t.to(tl.float32), axis=1)
        acc_bad += bad
        finite = ((m - m) == 0.0) & ((s - s) == 0.0)
        acc_nonfinite += tl.sum((in_range & (finite == 0)).to(tl.int32), axis=0)
    cls_ok = cls < C
    base = pid.to(tl.int64) * 3 * C
    tl.store(part_ptr + base + cls, acc_tp, mask=cls_ok)
    tl.store(part_ptr + base + C + cls, acc_p, mask=cls_ok)
    tl.store(part_ptr + base + 2 * C + cls, acc_g, mask=cls_ok)
    tl.store(flags_ptr + pid * 2 + tl.arange(0, 1), acc_bad)
    tl.store(flags_ptr + pid * 2 + 1 + tl.arange(0, 1), acc_nonfinite)


@triton.jit
def region_backward_kernel(z_ptr, y_ptr, a_ptr, b_ptr, g_ptr, N, P, C, s_n, s_c, s_p, y_n, y_p, tiles_per_image,
                           g_n, g_c, g_p, coef_n, ignore_index, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr):
    """``dL/dz`` from the gradients of the sums: ``a_c = dL/d(sum p_c)``, ``b_c = dL/d(sum p_c y_c)``.

    Per valid pixel, ``g_c = a_c + b_c [c = y]`` and ``dL/dz_k = p_k (g_k - sum_c p_c g_c)``;
    ``a``, ``b`` are ``(N, C)`` (``coef_n`` 0: one row for the whole batch).
    """
    n, p = _locate(tl.program_id(0), tiles_per_image, BLOCK_P, INDEX_64)
    in_range, valid, bad, cls, cls_ok, z, y, is_t = _tile(
        z_ptr, y_ptr, n, p, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index, BLOCK_C, BLOCK_P, INDEX_64)
    m = tl.max(z, axis=0)
    e = tl.exp(z - m[None, :])
    probs = e / tl.sum(e, axis=0)[None, :]
    a = tl.load(a_ptr + n * coef_n + cls, mask=cls_ok, other=0.0)  # the tile's image's row: (BLOCK_C,)
    b = tl.load(b_ptr + n * coef_n + cls, mask=cls_ok, other=0.0)
    g = a[:, None] + tl.where(is_t, b[:, None], 0.0)
    grad = probs * (g - tl.sum(probs * g, axis=0)[None, :])
    grad = tl.where(valid[None, :], grad, 0.0)
    _store_tile(g_ptr, grad, n, p, cls, cls_ok, in_range, g_n, g_c, g_p, INDEX_64)
