"""Tests for segloss.uploads.loaders: bad uploads give an UploadError naming the problem, good ones
round-trip exactly, and a pickled payload is never executed."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import segloss.uploads.decode as decode
from segloss.uploads import loaders
from segloss.uploads.loaders import (
    HARD_PIXEL_LIMIT,
    MAX_UPLOAD_BYTES,
    ImageError,
    LogitsError,
    MaskError,
    UploadError,
    check_same_size,
    load_image,
    load_logits,
    load_mask,
    resize_mask_nearest,
    resolve_out_of_range,
)

RNG = np.random.default_rng(0)
PALETTE = ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128))
LABELS = RNG.integers(0, 5, (6, 5))  # (H, W) = (6, 5), classes 0..4


def encode(array_or_img, fmt="PNG", **save) -> bytes:
    img = array_or_img if isinstance(array_or_img, Image.Image) else Image.fromarray(array_or_img)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


def npy(array, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **kw)
    return buf.getvalue()


def npz(compressed=False, **arrays) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` grey pixels but whose IDAT is tiny."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def colour_mask(labels, palette=PALETTE) -> np.ndarray:
    return np.asarray(palette, dtype=np.uint8)[labels]


class MarkerPayload:
    """Unpickling this would create ``path``: proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


RGB_PNG = encode(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
LOGITS_CHW = RNG.normal(size=(5, 6, 4)).astype(np.float32)  # C=5, H=6, W=4
NAN_LOGITS = LOGITS_CHW.copy()
NAN_LOGITS[0, 0, :2] = np.nan
NAN_LOGITS[1, 1, 1] = np.inf

BAD_UPLOADS = [  # (id, loader, data, kwargs, words the message must contain)
    ("image-empty", load_image, b"", {}, ["empty", "0 bytes"]),
    ("image-truncated", load_image, RGB_PNG[: len(RGB_PNG) // 2], {}, ["truncated or corrupt"]),
    ("image-text-as-png", load_image, b"hello, I am text\n", {}, ["not a recognised image",
                                                                  'starts with the text "hello, I"']),
    ("image-binary-junk", load_image, bytes([0, 1, 255, 156, 7, 8, 9, 10, 11]), {},
     ["not a recognised image", "first bytes are 00 01 ff 9c 07 08 09 0a"]),
    ("image-bomb-100k", load_image, png_header_only(100_000, 100_000), {}, ["pixels", "limit"]),
    ("image-over-hard-limit", load_image, png_header_only(9000, 9000), {},
     ["9000 x 9000", f"{HARD_PIXEL_LIMIT:,}"]),
    ("image-zero-width", load_image, png_header_only(0, 5), {}, ["zero size", "0 x 5"]),
    ("mask-empty", load_mask, b"", {}, ["empty"]),
    ("mask-jpeg", load_mask, encode(np.zeros((8, 8), np.uint8), "JPEG"), {}, ["JPEG", "PNG"]),
    ("mask-jpeg-in-tiff", load_mask, encode(np.zeros((8, 8, 3), np.uint8), "TIFF",
                                             compression="jpeg"), {}, ["JPEG-compressed"]),
    ("mask-webp", load_mask, encode(np.zeros((8, 8, 3), np.uint8), "WEBP", lossless=True), {},
     ["WEBP", "lossless"]),
    ("mask-unknown-colours", load_mask, encode(colour_mask(LABELS)), {"palette": PALETTE[:3]},
     ["not in the palette", "(128, 128, 0)", "pixels"]),
    ("mask-photo-colours", load_mask, RGB_PNG, {}, ["distinct colours", "index mask"]),
    ("mask-all-ignored", load_mask, encode(np.full((4, 4), 255, np.uint8)), {}, ["ignore_index"]),
    ("mask-negative", load_mask, encode(np.array([[-3, 0], [1, 2]], np.int32), "TIFF"),
     {}, ["negative", "-3"]),
    ("mask-depth-like", load_mask, encode(np.full((4, 4), 40000, np.uint16)), {},
     ["40000", "num_classes"]),
    ("logits-empty", load_logits, b"", {}, ["empty"]),
    ("logits-text", load_logits, b"0.1, 0.2, 0.3\n", {}, ["not a .npy or .npz"]),
    ("logits-object-dtype", load_logits, npy(np.array([{"a": 1}], dtype=object), allow_pickle=True),
     {}, ["object", "float32"]),
    ("logits-complex", load_logits, npy(np.ones((2, 3, 4), np.complex64)), {}, ["complex64"]),
    ("logits-strings", load_logits, npy(np.array(["a", "b"])), {}, ["<U1"]),
    ("logits-pickle-as-npy", load_logits, pickle.dumps({"logits": [1, 2]}), {},
     ["pickle", "np.save"]),
    ("logits-truncated", load_logits, npy(LOGITS_CHW)[:-40], {}, ["truncated", "(5, 6, 4)"]),
    ("logits-nan-inf", load_logits, npy(NAN_LOGITS), {}, ["2 NaN", "1 Inf"]),
    ("logits-wrong-classes", load_logits, npy(LOGITS_CHW), {"num_classes": 3, "size_hw": (6, 4)},
     ["(5, 6, 4)", "5 classes", "3 classes", "(3, 6, 4)"]),
    ("logits-wrong-size", load_logits, npy(LOGITS_CHW), {"num_classes": 5, "size_hw": (7, 4)},
     ["(5, 6, 4)", "7 x 4", "(5, 7, 4)"]),
    ("logits-4d", load_logits, npy(np.zeros((2, 5, 6, 4), np.float32)), {}, ["3 dimensions"]),
    ("logits-2d", load_logits, npy(np.zeros((6, 4), np.float32)), {}, ["(6, 4)", "3 dimensions"]),
    ("logits-ambiguous", load_logits, npy(LOGITS_CHW), {}, ["C x H x W or H x W x C"]),
    ("logits-npz-unnamed", load_logits, npz(a=LOGITS_CHW, b=LOGITS_CHW), {}, ["a, b", "'logits'"]),
    ("logits-zip-without-npy", load_logits,
     (lambda b: (zipfile.ZipFile(b, "w").writestr("archive/data.pkl", b"x"), b.getvalue())[1])(
         io.BytesIO()), {}, ["no .npy", "torch.save"]),
    ("logits-not-probabilities", load_logits, npy(np.full((2, 3, 4), 0.3, np.float32)),
     {"kind": "probabilities", "num_classes": 2}, ["differ from 1", "0.4"]),
]


@pytest.mark.parametrize("name, loader, data, kwargs, words", BAD_UPLOADS,
                         ids=[case[0] for case in BAD_UPLOADS])
def test_bad_upload_raises_upload_error_naming_the_problem(name, loader, data, kwargs, words):
    with pytest.raises(UploadError) as info:
        loader(data, **kwargs)
    assert isinstance(info.value, ValueError)
    expected = {load_image: ImageError, load_mask: MaskError, load_logits: LogitsError}[loader]
    assert isinstance(info.value, expected)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_hard_limit_holds_when_pil_bomb_check_is_disabled(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageError, match="100000 x 100000"):
        load_image(png_header_only(100_000, 100_000))


def test_uploads_above_50_mb_are_refused(tmp_path):
    with pytest.raises(ImageError, match="50.0 MB, larger than the 50 MB limit"):
        load_image(b"\0" * (MAX_UPLOAD_BYTES + 1))
    sparse = tmp_path / "huge.npy"
    with open(sparse, "wb") as fh:
        fh.truncate(MAX_UPLOAD_BYTES + 1)  # no data written: a sparse file
    with pytest.raises(LogitsError, match="larger than the 50 MB"):
        load_logits(sparse)


def test_missing_path_is_upload_error(tmp_path):
    with pytest.raises(ImageError, match="Could not read"):
        load_image(tmp_path / "missing.png")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_corrupted_bytes_never_leak_other_exceptions():
    sources = {load_image: [RGB_PNG, encode(np.zeros((16, 16, 3), np.uint8), "JPEG"),
                            encode(np.zeros((16, 16), np.uint8), "TIFF")],
               load_mask: [encode(LABELS.astype(np.uint8)), encode(colour_mask(LABELS))],
               load_logits: [npy(LOGITS_CHW), npz(logits=LOGITS_CHW, compressed=True)]}
    rng = np.random.default_rng(1)
    for loader, blobs in sources.items():
        for blob in blobs:
            for _ in range(15):
                data = np.frombuffer(blob, np.uint8).copy()
                data[rng.integers(0, len(data), size=4)] = rng.integers(0, 256, size=4)
                try:
                    loader(data[: rng.integers(8, len(data) + 1)].tobytes())
                except UploadError:
                    pass


def test_pickled_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = MarkerPayload(marker)
    attempts = [pickle.dumps(payload), pickle.dumps(payload, protocol=0),
                npy(np.array([payload], dtype=object), allow_pickle=True),
                npz(logits=np.array([payload], dtype=object)),
                npz(probs=np.array([payload], dtype=object), compressed=True)]
    for data in attempts:
        with pytest.raises(LogitsError):
            load_logits(data)
    (tmp_path / "logits.npy").write_bytes(pickle.dumps(payload))
    with pytest.raises(LogitsError, match="pickle"):
        load_logits(tmp_path / "logits.npy")
    assert not marker.exists()
    source = Path(decode.__file__).read_text() + Path(load_logits.__code__.co_filename).read_text()
    assert "allow_pickle=True" not in source and "import pickle" not in source
    assert "streamlit" not in source.replace("never streamlit", "")


# ---- images ------------------------------------------------------------------------------

PIXELS = RNG.integers(0, 256, (6, 5, 4), dtype=np.uint8)  # (H, W, RGBA)


FORMAT_MODES = [(fmt, mode) for fmt in ("PNG", "JPEG", "TIFF", "BMP", "WEBP") for mode in ("L", "RGB", "RGBA")
                if not (mode == "RGBA" and fmt in ("JPEG", "BMP"))]  # those two formats have no alpha


@pytest.mark.parametrize("fmt, mode", FORMAT_MODES)
def test_image_formats_and_modes_give_rgb_floats(fmt, mode):
    img = Image.fromarray(PIXELS).convert(mode)
    save = {"WEBP": {"lossless": True, "exact": True}, "JPEG": {"quality": 100, "subsampling": 0}}
    loaded = load_image(encode(img, fmt, **save.get(fmt, {})))
    assert loaded.array.shape == (6, 5, 3) and loaded.array.dtype == np.float32
    assert loaded.original_size == (5, 6) and not loaded.downscaled and loaded.notice is None
    assert 0.0 <= loaded.array.min() and loaded.array.max() <= 1.0
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float64) / 255
    expected = rgba[..., :3] * rgba[..., 3:]  # composited on black
    tolerance = 0.05 if fmt == "JPEG" else 1 / 255 + 1e-6
    np.testing.assert_allclose(loaded.array, expected, atol=tolerance)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_image_is_divided_by_65535(fmt):
    values = np.array([[0, 1000, 65535], [30000, 5, 40000]], dtype=np.uint16)
    loaded = load_image(encode(values, fmt))
    assert loaded.array.shape == (2, 3, 3)
    np.testing.assert_allclose(loaded.array[..., 1], values / 65535, rtol=1e-6)


def test_float_image_above_one_is_divided_by_its_max():
    values = np.array([[0.0, 2.0], [4.0, 8.0]], dtype=np.float32)
    np.testing.assert_allclose(load_image(encode(values, "TIFF")).array[..., 0], values / 8)


@pytest.mark.parametrize("mode", ["P", "CMYK", "LA", "1"])
def test_other_modes_become_rgb(mode):
    img = Image.fromarray(PIXELS[..., :3]).convert(mode)
    loaded = load_image(encode(img, "JPEG" if mode == "CMYK" else "PNG"))
    assert loaded.array.shape == (6, 5, 3) and 0 <= loaded.array.min() <= loaded.array.max() <= 1


def test_animated_image_uses_first_frame():
    frames = [Image.new("L", (4, 3), v) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(buf.getvalue())
    assert "first frame" in loaded.notice
    np.testing.assert_allclose(loaded.array, 10 / 255, atol=1e-6)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_above_pixel_budget_is_downscaled_with_notice(fmt):
    big = RNG.integers(0, 256, (20, 40, 3), dtype=np.uint8)  # W x H = 40 x 20 = 800 px
    loaded = load_image(encode(big, fmt), pixel_budget=200)
    assert loaded.array.shape == (10, 20, 3) and loaded.downscaled
    assert loaded.original_size == (40, 20)
    assert "downscaled to 20 x 10" in loaded.notice and "40 x 20" in loaded.notice


def test_image_from_path_and_bytearray(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(RGB_PNG)
    for source in (path, str(path), bytearray(RGB_PNG)):
        assert load_image(source).array.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="pixel_budget"):
        load_image(RGB_PNG, pixel_budget=0)


# ---- masks -------------------------------------------------------------------------------


def _labels_with_ignore() -> np.ndarray:
    labels = LABELS.copy()
    labels[0, 0] = 255
    return labels


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "BMP"])
def test_grey_index_mask_round_trips(fmt):
    labels = _labels_with_ignore()
    mask = load_mask(encode(labels.astype(np.uint8), fmt))
    np.testing.assert_array_equal(mask.labels, labels)
    assert mask.labels.dtype == np.int64 and mask.mode == "index"
    assert mask.num_classes == 5 and mask.out_of_range == 0 and mask.palette_used is None


def test_palette_mode_mask_uses_indices_not_colours():
    img = Image.new("P", (5, 6))
    img.putdata(LABELS.ravel().tolist())
    img.putpalette([200, 10, 10, 10, 200, 10, 5, 5, 5, 90, 90, 0, 1, 2, 3] + [0] * 3 * 251)
    mask = load_mask(encode(img))
    np.testing.assert_array_equal(mask.labels, LABELS)
    assert mask.mode == "index"


def test_16_bit_mask_round_trips():
    labels = RNG.integers(0, 300, (6, 5)).astype(np.uint16)
    mask = load_mask(encode(labels))
    np.testing.assert_array_equal(mask.labels, labels)
    assert mask.num_classes == int(labels.max()) + 1


@pytest.mark.parametrize("alpha", [False, True])
def test_colour_mask_with_palette_round_trips(alpha):
    rgb = colour_mask(LABELS)
    if alpha:
        rgb = np.concatenate([rgb, np.full((6, 5, 1), 128, np.uint8)], axis=2)
    mask = load_mask(encode(rgb), palette=PALETTE)
    np.testing.assert_array_equal(mask.labels, LABELS)
    assert mask.mode == "color" and mask.palette_used == PALETTE and mask.num_classes == 5


def test_colour_mask_infers_palette_sorted_by_colour():
    palette = ((250, 0, 0), (0, 0, 250), (0, 250, 0), (10, 10, 10), (3, 200, 9))
    rgb = colour_mask(LABELS, palette)
    mask = load_mask(encode(rgb))
    assert mask.mode == "color" and mask.palette_used == tuple(sorted(palette))
    np.testing.assert_array_equal(np.asarray(mask.palette_used, np.uint8)[mask.labels], rgb)
    assert mask.num_classes == 5


def test_grey_rgb_mask_is_an_index_mask_unless_the_palette_explains_it():
    grey = np.repeat(LABELS.astype(np.uint8)[..., None], 3, axis=2)
    np.testing.assert_array_equal(load_mask(encode(grey)).labels, LABELS)
    np.testing.assert_array_equal(load_mask(encode(grey), palette=PALETTE).labels, LABELS)
    binary = ((0, 0, 0), (255, 255, 255))
    mask = load_mask(encode(colour_mask(LABELS % 2, binary)), palette=binary)
    np.testing.assert_array_equal(mask.labels, LABELS % 2)
    assert mask.mode == "color"


def test_unknown_colours_can_become_ignore():
    mask = load_mask(encode(colour_mask(LABELS)), palette=PALETTE[:3], unknown_as_ignore=True)
    np.testing.assert_array_equal(mask.labels, np.where(LABELS < 3, LABELS, 255))


def test_mask_of_zero_and_255_gets_a_notice():
    mask = load_mask(encode(np.where(LABELS > 2, 255, 0).astype(np.uint8)))
    assert mask.num_classes == 1 and "255" in mask.notice


def test_out_of_range_labels_are_counted_then_resolved():
    labels = LABELS.copy()
    labels[0, :2], labels[1, 0] = 7, 9
    mask = load_mask(encode(labels.astype(np.uint8)), num_classes=5)
    assert mask.out_of_range == 3 and mask.num_classes == 5
    with pytest.raises(MaskError, match=r"outside \[0, 5\): 7 \(2 px\), 9 \(1 px\)"):
        resolve_out_of_range(mask.labels, 5, as_ignore=False)
    fixed = resolve_out_of_range(mask.labels, 5, as_ignore=True)
    np.testing.assert_array_equal(fixed, np.where(labels >= 5, 255, labels))
    assert resolve_out_of_range(fixed, 5, as_ignore=False) is fixed


def test_size_mismatch_names_both_sizes():
    with pytest.raises(MaskError, match="Image is 640 x 480 but mask is 320 x 240"):
        check_same_size(np.zeros((480, 640, 3), np.float32), np.zeros((240, 320), np.int64))
    check_same_size(np.zeros((6, 5, 3), np.float32), LABELS)


def test_resize_mask_nearest_matches_block_repeat():
    up = resize_mask_nearest(LABELS, (15, 12))
    np.testing.assert_array_equal(up, np.kron(LABELS, np.ones((2, 3), LABELS.dtype)))
    np.testing.assert_array_equal(resize_mask_nearest(up, (5, 6)), LABELS)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), nh=st.integers(1, 12), nw=st.integers(1, 12),
       seed=st.integers(0, 99))
