"""Weighted sums of losses as ``nn.Module``: :class:`SumLoss` (Dice + CE and the like) and
:class:`ScheduledSumLoss` (Generalized Dice + boundary under Kervadec et al.'s weight schedule)."""

from __future__ import annotations

import torch
from torch import nn

from segloss.kernels import device_checks
from segloss.losses._checks import check_number
from segloss.losses._module_base import _Float32State, _NormalTensors


class _WeightedSum(_NormalTensors):
    """A weighted sum of losses sharing ``ignore_index`` and ``reduction``; :meth:`parts` lists
    ``(weight, loss)`` (what :func:`segloss.analysis.per_image_loss` sums image by image)."""

    def parts(self) -> list[tuple[float | torch.Tensor, nn.Module]]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def ignore_index(self) -> int:
        return self.parts()[-1][1].ignore_index

    @property
    def reduction(self) -> str:
        return self.parts()[-1][1].reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with device_checks.one_check_for_all():  # on CUDA: one flag read for all the parts, not one each
            return sum(weight * part(logits, target) for weight, part in self.parts())


class SumLoss(_WeightedSum):
    """``pixel_loss + dice_weight * region_loss``, the common compound losses (e.g. Dice + CE).

    Both parts share ``ignore_index`` and class weights; ``reduction`` must be "mean" or "sum"
    (a region loss has no per-pixel map to add).
    """

    def __init__(self, pixel: nn.Module, region_part: nn.Module, dice_weight: float = 1.0) -> None:
        super().__init__()
        check_number(dice_weight, "dice_weight", low=0.0)
        if getattr(pixel, "reduction", "mean") == "none":
            raise ValueError("a sum with a region loss has no per-pixel map: use reduction 'mean' or 'sum'")
        self.pixel, self.region_part, self.dice_weight = pixel, region_part, float(dice_weight)

    def parts(self) -> list[tuple[float, nn.Module]]:
        return [(1.0, self.pixel), (self.dice_weight, self.region_part)]

    def extra_repr(self) -> str:
        return f"dice_weight={self.dice_weight}"


class ScheduledSumLoss(_Float32State, _WeightedSum):
    """``a * region_part + b * boundary_part`` with Kervadec et al.'s schedule of the two weights.

    Each :meth:`schedule_step` (once per epoch in the authors' code, their ``StealWeight``
    scheduler) moves ``steal`` of weight from the region loss to the boundary loss::

        a <- max(floor, a - steal),    b <- b + steal

    starting from ``a = 1``, ``b = boundary_weight`` (the authors': GDL at 1, boundary at 0.01,
    steal 0.01, floor 0.1). The weights are a buffer ``loss_weights = [a, b]``, so they are
    saved with the state dict and a resumed run continues the schedule.

    Raises:
        ValueError: weights out of range, or ``reduction="none"`` (a region loss has no per-pixel map).
    """

    _state_buffers = ("loss_weights",)  # the schedule: float32 even in a bfloat16 model

    def __init__(self, region_part: nn.Module, boundary_part: nn.Module, boundary_weight: float = 0.01,
                 steal: float = 0.01, floor: float = 0.1) -> None:
        super().__init__()
        check_number(boundary_weight, "boundary_weight", low=0.0, high=1e12)
        check_number(steal, "steal", low=0.0, high=1.0)
        check_number(floor, "floor", low=0.0, high=1.0)
        if getattr(boundary_part, "reduction", "mean") == "none":
            raise ValueError("a sum with a region loss has no per-pixel map: use reduction 'mean' or 'sum'")
        self.region_part, self.boundary_part = region_part, boundary_part
        self.steal, self.floor = float(steal), float(floor)
        with torch.inference_mode(False):  # built in inference mode, it still trains (weights saved for backward)
            self.register_buffer("loss_weights", torch.tensor([1.0, float(boundary_weight)]))

    def parts(self) -> list[tuple[torch.Tensor, nn.Module]]:
        region_weight, boundary_weight = self.loss_weights.unbind(0)
        return [(region_weight, self.region_part), (boundary_weight, self.boundary_part)]

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                distance_maps: torch.Tensor | None = None) -> torch.Tensor:
        """``a * region_part(logits, target) + b * boundary_part(logits, target, distance_maps)``.

        ``distance_maps`` ``(N, C, *S)``: the boundary part's maps, as :class:`BoundaryLoss` takes them
        (``segloss.functional.signed_distance_maps(target, C)``, e.g. from a data loader). Given, no
        distance transform runs per call, and under ``torch.compile`` the sum stays in one graph."""
        (region_weight, region_part), (boundary_weight, boundary_part) = self.parts()
        given = () if distance_maps is None else (distance_maps,)
        with device_checks.one_check_for_all():  # on CUDA: one flag read for both parts
            return region_weight * region_part(logits, target) + boundary_weight * boundary_part(logits, target,
                                                                                              *given)

    def current_weights(self) -> dict[str, float]:
        """``{"region": a, "boundary": b}`` as floats (one device sync; float32 noise rounded away)."""
        region_weight, boundary_weight = self.loss_weights.tolist()
        return {"region": round(region_weight, 6), "boundary": round(boundary_weight, 6)}

    @torch.no_grad()
    def schedule_step(self) -> dict[str, float]:
        """One step of the schedule (call it once per epoch); returns the new weights."""
        region_weight, boundary_weight = self.loss_weights.tolist()
        self.loss_weights.copy_(torch.tensor([max(self.floor, region_weight - self.steal),
                                              boundary_weight + self.steal], device=self.loss_weights.device))
        return self.current_weights()

    def extra_repr(self) -> str:
        return f"steal={self.steal}, floor={self.floor}"
