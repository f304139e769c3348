"""Boundary loss (Kervadec, Bouchtiba, Desrosiers, Granger, Dolz, Ben Ayed; MIDL 2019 / MedIA 2021,
arXiv:1812.07032): the softmax weighted by each class's signed distance to its region's boundary.

Per pixel ``i`` and class ``c``, ``phi_c(i)`` is the Euclidean distance to the boundary of class
``c``'s ground-truth region, positive outside it and negative inside (the authors' ``one_hot2dist``:
``edt(outside) * outside - (edt(inside) - 1) * inside``, with scipy's
``ndimage.distance_transform_edt``, the transform their code uses). The loss is::

    L_B = (1 / (|V| |K|)) sum_{i in V} sum_{c in K} p_c(i) phi_c(i)

over the classes ``K`` scored (the authors score the foreground: every class but 0). It is
smallest when probability sits inside each region; it has no upper bound of 1 and can be
negative, which is why it is used next to a region loss, e.g. ``alpha GDL + (1 - alpha) L_B`` with
``alpha`` decreasing during training (the authors' schedule). Distance maps depend on the masks
only: compute them once per mask with :func:`signed_distance_maps` (in a data loader) and pass
them, or let the loss compute them: with scipy for CPU labels, on the device for CUDA labels
(:mod:`segloss.kernels.distance`, the same exact maps, no host round trip).
"""

from __future__ import annotations

import numpy as np
import torch

from segloss.kernels import cuda, cuda_boundary, device_checks, distance
from segloss.kernels.cpu import _slabs, gradient_buffer
from segloss.kernels.region_sums import autograd_backward
from segloss.losses._checks import (_unwrapped, _vmapped, check_logits_target, check_num_classes, check_reduction,
                                    functorch_transform_active, index_argument)
from segloss.losses._reduction import reduce_map


