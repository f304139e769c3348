"""Lovász-Softmax (Berman, Rannen Triki, Blaschko 2018) with one batched sort and little memory.

A *row* is one class over the batch's valid pixels (``per_image=False``) or one class of one
image. With ``e_i = |[y_i = c] - p_ic|`` the errors of a row's ``K`` pixels sorted in decreasing
order (ignored pixels last, with key -1 and no ground truth), ``fg_k`` the sorted ground truth and
``G`` its total, the Lovász extension of the Jaccard loss is (the authors' ``lovasz_grad``)::

    I_k = G - sum_{j<=k} fg_j,    U_k = G + sum_{j<=k} (1 - fg_j) = I_k + k + 1
    g_k = J_k - J_{k-1},   J_k = 1 - I_k / U_k,   J_{-1} = 0
    loss = sum_k max(e_k, 0) g_k

``g`` depends on the labels and the order only, so ``dloss/de`` at each pixel is ``g`` at its
rank (ties do not change the loss, only how its gradient is split among them).
:class:`LovaszSoftmax` forms ``g`` in forward and scatters it back to pixel order, so what lives
from forward to backward is one float per logit, and the forward's peak is about 5 floats per logit
(the sort's keys and 64-bit order, the ranks' running counts) instead of every autograd
intermediate (15 per logit). Backward multiplies by the upstream, by ``de/dp = -1`` at the true
class (``+1`` elsewhere) and applies the softmax's Jacobian ``dz_k = p_k (dp_k - sum_c p_c dp_c)``
to a recomputed softmax. :func:`lovasz_rows_autograd` is the same loss by differentiable torch
ops (double backward, ``torch.func``); both take ``g`` from :func:`lovasz_gradient`.
"""

from __future__ import annotations

import math

import torch

from segloss.kernels.cpu import _compute_dtype, gradient_buffer
from segloss.kernels.region_sums import labelled_autograd_backward


def lovasz_gradient(fg_sorted: torch.Tensor, dtype: torch.dtype, in_place: bool = True) -> torch.Tensor:
    """``g`` ``(R, K)`` in ``dtype`` from the sorted ground truth ``fg_sorted`` (bool ``(R, K)``).

    In place where it can (two floats per element at the peak). The ratios ``I_k / U_k`` are
    formed once and ``g`` as their differences: the loss ``sum e_k g_k`` then telescopes to
    ``sum_k r_k (e_{k+1} - e_k)`` with each rounding error of ``r`` entering once.
    ``in_place=False``: the same by new tensors, for :func:`lovasz_rows_autograd`, which keeps every
    intermediate anyway and runs inside ``torch.func.vmap`` (a batched value cannot be written into
    a plain tensor).
    """
    rows, k = fg_sorted.shape
    if not in_place and k:
        counts = fg_sorted.cumsum(1, dtype=torch.int64)  # exact: float32 counting stalls past 2^24 pixels
        intersection = (counts[:, -1:] - counts).to(dtype)
        ratio = intersection / (intersection + torch.arange(1, k + 1, dtype=dtype, device=fg_sorted.device))
        return torch.cat([1.0 - ratio[:, :1], ratio[:, :-1] - ratio[:, 1:]], dim=1)
    g = torch.zeros(rows, k, dtype=dtype, device=fg_sorted.device)
    if k == 0:
        return g
    counts = fg_sorted.cumsum(1, dtype=torch.int32 if k < 2**31 else torch.int64)
    total = counts[:, -1:].to(dtype)  # G: the last running count
    g.copy_(counts)
    del counts
    intersection = g.neg_().add_(total)  # I_k = G - sum_{j<=k} fg_j
    ratio = torch.arange(1, k + 1, dtype=dtype, device=g.device).add(intersection)  # U_k = I_k + k + 1 >= 1
    ratio.reciprocal_().mul_(intersection)
    g[:, 0] = 1.0 - ratio[:, 0]  # g_0 = J_0 - 0
    g[:, 1:].copy_(ratio[:, :-1]).sub_(ratio[:, 1:])  # g_k = r_{k-1} - r_k (no out=: torch.compile traces this)
    return g


def _softmax_(x: torch.Tensor, dim: int) -> torch.Tensor:
    x.sub_(x.amax(dim, keepdim=True)).exp_()
    return x.div_(x.sum(dim, keepdim=True))


def _rows_layout(logits, target, ignore_index, per_image):
    """``(probs, class_dim, labels)``: the softmax in float32 (float64 kept) laid out so each row
    is contiguous: ``(N, C, P)`` per image, ``(C, N, P)`` over the batch; labels ``(N, P)``."""
    n, c = logits.shape[:2]
    pixels = math.prod(logits.shape[2:])
    flat = logits.reshape(n, c, pixels)
    dtype = _compute_dtype(logits.dtype)
    if per_image:
        probs = flat.to(dtype, copy=True, memory_format=torch.contiguous_format)
    else:
        probs = torch.empty(c, n, pixels, dtype=dtype, device=logits.device)
        probs.copy_(flat.transpose(0, 1))
    class_dim = 1 if per_image else 0
    return _softmax_(probs, class_dim), class_dim, target.reshape(n, pixels).long()  # uint8 masks index too


