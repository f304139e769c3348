"""Triton kernels of the boundary loss's distance-weighted softmax (:mod:`segloss.kernels.cuda_boundary`).

Per valid pixel ``i``, with ``phi'`` the signed distance maps (class 0's zeroed when only the
foreground is scored, ``FIRST = 1``)::

    v_i = sum_c p_ic phi'_ic                     dv_i / dz_ik = p_ik (phi'_ik - v_i)

They walk the logits as :mod:`segloss.kernels.triton_pixelwise`'s kernels do (its ``_tile``,
``_locate`` and ``_store_tile``: ``(N, C, P)`` through three strides, tiles of ``BLOCK_P`` pixels
within one image, float32 math) and read the maps' ``(BLOCK_C, BLOCK_P)`` block beside the logits',
through the maps' own strides (any real dtype, any layout). Ignored pixels read no map (it may hold
anything there) and give 0.
"""

from __future__ import annotations

import triton
import triton.language as tl

from segloss.kernels.triton_pixelwise import _locate, _store_tile, _tile


@triton.jit
def _weighted_softmax(z, phi_ptr, n, p, cls, cls_ok, valid, f_n, f_c, f_p,
                      FIRST: tl.constexpr, INDEX_64: tl.constexpr):
    """``(probs, phi', v, finite)`` of a tile: the softmax ``(BLOCK_C, BLOCK_P)``, the maps (0 where
    not scored or not valid), ``v`` ``(BLOCK_P,)`` (0 where not valid), and whether every logit of the
    pixel is finite."""
    m = tl.max(z, axis=0)
    e = tl.exp(z - m[None, :])
    s = tl.sum(e, axis=0)
    probs = e / s[None, :]
    if INDEX_64:
        class_offsets = cls.to(tl.int64)[:, None] * f_c
    else:
        class_offsets = cls[:, None] * f_c
    scored = cls_ok & (cls >= FIRST)
    phi = tl.load(phi_ptr + n * f_n + class_offsets + p[None, :] * f_p,
                  mask=scored[:, None] & valid[None, :], other=0.0).to(tl.float32)
    v = tl.where(valid, tl.sum(probs * phi, axis=0), 0.0)
    # every logit finite, -inf included (refused as on the other routes; the focal kernels take a -inf that
    # masks a class, which leaves their max and sum finite): z - z is NaN for +-inf and NaN
    finite = tl.sum((cls_ok[:, None] & ((z - z) != 0.0)).to(tl.int32), axis=0) == 0
    return probs, phi, v, finite


@triton.jit
def boundary_forward_kernel(z_ptr, y_ptr, phi_ptr, map_ptr, part_ptr, flags_ptr, N, P, C, s_n, s_c, s_p, y_n, y_p,
                            tiles_per_image, f_n, f_c, f_p, ignore_index, programs, scale,
                            FIRST: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                            INDEX_64: tl.constexpr, NUM_STEPS: tl.constexpr, WRITE_MAP: tl.constexpr):
    """``scale v`` per pixel into ``map`` ``(N * P,)`` float32 (``WRITE_MAP``, for ``reduction="none"``);
    per program (each walks ``NUM_STEPS`` tiles ``pid, pid + programs, ...``) ``part`` ``(G, 2)``
    float32: the sum of ``scale v`` and the number of valid pixels, and ``flags`` ``(G, 3)`` int32:
    labels outside ``[0, C)`` that are not ``ignore_index``, pixels with non-finite logits, valid pixels
    with finite logits whose ``v`` is not finite (NaN or infinite maps, or maps so large that the
    sum overflows)."""
    pid = tl.program_id(0)
    acc_loss = tl.zeros((BLOCK_P,), tl.float32)
    acc_den = tl.zeros((BLOCK_P,), tl.float32)
    acc_bad = tl.zeros((1,), tl.int32)
    acc_nonfinite = tl.zeros((1,), tl.int32)
    acc_bad_terms = tl.zeros((1,), tl.int32)
    for step in range(0, NUM_STEPS):
        n, p = _locate(pid + step * programs, tiles_per_image, BLOCK_P, INDEX_64)  # n >= N: all masked
        in_range, valid, bad, cls, cls_ok, z, y, is_t = _tile(
            z_ptr, y_ptr, n, p, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index, BLOCK_C, BLOCK_P, INDEX_64)
        probs, phi, v, finite = _weighted_softmax(z, phi_ptr, n, p, cls, cls_ok, valid, f_n, f_c, f_p,
                                                  FIRST, INDEX_64)
        if WRITE_MAP:
            tl.store(map_ptr + n * P + p, v * scale, mask=in_range)
        acc_loss += v * scale
        acc_den += valid.to(tl.float32)
        acc_bad += bad
        acc_nonfinite += tl.sum((in_range & (finite == 0)).to(tl.int32), axis=0)
        acc_bad_terms += tl.sum((valid & finite & ((v - v) != 0.0)).to(tl.int32), axis=0)
    tl.store(part_ptr + pid * 2 + tl.arange(0, 1), tl.sum(acc_loss, axis=0) + tl.zeros((1,), tl.float32))
    tl.store(part_ptr + pid * 2 + 1 + tl.arange(0, 1), tl.sum(acc_den, axis=0) + tl.zeros((1,), tl.float32))
    tl.store(flags_ptr + pid * 3 + tl.arange(0, 1), acc_bad)
    tl.store(flags_ptr + pid * 3 + 1 + tl.arange(0, 1), acc_nonfinite)
    tl.store(flags_ptr + pid * 3 + 2 + tl.arange(0, 1), acc_bad_terms)


@triton.jit
def boundary_backward_kernel(z_ptr, y_ptr, phi_ptr, up_ptr, g_ptr, N, P, C, s_n, s_c, s_p, y_n, y_p,
                             tiles_per_image, f_n, f_c, f_p, g_n, g_c, g_p, ignore_index, scale,
                             FIRST: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                             INDEX_64: tl.constexpr, UP_MAP: tl.constexpr):
    """``dL/dz_k = scale up_i p_ik (phi'_ik - v_i)`` at valid pixels (0 elsewhere); ``up`` the
    upstream per-pixel map ``(N * P,)`` float32 (``UP_MAP``) or a device scalar (the "mean" factor
    included); ``v`` recomputed from the tile (its maps are read anyway)."""
    n, p = _locate(tl.program_id(0), tiles_per_image, BLOCK_P, INDEX_64)
    in_range, valid, bad, cls, cls_ok, z, y, is_t = _tile(
        z_ptr, y_ptr, n, p, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index, BLOCK_C, BLOCK_P, INDEX_64)
    probs, phi, v, finite = _weighted_softmax(z, phi_ptr, n, p, cls, cls_ok, valid, f_n, f_c, f_p, FIRST, INDEX_64)
    if UP_MAP:
        up = tl.load(up_ptr + n * P + p, mask=valid, other=0.0)
    else:
        up = tl.load(up_ptr) + tl.zeros(v.shape, tl.float32)
    up = tl.where(valid, up, 0.0) * scale
    grad = probs * (phi - v[None, :]) * up[None, :]
    grad = tl.where(valid[None, :], grad, 0.0)  # not 0 x NaN at an ignored pixel
    _store_tile(g_ptr, grad, n, p, cls, cls_ok, in_range, g_n, g_c, g_p, INDEX_64)
