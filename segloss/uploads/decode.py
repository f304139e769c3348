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
MAX_NPZ_ENTRIES = 64  # a .npz of one image's logits holds one array, or a few
ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
                5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                8: Image.Transpose.ROTATE_90}  # EXIF orientation -> the transpose a viewer applies (PIL's own table)
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


def describe_start(data: bytes, count: int = 8) -> str:
    """What a file's first bytes look like, for an error message: ``it starts with the text "hello th"``
    or ``its first bytes are 00 01 ff 9c`` (a user reads neither Python's ``b'...'`` nor escapes)."""
    head = bytes(data[:count])
    if not head:
        return "it is empty"
    if all(32 <= b < 127 for b in head):
        return f'it starts with the text "{head.decode("ascii")}"'
    return "its first bytes are " + " ".join(f"{b:02x}" for b in head)


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
        formats = MASK_FORMATS if what == "mask" else IMAGE_FORMATS  # masks refuse lossy formats
        raise error(f"The {what} upload is not a recognised image ({describe_start(args[0])})"
                    f"; upload a {', '.join(formats)} file.") from exc
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


def orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1-8) of an opened image; 1 when absent or unreadable."""
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception:  # a malformed EXIF block is no reason to refuse the pixels
        return 1
    return value if value in ORIENTATIONS else 1


def upright(img: Image.Image, tag: int) -> Image.Image:
    """``img`` turned as a photo viewer shows it for EXIF orientation ``tag``."""
    return img.transpose(ORIENTATIONS[tag]) if tag in ORIENTATIONS else img


def fit_budget(w: int, h: int, budget: int) -> tuple[int, int]:
    """Largest ``(W', H')`` with about the aspect ratio of ``(w, h)`` and ``W' * H' <= budget``
    (a side never goes below 1 pixel, so a 1 x 64,000,000 line becomes 1 x ``budget``)."""
    if w * h <= budget:
        return w, h
    scale = math.sqrt(budget / (w * h))
    nw = max(1, min(int(w * scale), budget))
    nh = max(1, min(int(h * scale), budget // nw))
    return min(nw, budget // nh), nh


def _high_depth(arr: np.ndarray, mode: str) -> np.ndarray:
    """I;16 -> /65535; I -> /65535 if max <= 65535 else /max; F kept if in [0, 1] else /max."""
    arr = np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0, None)
    top = float(arr.max())
    if mode.startswith("I;16") or (mode == "I" and top <= 65535):
        return arr / 65535.0
    return arr / top if top > 1.0 else arr


def decode_image(data: bytes, budget: int) -> tuple[np.ndarray, tuple[int, int], list[str]]:
    """float32 ``(H, W, 3)`` in [0, 1] at most ``budget`` pixels, original ``(W, H)``, notes.

    The EXIF orientation is applied (a phone photo comes out as it is shown), so ``(W, H)`` is
    the upright size. High-depth images (16/32-bit, float) are resized before they become
    floats, so a large one costs no more memory than its budget.
    """
    img = open_image(data, "image", ImageError)
    tag = orientation(img)
    stored = img.size
    original = stored[::-1] if tag in (5, 6, 7, 8) else stored
    notes = ["The image is animated; its first frame is used."] if getattr(
        img, "is_animated", False) else []
    if tag != 1:
        notes.append(f"The image carries EXIF orientation {tag}; it was turned upright as a photo viewer shows "
                     "it, so its mask must be upright too.")
    target = fit_budget(*stored, budget)
    if target != stored:
        shown = target[::-1] if tag in (5, 6, 7, 8) else target
        notes.append(f"The image is {original[0]} x {original[1]} ({math.prod(original) / 1e6:.1f}"
                     f" MP), above the {budget / 1e6:.1f} MP budget; it was downscaled to "
                     f"{shown[0]} x {shown[1]} (aspect ratio kept). Its mask is resized "
                     "the same way (nearest neighbour).")
        if img.format == "JPEG":
            img.draft("RGB", target)  # decode at a reduced DCT scale, still >= target
    img.load()  # truncated or corrupt data fails here
    if img.mode.startswith("I") or img.mode == "F":
        if img.size != target:  # (no reducing_gap: PIL's reduce() refuses I;16)
            img = img.resize(target, Image.Resampling.LANCZOS)
        grey = upright(Image.fromarray(_high_depth(np.asarray(img), img.mode)), tag)
        array = np.repeat(np.asarray(grey, dtype=np.float32)[..., None], 3, axis=2)
    else:
        if img.mode[-1] in "Aa" or "transparency" in img.info:  # composite on black
            rgba = img.convert("RGBA")
            img = Image.new("RGB", rgba.size)
            img.paste(rgba, mask=rgba.getchannel("A"))
        img = img.convert("RGB")
        if img.size != target:
            img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        array = np.asarray(upright(img, tag), dtype=np.float32) / 255.0
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


def decode_mask(data: bytes, palette, ignore_index: int, unknown_as_ignore: bool, budget: int):
    """int64 ``(H, W)`` labels, "index" or "color", the palette used (None for index), the upright
    ``(W, H)`` as uploaded, and notes. A mask above ``budget`` pixels is resized (nearest
    neighbour, labels kept) before its pixels become an array; EXIF orientation is applied."""
    img = open_image(data, "mask", MaskError)
    if img.format in ("JPEG", "MPO") or img.info.get("compression") in ("jpeg", "tiff_jpeg"):
        raise MaskError("The mask is JPEG-compressed; lossy compression invents new label values "
                        "along class borders. Save the mask as a lossless PNG and upload it again.")
    if img.format not in MASK_FORMATS:
        raise MaskError(f"The mask is a {img.format} file; masks must be lossless "
                        f"{', '.join(MASK_FORMATS)}. Save it as PNG and upload it again.")
    tag = orientation(img)
    stored = img.size
    original = stored[::-1] if tag in (5, 6, 7, 8) else stored
    notes = [] if tag == 1 else [f"The mask carries EXIF orientation {tag}; it was turned upright."]
    img.load()
    if img.mode in ("LA", "PA"):
        img = img.getchannel(0)
    target = fit_budget(*stored, budget)
    if target != stored:
        img = img.resize(target, Image.Resampling.NEAREST)
        shown = target[::-1] if tag in (5, 6, 7, 8) else target
        notes.append(f"The mask is {original[0]} x {original[1]} ({math.prod(original) / 1e6:.1f} MP), above the "
                     f"{budget / 1e6:.1f} MP budget; it was downscaled to {shown[0]} x {shown[1]} "
                     "(nearest neighbour: labels are kept, thin structures may thin out).")
    img = upright(img, tag)
    if img.mode in ("1", "L", "P") or img.mode.startswith("I"):
        return np.asarray(img).astype(np.int64), "index", None, original, notes  # mode P: indices are labels
    if img.mode not in ("RGB", "RGBA"):
        raise MaskError(f"The mask has image mode {img.mode}; upload a single-channel index mask "
                        "(mode L, P, I or I;16) or an RGB colour mask.")
    rgb = np.asarray(img.convert("RGB"))
    mapped = _colour_labels(rgb, palette, ignore_index, unknown_as_ignore)
    if mapped is None:
        return rgb[..., 0].astype(np.int64), "index", None, original, notes
    return mapped[0], "color", mapped[1], original, notes


def _npy(data: bytes, where: str) -> np.ndarray:
    """Check a ``.npy`` header (version, dtype, declared size) before ``np.load`` reads it."""
    fp = io.BytesIO(data)
    version = np.lib.format.read_magic(fp)
    if version not in ((1, 0), (2, 0)):  # numpy writes 1.0, 2.0 (and 3.0 for unicode field names only)
        raise LogitsError(f"{where} is not a readable .npy file: after the .npy signature its header is "
                          f"damaged (it names format version {version[0]}.{version[1]}). The file may be "
                          "corrupted or cut short; save the array again with np.save.")
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


def _zip_entries(data: bytes) -> int:
    """Entries declared by a zip's end-of-central-directory record (read before zipfile parses
    the directory, whose size it would otherwise trust); -1 if the record is not found."""
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        return -1
    entries = struct.unpack("<H", data[end + 10:end + 12])[0]
    if entries == 0xFFFF:  # zip64: the count is in the zip64 record, which the locator points to
        locator = data.rfind(b"PK\x06\x07", max(0, end - 20), end)
        if locator >= 0:
            offset = struct.unpack("<Q", data[locator + 8:locator + 16])[0]
            if data[offset:offset + 4] == b"PK\x06\x06":
                return int(struct.unpack("<Q", data[offset + 32:offset + 40])[0])
    return int(entries)


def _short_list(names, limit: int = 8) -> str:
    names = list(names)
    more = f" and {len(names) - limit:,} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, inflating at most ``limit + 1``: the declared size is never trusted."""
    with zf.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise LogitsError(f"Array {info.filename[:-4]!r} of the .npz inflates to more than {limit // 2**20} MB "
                          f"(it declares {info.file_size:,} bytes); save smaller logits.")
    return data


