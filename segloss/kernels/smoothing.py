"""The label-smoothing term of cross-entropy, block by block (any device).

With smoothing ``eps`` the target is ``(1 - eps) onehot(y) + eps / C`` (Szegedy et al. 2016), so
cross-entropy gains, per pixel and with class weights ``w`` (all 1 without them)::

    S_i = (1/C) sum_c w_c (-log p_c) = (1/C) (W lse_i - sum_c w_c z_c),   W = sum_c w_c
    dS_i/dz_k = (1/C) (W p_k - w_k)

and ``CE_ls = (1 - eps) w_y CE_i + eps S_i`` (torch's ``F.cross_entropy(label_smoothing=eps)``).
:class:`SmoothingTerm` computes ``S`` in one pass and its gradient in one more, in blocks of
pixels with no temporary of the logits' size but the gradient, next to the fused CE of
:mod:`segloss.kernels.cpu` (or the Triton kernels on CUDA).
"""

from __future__ import annotations

import torch

from segloss.kernels.cpu import _blocks, _compute_dtype, _raise_non_finite, gradient_buffer, refuse_double_backward


class SmoothingTerm(torch.autograd.Function):
    """``S_i`` ``(N, *S)`` for logits ``(N, C, *S)``: 0 at ignored pixels.

    Args (of ``apply``): logits; target ``(N, *S)`` (only its ignored pixels matter);
    ``ignore_index``; ``weight`` ``(C,)`` or None.
    """

    @staticmethod
    def forward(ctx, logits, target, ignore_index, weight):
        n, c = logits.shape[:2]
        pixels = logits[0, 0].numel() if n else 0
        flat, labels = logits.reshape(n, c, pixels), target.reshape(n, pixels)
        dtype = _compute_dtype(logits.dtype)
        w = torch.ones(c, dtype=dtype, device=logits.device) if weight is None else weight.to(dtype)
        total_w = w.sum()
        out = torch.zeros(n, pixels, dtype=dtype, device=logits.device)
        with torch.no_grad(), torch.autocast(logits.device.type, enabled=False):
            for i in range(n):
                for a, b in _blocks(pixels, c, logits.device):
                    z = flat[i, :, a:b].to(dtype)
                    lse = torch.logsumexp(z, dim=0)
                    value = (total_w * lse - (w[:, None] * z).sum(dim=0)) / c
                    out[i, a:b] = torch.where(labels[i, a:b] != ignore_index, value, 0.0)
            if not bool(torch.isfinite(out).all()):  # a -inf logit: its class's -log p is infinite
                _raise_non_finite(logits)
        ctx.save_for_backward(logits, target, w)
        ctx.ignore_index = ignore_index
        return out.reshape(target.shape)

    @staticmethod
    def backward(ctx, grad_out):
        refuse_double_backward()
        logits, target, w = ctx.saved_tensors
        n, c = logits.shape[:2]
        grad, grad_flat = gradient_buffer(logits)
        pixels = grad_flat.shape[2]
        flat, labels = logits.reshape(n, c, pixels), target.reshape(n, pixels)
        upstream = grad_out.reshape(n, pixels)
        total_w = w.sum()
        with torch.no_grad(), torch.autocast(logits.device.type, enabled=False):
            for i in range(n):
                for a, b in _blocks(pixels, c, logits.device):
                    z = flat[i, :, a:b].to(w.dtype)
                    scale = torch.where(labels[i, a:b] != ctx.ignore_index, upstream[i, a:b].to(w.dtype), 0.0) / c
                    probs = torch.softmax(z, dim=0)
                    grad_flat[i, :, a:b] = (scale * (total_w * probs - w[:, None])).to(grad.dtype)
        return grad, None, None, None
