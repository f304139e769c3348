"""Validation of a segmentation model: metrics, per-pixel loss and gradient maps, and where they go.

One forward pass over a fixed validation batch gives everything the live view shows: the
prediction, the per-pixel map of the training loss (``reduction="none"``; none for region
losses) and its gradient map ``|dL/dz|`` next to the cross-entropy maps of the same logits, the
per-class metrics of :mod:`segloss.train.metrics`, and how each map's total splits over the classes
and over boundary pixels (pixels with another label among their 8 neighbours) compared with
their share of the pixels.

Example:
    >>> import torch, segloss
    >>> from segloss.train.model import TinyUNet
    >>> images, masks = torch.rand(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    >>> view = validate(TinyUNet(num_classes=3).eval(), segloss.create_loss("focal"), images, masks, step=0,
    ...                 pixel_loss=segloss.create_loss("focal", reduction="none"))
    >>> focal = view.map("loss")
    >>> focal.values.shape, view.predictions.dtype, round(float(focal.class_share.sum()), 3)
    ((2, 32, 32), dtype('uint8'), 1.0)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segloss.explain.analysis import gradient_map
from segloss.losses import functional as SF
from segloss.train.metrics import confusion_matrix, metrics_from_confusion
from segloss.losses._checks import holds_index

PER_CLASS_METRICS = ("iou", "recall", "precision")
MEAN_METRICS = ("miou", "mean_accuracy", "overall_accuracy")


MAP_KINDS = ("loss", "gradient")  # a loss map, or the map of |dL/dz| (segloss.analysis.gradient_map)


@dataclass(frozen=True)
class PixelMap:
    """One per-pixel map of the validation batch and where its total goes.

    Attributes:
        values: float32 ``(V, H, W)`` (0 at ignored pixels).
        class_share: float64 ``(C,)``, each class's share of the map's sum (sums to 1; all
            zero if the map sums to 0).
        boundary_share: fraction of the map's sum on boundary pixels.
    """

    values: np.ndarray
    class_share: np.ndarray
    boundary_share: float


@dataclass(frozen=True)
class ValidationView:
    """The model on the validation batch at one step (arrays are never modified after creation).

    Attributes:
        step: optimisation steps done when this was computed.
        predictions: uint8 ``(V, H, W)`` argmax labels.
        maps: ``(kind, loss)`` -> :class:`PixelMap` with kind in :data:`MAP_KINDS` and loss
            ``"train"`` (the training loss) or ``"ce"`` (cross-entropy on the same logits).
            ``("loss", "train")`` is absent for region losses, which have no per-pixel loss.
            Gradient maps are ``|dL/dz|`` scaled by the number of valid pixels
            (:func:`segloss.analysis.gradient_map`).
        metrics: ``iou``/``recall``/``precision`` float64 ``(C,)`` (NaN where undefined) and
            ``miou``/``mean_accuracy``/``overall_accuracy`` floats.
        pixel_share: float64 ``(C,)``, each class's share of the valid pixels.
        boundary_pixel_share: fraction of valid pixels on a class boundary.
    """

    step: int
    predictions: np.ndarray
    maps: dict
    metrics: dict
    pixel_share: np.ndarray
    boundary_pixel_share: float

    def map(self, kind: str, loss: str = "train") -> PixelMap | None:
        """The ``(kind, loss)`` map, or None if there is none (a region loss's loss map)."""
        if kind not in MAP_KINDS or loss not in ("train", "ce"):
            raise ValueError(f"kind must be one of {MAP_KINDS} and loss 'train' or 'ce', got {kind!r}, {loss!r}")
        return self.maps.get((kind, loss))


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
    return (highest != lowest) & (holds_index(target, ignore_index) != ignore_index)


def class_shares(pixel_map: torch.Tensor, target: torch.Tensor, num_classes: int,
                 ignore_index: int = 255) -> torch.Tensor:
    """Each class's share of ``pixel_map.sum()`` over valid pixels; of ``|pixel_map|`` when the map
    has negative values (a loss that rewards, like the boundary loss: shares of a signed sum would
    fall outside [0, 1]).

    Args:
        pixel_map: float ``(N, H, W)`` (e.g. a loss map from ``reduction="none"``).
        target: integer ``(N, H, W)``.

    Returns:
        float64 ``(C,)`` summing to 1, all zeros when the map is 0 everywhere, all NaN when it holds NaN.
    """
    target = holds_index(target, ignore_index)
    valid = target != ignore_index
    sums = torch.zeros(num_classes, dtype=torch.float64, device=pixel_map.device)
    sums.index_add_(0, target[valid].long(), magnitude(pixel_map)[valid].double())
    total = sums.sum()
    if not bool(torch.isfinite(total)):
        return torch.full_like(sums, float("nan")).cpu()  # a NaN in the map: no share is known
    return (sums / total if total > 0 else sums).cpu()


def magnitude(pixel_map: torch.Tensor) -> torch.Tensor:
    """The map itself (any shape, e.g. ``(N, H, W)``), or ``|map|`` when it has negative values (what
    shares of it are taken of)."""
    return pixel_map.abs() if bool((pixel_map < 0).any()) else pixel_map


def _share(pixel_map: torch.Tensor, where: torch.Tensor) -> float:
    values = magnitude(pixel_map).double()
    total = float(values.sum())
    return float(values[where].sum()) / total if total > 0 else 0.0


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)  # views are shared between threads: nobody may change them
    return array


