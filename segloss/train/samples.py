"""The shipped ``sample_data/``: image/mask PNG pairs, ``datasets.json``, and class-frequency tables.

``sample_data/`` is written by ``python -m segloss samples`` (:func:`write_samples`) from the
procedural datasets of :mod:`segloss.train.data`, so it is reproducible byte for byte::

    sample_data/
      datasets.json                      # per dataset: title, classes, palette, frequencies, pairs
      street/street_01.png               # RGB image, uint8
      street/street_01_mask.png          # palette ("P") PNG: pixel value = class index,
      ...                                # shown in the dataset's colours by any image viewer
      lesion/lesion_01.png, lesion_01_mask.png, ...

Masks are index masks, so :func:`segloss.uploads.loaders.load_mask` reads their values as labels.
Imports numpy, torch and pillow; never streamlit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from segloss.train import data
from segloss.losses.weights import class_weights

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
MANIFEST = "datasets.json"
SAMPLE_SEEDS = (11, 12, 13, 14)  # make_batch seeds of the shipped pairs
SAMPLE_SIZE = 256
IGNORE_INDEX = 255


def _mask_png(labels: np.ndarray, palette) -> Image.Image:
    """A palette PNG whose pixel values are the labels (ignored pixels: white)."""
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [v for colour in palette for v in colour]
    flat += [0, 0, 0] * (IGNORE_INDEX - len(palette)) + [255, 255, 255]
    image.putpalette(flat)
    return image


def write_samples(out_dir: str | os.PathLike = SAMPLE_DIR, *, seeds=SAMPLE_SEEDS,
                  image_size: int = SAMPLE_SIZE) -> dict:
    """Render ``len(seeds)`` pairs per dataset into ``out_dir`` and write ``datasets.json``.

    Args:
        out_dir: target folder (created if needed; existing sample files are overwritten).
        seeds: one :func:`segloss.train.data.make_batch` seed per pair.
        image_size: side of the square images.

    Returns:
        The manifest written to ``datasets.json`` (see :func:`dataset_manifest`).

    Raises:
        ValueError / TypeError: as :func:`segloss.train.data.make_batch`.
    """
    out = Path(out_dir)
    manifest = {}
    for name, info in data.DATASETS.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        pairs = []
        for number, seed in enumerate(seeds, start=1):
            images, masks = data.make_batch(name, 1, image_size, seed)
            stem = f"{name}_{number:02d}"
            Image.fromarray(data.to_uint8_image(images[0])).save(folder / f"{stem}.png", optimize=True)
            _mask_png(masks[0].numpy(), info.palette).save(folder / f"{stem}_mask.png", optimize=True)
            pairs.append({"image": f"{name}/{stem}.png", "mask": f"{name}/{stem}_mask.png", "seed": int(seed),
                          "size": [image_size, image_size]})
        manifest[name] = {**dataset_manifest(name), "samples": pairs}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def dataset_manifest(name: str) -> dict:
    """Title, description, class names, palette, ignore index and class frequencies of a dataset."""
    info = data.get_dataset(name)
    return {
        "title": info.title, "description": info.description, "num_classes": info.num_classes,
        "class_names": list(info.class_names), "palette": [list(c) for c in info.palette],
        "ignore_index": IGNORE_INDEX,
        "class_frequencies": [round(float(f), 6) for f in data.class_frequencies(name)],
        "frequencies_from": "segloss.train.data.class_frequencies(name): 64 samples at 64 x 64",
        "generator": "segloss.train.data.make_batch(name, 1, size, seed)",
    }


def read_manifest(folder: str | os.PathLike = SAMPLE_DIR) -> dict:
    """The parsed ``datasets.json`` of ``folder``.

    Raises:
        FileNotFoundError: no manifest (run ``python -m segloss samples``).
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; create it with `python -m segloss samples --out {folder}`")
    return json.loads(path.read_text())


def load_pair(dataset: str, index: int = 0, folder: str | os.PathLike = SAMPLE_DIR) -> tuple[np.ndarray, np.ndarray]:
    """Shipped pair ``index`` of ``dataset``: uint8 ``(H, W, 3)`` image and int64 ``(H, W)`` labels.

    Raises:
        ValueError: unknown dataset or index out of range.
    """
    samples = read_manifest(folder).get(dataset, {}).get("samples", [])
    if not 0 <= index < len(samples):
        raise ValueError(f"{dataset!r} has {len(samples)} shipped samples; index {index} is out of range")
    entry = samples[index]
    image = np.asarray(Image.open(Path(folder) / entry["image"]).convert("RGB"))
    labels = np.asarray(Image.open(Path(folder) / entry["mask"])).astype(np.int64)
    return image, labels


def frequency_table(dataset: str, image_size: int = 64) -> dict[str, list]:
    """Per-class pixel statistics of a dataset, as columns of equal length (one row per class).

    Columns: ``class``, ``colour`` (hex), ``pixel share`` (fraction of all pixels), ``1 in N
    pixels``, ``vs. largest`` (largest share / this share: how much rarer), and the class
    weights weighted CE would use: ``median-frequency weight`` and ``inverse-frequency weight``.
    Shares and weights are from :func:`segloss.train.data.class_pixel_counts` (64 samples).

    Raises:
        ValueError: unknown dataset.
    """
    info = data.get_dataset(dataset)
    counts = data.class_pixel_counts(dataset, image_size)
    share = data.class_frequencies(dataset, image_size).numpy()
    largest = share.max()
    with np.errstate(divide="ignore"):
        return {
            "class": list(info.class_names),
            "colour": ["#{:02x}{:02x}{:02x}".format(*c) for c in info.palette],
            "pixel share": [float(s) for s in share],
            "1 in N pixels": [float(1 / s) if s > 0 else float("inf") for s in share],
            "vs. largest": [float(largest / s) if s > 0 else float("inf") for s in share],
            "median-frequency weight": class_weights("median", counts).tolist(),
            "inverse-frequency weight": class_weights("inverse", counts).tolist(),
        }
