"""The loss registry: one ``LossSpec`` per loss, from which pages build their widgets.

A loss added here (and in :mod:`segloss.functional`) appears on every page. Each spec carries
the title, a LaTeX formula, the citation, and its parameters with default, range, step and help
text; ``create_loss(name, **params)`` validates the parameters against the spec and builds the
``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from segloss.losses import modules
from segloss.losses._checks import MAX_EXPONENT
from segloss.losses._distributed import check_sync
from segloss.losses.weights import SCHEMES, class_weights


@dataclass(frozen=True)
class ParamSpec:
    """One hyper-parameter of a loss.

    ``kind`` is ``"float"`` (a number in ``[low, high]``), ``"choice"`` (one of ``choices``) or
    ``"multichoice"`` (a tuple of ``choices``). ``per_class_ok`` means a ``(C,)`` vector is also
    accepted through :func:`create_loss` (not offered as a widget). ``schedule_only`` parameters
    change the loss between epochs (a schedule), not its value at one moment. ``slider`` is the
    app's slider range where ``[low, high]`` is wider than a slider can serve.
    """

    name: str
    label: str
    default: object
    help: str
    kind: str = "float"
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple = ()
    per_class_ok: bool = False
    schedule_only: bool = False  # changes the loss between epochs only: pages showing one moment skip it
    slider: tuple[float, float] | None = None

    @property
    def slider_range(self) -> tuple[float, float]:
        """``(low, high)`` of the app's slider: ``slider``, or the bounds."""
        return self.slider or (self.low, self.high)

    def shown(self, value) -> str:
        """The setting as a reader of the loss's formula names it: its symbol there when it has one
        (``"γ = 2"``, ``"λ = 0.5"``), else the widget's label and the value (``"Regions per image"``)."""
        if isinstance(value, (tuple, list)):
            text = " + ".join(value) or "none"
        else:
            text = f"{value:g}" if isinstance(value, float) else str(value)
        symbol = PARAM_SYMBOLS.get(self.name)
        return f"{symbol} = {text}" if symbol else f"{self.label} {text}"


# The symbols the formulas (LossSpec.formula) give the parameters; one name, one symbol in every loss.
PARAM_SYMBOLS = {"alpha": "α", "beta": "β", "gamma": "γ", "rho": "ρ", "delta": "δ", "label_smoothing": "ε",
                 "smooth": "s", "tversky_weight": "λ", "dice_weight": "λ", "boundary_weight": "b", "momentum": "m",
                 "steal": "Δ"}


@dataclass(frozen=True)
class LossSpec:
    """Everything the app and ``create_loss`` know about one loss.

    ``pixelwise`` losses have a per-pixel loss map (``reduction="none"`` gives ``(N, *S)``);
    region losses (Dice, Jaccard, Tversky, Lovász and the sums containing them) score whole
    regions and have none, but every loss has a per-pixel gradient map
    (:func:`segloss.analysis.gradient_map`).
    """

    name: str
    title: str
    formula: str  # LaTeX, renderable by st.latex / KaTeX
    summary: str
    citation: str
    link: str
    params: tuple[ParamSpec, ...]
    factory: Callable[..., nn.Module]
    needs_class_counts: bool = False
    pixelwise: bool = True  # False: a region loss, no per-pixel map (reduction="none" gives per-class values)
    defaults: dict = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", {p.name: p.default for p in self.params})

    def param(self, name: str) -> ParamSpec:
        for spec in self.params:
            if spec.name == name:
                return spec
        raise KeyError(name)


def _weighted_ce(scheme, beta, *, class_counts=None, weight=None, **common):
    if weight is None:
        if class_counts is None:
            raise ValueError(
                "weighted_ce needs class_counts (segloss.losses.weights.count_pixels(train_masks, C), or "
                "pixels per class as a (C,) vector) or an explicit weight vector"
            )
        weight = class_weights(scheme, class_counts, beta)
    return modules.CrossEntropyLoss(weight=weight, **common)


def _region_common(per_image: str, common: dict) -> dict:
    return {**common, "per_image": per_image == "image"}


def _dice_plus(pixel_factory):
    def build(dice_weight, smooth, per_image, **params_and_common):
        common = {k: params_and_common.pop(k) for k in ("weight", "ignore_index", "reduction")}
        pixel = pixel_factory(**params_and_common, **common)
        dice = modules.DiceLoss(smooth=smooth, **_region_common(per_image, common))
        return modules.SumLoss(pixel, dice, dice_weight=dice_weight)
    return build


