"""The region losses' per-class sums on the CPU (and any non-Triton device), block by block.

Soft Dice, Jaccard, Tversky, Focal Tversky, Generalized Dice and the Unified Focal loss's
Tversky term depend on the logits only through three per-class sums over the valid pixels::

    TP_c = sum_i p_ic [y_i = c],    P_c = sum_i p_ic,    G_c = sum_i [y_i = c]

:class:`RegionSums` computes them in one pass and, given the loss's gradient with respect to
them (``g_TP``, ``g_P``; ``G`` does not depend on the logits), writes the logits' gradient in a
second pass through the softmax's Jacobian::

    dL/dp_ic = g_P[c] + g_TP[c] [y_i = c]
    dL/dz_ik = p_ik (dL/dp_ik - sum_c p_ic dL/dp_ic)

with nothing of the logits' size alive but the gradient (no one-hot, no saved softmax): the
CPU twin of :class:`segloss.kernels.cuda_region.RegionSumsTriton`.
"""

from __future__ import annotations

import math

import torch

from segloss.kernels.cpu import _compute_dtype, _slabs, gradient_buffer


def autograd_backward(logits: torch.Tensor, grad_out: torch.Tensor, forward) -> tuple[torch.Tensor]:
    """A blockwise function's backward for ``create_graph=True``: ``forward(logits)`` again by
    plain torch ops and its vector-Jacobian product as a differentiable graph (double backward)."""
    with torch.enable_grad():  # the saved logits keep their history: the result depends on them twice over
        (grad,) = torch.autograd.grad(forward(logits), logits, grad_out, create_graph=True)
    return (grad,)


def labelled_autograd_backward(ctx, grad_out: torch.Tensor, forward) -> tuple:
    """:func:`autograd_backward` of a function of ``(logits, target, ignore_index, per_image)``
    that saved ``(logits, target)`` and kept ``ctx.ignore_index``, ``ctx.per_image``."""
    logits, target = ctx.saved_tensors
    return autograd_backward(logits, grad_out, lambda z: forward(z, target, ctx.ignore_index, ctx.per_image)) + (
        None, None, None)


def region_sums_autograd(logits, target, ignore_index, per_image):
    """:class:`RegionSums`' ``(M, 3, C)`` by plain torch ops (no one-hot: scatter-adds and a
    matrix-vector product with the valid mask); ``torch.func`` transforms and double backward use it."""
    with torch.autocast(logits.device.type, enabled=False):  # the sums in float32: autocast would run bmm in fp16
        return _region_sums_plain(logits, target, ignore_index, per_image)


def _region_sums_plain(logits, target, ignore_index, per_image):
    z = logits if logits.dtype == torch.float64 else logits.float()
    n, c = z.shape[:2]
    pixels = math.prod(z.shape[2:])  # explicit: N = 0 leaves -1 undetermined
    valid = (target != ignore_index).reshape(n, pixels, 1).to(z.dtype)
    probs = z.softmax(dim=1).reshape(n, c, pixels)
    safe = torch.where(target != ignore_index, target, 0).reshape(n, 1, pixels).long()
    p_t = probs.gather(1, safe) * valid.transpose(1, 2)
    tp = torch.zeros(n, c, dtype=z.dtype, device=z.device).scatter_add(1, safe[:, 0], p_t[:, 0])
    truth = torch.zeros(n, c, dtype=z.dtype, device=z.device).scatter_add(1, safe[:, 0], valid[:, :, 0])
    sums = torch.stack([tp, torch.bmm(probs, valid)[:, :, 0], truth], dim=1)
    return sums if per_image else sums.sum(dim=0, keepdim=True)


class RegionSums(torch.autograd.Function):
    """``(M, 3, C)`` sums ``(TP, P, G)`` per image (``M = N``) or over the batch (``M = 1``).

    Args (of ``apply``): logits ``(N, C, *S)`` (validated by the caller); target ``(N, *S)``;
    ``ignore_index``; ``per_image``. The sums are float32 (float64 for float64 logits).
    """

    @staticmethod
    def forward(ctx, logits, target, ignore_index, per_image):
        n, c = logits.shape[:2]
        pixels = logits[0, 0].numel() if n else 0
        dtype, device = _compute_dtype(logits.dtype), logits.device
        flat, labels = logits.reshape(n, c, pixels), target.reshape(n, pixels)
        sums = torch.zeros(n, 3, c, dtype=dtype, device=device)
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            for images, cols in _slabs(n, pixels, c, device):  # (k, C, B) at a time
                valid = labels[images, cols] != ignore_index
                safe = torch.where(valid, labels[images, cols], 0).long()
                probs = flat[images, :, cols].to(dtype).softmax(dim=1).mul_(valid.unsqueeze(1))
                sums[images, 0].scatter_add_(1, safe, probs.gather(1, safe.unsqueeze(1)).squeeze(1))
                sums[images, 1] += probs.sum(dim=2)
                sums[images, 2].scatter_add_(1, safe, valid.to(dtype))
        ctx.save_for_backward(logits, target)
        ctx.ignore_index, ctx.per_image = ignore_index, bool(per_image)
        return sums if per_image else sums.sum(dim=0, keepdim=True)

    @staticmethod
    def backward(ctx, grad_sums):
        if torch.is_grad_enabled():  # create_graph=True: the same gradient, as a graph (plain torch ops)
            return labelled_autograd_backward(ctx, grad_sums, region_sums_autograd)
        logits, target = ctx.saved_tensors
        n, c = logits.shape[:2]
        grad, grad_flat = gradient_buffer(logits)
        pixels = grad_flat.shape[2]
        flat, labels = logits.reshape(n, c, pixels), target.reshape(n, pixels)
        dtype = grad_sums.dtype
        with torch.no_grad(), torch.autocast(logits.device.type, enabled=False):
            for images, cols in _slabs(n, pixels, c, logits.device):  # (k, C, B) at a time
                g = grad_sums[images] if ctx.per_image else grad_sums[:1].expand(images.stop - images.start, -1, -1)
                g_tp, g_p = g[:, 0], g[:, 1].unsqueeze(2)  # (k, C), (k, C, 1)
                valid = labels[images, cols] != ctx.ignore_index
                safe = torch.where(valid, labels[images, cols], 0).long()
                probs = flat[images, :, cols].to(dtype).softmax(dim=1)
                p_t = probs.gather(1, safe.unsqueeze(1))
                # p_y g_TP[y]: the true class's part of sum_c p_c dL/dp_c
                extra = p_t * g_tp.gather(1, safe).unsqueeze(1)
                inner = (probs * g_p).sum(dim=1, keepdim=True) + extra
                block = probs.mul_(g_p - inner)
                block.scatter_add_(1, safe.unsqueeze(1), extra)
                grad_flat[images, :, cols] = block.mul_(valid.unsqueeze(1)).to(grad.dtype)
        return grad, None, None, None
