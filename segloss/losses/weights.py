"""Class weights from pixel counts, the usual baselines for weighted cross-entropy.

All schemes take ``counts``: a ``(C,)`` vector of pixel counts ``n_c`` (e.g. from
:func:`pixel_counts` over a training set), or a :class:`PixelCounts` from :func:`count_pixels`,
which also holds, per class, the pixels of the images the class appears in. They give weight 0 to
classes with no pixels and return a float32 ``(C,)`` tensor:

- ``inverse``: ``w_c ∝ 1 / n_c``, rescaled so the weights of present classes sum to C.
- ``median``: median frequency balancing (Eigen & Fergus 2015, used by SegNet),
  ``w_c = median(f) / f_c`` with ``f_c = n_c / m_c``, ``m_c`` the pixels of the images in which
  class ``c`` appears, and the median over present classes; not rescaled. With a plain vector of
  counts ``m_c`` is unknown and taken as every pixel (``f_c`` the global share), which is the same
  when every class appears in every image and otherwise weighs a class that is missing from many
  images higher than Eigen & Fergus do.
- ``effective``: effective number of samples (Cui et al., CVPR 2019),
  ``w_c = (1 - b) / (1 - b^{n_c})``, rescaled so the weights sum to C.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from segloss.losses._checks import check_num_classes, check_number

SCHEMES = ("inverse", "median", "effective")


def pixel_counts(target, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Pixels per class in integer labels of any shape (tensor or numpy), ignoring ``ignore_index``.

    Returns:
        int64 ``(num_classes,)``.

    Raises:
        TypeError: non-integer labels or ``num_classes``. ValueError: ``num_classes < 1``, or labels
        outside ``[0, num_classes)``.
    """
    num_classes = check_num_classes(num_classes, minimum=1)
    target = torch.as_tensor(target)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer labels, got dtype {target.dtype}")
    labels = target.long()
    labels = labels[labels != ignore_index]  # compared as int64: a uint8 mask would wrap ignore_index=-1 to 255
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}, "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return torch.bincount(labels, minlength=num_classes)


@dataclass(frozen=True, eq=False)
class PixelCounts:
    """Pixels per class over a set of masks, with the denominators of Eigen & Fergus's frequencies.

    Attributes:
        pixels: int64 ``(C,)``, ``n_c``, the valid pixels labelled ``c``.
        image_pixels: int64 ``(C,)``, ``m_c``, the valid pixels of the images in which class ``c``
            appears (``m_c >= n_c``; 0 for a class that appears nowhere).

    Counts over several batches add up: ``count_pixels(a, C) + count_pixels(b, C)``, or ``sum(...)``.
    """

    pixels: torch.Tensor
    image_pixels: torch.Tensor

    def __add__(self, other: "PixelCounts") -> "PixelCounts":
        if not isinstance(other, PixelCounts):
            return NotImplemented
        if other.pixels.shape != self.pixels.shape:
            raise ValueError(f"cannot add counts of {other.pixels.numel()} classes to counts of {self.pixels.numel()}")
        return PixelCounts(self.pixels + other.pixels, self.image_pixels + other.image_pixels)

    def __radd__(self, other) -> "PixelCounts":
        return self if isinstance(other, int) and other == 0 else NotImplemented  # sum() starts from 0


def count_pixels(masks, num_classes: int, ignore_index: int = 255) -> PixelCounts:
    """:class:`PixelCounts` of integer masks: a batch ``(N, H, W)`` or ``(N, D, H, W)`` (tensor or
    numpy), one image per entry of the first dimension, or a list of single masks ``(H, W)``
    (or volumes ``(D, H, W)``) of any sizes, e.g. a dataset's, ignoring ``ignore_index``. A list of
    batches would be read as volumes: add their counts instead (``sum(count_pixels(b, C) for b in ...)``).

    Raises:
        TypeError: non-integer labels. ValueError: fewer than 3 dimensions (one mask ``(H, W)``:
        pass ``[mask]``), or labels outside ``[0, num_classes)``.
    """
    if isinstance(masks, (list, tuple)):
        if not masks:
            raise ValueError("count_pixels needs at least one mask, got an empty list")
        counts = [count_pixels(torch.as_tensor(mask)[None], num_classes, ignore_index) for mask in masks]
        return sum(counts[1:], counts[0])
    masks = torch.as_tensor(masks)
    if masks.dim() < 3 or masks.shape[0] == 0:
        raise ValueError(f"masks must be (N, H, W) or (N, D, H, W) with N >= 1, one mask per image; got shape "
                         f"{tuple(masks.shape)} (one mask: pass [mask])")
    per_image = torch.stack([pixel_counts(mask, num_classes, ignore_index) for mask in masks])  # (N, C)
    image_sizes = per_image.sum(dim=1, keepdim=True)
    return PixelCounts(per_image.sum(dim=0), torch.where(per_image > 0, image_sizes, 0).sum(dim=0))