def _as_numpy_metrics(metrics: dict) -> dict:
    out = {name: metrics[name].numpy() for name in PER_CLASS_METRICS}
    out.update({name: float(metrics[name]) for name in MEAN_METRICS})
    return out


def _pixel_map(values: torch.Tensor, target: torch.Tensor, edges: torch.Tensor, num_classes: int,
               ignore_index: int) -> PixelMap:
    return PixelMap(_read_only(values.detach().float().cpu().numpy()),
                    class_shares(values, target, num_classes, ignore_index).numpy(), _share(values, edges))


@torch.no_grad()  # not inference_mode: a loss may lazily create buffers (RecallLoss) that must stay normal tensors
def validate(model: nn.Module, criterion: nn.Module, images: torch.Tensor, target: torch.Tensor, *,
             step: int, pixel_loss: nn.Module | None = None, ignore_index: int = 255,
             chunk: int = 16) -> ValidationView:
    """Run ``model`` on the validation batch and measure the metrics, loss and gradient maps.

    The model and the losses should be in eval mode (the caller's job: it owns their state).

    Args:
        model: maps ``(N, 3, H, W)`` images to ``(N, C, H, W)`` logits.
        criterion: the training loss as trained (a scalar: reduction "mean"); its gradient map
            is computed for every loss, region losses included.
        images: float ``(V, 3, H, W)`` on the model's device.
        target: integer ``(V, H, W)`` on the same device.
        step: the step number to stamp on the result.
        pixel_loss: the same loss with ``reduction="none"`` (its per-pixel map), or None for a
            loss without one (region losses).
        chunk: images per forward pass (bounds peak memory).

    Returns:
        A :class:`ValidationView`.

    Raises:
        ValueError: if ``pixel_loss`` does not return a ``(V, H, W)`` map or the shapes disagree.
    """

    if images.dim() != 4 or target.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"images (V, 3, H, W) and target (V, H, W) expected, got "
                         f"{tuple(images.shape)} and {tuple(target.shape)}")
    logits = torch.cat([model(images[i:i + chunk]).float() for i in range(0, len(images), chunk)])
    num_classes = logits.shape[1]
    edges = boundary_mask(target, ignore_index)
    ce = functools.partial(SF.cross_entropy, ignore_index=ignore_index)
    maps = {("loss", "ce"): ce(logits, target, reduction="none"),
            ("gradient", "train"): gradient_map(criterion, logits, target, ignore_index=ignore_index),
            ("gradient", "ce"): gradient_map(ce, logits, target, ignore_index=ignore_index)}
    if pixel_loss is not None:
        loss_map = pixel_loss(logits, target)
        if loss_map.shape != target.shape:
            raise ValueError(f"pixel_loss must give a per-pixel map {tuple(target.shape)} (reduction='none'), "
                             f"got shape {tuple(loss_map.shape)}")
        maps[("loss", "train")] = loss_map
    predictions = logits.argmax(dim=1)
    metrics = metrics_from_confusion(confusion_matrix(predictions, target, num_classes, ignore_index))
    valid = int((holds_index(target, ignore_index) != ignore_index).sum())
    return ValidationView(
        step=int(step),
        predictions=_read_only(predictions.to(torch.uint8).cpu().numpy()),
        maps={key: _pixel_map(values, target, edges, num_classes, ignore_index) for key, values in maps.items()},
        metrics=_as_numpy_metrics(metrics),
        pixel_share=np.nan_to_num(metrics["pixel_share"].numpy()),
        boundary_pixel_share=float(edges.sum()) / valid if valid else 0.0,
    )