def _lovasz_forward(logits, target, ignore_index, per_image):
    """``(per-row losses (N, C) or (1, C), dloss/de in pixel order, laid out as the rows)``."""
    n, c = logits.shape[:2]
    with torch.no_grad(), torch.autocast(logits.device.type, enabled=False):
        errors, class_dim, labels = _rows_layout(logits, target, ignore_index, per_image)
        valid = labels != ignore_index
        at_label = torch.where(valid, labels, 0).unsqueeze(class_dim)
        errors.scatter_(class_dim, at_label, errors.gather(class_dim, at_label).neg_().add_(1.0))  # 1 - p_y
        errors.masked_fill_(~valid.unsqueeze(class_dim), -1.0)
        rows, row_length = (n * c, errors.shape[2]) if per_image else (c, n * errors.shape[2])
        keys, order = errors.view(rows, row_length).sort(dim=1, descending=True)
        del errors
        small = torch.where(valid, labels, -1).to(torch.int16 if c < 2**15 else torch.int32)
        if per_image:  # a row (i, c) ranks image i's pixels
            ranked = order.view(n, c, row_length)
            sorted_labels = small.unsqueeze(1).expand(n, c, row_length).gather(2, ranked).view(rows, row_length)
            classes = torch.arange(c, device=logits.device).repeat(n).unsqueeze(1)
        else:  # a row c ranks every pixel of the batch
            sorted_labels = small.view(-1)[order]
            classes = torch.arange(c, device=logits.device).unsqueeze(1)
        fg_sorted = sorted_labels == classes
        del sorted_labels
        g = lovasz_gradient(fg_sorted, keys.dtype)
        del fg_sorted
        g.masked_fill_(keys < 0, 0.0)  # ignored pixels: key -1, clamped to 0 with no gradient
        losses = keys.clamp_min_(0.0).mul_(g).sum(dim=1)
        del keys
        grad_errors = torch.empty_like(g).scatter_(1, order, g)
    pixels = row_length if per_image else math.prod(logits.shape[2:])
    layout = (n, c, pixels) if per_image else (c, n, pixels)
    return losses.view(n if per_image else 1, c), grad_errors.view(layout)


def lovasz_rows_autograd(logits, target, ignore_index, per_image):
    """:class:`LovaszSoftmax`'s per-row losses by differentiable torch ops (every intermediate kept)."""
    z = logits if logits.dtype == torch.float64 else logits.float()
    n, c = z.shape[:2]
    probs = z.softmax(dim=1).reshape(n, c, math.prod(z.shape[2:]))
    labels = target.reshape(n, 1, probs.shape[2])
    if not per_image:  # the batch as one image: (1, C, N * P)
        probs, labels = probs.movedim(1, 0).reshape(1, c, -1), labels.movedim(1, 0).reshape(1, 1, -1)
    valid = (labels != ignore_index).expand_as(probs)
    fg = (labels == torch.arange(c, device=labels.device).view(1, c, 1)) & valid
    errors = torch.where(valid, (fg.to(z.dtype) - probs).abs(), -1.0).flatten(0, 1)
    keys, order = errors.sort(dim=1, descending=True)
    g = lovasz_gradient(fg.flatten(0, 1).gather(1, order), keys.dtype, in_place=False)  # vmap takes no in-place
    return (keys.clamp_min(0.0) * g).sum(dim=1).view(-1, c)


class LovaszSoftmax(torch.autograd.Function):
    """Per-class Lovász-Softmax losses ``(N, C)`` per image or ``(1, C)`` over the batch.

    Args (of ``apply``): logits ``(N, C, *S)`` (validated by the caller), target ``(N, *S)``,
    ``ignore_index``, ``per_image``. Float32 losses (float64 kept); the logits' gradient in their
    dtype and layout. A second backward (``retain_graph=True``) sorts again. ``dloss/de`` is kept on
    ``ctx`` (it is scaled in place in backward), not through ``save_for_backward``: saved-tensor
    hooks such as ``save_on_cpu`` do not move it.
    """

    @staticmethod
    def forward(ctx, logits, target, ignore_index, per_image):
        losses, ctx.grad_errors = _lovasz_forward(logits, target, ignore_index, per_image)
        ctx.save_for_backward(logits, target)
        ctx.ignore_index, ctx.per_image = ignore_index, bool(per_image)
        return losses

    @staticmethod
    def backward(ctx, grad_losses):
        if torch.is_grad_enabled():  # create_graph=True: the same gradient, as a graph (plain torch ops)
            return labelled_autograd_backward(ctx, grad_losses, lovasz_rows_autograd)
        logits, target = ctx.saved_tensors
        grad_p = ctx.grad_errors  # scaled in place: taken once, a second backward recomputes it
        ctx.grad_errors = None
        if grad_p is None:
            grad_p = _lovasz_forward(logits, target, ctx.ignore_index, ctx.per_image)[1]
        n, c = logits.shape[:2]
        with torch.no_grad(), torch.autocast(logits.device.type, enabled=False):
            grad_p.mul_(grad_losses.to(grad_p.dtype).view((n, c, 1) if ctx.per_image else (c, 1, 1)))
            probs, class_dim, labels = _rows_layout(logits, target, ctx.ignore_index, ctx.per_image)
            at_label = torch.where(labels != ctx.ignore_index, labels, 0).unsqueeze(class_dim)
            grad_p.scatter_(class_dim, at_label, grad_p.gather(class_dim, at_label).neg_())  # e = 1 - p_y there
            grad_p.mul_(probs)
            grad_p.sub_(probs.mul_(grad_p.sum(class_dim, keepdim=True)))  # p_k dp_k - p_k sum_c p_c dp_c
            del probs
            grad, grad_flat = gradient_buffer(logits)
            grad_flat.copy_(grad_p if ctx.per_image else grad_p.transpose(0, 1))
        return grad, None, None, None