def _as_counts(counts) -> torch.Tensor:
    if isinstance(counts, PixelCounts):
        counts = counts.pixels
    try:
        counts = torch.as_tensor(counts, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"counts must be a 1-D vector of pixel counts (numbers), got {counts!r}") from err
    if counts.dim() != 1 or counts.numel() < 1:
        raise ValueError(f"counts must be a non-empty 1-D vector, got shape {tuple(counts.shape)}")
    if not bool(torch.isfinite(counts).all()) or bool((counts < 0).any()):
        raise ValueError(f"counts must be finite and >= 0, got {counts.tolist()}")
    if not bool((counts > 0).any()):
        raise ValueError("counts are all zero: no class has any pixel to weight by")
    return counts


def _rescale(weights: torch.Tensor) -> torch.Tensor:
    return (weights * weights.numel() / weights.sum()).float()


def inverse_frequency(counts) -> torch.Tensor:
    """``w_c ∝ 1 / n_c`` (0 for absent classes), summing to C."""
    n = _as_counts(counts)
    return _rescale(torch.where(n > 0, 1.0 / n.clamp_min(1e-300), 0.0))


def median_frequency(counts) -> torch.Tensor:
    """``w_c = median(f) / f_c`` over present classes (0 for absent classes).

    ``f_c = n_c / m_c`` when ``counts`` is a :class:`PixelCounts` (Eigen & Fergus: the pixels of
    class ``c`` over the pixels of the images in which it appears), the global share ``n_c / sum n``
    for a plain vector. The median of an even number of values is the mean of the two middle ones,
    as numpy's and Eigen and Fergus's (ICCV 2015) and SegNet's take it (torch's ``median`` would
    take the lower one).

    Raises:
        ValueError: bad counts, or ``image_pixels`` below ``pixels`` (a class cannot have more
        pixels than the images it appears in).
    """
    n = _as_counts(counts)
    if isinstance(counts, PixelCounts):
        m = torch.as_tensor(counts.image_pixels, dtype=torch.float64)
        if m.shape != n.shape or not bool(torch.isfinite(m).all()) or bool((m < n).any()):
            raise ValueError(f"image_pixels must be a finite ({n.numel()},) vector with image_pixels >= pixels, "
                             f"got {m.tolist()} for pixels {n.tolist()}")
        frequency = torch.where(n > 0, n / m.clamp_min(1e-300), 0.0)
    else:
        frequency = n / n.sum()
    median = frequency[n > 0].quantile(0.5)
    return torch.where(n > 0, median / frequency.clamp_min(1e-300), 0.0).float()


def effective_number(counts, beta: float = 0.999) -> torch.Tensor:
    """``w_c = (1 - beta) / (1 - beta^{n_c})`` (0 for absent classes), summing to C.

    Every class with ``n_c >> 1 / (1 - beta)`` gets the same weight: Cui et al.'s ``beta`` (0.9 to
    0.9999) was made for counts of samples. Pixel counts run to millions, so the weights are all 1
    unless ``1 / (1 - beta)`` reaches them: at ``1 / (1 - beta)`` about the largest class's count
    the weights come close to inverse frequency, at a rare class's count only the rarest are lifted.

    Raises:
        TypeError: ``beta`` not a number. ValueError: ``beta`` outside ``[0, 1)``.
    """
    check_number(beta, "beta", low=0.0, high=1.0)
    beta = float(beta)
    if beta == 1.0:
        raise ValueError(f"beta must lie in [0, 1), got {beta}")
    n = _as_counts(counts)
    effective = -torch.expm1(n * math.log(beta)) if beta > 0 else torch.where(n > 0, 1.0, 0.0).double()  # 1 - beta^n
    return _rescale(torch.where(n > 0, (1.0 - beta) / effective.clamp_min(1e-300), 0.0))


def class_weights(scheme: str, counts, beta: float = 0.999) -> torch.Tensor:
    """Weights by scheme name (``"inverse"``, ``"median"`` or ``"effective"``) from ``counts``, a
    ``(C,)`` vector of pixel counts or a :class:`PixelCounts` (only ``"median"`` reads its image pixels).

    Raises:
        ValueError: unknown scheme, bad counts or beta.
    """
    if scheme == "inverse":
        return inverse_frequency(counts)
    if scheme == "median":
        return median_frequency(counts)
    if scheme == "effective":
        return effective_number(counts, beta)
    raise ValueError(f"unknown class-weight scheme {scheme!r}; choose from {SCHEMES}")
