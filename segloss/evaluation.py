"""Validation of a segmentation model: metrics, per-pixel loss maps and where the loss goes.

One forward pass over a fixed validation batch gives everything the live view shows: the
prediction, the per-pixel map of the training loss (``reduction="none"``) next to the
cross-entropy map of the same logits, the per-class metrics of :mod:`segloss.metrics`, and
how each loss's total splits over the classes and over boundary pixels (pixels with another
label among their 8 neighbours) compared with their share of the pixels.

Example:
    >>> import torch, segloss
    >>> from segloss.model import TinyUNet
    >>> images, masks = torch.rand(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    >>> view = validate(TinyUNet(num_classes=3).eval(), segloss.create_loss("focal", reduction="none"),
    ...                 images, masks, step=0)
    >>> view.loss_map.shape, view.predictions.dtype, round(float(view.class_loss_share.sum()), 3)
    ((2, 32, 32), dtype('uint8'), 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segloss import functional as SF
from segloss.metrics import confusion_matrix, metrics_from_confusion

PER_CLASS_METRICS = ("iou", "recall", "precision")
MEAN_METRICS = ("miou", "mean_accuracy", "overall_accuracy")


@dataclass(frozen=True)
class ValidationView:
    """The model on the validation batch at one step (arrays are never modified after creation).

    Attributes:
        step: optimisation steps done when this was computed.
        predictions: uint8 ``(V, H, W)`` argmax labels.
        loss_map: float32 ``(V, H, W)``, the training loss per pixel (0 at ignored pixels).
        ce_map: float32 ``(V, H, W)``, cross-entropy per pixel on the same logits.
        metrics: ``iou``/``recall``/``precision`` float64 ``(C,)`` (NaN where undefined) and
            ``miou``/``mean_accuracy``/``overall_accuracy`` floats.
        pixel_share: float64 ``(C,)``, each class's share of the valid pixels.
        class_loss_share, class_ce_share: float64 ``(C,)``, each class's share of the summed
            loss map / CE map (sums to 1; NaN-free, all zero if the map sums to 0).
        boundary_pixel_share: fraction of valid pixels on a class boundary.
        boundary_loss_share, boundary_ce_share: fraction of the summed loss / CE on them.
    """

    step: int
    predictions: np.ndarray
    loss_map: np.ndarray
    ce_map: np.ndarray
    metrics: dict
    pixel_share: np.ndarray
    class_loss_share: np.ndarray
    class_ce_share: np.ndarray
    boundary_pixel_share: float
    boundary_loss_share: float
    boundary_ce_share: float


def boundary_mask(target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Valid pixels with a different label (another class or ``ignore_index``) among their 8 neighbours.

    Args:
        target: integer labels ``(N, H, W)``.

    Returns:
        bool ``(N, H, W)``; image borders are replicated, so they are not boundaries by themselves.

    Raises:
        TypeError: non-integer target. ValueError: not 3-D.
    """
    if target.is_floating_point() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer labels, got dtype {target.dtype}")
    if target.dim() != 3:
        raise ValueError(f"target must have shape (N, H, W), got {tuple(target.shape)}")
    labels = F.pad(target[:, None].float(), (1, 1, 1, 1), mode="replicate")
    highest = F.max_pool2d(labels, 3, stride=1)[:, 0]
    lowest = -F.max_pool2d(-labels, 3, stride=1)[:, 0]
    return (highest != lowest) & (target != ignore_index)


def class_shares(pixel_map: torch.Tensor, target: torch.Tensor, num_classes: int,
                 ignore_index: int = 255) -> torch.Tensor:
    """Each class's share of ``pixel_map.sum()`` over valid pixels.

    Args:
        pixel_map: float ``(N, H, W)`` (e.g. a loss map from ``reduction="none"``).
        target: integer ``(N, H, W)``.

    Returns:
        float64 ``(C,)`` summing to 1, or all zeros when the map sums to 0.
    """
    valid = target != ignore_index
    sums = torch.zeros(num_classes, dtype=torch.float64, device=pixel_map.device)
    sums.index_add_(0, target[valid].long(), pixel_map[valid].double())
    total = sums.sum()
    return (sums / total if total > 0 else sums).cpu()


def _share(pixel_map: torch.Tensor, where: torch.Tensor) -> float:
    total = float(pixel_map.double().sum())
    return float(pixel_map[where].double().sum()) / total if total > 0 else 0.0


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)  # views are shared between threads: nobody may change them
    return array


def _as_numpy_metrics(metrics: dict) -> dict:
    out = {name: metrics[name].numpy() for name in PER_CLASS_METRICS}
    out.update({name: float(metrics[name]) for name in MEAN_METRICS})
    return out


@torch.no_grad()  # not inference_mode: a loss may lazily create buffers (RecallLoss) that must stay normal tensors
def validate(model: nn.Module, pixel_loss: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
             step: int, ignore_index: int = 255, chunk: int = 16) -> ValidationView:
    """Run ``model`` on the validation batch and measure the metrics and the loss maps.

    The model and the loss should be in eval mode (the caller's job: it owns their state).

    Args:
        model: maps ``(N, 3, H, W)`` images to ``(N, C, H, W)`` logits.
        pixel_loss: the training loss built with ``reduction="none"`` (its per-pixel map).
        images: float ``(V, 3, H, W)`` on the model's device.
        target: integer ``(V, H, W)`` on the same device.
        step: the step number to stamp on the result.
        chunk: images per forward pass (bounds peak memory).

    Returns:
        A :class:`ValidationView`.

    Raises:
        ValueError: if ``pixel_loss`` does not return a ``(V, H, W)`` map (not built with
            ``reduction="none"``) or the shapes disagree.
    """
    if images.dim() != 4 or target.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"images (V, 3, H, W) and target (V, H, W) expected, got "
                         f"{tuple(images.shape)} and {tuple(target.shape)}")
    logits = torch.cat([model(images[i:i + chunk]).float() for i in range(0, len(images), chunk)])
    loss_map = pixel_loss(logits, target)
    if loss_map.shape != target.shape:
        raise ValueError(f"pixel_loss must give a per-pixel map {tuple(target.shape)} (reduction='none'), "
                         f"got shape {tuple(loss_map.shape)}")
    ce_map = SF.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    num_classes = logits.shape[1]
    predictions = logits.argmax(dim=1)
    metrics = metrics_from_confusion(confusion_matrix(predictions, target, num_classes, ignore_index))
    edges = boundary_mask(target, ignore_index)
    valid = int((target != ignore_index).sum())
    return ValidationView(
        step=int(step),
        predictions=_read_only(predictions.to(torch.uint8).cpu().numpy()),
        loss_map=_read_only(loss_map.float().cpu().numpy()),
        ce_map=_read_only(ce_map.float().cpu().numpy()),
        metrics=_as_numpy_metrics(metrics),
        pixel_share=np.nan_to_num(metrics["pixel_share"].numpy()),
        class_loss_share=class_shares(loss_map, target, num_classes, ignore_index).numpy(),
        class_ce_share=class_shares(ce_map, target, num_classes, ignore_index).numpy(),
        boundary_pixel_share=float(edges.sum()) / valid if valid else 0.0,
        boundary_loss_share=_share(loss_map, edges),
        boundary_ce_share=_share(ce_map, edges),
    )
