"""Straightforward autograd implementations of the losses: the test oracle of the fast path.

Each loss is written the obvious way from ``LOSS_MATH.md`` with plain torch ops and autograd
for the gradient, numerically careful (log-space ``1 - p``, no ``log(softmax)``), but with no
regard for speed or memory. :mod:`segloss.functional` computes the same values through
:mod:`segloss.kernels.cpu`; the tests compare the two on random, extreme and fp16 inputs. The
functional API also falls back to these when a loss parameter is a tensor that requires a
gradient (e.g. learnable Dual Focal parameters).

``*_pixels`` functions take validated float logits ``z`` ``(N, C, *S)`` and a safe target
``(N, *S)`` (ignored pixels replaced by 0) and return unmasked per-pixel values ``(N, *S)``.
"""

from __future__ import annotations

import math

import torch

from segloss.losses._checks import Number, check_logits_target, check_number, check_reduction, class_vector
from segloss.losses._reduction import reduce_map


def prepare(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, reduction: str):
    """Validate, upcast half precision, and return ``(z, valid, safe_target)``."""
    check_reduction(reduction)
    target = check_logits_target(logits, target, ignore_index)
    z = logits if logits.dtype == torch.float64 else logits.float()
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    return z, valid, safe


def at_target(values: torch.Tensor, safe: torch.Tensor) -> torch.Tensor:
    """Pick ``values[n, safe[n, ...], ...]``: ``(N, C, *S), (N, *S) -> (N, *S)``."""
    return values.gather(1, safe.unsqueeze(1)).squeeze(1)


def target_mask(like: torch.Tensor, safe: torch.Tensor) -> torch.Tensor:
    """Boolean one-hot of ``safe`` with the shape of ``like`` ``(N, C, *S)``: a comparison, not a
    scatter, so that ``torch.compile`` fuses it into its users instead of materialising it."""
    classes = torch.arange(like.shape[1], device=like.device).view(1, -1, *(1,) * (like.dim() - 2))
    return classes == safe.unsqueeze(1)


def reduce(pixel_loss, valid, safe, weight, reduction):
    """Apply class weights, zero ignored pixels and reduce (mean divides by sum of weights)."""
    if weight is not None:
        pixel_weight = weight[safe]
        pixel_loss = pixel_loss * pixel_weight
        denominator = torch.where(valid, pixel_weight, torch.zeros_like(pixel_weight)).sum()
    else:
        denominator = valid.sum().to(pixel_loss.dtype)
    return reduce_map(torch.where(valid, pixel_loss, torch.zeros_like(pixel_loss)), denominator, reduction)


