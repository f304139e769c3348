"""Fast, memory-lean forward and backward passes behind :mod:`segloss.functional`.

Two custom ``torch.autograd.Function``s, both working block by block over the pixels so that
no temporary of the logits' full size is ever alive besides the gradient itself:

``FocalFamily`` covers cross-entropy, weighted CE, focal loss and recall loss, whose per-pixel
loss depends on the logits only through ``log p_t``. For ``FL = -s (1 - p_t)^gamma log p_t``
(``s`` a per-pixel scale: class weight x alpha x recall weight; ``gamma = 0`` is CE)::

    dFL/dz_k = c (p_k - [k = t]),   c = s (1 - p_t)^gamma [1 - gamma p_t log(p_t) / (1 - p_t)]

so the forward pass keeps only per-pixel vectors (``c``, ``log_s = log sum exp(z - m)`` and the
argmax index of the max ``m`` in one byte: about ``2.25/C`` of the logits) and the backward pass
writes ``c * softmax(z)`` straight into the gradient buffer as ``exp((z - m) - (log_s - log c))``
and subtracts ``c`` at the target. (``z - m`` first: adding ``m`` to a small number would round
it to float32's resolution at ``|m|``.) Labels are made safe block by block, so no full-size
copy of the target exists either. ``1 - p_t`` is the sum of the other
classes' exponentials (no cancellation); ``log p_t = log1p(-(1 - p_t))`` when ``p_t > 1/2``. Where
``1 - p_t`` underflows float32 (margins above ~87) it is floored at ``1e-38``; the terms it
multiplies are then below float32's resolution of the loss.

``DualFocalFused`` is for Dual Focal Loss: its closed-form gradient is computed in the forward
pass, block by block, into the one full-size buffer that backward returns (see its docstring).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from segloss.kernels import compiled as _compiled


CPU_BLOCK = 1 << 19  # elements per block: the CE family's work buffer
CPU_BLOCK_DUAL_FOCAL = 1 << 17  # Dual Focal, eager: three work buffers
CPU_BLOCK_DUAL_FOCAL_COMPILED = 1 << 18  # Dual Focal, compiled: the kernel's float64 per-pixel temporaries


def _blocks(num_pixels: int, num_classes: int, device: torch.device, cpu_budget: int = CPU_BLOCK
            ) -> Iterator[tuple[int, int]]:
    """Pixel ranges covering ``[0, num_pixels)``, about ``cpu_budget`` (CPU) or 2^25 (GPU) elements each."""
    budget = cpu_budget if device.type == "cpu" else (1 << 25)
    size = max(1024, budget // max(num_classes, 1))
    for start in range(0, num_pixels, size):
        yield start, min(num_pixels, start + size)


def _slabs(num_images: int, num_pixels: int, num_classes: int, device: torch.device
           ) -> Iterator[tuple[slice, slice]]:
    """``(images, pixels)`` slices covering ``(N, P)``: whole small images several at a time (a Python
    loop over many tiny images, e.g. the app's 400 one-class regions, cost more than the sums), else
    one image at a time in :func:`_blocks`' pixel ranges; each slab about one block of elements."""
    budget = CPU_BLOCK if device.type == "cpu" else (1 << 25)
    per_image = max(num_pixels * max(num_classes, 1), 1)
    if num_pixels and per_image <= budget // 2:
        step = budget // per_image
        for start in range(0, num_images, step):
            yield slice(start, min(num_images, start + step)), slice(0, num_pixels)
        return
    for i in range(num_images):
        for a, b in _blocks(num_pixels, num_classes, device):
            yield slice(i, i + 1), slice(a, b)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


DOUBLE_BACKWARD = ("segloss's fast pixel-wise losses have an analytic first derivative only: backward with "
                   "create_graph=True (double backward, Hessian-vector products) is not supported; use the autograd "
                   "implementations in segloss.losses.reference (cross_entropy, focal_loss, dual_focal_loss, "
                   "recall_weighted_ce) for that (the region and boundary losses take it on CPU tensors)")
REGION_DOUBLE_BACKWARD = ("segloss's region sums on CUDA (Dice, Jaccard, Tversky, Generalized Dice) have an analytic "
                          "first derivative only: backward with create_graph=True (double backward, Hessian-vector "
                          "products) is not supported on CUDA tensors; on CPU tensors the region losses take it")


def refuse_double_backward(message: str = DOUBLE_BACKWARD) -> None:
    """Raise if this backward is asked to build a graph (``create_graph=True``): the analytic
    gradients here are not differentiable, and a silent graph-less gradient would be wrong."""
    if torch.is_grad_enabled():
        raise RuntimeError(message)


def _raise_non_finite(logits: torch.Tensor) -> None:
    """The ``ValueError`` for a loss that came out NaN or infinite: NaN/Inf logits, or finite logits
    so large that the loss itself overflows float32."""
    n_nan, n_inf = int(torch.isnan(logits).sum()), int(torch.isinf(logits).sum())
    if n_nan or n_inf:
        raise ValueError(
            f"logits contain {n_nan} NaN and {n_inf} Inf values (shape {tuple(logits.shape)}); "
            "check the model output or the learning rate"
        )
    largest = float(logits.detach().abs().max()) if logits.numel() else 0.0
    raise ValueError(
        f"the loss overflows float32 although the logits are finite: they reach {largest:.3g} in magnitude "
        f"(shape {tuple(logits.shape)}); logits beyond about 1e37 have no meaningful loss, scale them down"
    )


def gradient_buffer(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A gradient for ``logits`` ``(N, C, *S)`` and its ``(N, C, P)`` view: the logits' layout when
    its spatial dims merge into one stride (contiguous, channels_last), else a contiguous buffer."""
    n, c = logits.shape[:2]
    pixels = math.prod(logits.shape[2:])
    grad = torch.empty_like(logits)
    try:
        return grad, grad.view(n, c, pixels)
    except RuntimeError:  # e.g. swapped H and W: empty_like kept strides that cannot be merged
        grad = torch.empty(logits.shape, dtype=logits.dtype, device=logits.device)
        return grad, grad.view(n, c, pixels)


def _index_dtype(num_classes: int) -> torch.dtype:
    """Smallest integer dtype that holds a class index (saved argmax: 1 byte per pixel for C <= 256)."""
    return torch.uint8 if num_classes <= 256 else torch.int32


def _focal_block(z: torch.Tensor, t: torch.Tensor, gamma, work: torch.Tensor, weigh=None):
    """``(loss, coef, argmax, log_s)`` for one block ``z`` ``(C, B)``, safe target ``t`` ``(1, B)``.

    The scale is not applied. ``log_s = log sum_c exp(z_c - m)`` with ``m`` the max over classes
    (at index ``argmax``), so ``lse = m + log_s``. ``work`` is a reusable ``(C, >= B)`` buffer.
    ``weigh(z - m)``, if given, is called on the shifted block before it is exponentiated in place
    (label smoothing's ``sum_c w_c (z_c - m)`` takes it from there: no extra pass).
    """
    m, argmax = z.max(dim=0)
    e = torch.sub(z, m, out=work[:, : z.shape[1]])
    if weigh is not None:
        weigh(e)
    e.exp_()
    e_t = e.gather(0, t).squeeze(0)
    z_t = z.gather(0, t).squeeze(0)
    if isinstance(gamma, float) and gamma == 0:
        log_s = e.sum(dim=0).log_()
        return log_s - (z_t - m), None, argmax, log_s
    e.scatter_(0, t, 0.0)
    s_others = e.sum(dim=0)
    log_s = torch.log(s_others + e_t)
    log1m_pt = s_others.clamp_min(1e-38).log_() - log_s  # log(1 - p_t)
    one_minus = log1m_pt.exp()
    log_pt = torch.where(one_minus < 0.5, torch.log1p(-one_minus), (z_t - m) - log_s)
    ratio = torch.where(one_minus > 1e-6, log_pt / one_minus, -1.0 - 0.5 * one_minus)  # log(p_t) / (1 - p_t)
    modulator = torch.exp(gamma * log1m_pt)
    coef = modulator * (1.0 - gamma * ratio * torch.exp(log_pt))
    return -modulator * log_pt, coef, argmax, log_s


def _eager_focal_pass(flat, labels, ignore_index, gamma, dtype, counts, count_hits: bool, smooth_w=None):
    """``(loss, coef, argmax, log_s, smooth)`` ``(N, P)`` of logits ``(N, C, P)`` block by block with
    :func:`_focal_block`; adds the valid-pixel counts (and argmax hits) to ``counts`` ``(2, C + 1)``.

    With class weights ``smooth_w`` ``(C,)`` (ones without weights) ``smooth`` is label
    smoothing's term ``S = (1/C) (W lse - sum_c w_c z_c) = (1/C) (W log_s - sum_c w_c (z_c - m))``
    of each valid pixel (0 elsewhere), from the same block in cache; else None.
    """
    n, c, num_pixels = flat.shape
    ranges = list(_blocks(num_pixels, c, flat.device))
    loss = torch.empty(n, num_pixels, dtype=dtype, device=flat.device)
    coef = torch.ones_like(loss)
    log_sums = torch.empty_like(loss)
    smooth = None if smooth_w is None else torch.empty_like(loss)
    argmaxes = torch.empty(n, num_pixels, dtype=_index_dtype(c), device=flat.device)
    work = torch.empty(c, max([0, *(b - a for a, b in ranges)]), dtype=dtype, device=flat.device)
    for i in range(n):
        for a, b in ranges:
            valid = labels[i, a:b] != ignore_index
            label = torch.where(valid, labels[i, a:b], c).long()
            safe = torch.where(valid, label, 0).unsqueeze(0)
            z = flat[i, :, a:b].to(dtype)
            # a (C,) gamma (a per-class focusing, e.g. the unified focal loss's) becomes one per pixel
            focus = gamma if isinstance(gamma, float) else gamma.to(dtype)[safe[0]]
            weighed = []  # sum_c w_c (z_c - m): relative to the max, no cancellation of large equal offsets
            block_loss, block_coef, argmax, log_s = _focal_block(
                z, safe, focus, work, None if smooth is None else lambda shifted: weighed.append(smooth_w @ shifted))
            # an ignored pixel's values may be infinite (a -inf logit masking its class 0): where, not x 0
            if smooth is not None:
                smooth[i, a:b] = torch.where(valid, (smooth_w.sum() * log_s - weighed[0]) / c, 0.0)
            loss[i, a:b] = torch.where(valid, block_loss, 0.0)
            log_sums[i, a:b] = log_s
            argmaxes[i, a:b] = argmax
            coef[i, a:b] = valid if block_coef is None else torch.where(valid, block_coef, 0.0)
            counts[0] += torch.bincount(label, minlength=c + 1)
            if count_hits:
                counts[1] += torch.bincount(torch.where(argmax == label, label, c), minlength=c + 1)
    return loss, coef, argmaxes, log_sums, smooth


class FocalFamily(torch.autograd.Function):
    """Per-pixel ``-s (1 - p_t)^gamma log p_t`` with an analytic, in-place backward.

    Args (of ``apply``): logits ``(N, C, *S)`` (any float dtype; math in float32, float64
    kept); target ``(N, *S)`` integer; ``ignore_index``; ``gamma`` a float ``>= 0``, or a
    ``(C,)`` tensor of per-class exponents indexed by the target (eager path only);
    ``class_scale`` ``(C,)`` or None, the scale ``s = class_scale[y]``; ``scale_from_counts``
    or None, called once with the ``(C,)`` counts of valid pixels and of those whose argmax is
    their label (found in the same pass) and returning ``class_scale`` (recall loss's weights
    depend on the batch's predictions); ``smoothing`` None or ``(eps, w)``: label smoothing
    folded into the same passes (eager path only), with ``w`` ``(C,)`` the class weights or None.

    Returns ``(pixel_loss, counts)``: ``(N, *S)`` in the compute dtype, 0 at ignored pixels,
    and the int64 ``(C,)`` valid-pixel counts per class (for the "mean" denominators).
    Nothing of per-pixel-per-class size is kept for backward but the logits themselves.

    Label smoothing (:mod:`segloss.kernels.smoothing`) makes the pixel loss
    ``(1 - eps) s FL + eps S`` and its gradient
    ``c_p p_k - c_t [k = t] - (eps / C) w_k`` with ``c_t = (1 - eps) s c`` and
    ``c_p = c_t + eps W / C``: still one gradient buffer, written once.
    """

    @staticmethod
    def forward(ctx, logits, target, ignore_index, gamma, class_scale, scale_from_counts, smoothing=None):
        n, c = logits.shape[:2]
        flat, labels = logits.reshape(n, c, -1), target.reshape(n, -1)
        dtype, device = _compute_dtype(logits.dtype), logits.device
        counts = torch.zeros(2, c + 1, dtype=torch.int64, device=device)  # valid pixels, argmax hits
        smooth_w = None
        if smoothing is not None:
            eps, smooth_w = smoothing
            smooth_w = torch.ones(c, dtype=dtype, device=device) if smooth_w is None else smooth_w.to(dtype)
        with torch.autocast(device.type, enabled=False):
            ctx.compiled = _compiled.compiled_kernels_enabled() and smoothing is None and isinstance(gamma, float)
            if ctx.compiled:  # maxes (float) are saved in place of the eager path's argmax indices
                loss, coef, maxes, log_sums, hit = _compiled.focal_forward(flat, labels, ignore_index, gamma,
                                                                           scale_from_counts is not None)
                label = torch.where(labels != ignore_index, labels, c).reshape(-1)
                counts[0] += torch.bincount(label, minlength=c + 1)
                if hit is not None:
                    counts[1] += torch.bincount(torch.where(hit.reshape(-1), label, c), minlength=c + 1)
            else:
                loss, coef, maxes, log_sums, smooth = _eager_focal_pass(
                    flat, labels, ignore_index, gamma, dtype, counts, scale_from_counts is not None, smooth_w)
            if not (bool(torch.isfinite(log_sums).all()) and bool(torch.isfinite(loss).all())
                    and (smoothing is None or bool(torch.isfinite(smooth).all()))):  # smoothing: every class's log p
                _raise_non_finite(logits)
            if scale_from_counts is not None:
                class_scale = scale_from_counts(counts[0, :c], counts[1, :c])
            if class_scale is not None:  # per pixel: (N, P), a 1/C of the logits
                scale = class_scale.to(dtype)[torch.where(labels != ignore_index, labels, 0)]
                loss.mul_(scale)
                coef.mul_(scale)
            coef_p = coef
            if smoothing is not None:
                loss.mul_(1.0 - eps).add_(smooth, alpha=eps)
                coef.mul_(1.0 - eps)
                coef_p = coef + (eps * smooth_w.sum() / c) * (labels != ignore_index)
        ctx.save_for_backward(logits, target, maxes, log_sums, coef, coef_p, smooth_w)
        ctx.smoothing = None if smoothing is None else eps / c
        ctx.ignore_index = ignore_index
        ctx.mark_non_differentiable(counts)
        return loss.reshape(target.shape), counts[0, :c]

    @staticmethod
    def backward(ctx, grad_map, _grad_counts):
        refuse_double_backward()
        logits, target, argmaxes, log_sums, coef, coef_p, smooth_w = ctx.saved_tensors
        n, c = logits.shape[:2]
        dtype, device = log_sums.dtype, logits.device
        flat, labels, upstream = logits.reshape(n, c, -1), target.reshape(n, -1), grad_map.reshape(n, -1)
        if ctx.compiled:  # argmaxes holds the maxes themselves
            with torch.autocast(device.type, enabled=False):
                grad = _compiled.focal_backward(flat, labels, ctx.ignore_index, argmaxes, log_sums, coef, upstream)
                return grad.reshape(logits.shape), None, None, None, None, None, None
        grad, grad_flat = gradient_buffer(logits)
        with torch.autocast(device.type, enabled=False):
            for i in range(n):
                for a, b in _blocks(flat.shape[2], c, device):
                    z = flat[i, :, a:b].to(dtype)
                    up = upstream[i, a:b].to(dtype)
                    weight = coef[i, a:b] * up
                    weight_p = weight if ctx.smoothing is None else coef_p[i, a:b] * up
                    m = z.gather(0, argmaxes[i, a:b].long().unsqueeze(0))
                    out = grad_flat[i, :, a:b] if logits.dtype == dtype else torch.empty_like(z)
                    torch.sub(z, m, out=out)
                    if bool((weight_p >= 0).all()):  # c * softmax(z) = exp((z - m) - (log_s - log c)): one pass
                        out.sub_(log_sums[i, a:b] - weight_p.log()).exp_()
                    else:
                        out.sub_(log_sums[i, a:b]).exp_().mul_(weight_p)
                    valid = labels[i, a:b] != ctx.ignore_index
                    safe = torch.where(valid, labels[i, a:b], 0).long()
                    out.scatter_add_(0, safe.unsqueeze(0), -weight.unsqueeze(0))
                    if ctx.smoothing is not None:  # the uniform part of the target: - (eps / C) w_k
                        out.addcmul_(smooth_w.unsqueeze(1), (up * valid).unsqueeze(0), value=-ctx.smoothing)
                    if out.data_ptr() != grad_flat[i, :, a:b].data_ptr():
                        grad_flat[i, :, a:b].copy_(out)
        return grad, None, None, None, None, None, None


def _dual_focal_block(z: torch.Tensor, t: torch.Tensor, alpha: float, beta: float, gamma: float, rho: float,
                      work: torch.Tensor, grad_out: torch.Tensor | None) -> torch.Tensor:
    """Dual Focal Loss of one block ``z`` ``(C, B)``, safe target ``t`` ``(B,)``; its gradient into ``grad_out``.

    With ``p = softmax(z)``, ``a`` the argmax, ``r_c = p_c / (rho - p_c)``, ``M = (1 - p_t)^gamma``,
    ``P = sum_{c != t} p_c^gamma`` and ``R' = sum_{c not in {t, a}} r_c``, the gradient is::

        dL/dz_k = p_k K + beta r_k + alpha gamma p_k^gamma              (k not in {t, a})
        K = 1 - beta R' - alpha gamma P - beta r_a [a != t] + alpha gamma (1 - p_t)^(gamma - 1) p_t

    with the entries at ``t`` and ``a`` set from per-pixel closed forms. ``r_a`` (``rho = 1``,
    confidently wrong) and ``(1 - p_t)^(gamma - 1)`` (``gamma < 1``, confidently right) can
    overflow, but only multiplied by probabilities that cancel them, so ``K`` is formed in
    float64 as ``e^L K_s`` (``L`` the largest log-magnitude of its terms: no overflow at any
    margin) and ``p_k K`` as ``exp((z_k - m) - (log s - L - log|K_s|))``. ``work`` is ``(3, C, >= B)``.
    """
    c, b = z.shape
    t2 = t.unsqueeze(0)
    shifted, probs, logs = work[0, :, :b], work[1, :, :b], work[2, :, :b]
    m, argmax = z.max(dim=0)
    a2 = argmax.unsqueeze(0)
    torch.sub(z, m, out=shifted)
    torch.exp(shifted, out=probs)
    probs.scatter_(0, a2, 0.0)
    s_not_a = probs.sum(dim=0)  # sum of exp(z_c - m) over c != a: 1 - p_a without cancellation
    probs.scatter_(0, a2, 1.0)
    log_s = torch.log1p(s_not_a)
    probs.div_(torch.exp(log_s))
    log_s_not_a = s_not_a.clamp_min(1e-38).log()
    tiny = s_not_a < 1e-30  # the other classes underflow: take their log-sum-exp in log space instead
    if bool(tiny.any()):
        cols = tiny.nonzero().squeeze(1)
        others = shifted[:, cols].scatter(0, argmax[cols].unsqueeze(0), -math.inf)
        log_s_not_a[cols] = torch.logsumexp(others, dim=0)
    log1m_pa = log_s_not_a - log_s
    is_a = t == argmax
    log_pt = shifted.gather(0, t2)[0] - log_s
    p_t = log_pt.exp()
    log1m_pt = torch.where(is_a, log1m_pa, torch.log1p(-torch.where(is_a, 0.0, p_t)))
    # log(rho - p_c); at a from log(1 - p_a) in log space
    log_rho_pa = log1m_pa if rho == 1 else torch.logaddexp(log1m_pa, torch.tensor(math.log(rho - 1), dtype=z.dtype, device=z.device))
    if rho == 1:
        torch.log1p(-probs.scatter(0, a2, 0.0), out=logs)
    else:
        torch.log(torch.rsub(probs, rho), out=logs)
    logs.scatter_(0, a2, log_rho_pa.unsqueeze(0)).scatter_(0, t2, 0.0)
    false_sum = logs.sum(dim=0)  # sum_{c != t} log(rho - p_c)
    # p_c^gamma for c != t (reuses `probs`)
    if gamma != 1:
        torch.sub(shifted, log_s, out=probs).mul_(gamma).exp_()
    probs.scatter_(0, t2, 0.0)
    power_sum = probs.sum(dim=0)
    modulator = torch.exp(gamma * log1m_pt)
    loss = -log_pt - beta * false_sum + alpha * (modulator + power_sum)
    if grad_out is None:
        return loss
    # r_c = exp(log p_c - log(rho - p_c)) for c not in {t, a} (reuses `logs`)
    torch.sub(shifted, logs, out=logs).sub_(log_s).exp_()
    logs.scatter_(0, t2, 0.0).scatter_(0, a2, 0.0)
    r_sum = logs.sum(dim=0)
    f64 = torch.float64
    ag = alpha * gamma
    log_pa = -log_s.to(f64)
    k1 = 1.0 - beta * r_sum.to(f64) - ag * power_sum.to(f64)
    log_ra = log_pa - log_rho_pa.to(f64)  # log r_a: beyond float64's range as a number at margins > ~700
    log_tq = (gamma - 1.0) * log1m_pt.to(f64) + log_pt.to(f64)
    # K = e^L K_s with L the largest of the log-magnitudes of its big terms: no overflow at any margin
    minus_inf = torch.full_like(k1, -math.inf)
    log_ra_term = torch.where(is_a, minus_inf, log_ra)  # r_a is not a term when a = t
    log_tq_term = log_tq if ag != 0 else minus_inf
    big = torch.maximum(torch.maximum(log_ra_term, log_tq_term), torch.zeros_like(k1))
    k_scaled = k1 * torch.exp(-big) - beta * torch.exp(log_ra_term - big) + ag * torch.exp(log_tq_term - big)
    shift = (log_s.to(f64) - big - torch.log(k_scaled.abs().clamp_min(1e-300))).to(z.dtype)
    torch.sub(shifted, shift, out=grad_out).exp_()
    if bool((k_scaled < 0).any()):
        grad_out.mul_(torch.sign(k_scaled).to(z.dtype))
    grad_out.add_(logs, alpha=beta).add_(probs, alpha=ag)
    # entries at t and at a from their closed forms
    p_t64, log_pt64 = p_t.to(f64), log_pt.to(f64)
    pt_ra = torch.where(is_a, 0.0, torch.exp((log_pt64 + log_ra).clamp(max=0.0)))  # p_t <= 1 - p_a: <= 1
    g_t = p_t64 * k1 - beta * pt_ra - 1.0 - ag * modulator.to(f64) * p_t64
    p_a = torch.exp(log_pa)
    v_a = torch.exp(log_pa + log1m_pa.to(f64) - log_rho_pa.to(f64))
    pa_tq = ag * torch.exp((log_pa + log_tq).clamp(max=700.0)) if ag != 0 else torch.zeros_like(k1)  # a != t
    g_a = p_a * k1 + beta * v_a + ag * torch.exp(gamma * log_pa) + pa_tq
    grad_out.scatter_(0, a2, torch.where(is_a, g_t, g_a).to(z.dtype).unsqueeze(0))
    grad_out.scatter_(0, t2, g_t.to(z.dtype).unsqueeze(0))
    return loss


class DualFocalFused(torch.autograd.Function):
    """Dual Focal Loss with its gradient computed in the forward pass, block by block.

    Args (of ``apply``): logits ``(N, C, *S)``; target ``(N, *S)``; ``ignore_index``;
    ``class_scale`` ``(C,)`` or None (class weights); ``params`` ``(alpha, beta, gamma, rho)``;
    ``reduction``. Returns ``(value, counts)``: the scalar (``"mean"``: sum over the sum of
    valid pixels' weights, 0 if that is 0; ``"sum"``) or the ``(N, *S)`` map (``"none"``), and
    the int64 ``(C,)`` valid-pixel counts.

    The gradient ``(N, C, *S)`` is the only full-size buffer. The first backward hands it over,
    scaled in place by the upstream gradient (nothing done for a plain ``loss.backward()``): the
    caller owns it, and nothing here writes to it again. A second backward through the same graph
    (``retain_graph``) recomputes it from the saved logits, as the Triton path does. So the logits
    (a reference, no copy) live until backward, as they do in most loops that keep the model's
    output in a variable; in ``loss = crit(model(x), y)`` that is one more logits-sized tensor alive.
    """

    @staticmethod
    def forward(ctx, logits, target, ignore_index, class_scale, params, reduction):
        value, counts, grad = DualFocalFused.run(logits, target, ignore_index, class_scale, params, reduction,
                                                 with_grad=ctx.needs_input_grad[0])
        ctx.forward_grad = grad  # handed over by the first backward (an attribute: no version counter to trip)
        ctx.save_for_backward(logits, target)  # for a second backward's recomputation; no copy
        ctx.ignore_index, ctx.class_scale, ctx.params, ctx.reduction = ignore_index, class_scale, params, reduction
        ctx.mark_non_differentiable(counts)
        return value, counts

    @staticmethod
    def run(logits, target, ignore_index, class_scale, params, reduction, with_grad: bool):
        """``(value, counts, grad)``: the loss (see the class), the valid pixels per class and, when
        ``with_grad``, ``dL/dz`` (else None), computed block by block."""
        n, c = logits.shape[:2]
        flat, labels = logits.reshape(n, c, -1), target.reshape(n, -1)
        dtype, device = _compute_dtype(logits.dtype), logits.device
        out = torch.empty(n, flat.shape[2], dtype=dtype, device=device)
        grad = torch.empty(logits.shape, dtype=dtype, device=device) if with_grad else None
        scale = None if class_scale is None else class_scale.to(dtype)
        counts = torch.bincount(torch.where(labels != ignore_index, labels, c).reshape(-1), minlength=c + 1)[:c]
        factor = 1.0
        if reduction == "mean":
            denominator = counts.sum().to(dtype) if scale is None else (counts.to(dtype) * scale).sum()
            factor = torch.where(denominator > 0, 1.0 / denominator.clamp_min(1e-30), 0.0)
        compiled = _compiled.compiled_kernels_enabled()
        ranges = list(_blocks(flat.shape[2], c, device,
                              CPU_BLOCK_DUAL_FOCAL_COMPILED if compiled else CPU_BLOCK_DUAL_FOCAL))
        if compiled:
            # without a gradient to fill, the kernel writes into a block-sized scratch view (strided like
            # a block of the gradient, so it is the same compiled variant)
            widest = max([1, *(b - a for a, b in ranges)])
            scratch = None if grad is not None else torch.empty(c, 2 * widest, dtype=dtype, device=device)
            kernel_params = _compiled.dual_focal_params(params, device)
            kernel_scale = torch.ones(c, dtype=dtype, device=device) if scale is None else scale
            factor = torch.as_tensor(factor, dtype=dtype, device=device)
        work = None if compiled else torch.empty(3, c, max([0, *(b - a for a, b in ranges)]), dtype=dtype,
                                                 device=device)
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            for i in range(n):
                for a, b in ranges:
                    block_grad = None if grad is None else grad.view(n, c, -1)[i, :, a:b]
                    if compiled:  # labels, weights and the scale are applied inside the kernel
                        values, tiny = _compiled.dual_focal(
                            flat[i, :, a:b], labels[i, a:b], ignore_index, kernel_scale, factor, kernel_params,
                            block_grad if block_grad is not None else scratch[:, : b - a])
                        if not bool(tiny):
                            out[i, a:b] = values
                            continue
                        work = torch.empty(3, c, b - a, dtype=dtype, device=device)  # margins > ~69: eager, log space
                    valid = labels[i, a:b] != ignore_index
                    safe = torch.where(valid, labels[i, a:b], 0)
                    keep = valid.to(dtype) if scale is None else valid * scale[safe]
                    values = _dual_focal_block(flat[i, :, a:b].to(dtype), safe, *params, work, block_grad) * keep
                    if block_grad is not None:
                        block_grad.mul_(keep * factor)
                    out[i, a:b] = values
            if not bool(torch.isfinite(out).all()):
                _raise_non_finite(logits)
            del work
            value = out.reshape(target.shape) if reduction == "none" else out.sum() * factor
        return value, counts, grad

    @staticmethod
    def backward(ctx, upstream, _grad_counts):
        refuse_double_backward()
        logits, target = ctx.saved_tensors
        grad, ctx.forward_grad = ctx.forward_grad, None
        if grad is None:  # handed over already: a second backward (retain_graph) recomputes it
            grad = DualFocalFused.run(logits, target, ctx.ignore_index, ctx.class_scale, ctx.params, ctx.reduction,
                                      with_grad=True)[2]
        n, c = grad.shape[:2]
        if ctx.reduction != "none":
            if not bool(upstream == 1):
                grad.mul_(upstream.to(grad.dtype))
        else:
            grad.view(n, c, -1).mul_(upstream.reshape(n, 1, -1).to(grad.dtype))
        return grad, None, None, None, None, None
