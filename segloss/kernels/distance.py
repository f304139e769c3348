"""Signed distance maps on the labels' device: the boundary loss's maps with no host round trip.

For labels ``(N, *S)`` and each class ``c``, ``inside = (y == c)`` (ignored pixels are outside every
class) and the authors' ``one_hot2dist`` convention (:func:`segloss.losses.boundary.signed_distance_maps`,
computed there with scipy on the host)::

    phi_c = d(i, inside)           outside the region (distance to the nearest pixel of class c)
    phi_c = -(d(i, outside) - 1)   inside it
    phi_c = -(b(i) - 1)            inside a class that fills the image (b: distance to the image's border,
                                   ``min_k min(i_k + 1, S_k - i_k)``)
    phi_c = 0                      for a class absent from the image

``d`` is the exact Euclidean distance transform, separable in its square (Felzenszwalb & Huttenlocher,
Theory of Computing 2012): along the last axis the squared distance to the nearest feature pixel of
the same row comes from two running maxima (``cummax``: left and right); along each other axis,
``g'(i) = min_j g(j) + (i - j)^2`` is :func:`segloss.kernels.triton_distance.min_plus_parabola_kernel`.
Squared distances are int32 and exact (a pixel with no feature anywhere keeps ``INF``, never read:
such maps are those of absent or image-filling classes). The two transforms of every class (to
its inside, to its outside) run as one batch, in chunks of at most ``CHUNK_ELEMENTS`` values. Per
call: ``O(N C P)`` for the scan and ``O(N C P S_k)`` register-resident min-plus work for each axis
``k`` but the last, no host-device synchronisation. The axis length is a runtime argument, not
specialised: images of any size share the kernel's variants (two: triton specialises the row stride
``M`` by its divisibility by 16, which its loads' vector width depends on).
"""

from __future__ import annotations

import contextlib
import math

import torch

try:  # triton ships with CUDA builds of torch; CPU-only installs may lack it
    from segloss.kernels import triton_distance as _td
except ImportError:  # pragma: no cover - depends on the install
    _td = None

INF = 2 ** 30  # "no feature pixel": above any real squared distance the size limit allows
CHUNK_ELEMENTS = 2 ** 24  # transforms per chunk times their pixels: about 0.5 GB of temporaries (the scan's
# int32 values and int64 indices, the labels' rows) beside the float32 output
BLOCK_I, BLOCK_M, NUM_WARPS = 32, 64, 4


def handles(labels: torch.Tensor) -> bool:
    """Whether the maps of ``labels`` ``(N, *S)`` are computed here: CUDA labels (or the interpreter's
    CPU tensors in tests) with triton, at least one spatial axis, and a size whose squared distances
    stay exact in int32 (``sum_k S_k^2 < 2^30``: up to about 32 K pixels along one axis) and whose
    images' offsets fit the kernel's int32 (``prod_k S_k < 2^31``)."""
    from segloss.kernels import cuda

    if _td is None or labels.dim() < 2 or not (labels.is_cuda or (cuda._CPU_FOR_TESTS and labels.device.type == "cpu")):
        return False
    spatial = labels.shape[1:]
    return sum(s * s for s in spatial) < INF and math.prod(spatial) < 2 ** 31


