"""Online hard example mining for segmentation: cross-entropy on the hardest pixels only.

Shrivastava, Gupta, Girshick, "Training Region-based Object Detectors with Online Hard Example
Mining", CVPR 2016 (arXiv:1604.03540), in the per-pixel form segmentation codebases use (the
``OhemCrossEntropy2d`` of CCNet's code, HRNet's ``OhemCrossEntropy``; mmsegmentation's ``OHEMPixelSampler`` picks the
same pixels): a pixel is kept when the probability of its true class is below a threshold; if that
keeps too few, the threshold rises to the probability of the ``k``-th hardest pixel, so that at
least ``k`` are kept::

    kept_i = [p_t,i < thresh  or  p_t,i <= p_(k)],   k = ceil(min_kept |V|)
    OHEM = sum_{i kept} w_{y_i} CE_i / sum_{i kept} w_{y_i}

with ``p_(k)`` the ``k``-th smallest ``p_t`` over the valid pixels (all images of the batch
together; under ``torch.distributed``, of this replica's batch, as mmsegmentation's sampler does
on each GPU). ``min_kept`` is a share of the valid pixels here (the codebases take a count:
mmsegmentation 100,000 per image at 512 x 1024 crops, CCNet 100,000 at 769 x 769, HRNet 131,072). The "mean" is over the
kept pixels, weighted by their class weights as in CCNet's ``OhemCrossEntropy2d`` (HRNet's
averages the weighted losses over ``|K|``, which differs with class weights); mmsegmentation zeroes the other pixels'
weights and divides by all ``N·H·W`` pixels (or by ``|V|`` with ``avg_non_ignore``), which gives
``|K| / (N·H·W)`` times this value. The kept set carries no gradient: the gradient is CE's on
the kept pixels and 0 elsewhere.
"""

from __future__ import annotations

import math

import torch

from segloss.kernels import cuda
from segloss.losses._checks import (check_logits_target, check_number, check_reduction, class_vector, index_argument,
                                    number_or_traced, plain_torch_required)
from segloss.losses._reduction import pixel_weights, reduce_map


@torch.no_grad()
def ohem_mask(logits: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.7, min_kept: float = 0.1,
              ignore_index: int = 255) -> torch.Tensor:
    """The pixels OHEM keeps: boolean ``(N, *S)``, False at ignored pixels.

    Args:
        logits: float ``(N, C, *S)``; target: integer ``(N, *S)``.
        threshold: keep pixels whose true-class probability is below it, in (0, 1].
        min_kept: keep at least this share of the valid pixels (the hardest), in [0, 1].
        ignore_index: label of pixels that are never kept.

    Raises:
        ValueError, TypeError: bad tensors or parameters.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    from segloss.losses.functional import cross_entropy  # the fused CE (functional imports this module)

    target = check_logits_target(logits, target, ignore_index, check_finite=False, check_labels=False)
    ce = cross_entropy(logits.detach(), target, ignore_index=ignore_index, reduction="none")  # validates
    return _kept(ce, target != ignore_index, threshold, min_kept, cuda.handles(logits))


def _kept(ce: torch.Tensor, valid: torch.Tensor, threshold: float, min_kept: float,
          on_device: bool = False) -> torch.Tensor:
    """The kept pixels from the unweighted per-pixel CE ``-log p_t`` (no copy of the logits' size).

    ``on_device`` (the CUDA kernels' path): ``k`` stays on the device and the ``k``-th smallest
    comes from a sort of the ``N·S`` probabilities, so that the call's one synchronisation is the
    label check (a host read of the count for ``kthvalue`` would be a second)."""
    check_number(threshold, "threshold", low=0.0, high=1.0, low_inclusive=False)
    check_number(min_kept, "min_kept", low=0.0, high=1.0)
    # float32 for half CE (its rounding would move the cut), float64 kept: ignored pixels sort last, never kept
    p_t = torch.where(valid, torch.exp(-ce.detach().to(torch.promote_types(ce.dtype, torch.float32))), math.inf)
    if on_device or plain_torch_required():  # compiling, or inside torch.func (vmap: a count per map)
        threshold, min_kept = number_or_traced(threshold, p_t.device), number_or_traced(min_kept, p_t.device)
        return valid & (p_t < _traced_limit(p_t, valid, threshold, min_kept))
    count = int(valid.sum())
    k = min(count, math.ceil(float(min_kept) * count))
    limit = torch.as_tensor(float(threshold), dtype=p_t.dtype, device=p_t.device)
    if k > 0:
        kth = p_t.flatten().kthvalue(k).values
        limit = torch.maximum(limit, torch.nextafter(kth, torch.full_like(kth, math.inf)))  # the k-th is kept too
    return valid & (p_t < limit)


def _traced_limit(p_t: torch.Tensor, valid: torch.Tensor, threshold: float | torch.Tensor,
                  min_kept: float | torch.Tensor) -> torch.Tensor:
    """:func:`_kept`'s limit with ``k`` a tensor, for ``torch.compile``, ``torch.func`` and CUDA: the
    count of valid pixels is not known while tracing (``int()`` of it would break the graph), nor
    readable under ``vmap``, nor on CUDA without a synchronisation, so the ``k``-th smallest comes
    from a full sort (``kthvalue`` needs a Python ``k``)."""
    limit = (threshold.to(device=p_t.device, dtype=p_t.dtype) if isinstance(threshold, torch.Tensor)
             else torch.full((), threshold, dtype=p_t.dtype, device=p_t.device))  # full: no host-to-device copy
    if p_t.numel() == 0:  # an empty batch: nothing to sort, nothing kept
        return limit
    count = valid.sum()
    k = torch.minimum(count, torch.ceil(count.double() * min_kept).long())
    ordered = p_t.flatten().sort().values
    kth = ordered.gather(0, (k - 1).clamp_min(0).view(1)).squeeze(0)
    raised = torch.maximum(limit, torch.nextafter(kth, torch.full_like(kth, math.inf)))
    return torch.where(k > 0, raised, limit)


def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.7, min_kept: float = 0.1,
                       weight=None, ignore_index: int = 255, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy over the pixels :func:`ohem_mask` keeps (see the module docstring).

    Args:
        logits: float ``(N, C, *S)``; target: integer ``(N, *S)``.
        threshold, min_kept, ignore_index: as :func:`ohem_mask`. weight: class weights ``(C,)`` or None.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (below).

    ``reduction="none"`` gives the per-pixel map, CE at kept pixels and exactly 0 elsewhere (the
    app shows which pixels were kept); ``"mean"`` divides by the kept pixels (or their class
    weights); a batch with nothing kept gives 0.

    Raises:
        ValueError, TypeError: bad tensors or parameters.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    from segloss.losses.functional import cross_entropy  # the fused CE (functional imports this module)

    check_reduction(reduction)
    # shapes only here (the CE below checks the values); under torch.compile, labels out of range ignored
    target = check_logits_target(logits, target, ignore_index, check_finite=False, check_labels=False)
    # one fused CE pass: its unweighted map gives p_t for the mask and, times w_y, the loss
    ce = cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    kept = _kept(ce, target != ignore_index, threshold, min_kept, cuda.handles(logits))
    w_y = pixel_weights(target, kept, class_vector(weight, logits.shape[1], "weight", ce), ce.dtype)
    return reduce_map(torch.where(kept, ce, torch.zeros_like(ce)) * w_y, w_y.sum(), reduction)