def test_resize_mask_nearest_keeps_labels_exactly(h, w, nh, nw, seed):
    labels = np.random.default_rng(seed).choice([0, 3, 255, 2**40], size=(h, w))
    out = resize_mask_nearest(labels, (nw, nh))
    assert out.shape == (nh, nw) and out.dtype == labels.dtype
    assert set(np.unique(out)) <= set(np.unique(labels))


# ---- logits ------------------------------------------------------------------------------


def _check(loaded, layout, kind="logits", expected=LOGITS_CHW):
    assert loaded.layout == layout and loaded.kind == kind
    assert loaded.logits.dtype == torch.float32 and tuple(loaded.logits.shape) == expected.shape
    torch.testing.assert_close(loaded.logits, torch.from_numpy(expected))


def test_logits_chw_and_hwc_round_trip():
    hwc = LOGITS_CHW.transpose(1, 2, 0)
    _check(load_logits(npy(LOGITS_CHW), num_classes=5, size_hw=(6, 4)), "CHW")
    _check(load_logits(npy(LOGITS_CHW), num_classes=5), "CHW")
    _check(load_logits(npy(hwc), size_hw=(6, 4)), "HWC")
    _check(load_logits(npy(np.asfortranarray(hwc)), num_classes=5), "HWC")
    _check(load_logits(npy(LOGITS_CHW[None].astype(np.float64)), num_classes=5), "CHW")
    wide = RNG.normal(size=(3, 300, 400)).astype(np.float32)  # 3: the only small, distinct axis
    _check(load_logits(npy(wide)), "CHW", expected=wide)
    _check(load_logits(npy(wide.transpose(1, 2, 0))), "HWC", expected=wide)


