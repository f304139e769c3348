"""A model's prediction simulated from a mask, with knobs a teacher can turn.

The simulated model gives the true class probability ``confidence`` away from class edges;
near an edge it hesitates between the classes on either side (``boundary_width`` pixels of
uncertainty); ``noise`` adds spatially smooth random errors to the logits; and it may "miss" a
class, its probability moved to another class. Everything is deterministic given ``seed``::

    p = confidence * q + (1 - confidence) * (1 - q) / (C - 1)    # q: blurred one-hot mask
    z = log p + noise * n                                        # n: smooth unit noise
    p' = softmax(z);  p'_to += s p'_miss;  p'_miss *= 1 - s     # the missed class, strength s
    logits = log max(p', 1e-8)

Imports torch and numpy only.

Example:
    >>> import torch
    >>> labels = torch.zeros(32, 32, dtype=torch.long); labels[8:24, 8:24] = 1
    >>> logits = simulate_logits(labels, 3, confidence=0.9, noise=0.0)
    >>> logits.shape, round(float(logits[:, 0, 0].softmax(0)[0]), 3)
    (torch.Size([3, 32, 32]), 0.9)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from segloss.losses._checks import check_num_classes

#: The band where the blurred one-hot lies in (0.1, 0.9) is this many sigmas wide.
_BAND_SIGMAS = 2 * 1.2816
MAX_BOUNDARY_WIDTH = 64.0
MAX_NOISE_SCALE = 32.0
PROBABILITY_FLOOR = 1e-8


#: Most logits (pixels x classes) one simulated prediction may have: the Upload page's maps take
#: several float32 copies of them, so this bounds its memory whatever the mask declares.
MAX_LOGIT_ELEMENTS = 32 * 1024 * 1024

def _as_labels(labels, num_classes: int, ignore_index: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must hold integer class labels, got dtype {labels.dtype}")
    if labels.dim() != 2 or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty (H, W) mask, got shape {tuple(labels.shape)}")
    labels = labels.long()
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        values = torch.unique(labels[bad])[:8].tolist()
        raise ValueError(f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}, "
                         f"got {values}")
    return labels


def _number(value, name: str, low: float, high: float, *, open_low=False, open_high=False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if too_low or too_high:
        bounds = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ValueError(f"{name} must lie in {bounds}, got {value}")
    return float(value)


def _class_index(value, name: str, num_classes: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a class index (int), got {value!r}")
    if not 0 <= value < num_classes:
        raise ValueError(f"{name} must lie in [0, {num_classes}), got {value}")
    return int(value)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur every channel of ``x`` ``(C, H, W)`` with a separable Gaussian (edges replicated).

    The kernel (radius ``ceil(3 sigma)``) sums to 1, so a one-hot mask stays a distribution.
    ``sigma <= 0`` returns ``x`` unchanged.
    """
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = x.shape[0]
    out = x[None]
    for weight, pad in ((kernel.view(1, 1, 1, -1), (radius, radius, 0, 0)),
                        (kernel.view(1, 1, -1, 1), (0, 0, radius, radius))):
        out = F.conv2d(F.pad(out, pad, mode="replicate"), weight.expand(channels, 1, *weight.shape[2:]),
                       groups=channels)
    return out[0]


def soft_labels(labels: torch.Tensor, num_classes: int, boundary_width: float, ignore_index: int = 255
                ) -> torch.Tensor:
    """The one-hot mask ``(C, H, W)`` blurred so that class edges get ``boundary_width`` px of doubt.

    Ignored pixels count as uniform (1/C each). Only the classes present are blurred (plus one
    channel for the ignored pixels), which is what makes this affordable for large C.
    """
    valid = labels != ignore_index
    present = torch.unique(labels[valid])
    channels = [labels == k for k in present.tolist()]
    has_ignored = not bool(valid.all())
    if has_ignored:
        channels.append(~valid)
    blurred = gaussian_blur(torch.stack(channels).float(), boundary_width / _BAND_SIGMAS)
    q = torch.zeros((num_classes, *labels.shape))
    if has_ignored:
        q += blurred[-1] / num_classes
        blurred = blurred[:-1]
    q[present] += blurred
    return q


def smooth_noise(shape: tuple[int, int, int], scale: float, seed: int) -> torch.Tensor:
    """Unit-variance Gaussian noise ``(C, H, W)`` correlated over about ``scale`` pixels.

    Independent normals on a grid of spacing ``scale`` are interpolated bilinearly (much cheaper
    than blurring full-resolution noise) and rescaled to unit standard deviation; ``scale < 1``
    gives independent noise per pixel.
    """
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = shape
    if scale < 1:
        return torch.randn(shape, generator=generator)
    grid = (math.ceil(height / scale) + 1, math.ceil(width / scale) + 1)
    coarse = torch.randn((1, channels, *grid), generator=generator)
    field = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    return field / field.std().clamp_min(1e-12)