_SMOOTH = ParamSpec("smooth", "smoothing s", 1.0, "Added to numerator and denominator of each class's score: "
                    "softens the score and gradient of tiny regions. Only classes present are scored here, so a "
                    "region holds at least one pixel: for Dice and Jaccard the 0/0 that s guards against in "
                    "libraries that score absent classes does not arise (Tversky with beta = 0 can still near "
                    "it).", low=0.0, high=100.0, step=0.5)
_PER_IMAGE = ParamSpec("per_image", "Regions per", "batch", "batch: one region per class over the whole batch "
                       "(pixels pooled); image: each image's regions scored separately, then averaged.",
                       kind="choice", choices=("batch", "image"))
_TVERSKY_ALPHA = ParamSpec("alpha", "alpha (false positives)", 0.3, "Weight of false positives FP_c.",
                           low=0.0, high=1.0, step=0.05)
_TVERSKY_BETA = ParamSpec("beta", "beta (false negatives)", 0.7, "Weight of false negatives FN_c; alpha = beta = "
                          "0.5 is Dice with smoothing 2s, 1 and 1 is Jaccard.", low=0.0, high=1.0, step=0.05)
_DICE_WEIGHT = ParamSpec("dice_weight", "Dice weight lambda", 1.0, "Weight of the Dice term added to the "
                         "pixel-wise loss.", low=0.0, high=10.0, step=0.1)
_BOUNDARY_CLASSES = ParamSpec("classes", "classes scored", "foreground", "foreground: every class but 0, the "
                              "authors' choice (class 0 is the background); all: every class.",
                              kind="choice", choices=("foreground", "all"))


def _region_boundary(region, boundary_weight, steal, classes, per_image, weight, ignore_index, reduction):
    region_loss = {"generalized_dice": modules.GeneralizedDiceLoss, "dice": modules.DiceLoss}[region]
    region_part = region_loss(per_image=per_image == "image", weight=weight, ignore_index=ignore_index,
                              reduction=reduction)
    boundary_part = modules.BoundaryLoss(foreground_only=classes == "foreground", ignore_index=ignore_index,
                                         reduction=reduction)
    return modules.ScheduledSumLoss(region_part, boundary_part, boundary_weight=boundary_weight, steal=steal)


_GAMMA_HELP = "Focusing exponent: 0 gives cross-entropy; larger values down-weight easy pixels (p_t near 1) more."

