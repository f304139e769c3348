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
its inside, to its outside) run as one batch of ``2 N C`` maps, in chunks of at most
``CHUNK_ELEMENTS`` values. Per call: ``O(N C P)`` for the scan and ``O(N C P L)`` register-resident
min-plus work (``L`` the longest axis but the last), no host-device synchronisation.
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
CHUNK_ELEMENTS = 2 ** 25  # maps per chunk times their pixels: bounds the int64 scan temporaries (256 MB each)
BLOCK_I, BLOCK_M, NUM_WARPS = 32, 64, 4


def handles(labels: torch.Tensor) -> bool:
    """Whether the maps of ``labels`` ``(N, *S)`` are computed here: CUDA labels (or the interpreter's
    CPU tensors in tests) with triton, at least one spatial axis, and a size whose squared distances
    stay exact in int32 (``sum_k S_k^2 < 2^30``: up to about 32 K pixels along one axis)."""
    from segloss.kernels import cuda

    if _td is None or labels.dim() < 2 or not (labels.is_cuda or (cuda._CPU_FOR_TESTS and labels.device.type == "cpu")):
        return False
    return sum(s * s for s in labels.shape[1:]) < INF


def signed_distance_maps(labels: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """``phi`` float32 ``(N, C, *S)`` for integer labels ``(N, *S)``, on their device (see the module)."""
    n, spatial = labels.shape[0], tuple(labels.shape[1:])
    classes = torch.arange(num_classes, device=labels.device).view(1, num_classes, *([1] * len(spatial)))
    inside = (labels.unsqueeze(1) == classes) & (labels != ignore_index).unsqueeze(1)  # (N, C, *S)
    flat = inside.reshape(n * num_classes, math.prod(spatial))
    present, fills = flat.any(dim=1), flat.all(dim=1)
    features = torch.cat([inside, ~inside]).reshape(2 * n * num_classes, *spatial)  # to the inside, to the outside
    squared = squared_distances(features)
    to_inside, to_outside = squared.float().sqrt().reshape(2, n, num_classes, *spatial).unbind(0)
    phi = torch.where(inside, 1.0 - to_outside, to_inside)
    border = 1.0 - _distance_to_border(spatial, labels.device)
    phi = torch.where(fills.view(n, num_classes, *([1] * len(spatial))), border, phi)
    return torch.where(present.view(n, num_classes, *([1] * len(spatial))), phi, 0.0)


def squared_distances(features: torch.Tensor) -> torch.Tensor:
    """Exact squared Euclidean distance of every pixel to the nearest ``True`` pixel of its map.

    Args:
        features: bool ``(B, *S)``, at least one spatial axis.

    Returns:
        int32 ``(B, *S)``; ``INF`` (2^30) where a map has no feature pixel.
    """
    out = torch.empty(features.shape, dtype=torch.int32, device=features.device)
    per_map = max(1, math.prod(features.shape[1:]))
    step = max(1, CHUNK_ELEMENTS // per_map)
    for start in range(0, features.shape[0], step):
        chunk = _row_squared_distances(features[start:start + step])
        for axis in range(1, features.dim() - 1):  # every spatial axis but the last
            chunk = _min_plus(chunk, axis)
        out[start:start + step] = chunk
    return out


def _row_squared_distances(features: torch.Tensor) -> torch.Tensor:
    """Squared distance to the nearest feature pixel of the same row (the last axis), int32, at most ``INF``."""
    length = features.shape[-1]
    index = torch.arange(length, device=features.device)
    far = -(2 * length + 1)  # "no feature yet": farther than any pixel of the row
    left = torch.where(features, index, far).cummax(dim=-1).values  # nearest feature at or left of i
    right = torch.where(features.flip(-1), index, far).cummax(dim=-1).values.flip(-1)  # in flipped coordinates
    distance = torch.minimum(index - left, (length - 1 - index) - right)
    squared = distance.clamp_max(length) ** 2  # a row without features: > any in-row distance, capped below
    return torch.where(distance > length, INF, squared).to(torch.int32)


def _min_plus(g: torch.Tensor, axis: int) -> torch.Tensor:
    """``out[.., i, ..] = min_j g[.., j, ..] + (i - j)^2`` along ``axis`` of int32 ``g`` (contiguous)."""
    g = g.contiguous()
    length = g.shape[axis]
    batch, rest = math.prod(g.shape[:axis]), math.prod(g.shape[axis + 1:])
    out = torch.empty_like(g)
    if g.numel() == 0:
        return out
    grid = (batch * -(-length // BLOCK_I), -(-rest // BLOCK_M))
    with torch.cuda.device(g.device) if g.is_cuda else contextlib.nullcontext():  # triton launches on the current GPU
        _td.min_plus_parabola_kernel[grid](g, out, rest, L=length, INF=INF, BLOCK_I=BLOCK_I, BLOCK_M=BLOCK_M,
                                           num_warps=NUM_WARPS)
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