def test_logits_from_npz_and_path(tmp_path):
    _check(load_logits(npz(arr_0=LOGITS_CHW), num_classes=5), "CHW")
    _check(load_logits(npz(image=LOGITS_CHW[:1], logits=LOGITS_CHW, compressed=True),
                       num_classes=5), "CHW")
    path = tmp_path / "logits.npy"
    path.write_bytes(npy(LOGITS_CHW))
    _check(load_logits(path, num_classes=5), "CHW")


def test_probabilities_become_log_probabilities():
    probs = torch.softmax(torch.from_numpy(LOGITS_CHW).double(), 0).float().numpy()
    loaded = load_logits(npz(probs=probs), num_classes=5)
    assert loaded.kind == "probabilities"
    torch.testing.assert_close(torch.softmax(loaded.logits, 0), torch.from_numpy(probs))
    forced = load_logits(npy(probs), num_classes=5, kind="logits")
    _check(forced, "CHW", "logits", expected=probs)
    with pytest.raises(ValueError, match="kind"):
        load_logits(npy(probs), kind="softmax")


def test_a_mask_that_is_no_image_names_the_lossless_formats_only():
    with pytest.raises(loaders.MaskError) as err:
        loaders.load_mask(b"this is a text file, not a mask")
    message = str(err.value)
    assert "PNG, TIFF, BMP" in message and "JPEG" not in message
    with pytest.raises(loaders.ImageError, match="JPEG"):
        loaders.load_image(b"this is a text file, not an image")


