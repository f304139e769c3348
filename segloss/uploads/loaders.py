"""Uploaded images, masks and logits for the Upload page, validated before use.

Every loader takes the raw ``bytes`` of an upload (``uploaded_file.getvalue()``) or a path, checks
size, type, dimensions and values, and raises :class:`UploadError` (a ``ValueError``; subclasses
:class:`ImageError`, :class:`MaskError`, :class:`LogitsError`) whose message says what was
received and what to do. Images above :data:`HARD_PIXEL_LIMIT` pixels are refused before their
pixels are decoded; images above the pixel budget are downscaled. Logits are read with
``np.load(..., allow_pickle=False)`` after their header is checked: a pickle is never loaded.
Imports numpy, torch and pillow; never streamlit. Byte-level decoding lives in
``segloss.uploads.decode``::

    image = load_image(image_bytes)                      # image.array: (H, W, 3) in [0, 1]
    mask = load_mask(mask_bytes, palette=palette)       # mask.labels: (H, W) int64
    check_same_size(image.array, mask.labels)
    logits = load_logits(npy_bytes, num_classes=mask.num_classes, size_hw=mask.labels.shape)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from segloss.uploads.decode import (
    HARD_PIXEL_LIMIT,
    IMAGE_FORMATS,
    LOGITS_NAMES,
    MASK_FORMATS,
    MAX_INFERRED_COLOURS,
    MAX_UPLOAD_BYTES,
    PIXEL_BUDGET,
    RGB,
    ImageError,
    LogitsError,
    MaskError,
    UploadError,
    choose_layout,
    decode_image,
    decode_mask,
    guarded,
    open_image,
    read_array,
    read_upload,
)

MAX_INFERRED_CLASSES = 1024
GREY_PHOTO_CLASSES = 64  # an inferred index mask with more classes, most values used, reads like a grey photo
KINDS = ("auto", "logits", "probabilities")
Source = bytes | str | os.PathLike

__all__ = [
    "PIXEL_BUDGET", "HARD_PIXEL_LIMIT", "MAX_UPLOAD_BYTES", "MAX_INFERRED_COLOURS",
    "MAX_INFERRED_CLASSES", "IMAGE_FORMATS", "MASK_FORMATS", "LOGITS_NAMES", "KINDS",
    "UploadError", "ImageError", "MaskError", "LogitsError",
    "LoadedImage", "LoadedMask", "LoadedLogits",
    "load_image", "load_mask", "load_logits",
    "resolve_out_of_range", "resize_mask_nearest", "check_same_size",
]


@dataclass
class LoadedImage:
    """``array``: float32 ``(H, W, 3)`` in [0, 1]; ``original_size``: ``(W, H)`` as uploaded."""

    array: np.ndarray
    original_size: tuple[int, int]
    downscaled: bool
    notice: str | None = None


@dataclass
class LoadedMask:
    """``labels``: int64 ``(H, W)``; ``mode``: "index" or "color"; ``out_of_range``: pixels;
    ``original_size``: upright ``(W, H)`` as uploaded (``labels`` is smaller if it was downscaled)."""

    labels: np.ndarray
    num_classes: int
    mode: str
    palette_used: tuple[RGB, ...] | None
    out_of_range: int
    notice: str | None = None
    original_size: tuple[int, int] | None = None


@dataclass
class LoadedLogits:
    """``logits``: float32 ``(C, H, W)``; ``layout``: as uploaded; ``kind``: as interpreted."""

    logits: torch.Tensor
    layout: str
    kind: str


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def load_image(source: Source, *, pixel_budget: int = PIXEL_BUDGET) -> LoadedImage:
    """Decode an uploaded PNG/JPEG/TIFF/BMP/WebP/GIF image to RGB floats within a pixel budget.

    Alpha is composited on black; L, P, CMYK become RGB. 16-bit images (I;16) are divided by
    65535 (so a dark 16-bit image stays dark); 32-bit integer ones by 65535, or by their max when
    it is above; float ones are kept when in [0, 1], else divided by their max. Animated images
    give their first frame.

    Args:
        source: file contents (``bytes``) or a path.
        pixel_budget: images with more pixels are downscaled (Lanczos, aspect ratio kept).

    Returns:
        LoadedImage: ``array`` float32 ``(H, W, 3)`` in [0, 1], ``original_size`` ``(W, H)``,
        ``downscaled``, and ``notice`` saying why the image was changed (else None).

    Raises:
        ImageError: empty or above MAX_UPLOAD_BYTES, not an image, truncated or corrupt, zero
            size, more than HARD_PIXEL_LIMIT pixels (checked before decoding).
        ValueError: ``pixel_budget`` is not a positive int.
    """
    budget = _positive_int(pixel_budget, "pixel_budget")
    data = read_upload(source, "image", ImageError)
    array, original, notes = guarded(ImageError, "image", decode_image, data, budget)
    downscaled = array.shape[:2] != original[::-1]
    return LoadedImage(array, original, downscaled, " ".join(notes) or None)


def check_header(source: Source, what: str) -> None:
    """Refuse an upload that cannot be the ``what`` (``"image"`` or ``"mask"``) from its header alone
    (size, format, declared pixels; for a mask, lossy formats), without decoding its pixels: what
    a page can say about one file while the other is still missing.

    Raises:
        ImageError / MaskError: as :func:`load_image` / :func:`load_mask` would for these problems.
    """
    if what not in ("image", "mask"):
        raise ValueError(f"what must be 'image' or 'mask', got {what!r}")
    error = ImageError if what == "image" else MaskError
    data = read_upload(source, what, error)
    img = guarded(error, what, open_image, data, what, error)
    lossy = img.format in ("JPEG", "MPO") or img.info.get("compression") in ("jpeg", "tiff_jpeg")
    if what == "mask" and (lossy or img.format not in MASK_FORMATS):
        raise MaskError(f"The mask is a {'JPEG-compressed' if lossy else img.format} file; masks must be lossless "
                        f"{', '.join(MASK_FORMATS)} (lossy compression invents labels along class borders). "
                        "Save it as PNG and upload it again.")


def load_mask(source: Source, *, num_classes: int | None = None,
              palette: Sequence[Sequence[int]] | None = None, ignore_index: int = 255,
              unknown_as_ignore: bool = False, pixel_budget: int = PIXEL_BUDGET) -> LoadedMask:
    """Read a class mask: an index mask (PNG/TIFF/BMP, mode L/P/I/I;16) or an RGB colour mask.

    Index masks hold the labels (for mode P the palette indices, not the colours). Colour masks
    map colour ``palette[k]`` to class ``k``; with ``palette=None`` and at most
    MAX_INFERRED_COLOURS colours the palette is inferred, sorted by colour value (so black is 0).
    An RGB mask with R == G == B everywhere (and colours not all in ``palette``) is an index mask.

    Args:
        source: file contents (``bytes``) or a path.
        num_classes: C; default ``len(palette_used)`` for colour masks, else max label + 1 over
            pixels that are not ``ignore_index``.
        palette: ``(r, g, b)`` per class, for colour masks.
        ignore_index: label of pixels that are not scored.
        unknown_as_ignore: map colours not in ``palette`` to ``ignore_index`` instead of raising.
        pixel_budget: larger masks are downscaled (nearest neighbour) before their labels are
            read, with a notice; EXIF orientation is applied as for images.

    Returns:
        LoadedMask with ``labels`` int64 ``(H, W)`` and ``out_of_range``, the number of pixels
        with a label >= ``num_classes`` that is not ``ignore_index`` (see resolve_out_of_range).

    Raises:
        MaskError: empty/oversized/corrupt file, not an image, JPEG or other lossy format,
            unsupported mode, negative labels, colours not in ``palette``, too many colours to
            infer a palette, only ``ignore_index`` pixels, or an inferred class count above
            MAX_INFERRED_CLASSES.
        ValueError: malformed ``palette`` or ``num_classes``.
    """
    if num_classes is not None:
        num_classes = _positive_int(num_classes, "num_classes")
    if palette is not None:
        palette = tuple(tuple(int(v) for v in colour) for colour in palette)
        if not palette or any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in palette):
            raise ValueError(f"palette must be a non-empty sequence of (r, g, b) in 0..255, "
                             f"got {palette[:4]!r}")
    budget = _positive_int(pixel_budget, "pixel_budget")
    data = read_upload(source, "mask", MaskError)
    labels, mode, used, original, notes = guarded(MaskError, "mask", decode_mask, data, palette, ignore_index,
                                                  unknown_as_ignore, budget)
    valid = labels != ignore_index
    if not valid.any():
        raise MaskError(f"Every pixel of the mask equals ignore_index={ignore_index}; there is "
                        "nothing to score. Upload a mask with class labels.")
    low, top = int(labels[valid].min()), int(labels[valid].max())
    if low < 0:
        raise MaskError(f"The mask holds negative labels (min {low}); class labels must be >= 0. "
                        "Upload an index mask with labels 0..C-1.")
    if num_classes is None:
        num_classes = len(used) if used is not None else top + 1
        if num_classes > MAX_INFERRED_CLASSES:
            raise MaskError(f"The mask's largest label is {top}, i.e. {num_classes:,} classes: "
                            "this looks like an intensity or depth image, not class indices. "
                            "Upload an index mask, or pass num_classes if that is right.")
        if used is None and num_classes > GREY_PHOTO_CLASSES:
            distinct = np.unique(labels[valid]).size
            if distinct > 0.5 * num_classes:
                notes.append(f"The mask holds {distinct} distinct values from {low} to {top}, so it is read as "
                             f"{num_classes} classes: that looks like a grey photo (intensities), not class "
                             "labels. If so, upload an index mask with labels 0..C-1, or choose a dataset.")
    if top == 0 and not valid.all():
        notes.append(f"The mask only holds 0 and {ignore_index}; {ignore_index} is ignored. If it "
                     "marks the foreground, save the mask with labels 0 and 1.")
    out_of_range = int(np.count_nonzero(valid & (labels >= num_classes)))
    return LoadedMask(labels, num_classes, mode, used, out_of_range, " ".join(notes) or None, original)


def resolve_out_of_range(labels: np.ndarray, num_classes: int, ignore_index: int = 255, *,
                         as_ignore: bool) -> np.ndarray:
    """Labels outside ``[0, num_classes)`` (not ``ignore_index``) -> ``ignore_index``, or raise.

    Args:
        labels: integer ``(H, W)`` (any shape); not modified.
        num_classes: C.
        ignore_index: label of pixels that are not scored.
        as_ignore: map offending labels to ``ignore_index`` instead of raising.

    Returns:
        ``labels`` itself when every label is valid, else a copy with offending labels replaced.

    Raises:
        MaskError: offending labels and ``as_ignore`` is False; names up to 5 values and counts.
    """
    labels = np.asarray(labels)
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
    if not bad.any():
        return labels
    if as_ignore:
        out = labels.copy()
        out[bad] = ignore_index
        return out
    values, counts = np.unique(labels[bad], return_counts=True)
    order = np.argsort(-counts, kind="stable")[:5]
    shown = ", ".join(f"{values[i]} ({counts[i]:,} px)" for i in order)
    raise MaskError(f"The mask has {int(counts.sum()):,} pixels with labels outside "
                    f"[0, {num_classes}): {shown}{', ...' if len(values) > 5 else ''}. Choose a "
                    f"dataset with more classes, or treat them as ignore ({ignore_index}).")


def resize_mask_nearest(labels: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Resize ``(H, W)`` labels to ``size_wh = (W', H')`` by nearest neighbour (pixel centres).

    Returns a ``(H', W')`` array of the same dtype whose values all occur in ``labels``.

    Raises:
        ValueError: ``labels`` is not 2-D or ``size_wh`` is not two positive ints.
    """
    labels = np.asarray(labels)
    w, h = (int(v) for v in size_wh)
    if labels.ndim != 2 or w < 1 or h < 1:
        raise ValueError(f"need 2-D labels and a positive (W, H), got {labels.shape} and {size_wh}")
    rows = np.minimum(((np.arange(h) + 0.5) * labels.shape[0] / h).astype(np.int64),
                      labels.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * labels.shape[1] / w).astype(np.int64),
                      labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]]


