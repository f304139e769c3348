"""Byte-level decoding behind :mod:`segloss.uploads.loaders`: raw upload -> pixels or a numpy array.

Private: import the names from :mod:`segloss.uploads.loaders`. Every step runs inside :func:`guarded`,
which turns whatever PIL, numpy or zipfile raise into an :class:`UploadError` (MemoryError and
KeyboardInterrupt pass through). Pickles are never loaded: ``.npy`` headers are checked before
``np.load(..., allow_pickle=False)`` reads the data.
"""

from __future__ import annotations

import io
import math
import os
import struct
import zipfile
from collections.abc import Callable

import numpy as np
from PIL import Image

PIXEL_BUDGET = 4_194_304
HARD_PIXEL_LIMIT = 64_000_000
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_INFERRED_COLOURS = 64
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")
MASK_FORMATS = ("PNG", "TIFF", "BMP")
LOGITS_NAMES = ("logits", "probs", "probabilities")
RGB = tuple[int, int, int]


class UploadError(ValueError):
    """An upload that cannot be used; the message says what was received and what to do."""


class ImageError(UploadError):
    """The image upload is unusable."""


class MaskError(UploadError):
    """The mask upload is unusable, or does not fit the image or the classes."""


class LogitsError(UploadError):
    """The logits upload is unusable, or does not fit the mask."""


