"""Region losses: soft Dice, soft Jaccard, Tversky, Focal Tversky, Generalized Dice and Lovász-Softmax.

They score whole regions, not pixels, so they have no per-pixel loss map (their per-pixel
*gradient* map is in :mod:`segloss.analysis`). Conventions shared with :mod:`segloss.functional`:
logits ``(N, C, *S)`` of any float dtype computed in float32 (float64 kept), ``target``
``(N, *S)`` with ``ignore_index`` pixels left out of every sum, optional class ``weight``
``(C,)``, finite for saturated logits.

Per class ``c``, over the valid pixels of the batch (or of each image with ``per_image=True``),
with ``p`` the softmax and ``y`` the one-hot target::

    TP_c = sum p_c y_c,   FP_c = sum p_c (1 - y_c),   FN_c = sum (1 - p_c) y_c
    Dice_c = (2 TP_c + s) / (2 TP_c + FP_c + FN_c + s)          Jaccard_c = (TP_c + s) / (TP_c + FP_c + FN_c + s)
    Tversky_c = (TP_c + s) / (TP_c + a FP_c + b FN_c + s)        (a = b = 1/2: Dice; a = b = 1: Jaccard)

and the loss of a class is ``1 - score`` (``(1 - Tversky)^gamma`` for Focal Tversky). Classes
are averaged over those present in the target (a class absent from the target has no region to
score; with smoothing its score would reward predicting nothing or punish noise), weighted by
``weight[c]`` if given. ``reduction="none"`` returns the per-class losses ``(C,)`` (``(N, C)``
per image), NaN for absent classes; ``"mean"`` the weighted mean over present classes (per
image: each image's mean over its present classes, then the mean over images, as Berman et al.'s
reference Lovász code and smp's ``LovaszLoss(per_image=True)`` do, but over the images that hold a
valid pixel: theirs means to count an image whose pixels are all ignored as a loss of 0
(``probas * 0.``), but that empty ``(0, C)`` tensor breaks its mean: a shape error, or an empty
result when such an image comes first); ``"sum"`` their sum.
"""

from __future__ import annotations

import math

import torch

from segloss.kernels import cuda, cuda_region
from segloss.kernels.lovasz import LovaszSoftmax, lovasz_rows_autograd
from segloss.kernels.region_sums import RegionSums, region_sums_autograd
from segloss.losses._checks import (assert_finite_in_graph, check_logits_target, check_number, check_per_image,
                                    check_reduction, class_vector, index_argument, plain_torch_required, scalar_or_vector)
from segloss.losses._distributed import check_sync, global_sum
from segloss.losses._reduction import safe_divide


def _region_sums(logits, target, ignore_index, per_image, sync=True):
    """``(TP, FP, FN, present)``, each ``(C,)`` or ``(N, C)``; validated, float32/float64.

    On CUDA the sums come from one Triton pass (no one-hot tensor) and their gradient from a
    second (:class:`segloss.kernels.cuda_region.RegionSumsTriton`); elsewhere from their blockwise twin
    (:class:`segloss.kernels.region_sums.RegionSums`), or from plain torch ops inside
    ``torch.func`` transforms, which custom autograd functions cannot join. Each gives
    ``(M, 3, C)``: the rows ``TP, P, G`` per image, or over the batch (``M = 1``).
    """
    if cuda.handles(logits):
        target = check_logits_target(logits, target, ignore_index, check_finite=False, check_labels=False)
        sums = cuda_region.RegionSumsTriton.apply(logits, target, ignore_index, bool(per_image))
    elif torch.compiler.is_compiling():  # NaN/Inf logits, ignored pixels' too, make the sums NaN: no extra read
        target = check_logits_target(logits, target, ignore_index, check_finite=False)
        sums = region_sums_autograd(logits, target, ignore_index, per_image)
        assert_finite_in_graph(torch.isfinite(sums).all())
    else:
        target = check_logits_target(logits, target, ignore_index)
        if plain_torch_required():
            sums = region_sums_autograd(logits, target, ignore_index, per_image)
        else:
            sums = RegionSums.apply(logits, target.long(), ignore_index, bool(per_image))
    if not per_image:
        sums = sums[0]
        sums = global_sum(sums, sync)
    tp, total_p, total_g = sums.unbind(dim=-2)
    return tp, total_p - tp, total_g - tp, total_g > 0


