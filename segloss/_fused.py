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

``ChunkedRecompute`` is for Dual Focal Loss: the forward pass evaluates the reference formula
block by block without keeping a graph; the backward pass recomputes each block under autograd.
Memory is the gradient plus one block's temporaries; the values are the reference's exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def _blocks(num_pixels: int, num_classes: int, device: torch.device) -> Iterator[tuple[int, int]]:
    """Pixel ranges covering ``[0, num_pixels)``, about 2^19 (CPU) or 2^25 (GPU) elements each."""
    budget = (1 << 19) if device.type == "cpu" else (1 << 25)
    size = max(1024, budget // max(num_classes, 1))
    for start in range(0, num_pixels, size):
        yield start, min(num_pixels, start + size)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _raise_non_finite(logits: torch.Tensor) -> None:
    n_nan, n_inf = int(torch.isnan(logits).sum()), int(torch.isinf(logits).sum())
    raise ValueError(
        f"logits contain {n_nan} NaN and {n_inf} Inf values (shape {tuple(logits.shape)}); "
        "check the model output or the learning rate"
    )


def _index_dtype(num_classes: int) -> torch.dtype:
    """Smallest integer dtype that holds a class index (saved argmax: 1 byte per pixel for C <= 256)."""
    return torch.uint8 if num_classes <= 256 else torch.int32


def _focal_block(z: torch.Tensor, t: torch.Tensor, gamma: float, work: torch.Tensor):
    """``(loss, coef, argmax, log_s)`` for one block ``z`` ``(C, B)``, safe target ``t`` ``(1, B)``.

    The scale is not applied. ``log_s = log sum_c exp(z_c - m)`` with ``m`` the max over classes
    (at index ``argmax``), so ``lse = m + log_s``. ``work`` is a reusable ``(C, >= B)`` buffer.
    """
    m, argmax = z.max(dim=0)
    e = torch.sub(z, m, out=work[:, : z.shape[1]])
    e.exp_()
    e_t = e.gather(0, t).squeeze(0)
    z_t = z.gather(0, t).squeeze(0)
    if gamma == 0:
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


class FocalFamily(torch.autograd.Function):
    """Per-pixel ``-s (1 - p_t)^gamma log p_t`` with an analytic, in-place backward.

    Args (of ``apply``): logits ``(N, C, *S)`` (any float dtype; math in float32, float64
    kept); target ``(N, *S)`` integer; ``ignore_index``; ``gamma`` a float ``>= 0``;
    ``class_scale`` ``(C,)`` or None, the scale ``s = class_scale[y]``; ``scale_from_counts``
    or None, called once with the ``(C,)`` counts of valid pixels and of those whose argmax is
    their label (found in the same pass) and returning ``class_scale`` (recall loss's weights
    depend on the batch's predictions).

    Returns ``(pixel_loss, counts)``: ``(N, *S)`` in the compute dtype, 0 at ignored pixels,
    and the int64 ``(C,)`` valid-pixel counts per class (for the "mean" denominators).
    Nothing of per-pixel-per-class size is kept for backward but the logits themselves.
    """

    @staticmethod
    def forward(ctx, logits, target, ignore_index, gamma, class_scale, scale_from_counts):
        n, c = logits.shape[:2]
        flat, labels = logits.reshape(n, c, -1), target.reshape(n, -1)
        num_pixels = flat.shape[2]
        dtype, device = _compute_dtype(logits.dtype), logits.device
        loss = torch.empty(n, num_pixels, dtype=dtype, device=device)
        coef = torch.ones_like(loss)
        log_sums = torch.empty_like(loss)
        argmaxes = torch.empty(n, num_pixels, dtype=_index_dtype(c), device=device)
        counts = torch.zeros(2, c + 1, dtype=torch.int64, device=device)  # valid pixels, argmax hits
        ranges = list(_blocks(num_pixels, c, device))
        work = torch.empty(c, max((b - a for a, b in ranges), default=0), dtype=dtype, device=device)
        with torch.autocast(device.type, enabled=False):
            for i in range(n):
                for a, b in ranges:
                    valid = labels[i, a:b] != ignore_index
                    label = torch.where(valid, labels[i, a:b], c).long()
                    safe = torch.where(valid, label, 0).unsqueeze(0)
                    block_loss, block_coef, argmax, log_s = _focal_block(flat[i, :, a:b].to(dtype), safe, gamma, work)
                    loss[i, a:b] = block_loss * valid
                    log_sums[i, a:b] = log_s
                    argmaxes[i, a:b] = argmax
                    coef[i, a:b] = valid if block_coef is None else block_coef * valid
                    counts[0] += torch.bincount(label, minlength=c + 1)
                    if scale_from_counts is not None:
                        counts[1] += torch.bincount(torch.where(argmax == label, label, c), minlength=c + 1)
            del work
            if not (bool(torch.isfinite(log_sums).all()) and bool(torch.isfinite(loss).all())):
                _raise_non_finite(logits)
            if scale_from_counts is not None:
                class_scale = scale_from_counts(counts[0, :c], counts[1, :c])
            if class_scale is not None:
                class_scale = class_scale.to(dtype)
                for i in range(n):
                    for a, b in ranges:
                        scale = class_scale[torch.where(labels[i, a:b] != ignore_index, labels[i, a:b], 0).long()]
                        loss[i, a:b] *= scale
                        coef[i, a:b] *= scale
        ctx.save_for_backward(logits, target, argmaxes, log_sums, coef)
        ctx.ignore_index = ignore_index
        ctx.mark_non_differentiable(counts)
        return loss.reshape(target.shape), counts[0, :c]

    @staticmethod
    def backward(ctx, grad_map, _grad_counts):
        logits, target, argmaxes, log_sums, coef = ctx.saved_tensors
        n, c = logits.shape[:2]
        dtype, device = log_sums.dtype, logits.device
        flat, labels, upstream = logits.reshape(n, c, -1), target.reshape(n, -1), grad_map.reshape(n, -1)
        grad = torch.empty_like(logits)
        grad_flat = grad.view(n, c, -1)
        with torch.autocast(device.type, enabled=False):
            for i in range(n):
                for a, b in _blocks(flat.shape[2], c, device):
                    z = flat[i, :, a:b].to(dtype)
                    weight = coef[i, a:b] * upstream[i, a:b].to(dtype)
                    m = z.gather(0, argmaxes[i, a:b].long().unsqueeze(0))
                    out = grad_flat[i, :, a:b] if logits.dtype == dtype else torch.empty_like(z)
                    torch.sub(z, m, out=out)
                    if bool((weight >= 0).all()):  # c * softmax(z) = exp((z - m) - (log_s - log c)): one pass
                        out.sub_(log_sums[i, a:b] - weight.log()).exp_()
                    else:
                        out.sub_(log_sums[i, a:b]).exp_().mul_(weight)
                    safe = torch.where(labels[i, a:b] != ctx.ignore_index, labels[i, a:b], 0).long()
                    out.scatter_add_(0, safe.unsqueeze(0), -weight.unsqueeze(0))
                    if out.data_ptr() != grad_flat[i, :, a:b].data_ptr():
                        grad_flat[i, :, a:b].copy_(out)
        return grad, None, None, None, None, None


class ChunkedRecompute(torch.autograd.Function):
    """Per-pixel values of a reference formula with block-wise recomputation in backward.

    Args (of ``apply``): logits ``(N, C, *S)``; target ``(N, *S)``; ``ignore_index``;
    ``class_scale`` ``(C,)`` or None (multiplies pixel ``i`` by ``class_scale[y_i]``); and
    ``pixel_fn`` mapping float logits ``(1, C, B)`` and a safe target ``(1, B)`` to ``(1, B)``.
    Returns ``(pixel_loss, counts)`` as :class:`FocalFamily` does.
    """

    @staticmethod
    def forward(ctx, logits, target, ignore_index, class_scale, pixel_fn: Callable):
        n, c = logits.shape[:2]
        flat, labels = logits.reshape(n, c, -1), target.reshape(n, -1)
        dtype, device = _compute_dtype(logits.dtype), logits.device
        out = torch.empty(n, flat.shape[2], dtype=dtype, device=device)
        counts = torch.zeros(c + 1, dtype=torch.int64, device=device)
        scale = None if class_scale is None else class_scale.to(dtype)
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            for i in range(n):
                for a, b in _blocks(flat.shape[2], c, device):
                    valid = labels[i, a:b] != ignore_index
                    label = torch.where(valid, labels[i, a:b], c).long()
                    safe = torch.where(valid, label, 0)
                    values = pixel_fn(flat[i:i + 1, :, a:b].to(dtype), safe.unsqueeze(0))[0]
                    if not bool(torch.isfinite(values).all()):
                        _raise_non_finite(logits)
                    out[i, a:b] = values * (valid if scale is None else valid * scale[safe])
                    counts += torch.bincount(label, minlength=c + 1)
        ctx.save_for_backward(logits, target, scale)
        ctx.ignore_index, ctx.pixel_fn = ignore_index, pixel_fn
        ctx.mark_non_differentiable(counts)
        return out.reshape(target.shape), counts[:c]

    @staticmethod
    def backward(ctx, grad_map, _grad_counts):
        logits, target, scale = ctx.saved_tensors
        n, c = logits.shape[:2]
        flat, labels, upstream = logits.reshape(n, c, -1), target.reshape(n, -1), grad_map.reshape(n, -1)
        dtype, device = _compute_dtype(logits.dtype), logits.device
        grad = torch.empty_like(logits)
        grad_flat = grad.view(n, c, -1)
        with torch.enable_grad(), torch.autocast(device.type, enabled=False):
            for i in range(n):
                for a, b in _blocks(flat.shape[2], c, device):
                    valid = labels[i, a:b] != ctx.ignore_index
                    safe = torch.where(valid, labels[i, a:b], 0).long()
                    weight = upstream[i, a:b].to(dtype) * (valid if scale is None else valid * scale[safe])
                    block = flat[i:i + 1, :, a:b].detach().to(dtype).requires_grad_()
                    values = ctx.pixel_fn(block, safe.unsqueeze(0))
                    (block_grad,) = torch.autograd.grad(values, block, weight.unsqueeze(0))
                    grad_flat[i, :, a:b] = block_grad[0]
        return grad, None, None, None, None