@torch.compiler.disable  # scipy on numpy arrays: nothing for torch.compile to trace (and no warning)
def signed_distance_maps(target, num_classes: int, *, ignore_index: int = 255) -> torch.Tensor:
    """``phi`` float32 ``(N, C, *S)`` for integer labels ``(N, *S)`` (on ``target``'s device).

    Ignored pixels count as outside every class; a class absent from an image gets 0 there. A class
    that fills the whole image has no boundary inside it: its map is ``-(b - 1)``, ``b`` the distance
    to the image's border (the authors' ``one_hot2dist`` has no such case: scipy's transform of an
    all-True mask gives values that measure no distance to anything).
    CUDA labels are transformed on their device (:mod:`segloss.kernels.distance`), others by scipy.

    Raises:
        ValueError: ``num_classes`` below 2, labels outside ``[0, num_classes)`` that are not
        ``ignore_index`` (maps made with the wrong C would be silently 0 for those classes);
        TypeError: non-integer labels.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    num_classes = check_num_classes(num_classes)
    labels = torch.as_tensor(target)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"target must hold integer labels, got dtype {labels.dtype}")
    if not _vmapped(labels) and not functorch_transform_active():
        as_numbers = labels.long()  # uint8 labels compare with a negative ignore_index as numbers, not wrapped
        bad = (as_numbers != ignore_index) & ((as_numbers < 0) | (as_numbers >= num_classes))
        if bool(bad.any()):  # on CUDA this one read is the call's synchronisation (a data loader's, once a mask)
            values = torch.unique(as_numbers[bad])[:8].tolist()
            raise ValueError(f"target holds labels outside [0, {num_classes}) that are not "
                             f"ignore_index={ignore_index}: {values}; is num_classes right?")
    return _signed_distance_maps(labels, num_classes, ignore_index)


@torch.compiler.disable  # as above: the boundary loss calls this one, inside a compiled graph too
def _signed_distance_maps(labels: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """:func:`signed_distance_maps` for checked arguments (labels outside ``[0, C)`` get no map)."""
    from scipy.ndimage import distance_transform_edt  # a well-kept exact EDT (Maurer et al.'s algorithm)

    if _vmapped(labels):
        raise ValueError("signed_distance_maps cannot run inside torch.func.vmap over the labels (scipy computes "
                         "each map on the host): compute the maps first, signed_distance_maps(target, C), "
                         "and pass them as distance_maps, mapped over with the target")
    if functorch_transform_active():  # inside torch.func every op on the labels gives a wrapper without storage
        array = np.asarray(labels.tolist(), dtype=np.int64).reshape(labels.shape)
    elif distance.handles(labels):  # CUDA labels: the same maps on the device, no host round trip
        return distance.signed_distance_maps(labels, num_classes, ignore_index)
    else:
        array = labels.detach().cpu().numpy()
    out = np.zeros((array.shape[0], num_classes, *array.shape[1:]), dtype=np.float32)
    for n in range(array.shape[0]):
        if array[n].ndim == 0:
            continue  # a single pixel has no boundary
        present = np.unique(array[n])  # two transforms per class present; absent classes keep 0
        for c in present[(present >= 0) & (present < num_classes) & (present != ignore_index)].tolist():
            inside = array[n] == c
            outside = ~inside
            if outside.any():
                out[n, c] = distance_transform_edt(outside) * outside - (distance_transform_edt(inside) - 1.0) * inside
            else:  # the class fills the image: distances to the image's border
                padded = distance_transform_edt(np.pad(inside, 1))[(slice(1, -1),) * inside.ndim]
                out[n, c] = -(padded - 1.0)
    return torch.from_numpy(out).to(labels.device)


def boundary_loss(logits: torch.Tensor, target: torch.Tensor, *, distance_maps: torch.Tensor | None = None,
                  foreground_only: bool = True, ignore_index: int = 255, reduction: str = "mean") -> torch.Tensor:
    """Boundary loss ``sum_c p_c phi_c`` averaged over valid pixels and scored classes.

    Args:
        logits: float ``(N, C, *S)``; target: integer ``(N, *S)``.
        distance_maps: ``(N, C, *S)`` from :func:`signed_distance_maps` (computed here if None).
        foreground_only: score classes ``1..C-1`` (the authors'), else all ``C``.
        ignore_index: label of pixels left out (and outside every class in the maps computed here).
        reduction: ``"none"`` gives the per-pixel map ``(N, *S)`` (0 at ignored pixels).

    Raises:
        ValueError: distance maps of another shape, or none given for ``(N, C)`` logits (no image to
            measure them in); bad tensors as the other losses.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    check_reduction(reduction)
    on_device = cuda.handles(logits) and not functorch_transform_active() and not _vmapped(logits)
    target = check_logits_target(logits, target, ignore_index, check_finite=not on_device,
                                 check_labels=not on_device)
    given = distance_maps is not None
    if given:
        _check_maps_form(distance_maps, logits)
    elif logits.dim() < 3:  # no spatial dims: every "image" one pixel, its own region's edge: a silent 0
        raise ValueError(f"the boundary loss measures distances in an image: logits of shape {tuple(logits.shape)} "
                         "have no spatial dimensions; pass (N, C, *spatial) logits, or distance_maps of the logits' "
                         "shape")
    else:  # on CUDA computed there too (segloss.kernels.distance): no host round trip
        distance_maps = _signed_distance_maps(target, logits.shape[1], ignore_index)
    valid = target != ignore_index
    count = logits.shape[1] - 1 if foreground_only else logits.shape[1]
    from segloss.losses.functional import _needs_autograd  # (functional imports this module)

    first = 1 if foreground_only else 0
    # maps that want a gradient, inside torch.func or while torch.compile traces: plain autograd
    plain = _needs_autograd(distance_maps) or torch.compiler.is_compiling()
    if on_device and not plain:  # one Triton pass, which also counts bad labels, logits and terms; read at its end
        return cuda_boundary.DistanceWeightedSoftmaxTriton.apply(
            logits, distance_maps, target, ignore_index, first, 1.0 / count, reduction, given,
            lambda z: reduce_map(_weighted_softmax(z, distance_maps, valid, first) / count,
                                 valid.sum().to(torch.float32), reduction))
    if plain:
        pixel = _weighted_softmax(logits, distance_maps, valid, first) / count
    else:
        pixel = _DistanceWeightedSoftmax.apply(logits, distance_maps, valid, bool(foreground_only)) / count
    # Given maps are checked through what they produce: with finite logits (checked) a valid pixel's
    # term is finite unless a scored map is not (one pass over the (N, *S) terms, not the maps)
    if given and torch.compiler.is_compiling():  # no host read in a graph: an assert in it, as for the logits
        finite_terms = torch.isfinite(pixel.detach()).all() | ~torch.isfinite(logits.detach()).all()
        torch._assert_async(finite_terms, device_checks.NON_FINITE_MAPS)  # (NaN logits: their own assert's)
    elif on_device:  # the call's one synchronisation (a sum's: with its other parts), after the work is queued
        terms = (~torch.isfinite(pixel.detach())).sum() if given else None
        device_checks.check_on_device(logits, target, ignore_index, terms)
    elif given and not bool(torch.isfinite(_unwrapped(pixel.detach())).all()):  # torch.func: every slice's values
        _raise_bad_maps(_unwrapped(distance_maps))
    return reduce_map(pixel, valid.sum().to(pixel.dtype), reduction)


def _check_maps_form(maps, logits: torch.Tensor) -> None:
    """Given distance maps: a real tensor of the logits' shape (their values: see the caller)."""
    if not isinstance(maps, torch.Tensor) or maps.dtype == torch.bool or maps.is_complex():
        kind = f"a tensor of dtype {maps.dtype}" if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise TypeError(f"distance_maps must be a real-valued tensor (signed_distance_maps(target, C)), got {kind}")
    if tuple(maps.shape) != tuple(logits.shape):
        raise ValueError(f"distance_maps must have the logits' shape {tuple(logits.shape)}, got {tuple(maps.shape)}")


def _raise_bad_maps(maps: torch.Tensor) -> None:
    """The maps made a term NaN or infinite (the logits are finite): say how many values are to blame."""
    finite = torch.isfinite(maps.detach())
    nan = int(torch.isnan(maps.detach()).sum())
    raise ValueError(f"{device_checks.NON_FINITE_MAPS} ({nan} NaN and {finite.numel() - int(finite.sum()) - nan} "
                     f"infinite values)")


def _weighted_softmax(logits: torch.Tensor, maps: torch.Tensor, valid: torch.Tensor, first: int) -> torch.Tensor:
    """``sum_{c >= first} p_c phi_c`` per pixel, 0 where not ``valid``, by plain torch ops."""
    z = logits if logits.dtype == torch.float64 else logits.float()
    phi = torch.where(valid.unsqueeze(1), maps.to(device=z.device, dtype=z.dtype), 0.0)  # ignored: no 0 x NaN
    return torch.where(valid, (z.softmax(dim=1)[:, first:] * phi[:, first:]).sum(dim=1), 0.0)


class _DistanceWeightedSoftmax(torch.autograd.Function):
    """``v_i = sum_c p_ic phi'_ic`` ``(N, *S)`` (0 at invalid pixels), ``phi'`` the maps with class 0
    zeroed when only the foreground is scored; gradient ``dv_i/dz_ik = p_ik (phi'_ik - v_i)``.

    The CPU path (CUDA: :mod:`segloss.kernels.cuda_boundary`, one Triton pass each way), block by
    block over the pixels of each image (many small images in one block): nothing of the logits' size but the gradient
    (the softmax is recomputed in backward from the logits and ``v``).
    """

    @staticmethod
    def forward(ctx, logits, maps, valid, foreground_only):
        n, c = logits.shape[:2]
        pixels = logits[0, 0].numel() if n else 0
        dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
        flat, phi = logits.reshape(n, c, pixels), maps.reshape(n, c, pixels)
        out = torch.zeros(n, pixels, dtype=dtype, device=logits.device)
        first = 1 if foreground_only else 0
        with torch.no_grad(), torch.autocast(logits.device.type, enabled=False):
            for images, px in _slabs(n, pixels, c, logits.device):
                probs = flat[images, :, px].to(dtype).softmax(dim=1)
                out[images, px] = (probs[:, first:] * phi[images, first:, px].to(device=logits.device,
                                                                                 dtype=dtype)).sum(1)
        out = torch.where(valid, out.reshape(valid.shape), 0.0)  # an ignored pixel's map may hold anything
        ctx.save_for_backward(logits, maps, valid, out)
        ctx.first = first
        return out

    @staticmethod
    def backward(ctx, grad_out):
        logits, maps, valid, value = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: the same gradient, as a graph (plain torch ops)
            return autograd_backward(logits, grad_out, lambda z: _weighted_softmax(
                z, maps, valid, ctx.first)) + (None, None, None)
        n, c = logits.shape[:2]
        grad, grad_flat = gradient_buffer(logits)
        pixels = grad_flat.shape[2]
        flat, phi = logits.reshape(n, c, pixels), maps.reshape(n, c, pixels)
        dtype = value.dtype
        upstream = (grad_out * valid).reshape(n, pixels).to(dtype)
        scored = valid.reshape(n, pixels)
        v = value.reshape(n, pixels)
        with torch.no_grad(), torch.autocast(logits.device.type, enabled=False):
            for images, px in _slabs(n, pixels, c, logits.device):
                probs = flat[images, :, px].to(dtype).softmax(dim=1)
                weights = phi[images, :, px].to(device=logits.device, dtype=dtype) - v[images, None, px]
                if ctx.first:
                    weights[:, 0] = -v[images, px]  # class 0 is not scored: its phi' is 0
                grad_flat[images, :, px] = torch.where(scored[images, None, px],
                                                       probs * weights * upstream[images, None, px],
                                                       0.0).to(grad.dtype)  # not 0 x NaN at an ignored pixel
        return grad, None, None, None