def _safe_power(x: torch.Tensor, gamma: float) -> torch.Tensor:
    """``x ** gamma`` for ``x >= 0`` with gradient 0 (not inf * 0 = NaN) where ``x == 0``.

    Below gamma = 1 the derivative ``gamma x^(gamma-1)`` is infinite at 0: a perfectly scored
    class, or an absent one (later masked out by ``torch.where``, whose gradient would still
    carry the NaN), must not poison the whole gradient.
    """
    positive = x > 0
    return torch.where(positive, torch.where(positive, x, 1.0) ** gamma, 0.0)


def tversky_index(tp, fp, fn, alpha, beta, smooth, floor: float = 1e-12) -> torch.Tensor:
    """``(TP + s) / (TP + alpha FP + beta FN + s)`` elementwise (Salehi et al. 2017), the one place of
    the formula: Dice at ``alpha = beta = 0.5`` (with smoothing ``2 s``), Jaccard at 1 and 1. The
    denominator is floored at ``floor`` (``s = 0`` and an empty class)."""
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(floor)


def mean_over_images(image_loss: torch.Tensor, scored: torch.Tensor, reduction: str, sync=True) -> torch.Tensor:
    """Per-image losses ``(N,)`` reduced over the images ``scored`` (bool ``(N,)``: those with a valid
    pixel) of every replica (``sync``, see :func:`segloss.losses._distributed.global_sum`): their sum,
    or for ``"mean"`` their mean (0 without any)."""
    scored = scored.to(image_loss.dtype)
    total, count = (image_loss * scored).sum(), scored.sum()
    total, count = global_sum(torch.stack([total, count]), sync).unbind(0)
    return total if reduction == "sum" else safe_divide(total, count)


def _reduce_classes(per_class, present, weight, reduction, sync=True):
    """Reduce per-class losses ``(C,)`` (over the batch) or ``(N, C)`` (per image).

    ``"none"``: the losses, NaN for absent classes. ``"sum"``: the sum over present classes (and
    images). ``"mean"``: the weighted mean over present classes; per image, each image's mean
    first, then the mean over the images that hold a valid pixel (Berman et al.'s
    ``per_image=True``, also smp's Lovász, which fail on an all-ignored image), so an image with
    two classes counts as much as one with ten.
    """
    if reduction == "none":  # per image: this replica's images; over the batch: global (the sums were all-reduced)
        return torch.where(present, per_class, torch.full_like(per_class, float("nan")))
    w = torch.ones_like(per_class) if weight is None else weight.expand_as(per_class)
    w = torch.where(present, w, torch.zeros_like(w))
    weighted = torch.where(present, per_class, torch.zeros_like(per_class)) * w
    if per_class.dim() == 1:  # over the batch: the sums were global already
        return weighted.sum() if reduction == "sum" else safe_divide(weighted.sum(), w.sum())
    if reduction == "sum":
        return global_sum(weighted.sum(), sync)
    image_weight = w.sum(dim=1)
    return mean_over_images(safe_divide(weighted.sum(dim=1), image_weight), image_weight > 0, "mean", sync)