def check_same_size(image_array: np.ndarray, labels: np.ndarray) -> None:
    """Raise MaskError unless image ``(H, W, ...)`` and labels ``(H, W)`` have the same H, W."""
    (ih, iw), (mh, mw) = np.shape(image_array)[:2], np.shape(labels)[:2]
    if (ih, iw) != (mh, mw):
        raise MaskError(f"Image is {iw} x {ih} but mask is {mw} x {mh}; resize the mask (nearest "
                        "neighbour) or upload a matching pair.")


def load_logits(source: Source, *, num_classes: int | None = None,
                size_hw: tuple[int, int] | None = None, kind: str = "auto") -> LoadedLogits:
    """Read one image's logits (or probabilities) from a ``.npy`` or ``.npz`` file.

    The array is ``(C, H, W)`` or ``(H, W, C)``, optionally with a leading batch dimension of 1;
    the layout is the one matching ``num_classes`` and ``size_hw``, else the one whose class axis
    is <= 256 and differs from the other two. A ``.npz`` must hold one array or one named
    ``logits``, ``probs`` or ``probabilities``. Probabilities (``kind="auto"``: all values in
    [0, 1] and summing to 1 over C within 1e-3) become ``log(max(p, 1e-12))``, which softmax maps
    back to ``p``, so every loss can use them as logits.

    Args:
        source: file contents (``bytes``) or a path.
        num_classes: C of the mask, if known.
        size_hw: ``(H, W)`` of the mask, if known.
        kind: "auto", "logits" or "probabilities".

    Returns:
        LoadedLogits: ``logits`` float32 ``(C, H, W)``, ``layout`` "CHW" or "HWC" as uploaded,
        ``kind`` "logits" or "probabilities".

    Raises:
        LogitsError: empty or above MAX_UPLOAD_BYTES, a pickle or other non-numpy file, an
            object/string/complex/bool dtype, a .npz without a clear logits array, not 3-D after
            dropping a batch of 1, NaN or Inf, a class count or size that does not match,
            an ambiguous layout, or ``kind="probabilities"`` for values that are not.
        ValueError: bad ``kind``, ``num_classes`` or ``size_hw`` arguments.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if num_classes is not None:
        num_classes = _positive_int(num_classes, "num_classes")
    if size_hw is not None:
        size_hw = tuple(_positive_int(v, "size_hw entries") for v in size_hw)
        if len(size_hw) != 2:
            raise ValueError(f"size_hw must be (H, W), got {size_hw!r}")
    data = read_upload(source, "logits", LogitsError)
    array = guarded(LogitsError, "logits file", read_array, data)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or array.size == 0:
        raise LogitsError(f"The logits array has shape {array.shape}; expected 3 dimensions, "
                          "C x H x W or H x W x C (a leading batch of 1 is also accepted), none "
                          "of them 0. Save one image's logits, e.g. np.save(f, logits[0]).")
    array = array.astype(np.float32)
    n_nan, n_inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
    if n_nan or n_inf:
        raise LogitsError(f"The logits contain {n_nan:,} NaN and {n_inf:,} Inf values (of "
                          f"{array.size:,}, after conversion to float32); export finite values.")
    layout = choose_layout(array.shape, num_classes, size_hw)
    logits = torch.from_numpy(np.ascontiguousarray(
        array if layout == "CHW" else array.transpose(2, 0, 1)))
    in_unit = bool(((logits >= 0) & (logits <= 1)).all())
    deviation = float((logits.double().sum(0) - 1).abs().max())
    if kind == "probabilities" and not (in_unit and deviation <= 1e-3):
        problem = ("values outside [0, 1]" if not in_unit else
                   f"sums over the classes that differ from 1 by up to {deviation:.3g}")
        raise LogitsError(f"The array was given as probabilities, but it has {problem}; upload softmax "
                          "probabilities (each pixel's values sum to 1), or choose 'logits' for raw scores.")
    if kind == "auto":
        kind = "probabilities" if in_unit and deviation <= 1e-3 else "logits"
    if kind == "probabilities":
        logits = torch.log(logits.clamp_min(1e-12))
    return LoadedLogits(logits, layout, kind)
