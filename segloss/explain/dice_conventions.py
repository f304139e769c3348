"""Other libraries' soft Dice losses, reproduced in plain torch.

"Dice loss" is one formula, ``1 - (2 TP_c + s) / (sum p_c + sum y_c + s)`` per class, with four
choices that change its value by large factors on the same input:

- **which pixels form a region**: the whole batch pooled (segloss's default, MONAI
  ``batch=True``, smp) or each image on its own, then averaged (MONAI's default ``batch=False``);
- **which classes are averaged**: those present in the target (segloss), every class with the
  absent ones counting 0 in a mean over all ``C`` (smp), or every class with the absent ones
  scored like the rest (MONAI: an absent class the model predicts anywhere costs about 1);
- **the smoothing** ``s``: 1 (segloss's default), ``1e-5`` (MONAI), 0 (smp, whose ``eps``
  only guards a zero denominator);
- **the denominator**: ``sum p + sum y`` or V-Net's ``sum p^2 + sum y^2`` (MONAI
  ``squared_pred=True``; Milletari et al. 2016); and where the smoothing goes: smp 0.4+ adds it
  twice, ``(2 TP + 2 s) / (P + G + 2 s)``, smp 0.3 once.

Each function mirrors one library version on logits ``(N, C, *S)`` (softmax over classes) and
integer labels ``(N, *S)``; ignored pixels are left out of every sum (MONAI 1.6's ``ignore_index``
zeroes prediction and one-hot target there, as the usual wrapper did before it had one). They return
the scalar "mean". The segloss side is :func:`segloss.losses.region.soft_dice_loss`.
"""

from __future__ import annotations

import torch

from segloss.losses._checks import check_logits_target, check_number

MONAI_SMOOTH = 1e-5
SMP_EPS = 1e-7


def _probs_and_onehot(logits: torch.Tensor, target: torch.Tensor, ignore_index: int):
    """Softmax ``p`` and one-hot ``y``, both ``(N, C, P)`` in float64 and zero at ignored pixels."""
    target = check_logits_target(logits, target, ignore_index)  # int64 where uint8 would wrap ignore_index
    n, c = logits.shape[:2]
    valid = (target != ignore_index).reshape(n, 1, -1).double()
    probs = logits.double().softmax(dim=1).reshape(n, c, -1) * valid
    safe = torch.where(target != ignore_index, target, 0).reshape(n, 1, -1).long()
    onehot = torch.zeros_like(probs).scatter_(1, safe, 1.0) * valid
    return probs, onehot


def monai_dice_loss(logits, target, *, batch: bool = False, include_background: bool = True,
                    squared_pred: bool = False, smooth_nr: float = MONAI_SMOOTH, smooth_dr: float = MONAI_SMOOTH,
                    ignore_index: int = 255) -> torch.Tensor:
    """MONAI 1.6.1 ``DiceLoss(softmax=True, to_onehot_y=True, ...)`` with ``reduction="mean"``.

    Per class (and per image unless ``batch``): ``1 - (2 I + smooth_nr) / (G + P + smooth_dr)``
    with ``I = sum p y``, ``G = sum y`` (``sum y^2``), ``P = sum p`` (``sum p^2`` with
    ``squared_pred``); the mean over every image and class, absent classes included;
    ``include_background=False`` drops class 0.
    """
    for name, value in (("smooth_nr", smooth_nr), ("smooth_dr", smooth_dr)):
        check_number(value, name, low=0.0)
    p, y = _probs_and_onehot(logits, target, ignore_index)
    if not include_background:
        p, y = p[:, 1:], y[:, 1:]
    dims = (0, 2) if batch else (2,)
    intersection = (p * y).sum(dims)
    pred = (p * p).sum(dims) if squared_pred else p.sum(dims)
    truth = (y * y).sum(dims) if squared_pred else y.sum(dims)
    return (1.0 - (2.0 * intersection + smooth_nr) / (truth + pred + smooth_dr)).mean()


SMP_VERSIONS = ("0.4", "0.3")


def smp_dice_loss(logits, target, *, smooth: float = 0.0, eps: float = SMP_EPS, version: str = "0.4",
                  ignore_index: int = 255) -> torch.Tensor:
    """segmentation_models_pytorch ``losses.DiceLoss("multiclass", from_logits=True)``.

    Batch-pooled per class, with ``I = sum p y``, ``P = sum p``, ``G = sum y``:

    - ``version="0.4"`` (smp 0.4.0 and later, which score Dice as a Tversky index with
      ``alpha = beta = 0.5``): ``dice = (I + s) / max(I + (P - I)/2 + (G - I)/2 + s, eps)``
      ``= (2 I + 2 s) / (P + G + 2 s)``;
    - ``version="0.3"`` (smp 0.3.x): ``dice = (2 I + s) / max(P + G + s, eps)``.

    The two agree at ``smooth = 0``, smp's default. ``1 - dice`` is multiplied by 0 for classes
    absent from the target, then ``mean()`` is taken over all ``C`` classes: absent classes pull
    the mean down by ``|present| / C``.

    Raises:
        ValueError: an unknown ``version``, negative ``smooth`` or ``eps``; bad logits/target.
    """
    check_number(smooth, "smooth", low=0.0)
    check_number(eps, "eps", low=0.0)
    if version not in SMP_VERSIONS:
        raise ValueError(f"version must be one of {SMP_VERSIONS} (smp 0.4+ or 0.3.x), got {version!r}")
    p, y = _probs_and_onehot(logits, target, ignore_index)
    intersection, cardinality = (p * y).sum((0, 2)), (p + y).sum((0, 2))
    if version == "0.4":
        dice = (intersection + smooth) / (0.5 * cardinality + smooth).clamp_min(eps)
    else:
        dice = (2.0 * intersection + smooth) / (cardinality + smooth).clamp_min(eps)
    present = y.sum((0, 2)) > 0
    return ((1.0 - dice) * present).mean()