def tversky_loss(logits, target, *, alpha=0.5, beta=0.5, gamma=1.0, smooth=1.0, per_image=False, weight=None,
                 ignore_index=255, reduction="mean", sync_distributed=True):
    """(Focal) Tversky loss ``(1 - Tversky_c)^gamma`` (Salehi et al. 2017; Abraham & Khan 2019).

    Args:
        logits: float ``(N, C, *S)``. target: integer ``(N, *S)``.
        alpha: weight of false positives; beta: weight of false negatives (``>= 0``).
        gamma: exponent on 1 - Tversky (1: plain Tversky; Abraham & Khan write it 1/γ and recommend
            γ = 4/3, i.e. 0.75 here).
        smooth: ``s`` added to numerator and denominator (``>= 0``).
        per_image: score each image's regions separately, then average.
        weight, ignore_index, reduction: see the module docstring.
        sync_distributed: under ``torch.distributed``, score the global batch: the per-class sums
            (or, per image, the mean over images) are all-reduced differentiably, so every replica
            gets the loss of the whole batch and, after DistributedDataParallel's averaging, its
            gradient (exact; False: each replica scores its own shard, a different loss). A
            ``torch.distributed.ProcessGroup`` sums over that group's processes only.

    Raises:
        TypeError, ValueError: bad tensors (as the pixel losses) or parameters.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    check_reduction(reduction)
    sync_distributed = check_sync(sync_distributed)
    per_image = check_per_image(per_image)
    for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma), ("smooth", smooth)):
        check_number(value, name, low=0.0)
    gamma = scalar_or_vector(gamma, logits.device)  # numpy: a float (a tensor while compiling, whose value is data)
    traced = isinstance(gamma, torch.Tensor) and torch.compiler.is_compiling()
    if traced:
        check_number(gamma, "gamma", low=0.0, low_inclusive=False)  # an assert in the graph
    elif gamma == 0:
        raise ValueError("gamma must be > 0 (gamma = 0 makes the loss a constant)")
    tp, fp, fn, present = _region_sums(logits, target, ignore_index, per_image, sync_distributed)
    score = tversky_index(tp, fp, fn, alpha, beta, smooth)
    per_class = _safe_power((1.0 - score).clamp_min(0.0), gamma) if traced or gamma != 1 else 1.0 - score
    w = class_vector(weight, tp.shape[-1], "weight", tp)
    return _reduce_classes(per_class, present, w, reduction, sync_distributed)


def soft_dice_loss(logits, target, *, smooth=1.0, per_image=False, weight=None, ignore_index=255, reduction="mean",
                   sync_distributed=True):
    """Soft Dice loss ``1 - (2 TP + s) / (2 TP + FP + FN + s)`` per class (Milletari et al. 2016).

    Equal to :func:`tversky_loss` with ``alpha = beta = 1/2`` and smoothing ``s / 2``; the
    smoothing convention is MONAI's ``DiceLoss(smooth_nr=s, smooth_dr=s)``.
    """
    check_number(smooth, "smooth", low=0.0)
    return tversky_loss(logits, target, alpha=0.5, beta=0.5, smooth=smooth / 2, per_image=per_image, weight=weight,
                        ignore_index=ignore_index, reduction=reduction, sync_distributed=sync_distributed)


def soft_jaccard_loss(logits, target, *, smooth=1.0, per_image=False, weight=None, ignore_index=255,
                      reduction="mean", sync_distributed=True):
    """Soft Jaccard (IoU) loss ``1 - (TP + s) / (TP + FP + FN + s)`` per class (Rahman & Wang 2016)."""
    return tversky_loss(logits, target, alpha=1.0, beta=1.0, smooth=smooth, per_image=per_image, weight=weight,
                        ignore_index=ignore_index, reduction=reduction, sync_distributed=sync_distributed)


def generalized_dice_loss(logits, target, *, smooth=1e-5, per_image=False, weight=None, ignore_index=255,
                          reduction="mean", sync_distributed=True):
    """Generalized Dice loss (Sudre, Li, Vercauteren, Ourselin, Cardoso; DLMIA 2017, arXiv:1707.03237).

    One overlap over all classes, each weighted by the inverse square of its region's size::

        GDL = 1 - (2 sum_c w_c TP_c + s) / (sum_c w_c (P_c + G_c) + s),    w_c = 1 / G_c^2

    with ``G_c = sum_i y_{i,c}``, ``P_c = sum_i p_{i,c}``, ``TP_c = sum_i p_{i,c} y_{i,c}`` over the
    valid pixels of the batch (or of each image). A class absent from the target has no finite
    weight; it takes the largest finite weight (MONAI's ``GeneralizedDiceLoss`` does the same, per
    batch and per image), so predicting it anywhere still costs. ``weight`` multiplies ``w_c``.

    The weighted sums scale as ``1/G``, so on large batches or volumes even ``s = 1e-5`` weighs in
    and pulls the loss toward 0: a uniform prediction of 4 classes scores 0.750 at ``(2, 4, 32, 32)``
    and 0.720 at ``(2, 4, 256, 256)`` (0.750 with ``s = 0``). Pass ``smooth=0`` there (a batch
    without valid pixels still gives 0).

    Args:
        smooth: ``s`` (MONAI's default 1e-5; see above for large inputs).
        per_image: one loss per image, then their mean over the images with a valid pixel.
        reduction: ``"mean"`` or ``"sum"`` over images; the loss has no per-class terms, so
            ``"none"`` gives the per-image losses ``(N,)`` (NaN for an image without a valid
            pixel), or the batch's ``(1,)``.
        sync_distributed: as in :func:`tversky_loss`.

    Raises:
        ValueError: a negative ``smooth``; bad tensors as the other losses.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    check_reduction(reduction)
    sync_distributed = check_sync(sync_distributed)
    per_image = check_per_image(per_image)
    check_number(smooth, "smooth", low=0.0)
    tp, fp, fn, present = _region_sums(logits, target, ignore_index, per_image, sync_distributed)
    truth, predicted = tp + fn, tp + fp
    inverse = 1.0 / truth.clamp_min(1e-30) ** 2
    finite = torch.where(present, inverse, torch.zeros_like(inverse))
    largest = finite.amax(dim=-1, keepdim=True)
    w = torch.where(present, inverse, largest)
    extra = class_vector(weight, tp.shape[-1], "weight", tp)
    if extra is not None:
        w = w * extra
    w = w.detach()  # weights from the labels: no gradient (as in the paper and MONAI)
    score = (2.0 * (w * tp).sum(-1) + smooth) / ((w * (predicted + truth)).sum(-1) + smooth).clamp_min(1e-30)
    loss = 1.0 - score
    if reduction == "none":  # NaN where there is nothing to score, per image or over the batch
        return torch.where(present.any(dim=-1), loss, float("nan")).reshape(-1)
    if not per_image:  # a batch without a valid pixel gives 0, whatever the smoothing (0/0 with s = 0)
        return torch.where(present.any(dim=-1), loss, 0.0)
    return mean_over_images(loss, present.any(dim=-1), reduction, sync_distributed)


def _classes_present(labels: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """``(M, C)`` bool: whether class ``c`` has a valid pixel in row ``m`` of ``labels`` ``(M, K)``."""
    slot = torch.where(labels == ignore_index, num_classes, labels).long()
    seen = torch.zeros(labels.shape[0], num_classes + 1, dtype=torch.bool, device=labels.device)
    return seen.scatter(1, slot, True)[:, :num_classes]  # not in place: vmap over the target


def lovasz_softmax_loss(logits, target, *, per_image=False, weight=None, ignore_index=255, reduction="mean",
                        sync_distributed=True):
    """Lovász-Softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018, arXiv:1705.08790).

    Per class, the Lovász extension of the Jaccard loss evaluated at the errors
    ``|y_c - p_c|`` of the valid pixels, sorted in decreasing order; averaged over the classes
    present in the target (the authors' ``classes="present"``). ``per_image=True`` follows the
    authors' reference code (also smp's ``per_image``; kornia's Lovász is per image only and
    averages over all C classes, absent ones included): each image's mean over its
    own present classes, then the mean over images (those with a valid pixel: the reference code
    fails on an all-ignored image); ``per_image=False`` pools the batch.

    Under ``torch.distributed`` (``sync_distributed``): per image it is exact, the mean over every
    replica's images (all-reduced differentiably). Over the batch it is not: the Lovász extension
    sorts the errors of all pixels together, and each replica sorts only its own shard's (exact
    would mean gathering every pixel's errors on every replica).
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    check_reduction(reduction)
    sync_distributed = check_sync(sync_distributed)
    per_image = check_per_image(per_image)
    target = check_logits_target(logits, target, ignore_index)
    if plain_torch_required():
        per_class = lovasz_rows_autograd(logits, target, ignore_index, per_image)
    else:
        per_class = LovaszSoftmax.apply(logits, target, ignore_index, bool(per_image))
    c = logits.shape[1]
    pixels = math.prod(target.shape[1:])
    labels = target.reshape(target.shape[0], pixels) if per_image else target.reshape(1, -1)
    present = _classes_present(labels, c, ignore_index)
    if not per_image:
        per_class, present = per_class[0], present[0]
    w = class_vector(weight, c, "weight", per_class)
    return _reduce_classes(per_class, present, w, reduction, sync_distributed if per_image else False)
