"""Class-imbalance losses for semantic segmentation, as pure functions.

Notation (see ``LOSS_MATH.md``): pixel ``i``, logits ``z_i`` over ``C`` classes,
``p_i = softmax(z_i)``, label ``y_i``, ``p_t = p_{i, y_i}``, ``V`` the valid (non-ignored) pixels.

Shared conventions of every loss here:

- ``logits``: float ``(N, C, *spatial)`` of any float dtype; half precision is computed in
  float32 (float64 stays float64). ``target``: integer ``(N, *spatial)`` with values in
  ``[0, C)`` or ``ignore_index``.
- ``weight``: optional per-class weights ``(C,)``; pixel ``i`` is scaled by ``weight[y_i]``.
- ``reduction="none"`` returns the per-pixel map ``(N, *spatial)``, exactly 0 at ignored pixels;
  ``"sum"`` sums it; ``"mean"`` divides the sum by ``|V|``, or by ``sum_{i in V} weight[y_i]``
  when ``weight`` is given (torch's convention). A batch without valid pixels gives 0, still in
  the autograd graph with zero gradient.
- All math is written to stay finite at saturated logits (e.g. +-100): ``1 - p`` and
  ``log(1 - p)`` are formed from log-probabilities, never from a rounded ``p``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist

from segloss._checks import check_logits_target, check_number, check_reduction, class_vector

Number = float | torch.Tensor
ClassWeights = torch.Tensor | Sequence[float] | None


def _prepare(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int, reduction: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate, upcast half precision, and return ``(z, valid, safe_target)``.

    ``safe_target`` equals ``target`` on valid pixels and 0 elsewhere, so it can index
    ``gather``/``scatter`` without going out of range (LOSS_MATH trap 4).
    """
    check_reduction(reduction)
    check_logits_target(logits, target, ignore_index)
    z = logits if logits.dtype == torch.float64 else logits.float()
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    return z, valid, safe


def _at_target(values: torch.Tensor, safe: torch.Tensor) -> torch.Tensor:
    """Pick ``values[n, safe[n, ...], ...]``: ``(N, C, *S), (N, *S) -> (N, *S)``."""
    return values.gather(1, safe.unsqueeze(1)).squeeze(1)


def _target_mask(like: torch.Tensor, safe: torch.Tensor) -> torch.Tensor:
    """Boolean one-hot of ``safe`` with the shape of ``like`` ``(N, C, *S)``."""
    return torch.zeros_like(like, dtype=torch.bool).scatter_(1, safe.unsqueeze(1), True)


def _reduce(
    pixel_loss: torch.Tensor,
    valid: torch.Tensor,
    safe: torch.Tensor,
    weight: torch.Tensor | None,
    reduction: str,
) -> torch.Tensor:
    """Apply class weights, zero ignored pixels and reduce (see the module docstring)."""
    if weight is not None:
        pixel_weight = weight[safe]
        pixel_loss = pixel_loss * pixel_weight
        denominator = torch.where(valid, pixel_weight, torch.zeros_like(pixel_weight)).sum()
    else:
        denominator = valid.sum().to(pixel_loss.dtype)
    pixel_loss = torch.where(valid, pixel_loss, torch.zeros_like(pixel_loss))
    if reduction == "none":
        return pixel_loss
    total = pixel_loss.sum()
    if reduction == "sum":
        return total
    has_any = denominator > 0
    safe_denominator = torch.where(has_any, denominator, torch.ones_like(denominator))
    return torch.where(has_any, total / safe_denominator, total * 0.0)


