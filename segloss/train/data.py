"""Procedural sample datasets: imbalanced segmentation scenes drawn on the fly, by seed.

Two datasets, each a function of ``(batch_size, image_size, seed)`` only, so a training step
can draw a fresh batch in a few milliseconds and the same seed always gives the same arrays:

- ``street``: a miniature driving scene (9 classes). Sky, road, buildings and vegetation cover
  most pixels; poles are one pixel wide and traffic signs a few pixels, so the largest class
  share is over 100x the smallest. Colours overlap (grey-blue sky and road, dark pedestrians
  and poles) and every surface is textured, shaded, blurred and noisy.
- ``lesion``: an ultrasound-like image (3 classes): multiplicative speckle in a fan, an
  elliptical organ (~10-20% of pixels) and a hypo-echoic lesion inside it (~0.5-2%).

Everything is drawn by :mod:`segloss.train.drawing` with vectorised numpy on coordinate grids (no
per-pixel Python loops).

Example:
    >>> from segloss.train.data import make_batch, DATASETS
    >>> images, masks = make_batch("street", batch_size=4, image_size=64, seed=0)
    >>> images.shape, masks.shape, DATASETS["street"].num_classes
    (torch.Size([4, 3, 64, 64]), torch.Size([4, 64, 64]), 9)
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from segloss.train.drawing import draw_lesion, draw_street
from segloss.losses.weights import PixelCounts, count_pixels

MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class DatasetInfo:
    """What a sample dataset is: its classes, their display colours and a description.

    Attributes:
        name: key in :data:`DATASETS`.
        title: human-readable name.
        class_names: C names, index = label value.
        palette: C RGB triples (0-255) used by :func:`colorize`.
        description: one or two sentences for a UI.
    """

    name: str
    title: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    description: str

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.class_names)


DATASETS: dict[str, DatasetInfo] = {
    "street": DatasetInfo(
        name="street",
        title="Street scene",
        class_names=("sky", "road", "sidewalk", "building", "vegetation", "car", "pedestrian",
                     "pole", "traffic sign"),
        palette=((70, 130, 180), (128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35),
                 (0, 0, 142), (220, 20, 60), (153, 153, 153), (220, 220, 0)),
        description="A miniature driving scene: large sky, road, building and vegetation "
        "regions, a few cars, and thin poles, small traffic signs and pedestrians that "
        "together cover about 1% of the pixels.",
    ),
    "lesion": DatasetInfo(
        name="lesion",
        title="Ultrasound lesion",
        class_names=("background", "organ", "lesion"),
        palette=((0, 0, 0), (0, 170, 255), (255, 60, 60)),
        description="Ultrasound-like speckle images: an elliptical organ (~15% of pixels) "
        "with a small dark lesion inside it (~1%).",
    ),
}

def get_dataset(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` called ``name``.

    Raises:
        ValueError: if ``name`` is not a key of :data:`DATASETS` (the message lists them).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {sorted(DATASETS)}")
    return DATASETS[name]


def _as_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError as err:
        raise TypeError(f"{name} must be an int, got {value!r}") from err
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def make_batch(dataset: str, batch_size: int, image_size: int, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch_size`` square samples of ``dataset``; the same seed gives the same batch.

    Args:
        dataset: a key of :data:`DATASETS` (``"street"`` or ``"lesion"``).
        batch_size: B >= 1.
        image_size: side S >= 32 in pixels (H = W = S).
        seed: non-negative int seeding a fresh ``numpy.random.Generator``.

    Returns:
        ``(images, masks)``: float32 ``(B, 3, S, S)`` in ``[0, 1]`` and int64 ``(B, S, S)``
        with values in ``[0, C)``.

    Raises:
        ValueError: unknown dataset, ``batch_size < 1``, ``image_size < 32`` or ``seed < 0``.
        TypeError: if ``batch_size``, ``image_size`` or ``seed`` is not an int.
    """
    get_dataset(dataset)
    batch_size = _as_int(batch_size, "batch_size", 1)
    image_size = _as_int(image_size, "image_size", MIN_IMAGE_SIZE)
    seed = _as_int(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    draw = draw_street if dataset == "street" else draw_lesion
    image, labels = draw(rng, batch_size, image_size)
    images = torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2)))
    return images, torch.from_numpy(labels.astype(np.int64))