LOSSES: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec(
            name="ce",
            title="Cross-entropy",
            formula=r"\mathcal{L}_{CE} = -\frac{1}{|V|}\sum_{i \in V} \log p_{i,y_i}",
            summary="The baseline: every pixel's negative log-probability of its true class, averaged.",
            citation="Standard cross-entropy; same numbers as torch.nn.functional.cross_entropy.",
            link="https://pytorch.org/docs/stable/generated/torch.nn.functional.cross_entropy.html",
            params=(),
            factory=lambda **common: modules.CrossEntropyLoss(**common),
        ),
        LossSpec(
            name="weighted_ce",
            title="Weighted cross-entropy",
            formula=r"\mathcal{L}_{wCE} = -\frac{\sum_{i \in V} w_{y_i} \log p_{i,y_i}}{\sum_{i \in V} w_{y_i}}",
            summary="Cross-entropy with fixed class weights from pixel counts, so rare classes count more.",
            citation="Median frequency: Eigen & Fergus, ICCV 2015 (arXiv:1411.4734). Effective number: "
            "Cui et al., CVPR 2019 (arXiv:1901.05555).",
            link="https://arxiv.org/abs/1901.05555",
            params=(
                ParamSpec("scheme", "Weight scheme", "median", "inverse: 1/n_c; median: median(f)/f_c, f_c = n_c over "
                          "the pixels of the images where c appears (Eigen & Fergus); effective: (1-b)/(1-b^n_c).",
                          kind="choice", choices=SCHEMES),
                ParamSpec("beta", "Effective-number b", 0.999, "Only for the 'effective' scheme: b = 0 gives "
                          "equal weights, b -> 1 inverse frequency. Every class with many more than 1/(1 - b) pixels "
                          "gets the same weight: with pixel counts, 1/(1 - b) well above the largest class's pixels "
                          "comes close to inverse frequency (at 1/(1 - b) = n the effective number is 0.63 n; a "
                          "largest class of 10^7 pixels: b = 1 - 1e-8). The slider "
                          "spans 0.9 to 0.99999, made for the app's 64 x 64 scenes.", low=0.0, high=1.0 - 1e-12, step=0.0001,
                          slider=(0.9, 0.99999)),
            ),
            factory=_weighted_ce,
            needs_class_counts=True,
        ),
        LossSpec(
            name="focal",
            title="Focal loss",
            formula=r"\mathcal{L}_{FL} = -\frac{1}{|V|}\sum_{i \in V}\alpha_{y_i}\,(1 - p_{i,y_i})^{\gamma}\log p_{i,y_i}",
            summary="Cross-entropy scaled by (1 - p_t)^gamma: well-classified pixels fade out of the loss.",
            citation="Lin, Goyal, Girshick, He, Dollár. Focal Loss for Dense Object Detection. ICCV 2017 "
            "(arXiv:1708.02002).",
            link="https://arxiv.org/abs/1708.02002",
            params=(
                ParamSpec("gamma", "gamma", 2.0, _GAMMA_HELP, low=0.0, high=MAX_EXPONENT, step=0.1, slider=(0.0, 10.0)),
                ParamSpec("alpha", "alpha", 1.0, "Scales the loss. A scalar is a global scale in this "
                          "softmax form (the paper's 0.25 balanced positives/negatives in the sigmoid "
                          "form); through create_loss a per-class vector is accepted too.",
                          low=0.0, high=10.0, step=0.05, per_class_ok=True),
                ParamSpec("label_smoothing", "label smoothing", 0.0, "Mixes in cross-entropy's uniform "
                          "smoothing term: (1 - eps) FL + eps (1/C) sum_c -log p_c.", low=0.0, high=1.0, step=0.05,
                          slider=(0.0, 0.5)),
            ),
            factory=lambda gamma, alpha, label_smoothing, **common: modules.FocalLoss(
                gamma=gamma, alpha=alpha, label_smoothing=label_smoothing, **common),
        ),
        LossSpec(
            name="dual_focal",
            title="Dual Focal loss",
            formula=r"\begin{aligned}\mathcal{L}_{DFL} = \sum_{c} \Big[&-y_c \log p_c \;-\; \beta\,(1 - y_c)\log(\rho - p_c)"
            r"\\ &+\; \alpha\,|y_c - p_c|^{\gamma}\Big]\end{aligned}",
            summary="CE on the true class, a penalty on probability given to false classes, and an additive "
            "focal-style term alpha |y - p|^gamma (for gamma < 1 its push fades more slowly than CE's as p "
            "approaches y; at the default gamma = 1 it fades like CE's, at twice its size).",
            citation="Hossain, Betts, Paplinski. Dual Focal Loss to address class imbalance in semantic "
            "segmentation. Neurocomputing 462 (2021), doi:10.1016/j.neucom.2021.07.055.",
            link="https://doi.org/10.1016/j.neucom.2021.07.055",
            params=(
                ParamSpec("alpha", "alpha", 1.0, "Weight of the focal-style term alpha |y - p|^gamma.",
                          low=0.0, high=10.0, step=0.1),
                ParamSpec("beta", "beta", 1.0, "Weight of the false-class term -beta log(rho - p_c).",
                          low=0.0, high=10.0, step=0.1),
                ParamSpec("gamma", "gamma", 1.0, "Exponent of the focal-style term.", low=0.0, high=MAX_EXPONENT, step=0.1,
                          slider=(0.0, 10.0)),
                ParamSpec("rho", "rho", 1.0, "Offset in log(rho - p_c); must be >= 1. Larger rho softens the "
                          "false-class penalty.", low=1.0, high=10.0, step=0.05),
                ParamSpec("learnable", "Learn by backpropagation", (), "Parameters made nn.Parameters, kept "
                          "inside bounds. Minimising the loss drives gamma and rho up and alpha down; beta falls while "
                          "rho is near 1, then climbs once rho - p_c > 1 for the false classes.",
                          kind="multichoice", choices=modules.DFL_PARAMETERS),
            ),
            factory=lambda alpha, beta, gamma, rho, learnable, **common: modules.DualFocalLoss(
                alpha=alpha, beta=beta, gamma=gamma, rho=rho, learnable=learnable, **common),
        ),
        LossSpec(
            name="recall",
            title="Recall loss",
            formula=r"\mathcal{L}_{R} = -\frac{1}{|V|}\sum_{c}\sum_{i \in V:\,y_i = c} (1 - R_c) \log p_{i,c},\qquad "
            r"R_c = \frac{TP_c}{N_c}",
            summary="Cross-entropy reweighted per class by the batch's recall: classes the model misses "
            "weigh more, classes it gets right fade.",
            citation="Tian, Mithun, Seymour, Chiu, Kira. Striking the Right Balance: Recall Loss for "
            "Semantic Segmentation. ICRA 2022 (arXiv:2106.14917).",
            link="https://arxiv.org/abs/2106.14917",
            params=(
                ParamSpec("momentum", "Weight momentum", 0.0, "0: the paper's instantaneous batch recall. "
                          "m > 0: running average w <- m w + (1-m) w_batch over the classes present.",
                          low=0.0, high=1.0 - 1e-9, step=0.01, slider=(0.0, 0.99)),
            ),
            factory=lambda momentum, **common: modules.RecallLoss(momentum=momentum, **common),
        ),
        LossSpec(
            name="dice",
            title="Soft Dice loss",
            formula=r"\mathcal{L}_{Dice} = \frac{1}{|P|}\sum_{c \in P}\Big[1 - \frac{2\sum_i p_{i,c} y_{i,c} + s}"
            r"{\sum_i p_{i,c} + \sum_i y_{i,c} + s}\Big]",
            summary="One minus the soft overlap of each class's predicted and true region, averaged over the "
            "classes present: every class counts the same, however few pixels it has.",
            citation="Milletari, Navab, Ahmadi. V-Net. 3DV 2016 (arXiv:1606.04797), whose denominator squares p and y; "
            "this is the linear form of MONAI's and smp's DiceLoss, averaged over the classes present (how they "
            "average: Library conventions).",
            link="https://arxiv.org/abs/1606.04797",
            params=(_SMOOTH, _PER_IMAGE),
            factory=lambda smooth, per_image, **common: modules.DiceLoss(smooth=smooth,
                                                                        **_region_common(per_image, common)),
            pixelwise=False,
        ),
        LossSpec(
            name="label_smoothing_ce",
            title="Label-smoothing cross-entropy",
            formula=r"\mathcal{L}_{LS} = \frac{1}{|V|}\sum_{i \in V}\Big[-(1-\varepsilon)\log p_{i,y_i}"
            r" - \frac{\varepsilon}{C}\sum_c \log p_{i,c}\Big]",
            summary="Cross-entropy against a softened target, 1 - eps on the true class and eps/C on every class: "
            "it never asks for p_t = 1, so confident pixels keep a small push back and logits stay bounded.",
            citation="Szegedy, Vanhoucke, Ioffe, Shlens, Wojna. Rethinking the Inception Architecture. CVPR 2016 "
            "(arXiv:1512.00567); same numbers as torch's F.cross_entropy(label_smoothing=eps).",
            link="https://arxiv.org/abs/1512.00567",
            params=(ParamSpec("label_smoothing", "smoothing eps", 0.1, "Share of the target spread evenly over the "
                              "C classes.", low=0.0, high=1.0, step=0.01, slider=(0.0, 0.5)),),
            factory=lambda label_smoothing, **common: modules.CrossEntropyLoss(label_smoothing=label_smoothing,
                                                                                 **common),
        ),
        LossSpec(
            name="ohem",
            title="OHEM cross-entropy",
            formula=r"\begin{aligned}\mathcal{L}_{OHEM} &= -\frac{1}{|K|}\sum_{i \in K} \log p_{i,y_i}\\ "
            r"K &= \{i \in V : p_{i,y_i} < \tau \ \text{or}\ p_{i,y_i} \le p_{(k)}\}\end{aligned}",
            summary="Cross-entropy on the hard pixels only: those whose true-class probability is below the "
            "threshold, and at least the hardest share min_kept; easy pixels get no loss and no gradient.",
            citation="Shrivastava, Gupta, Girshick. Training Region-based Object Detectors with Online Hard Example "
            "Mining. CVPR 2016 (arXiv:1604.03540); per-pixel form of CCNet's OhemCrossEntropy2d (mean over "
            "the kept pixels).",
            link="https://arxiv.org/abs/1604.03540",
            params=(ParamSpec("threshold", "threshold on p_t", 0.7, "Pixels whose true-class probability is below "
                              "it are kept (above 0).", low=1e-9, high=1.0, step=0.05, slider=(0.05, 1.0)),
                    ParamSpec("min_kept", "kept at least (share)", 0.1, "Share of the valid pixels always kept "
                              "(the hardest), whatever the threshold.", low=0.0, high=1.0, step=0.05)),
            factory=lambda threshold, min_kept, **common: modules.OhemCrossEntropyLoss(
                threshold=threshold, min_kept=min_kept, **common),
        ),
        LossSpec(
            name="boundary",
            title="Boundary loss",
            formula=r"\mathcal{L}_{B} = \frac{1}{|V|\,|K|}\sum_{i \in V}\sum_{c \in K} p_{i,c}\,\phi_c(i),\quad "
            r"\phi_c(i) = \pm\,\mathrm{dist}(i, \partial G_c)",
            summary="Each class's probability times the pixel's signed distance to that class's true region "
            "(negative inside, positive outside): probability put outside a region costs in proportion to how far "
            "from its boundary. Linear in the probabilities, unbounded and often negative: it is paired with a "
            "region loss (see Generalized Dice + boundary).",
            citation="Kervadec, Bouchtiba, Desrosiers, Granger, Dolz, Ben Ayed. Boundary loss for highly unbalanced "
            "segmentation. MIDL 2019; Medical Image Analysis 67 (2021), arXiv:1812.07032. Distance maps by "
            "scipy.ndimage.distance_transform_edt, as in the authors' code.",
            link="https://arxiv.org/abs/1812.07032",
            params=(_BOUNDARY_CLASSES,),
            factory=lambda classes, **common: modules.BoundaryLoss(foreground_only=classes == "foreground", **common),
        ),
        LossSpec(
            name="unified_focal",
            title="Unified Focal loss (asymmetric)",
            formula=r"\begin{aligned}\mathcal{L}_{aUF} &= \lambda\,\mathcal{L}_{aFT} + (1-\lambda)\,\mathcal{L}_{aF}\\ "
            r"\mathcal{L}_{aF} &= \tfrac{1}{|V|}\sum_i \big[(1-\delta)(1-p_{i,b})^{\gamma}\mathrm{CE}_{i,b} + "
            r"\delta\,\mathrm{CE}_{i,\mathrm{rare}}\big]\\ "
            r"\mathcal{L}_{aFT} &= \tfrac{1}{|P|}\Big[(1-TI_b) + \sum_{c \neq b}(1-TI_c)^{1-\gamma}\Big]"
            r"\end{aligned}",
            summary="Focal and focal-Tversky terms in one, both asymmetric: the background's easy pixels are "
            "suppressed, the rare classes are not, and their Tversky losses are raised to 1 - gamma < 1: "
            "enhanced, the push most where a rare region is already mostly matched (as Focal Tversky below 1).",
            citation="Yeung, Sala, Schönlieb, Rundo. Unified Focal loss. Computerized Medical Imaging and Graphics "
            "2022 (arXiv:2102.04525); multi-class here, binary as the authors' code.",
            link="https://arxiv.org/abs/2102.04525",
            params=(ParamSpec("tversky_weight", "lambda (Tversky share)", 0.5, "Weight of the focal-Tversky term; "
                              "1 - lambda goes to the focal term.", low=0.0, high=1.0, step=0.05),
                    ParamSpec("delta", "delta", 0.6, "Weight of the rare classes (and of false negatives).",
                              low=0.0, high=1.0, step=0.05),
                    ParamSpec("gamma", "gamma", 0.5, "Background suppression and rare-class enhancement.",
                              low=0.0, high=1.0, step=0.05),
                    ParamSpec("per_image", "Regions per", "image", "image: the authors' Tversky regions per image; "
                              "batch: pooled.", kind="choice", choices=("batch", "image"))),
            factory=lambda tversky_weight, delta, gamma, per_image, **common: modules.UnifiedFocalLoss(
                tversky_weight=tversky_weight, delta=delta, gamma=gamma, per_image=per_image == "image", **common),
            pixelwise=False,
        ),
        LossSpec(
            name="generalized_dice",
            title="Generalized Dice loss",
            formula=r"\mathcal{L}_{GD} = 1 - \frac{2\sum_c w_c\,TP_c + s}{\sum_c w_c\,(P_c + G_c) + s},"
            r"\quad w_c = \frac{1}{G_c^{2}}",
            summary="One Dice over all classes, each weighted by one over the square of its true region's size: "
            "a rare class's overlap counts as much as a common one's.",
            citation="Sudre, Li, Vercauteren, Ourselin, Cardoso. Generalised Dice overlap as a deep learning loss "
            "function for highly unbalanced segmentations. DLMIA 2017 (arXiv:1707.03237); absent classes as in "
            "MONAI's GeneralizedDiceLoss.",
            link="https://arxiv.org/abs/1707.03237",
            params=(ParamSpec("smooth", "smoothing s", 1e-5, "Added to numerator and denominator (MONAI's 1e-5).",
                              low=0.0, high=10.0, step=1e-5), _PER_IMAGE),
            factory=lambda smooth, per_image, **common: modules.GeneralizedDiceLoss(
                smooth=smooth, **_region_common(per_image, common)),
            pixelwise=False,
        ),
        LossSpec(
            name="jaccard",
            title="Soft Jaccard (IoU) loss",
            formula=r"\mathcal{L}_{J} = \frac{1}{|P|}\sum_{c \in P}\Big[1 - \frac{TP_c + s}{TP_c + FP_c + FN_c + s}\Big],"
            r"\quad TP_c = \sum_i p_{i,c} y_{i,c}",
            summary="One minus the soft intersection over union of each class, averaged over the classes present.",
            citation="Rahman & Wang. Optimizing Intersection-Over-Union in Deep Neural Networks for Image "
            "Segmentation. ISVC 2016, doi:10.1007/978-3-319-50835-1_22.",
            link="https://doi.org/10.1007/978-3-319-50835-1_22",
            params=(_SMOOTH, _PER_IMAGE),
            factory=lambda smooth, per_image, **common: modules.JaccardLoss(smooth=smooth,
                                                                           **_region_common(per_image, common)),
            pixelwise=False,
        ),
        LossSpec(
            name="tversky",
            title="Tversky loss",
            formula=r"\mathcal{L}_{T} = \frac{1}{|P|}\sum_{c \in P}\Big[1 - \frac{TP_c + s}"
            r"{TP_c + \alpha\,FP_c + \beta\,FN_c + s}\Big]",
            summary="Dice with separate prices for false positives (alpha) and false negatives (beta): "
            "beta > alpha trades precision for recall on small structures.",
            citation="Salehi, Erdogmus, Gholipour. Tversky loss function for image segmentation using 3D fully "
            "convolutional deep networks. MLMI 2017 (arXiv:1706.05721).",
            link="https://arxiv.org/abs/1706.05721",
            params=(_TVERSKY_ALPHA, _TVERSKY_BETA, _SMOOTH, _PER_IMAGE),
            factory=lambda alpha, beta, smooth, per_image, **common: modules.TverskyLoss(
                alpha=alpha, beta=beta, smooth=smooth, **_region_common(per_image, common)),
            pixelwise=False,
        ),
        LossSpec(
            name="focal_tversky",
            title="Focal Tversky loss",
            formula=r"\mathcal{L}_{FT} = \frac{1}{|P|}\sum_{c \in P}\big(1 - T_c\big)^{\gamma},\qquad "
            r"T_c = \frac{TP_c + s}{TP_c + \alpha\,FP_c + \beta\,FN_c + s}",
            summary="The Tversky loss of each class raised to a power: below 1 it keeps pushing classes that "
            "are already mostly right (small 1 - T), above 1 it concentrates on the worst classes.",
            citation="Abraham & Khan. A Novel Focal Tversky Loss Function with Improved Attention U-Net for "
            "Lesion Segmentation. ISBI 2019 (arXiv:1810.07842); their exponent 1/γ with γ = 4/3 is 0.75 here. "
            "Their α weighs false negatives (α = 0.7); here α weighs false positives, as in Salehi et al.'s "
            "Tversky loss, so their setting is α = 0.3, β = 0.7, the defaults.",
            link="https://arxiv.org/abs/1810.07842",
            params=(_TVERSKY_ALPHA, _TVERSKY_BETA,
                    ParamSpec("gamma", "exponent", 0.75, "Exponent on 1 - Tversky (the paper's 1/γ; its "
                              "recommended γ = 4/3 gives 0.75). 1 is the plain Tversky loss.",
                              low=0.1, high=5.0, step=0.05),
                    _SMOOTH, _PER_IMAGE),
            factory=lambda alpha, beta, gamma, smooth, per_image, **common: modules.TverskyLoss(
                alpha=alpha, beta=beta, gamma=gamma, smooth=smooth, **_region_common(per_image, common)),
            pixelwise=False,
        ),
        LossSpec(
            name="lovasz",
            title="Lovász-Softmax loss",
            formula=r"\mathcal{L}_{\text{Lov\'asz}} = \frac{1}{|P|}\sum_{c \in P} \overline{\Delta_{J_c}}\big(m(c)\big),"
            r"\qquad m_i(c) = |y_{i,c} - p_{i,c}|",
            summary="The convex (Lovász) extension of each class's Jaccard loss, evaluated at the pixels' "
            "errors: a tight surrogate of 1 - IoU that weights each error by how much it costs the IoU.",
            citation="Berman, Rannen Triki, Blaschko. The Lovász-Softmax loss. CVPR 2018 (arXiv:1705.08790).",
            link="https://arxiv.org/abs/1705.08790",
            params=(_PER_IMAGE,),
            factory=lambda per_image, **common: modules.LovaszSoftmaxLoss(**_region_common(per_image, common)),
            pixelwise=False,
        ),
        LossSpec(
            name="dice_ce",
            title="Dice + cross-entropy",
            formula=r"\mathcal{L} = \mathcal{L}_{CE} + \lambda\,\mathcal{L}_{Dice}",
            summary="The nnU-Net default: cross-entropy's well-behaved per-pixel gradient plus Dice's "
            "class-balanced region term, mixed by lambda.",
            citation="Isensee et al. nnU-Net. Nature Methods 18 (2021), doi:10.1038/s41592-020-01008-z.",
            link="https://doi.org/10.1038/s41592-020-01008-z",
            params=(_DICE_WEIGHT, _SMOOTH, _PER_IMAGE),
            factory=_dice_plus(modules.CrossEntropyLoss),
            pixelwise=False,
        ),
        LossSpec(
            name="dice_focal",
            title="Dice + focal",
            formula=r"\mathcal{L} = \mathcal{L}_{FL} + \lambda\,\mathcal{L}_{Dice}",
            summary="Focal loss for the hard pixels plus Dice for the small regions, mixed by lambda.",
            citation="Zhu et al. AnatomyNet. Medical Physics 46 (2019), arXiv:1808.05238.",
            link="https://arxiv.org/abs/1808.05238",
            params=(ParamSpec("gamma", "gamma", 2.0, _GAMMA_HELP, low=0.0, high=MAX_EXPONENT, step=0.1, slider=(0.0, 10.0)),
                    _DICE_WEIGHT, _SMOOTH, _PER_IMAGE),
            factory=_dice_plus(lambda gamma, **common: modules.FocalLoss(gamma=gamma, **common)),
            pixelwise=False,
        ),
        LossSpec(
            name="dice_boundary",
            title="Generalized Dice + boundary (scheduled)",
            formula=r"\begin{aligned}\mathcal{L} &= a\,\mathcal{L}_{GD} + b\,\mathcal{L}_{B}\\ "
            r"a &\leftarrow \max(0.1,\, a - \Delta),\ \ b \leftarrow b + \Delta\ \text{each epoch}\end{aligned}",
            summary="The authors' pairing: a region loss to find the regions, and the boundary loss, whose weight "
            "grows epoch by epoch (a starts at 1, b at 0.01) to pull their contours onto the true ones.",
            citation="Kervadec et al., Medical Image Analysis 67 (2021), arXiv:1812.07032: GDL + boundary loss with "
            "the StealWeight schedule of their code (to_steal 0.01). The live trainer counts an epoch every "
            "10 steps.",
            link="https://arxiv.org/abs/1812.07032",
            params=(ParamSpec("region", "region loss", "generalized_dice", "generalized_dice: the authors' GDL; "
                              "dice: the soft Dice loss.", kind="choice", choices=("generalized_dice", "dice")),
                    ParamSpec("boundary_weight", "initial boundary weight b", 0.01, "The boundary loss's weight at "
                              "the start (the authors' 0.01).", low=0.0, high=1.0, step=0.01),
                    ParamSpec("steal", "weight moved per epoch Δ", 0.01, "Taken from the region loss's weight "
                              "(never below 0.1) and given to the boundary loss at every epoch; 0 keeps the weights "
                              "fixed.", low=0.0, high=0.1, step=0.005, schedule_only=True),
                    _BOUNDARY_CLASSES, _PER_IMAGE),
            factory=_region_boundary,
            pixelwise=False,
        ),
    )
}


