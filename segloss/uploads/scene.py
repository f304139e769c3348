"""One image, its mask and its classes, from uploaded bytes or from the shipped samples.

:func:`scene_from_uploads` turns the raw bytes of an image and a mask into a :class:`Scene`,
or into a :class:`SceneProblem` saying what to fix and which fixes can be offered (resize the
mask, treat out-of-range labels as ignore); it never raises for a bad upload. :func:`sample_scene`
loads a shipped pair from ``sample_data/`` when there is one for the dataset, else renders one
with :func:`segloss.train.data.make_batch`. Imports numpy, torch and pillow (through uploads)::

    found = scene_from_uploads(image_bytes, mask_bytes, "street")
    if isinstance(found, SceneProblem):
        print(found.message, found.offers)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segloss.train import data
from segloss.train.samples import SAMPLE_DIR, SAMPLE_SIZE
from segloss.uploads.simulate import MAX_LOGIT_ELEMENTS
from segloss.uploads.loaders import (
    MaskError,
    UploadError,
    check_same_size,
    load_image,
    load_mask,
    resize_mask_nearest,
    resolve_out_of_range,
)

#: The Upload page computes on at most this many pixels (1024 x 1024); larger images are downscaled.
PAGE_PIXEL_BUDGET = 1024 * 1024
FROM_MASK = "mask"  # classes: inferred from the mask instead of a dataset's
MASK_SUFFIXES = ("_mask", "-mask", "_label", "_labels", "_gt", "_seg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
OFFER_RESIZE, OFFER_IGNORE = "resize", "ignore"


@dataclass
class Scene:
    """``image`` float32 ``(H, W, 3)`` in [0, 1]; ``labels`` int64 ``(H, W)`` in [0, C) or ignore."""

    image: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    name: str
    dataset: str | None = None
    notices: list[str] = field(default_factory=list)
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class SceneProblem:
    """Why no scene could be built: ``message`` (what to fix), ``offers`` (fixes a UI can offer)."""

    message: str
    offers: frozenset[str] = frozenset()


def generic_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """C distinct-ish colours (golden-angle hues) for classes inferred from a mask."""
    hues = (np.arange(num_classes) * 0.618034) % 1.0
    rgb = np.stack([np.abs(hues * 6 - 3) - 1, 2 - np.abs(hues * 6 - 2), 2 - np.abs(hues * 6 - 4)], -1)
    return tuple(tuple(int(v) for v in row) for row in (np.clip(rgb, 0, 1) * 200 + 40).astype(int))


def scene_from_uploads(image_bytes: bytes, mask_bytes: bytes, classes: str = FROM_MASK, *,
                       resize_mask: bool = False, out_of_range_as_ignore: bool = False,
                       pixel_budget: int = PAGE_PIXEL_BUDGET, name: str = "upload",
                       ignore_index: int = 255) -> Scene | SceneProblem:
    """Validate an uploaded image and mask and put them together.

    Args:
        image_bytes, mask_bytes: the files' contents.
        classes: a key of :data:`segloss.train.data.DATASETS` (its class names and palette) or
            ``"mask"`` (C inferred from the mask, names ``class k``).
        resize_mask: resize a mask of another size to the image (nearest neighbour).
        out_of_range_as_ignore: labels >= C and colours not in the palette become ignore.
        pixel_budget: larger images are downscaled (with a notice), the mask resized to match.

    Returns:
        A :class:`Scene`, or a :class:`SceneProblem` (never raises for bad file contents).

    Raises:
        ValueError: ``classes`` is neither ``"mask"`` nor a dataset.
    """
    info = None if classes == FROM_MASK else data.get_dataset(classes)
    palette = None if info is None else info.palette
    num_classes = None if info is None else info.num_classes
    offers: set[str] = set()
    mask_args = dict(num_classes=num_classes, palette=palette, ignore_index=ignore_index, pixel_budget=pixel_budget)
    try:
        mask = load_mask(mask_bytes, **mask_args)
    except MaskError as err:
        if palette is None or "not in the palette" not in str(err):
            return SceneProblem(str(err))
        offers.add(OFFER_IGNORE)
        if not out_of_range_as_ignore:
            return SceneProblem(str(err), frozenset(offers))
        try:
            mask = load_mask(mask_bytes, unknown_as_ignore=True, **mask_args)
        except UploadError as err2:
            return SceneProblem(str(err2), frozenset(offers))
    # every map of the page costs pixels x classes: many classes get fewer pixels
    budget = max(1, min(pixel_budget, MAX_LOGIT_ELEMENTS // max(mask.num_classes, 1)))
    try:
        image = load_image(image_bytes, pixel_budget=budget)
    except UploadError as err:
        return SceneProblem(str(err))
    notices = [n for n in (image.notice, mask.notice) if n]
    if budget < pixel_budget and image.downscaled:
        notices.append(f"With {mask.num_classes} classes the page works on at most {budget:,} pixels "
                       f"({MAX_LOGIT_ELEMENTS // 2**20} M logits), so the image was downscaled further.")
    labels = mask.labels
    if mask.out_of_range:
        offers.add(OFFER_IGNORE)
        try:
            labels = resolve_out_of_range(labels, mask.num_classes, ignore_index, as_ignore=out_of_range_as_ignore)
        except MaskError as err:
            return SceneProblem(str(err), frozenset(offers))
    height, width = image.array.shape[:2]
    if labels.shape != (height, width):
        if image.original_size == mask.original_size:  # one geometry, downscaled: follow the image
            labels = resize_mask_nearest(labels, (width, height))
            notices.append(f"The mask was resized to {width} x {height} with the image (nearest neighbour).")
        else:
            offers.add(OFFER_RESIZE)
            mw, mh = mask.original_size
            if not resize_mask:
                iw, ih = image.original_size
                return SceneProblem(f"Image is {iw} x {ih} but mask is {mw} x {mh}; resize the mask (nearest "
                                    "neighbour) or upload a matching pair.", frozenset(offers))
            labels = resize_mask_nearest(labels, (width, height))
            notices.append(f"The {mw} x {mh} mask was resized to the image's {width} x {height} (nearest "
                           "neighbour).")
    if mask.num_classes < 2:
        return SceneProblem("The mask holds a single class (label 0 only), so every loss is 0 for a model "
                            "that predicts it. Choose a dataset's classes, or upload a mask with at least two "
                            "classes.", frozenset(offers))
    if not np.any(labels != ignore_index):
        return SceneProblem("After these fixes every mask pixel is ignored; nothing is left to score. "
                            "Check that the mask matches the classes chosen.", frozenset(offers))
    if info is not None:
        names, colours = info.class_names, info.palette
    else:
        names = tuple(f"class {k}" for k in range(mask.num_classes))
        colours = mask.palette_used or generic_palette(mask.num_classes)
    return Scene(image.array, labels.astype(np.int64), tuple(names), tuple(colours), name,
                 None if info is None else info.name, notices, ignore_index)


def find_sample_pairs(folder: Path | str = SAMPLE_DIR, dataset: str | None = None) -> list[tuple[Path, Path]]:
    """``(image, mask)`` path pairs in ``folder``: ``X.png`` + ``X_mask.png`` (or another suffix of
    :data:`MASK_SUFFIXES`), or ``images/X.*`` + ``masks/X.png``; with ``dataset``, only names
    (or sub-folders) starting with it. Sorted by image path; a missing folder gives ``[]``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pairs = []
    for mask in sorted(folder.rglob("*.png")):
        stem = mask.stem
        suffix = next((s for s in MASK_SUFFIXES if stem.lower().endswith(s)), None)
        if suffix is not None:
            candidates = [mask.with_name(stem[: -len(suffix)] + ext) for ext in IMAGE_SUFFIXES]
        elif mask.parent.name in ("masks", "labels"):
            candidates = [mask.parent.parent / "images" / (stem + ext) for ext in IMAGE_SUFFIXES]
        else:
            continue
        image = next((c for c in candidates if c.is_file()), None)
        if image is not None:
            pairs.append((image, mask))
    if dataset is not None:
        pairs = [p for p in pairs if any(part.lower().startswith(dataset) for part in
                                         p[0].relative_to(folder).parts)]
    return sorted(pairs)


