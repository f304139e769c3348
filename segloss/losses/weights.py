"""Class weights from pixel counts, the usual baselines for weighted cross-entropy.

All schemes take ``counts``, a ``(C,)`` vector of pixel counts ``n_c`` (e.g. from
:func:`pixel_counts` over a training set), give weight 0 to classes with no pixels, and return
a float32 ``(C,)`` tensor:

- ``inverse``: ``w_c ∝ 1 / n_c``, rescaled so the weights of present classes sum to C.
- ``median``: median frequency balancing (Eigen & Fergus 2015), ``w_c = median(n) / n_c`` with
  the median over present classes; not rescaled.
- ``effective``: effective number of samples (Cui et al., CVPR 2019),
  ``w_c = (1 - b) / (1 - b^{n_c})``, rescaled so the weights sum to C.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

SCHEMES = ("inverse", "median", "effective")


def pixel_counts(target, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Pixels per class in integer labels of any shape (tensor or numpy), ignoring ``ignore_index``.

    Returns:
        int64 ``(num_classes,)``.

    Raises:
        TypeError: non-integer labels. ValueError: labels outside ``[0, num_classes)``.
    """
    target = torch.as_tensor(target)
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer labels, got dtype {target.dtype}")
    labels = target[target != ignore_index].long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}, "
            f"got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return torch.bincount(labels, minlength=num_classes)


def _as_counts(counts: torch.Tensor | Sequence[float]) -> torch.Tensor:
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


def inverse_frequency(counts: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``w_c ∝ 1 / n_c`` (0 for absent classes), summing to C."""
    n = _as_counts(counts)
    return _rescale(torch.where(n > 0, 1.0 / n.clamp_min(1e-300), 0.0))


def median_frequency(counts: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """``w_c = median(n) / n_c`` over present classes (0 for absent classes).

    The median of an even number of counts is the mean of the two middle ones, as numpy's and the
    median-frequency balancing of Eigen and Fergus (ICCV 2015) and SegNet take it (torch's
    ``median`` would take the lower one).
    """
    n = _as_counts(counts)
    median = n[n > 0].quantile(0.5)
    return torch.where(n > 0, median / n.clamp_min(1e-300), 0.0).float()


def effective_number(counts: torch.Tensor | Sequence[float], beta: float = 0.999) -> torch.Tensor:
    """``w_c = (1 - beta) / (1 - beta^{n_c})`` (0 for absent classes), summing to C.

    Raises:
        ValueError: ``beta`` outside ``[0, 1)``.
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must lie in [0, 1), got {beta}")
    n = _as_counts(counts)
    effective = -torch.expm1(n * math.log(beta)) if beta > 0 else torch.where(n > 0, 1.0, 0.0).double()  # 1 - beta^n
    return _rescale(torch.where(n > 0, (1.0 - beta) / effective.clamp_min(1e-300), 0.0))


def class_weights(scheme: str, counts: torch.Tensor | Sequence[float], beta: float = 0.999) -> torch.Tensor:
    """Weights by scheme name (``"inverse"``, ``"median"`` or ``"effective"``).

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