def test_a_damaged_npy_header_and_non_probabilities_get_plain_words():
    """A .npy whose bytes after the signature are garbage said "uses .npy format version (32, 103)";
    probabilities that are not said "kind='probabilities' but ...": both now say what is wrong."""
    damaged = b"\x93NUMPY" + b" g" + npy(LOGITS_CHW)[8:]
    with pytest.raises(loaders.LogitsError, match=r"not a readable \.npy file.*damaged.*np\.save") as err:
        load_logits(damaged, num_classes=5)
    assert "(32, 103)" not in str(err.value)
    with pytest.raises(loaders.LogitsError, match=r"^The array was given as probabilities, but it has values "
                                                  r"outside \[0, 1\]"):
        load_logits(npy(LOGITS_CHW * 10), num_classes=5, kind="probabilities")


def test_a_header_check_refuses_what_cannot_be_an_image_or_a_mask_without_decoding_it():
    good = io.BytesIO()
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(good, "PNG")
    loaders.check_header(good.getvalue(), "image")
    loaders.check_header(good.getvalue(), "mask")
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(jpeg, "JPEG")
    loaders.check_header(jpeg.getvalue(), "image")
    with pytest.raises(loaders.MaskError, match="JPEG-compressed file; masks must be lossless"):
        loaders.check_header(jpeg.getvalue(), "mask")
    with pytest.raises(loaders.ImageError, match="not a recognised image"):
        loaders.check_header(b"plain text", "image")
    with pytest.raises(loaders.MaskError, match="empty"):
        loaders.check_header(b"", "mask")
    with pytest.raises(ValueError, match="'image' or 'mask'"):
        loaders.check_header(good.getvalue(), "logits")
