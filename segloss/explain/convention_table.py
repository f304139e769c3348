"""Every convention of :mod:`segloss.explain.conventions` on one input, side by side, and what converts them.

:func:`compare_conventions` evaluates each library's "focal loss", the two weighted-CE means and
the three "Dual Focal" formulas and the soft Dice losses (:mod:`segloss.explain.dice_conventions`) on the
same ``(logits, target)`` and returns one
:class:`ConventionRow` per convention: its value, its ratio to segloss's value for the same kind
of loss, the reason in one sentence, and, only where one is exact, the factor that turns it into
another row's value (``value * factor == that row's value``, up to float rounding).
:func:`dual_focal_curves` draws the three "Dual Focal" formulas against ``p_t`` on the synthetic
pixels of :mod:`segloss.analysis`. Inputs for the app come from :mod:`segloss.uploads.convention_inputs`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from segloss.explain import conventions as cv
from segloss.explain import dice_conventions as dc
from segloss.losses import functional as SF
from segloss.losses import region
from segloss.losses._checks import check_logits_target, check_number
from segloss.losses._reduction import pixel_weights
from segloss.explain.analysis import synthetic_probabilities
from segloss.losses.weights import inverse_frequency, pixel_counts

GROUPS = ("focal", "weighted CE", "dual focal", "dice")
SEGLOSS = "segloss 0.1 (this repo)"
KORNIA = "kornia 0.9.0 (kornia.losses.focal_loss)"
MONAI = "MONAI 1.6.1 (monai.losses.FocalLoss, to_onehot_y=True)"
TORCHVISION = "torchvision 0.29 (torchvision.ops.sigmoid_focal_loss, one-hot targets)"
SMP = "segmentation_models_pytorch 0.3 to 0.5.0 (losses.FocalLoss)"
SMP_06 = "segmentation_models_pytorch 0.6.0 (losses.FocalLoss)"
TORCH_CE = "torch 2.x (F.cross_entropy)"
TAO = "Tao, Dong, Xu, ICML 2023, arXiv:2305.13665"
PORT = "github CoinCheung/pytorch-loss (2019), a port of Hossain et al.'s withdrawn arXiv:1909.11932"
MONAI_DICE = "MONAI 1.6.1 (monai.losses.DiceLoss, softmax=True, to_onehot_y=True)"
SMP_DICE = "segmentation_models_pytorch 0.3.x and 0.4+ (losses.DiceLoss, multiclass; the same at smooth=0)"


@dataclass(frozen=True)
class ConventionRow:
    """One convention evaluated on the input.

    Attributes:
        group: ``"focal"``, ``"weighted CE"`` or ``"dual focal"``.
        name: the call, with its parameters.
        library: library and version (or paper) mirrored.
        value: the loss it gives.
        ratio: ``value / reference`` where the reference is segloss's row of the group (NaN if 0).
        reason: one sentence on why it differs from segloss's value.
        factor: exact ``f`` with ``value * f == value of converts_to``, or None where none is exact.
        factor_formula: ``f`` in symbols (``N·C·H·W / |V|``), "" without a factor.
        converts_to: name of the row the factor leads to, "" without a factor.
    """

    group: str
    name: str
    library: str
    value: float
    ratio: float
    reason: str
    factor: float | None = None
    factor_formula: str = ""
    converts_to: str = ""


def compare_conventions(logits: torch.Tensor, target: torch.Tensor, *, gamma: float = 2.0, alpha: float = 0.25,
                        weight: torch.Tensor | None = None, ignore_index: int = 255) -> list[ConventionRow]:
    """Every convention on one input, computed in float64.

    Args:
        logits: float ``(N, C, *S)``.
        target: integer ``(N, *S)``, values in ``[0, C)`` or ``ignore_index``.
        gamma: focusing parameter of every focal variant and of Tao et al.'s DFL, ``>= 0``.
        alpha: each library's alpha, in ``(0, 1)`` (each library reads it its own way).
        weight: class weights ``(C,)`` of the weighted-CE rows; None: inverse frequency of the
            input's own labels (:func:`segloss.losses.weights.inverse_frequency`), 1 if none is valid.
        ignore_index: label of unscored pixels (passed to every library that has one).

    Returns:
        Rows grouped as :data:`GROUPS`, segloss's row first in each group. The row of MONAI
        without ``ignore_index`` is there only when no pixel is ignored (MONAI cannot one-hot
        the ignore label then). Without any valid pixel no factor is given (values are 0 or NaN).

    Raises:
        TypeError, ValueError: bad inputs, ``gamma < 0``, ``alpha`` outside ``(0, 1)``.
    """
    check_number(gamma, "gamma", low=0.0)
    check_number(alpha, "alpha", low=0.0, high=1.0, low_inclusive=False)
    if alpha == 1.0:
        raise ValueError("alpha must be < 1 (1 - alpha weighs the negatives or the background)")
    target = check_logits_target(logits, target, ignore_index)  # int64 where uint8 would wrap ignore_index
    z, c, g, a = logits.double(), logits.shape[1], float(gamma), float(alpha)
    n_valid = int((target != ignore_index).sum())
    elements = z.numel()
    if weight is None:
        counts = pixel_counts(target, c, ignore_index)
        weight = inverse_frequency(counts) if n_valid else torch.ones(c)
    weight = torch.as_tensor(weight, dtype=torch.float64)
    weight_sum = float(pixel_weights(target, target != ignore_index, weight, torch.float64).sum())

    def exact(num: float, den: float) -> float | None:
        return num / den if den else None

    to_all = exact(elements, n_valid)  # N·C·H·W / |V|
    ours, ours_a = "segloss focal_loss, α=None", f"segloss focal_loss, α={a:g}"
    ours_vec = "segloss focal_loss, α_c=(1-α, α, …)"
    monai_soft = f"MONAI FocalLoss softmax, α={a:g}, ignore_index={ignore_index}"
    monai_sig = f"MONAI FocalLoss sigmoid, α={a:g}"
    vector = [1.0 - a] + [a] * (c - 1)
    kw = {"ignore_index": ignore_index}
    specs = [
        ("focal", ours, SEGLOSS, SF.focal_loss(z, target, gamma=g, **kw),
         "Reference: softmax focal -(1-p_t)^γ log p_t on the true class, mean over the |V| valid pixels.",
         None, "", ""),
        ("focal", ours_a, SEGLOSS, SF.focal_loss(z, target, gamma=g, alpha=a, **kw),
         "In the softmax form a scalar α scales every pixel, so the value is exactly α times the reference.",
         1.0 / a, "1 / α", ours),
        ("focal", ours_vec, SEGLOSS, SF.focal_loss(z, target, gamma=g, alpha=vector, **kw),
         "kornia's and MONAI's scalar α as a per-class vector: class 0 (background) weighs 1-α, every other class "
         "α, so the ratio depends on the share of background pixels.", None, "", ""),
        ("focal", "kornia focal_loss, α=None", KORNIA, cv.kornia_focal_loss(z, target, alpha=None, gamma=g, **kw),
         "Same formula, but 'mean' divides by every element of its (N, C, H, W) map, ignored pixels included: "
         "C times smaller when nothing is ignored.", to_all, "N·C·H·W / |V|", ours),
        ("focal", f"kornia focal_loss, α={a:g}", KORNIA, cv.kornia_focal_loss(z, target, alpha=a, gamma=g, **kw),
         "Background weighs 1-α and every other class α, and 'mean' divides by N·C·H·W elements.",
         to_all, "N·C·H·W / |V|", ours_vec),
        ("focal", monai_soft, MONAI,
         cv.monai_focal_loss(z, target, use_softmax=True, alpha=a, gamma=g, **kw),
         "kornia's α, but with ignore_index set its 'mean' divides by the valid pixels, so it equals our "
         "per-class-α value.", 1.0, "1", ours_vec),
    ]
    if n_valid == target.numel():
        specs.append(("focal", f"MONAI FocalLoss softmax, α={a:g}, ignore_index=None", MONAI,
                      cv.monai_focal_loss(z, target, use_softmax=True, alpha=a, gamma=g, ignore_index=None),
                      "Without ignore_index MONAI's 'mean' runs over all N·C·H·W elements: exactly C times smaller "
                      "than with it.", float(c), "C", monai_soft))
    specs += [
        ("focal", monai_sig, MONAI,
         cv.monai_focal_loss(z, target, use_softmax=False, alpha=a, gamma=g, **kw),
         "One-vs-all sigmoid: C binary focal terms per pixel (true class positive, weight α; the rest negative, "
         "weight 1-α), summed and divided by |V|; no constant converts sigmoid to softmax.", None, "", ""),
        ("focal", f"torchvision sigmoid_focal_loss, α={a:g}", TORCHVISION,
         cv.torchvision_sigmoid_focal_loss(z, target, alpha=a, gamma=g, **kw),
         "MONAI's sigmoid terms, averaged over all N·C·H·W elements (it has no ignore_index: ignored pixels are "
         "zeroed but counted).", to_all, "N·C·H·W / |V|", monai_sig),
        ("focal", f"smp FocalLoss multiclass, α={a:g}", SMP, cv.smp_focal_loss(z, target, alpha=a, gamma=g, **kw),
         "One sigmoid focal loss per class, each averaged over the valid pixels, then summed over classes: "
         "MONAI's sigmoid number.", 1.0, "1", monai_sig),
        ("focal", f"smp 0.6 FocalLoss multiclass, α={a:g}", SMP_06,
         cv.smp_focal_loss(z, target, alpha=a, gamma=g, version="0.6", **kw),
         "The same per-class losses, averaged over the classes instead of summed (smp 0.6.0): C times smaller "
         "than smp 0.5's number for the same model and data.", float(c), "C", monai_sig),
    ]
    ce_ours, ce_valid = "segloss cross_entropy(weight=w) = torch", "hand-written weighted CE, ÷ |V|"
    specs += [
        ("weighted CE", ce_ours, f"{SEGLOSS}; {TORCH_CE}",
         SF.cross_entropy(z, target, weight=weight, **kw),
         "Reference: torch's weighted mean divides Σ w_y CE by Σ w_y over valid pixels (w: inverse frequency).",
         None, "", ""),
        ("weighted CE", ce_valid, "common hand-written code",
         cv.weighted_ce_mean_by_valid_pixels(z, target, weight, **kw),
         "Divides the same weighted sum by |V|, a factor Σ w_y / |V| away that changes with each batch's class mix.",
         exact(n_valid, weight_sum), "|V| / Σ w_y", ce_ours),
        ("dual focal", "segloss dual_focal_loss (Hossain et al. 2021)",
         f"{SEGLOSS}; Hossain et al., Neurocomputing 2021",
         SF.dual_focal_loss(z, target, **kw),
         "Reference at α=β=γ=ρ=1: -log p_t - Σ_{c≠t} log(1-p_c) + 2(1-p_t), mean over valid pixels.",
         None, "", ""),
        ("dual focal", f"Tao et al. 2023 DFL, γ={g:g}", TAO, cv.tao_dual_focal_loss(z, target, gamma=g, **kw),
         "A different loss for calibration: -(1-p_t+p_j)^γ log p_t, p_j the largest probability below p_t.",
         None, "", ""),
        ("dual focal", "2019 port: -Σ log(1-(p-y)²)", PORT, cv.port_2019_dual_focal_loss(z, target, **kw),
         "A third formula with no separate CE term; its true-class term -log p_t - log(2-p_t) grows like CE "
         "as p_t -> 0 until eps = 1e-5 caps it (-C log 1e-5 per pixel at most).", None, "", ""),
    ]
    specs += _dice_specs(z, target, ignore_index)
    references = {}
    rows = []
    for group, name, library, value, reason, factor, formula, converts_to in specs:
        value, factor = float(value), factor if n_valid else None  # no valid pixel: nothing to convert
        reference = references.setdefault(group, value)
        ratio = value / reference if reference else math.nan
        rows.append(ConventionRow(group, name, library, value, ratio, reason, factor,
                                  formula if factor is not None else "", converts_to if factor is not None else ""))
    return rows


def _dice_specs(z: torch.Tensor, target: torch.Tensor, ignore_index: int) -> list[tuple]:
    """The "dice" group's rows (see :func:`compare_conventions`)."""
    c = z.shape[1]
    present = int((torch.bincount(target[target != ignore_index].reshape(-1), minlength=c) > 0).sum())
    ours, ours0 = "segloss dice, s=1", "segloss dice, s=0"
    kw = {"ignore_index": ignore_index}
    return [
        ("dice", ours, SEGLOSS, region.soft_dice_loss(z, target, smooth=1.0, **kw),
         "Reference: one region per class over the whole batch, 1 - (2 TP + 1) / (Σp + Σy + 1), averaged over the "
         "classes present in the labels.", None, "", ""),
        ("dice", ours0, SEGLOSS, region.soft_dice_loss(z, target, smooth=0.0, **kw),
         "Without smoothing: a tiny region's score swings more. Only classes present are scored (Σy >= 1), so "
         "s = 0 gives no 0/0; that arises where absent classes are scored (MONAI's per-image Dice).", None, "", ""),
        ("dice", "smp DiceLoss multiclass (smooth=0)", SMP_DICE, dc.smp_dice_loss(z, target, **kw),
         "Absent classes count as 0 in a mean over all C classes, which lowers the value by |present| / C.",
         c / present if present else None, "C / |present classes|", ours0),
        ("dice", "MONAI DiceLoss (defaults: per image)", MONAI_DICE, dc.monai_dice_loss(z, target, **kw),
         "Each image's classes are scored separately and averaged over N·C, absent ones included: a class missing "
         "from an image but predicted there costs about 1, and s = 1e-5.", None, "", ""),
        ("dice", "MONAI DiceLoss batch=True", MONAI_DICE, dc.monai_dice_loss(z, target, batch=True, **kw),
         "Pooled over the batch like ours, but every class counts, absent ones too, and s = 1e-5.", None, "", ""),
        ("dice", "MONAI DiceLoss batch=True, squared_pred=True (V-Net)", MONAI_DICE,
         dc.monai_dice_loss(z, target, batch=True, squared_pred=True, **kw),
         "V-Net's denominator Σp² + Σy² (Milletari et al. 2016): unsure predictions (p < 1) shrink it, so the same "
         "prediction scores a higher Dice.", None, "", ""),
    ]