def read_upload(source: bytes | str | os.PathLike, what: str, error: type[UploadError]) -> bytes:
    """The bytes of an upload (``bytes`` or a path); refuse empty or over-size ones."""
    mb = MAX_UPLOAD_BYTES // 2**20
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        try:
            if os.path.getsize(source) > MAX_UPLOAD_BYTES:
                raise error(f"The {what} file {os.fspath(source)!r} is larger than the {mb} MB "
                            "upload limit; downscale or crop it.")
            with open(source, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise error(f"Could not read the {what} file {os.fspath(source)!r} "
                        f"({exc.strerror or exc}); check the path.") from exc
    else:
        raise TypeError(f"{what} source must be bytes or a path, got {type(source).__name__}; "
                        "for a Streamlit upload pass uploaded_file.getvalue()")
    if not data:
        raise error(f"The {what} upload is empty (0 bytes); upload the file again or pick another.")
    if len(data) > MAX_UPLOAD_BYTES:
        raise error(f"The {what} upload is {len(data) / 2**20:.1f} MB, larger than the {mb} MB "
                    "limit; downscale or crop it.")
    return data


def guarded(error: type[UploadError], what: str, fn: Callable, *args):
    """``fn(*args)``, with anything PIL/numpy/zipfile raise turned into ``error``."""
    try:
        return fn(*args)
    except (UploadError, MemoryError):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise error(f"The {what} declares more pixels than can be decoded safely ({exc}); the "
                    f"limit is {HARD_PIXEL_LIMIT:,} pixels: downscale it first.") from exc
    except Image.UnidentifiedImageError as exc:
        raise error(f"The {what} upload is not a recognised image (it starts with {args[0][:8]!r})"
                    f"; upload a {', '.join(IMAGE_FORMATS)} file.") from exc
    except Exception as exc:
        raise error(f"The {what} could not be decoded ({type(exc).__name__}: {exc}); the file is "
                    "probably truncated or corrupt: export it again.") from exc


def open_image(data: bytes, what: str, error: type[UploadError]) -> Image.Image:
    """Open (header only, no pixels decoded); refuse zero size or more than HARD_PIXEL_LIMIT."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])  # PIL calls a 0-pixel PNG "unidentified"
        if w == 0 or h == 0:
            raise error(f"The {what} is a PNG of zero size ({w} x {h} pixels); export it again.")
    img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    w, h = img.size
    if w == 0 or h == 0:
        raise error(f"The {what} has zero size ({w} x {h} pixels); export it again.")
    if w * h > HARD_PIXEL_LIMIT:
        raise error(f"The {what} is {w} x {h} = {w * h:,} pixels, above the limit of "
                    f"{HARD_PIXEL_LIMIT:,} pixels; downscale it before uploading.")
    return img


def fit_budget(w: int, h: int, budget: int) -> tuple[int, int]:
    """Largest ``(W', H')`` with the aspect ratio of ``(w, h)`` and ``W' * H' <= budget``."""
    if w * h <= budget:
        return w, h
    scale = math.sqrt(budget / (w * h))
    nw = max(1, int(w * scale))
    return nw, max(1, min(int(h * scale), budget // nw))


def _high_depth(arr: np.ndarray, mode: str) -> np.ndarray:
    """I;16 -> /65535; I -> /65535 if max <= 65535 else /max; F kept if in [0, 1] else /max."""
    arr = np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0, None)
    top = float(arr.max())
    if mode.startswith("I;16") or (mode == "I" and top <= 65535):
        return arr / 65535.0
    return arr / top if top > 1.0 else arr


def decode_image(data: bytes, budget: int) -> tuple[np.ndarray, tuple[int, int], list[str]]:
    """float32 ``(H, W, 3)`` in [0, 1] at most ``budget`` pixels, original ``(W, H)``, notes."""
    img = open_image(data, "image", ImageError)
    original = img.size
    notes = ["The image is animated; its first frame is used."] if getattr(
        img, "is_animated", False) else []
    target = fit_budget(*original, budget)
    if target != original:
        notes.append(f"The image is {original[0]} x {original[1]} ({math.prod(original) / 1e6:.1f}"
                     f" MP), above the {budget / 1e6:.1f} MP budget; it was downscaled to "
                     f"{target[0]} x {target[1]} (aspect ratio kept). Its mask must be resized "
                     "the same way (nearest neighbour).")
        if img.format == "JPEG":
            img.draft("RGB", target)  # decode at a reduced DCT scale, still >= target
    img.load()  # truncated or corrupt data fails here
    if img.mode.startswith("I") or img.mode == "F":
        grey = Image.fromarray(_high_depth(np.asarray(img), img.mode))
        if grey.size != target:
            grey = grey.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        array = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=2)
    else:
        if img.mode[-1] in "Aa" or "transparency" in img.info:  # composite on black
            rgba = img.convert("RGBA")
            img = Image.new("RGB", rgba.size)
            img.paste(rgba, mask=rgba.getchannel("A"))
        img = img.convert("RGB")
        if img.size != target:
            img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        array = np.asarray(img, dtype=np.float32) / 255.0
    return np.clip(array, 0.0, 1.0), original, notes


def _rgb(code: int) -> RGB:
    return (int(code) >> 16 & 255, int(code) >> 8 & 255, int(code) & 255)


def _colour_labels(rgb: np.ndarray, palette, ignore_index: int, unknown_as_ignore: bool):
    """Map ``(H, W, 3)`` uint8 through ``palette`` (inferred if None) -> (labels, palette) or None
    when the mask is grey and the palette does not explain it (then it is an index mask)."""
    codes = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    uniq, inverse, counts = np.unique(codes.ravel(), return_inverse=True, return_counts=True)
    blue = uniq & 255
    grey = bool(np.all(((uniq >> 16) == blue) & (((uniq >> 8) & 255) == blue)))
    if palette is None:
        if grey:
            return None
        if len(uniq) > MAX_INFERRED_COLOURS:
            raise MaskError(f"The colour mask has {len(uniq):,} distinct colours (more than "
                            f"{MAX_INFERRED_COLOURS}), so no palette can be inferred: it looks "
                            "like a photo, or a mask saved with anti-aliasing or JPEG. Choose the "
                            "dataset whose palette it uses, or upload an index mask (PNG, L or P).")
        palette, lut = tuple(map(_rgb, uniq)), np.arange(len(uniq))  # sorted by colour value
    else:
        index = {(r << 16) | (g << 8) | b: k for k, (r, g, b) in reversed(list(enumerate(palette)))}
        lut = np.array([index.get(int(c), -1) for c in uniq], dtype=np.int64)
        bad = np.flatnonzero(lut < 0)
        if bad.size and grey:
            return None
        if bad.size and not unknown_as_ignore:
            bad = bad[np.argsort(-counts[bad], kind="stable")]
            shown = ", ".join(f"{_rgb(uniq[i])} ({counts[i]:,} px)" for i in bad[:5])
            raise MaskError(f"The colour mask has {bad.size} colour(s) not in the palette, "
                            f"covering {int(counts[bad].sum()):,} pixels: {shown}"
                            f"{', ...' if bad.size > 5 else ''}. Choose the dataset whose palette "
                            "the mask uses, treat unknown colours as ignore, or upload an index "
                            "mask.")
        lut[bad] = ignore_index
    return lut[inverse].reshape(codes.shape), palette


def decode_mask(data: bytes, palette, ignore_index: int, unknown_as_ignore: bool):
    """int64 ``(H, W)`` labels, "index" or "color", and the palette used (None for index)."""
    img = open_image(data, "mask", MaskError)
    if img.format in ("JPEG", "MPO") or img.info.get("compression") in ("jpeg", "tiff_jpeg"):
        raise MaskError("The mask is JPEG-compressed; lossy compression invents new label values "
                        "along class borders. Save the mask as a lossless PNG and upload it again.")
    if img.format not in MASK_FORMATS:
        raise MaskError(f"The mask is a {img.format} file; masks must be lossless "
                        f"{', '.join(MASK_FORMATS)}. Save it as PNG and upload it again.")
    img.load()
    if img.mode in ("LA", "PA"):
        img = img.getchannel(0)
    if img.mode in ("1", "L", "P") or img.mode.startswith("I"):
        return np.asarray(img).astype(np.int64), "index", None  # mode P: indices are labels
    if img.mode not in ("RGB", "RGBA"):
        raise MaskError(f"The mask has image mode {img.mode}; upload a single-channel index mask "
                        "(mode L, P, I or I;16) or an RGB colour mask.")
    rgb = np.asarray(img.convert("RGB"))
    mapped = _colour_labels(rgb, palette, ignore_index, unknown_as_ignore)
    if mapped is None:
        return rgb[..., 0].astype(np.int64), "index", None
    return mapped[0], "color", mapped[1]


def _npy(data: bytes, where: str) -> np.ndarray:
    """Check a ``.npy`` header (version, dtype, declared size) before ``np.load`` reads it."""
    fp = io.BytesIO(data)
    version = np.lib.format.read_magic(fp)
    if version not in ((1, 0), (2, 0)):
        raise LogitsError(f"{where} uses .npy format version {version}; save a plain float array "
                          "with np.save.")
    read_header = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
    shape, _, dtype = read_header(fp)
    if dtype.hasobject or dtype.kind not in "fiu":
        what = "object (Python objects, which need pickle)" if dtype.hasobject else str(dtype)
        raise LogitsError(f"{where} holds an array of dtype {what}; logits must be real numbers. "
                          "Convert with array.astype(np.float32) and save it again.")
    need, have = math.prod(shape) * dtype.itemsize, len(data) - fp.tell()
    if need > have:
        raise LogitsError(f"{where} is truncated: its header declares shape {shape} "
                          f"({need:,} bytes) but only {have:,} bytes follow; upload it again.")
    return np.load(io.BytesIO(data), allow_pickle=False)


def read_array(data: bytes) -> np.ndarray:
    """The array in a ``.npy`` file, or the logits array of a ``.npz``; refuse pickles."""
    if data.startswith(b"\x93NUMPY"):
        return _npy(data, "The .npy file")
    if data.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            if not infos:
                names = [i.filename for i in zf.infolist()][:8]
                torch_file = any(n.endswith(".pkl") for n in names)
                raise LogitsError(f"The zip file holds no .npy arrays (found {names})"
                                  f"{'; it looks like a torch.save file' if torch_file else ''}. "
                                  "Save the logits with np.save or np.savez instead.")
            named = [n for n in LOGITS_NAMES if n in infos]
            if len(infos) > 1 and not named:
                raise LogitsError(f"The .npz file holds {len(infos)} arrays "
                                  f"({', '.join(sorted(infos))}) and none is named 'logits', "
                                  "'probs' or 'probabilities'; save one array, or name it: "
                                  "np.savez(f, logits=...).")
            name = named[0] if named else next(iter(infos))
            if infos[name].file_size > MAX_UPLOAD_BYTES:
                raise LogitsError(f"Array {name!r} of the .npz expands to "
                                  f"{infos[name].file_size / 2**20:.0f} MB, above the "
                                  f"{MAX_UPLOAD_BYTES // 2**20} MB limit; save smaller logits.")
            return _npy(zf.read(infos[name]), f"Array {name!r} of the .npz file")
    if data[:1] == b"\x80":
        raise LogitsError("The logits file is a Python pickle (e.g. from torch.save or "
                          "pickle.dump), not a .npy/.npz array. Pickles can run code when "
                          "loaded, so they are refused: save the logits with np.save(f, array).")
    raise LogitsError(f"The logits file is not a .npy or .npz file (it starts with {data[:8]!r}); "
                      "save the logits with np.save or np.savez.")


def choose_layout(shape: tuple[int, ...], num_classes: int | None,
                  size_hw: tuple[int, int] | None) -> str:
    """"CHW" or "HWC" for a 3-D shape: what fits the mask, else the one small, distinct axis."""
    parts = {"CHW": (shape[0], shape[1:]), "HWC": (shape[2], shape[:2])}
    fits = [k for k, (_, hw) in parts.items() if size_hw is None or hw == size_hw]
    if not fits:
        raise LogitsError(f"The logits have shape {shape} but the mask is H x W = {size_hw[0]} x "
                          f"{size_hw[1]}; expected ({num_classes or 'C'}, {size_hw[0]}, "
                          f"{size_hw[1]}). Export the logits at the mask's size.")
    if num_classes is not None and all(parts[k][0] != num_classes for k in fits):
        got, hw = parts[fits[0]]
        want = (num_classes, *hw) if fits[0] == "CHW" else (*hw, num_classes)
        raise LogitsError(f"The logits have shape {shape}, i.e. {got} classes, but the mask has "
                          f"{num_classes} classes; expected shape {want}. Pick the dataset or "
                          "class count the model was trained on.")
    fits = [k for k in fits if num_classes is None or parts[k][0] == num_classes]
    small = [k for k in fits if parts[k][0] <= 256 and parts[k][0] not in parts[k][1]]
    if len(fits) == 1 or len(small) == 1:
        return fits[0] if len(fits) == 1 else small[0]
    if num_classes is not None and size_hw is not None:
        return "CHW"  # a cube that fits both ways: torch's convention
    raise LogitsError(f"Cannot tell whether logits of shape {shape} are C x H x W or H x W x C; "
                      "save them as C x H x W (e.g. array.transpose(2, 0, 1)), or load the mask "
                      "first so its size and class count decide.")