def most_common_neighbour(labels, cls: int, num_classes: int, ignore_index: int = 255) -> int:
    """The class that most often borders ``cls`` (8-neighbourhood), the likeliest confusion.

    Falls back to the most frequent other class when ``cls`` borders nothing (or is absent), and
    to ``(cls + 1) % C`` when the mask holds no other class.

    Args:
        labels: integer ``(H, W)`` mask.
        cls: the class whose neighbour is wanted.
        num_classes: C >= 2.
        ignore_index: label that is never returned.
    """
    labels = _as_labels(labels, num_classes, ignore_index)
    inside = labels == cls
    grown = F.max_pool2d(inside[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
    ring = grown & ~inside & (labels != ignore_index)
    for where in (ring, (labels != cls) & (labels != ignore_index)):
        counts = torch.bincount(labels[where], minlength=num_classes)
        if int(counts.sum()) > 0:
            return int(counts.argmax())
    return (cls + 1) % num_classes


def simulate_logits(labels, num_classes: int, *, confidence: float = 0.9, boundary_width: float = 4.0,
                    noise: float = 0.5, noise_scale: float = 2.0, missed_class: int | None = None,
                    missed_to: int | None = None, miss_strength: float = 1.0, ignore_index: int = 255,
                    seed: int = 0) -> torch.Tensor:
    """Logits a plausible model would give for ``labels``, with teachable flaws.

    Args:
        labels: integer ``(H, W)`` mask (tensor or numpy), values in ``[0, C)`` or ``ignore_index``
            (ignored pixels get a uniform prediction before noise).
        num_classes: C >= 2.
        confidence: true-class probability away from class edges, in (0, 1); below 1/C the
            model prefers a wrong class everywhere.
        boundary_width: width in pixels of the uncertain band at class edges (where the blurred
            one-hot mask lies between 0.1 and 0.9), in [0, 64]; 0 gives sharp edges.
        noise: standard deviation of the Gaussian noise added to every logit, >= 0.
        noise_scale: spatial correlation length of that noise in pixels, in [0, 32] (see
            :func:`smooth_noise`); below 1 the noise is independent per pixel.
        missed_class: a class the model "misses", or None.
        missed_to: where the missed class's probability goes; None: the class bordering it most
            often (:func:`most_common_neighbour`).
        miss_strength: share of the missed class's probability moved, in [0, 1]; at 1 the class
            never wins the argmax.
        ignore_index: label of unscored pixels.
        seed: seeds the noise; the same arguments always give the same logits.

    Returns:
        float32 ``(C, H, W)`` logits (log-probabilities, floored at ``log 1e-8``).

    Raises:
        TypeError: non-integer labels or class indices, non-numeric knobs.
        ValueError: a knob outside its range, labels outside ``[0, C)``, ``missed_to == missed_class``,
            or more than MAX_LOGIT_ELEMENTS logits (pixels x classes).
    """
    num_classes = check_num_classes(num_classes)
    pixels = math.prod(np.shape(labels))
    if pixels * num_classes > MAX_LOGIT_ELEMENTS:
        raise ValueError(f"{num_classes} classes x {pixels:,} pixels = {pixels * num_classes:,} logits, above the "
                         f"budget of {MAX_LOGIT_ELEMENTS:,} (each takes several float32 copies); downscale the mask "
                         f"to at most {MAX_LOGIT_ELEMENTS // num_classes:,} pixels or use fewer classes")
    labels = _as_labels(labels, num_classes, ignore_index)
    confidence = _number(confidence, "confidence", 0.0, 1.0, open_low=True, open_high=True)
    width = _number(boundary_width, "boundary_width", 0.0, MAX_BOUNDARY_WIDTH)
    noise = _number(noise, "noise", 0.0, math.inf, open_high=True)
    noise_scale = _number(noise_scale, "noise_scale", 0.0, MAX_NOISE_SCALE)
    strength = _number(miss_strength, "miss_strength", 0.0, 1.0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    c = num_classes
    q = soft_labels(labels, c, width, ignore_index)
    rest = (1.0 - confidence) / (c - 1)  # p = confidence q + rest (1 - q), in place:
    logits = q.mul_(confidence - rest).add_(rest).clamp_min_(PROBABILITY_FLOOR).log_()
    if noise > 0:
        logits.add_(smooth_noise(logits.shape, noise_scale, int(seed)).mul_(noise))
    if missed_class is not None:
        missed = _class_index(missed_class, "missed_class", c)
        target = (most_common_neighbour(labels, missed, c, ignore_index) if missed_to is None
                  else _class_index(missed_to, "missed_to", c))
        if target == missed:
            raise ValueError(f"missed_to must differ from missed_class, both are {missed}")
        p = logits.softmax(0)
        moved = strength * p[missed]
        p[target] += moved
        p[missed] -= moved
        logits = torch.log(p.clamp_min(PROBABILITY_FLOOR))
    return logits.float().contiguous()