def conversion_text(row: ConventionRow) -> str:
    """``"× N·C·H·W / |V| = 9 → kornia focal_loss, α=None"``, or "" for a row without an exact factor."""
    if row.factor is None:
        return ""
    return f"× {row.factor_formula} = {row.factor:.6g} → {row.converts_to}"


def rows_as_columns(rows: list[ConventionRow]) -> dict[str, list]:
    """Rows as ``{field: [values]}``, one list per :class:`ConventionRow` field plus ``"conversion"``
    (:func:`conversion_text`), e.g. for a table or a CSV."""
    columns: dict[str, list] = {name: [] for name in (*ConventionRow.__dataclass_fields__, "conversion")}
    for row in rows:
        for name, value in (*asdict(row).items(), ("conversion", conversion_text(row))):
            columns[name].append(value)
    return columns


def dual_focal_curves(p_t: np.ndarray, num_classes: int, spread: str = "even", *,
                      gamma: float = 2.0) -> dict[str, np.ndarray]:
    """The three "Dual Focal" formulas (and CE) for one pixel against its true-class probability.

    Uses :func:`segloss.analysis.synthetic_probabilities` (class 0 true with ``p_t``, the rest
    spread ``"even"``-ly or mostly to one ``"confusing"`` class); logits are ``log p`` in float64.

    Args:
        p_t: ``(K,)`` values in ``(0, 1)``.
        num_classes: C >= 2.
        spread: ``"even"`` or ``"confusing"``.
        gamma: Tao et al.'s focusing parameter (Hossain's parameters stay at the authors' 1).

    Returns:
        name -> float64 ``(K,)`` per-pixel loss.

    Raises:
        ValueError: as :func:`segloss.analysis.synthetic_probabilities`; ``gamma < 0``.
    """
    check_number(gamma, "gamma", low=0.0)
    z = synthetic_probabilities(p_t, num_classes, spread).log()
    target = torch.zeros(len(z), dtype=torch.long)
    with torch.no_grad():
        return {
            "Hossain et al. 2021 (segloss, α=β=γ=ρ=1)": SF.dual_focal_loss(z, target, reduction="none").numpy(),
            f"Tao et al. 2023 (γ={gamma:g})": cv.tao_dual_focal_loss(z, target, gamma=gamma, reduction="none").numpy(),
            "2019 port: -Σ log(1-(p-y)²)": cv.port_2019_dual_focal_loss(z, target, reduction="none").numpy(),
            "cross-entropy": SF.cross_entropy(z, target, reduction="none").numpy(),
        }