def read_array(data: bytes) -> np.ndarray:
    """The array in a ``.npy`` file, or the logits array of a ``.npz``; refuse pickles.

    A ``.npz`` is checked before it is inflated: at most MAX_NPZ_ENTRIES entries (counted from
    the zip's end record), and the chosen array inflated with a limit of MAX_UPLOAD_BYTES,
    whatever its header declares.
    """
    if data.startswith(b"\x93NUMPY"):
        return _npy(data, "The .npy file")
    if data.startswith(b"PK"):
        entries = _zip_entries(data)
        if entries > MAX_NPZ_ENTRIES:
            raise LogitsError(f"The .npz file holds {entries:,} entries; a logits file holds one array (or a "
                              f"few, at most {MAX_NPZ_ENTRIES}). Save the logits with np.savez(f, logits=array).")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = zf.infolist()
            infos = {i.filename[:-4]: i for i in members if i.filename.endswith(".npy")}
            if not infos:
                names = [i.filename for i in members]
                torch_file = any(n.endswith(".pkl") for n in names)
                raise LogitsError(f"The zip file holds no .npy arrays (found {_short_list(names)})"
                                  f"{'; it looks like a torch.save file' if torch_file else ''}. "
                                  "Save the logits with np.save or np.savez instead.")
            named = [n for n in LOGITS_NAMES if n in infos]
            if len(infos) > 1 and not named:
                raise LogitsError(f"The .npz file holds {len(infos)} arrays "
                                  f"({_short_list(sorted(infos))}) and none is named 'logits', "
                                  "'probs' or 'probabilities'; save one array, or name it: "
                                  "np.savez(f, logits=...).")
            name = named[0] if named else next(iter(infos))
            if infos[name].file_size > MAX_UPLOAD_BYTES:
                raise LogitsError(f"Array {name!r} of the .npz expands to "
                                  f"{infos[name].file_size / 2**20:.0f} MB, above the "
                                  f"{MAX_UPLOAD_BYTES // 2**20} MB limit; save smaller logits.")
            return _npy(_read_member(zf, infos[name], MAX_UPLOAD_BYTES), f"Array {name!r} of the .npz file")
    if data[:1] == b"\x80":
        raise LogitsError("The logits file is a Python pickle (e.g. from torch.save or "
                          "pickle.dump), not a .npy/.npz array. Pickles can run code when "
                          "loaded, so they are refused: save the logits with np.save(f, array).")
    raise LogitsError(f"The logits file is not a .npy or .npz file ({describe_start(data)}); "
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
