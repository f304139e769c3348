"""Recall loss (Tian, Mithun, Seymour, Chiu, Kira; ICRA 2022, arXiv:2106.14917): cross-entropy with each pixel
scaled by ``1 - R_{y_i}``, its class's recall in the batch (``R_c = TP_c / N_c`` from the argmax over
valid pixels, all-reduced under ``torch.distributed``), the weights carrying no gradient.

The functions are public through :mod:`segloss.losses.functional` (``SF.recall_loss``); the CE they
scale is its focal family with ``gamma = 0`` (one fused pass: the argmax counts come from the same
read of the logits on CUDA), and :class:`segloss.RecallLoss` adds a running average of the weights.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from segloss.losses import reference
from segloss.losses._checks import ClassWeights, check_logits_target, index_argument
from segloss.losses._distributed import all_reduce_counts, check_sync


def _weights_dtype(logits: torch.Tensor) -> torch.dtype:
    """The recall weights' dtype: float64 for float64 logits, float32 otherwise (half logits too)."""
    return torch.float64 if logits.dtype == torch.float64 else torch.float32


def _weights_from_counts(n_c: torch.Tensor, tp_c: torch.Tensor, sync: bool = True,
                         dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 - TP_c / N_c, present_c)`` in ``dtype``, the counts all-reduced under ``torch.distributed``
    first (unless ``sync`` is False).

    Classes absent from the (global) batch get weight 1 and ``present = False``.
    """
    n_c, tp_c = all_reduce_counts(torch.stack([n_c, tp_c]), sync)
    present = n_c > 0
    return torch.where(present, (n_c - tp_c).to(dtype) / n_c.clamp_min(1).to(dtype), 1.0), present


@torch.no_grad()
def batch_recall_weights(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int = 255,
    sync_distributed: bool | dist.ProcessGroup = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Recall-loss class weights ``1 - R_c = FN_c / N_c`` of the current batch.

    ``TP_c`` and ``N_c`` are counted over valid pixels from the argmax of ``logits``; under an
    initialised ``torch.distributed`` they are all-reduced, so every replica gets the global
    batch's recall. The weights carry no gradient.

    Args:
        logits: float ``(N, C, *spatial)``.
        target: integer ``(N, *spatial)``.
        ignore_index: label excluded from the counts.
        sync_distributed: False counts this replica's pixels alone (no collective: e.g. an
            evaluation run on one rank only, where a collective would wait for the others).

    Returns:
        ``(weights, present)``: ``(C,)`` weights, float64 for float64 logits and float32
        otherwise (1 for classes absent from the batch,
        whose recall is undefined) and a boolean ``(C,)`` mask of the classes present.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    sync_distributed = check_sync(sync_distributed)
    target = check_logits_target(logits, target, ignore_index)
    return _recall_weights(logits, target, ignore_index, sync_distributed)


def _recall_weights(logits, target, ignore_index: int, sync_distributed: bool):
    """:func:`batch_recall_weights` on checked inputs (the CE that follows checks the logits' values)."""
    num_classes = logits.shape[1]
    label = torch.where(target != ignore_index, target, num_classes).long().flatten()
    hits = torch.where(logits.argmax(dim=1).flatten() == label, label, num_classes)
    if torch.compiler.is_compiling():  # scatter_add, not bincount: a shape known before the counts
        ones = torch.ones_like(label)
        n_c = torch.zeros(num_classes + 1, dtype=torch.long, device=label.device).scatter_add(0, label, ones)
        tp_c = torch.zeros(num_classes + 1, dtype=torch.long, device=label.device).scatter_add(0, hits, ones)
    else:  # bincount: about 5x faster eagerly
        n_c = torch.bincount(label, minlength=num_classes + 1)
        tp_c = torch.bincount(hits, minlength=num_classes + 1)
    n_c, tp_c = n_c[:num_classes], tp_c[:num_classes]
    return _weights_from_counts(n_c, tp_c, sync_distributed, _weights_dtype(logits))


def recall_family(logits, target, *, choose_weights=None, weight=None, ignore_index: int = 255,
                  reduction: str = "mean", sync_distributed: bool | dist.ProcessGroup = True) -> torch.Tensor:
    """Recall loss in one fused pass: the argmax hits are counted in the same pass as the CE.

    ``choose_weights(batch_weights, present) -> weights`` (both ``(C,)``) lets a caller replace
    the batch's weights, e.g. :class:`segloss.RecallLoss`'s running average; None uses them as
    they are (the paper's instantaneous recall).
    """
    from segloss.losses.functional import _focal_family, _needs_autograd  # (functional imports this module)

    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    sync_distributed = check_sync(sync_distributed)

    def scale_from_counts(n_c: torch.Tensor, tp_c: torch.Tensor) -> torch.Tensor:
        batch_weights, present = _weights_from_counts(n_c, tp_c, sync_distributed, _weights_dtype(logits))
        used = batch_weights if choose_weights is None else choose_weights(batch_weights, present)
        return used.detach()

    if _needs_autograd(weight) or torch.compiler.is_compiling():  # the counts from the argmax first
        # shapes and labels here; the logits' values are checked by the CE below (one scan, one sync)
        checked = check_logits_target(logits, target, ignore_index, check_finite=False)
        batch_weights, present = _recall_weights(logits, checked, ignore_index, sync_distributed)
        used = batch_weights if choose_weights is None else choose_weights(batch_weights, present)
        if not _needs_autograd(weight):  # compiling: the traced CE family, the weights as its class scale
            return recall_weighted_ce(logits, target, used.detach(), weight=weight, ignore_index=ignore_index,
                                      reduction=reduction)
        return reference.recall_weighted_ce(logits, target, used.detach(), weight=weight, ignore_index=ignore_index,
                                            reduction=reduction)

    return _focal_family(logits, target, gamma=0.0, class_scale=None, weight=weight, ignore_index=ignore_index,
                         reduction=reduction, scale_from_counts=scale_from_counts)


def recall_weighted_ce(
    logits: torch.Tensor,
    target: torch.Tensor,
    recall_weights: torch.Tensor,
    *,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy with every pixel scaled by ``recall_weights[y_i]`` (detached): logits ``(N, C, *S)``,
    target ``(N, *S)``, ``recall_weights`` ``(C,)``; a scalar, or the ``(N, *S)`` map with ``"none"``.

    The building block of :func:`recall_loss` and :class:`segloss.RecallLoss`, which pass the
    batch's or a running average of ``1 - R_c``. ``"mean"`` divides by ``|V|`` (or the sum of
    ``weight[y_i]``), not by the recall weights: the recall weights act like a per-class
    learning rate, as in the paper.
    """
    from segloss.losses.functional import _focal_family, _needs_autograd  # (functional imports this module)

    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    if not isinstance(recall_weights, torch.Tensor) or recall_weights.dim() != 1:
        raise TypeError(f"recall_weights must be a 1-D tensor (C,), got {recall_weights!r}")
    if _needs_autograd(weight):
        return reference.recall_weighted_ce(logits, target, recall_weights.detach(), weight=weight,
                                            ignore_index=ignore_index, reduction=reduction)
    return _focal_family(logits, target, gamma=0.0, class_scale=recall_weights.detach(), weight=weight,
                         ignore_index=ignore_index, reduction=reduction, scale_name="recall_weights")


def recall_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
    sync_distributed: bool | dist.ProcessGroup = True,
) -> torch.Tensor:
    """Recall loss (Tian et al., ICRA 2022, arXiv:2106.14917), instantaneous batch recall.

    ``RecallCE_i = -(1 - R_{y_i}) log p_t`` with ``R_c = TP_c / N_c`` from the argmax of this
    batch over valid pixels (all-reduced under ``torch.distributed``); the weights carry no
    gradient, so the gradient is CE's scaled per class. Early in training (low recall) it is
    close to CE; a class predicted perfectly in the batch contributes 0. For a running average
    of the weights use :class:`segloss.RecallLoss` with ``momentum > 0``.

    This follows the paper's ``1 - R_c``. The authors' code (github PotatoTian/recall-semseg)
    starts each class's counter at 1, so a class with no false negatives keeps weight ``1/N_c``
    there instead of 0 (it has an ``ignore_index``, but it writes the ignored label's counts over
    class 1's and indexes its ``C`` weights with the ignored pixels' 255, which fails); on large batches the two differ little, on small classes in small batches they do.

    Args:
        logits, target, weight, ignore_index, reduction: as in :func:`cross_entropy`.
        sync_distributed: see :func:`batch_recall_weights`.

    Returns:
        A scalar, or the per-pixel map ``(N, *spatial)`` for ``reduction="none"``.

    Raises:
        TypeError, ValueError: as in :func:`cross_entropy`.
    """
    return recall_family(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                         sync_distributed=sync_distributed)