def log1m_probs(z: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """``log(1 - p_c)`` for every class, accurate at saturated logits.

    Only the argmax class can have ``p_c > 1/2``; for it ``log(1 - p_c)`` is a log-sum-exp over
    the other classes. Elsewhere ``log1p(-p_c)``, evaluated on a copy of ``p`` with the argmax
    zeroed so that its unused ``torch.where`` branch cannot leak NaN into the gradient.
    """
    is_max = target_mask(z, z.argmax(dim=1))
    log1m_max = torch.logsumexp(logp.masked_fill(is_max, -math.inf), dim=1, keepdim=True)
    p_others = logp.exp().masked_fill(is_max, 0.0)
    return torch.where(is_max, log1m_max, torch.log1p(-p_others))


def power(log_base: torch.Tensor, gamma: Number) -> torch.Tensor:
    """``base ** gamma`` as ``exp(gamma * log base)``: finite gradient at 0 for ``0 < gamma < 1``."""
    if isinstance(gamma, (int, float)) and gamma == 0:
        return torch.ones_like(log_base)
    return torch.exp(gamma * log_base)


def focal_pixels(z: torch.Tensor, safe: torch.Tensor, gamma: Number) -> torch.Tensor:
    """``-(1 - p_t)^gamma log p_t`` per pixel; ``log(1 - p_t)`` as a log-sum-exp over the other classes."""
    logp = z.log_softmax(dim=1)
    log1m_pt = torch.logsumexp(logp.masked_fill(target_mask(logp, safe), -math.inf), dim=1)
    return -power(log1m_pt, gamma) * at_target(logp, safe)


def dual_focal_pixels(z: torch.Tensor, safe: torch.Tensor, alpha: Number, beta: Number, gamma: Number,
                      rho: Number) -> torch.Tensor:
    """``sum_c [-y_c log p_c - beta (1 - y_c) log(rho - p_c) + alpha |y_c - p_c|^gamma]`` per pixel."""
    logp = z.log_softmax(dim=1)
    is_target = target_mask(logp, safe)
    log1m_p = log1m_probs(z, logp)
    if isinstance(rho, (int, float)) and rho == 1:
        log_rho_minus_p = log1m_p
    else:  # log(rho - p) = log((rho - 1) + (1 - p))
        rho_t = torch.as_tensor(rho, dtype=z.dtype, device=z.device)
        at_one = rho_t == 1  # a tensor rho of exactly 1: log(rho - 1) = -inf has no derivative there
        general = torch.logaddexp(log1m_p, torch.log(torch.where(at_one, 2.0, rho_t) - 1.0))
        # at rho = 1: log(1 - p) + (rho - 1) / (1 - p), exact in value, its rho-derivative 1 / (1 - p),
        # capped at e^60 as in the CUDA kernels (past it the exact value overflows float32; no inf
        # even in the unselected branch, whose gradient would be 0 x inf)
        first_order = log1m_p + (rho_t - 1.0) * torch.exp((-log1m_p).clamp_max(60.0))
        log_rho_minus_p = torch.where(at_one, first_order, general)
    false_term = -log_rho_minus_p.masked_fill(is_target, 0.0).sum(dim=1)
    log_abs_error = torch.where(is_target, log1m_p, logp)  # log |y_c - p_c|
    focal_term = power(log_abs_error, gamma).sum(dim=1)
    return -at_target(logp, safe) + beta * false_term + alpha * focal_term


def cross_entropy(logits, target, *, weight=None, ignore_index=255, reduction="mean"):
    """Oracle of :func:`segloss.functional.cross_entropy`."""
    z, valid, safe = prepare(logits, target, ignore_index, reduction)
    w = class_vector(weight, z.shape[1], "weight", z)
    return reduce(-at_target(z.log_softmax(dim=1), safe), valid, safe, w, reduction)


def focal_loss(logits, target, *, gamma=2.0, alpha=None, weight=None, ignore_index=255, reduction="mean"):
    """Oracle of :func:`segloss.functional.focal_loss`."""
    check_number(gamma, "gamma", low=0.0)
    z, valid, safe = prepare(logits, target, ignore_index, reduction)
    w = class_vector(weight, z.shape[1], "weight", z)
    loss = focal_pixels(z, safe, gamma)
    if alpha is not None:
        if isinstance(alpha, (int, float)) or (isinstance(alpha, torch.Tensor) and alpha.dim() == 0):
            check_number(alpha, "alpha", low=0.0)
            loss = loss * alpha
        else:
            loss = loss * class_vector(alpha, z.shape[1], "alpha", z)[safe]
    return reduce(loss, valid, safe, w, reduction)


def dual_focal_loss(logits, target, *, alpha=1.0, beta=1.0, gamma=1.0, rho=1.0, weight=None, ignore_index=255,
                    reduction="mean"):
    """Oracle of :func:`segloss.functional.dual_focal_loss`."""
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_number(value, name, low=0.0)
    check_number(rho, "rho", low=1.0)
    z, valid, safe = prepare(logits, target, ignore_index, reduction)
    w = class_vector(weight, z.shape[1], "weight", z)
    return reduce(dual_focal_pixels(z, safe, alpha, beta, gamma, rho), valid, safe, w, reduction)


def recall_weighted_ce(logits, target, recall_weights, *, weight=None, ignore_index=255, reduction="mean"):
    """Oracle of :func:`segloss.functional.recall_weighted_ce`."""
    z, valid, safe = prepare(logits, target, ignore_index, reduction)
    w = class_vector(weight, z.shape[1], "weight", z)
    scale = class_vector(recall_weights.detach(), z.shape[1], "recall_weights", z)
    return reduce(-scale[safe] * at_target(z.log_softmax(dim=1), safe), valid, safe, w, reduction)
