"""Save a trained :class:`~segloss.train.trainer.Trainer` as a small weights-only checkpoint.

The file holds only tensors and plain containers, so ``torch.load(path, weights_only=True)``
reads it (no pickled code is ever run)::

    {"model_state": {name: tensor},                 # TinyUNet.state_dict(), float32, CPU
     "meta": {"format": FORMAT, "dataset", "class_names", "palette", "num_classes",
              "in_channels", "width", "loss", "loss_params", "steps", "batch_size",
              "image_size", "lr", "seed", "torch_version", "command",
              "validation": {"miou", "mean_accuracy", "overall_accuracy", "iou", "recall",
                             "precision"}}}          # on the trainer's fixed validation batch

To use it::

    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = TinyUNet(blob["meta"]["in_channels"], blob["meta"]["num_classes"], blob["meta"]["width"])
    model.load_state_dict(blob["model_state"]); model.eval()
"""

from __future__ import annotations

import math
import io
import os
from pathlib import Path

import numpy as np
import torch

from segloss.train.run_files import probe_write
from segloss.train.trainer import Trainer

FORMAT = "segloss.tinyunet/1"


def _plain(value):
    """Tuples -> lists, numpy -> Python, NaN kept as float: what weights_only loading accepts."""
    if isinstance(value, str):
        return str(value)  # plain str: e.g. torch.__version__ is a TorchVersion, which weights_only refuses
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    return value


def checkpoint_dict(trainer: Trainer, command: str | None = None) -> dict:
    """The checkpoint of ``trainer``'s model, with its metadata and fresh validation metrics."""
    if not isinstance(trainer, Trainer):
        raise TypeError(f"trainer must be a segloss.train.trainer.Trainer, got {type(trainer).__name__}")
    view = trainer.snapshot().view  # the thread validates at its last step; reuse that if current
    metrics = view.metrics if view is not None and view.step == trainer.steps_done else trainer.evaluate()
    config = trainer.config
    state = {name: tensor.detach().to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype)
             .contiguous().clone() for name, tensor in trainer.model.state_dict().items()}
    meta = {
        "format": FORMAT, "dataset": config.dataset, "class_names": trainer.info.class_names,
        "palette": trainer.info.palette, "num_classes": trainer.num_classes, "in_channels": 3,
        "width": trainer.width, "loss": config.loss, "loss_params": config.loss_params,
        "steps": trainer.steps_done, "batch_size": config.batch_size, "image_size": config.image_size,
        "lr": config.lr, "seed": config.seed, "torch_version": torch.__version__,
        "command": command or "", "validation": {k: v for k, v in metrics.items() if k != "step"},
        "validation_images": len(trainer.val_images),
    }
    return {"model_state": state, "meta": _plain(meta)}


def checkpoint_bytes(trainer: Trainer, command: str | None = None) -> bytes:
    """:func:`checkpoint_dict` as the bytes of a ``.pt`` file (a download), weights only."""
    buffer = io.BytesIO()
    torch.save(checkpoint_dict(trainer, command), buffer)
    return buffer.getvalue()


def check_checkpoint_path(path: str | os.PathLike) -> Path:
    """The checkpoint file's path, checked before anything trains: a ``.pt``/``.pth`` name in a
    folder that exists (created if needed) and takes a file.

    Raises:
        ValueError: another suffix, or a folder that cannot be created or written (a bad argument).
    """
    path = Path(path)
    if path.suffix not in (".pt", ".pth"):
        raise ValueError(f"checkpoint path must end in .pt or .pth, got {path.name!r}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder: give the checkpoint file's name, e.g. {path / 'model.pt'}")
    try:
        probe_write(path.parent)
    except OSError as err:
        raise ValueError(f"cannot write {path} ({type(err).__name__}: {err.strerror or err}); "
                         "pick a folder you can write to") from err
    return path


def save_checkpoint(trainer: Trainer, path: str | os.PathLike, command: str | None = None) -> dict:
    """Write :func:`checkpoint_dict` to ``path`` (parent folders created); returns the meta dict.

    Raises:
        TypeError: ``trainer`` is not a Trainer. ValueError: see :func:`check_checkpoint_path`.
    """
    path = check_checkpoint_path(path)
    blob = checkpoint_dict(trainer, command)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind
    return blob["meta"]


def summary_line(meta: dict) -> str:
    """One line for a terminal: what was trained, and how well it does on validation."""
    v = meta["validation"]
    worst = min((x, n) for x, n in zip(v["iou"], meta["class_names"]) if not math.isnan(x))
    return (f"{meta['loss']} on {meta['dataset']}, {meta['steps']} steps: mIoU {v['miou']:.3f}, "
            f"mean accuracy {v['mean_accuracy']:.3f}, pixel accuracy {v['overall_accuracy']:.3f}; "
            f"lowest IoU {worst[0]:.3f} ({worst[1]})")
