"""TinyUNet checkpoints: find them, load them safely, and predict one image's logits.

Checkpoints are read with ``torch.load(..., weights_only=True)``, which refuses anything but
tensors and plain containers, so no code in a checkpoint is ever run. Accepted layouts: a bare
``state_dict``, or a dict holding one under ``"state_dict"``, ``"model"`` or ``"model_state"``
next to metadata (``num_classes``, ``dataset``, ``width``, ``in_channels``, ...); whatever the
metadata omits is read off the weights' shapes. Imports torch only::

    model, meta = load_checkpoint(find_checkpoints()[0])
    logits = predict_logits(model, image)          # image (H, W, 3) -> logits (C, H, W)
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from segloss.train.model import TinyUNet

STATE_KEYS = ("state_dict", "model", "model_state", "model_state_dict")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be turned into a TinyUNet; the message says why."""


def find_checkpoints(folder: Path | str) -> list[Path]:
    """The ``*.pt`` / ``*.pth`` files in ``folder`` or below (sorted; ``[]`` if it is missing)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix in (".pt", ".pth") and p.is_file())


def load_checkpoint(path: Path | str) -> tuple[TinyUNet, dict]:
    """Load a TinyUNet checkpoint (weights only) in eval mode on the CPU.

    Returns:
        ``(model, meta)``; ``meta`` holds the file's non-tensor entries plus ``num_classes``,
        ``width``, ``in_channels`` and ``dataset`` (None when not recorded).

    Raises:
        CheckpointError: unreadable file, not weights-only, no TinyUNet state dict, or weights
            that do not fit a TinyUNet.
    """
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, OSError, ...
        raise CheckpointError(f"Could not read {Path(path).name} as a weights-only torch checkpoint "
                              f"({type(err).__name__}: {err})") from err
    if not isinstance(blob, dict):
        raise CheckpointError(f"{Path(path).name} holds a {type(blob).__name__}, not a state dict")
    state = next((blob[k] for k in STATE_KEYS if isinstance(blob.get(k), dict)), blob)
    meta = {k: v for k, v in blob.items() if not isinstance(v, (dict, torch.Tensor))}
    if isinstance(blob.get("meta"), dict):
        meta.update(blob["meta"])
    head, first = state.get("head.weight"), state.get("enc1.0.weight")
    if not isinstance(head, torch.Tensor) or not isinstance(first, torch.Tensor):
        raise CheckpointError(f"{Path(path).name} has no TinyUNet weights (head.weight, enc1.0.weight); "
                              f"found keys {sorted(state)[:6]}")
    if head.dim() != 4 or first.dim() != 4:  # convolutions' weights: (out, in, kh, kw)
        raise CheckpointError(f"{Path(path).name} does not hold TinyUNet weights: head.weight has shape "
                              f"{tuple(head.shape)} and enc1.0.weight {tuple(first.shape)}, convolutions' are 4-D")
    meta.setdefault("num_classes", int(head.shape[0]))
    meta.setdefault("width", int(head.shape[1]))
    meta.setdefault("in_channels", int(first.shape[1]))
    meta.setdefault("dataset", None)
    sizes = {k: meta[k] for k in ("in_channels", "num_classes", "width")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in sizes.values()):
        raise CheckpointError(f"{Path(path).name} records sizes that are not positive integers: {sizes}")
    try:
        model = TinyUNet(sizes["in_channels"], sizes["num_classes"], sizes["width"])
        model.load_state_dict(state)
    except (RuntimeError, TypeError, ValueError) as err:
        raise CheckpointError(f"The weights in {Path(path).name} do not fit a TinyUNet: {err}") from err
    if not all(bool(torch.isfinite(v).all()) for v in model.state_dict().values() if v.is_floating_point()):
        raise CheckpointError(f"{Path(path).name} holds NaN or infinite weights: a run that diverged; "
                              "train it again with a lower learning rate")
    return model.eval(), meta


@torch.no_grad()
def predict_logits(model: nn.Module, image: np.ndarray, input_size: int | None = None) -> torch.Tensor:
    """Logits ``(C, H, W)`` of ``model`` for one float ``(H, W, 3)`` image in [0, 1].

    The model is deep-copied and put in eval mode first, so a model another thread is training
    (BatchNorm in training mode, weights changing) is neither disturbed nor half-updated mid-pass.
    ``input_size``: the side the model was trained at (a checkpoint's ``image_size``); the image
    is resized so its longer side has that length (objects at the scale the model learned), and
    the logits are resized back to ``(H, W)`` bilinearly. None runs at the image's own size.
    """
    array = np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got shape {array.shape}")
    if input_size is not None and (not isinstance(input_size, int) or input_size < 8):
        raise ValueError(f"input_size must be an int >= 8, got {input_size!r}")
    frozen = copy.deepcopy(model).cpu().eval()
    x = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))[None]
    height, width = array.shape[:2]
    if input_size is None or max(height, width) == input_size:
        return frozen(x)[0].float().contiguous()
    scale = input_size / max(height, width)
    size = (max(8, round(height * scale)), max(8, round(width * scale)))
    small = F.interpolate(x, size=size, mode="bilinear", antialias=scale < 1, align_corners=False)
    logits = frozen(small)
    return F.interpolate(logits.float(), size=(height, width), mode="bilinear", align_corners=False)[0].contiguous()