@functools.lru_cache(maxsize=32)
def _counts(dataset: str, image_size: int, n: int, seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    info = get_dataset(dataset)
    zeros = torch.zeros(info.num_classes, dtype=torch.int64)
    total = PixelCounts(zeros, zeros)
    for start in range(0, n, 16):
        _, masks = make_batch(dataset, min(16, n - start), image_size, seed + start)
        total = total + count_pixels(masks, info.num_classes)
    return tuple(total.pixels.tolist()), tuple(total.image_pixels.tolist())


def _sample_args(dataset: str, image_size, n, seed) -> tuple[int, int, int]:
    get_dataset(dataset)
    return _as_int(image_size, "image_size", MIN_IMAGE_SIZE), _as_int(n, "n", 1), _as_int(seed, "seed", 0)


def class_pixel_counts(dataset: str, image_size: int = 64, n: int = 64, seed: int = 12345) -> PixelCounts:
    """Pixels per class over ``n`` samples, with the pixels of the images each class appears in
    (:class:`segloss.losses.weights.PixelCounts`, what weighted CE's schemes take; cached per
    argument set, returned as fresh tensors).

    Args:
        dataset: a key of :data:`DATASETS`.
        image_size: side S >= 32 of the samples.
        n: number of samples (>= 1), drawn in batches of 16 with seeds ``seed, seed+16, ...``.
        seed: non-negative int.

    Raises:
        ValueError / TypeError: as :func:`make_batch`, or ``n < 1``.
    """
    pixels, image_pixels = _counts(dataset, *_sample_args(dataset, image_size, n, seed))
    return PixelCounts(torch.tensor(pixels, dtype=torch.int64), torch.tensor(image_pixels, dtype=torch.int64))


def class_frequencies(dataset: str, image_size: int = 64, n: int = 64,
                      seed: int = 12345) -> torch.Tensor:
    """Pixel share of each class over ``n`` samples (arguments as :func:`class_pixel_counts`).

    Returns:
        float64 ``(C,)`` summing to 1.
    """
    pixels = class_pixel_counts(dataset, image_size, n, seed).pixels.double()
    return pixels / pixels.sum()


def _as_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    if isinstance(array, np.ndarray):
        return array
    raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(array).__name__}")


def colorize(mask: torch.Tensor | np.ndarray, palette: Sequence[Sequence[int]], *,
             ignore_index: int = 255,
             ignore_color: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Paint a label mask with one RGB colour per class.

    Args:
        mask: integer labels ``(H, W)`` (any leading dimensions allowed), values in
            ``[0, len(palette))`` or ``ignore_index``.
        palette: C RGB triples with entries in 0-255 (e.g. ``DATASETS[name].palette``).
        ignore_index: label drawn with ``ignore_color``.
        ignore_color: RGB triple for ignored pixels.

    Returns:
        uint8 ``(H, W, 3)`` (``(..., H, W, 3)`` for batched masks).

    Raises:
        TypeError: non-integer mask. ValueError: palette not ``(C, 3)`` in 0-255, or a label
        outside the palette.
    """
    labels = _as_numpy(mask)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"mask must hold integer labels, got dtype {labels.dtype}")
    colours = np.asarray(palette)
    if colours.ndim != 2 or colours.shape[1] != 3 or colours.min() < 0 or colours.max() > 255:
        raise ValueError(f"palette must be C RGB triples in 0-255, got shape {colours.shape}")
    table = np.concatenate([colours, np.asarray([ignore_color])]).astype(np.uint8)
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= len(colours)))
    if bad.any():
        raise ValueError(f"mask holds labels {np.unique(labels[bad])[:8].tolist()} outside the "
                         f"palette's [0, {len(colours)}) that are not ignore_index={ignore_index}")
    return table[np.where(valid, labels, len(colours))]


def to_uint8_image(image_chw: torch.Tensor | np.ndarray) -> np.ndarray:
    """Convert a float ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)`` image in [0, 1] to uint8 RGB.

    Values are clipped to [0, 1] and rounded; a uint8 input is only reordered.

    Returns:
        uint8 ``(H, W, 3)``.

    Raises:
        ValueError: if the shape is not one of the above. TypeError: non-float, non-uint8 dtype.
    """
    image = _as_numpy(image_chw)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (3, H, W), (1, H, W) or (H, W), "
                         f"got {tuple(image_chw.shape)}")
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"image must be float in [0, 1] or uint8, got dtype {image.dtype}")
        image = np.round(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(image, (3, *image.shape[1:])).transpose(1, 2, 0))
