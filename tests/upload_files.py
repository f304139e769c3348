"""Good and bad upload files for the Upload page's AppTest and browser tests (all in memory)."""

from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
from PIL import Image

from segloss.train.data import make_batch

SIZE = 96
NUM_CLASSES = 9  # the street dataset


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def npy(array: np.ndarray, **kwargs) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


def street_pair(size: int = SIZE, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(S, S, 3)`` image and int64 ``(S, S)`` street labels."""
    images, masks = make_batch("street", 1, size, seed)
    return (images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), masks[0].numpy()


def good_files() -> dict[str, bytes]:
    """``image``, ``mask`` (index PNG) and ``logits`` ((C, H, W) float32 .npy) that fit together."""
    image, labels = street_pair()
    logits = np.random.default_rng(0).normal(0, 2, (NUM_CLASSES, SIZE, SIZE)).astype(np.float32)
    return {"image": png(image), "mask": png(labels.astype(np.uint8)), "logits": npy(logits)}


class Payload:
    """Unpickling this would raise at once: proof that nothing uploaded is unpickled."""

    def __reduce__(self):
        return (exec, ("raise SystemExit('an uploaded pickle was executed')",))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def bad_files() -> list[tuple[str, str, str, bytes, str]]:
    """``(case id, slot, file name, contents, words the error must contain)``; slot is the uploader."""
    good = good_files()
    image, labels = street_pair()
    jpeg = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8)).save(jpeg, "JPEG")
    out_of_range = labels.astype(np.uint8).copy()
    out_of_range[:10] = 12
    logits = np.frombuffer(good["logits"][128:], np.float32).reshape(NUM_CLASSES, SIZE, SIZE).copy()
    nan_logits = logits.copy()
    nan_logits[0, 5, 5] = np.nan
    return [
        ("empty-image", "image", "empty.png", b"", "empty"),
        ("truncated-image", "image", "cut.png", good["image"][: len(good["image"]) // 2], "truncated"),
        ("text-as-png-mask", "mask", "mask.png", b"just some text, not an image", "not a recognised image"),
        ("bomb-image", "image", "bomb.png", png_header_only(30_000, 30_000), "limit"),
        ("jpeg-mask", "mask", "mask.png", jpeg.getvalue(), "JPEG"),
        ("size-mismatch", "mask", "small.png", png(labels[:64, :80].astype(np.uint8)), "resize"),
        ("out-of-range-mask", "mask", "mask.png", png(out_of_range), "outside [0, 9)"),
        ("nan-logits", "logits", "nan.npy", npy(nan_logits), "NaN"),
        ("pickle-as-npy", "logits", "evil.npy", pickle.dumps(Payload()), "pickle"),
        ("object-npy", "logits", "obj.npy", npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), "object"),
        ("wrong-class-count", "logits", "c5.npy", npy(logits[:5]), "9 classes"),
        ("wrong-size-logits", "logits", "small.npy", npy(logits[:, :50]), "mask is H x W"),
        ("truncated-npy", "logits", "cut.npy", npy(logits)[:5000], "truncated"),
    ]