def _check_param(loss: str, spec: ParamSpec, value):
    where = f"{loss}: {spec.name}"
    if spec.kind == "choice":
        if spec.name == "per_image" and isinstance(value, (bool, np.bool_)):
            value = "image" if value else "batch"  # the modules' and functions' bool, as everywhere
        if value not in spec.choices:
            raise ValueError(f"{where} must be one of {spec.choices}, got {value!r}")
        return value
    if spec.kind == "multichoice":
        if isinstance(value, (bytes, bytearray)) or not isinstance(value, (str, Iterable)):
            raise TypeError(f"{where} must be a name or a collection of names from {spec.choices}, got {value!r}")
        value = (value,) if isinstance(value, str) else tuple(value)
        unknown = [v for v in value if v not in spec.choices]
        if unknown:
            raise ValueError(f"{where} takes names from {spec.choices}, got unknown {unknown}")
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0 or isinstance(value, (np.integer, np.floating)):
        value = value.item()  # numpy scalars are numbers
    if spec.per_class_ok and isinstance(value, (Sequence, torch.Tensor, np.ndarray)) and not isinstance(value, str):
        return value  # a per-class vector, validated against C by the loss itself
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where} must be a number, got {value!r}")
    if not (spec.low <= value <= spec.high):
        raise ValueError(f"{where} must lie in [{spec.low}, {spec.high}], got {value}")
    return float(value)


