"""``nn.Module`` forms of the region losses (:mod:`segloss.losses.region`, :mod:`~segloss.losses.unified_focal`):
soft Dice, Jaccard, Generalized Dice, (Focal) Tversky, Unified Focal and Lovász-Softmax (also
reachable as ``segloss.losses.modules.<Name>``, or by registry name with ``segloss.create_loss``)."""

from __future__ import annotations

import torch

from segloss.losses import region, unified_focal
from segloss.losses._checks import check_number, check_per_image
from segloss.losses._distributed import check_sync
from segloss.losses._module_base import _PixelLoss


class _RegionLoss(_PixelLoss):
    """Common state of the region losses (see :mod:`segloss.losses.region`): weight, ignore_index, reduction, per_image."""

    def __init__(self, per_image: bool = False, weight=None, ignore_index: int = 255, reduction: str = "mean",
                 sync_distributed: bool | torch.distributed.ProcessGroup = True) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.per_image = check_per_image(per_image)
        self.sync_distributed = check_sync(sync_distributed)  # the global batch's loss under torch.distributed

    def _common(self) -> dict:
        return {**super()._common(), "per_image": self.per_image, "sync_distributed": self.sync_distributed}

    def _params(self) -> dict:
        return {}

    def extra_repr(self) -> str:
        own = "".join(f"{name}={value}, " for name, value in self._params().items())
        return f"{own}per_image={self.per_image}, " + super().extra_repr()


class TverskyLoss(_RegionLoss):
    """(Focal) Tversky loss; see :func:`segloss.losses.region.tversky_loss` (gamma = 1: plain Tversky)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, gamma: float = 1.0, smooth: float = 1.0, **common) -> None:
        super().__init__(**common)
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma), ("smooth", smooth)):
            check_number(value, name, low=0.0)
        if gamma == 0:
            raise ValueError("gamma must be > 0 (gamma = 0 makes the loss a constant)")
        self.alpha, self.beta, self.gamma, self.smooth = float(alpha), float(beta), float(gamma), float(smooth)

    def _params(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta, "gamma": self.gamma, "smooth": self.smooth}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return region.tversky_loss(logits, target, alpha=self.alpha, beta=self.beta, gamma=self.gamma,
                                   smooth=self.smooth, **self._common())


class DiceLoss(_RegionLoss):
    """Soft Dice loss; see :func:`segloss.losses.region.soft_dice_loss`."""

    def __init__(self, smooth: float = 1.0, **common) -> None:
        super().__init__(**common)
        check_number(smooth, "smooth", low=0.0)
        self.smooth = float(smooth)

    def _params(self) -> dict:
        return {"smooth": self.smooth}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return region.soft_dice_loss(logits, target, smooth=self.smooth, **self._common())


class JaccardLoss(DiceLoss):
    """Soft Jaccard (IoU) loss; see :func:`segloss.losses.region.soft_jaccard_loss`."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return region.soft_jaccard_loss(logits, target, smooth=self.smooth, **self._common())


class GeneralizedDiceLoss(DiceLoss):
    """Generalized Dice loss; see :func:`segloss.losses.region.generalized_dice_loss`."""

    def __init__(self, smooth: float = 1e-5, **common) -> None:
        super().__init__(smooth=smooth, **common)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return region.generalized_dice_loss(logits, target, smooth=self.smooth, **self._common())


class UnifiedFocalLoss(_RegionLoss):
    """Asymmetric Unified Focal loss; see :func:`segloss.losses.unified_focal.unified_focal_loss`."""

    def __init__(self, tversky_weight: float = 0.5, delta: float = 0.6, gamma: float = 0.5, background: int = 0,
                 per_image: bool = True, **common) -> None:
        if common.get("weight") is not None:
            raise ValueError("the unified focal loss takes no class weights: delta weighs the rare classes "
                             "against the background")
        super().__init__(per_image=per_image, **common)
        for name, value in (("tversky_weight", tversky_weight), ("delta", delta), ("gamma", gamma)):
            check_number(value, name, low=0.0, high=1.0)
        self.tversky_weight, self.delta, self.gamma = float(tversky_weight), float(delta), float(gamma)
        self.background = int(background)

    def _params(self) -> dict:
        return {"tversky_weight": self.tversky_weight, "delta": self.delta, "gamma": self.gamma,
                "background": self.background}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        common = {k: v for k, v in self._common().items() if k != "weight"}
        return unified_focal.unified_focal_loss(logits, target, **self._params(), **common)


class LovaszSoftmaxLoss(_RegionLoss):
    """Lovász-Softmax loss; see :func:`segloss.losses.region.lovasz_softmax_loss`."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return region.lovasz_softmax_loss(logits, target, **self._common())
