"""The one reduction rule every loss shares: "none" / "sum" / "mean" with a safe denominator."""

from __future__ import annotations

import torch


def safe_divide(total: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``total / denominator``, or 0 (still in the graph, with zero gradient) when the denominator is 0."""
    has_any = denominator > 0
    return torch.where(has_any, total / torch.where(has_any, denominator, 1.0), total * 0.0)


def pixel_weights(target: torch.Tensor, counted: torch.Tensor, weight: torch.Tensor | None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """What a "mean" divides by, pixel by pixel: ``weight[y_i]`` (1 without class weights) where
    ``counted`` (bool ``(N, *S)``: the valid pixels, or OHEM's kept ones), 0 elsewhere; ``(N, *S)``
    in ``dtype``. Its sum is the denominator; times a per-pixel loss, the weighted map."""
    ones = counted.to(dtype)
    if weight is None:
        return ones
    # labels outside [0, C) index nothing: on CUDA their check is read at the end of the call (or of a
    # sum's block), after this gather; an out-of-range gather there is a device assert, not a ValueError
    inside = counted & (target >= 0) & (target < weight.numel())
    return ones * weight.to(dtype)[torch.where(inside, target, 0).long()]


def reduce_map(pixel_loss: torch.Tensor, denominator: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce a per-pixel map ``(N, *S)`` that is already weighted and 0 at ignored pixels: the map
    itself (``"none"``), its sum, or the sum over the 0-dim ``denominator`` (``"mean"``).

    ``"mean"`` divides by ``denominator`` (the number of valid pixels, or the sum of their class
    weights) through :func:`safe_divide`.
    """
    if reduction == "none":
        return pixel_loss
    total = pixel_loss.sum()
    return total if reduction == "sum" else safe_divide(total, denominator)