def settings_text(name: str, params: dict) -> str:
    """``params`` of the registry loss ``name`` as one line of :meth:`ParamSpec.shown` parts
    (``"γ = 2, α = 0.25"``); a name the loss does not declare is shown as it is."""
    specs = {param.name: param for param in LOSSES[name].params} if name in LOSSES else {}
    fallback = lambda key: ParamSpec(key, key, None, "")  # noqa: E731
    return ", ".join((specs.get(key) or fallback(key)).shown(value) for key, value in params.items())


def create_loss(name: str, *, class_counts=None, weight=None, ignore_index: int = 255,
                reduction: str = "mean", sync_distributed=True, **params) -> nn.Module:
    """Build a registry loss by name, with parameters checked against its spec.

    Args:
        name: a key of :data:`LOSSES`: pixel-wise ``"ce"``, ``"weighted_ce"``, ``"focal"``,
            ``"dual_focal"``, ``"recall"``; region ``"dice"``, ``"jaccard"``, ``"tversky"``,
            ``"focal_tversky"``, ``"lovasz"``, ``"dice_ce"``, ``"dice_focal"``; and the newer
            ``"label_smoothing_ce"``, ``"ohem"``, ``"boundary"`` (pixel-wise), ``"unified_focal"``,
            ``"generalized_dice"``, ``"dice_boundary"`` (region).
        class_counts: a :class:`segloss.losses.weights.PixelCounts` (``count_pixels(train_masks, C)``:
            the median scheme then follows Eigen & Fergus exactly) or pixels per class ``(C,)``;
            required by losses with ``needs_class_counts`` unless ``weight`` is given, and ignored by
            the others (so one config can build any loss; their class weights go in ``weight``).
        weight, ignore_index, reduction: passed to the module. Region losses give per-class
            values with ``reduction="none"`` (Generalized Dice and Unified Focal: per-image ones);
            the sums (``dice_ce``, ``dice_focal``, ``dice_boundary``) refuse it.
        sync_distributed: under ``torch.distributed``, whether the losses that all-reduce (recall's
            counts, region losses' sums, in sums too) do so. False: each replica scores its own
            shard, with no collective, as an evaluation on one rank needs (a collective there
            waits for ranks that never join it). A ``torch.distributed.ProcessGroup``: they sum
            over that group's processes only. Losses without a collective ignore it.
        **params: the loss's parameters; missing ones take the spec's default.

    Raises:
        ValueError: unknown loss or parameter, value out of the spec's range, missing counts.
        TypeError: a parameter of the wrong type.
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {sorted(LOSSES)}")
    sync_distributed = check_sync(sync_distributed)
    spec = LOSSES[name]
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise ValueError(f"{name} has no parameter(s) {unknown}; it takes {sorted(spec.defaults) or 'none'}")
    values = {p.name: _check_param(name, p, params.get(p.name, p.default)) for p in spec.params}
    common = {"weight": weight, "ignore_index": ignore_index, "reduction": reduction}
    if spec.needs_class_counts:
        common["class_counts"] = class_counts
    module = spec.factory(**values, **common)
    for part in module.modules():  # the loss itself, or the parts of a sum
        if hasattr(part, "sync_distributed"):
            part.sync_distributed = sync_distributed
    return module
