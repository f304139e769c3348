"""Triton kernels of the pixel-wise losses: one tile of pixels with all its classes per step.

Every kernel sees the logits as ``(N, C, P)`` through three strides (contiguous NCHW has a pixel
stride of 1, channels_last a class stride of 1) and walks each image's ``P`` pixels in tiles of
``BLOCK_P``, numbered image by image: a tile stays in one image, so there is no per-pixel
division and the region kernels' per-class coefficients are one row per tile. A tile loads the
``(BLOCK_C, BLOCK_P)`` block of logits once (``BLOCK_C`` the next power of two >= C, padded
classes read as -inf), so along pixels the loads are coalesced. Offsets are 32-bit unless a
tensor reaches 2**31 elements (``INDEX_64``). All math is float32, whatever the logits' dtype;
gradients are stored in the logits' dtype.

Forward kernels run at most ``MAX_PROGRAMS`` programs, each walking ``NUM_STEPS`` tiles (a power
of two, so that few variants are compiled); they write the per-pixel map (``reduction="none"``)
and per-program partial sums (deterministic: they are summed by torch afterwards, never with
float atomics): the loss, the "mean" denominator, per-class valid pixels and argmax hits (recall
loss only), and two flags, labels outside ``[0, C)`` that are not ``ignore_index`` and pixels with
non-finite logits, read back once per call. The focal family's and Dual Focal's forward can write ``dL/dz``
(``WRITE_GRAD``, scaled by a device scalar known beforehand from :func:`denominator_kernel`);
:func:`scale_gradient_kernel` then applies the upstream in place. Backward kernels recompute the
per-pixel quantities from the logits and write ``dL/dz`` once, scaled by the upstream gradient
(a device scalar or a per-pixel map), so no state of the logits' size lives between forward and
backward and any upstream (AMP's loss scale, a second backward) is exact.

The formulas are those of :mod:`segloss.kernels.cpu` (see ``LOSS_MATH.md``):

- focal family (CE: gamma = 0): ``FL = -s (1 - p_t)^gamma log p_t``,
  ``dFL/dz_k = c (p_k - [k = t])``, ``c = s (1 - p_t)^gamma [1 - gamma p_t log(p_t) / (1 - p_t)]``;
- Dual Focal: the closed form of :func:`segloss.kernels.cpu._dual_focal_block`, with every
  product of a possibly huge factor (``r_a``, ``(1 - p_t)^(gamma - 1)``) and a probability that
  cancels it taken as one ``exp`` of a sum of logs (each such product is <= 1).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _log1m(x):
    """``log(1 - x)`` for ``0 <= x <= 1/2``, accurate for tiny ``x`` (``log(u) x / (u - 1)``, u = 1 - x)."""
    u = 1.0 - x
    d = u - 1.0  # exact for x <= 1/2
    safe = tl.where(d == 0.0, -1.0, d)
    return tl.where(d == 0.0, -x, tl.log(u) * (-x) / safe)


@triton.jit
def _locate(tile, tiles_per_image, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr):
    """Image ``n`` and pixel offsets ``p`` ``(BLOCK_P,)`` of a tile, tiles numbered image by image
    (a tile never spans two images: no per-pixel division); 64-bit with ``INDEX_64``."""
    if INDEX_64:  # widen first: (tile - n T) * BLOCK_P passes 2**31 in an image of 2**31 pixels
        tile = tile.to(tl.int64)
    n = tile // tiles_per_image
    p = (tile - n * tiles_per_image) * BLOCK_P + tl.arange(0, BLOCK_P)
    return n, p


@triton.jit
def _tile(z_ptr, y_ptr, n, p, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index,
          BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr):
    """Load one tile of image ``n``, pixels ``p``: logits ``(BLOCK_C, BLOCK_P)`` float32 (padded
    classes -inf), the label ``y`` int32 (-1 where not valid) and the masks.

    Labels are checked in 64 bits (a label of 2**32 + 1 is not class 1); offsets are 32-bit
    unless a tensor holds 2**31 elements or more (``INDEX_64``)."""
    in_range = (p < P) & (n < N)
    label = tl.load(y_ptr + n * y_n + p * y_p, mask=in_range, other=ignore_index).to(tl.int64)
    labelled = in_range & (label != ignore_index)
    ok = (label >= 0) & (label < C)
    valid = labelled & ok
    bad = tl.sum((labelled & (ok == 0)).to(tl.int32), axis=0)
    y = tl.where(valid, label, -1).to(tl.int32)
    cls = tl.arange(0, BLOCK_C)
    cls_ok = cls < C
    if INDEX_64:
        class_offsets = cls.to(tl.int64)[:, None] * s_c
    else:
        class_offsets = cls[:, None] * s_c
    ptrs = z_ptr + n * s_n + class_offsets + p[None, :] * s_p
    z = tl.load(ptrs, mask=cls_ok[:, None] & in_range[None, :], other=0.0).to(tl.float32)
    z = tl.where(cls_ok[:, None], z, float("-inf"))
    is_t = cls[:, None] == y[None, :]  # y is -1 where not valid
    return in_range, valid, bad, cls, cls_ok, z, y, is_t


@triton.jit
def _store_tile(g_ptr, grad, n, p, cls, cls_ok, in_range, g_n, g_c, g_p, INDEX_64: tl.constexpr):
    """Store a tile's gradient ``(BLOCK_C, BLOCK_P)`` in the gradient's dtype and strides."""
    if INDEX_64:
        class_offsets = cls.to(tl.int64)[:, None] * g_c
    else:
        class_offsets = cls[:, None] * g_c
    ptrs = g_ptr + n * g_n + class_offsets + p[None, :] * g_p
    tl.store(ptrs, grad.to(g_ptr.dtype.element_ty), mask=cls_ok[:, None] & in_range[None, :])


@triton.jit
def _focal_pixel(z, is_t, gamma, GAMMA_ZERO: tl.constexpr):
    """Per pixel of a tile: ``(loss, coef, e, s, finite)`` with ``e = exp(z - m)`` ``(BLOCK_C, BLOCK_P)``
    and ``s`` its column sums; the loss and ``coef`` carry no scale yet."""
    m = tl.max(z, axis=0)
    e = tl.exp(z - m[None, :])
    s_others = tl.sum(tl.where(is_t, 0.0, e), axis=0)
    e_t = tl.sum(tl.where(is_t, e, 0.0), axis=0)
    s = s_others + e_t
    log_s = tl.log(s)
    z_t = tl.sum(tl.where(is_t, z, 0.0), axis=0)
    log_pt = (z_t - m) - log_s
    finite = ((m - m) == 0.0) & ((log_s - log_s) == 0.0)
    if GAMMA_ZERO:
        loss = -log_pt
        coef = tl.full(log_pt.shape, 1.0, tl.float32)
    else:
        one_minus = s_others / s  # 1 - p_t without cancellation
        log1m_pt = tl.log(tl.maximum(s_others, 1.2e-38)) - log_s  # 1e-38 would be a float64 constant
        log_pt = tl.where(one_minus < 0.5, _log1m(tl.minimum(one_minus, 0.5)), log_pt)
        safe_one_minus = tl.where(one_minus > 1e-6, one_minus, 1.0)
        ratio = tl.where(one_minus > 1e-6, log_pt / safe_one_minus, -1.0 - 0.5 * one_minus)
        modulator = tl.exp(gamma * log1m_pt)
        coef = modulator * (1.0 - gamma * ratio * tl.exp(log_pt))
        loss = -modulator * log_pt
    return loss, coef, e, s, finite


@triton.jit
def _smoothing_term(z, log_s, cls, cls_ok, smooth_ptr, C):
    """Label smoothing's ``S = (1/C) (W lse - sum_c w_c z_c) = (1/C) (W log s - sum_c w_c (z_c - m))``
    per pixel (relative to the max ``m``: no cancellation of large offsets), ``W = sum_c w_c``;
    padded classes (``-inf`` logits, no weight) add nothing."""
    w = tl.load(smooth_ptr + cls, mask=cls_ok, other=0.0)
    m = tl.max(z, axis=0)
    wz = tl.sum(tl.where(cls_ok[:, None], w[:, None] * (z - m[None, :]), 0.0), axis=0)
    return (tl.sum(w, axis=0) * log_s - wz) / C


@triton.jit
def _weight_of(weight_ptr, y, valid):
    """The class weight ``w[y]`` of each valid pixel (0 elsewhere)."""
    return tl.load(weight_ptr + tl.where(valid, y, 0), mask=valid, other=0.0)


@triton.jit
def _focal_gradient(e, s, coef, is_t, up, cls, cls_ok, smooth_ptr, eps, C, SMOOTH: tl.constexpr):
    """``dL/dz`` of a tile ``(BLOCK_C, BLOCK_P)``: ``up c (softmax(z) - onehot)``; with ``SMOOTH``:
    ``up [c_p softmax(z) - c_t onehot - (eps / C) w_k]``, ``c_t = (1 - eps) c``, ``c_p = c_t + eps W / C``.
    ``up`` ``(BLOCK_P,)`` is 0 at pixels that are not valid."""
    if SMOOTH:
        w = tl.load(smooth_ptr + cls, mask=cls_ok, other=0.0)
        coef_t = (1.0 - eps) * coef * up
        coef_p = coef_t + (eps * tl.sum(w, axis=0) / C) * up
        grad = (e * (coef_p / s)[None, :] - tl.where(is_t, coef_t[None, :], 0.0)
                - (eps / C) * w[:, None] * up[None, :])
    else:
        coef = coef * up
        grad = e * (coef / s)[None, :] - tl.where(is_t, coef[None, :], 0.0)
    return grad


@triton.jit
def denominator_kernel(y_ptr, weight_ptr, part_den_ptr, N, P, C, y_n, y_p, tiles_per_image, ignore_index, programs,
                       BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr, NUM_STEPS: tl.constexpr,
                       HAS_WEIGHT: tl.constexpr):
    """The "mean" denominator from the labels alone (a read of ``N P`` labels, no logits), per
    program: valid pixels, or the sum of their class weights. ``part_den`` ``(G,)`` float32."""
    pid = tl.program_id(0)
    acc = tl.zeros((BLOCK_P,), tl.float32)
    for step in range(0, NUM_STEPS):
        n, p = _locate(pid + step * programs, tiles_per_image, BLOCK_P, INDEX_64)
        in_range = (p < P) & (n < N)
        label = tl.load(y_ptr + n * y_n + p * y_p, mask=in_range, other=ignore_index).to(tl.int64)
        valid = in_range & (label != ignore_index) & (label >= 0) & (label < C)
        if HAS_WEIGHT:
            acc += _weight_of(weight_ptr, tl.where(valid, label, 0).to(tl.int32), valid)
        else:
            acc += valid.to(tl.float32)
    tl.store(part_den_ptr + pid + tl.arange(0, 1), tl.sum(acc, axis=0) + tl.zeros((1,), tl.float32))


@triton.jit
def focal_forward_kernel(z_ptr, y_ptr, scale_ptr, den_weight_ptr, map_ptr, part_loss_ptr, part_den_ptr,
                         part_count_ptr, flags_ptr, g_ptr, gscale_ptr,
                         N, P, C, s_n, s_c, s_p, y_n, y_p, tiles_per_image, g_n, g_c, g_p, ignore_index, gamma,
                         gamma_ptr, programs, smooth_ptr, eps,
                         BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr, NUM_STEPS: tl.constexpr,
                         HAS_SCALE: tl.constexpr, HAS_DEN_WEIGHT: tl.constexpr, WRITE_MAP: tl.constexpr,
                         PER_CLASS: tl.constexpr, GAMMA_ZERO: tl.constexpr, GAMMA_FROM_PTR: tl.constexpr,
                         SMOOTH: tl.constexpr, WRITE_GRAD: tl.constexpr):
    """Loss of the focal family; per program: loss sum (or per-class sums), denominator, flags.

    With ``SMOOTH`` (label smoothing ``eps``, class weights ``smooth_ptr`` ``(C,)``) the pixel
    loss is ``(1 - eps) s FL + eps S`` (:func:`_smoothing_term`). With ``WRITE_GRAD`` the same
    pass also writes ``dL/dz`` times the device scalar ``gscale`` (the "mean" factor, known
    beforehand from :func:`denominator_kernel`): the logits are read once in all.

    ``part_loss`` ``(G,)`` (``(G, C)`` with ``PER_CLASS``); ``part_den`` ``(G,)`` float32: valid
    pixels or the sum of their ``den_weight``; with ``PER_CLASS`` (recall loss) ``part_count``
    ``(G, 2, C)`` int32: valid pixels per class and those whose argmax is their label; ``flags``
    ``(G, 2)`` int32: bad labels, pixels with non-finite logits. With ``GAMMA_FROM_PTR`` gamma
    is read from the device scalar ``gamma_ptr`` (a 0-dim tensor given: no host read).
    """
    pid = tl.program_id(0)
    if GAMMA_FROM_PTR:
        gamma = tl.load(gamma_ptr).to(tl.float32)
    cls = tl.arange(0, BLOCK_C)
    acc_class = tl.zeros((BLOCK_C,), tl.float32)
    acc_loss = tl.zeros((BLOCK_P,), tl.float32)
    acc_den = tl.zeros((BLOCK_P,), tl.float32)
    acc_n = tl.zeros((BLOCK_C,), tl.int32)
    acc_tp = tl.zeros((BLOCK_C,), tl.int32)
    acc_bad = tl.zeros((1,), tl.int32)
    acc_nonfinite = tl.zeros((1,), tl.int32)
    if WRITE_GRAD:
        gscale = tl.load(gscale_ptr).to(tl.float32)
    for step in range(0, NUM_STEPS):
        n, p = _locate(pid + step * programs, tiles_per_image, BLOCK_P, INDEX_64)  # n >= N: all masked
        in_range, valid, bad, cls, cls_ok, z, y, is_t = _tile(
            z_ptr, y_ptr, n, p, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index, BLOCK_C, BLOCK_P, INDEX_64)
        loss, coef, e, s, finite = _focal_pixel(z, is_t, gamma, GAMMA_ZERO)
        if HAS_SCALE:
            scale = _weight_of(scale_ptr, y, valid)
            loss = loss * scale
            coef = coef * scale
        if SMOOTH:  # every class's log p: a -inf logit makes the loss infinite (refused as eagerly)
            smoothing = _smoothing_term(z, tl.log(s), cls, cls_ok, smooth_ptr, C)
            loss = (1.0 - eps) * loss + eps * smoothing
            finite = finite & (((smoothing - smoothing) == 0.0) | (valid == 0))
        loss = tl.where(valid, loss, 0.0)
        if WRITE_MAP:
            tl.store(map_ptr + n * P + p, loss, mask=in_range)
        if WRITE_GRAD:
            up = tl.where(valid, gscale, 0.0)
            grad = _focal_gradient(e, s, coef, is_t, up, cls, cls_ok, smooth_ptr, eps, C, SMOOTH)
            _store_tile(g_ptr, grad, n, p, cls, cls_ok, in_range, g_n, g_c, g_p, INDEX_64)
        if PER_CLASS:
            acc_class += tl.sum(tl.where(is_t, loss[None, :], 0.0), axis=1)
            hit = valid & (tl.argmax(z, axis=0, tie_break_left=True) == y)
            acc_tp += tl.sum((is_t & hit[None, :]).to(tl.int32), axis=1)
            acc_n += tl.sum(is_t.to(tl.int32), axis=1)
        else:
            acc_loss += loss
        if HAS_DEN_WEIGHT:
            acc_den += _weight_of(den_weight_ptr, y, valid)
        else:
            acc_den += valid.to(tl.float32)
        acc_bad += bad
        acc_nonfinite += tl.sum((in_range & (finite == 0)).to(tl.int32), axis=0)
    cls_ok = cls < C
    if PER_CLASS:
        tl.store(part_loss_ptr + pid * C + cls, acc_class, mask=cls_ok)
        tl.store(part_count_ptr + pid * 2 * C + cls, acc_n, mask=cls_ok)
        tl.store(part_count_ptr + pid * 2 * C + C + cls, acc_tp, mask=cls_ok)
    else:
        tl.store(part_loss_ptr + pid + tl.arange(0, 1), tl.sum(acc_loss, axis=0) + tl.zeros((1,), tl.float32))
    tl.store(part_den_ptr + pid + tl.arange(0, 1), tl.sum(acc_den, axis=0) + tl.zeros((1,), tl.float32))
    tl.store(flags_ptr + pid * 2 + tl.arange(0, 1), acc_bad)
    tl.store(flags_ptr + pid * 2 + 1 + tl.arange(0, 1), acc_nonfinite)


@triton.jit
def focal_backward_kernel(z_ptr, y_ptr, scale_ptr, up_ptr, g_ptr,
                          N, P, C, s_n, s_c, s_p, y_n, y_p, tiles_per_image, g_n, g_c, g_p, ignore_index, gamma,
                          gamma_ptr, smooth_ptr, eps,
                          BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr, HAS_SCALE: tl.constexpr,
                          UP_MAP: tl.constexpr, GAMMA_ZERO: tl.constexpr, GAMMA_FROM_PTR: tl.constexpr,
                          SMOOTH: tl.constexpr):
    """``dL/dz`` (:func:`_focal_gradient`) recomputed from the logits, times the upstream ``up``
    (a device scalar, the "mean" factor included, or a per-pixel map); gamma as in the forward kernel."""
    if GAMMA_FROM_PTR:
        gamma = tl.load(gamma_ptr).to(tl.float32)
    n, p = _locate(tl.program_id(0), tiles_per_image, BLOCK_P, INDEX_64)
    in_range, valid, bad, cls, cls_ok, z, y, is_t = _tile(
        z_ptr, y_ptr, n, p, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index, BLOCK_C, BLOCK_P, INDEX_64)
    loss, coef, e, s, finite = _focal_pixel(z, is_t, gamma, GAMMA_ZERO)
    if HAS_SCALE:
        coef = coef * _weight_of(scale_ptr, y, valid)
    if UP_MAP:
        up = tl.load(up_ptr + n * P + p, mask=valid, other=0.0).to(tl.float32)
    else:
        up = tl.load(up_ptr).to(tl.float32) + tl.zeros(coef.shape, tl.float32)
    up = tl.where(valid, up, 0.0)
    grad = _focal_gradient(e, s, coef, is_t, up, cls, cls_ok, smooth_ptr, eps, C, SMOOTH)
    _store_tile(g_ptr, grad, n, p, cls, cls_ok, in_range, g_n, g_c, g_p, INDEX_64)


@triton.jit
def scale_gradient_kernel(g_ptr, up_ptr, numel, BLOCK: tl.constexpr):
    """``g *= up`` in place over a dense buffer of ``numel`` elements, unless the device scalar
    ``up`` is 1 (a plain ``loss.backward()``): then nothing is read or written."""
    up = tl.load(up_ptr).to(tl.float32)
    if up != 1.0:
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < numel
        g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(g_ptr + offs, (g * up).to(g_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _dual_focal_params(params_ptr, alpha, beta, gamma, rho, log_rho_minus_1, PARAMS_FROM_PTR: tl.constexpr):
    """``(alpha, beta, gamma, rho, log(rho - 1))``: the scalars passed, or (learnable parameters,
    never read by the host) loaded from the device vector ``params`` ``(4,)``."""
    if PARAMS_FROM_PTR:
        alpha = tl.load(params_ptr).to(tl.float32)
        beta = tl.load(params_ptr + 1).to(tl.float32)
        gamma = tl.load(params_ptr + 2).to(tl.float32)
        rho = tl.load(params_ptr + 3).to(tl.float32)
        log_rho_minus_1 = tl.log(rho - 1.0)  # -inf at rho = 1: the general formulas take it
    return alpha, beta, gamma, rho, log_rho_minus_1


@triton.jit
def _dual_focal_pixel(z, is_t, cls, cls_ok, alpha, beta, gamma, rho, log_rho_minus_1,
                      RHO_ONE: tl.constexpr, WANT_GRAD: tl.constexpr, PARAM_TERMS: tl.constexpr = False):
    """Dual Focal Loss of a tile's pixels and (``WANT_GRAD``) its gradient ``(BLOCK_C, BLOCK_P)``;
    with ``PARAM_TERMS`` also each pixel's derivatives with respect to the four parameters,
    ``dDFL/dalpha = (1 - p_t)^gamma + sum_{c != t} p_c^gamma``, ``dDFL/dbeta = -sum_{c != t} log(rho - p_c)``,
    ``dDFL/dgamma = alpha [(1 - p_t)^gamma log(1 - p_t) + sum_{c != t} p_c^gamma log p_c]``,
    ``dDFL/drho = -beta sum_{c != t} 1 / (rho - p_c)`` (each ``(BLOCK_P,)``; ``1 / (rho - p_c)``
    capped at ``e^60``).

    ``DFL = -log p_t - beta sum_{c != t} log(rho - p_c) + alpha ((1 - p_t)^gamma + sum_{c != t} p_c^gamma)``.
    """
    m = tl.max(z, axis=0)
    a = tl.argmax(z, axis=0, tie_break_left=True)
    is_a = (cls[:, None] == a[None, :])
    shifted = z - m[None, :]
    e = tl.exp(shifted)
    log_s = tl.log(tl.sum(e, axis=0))
    finite = ((m - m) == 0.0) & ((log_s - log_s) == 0.0)
    # log(1 - p_a) in log space: the log-sum-exp of the other classes (no underflow at any margin)
    z_not_a = tl.where(is_a | (cls_ok[:, None] == 0), float("-inf"), z)
    m2 = tl.max(z_not_a, axis=0)
    log_s_not_a = (m2 - m) + tl.log(tl.sum(tl.exp(z_not_a - m2[None, :]), axis=0))
    log1m_pa = log_s_not_a - log_s
    log_p = shifted - log_s[None, :]
    probs = tl.exp(log_p)
    t_is_a = tl.sum((is_t & is_a).to(tl.int32), axis=0) > 0
    log_pt = tl.sum(tl.where(is_t, log_p, 0.0), axis=0)
    p_t = tl.exp(log_pt)
    log1m_pt = tl.where(t_is_a, log1m_pa, _log1m(tl.minimum(tl.where(t_is_a, 0.0, p_t), 0.5)))
    # log(rho - p_c): at the argmax from log(1 - p_a)
    if RHO_ONE:
        log_rho_pa = log1m_pa
        log_rho_p = _log1m(tl.minimum(tl.where(is_a, 0.0, probs), 0.5))
    else:
        big = tl.maximum(log1m_pa, log_rho_minus_1)
        log_rho_pa = big + tl.log(1.0 + tl.exp(-tl.abs(log1m_pa - log_rho_minus_1)))
        log_rho_p = tl.log(rho - probs)
    log_rho_p = tl.where(is_a, log_rho_pa[None, :], log_rho_p)
    other = (is_t == 0) & cls_ok[:, None]
    false_sum = tl.sum(tl.where(other, log_rho_p, 0.0), axis=0)
    powers = tl.where(other, tl.exp(gamma * log_p), 0.0)  # p_c^gamma, c != t
    power_sum = tl.sum(powers, axis=0)
    modulator = tl.exp(gamma * log1m_pt)
    loss = -log_pt - beta * false_sum + alpha * (modulator + power_sum)
    grad = probs
    if WANT_GRAD:
        ag = alpha * gamma
        rest = other & (is_a == 0)  # classes other than t and a
        r = tl.where(rest, tl.exp(log_p - log_rho_p), 0.0)
        k1m1 = -beta * tl.sum(r, axis=0) - ag * power_sum  # K's bounded part, minus 1
        log_ra = -log_s - log_rho_pa  # log r_a (log p_a = -log s)
        log_tq = (gamma - 1.0) * log1m_pt + log_pt  # log[(1 - p_t)^(gamma - 1) p_t]
        not_a = tl.where(t_is_a, 0.0, 1.0)
        # k not in {t, a}: p_k K + beta r_k + alpha gamma p_k^gamma, the big products as exp of sums (<= 1)
        g_rest = (probs * (1.0 + k1m1)[None, :] - (beta * not_a)[None, :] * tl.exp(tl.minimum(log_p + log_ra[None, :], 0.0))
                  + ag * tl.exp(tl.minimum(log_p + log_tq[None, :], 0.0)) + beta * r + ag * powers)
        p_a = tl.exp(-log_s)
        v_a = tl.exp(-log_s + log1m_pa - log_rho_pa)  # p_a (1 - p_a) / (rho - p_a)
        pw_a = tl.exp(-gamma * log_s)
        g_a = p_a * (1.0 + k1m1) + beta * v_a + ag * pw_a + ag * tl.exp(tl.minimum(-log_s + log_tq, 0.0))
        g_t = (-tl.exp(log1m_pt) + p_t * k1m1 - beta * not_a * tl.exp(tl.minimum(log_pt + log_ra, 0.0))
               - ag * modulator * p_t)
        grad = tl.where(is_t, g_t[None, :], tl.where(is_a, g_a[None, :], g_rest))
    d_alpha = modulator + power_sum
    d_beta = -false_sum
    d_gamma = d_alpha
    d_rho = d_alpha
    if PARAM_TERMS:
        d_gamma = alpha * (modulator * log1m_pt + tl.sum(tl.where(other, powers * log_p, 0.0), axis=0))
        # 1 / (rho - p_c), capped at e^60 (at rho = 1 and a saturated wrong argmax the exact value
        # overflows float32; the reference caps it alike); beta = 0 gives 0, not 0 x inf
        d_rho = -beta * tl.sum(tl.where(other, tl.exp(tl.minimum(-log_rho_p, 60.0)), 0.0), axis=0)
    return loss, grad, finite, d_alpha, d_beta, d_gamma, d_rho


@triton.jit
def dual_focal_forward_kernel(z_ptr, y_ptr, weight_ptr, map_ptr, part_loss_ptr, part_den_ptr, flags_ptr,
                              g_ptr, gscale_ptr, params_ptr, part_param_ptr,
                              N, P, C, s_n, s_c, s_p, y_n, y_p, tiles_per_image, g_n, g_c, g_p, ignore_index, programs,
                              alpha, beta, gamma, rho, log_rho_minus_1,
                              BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr, NUM_STEPS: tl.constexpr,
                              HAS_WEIGHT: tl.constexpr, WRITE_MAP: tl.constexpr, RHO_ONE: tl.constexpr,
                              WRITE_GRAD: tl.constexpr, PARAMS_FROM_PTR: tl.constexpr, PARAM_GRADS: tl.constexpr):
    """Dual Focal Loss; per program: loss sum, denominator (valid pixels or the sum of their
    weights; ``(G,)`` float32 both), flags. With ``WRITE_GRAD`` the same pass writes ``dL/dz``
    times class weight and the device scalar ``gscale`` (as the focal family's forward). With
    ``PARAMS_FROM_PTR`` the parameters come from the device vector ``params``; with
    ``PARAM_GRADS`` ``part_param`` ``(G, 4)`` gets the class-weighted sums of the pixels'
    derivatives with respect to alpha, beta, gamma and rho (see :func:`_dual_focal_pixel`)."""
    pid = tl.program_id(0)
    alpha, beta, gamma, rho, log_rho_minus_1 = _dual_focal_params(params_ptr, alpha, beta, gamma, rho,
                                                                  log_rho_minus_1, PARAMS_FROM_PTR)
    acc_da = tl.zeros((BLOCK_P,), tl.float32)
    acc_db = tl.zeros((BLOCK_P,), tl.float32)
    acc_dg = tl.zeros((BLOCK_P,), tl.float32)
    acc_dr = tl.zeros((BLOCK_P,), tl.float32)
    if WRITE_GRAD:
        gscale = tl.load(gscale_ptr).to(tl.float32)
    cls = tl.arange(0, BLOCK_C)
    acc_loss = tl.zeros((BLOCK_P,), tl.float32)
    acc_den = tl.zeros((BLOCK_P,), tl.float32)
    acc_bad = tl.zeros((1,), tl.int32)
    acc_nonfinite = tl.zeros((1,), tl.int32)
    for step in range(0, NUM_STEPS):
        n, p = _locate(pid + step * programs, tiles_per_image, BLOCK_P, INDEX_64)  # n >= N: all masked
        in_range, valid, bad, cls, cls_ok, z, y, is_t = _tile(
            z_ptr, y_ptr, n, p, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index, BLOCK_C, BLOCK_P, INDEX_64)
        loss, grad, finite, d_alpha, d_beta, d_gamma, d_rho = _dual_focal_pixel(
            z, is_t, cls, cls_ok, alpha, beta, gamma, rho, log_rho_minus_1, RHO_ONE, WRITE_GRAD, PARAM_GRADS)
        if HAS_WEIGHT:
            w = _weight_of(weight_ptr, y, valid)
            loss = loss * w
            acc_den += w
        else:
            w = valid.to(tl.float32)
            acc_den += w
        loss = tl.where(valid, loss, 0.0)
        if WRITE_MAP:
            tl.store(map_ptr + n * P + p, loss, mask=in_range)
        if WRITE_GRAD:
            up = tl.where(valid, gscale * w, 0.0)
            _store_tile(g_ptr, grad * up[None, :], n, p, cls, cls_ok, in_range, g_n, g_c, g_p, INDEX_64)
        if PARAM_GRADS:
            keep = valid & (w != 0.0)  # no 0 x inf from a pixel that does not count
            acc_da += tl.where(keep, w * d_alpha, 0.0)
            acc_db += tl.where(keep, w * d_beta, 0.0)
            acc_dg += tl.where(keep, w * d_gamma, 0.0)
            acc_dr += tl.where(keep, w * d_rho, 0.0)
        acc_loss += loss
        acc_bad += bad
        acc_nonfinite += tl.sum((in_range & (finite == 0)).to(tl.int32), axis=0)
    tl.store(part_loss_ptr + pid + tl.arange(0, 1), tl.sum(acc_loss, axis=0) + tl.zeros((1,), tl.float32))
    tl.store(part_den_ptr + pid + tl.arange(0, 1), tl.sum(acc_den, axis=0) + tl.zeros((1,), tl.float32))
    tl.store(flags_ptr + pid * 2 + tl.arange(0, 1), acc_bad)
    tl.store(flags_ptr + pid * 2 + 1 + tl.arange(0, 1), acc_nonfinite)
    if PARAM_GRADS:
        _store_param_sums(part_param_ptr, pid, acc_da, acc_db, acc_dg, acc_dr)


@triton.jit
def _store_param_sums(part_param_ptr, row, acc_da, acc_db, acc_dg, acc_dr):
    """Row ``row`` of ``part_param`` ``(G, 4)``: the four per-lane accumulators, summed."""
    one = tl.zeros((1,), tl.float32)
    base = part_param_ptr + row.to(tl.int64) * 4 + tl.arange(0, 1)
    tl.store(base, tl.sum(acc_da, axis=0) + one)
    tl.store(base + 1, tl.sum(acc_db, axis=0) + one)
    tl.store(base + 2, tl.sum(acc_dg, axis=0) + one)
    tl.store(base + 3, tl.sum(acc_dr, axis=0) + one)


@triton.jit
def dual_focal_backward_kernel(z_ptr, y_ptr, weight_ptr, up_ptr, g_ptr, params_ptr, part_param_ptr,
                               N, P, C, s_n, s_c, s_p, y_n, y_p, tiles_per_image, g_n, g_c, g_p, ignore_index,
                               alpha, beta, gamma, rho, log_rho_minus_1,
                               BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr, HAS_WEIGHT: tl.constexpr,
                               UP_MAP: tl.constexpr, RHO_ONE: tl.constexpr, PARAMS_FROM_PTR: tl.constexpr,
                               PARAM_GRADS: tl.constexpr, STORE_GRAD: tl.constexpr = True):
    """Dual Focal Loss's closed-form gradient, scaled by class weight and upstream; with
    ``PARAM_GRADS`` (``reduction="none"``: the upstream is a map) also each tile's
    upstream-weighted sums of the parameter derivatives, row ``tile`` of ``part_param``."""
    tile = tl.program_id(0)
    alpha, beta, gamma, rho, log_rho_minus_1 = _dual_focal_params(params_ptr, alpha, beta, gamma, rho,
                                                                  log_rho_minus_1, PARAMS_FROM_PTR)
    n, p = _locate(tile, tiles_per_image, BLOCK_P, INDEX_64)
    in_range, valid, bad, cls, cls_ok, z, y, is_t = _tile(
        z_ptr, y_ptr, n, p, N, P, C, s_n, s_c, s_p, y_n, y_p, ignore_index, BLOCK_C, BLOCK_P, INDEX_64)
    loss, grad, finite, d_alpha, d_beta, d_gamma, d_rho = _dual_focal_pixel(
        z, is_t, cls, cls_ok, alpha, beta, gamma, rho, log_rho_minus_1, RHO_ONE, True, PARAM_GRADS)
    if UP_MAP:
        w = tl.load(up_ptr + n * P + p, mask=valid, other=0.0).to(tl.float32)
    else:
        w = tl.zeros((BLOCK_P,), tl.float32) + tl.load(up_ptr).to(tl.float32)
    if HAS_WEIGHT:
        w = w * _weight_of(weight_ptr, y, valid)
    w = tl.where(valid, w, 0.0)
    if STORE_GRAD:
        _store_tile(g_ptr, grad * w[None, :], n, p, cls, cls_ok, in_range, g_n, g_c, g_p, INDEX_64)
    if PARAM_GRADS:
        keep = valid & (w != 0.0)  # no 0 x inf from a pixel that does not count
        _store_param_sums(part_param_ptr, tile, tl.where(keep, w * d_alpha, 0.0), tl.where(keep, w * d_beta, 0.0),
                          tl.where(keep, w * d_gamma, 0.0), tl.where(keep, w * d_rho, 0.0))
