"""Inputs for the conventions comparison: a sample scene with a simulated prediction, random
logits, or what the Upload page stored; plus a seeded share of ignored pixels.

Every function returns ``(logits, target)``: float32 ``(N, C, H, W)`` and int64 ``(N, H, W)``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from segloss.train import data
from segloss.uploads import simulate
from segloss.losses._checks import check_logits_target, holds_index

LOGIT_KEYS = ("logits",)
TARGET_KEYS = ("target", "labels", "mask")
MAX_UPLOAD_PIXELS = 256 * 256


def sample_input(dataset: str = "street", *, batch_size: int = 2, image_size: int = 64, seed: int = 0,
                 confidence: float = 0.7, noise: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes from :func:`segloss.train.data.make_batch` and logits from :func:`segloss.uploads.simulate.simulate_logits`.

    Image ``k`` of the batch is simulated with seed ``seed + k``; ``confidence`` and ``noise`` are
    the simulator's knobs (true-class probability away from edges; logit noise).

    Raises:
        ValueError, TypeError: as the two functions named above.
    """
    _, masks = data.make_batch(dataset, batch_size, image_size, seed)
    num_classes = data.DATASETS[dataset].num_classes
    logits = torch.stack([simulate.simulate_logits(mask, num_classes, confidence=confidence, noise=noise, seed=seed + k)
                          for k, mask in enumerate(masks)])
    return logits, masks


def random_input(num_classes: int = 5, *, batch_size: int = 2, size: int = 32, seed: int = 0,
                 scale: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``scale * randn`` and uniformly random labels, from a seeded generator.

    Raises:
        ValueError: ``num_classes < 2``, a non-positive size, or ``scale < 0``.
    """
    if num_classes < 2 or batch_size < 1 or size < 1 or scale < 0:
        raise ValueError(f"need num_classes >= 2, batch_size >= 1, size >= 1 and scale >= 0, got "
                         f"{num_classes}, {batch_size}, {size}, {scale}")
    generator = torch.Generator().manual_seed(int(seed))
    logits = scale * torch.randn(batch_size, num_classes, size, size, generator=generator)
    return logits, torch.randint(0, num_classes, (batch_size, size, size), generator=generator)


def with_ignored(target: torch.Tensor, share: float, *, seed: int = 0, ignore_index: int = 255) -> torch.Tensor:
    """A copy of ``target`` with a seeded random ``share`` of its pixels set to ``ignore_index``.

    Raises:
        ValueError: ``share`` outside ``[0, 1]``.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    generator = torch.Generator().manual_seed(int(seed) + 1)
    ignored = torch.rand(target.shape, generator=generator) < share
    return torch.where(ignored, torch.full_like(target, ignore_index), target)


def _field(source, names: tuple[str, ...]):
    """The first of ``names`` found as a key or attribute of ``source``, or of one of its values, else None."""
    def direct(obj):
        for name in names:
            value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)
            if value is not None:
                return value
        return None

    found = direct(source)
    if isinstance(source, Mapping):
        children = source.values()
    else:
        children = vars(source).values() if hasattr(source, "__dict__") else ()
    for child in children:
        if found is not None:
            break
        if isinstance(child, Mapping) or (hasattr(child, "__dict__") and not isinstance(child, torch.Tensor)):
            found = direct(child)
    return found


def input_from_upload(stored, *, ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, target)`` from what the Upload page stored in the session.

    Accepts a ``(logits, target)`` pair, or a mapping / object with ``logits`` and one of
    ``target``, ``labels`` or ``mask`` (directly or in a nested mapping/object such as a scene and a
    prediction). Logits ``(C, H, W)`` or ``(N, C, H, W)``; labels ``(H, W)`` or ``(N, H, W)``,
    tensors or numpy arrays. Images above :data:`MAX_UPLOAD_PIXELS` are subsampled with a
    regular stride (a convention comparison needs no full resolution).

    Raises:
        ValueError: nothing usable found, or shapes/labels that do not fit (the message says which).
        TypeError: logits that are not floating point, labels that are not integers.
    """
    if isinstance(stored, (tuple, list)) and len(stored) == 2:
        logits, target = stored
    else:
        logits, target = _field(stored, LOGIT_KEYS), _field(stored, TARGET_KEYS)
    if logits is None or target is None:
        raise ValueError("the stored upload holds no logits and labels (expected keys 'logits' and 'target', "
                         f"'labels' or 'mask'), got {type(stored).__name__}")
    logits, target = (x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x)) for x in (logits, target))
    if logits.dim() == 3:
        logits = logits.unsqueeze(0)
    if target.dim() == 2:
        target = target.unsqueeze(0)
    if logits.is_floating_point():
        logits = logits.detach().float().cpu()
    target = target.detach().cpu()
    if not target.is_floating_point():
        target = target.long()
    check_logits_target(logits, target, ignore_index)
    stride = max(1, int(np.ceil(np.sqrt(target[0].numel() / MAX_UPLOAD_PIXELS))))
    return logits[..., ::stride, ::stride].contiguous(), target[..., ::stride, ::stride].contiguous()


def input_summary(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> dict[str, int]:
    """``{"N", "C", "pixels", "valid", "ignored", "elements"}`` of an input (elements = N·C·H·W)."""
    valid = int((holds_index(target, ignore_index) != ignore_index).sum())
    return {"N": int(logits.shape[0]), "C": int(logits.shape[1]), "pixels": int(target.numel()), "valid": valid,
            "ignored": int(target.numel()) - valid, "elements": int(logits.numel())}