def signed_distance_maps(labels: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """``phi`` float32 ``(N, C, *S)`` for integer labels ``(N, *S)``, on their device (see the module).

    The ``N C`` maps are made in chunks of about ``CHUNK_ELEMENTS / 2`` values (each map's two
    transforms): beyond the output, the memory is one chunk's temporaries."""
    n, spatial = labels.shape[0], tuple(labels.shape[1:])
    labels = labels.long()  # uint8 labels compare with a negative ignore_index as numbers, not wrapped
    flat_labels = labels.reshape(n, math.prod(spatial))
    out = torch.empty((n * num_classes, *spatial), dtype=torch.float32, device=labels.device)
    border = 1.0 - _distance_to_border(spatial, labels.device)
    step = max(1, CHUNK_ELEMENTS // (2 * max(1, math.prod(spatial))))
    for start in range(0, n * num_classes, step):
        maps = torch.arange(start, min(n * num_classes, start + step), device=labels.device)
        rows = flat_labels[maps // num_classes]  # (maps, P): each map's image
        inside = (rows == (maps % num_classes).unsqueeze(1)) & (rows != ignore_index)
        present, fills = inside.any(dim=1), inside.all(dim=1)
        features = torch.cat([inside, ~inside]).reshape(2 * len(maps), *spatial)  # to the inside, to the outside
        needed = present & ~fills  # the others' maps are replaced below: not computed (read on the device)
        to_inside, to_outside = squared_distances(features, torch.cat([needed, needed])).float().sqrt_().chunk(2)
        inside = inside.reshape(len(maps), *spatial)
        phi = torch.where(inside, 1.0 - to_outside, to_inside)
        per_map = (len(maps), *([1] * len(spatial)))
        phi = torch.where(fills.view(per_map), border, phi)
        out[start:start + len(maps)] = torch.where(present.view(per_map), phi, 0.0)
    return out.reshape(n, num_classes, *spatial)


def squared_distances(features: torch.Tensor, needed: torch.Tensor | None = None) -> torch.Tensor:
    """Exact squared Euclidean distance of every pixel to the nearest ``True`` pixel of its map.

    Args:
        features: bool ``(B, *S)``, at least one spatial axis.
        needed: optional bool ``(B,)`` on the same device: maps that are False are not computed past
            the row scan (their values are unspecified, at most ``INF``).

    Returns:
        int32 ``(B, *S)``; ``INF`` (2^30) where a map has no feature pixel.
    """
    squared = _row_squared_distances(features)
    if features.dim() > 2:
        flags = (torch.ones(len(features), dtype=torch.int8, device=features.device) if needed is None
                 else needed.to(torch.int8))
        for axis in range(1, features.dim() - 1):  # every spatial axis but the last
            squared = _min_plus(squared, axis, flags)
    return squared


def _row_squared_distances(features: torch.Tensor) -> torch.Tensor:
    """Squared distance to the nearest feature pixel of the same row (the last axis), int32, at most ``INF``."""
    length = features.shape[-1]
    index = torch.arange(length, dtype=torch.int32, device=features.device)  # int32: the scan's memory halved
    far = -(2 * length + 1)  # "no feature yet": farther than any pixel of the row
    left = torch.where(features, index, far).cummax(dim=-1).values  # nearest feature at or left of i
    right = torch.where(features.flip(-1), index, far).cummax(dim=-1).values.flip(-1)  # in flipped coordinates
    distance = torch.minimum(index - left, (length - 1 - index) - right)
    squared = distance.clamp_max(length) ** 2  # a row without features: > any in-row distance, capped below
    return torch.where(distance > length, INF, squared)


def _min_plus(g: torch.Tensor, axis: int, needed: torch.Tensor) -> torch.Tensor:
    """``out[.., i, ..] = min_j g[.., j, ..] + (i - j)^2`` along ``axis`` of int32 ``g`` (contiguous),
    for the maps (``g``'s first axis) whose int8 flag in ``needed`` is set, ``INF`` for the others."""
    g = g.contiguous()
    length = g.shape[axis]
    batch, rest = math.prod(g.shape[:axis]), math.prod(g.shape[axis + 1:])
    out = torch.empty_like(g)
    if g.numel() == 0:
        return out
    grid = (batch * -(-length // BLOCK_I) * -(-rest // BLOCK_M),)
    with torch.cuda.device(g.device) if g.is_cuda else contextlib.nullcontext():  # triton launches on the current GPU
        _td.min_plus_parabola_kernel[grid](g, out, needed, length, rest, math.prod(g.shape[1:axis]), INF=INF,
                                           BLOCK_I=BLOCK_I, BLOCK_M=BLOCK_M, num_warps=NUM_WARPS)
    return out


def _distance_to_border(spatial: tuple[int, ...], device) -> torch.Tensor:
    """``min_k min(i_k + 1, S_k - i_k)`` ``(*S)`` float32: the distance of each pixel to the nearest
    pixel just outside the image (the nearest is straight across one border)."""
    distance = None
    for k, size in enumerate(spatial):
        index = torch.arange(size, device=device)
        along = torch.minimum(index + 1, size - index).view(*([1] * k), size, *([1] * (len(spatial) - k - 1)))
        distance = along if distance is None else torch.minimum(distance, along)
    return distance.float()

