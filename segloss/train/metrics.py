"""Segmentation metrics from a confusion matrix: IoU, recall, precision, mIoU, mean accuracy.

Everything derives from one ``(C, C)`` confusion matrix ``M`` with ``M[i, j]`` = number of
pixels of true class ``i`` predicted as class ``j`` (ignored pixels excluded). With
``TP_c = M[c, c]``, ``FN_c = sum_j M[c, j] - TP_c`` and ``FP_c = sum_i M[i, c] - TP_c``:

- ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``
- ``recall_c = TP_c / (TP_c + FN_c)`` (the per-class accuracy)
- ``precision_c = TP_c / (TP_c + FP_c)``

A ratio whose denominator is 0 is undefined and reported as NaN, never as 0: a class absent
from the targets has no recall, a class never predicted has no precision, and a class absent
from both has no IoU. ``miou`` and ``mean_accuracy`` are NaN-means, so they average over the
classes where the quantity is defined (the usual convention of mmseg and torchmetrics).

Example:
    >>> import torch
    >>> cm = confusion_matrix(torch.tensor([0, 1, 1, 1]), torch.tensor([0, 0, 1, 255]), 2)
    >>> cm.tolist()
    [[1, 1], [0, 1]]
    >>> metrics_from_confusion(cm)["miou"]
    0.5
"""

from __future__ import annotations

import numpy as np
import torch

from segloss.losses._checks import check_num_classes, holds_index


def _as_label_tensor(value: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
        raise TypeError(
            f"{name} must hold integer class indices, got dtype {value.dtype}"
            + ("; for logits pass logits.argmax(dim=1)" if name == "pred" else "")
        )
    return value


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Count pixels per (true class, predicted class) pair.

    ``M[i, j]`` is the number of pixels whose target is ``i`` and prediction ``j``; pixels
    whose target equals ``ignore_index`` are not counted (whatever their prediction).

    Args:
        pred: integer predictions, any shape, e.g. ``(N, H, W)`` from ``logits.argmax(1)``;
            values in ``[0, C)`` wherever the target is not ignored.
        target: integer labels of the same shape, values in ``[0, C)`` or ``ignore_index``.
        num_classes: C >= 1.
        ignore_index: target value to leave out.

    Returns:
        int64 ``(C, C)`` on the CPU; rows are true classes, columns predicted classes.

    Raises:
        TypeError: non-integer ``pred``/``target`` or ``num_classes``.
        ValueError: shapes differ, ``num_classes < 1``, or a value lies outside ``[0, C)``.
    """
    num_classes = check_num_classes(num_classes, minimum=1)
    pred = _as_label_tensor(pred, "pred")
    target = _as_label_tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    target = holds_index(target, ignore_index)
    valid = target != ignore_index
    t = target[valid].long().cpu()
    p = pred.to(valid.device)[valid].long().cpu()
    for name, labels in (("target", t), ("pred", p)):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            bad = torch.unique(labels[(labels < 0) | (labels >= num_classes)])[:8].tolist()
            raise ValueError(
                f"{name} holds labels outside [0, {num_classes}) at non-ignored pixels: {bad}"
                + (f" (ignore_index={ignore_index})" if name == "target" else "")
            )
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` with NaN where the denominator is 0."""
    out = torch.full_like(numerator, float("nan"))
    defined = denominator > 0
    out[defined] = numerator[defined] / denominator[defined]
    return out


def metrics_from_confusion(cm: torch.Tensor | np.ndarray) -> dict[str, torch.Tensor | float]:
    """Per-class and mean metrics from a ``(C, C)`` confusion matrix (rows = true class).

    Args:
        cm: non-negative ``(C, C)`` counts, e.g. from :func:`confusion_matrix`, or a sum of
            several (accumulating over batches gives dataset-level metrics).

    Returns:
        A dict of float64 ``(C,)`` tensors (NaN where undefined):

        - ``iou``: ``TP / (TP + FP + FN)``, NaN for a class absent from targets and predictions.
        - ``recall``: ``TP / (TP + FN)``, NaN for a class absent from the targets.
        - ``precision``: ``TP / (TP + FP)``, NaN for a class never predicted.
        - ``pixel_share``: each class's share of the (non-ignored) target pixels.
        - ``support``: target pixels per class (int64).

        and Python floats (NaN when the matrix is all zeros):

        - ``miou``: NaN-mean of ``iou`` (classes present in target or prediction).
        - ``mean_accuracy``: NaN-mean of ``recall`` (classes present in the target).
        - ``overall_accuracy``: ``trace(M) / sum(M)``, the pixel accuracy.

    Raises:
        TypeError: if ``cm`` is not a real-valued tensor/array.
        ValueError: if ``cm`` is not square 2-D, or holds negative or non-finite counts.
    """
    if isinstance(cm, np.ndarray):
        cm = torch.from_numpy(cm)
    if not isinstance(cm, torch.Tensor):
        raise TypeError(f"cm must be a torch.Tensor or numpy.ndarray, got {type(cm).__name__}")
    if cm.is_complex() or cm.dtype == torch.bool:
        raise TypeError(f"cm must hold real counts, got dtype {cm.dtype}")
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise ValueError(f"cm must be a square (C, C) matrix, got shape {tuple(cm.shape)}")
    m = cm.detach().cpu().double()
    if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
        raise ValueError("cm must hold finite, non-negative counts")
    tp = m.diagonal()
    support = m.sum(dim=1)
    predicted = m.sum(dim=0)
    total = m.sum()
    iou = _safe_divide(tp, support + predicted - tp)
    recall = _safe_divide(tp, support)
    precision = _safe_divide(tp, predicted)
    nan = float("nan")
    return {
        "iou": iou,
        "recall": recall,
        "precision": precision,
        "pixel_share": support / total if total > 0 else torch.full_like(support, nan),
        "support": support.round().long(),
        "miou": float(iou.nanmean()),
        "mean_accuracy": float(recall.nanmean()),
        "overall_accuracy": float(tp.sum() / total) if total > 0 else nan,
    }