def sample_scene(dataset: str, index: int = 0, folder: Path | str = SAMPLE_DIR) -> Scene:
    """Sample ``index`` of ``dataset``: a shipped pair if ``folder`` has any, else a rendered one.

    Shipped pairs are cycled through (``index % count``); rendered ones use
    ``make_batch(dataset, 1, 256, seed=index)``. A shipped pair that fails to load falls back to
    rendering, with a notice.
    """
    info = data.get_dataset(dataset)
    pairs = find_sample_pairs(folder, dataset)
    notices = []
    if pairs:
        image_path, mask_path = pairs[index % len(pairs)]
        try:
            image = load_image(str(image_path), pixel_budget=PAGE_PIXEL_BUDGET)
            mask = load_mask(str(mask_path), num_classes=info.num_classes, palette=info.palette)
            labels = resolve_out_of_range(mask.labels, info.num_classes, as_ignore=True)
            check_same_size(image.array, labels)
            return Scene(image.array, labels, info.class_names, info.palette, image_path.stem, dataset)
        except UploadError as err:
            notices.append(f"The shipped sample {image_path.name} could not be used ({err}); showing a "
                           "rendered scene instead.")
    images, masks = data.make_batch(dataset, 1, SAMPLE_SIZE, seed=index)
    image = images[0].permute(1, 2, 0).numpy().copy()
    return Scene(image, masks[0].numpy(), info.class_names, info.palette, f"{dataset}_{index}", dataset, notices)
