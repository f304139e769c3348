"""Triton kernel of the exact Euclidean distance transform's min-plus step (:mod:`segloss.kernels.distance`).

Along one axis of length ``L`` of a ``(B, L, M)`` contiguous int32 tensor ``g`` of squared
distances (``M`` the product of the axes after it)::

    out[b, i, m] = min_j ( g[b, j, m] + (i - j)^2 )

the step of the separable squared EDT (Felzenszwalb & Huttenlocher, Theory of Computing 2012, Eq. 2)
that follows the scan along the last axis. It is computed by brute force over ``j``, ``O(L)`` a
value, but in registers: a program holds a ``(BLOCK_I, BLOCK_M)`` tile of ``out`` and walks the
``L`` rows of ``g`` once, each a coalesced load of ``BLOCK_M`` values along ``m``; nothing of
size ``L * L`` is stored. All arithmetic is int32 and exact: the caller keeps ``g`` at most
``INF`` (2^30) and ``L^2`` below 2^30, and the running minimum starts at ``INF``.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit(do_not_specialize=["L", "rows_per_map"])  # any image size: one variant per alignment of M
def min_plus_parabola_kernel(g_ptr, out_ptr, needed_ptr, L, M, rows_per_map, INF: tl.constexpr,
                             BLOCK_I: tl.constexpr, BLOCK_M: tl.constexpr):
    """Grid ``(B * cdiv(L, BLOCK_I) * cdiv(M, BLOCK_M),)`` (one axis: a second one allows only 65535
    programs, fewer than a volume's ``M / BLOCK_M``); ``g`` and ``out`` ``(B, L, M)`` int32.

    ``needed`` ``(B / rows_per_map,)`` int8, one flag a map: a map whose values the caller replaces
    (an absent class's, an image-filling one's: most of them at C = 150) is not computed, its
    ``out`` is ``INF``. The flag is read on the device: no host-device synchronisation."""
    pid = tl.program_id(0)
    blocks_i = tl.cdiv(L, BLOCK_I)
    blocks_m = tl.cdiv(M, BLOCK_M)
    b = pid // (blocks_i * blocks_m)
    rest = pid % (blocks_i * blocks_m)
    i = (rest // blocks_m) * BLOCK_I + tl.arange(0, BLOCK_I)
    m = (rest % blocks_m) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = m < M
    base = b.to(tl.int64) * L * M  # the batch may pass 2^31 values; one image's slice does not
    acc = tl.full((BLOCK_I, BLOCK_M), INF, tl.int32)
    if tl.load(needed_ptr + b // rows_per_map) != 0:
        j = 0
        while j < L:  # a while loop: triton's interpreter (the tests) cannot range() to a runtime bound
            row = tl.load(g_ptr + base + j * M + m, mask=m_ok, other=INF)
            d = i - j
            acc = tl.minimum(acc, row[None, :] + (d * d)[:, None])
            j += 1
    tl.store(out_ptr + base + i[:, None] * M + m[None, :], acc, mask=(i < L)[:, None] & m_ok[None, :])
