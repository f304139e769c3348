"""Asymmetric Unified Focal loss, multi-class (Yeung, Sala, Schönlieb, Rundo; CMIG 2022, arXiv:2102.04525).

The authors' binary loss (their code, github mlyg/unified-focal-loss) mixes a pixel-wise and a
region term, both asymmetric: the background is suppressed, the rare class is not::

    AUF = lam AFT + (1 - lam) AF
    AF  = mean_i [ (1 - delta) (1 - p_b)^gamma (-y_b log p_b) + delta sum_{c rare} (-y_c log p_c) ]
    AFT = mean over images and classes of  1 - TI_b  (background),  (1 - TI_c)^(1 - gamma)  (rare)
    TI_c = (TP_c + s) / (TP_c + delta FN_c + (1 - delta) FP_c + s)

Multi-class here: class ``background`` (default 0) is suppressed, every other class is a rare
one; with two classes it is the authors' loss (checked against a transcription of their code, to
1e-8 at ``smooth=1e-6``; theirs is Keras's epsilon, 1e-7) up to one difference: their code clips
``p`` to ``[1e-7, 1 - 1e-7]`` and segloss does not, so at saturated logits (a pixel's ``p`` under
1e-7, a logit gap past about 16) their AF term stops growing, and its gradient vanishes, where
segloss's keeps growing as CE does.
Their code averages the Tversky term over both classes of every image; with C classes segloss
averages over the classes present in each image (an absent class has no region to score), then
over images. MONAI's ``AsymmetricUnifiedFocalLoss`` is binary only (MONAI #8603).

``per_image=True`` scores each image whole, ``lam AFT_n + (1 - lam) AF_n`` with ``AF_n`` the mean over
that image's valid pixels, then takes the mean over images; so the AF term is a mean of per-image
means, where the authors' code (and ``per_image=False`` here) takes one mean over every valid pixel
of the batch. The two differ only when images have different numbers of valid pixels.
"""

from __future__ import annotations

import torch

from segloss.kernels import cuda, device_checks
from segloss.kernels.compiled import compiled_kernels_enabled
from segloss.losses import functional as SF
from segloss.losses._checks import (check_logits_target, check_number, check_per_image, check_reduction, index_argument,
                                    number_or_traced)
from segloss.losses._distributed import check_sync, global_sum
from segloss.losses._reduction import safe_divide
from segloss.losses.region import _region_sums, _safe_power, mean_over_images, tversky_index


def _asymmetric_focal_map(logits, target, gamma: float, delta: float, background: int, ignore_index: int):
    """AF per pixel: ``(1 - delta) (1 - p_b)^gamma CE`` on background pixels, ``delta CE`` on the others.

    On the eager CPU path one fused pass with per-class exponents and scales; on CUDA, with the
    compiled kernels, inside ``torch.func`` or under ``torch.compile``, a focal and a CE map.
    """
    if cuda.handles(logits) or compiled_kernels_enabled() or SF._needs_autograd() or torch.compiler.is_compiling():
        focal = SF.focal_loss(logits, target, gamma=gamma, ignore_index=ignore_index, reduction="none")
        ce = SF.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
        return torch.where(target == background, (1.0 - delta) * focal, delta * ce)
    num_classes = logits.shape[1]
    gammas = torch.zeros(num_classes, dtype=torch.float64, device=logits.device)
    gammas[background] = gamma
    scale = torch.full((num_classes,), delta, dtype=torch.float64, device=logits.device)
    scale[background] = 1.0 - delta
    return SF._focal_family(logits, target, gamma=gammas, class_scale=scale, weight=None, ignore_index=ignore_index,
                            reduction="none")


def unified_focal_loss(logits, target, *, tversky_weight=0.5, delta=0.6, gamma=0.5, background=0, smooth=1e-6,
                       per_image=True, ignore_index=255, reduction="mean", sync_distributed=True) -> torch.Tensor:
    """Asymmetric Unified Focal loss (see the module docstring).

    Args:
        logits: float ``(N, C, *S)``; target: integer ``(N, *S)``.
        tversky_weight: ``lam``, the Tversky term's share, in [0, 1] (the authors' ``weight``).
        delta: weight of rare classes in AF and of false negatives in TI, in [0, 1].
        gamma: background suppression in AF and rare-class enhancement in AFT, in [0, 1].
        background: the suppressed class.
        smooth: ``s`` of the Tversky index (the authors' is Keras's epsilon, 1e-7).
        per_image: Tversky regions per image (the authors') or over the batch.
        ignore_index: label of pixels left out of every term.
        reduction: ``"mean"`` or ``"sum"`` (over images for the Tversky term); ``"none"`` gives
            per-image losses ``(N,)`` (with ``per_image``; ``(1,)`` over the batch).
        sync_distributed: under ``torch.distributed``, all-reduce the region sums and the focal
            term's sums (or the per-image mean), as :func:`segloss.losses.region.tversky_loss` does.

    Raises:
        ValueError, TypeError: bad tensors or parameters.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    check_reduction(reduction)
    sync_distributed = check_sync(sync_distributed)
    per_image = check_per_image(per_image)
    target = check_logits_target(logits, target, ignore_index, check_finite=False, check_labels=False)  # shapes first
    for name, value in (("tversky_weight", tversky_weight), ("delta", delta), ("gamma", gamma)):
        check_number(value, name, low=0.0, high=1.0)
    check_number(smooth, "smooth", low=0.0)
    num_classes = logits.shape[1] if isinstance(logits, torch.Tensor) and logits.dim() >= 2 else 0
    if isinstance(background, bool) or not isinstance(background, int) or not 0 <= background < max(num_classes, 1):
        raise ValueError(f"background must be a class index in [0, {num_classes}), got {background!r}")
    gamma, delta = number_or_traced(gamma, logits.device), number_or_traced(delta, logits.device)
    with device_checks.one_check_for_all():  # on CUDA: one flag read for its three passes (focal, CE, region sums)
        pixel = _asymmetric_focal_map(logits, target, gamma, delta, background, ignore_index)
        valid = (target != ignore_index).to(pixel.dtype)
        # AFT: asymmetric focal Tversky from the region sums
        tp, fp, fn, present = _region_sums(logits, target, ignore_index, per_image, sync_distributed)
    index = tversky_index(tp, fp, fn, 1.0 - delta, delta, smooth, floor=1e-30)  # delta weighs the false negatives
    rare = torch.arange(tp.shape[-1], device=tp.device) != background
    per_class = torch.where(rare, _safe_power((1.0 - index).clamp_min(0.0), 1.0 - gamma), 1.0 - index)
    counted = present.to(per_class.dtype)
    region = safe_divide((per_class * counted).sum(-1), counted.sum(-1))  # (N,) or ()
    if per_image:
        n = logits.shape[0]
        flat = (n, -1) if n else (0, 1)  # an empty batch: no image, a zero loss
        af_image = safe_divide(pixel.reshape(flat).sum(1), valid.reshape(flat).sum(1))
        each = tversky_weight * region + (1.0 - tversky_weight) * af_image
        if reduction == "none":
            return torch.where(present.any(-1), each, float("nan"))
        return mean_over_images(each, present.any(-1), reduction, sync_distributed)
    af = safe_divide(global_sum(pixel.sum(), sync_distributed), global_sum(valid.sum(), sync_distributed))
    value = tversky_weight * region + (1.0 - tversky_weight) * af
    return value.reshape(1) if reduction == "none" else value