def _log1m_target(logp: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """``log(1 - p_t)`` as ``logsumexp_{c != t} log p_c``: finite even when ``p_t`` rounds to 1."""
    return torch.logsumexp(logp.masked_fill(target_mask, -math.inf), dim=1)


def _log1m_probs(z: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """``log(1 - p_c)`` for every class, ``(N, C, *S)``, accurate at saturated logits.

    Only the argmax class can have ``p_c > 1/2``; for it ``log(1 - p_c)`` is a log-sum-exp over
    the other classes (LOSS_MATH trap 1). Elsewhere ``log1p(-p_c)`` is accurate, evaluated on a
    copy of ``p`` with the argmax zeroed so its unused branch cannot produce ``log(0)`` and leak
    NaN into the gradient through ``torch.where``.
    """
    is_max = _target_mask(z, z.argmax(dim=1))
    log1m_max = torch.logsumexp(logp.masked_fill(is_max, -math.inf), dim=1, keepdim=True)
    p_others = logp.exp().masked_fill(is_max, 0.0)
    return torch.where(is_max, log1m_max, torch.log1p(-p_others))


def _power(log_base: torch.Tensor, gamma: Number) -> torch.Tensor:
    """``base ** gamma`` as ``exp(gamma * log(base))``.

    Unlike ``base ** gamma`` its gradient stays finite at ``base = 0`` for ``0 < gamma < 1``
    (LOSS_MATH trap 2), and its derivative in ``gamma`` is ``base**gamma * log(base)``.
    """
    if isinstance(gamma, (int, float)) and gamma == 0:
        return torch.ones_like(log_base)
    return torch.exp(gamma * log_base)


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy ``CE_i = -w_{y_i} log p_t``, from ``log_softmax``.

    Gives the same numbers as ``torch.nn.functional.cross_entropy`` with the same arguments,
    except that a batch without valid pixels gives 0 instead of NaN.

    Args:
        logits: float ``(N, C, *spatial)``.
        target: integer ``(N, *spatial)``, values in ``[0, C)`` or ``ignore_index``.
        weight: optional class weights ``(C,)``.
        ignore_index: label of pixels that contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-pixel map ``(N, *spatial)``).

    Returns:
        A scalar, or the per-pixel map for ``reduction="none"``.

    Raises:
        TypeError: non-tensor inputs, float target, non-float logits.
        ValueError: shape mismatch, labels out of range, NaN/Inf logits, bad weight or reduction.

    Example:
        >>> logits = torch.randn(2, 3, 4, 4)
        >>> target = torch.randint(0, 3, (2, 4, 4))
        >>> cross_entropy(logits, target).shape
        torch.Size([])
    """
    z, valid, safe = _prepare(logits, target, ignore_index, reduction)
    w = class_vector(weight, z.shape[1], "weight", z)
    logp_t = _at_target(z.log_softmax(dim=1), safe)
    return _reduce(-logp_t, valid, safe, w, reduction)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: Number = 2.0,
    alpha: Number | ClassWeights = None,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
) -> torch.Tensor:
    """Softmax focal loss (Lin et al., ICCV 2017, arXiv:1708.02002).

    ``FL_i = -alpha_{y_i} (1 - p_t)^gamma log p_t``, times ``weight[y_i]`` when given.
    ``gamma = 0`` with ``alpha = None`` is exactly cross-entropy. ``alpha`` is part of the
    formula, not of the "mean" normalisation: None (1), a scalar that scales every pixel (the
    paper's 0.25 weighted positives against negatives in the *sigmoid* form; in this softmax form a
    scalar is a global scale), or a per-class vector ``(C,)`` indexed by the target class.
    ``(1 - p_t)^gamma`` is computed as ``exp(gamma * logsumexp_{c != t} log p_c)``, so it is finite
    with finite gradients at saturated logits and for ``0 < gamma < 1``.

    Args:
        logits: float ``(N, C, *spatial)``.
        target: integer ``(N, *spatial)``.
        gamma: focusing parameter, ``>= 0`` (a number or a 0-dim tensor).
        alpha: None, a scalar ``>= 0``, or per-class ``(C,)``.
        weight, ignore_index, reduction: as in :func:`cross_entropy`.

    Returns:
        A scalar, or the per-pixel map ``(N, *spatial)`` for ``reduction="none"``.

    Raises:
        TypeError, ValueError: as in :func:`cross_entropy`; also a negative or non-finite
            ``gamma``/``alpha`` or an ``alpha`` vector of the wrong length.
    """
    check_number(gamma, "gamma", low=0.0)
    z, valid, safe = _prepare(logits, target, ignore_index, reduction)
    num_classes = z.shape[1]
    w = class_vector(weight, num_classes, "weight", z)
    logp = z.log_softmax(dim=1)
    is_target = _target_mask(logp, safe)
    logp_t = _at_target(logp, safe)
    loss = -_power(_log1m_target(logp, is_target), gamma) * logp_t
    if alpha is not None:
        if isinstance(alpha, (int, float)) or (isinstance(alpha, torch.Tensor) and alpha.dim() == 0):
            check_number(alpha, "alpha", low=0.0)
            loss = loss * alpha
        else:
            loss = loss * class_vector(alpha, num_classes, "alpha", z)[safe]
    return _reduce(loss, valid, safe, w, reduction)


def dual_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: Number = 1.0,
    beta: Number = 1.0,
    gamma: Number = 1.0,
    rho: Number = 1.0,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
) -> torch.Tensor:
    """Dual Focal Loss (Hossain, Betts, Paplinski; Neurocomputing 2021, doi:10.1016/j.neucom.2021.07.055).

    Per pixel, summed over classes, with one-hot ``y`` and softmax ``p``::

        DFL = sum_c [ -y_c log p_c  -  beta (1 - y_c) log(rho - p_c)  +  alpha |y_c - p_c|^gamma ]

    term 1 is CE on the true class, term 2 penalises probability on the false classes, term 3 is
    an additive focal-style term. At the authors' defaults (all 1)
    ``DFL = -log p_t - sum_{c != t} log(1 - p_c) + 2 (1 - p_t)``. The pixel value is multiplied
    by ``weight[y_i]`` when given. ``log(1 - p_c)`` and ``|y_c - p_c|^gamma`` are formed from
    log-probabilities, so values and gradients stay finite at saturated logits.

    Args:
        logits: float ``(N, C, *spatial)``.
        target: integer ``(N, *spatial)``.
        alpha: weight of the focal-style term, ``>= 0``.
        beta: weight of the false-class term, ``>= 0``.
        gamma: exponent of the focal-style term, ``>= 0``.
        rho: offset of the false-class term, ``>= 1`` (``rho - p_c`` must stay positive).
        weight, ignore_index, reduction: as in :func:`cross_entropy`.
        Each of alpha, beta, gamma, rho may be a 0-dim tensor (e.g. a learnable parameter).

    Returns:
        A scalar, or the per-pixel map ``(N, *spatial)`` for ``reduction="none"``.

    Raises:
        TypeError, ValueError: as in :func:`cross_entropy`; also ``rho < 1`` or a negative or
            non-finite alpha, beta or gamma.
    """
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
        check_number(value, name, low=0.0)
    check_number(rho, "rho", low=1.0)
    z, valid, safe = _prepare(logits, target, ignore_index, reduction)
    w = class_vector(weight, z.shape[1], "weight", z)
    logp = z.log_softmax(dim=1)
    is_target = _target_mask(logp, safe)
    log1m_p = _log1m_probs(z, logp)
    if isinstance(rho, (int, float)) and rho == 1:
        log_rho_minus_p = log1m_p
    else:  # log(rho - p) = log((rho - 1) + (1 - p))
        rho_t = torch.as_tensor(rho, dtype=z.dtype, device=z.device)
        log_rho_minus_p = torch.logaddexp(log1m_p, torch.log(rho_t - 1.0))
    false_term = -log_rho_minus_p.masked_fill(is_target, 0.0).sum(dim=1)
    log_abs_error = torch.where(is_target, log1m_p, logp)  # log |y_c - p_c|
    focal_term = _power(log_abs_error, gamma).sum(dim=1)
    loss = -_at_target(logp, safe) + beta * false_term + alpha * focal_term
    return _reduce(loss, valid, safe, w, reduction)


def _all_reduce_counts(counts: torch.Tensor) -> torch.Tensor:
    """Sum ``counts`` over all replicas when ``torch.distributed`` is initialised."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        counts = counts.clone()
        dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    return counts


@torch.no_grad()
def batch_recall_weights(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recall-loss class weights ``1 - R_c = FN_c / N_c`` of the current batch.

    ``TP_c`` and ``N_c`` are counted over valid pixels from the argmax of ``logits``; under an
    initialised ``torch.distributed`` they are all-reduced, so every replica gets the global
    batch's recall. The weights carry no gradient.

    Args:
        logits: float ``(N, C, *spatial)``.
        target: integer ``(N, *spatial)``.
        ignore_index: label excluded from the counts.

    Returns:
        ``(weights, present)``: float32 ``(C,)`` weights (1 for classes absent from the batch,
        whose recall is undefined) and a boolean ``(C,)`` mask of the classes present.
    """
    check_logits_target(logits, target, ignore_index)
    num_classes = logits.shape[1]
    valid = target != ignore_index
    label = torch.where(valid, target, torch.full_like(target, num_classes)).long()
    hit = label == logits.argmax(dim=1)
    n_c = torch.bincount(label.flatten(), minlength=num_classes + 1)[:num_classes]
    tp_c = torch.bincount(torch.where(hit, label, num_classes).flatten(), minlength=num_classes + 1)
    counts = _all_reduce_counts(torch.stack([n_c, tp_c[:num_classes]]))
    n_c, tp_c = counts[0], counts[1]
    present = n_c > 0
    weights = torch.where(present, (n_c - tp_c).float() / n_c.clamp_min(1).float(), 1.0)
    return weights, present


def recall_weighted_ce(
    logits: torch.Tensor,
    target: torch.Tensor,
    recall_weights: torch.Tensor,
    *,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy with every pixel scaled by ``recall_weights[y_i]`` (detached).

    The building block of :func:`recall_loss` and :class:`segloss.RecallLoss`, which pass the
    batch's or a running average of ``1 - R_c``. ``"mean"`` divides by ``|V|`` (or the sum of
    ``weight[y_i]``), not by the recall weights: the recall weights act like a per-class
    learning rate, as in the paper.
    """
    z, valid, safe = _prepare(logits, target, ignore_index, reduction)
    num_classes = z.shape[1]
    w = class_vector(weight, num_classes, "weight", z)
    scale = class_vector(recall_weights.detach(), num_classes, "recall_weights", z)
    logp_t = _at_target(z.log_softmax(dim=1), safe)
    return _reduce(-scale[safe] * logp_t, valid, safe, w, reduction)


def recall_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
) -> torch.Tensor:
    """Recall loss (Tian et al., ICRA 2022, arXiv:2106.14917), instantaneous batch recall.

    ``RecallCE_i = -(1 - R_{y_i}) log p_t`` with ``R_c = TP_c / N_c`` from the argmax of this
    batch over valid pixels (all-reduced under ``torch.distributed``); the weights carry no
    gradient, so the gradient is CE's scaled per class. Early in training (low recall) it is
    close to CE; a class predicted perfectly in the batch contributes 0. For a running average
    of the weights use :class:`segloss.RecallLoss` with ``momentum > 0``.

    Args:
        logits, target, weight, ignore_index, reduction: as in :func:`cross_entropy`.

    Returns:
        A scalar, or the per-pixel map ``(N, *spatial)`` for ``reduction="none"``.

    Raises:
        TypeError, ValueError: as in :func:`cross_entropy`.
    """
    check_reduction(reduction)
    recall_weights, _ = batch_recall_weights(logits, target, ignore_index=ignore_index)
    return recall_weighted_ce(
        logits, target, recall_weights, weight=weight, ignore_index=ignore_index, reduction=reduction
    )
