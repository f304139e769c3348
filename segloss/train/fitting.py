"""Fit the tiny U-Net to one image and its mask for a few seconds.

For the upload page's third prediction source: a model that has seen only this image. It is
trained on the image shrunk so its longer side is ``size`` (the scale the tiny model works at),
with random flips and shifts as augmentation, under a registry loss, until a time or step
budget runs out; predictions are then made with :func:`segloss.train.checkpoints.predict_logits` at
that size.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from segloss.train.model import TinyUNet
from segloss.losses.registry import create_loss


def _shrink(image: np.ndarray, labels: np.ndarray, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image ``(1, 3, h, w)`` (bilinear) and labels ``(1, h, w)`` (nearest), longer side ``size``."""
    height, width = labels.shape
    scale = size / max(height, width)
    shape = (max(8, round(height * scale)), max(8, round(width * scale)))
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))[None, None].float()
    return (F.interpolate(x, size=shape, mode="bilinear", antialias=scale < 1, align_corners=False),
            F.interpolate(y, size=shape, mode="nearest")[:, 0].long())


def fit_to_image(image: np.ndarray, labels: np.ndarray, num_classes: int, *, loss: str = "ce",
                 seconds: float = 5.0, max_steps: int = 400, size: int = 64, seed: int = 0,
                 ignore_index: int = 255, progress: Callable[[float, str], None] | None = None):
    """Train a fresh :class:`TinyUNet` on one image for about ``seconds``.

    Args:
        image: float ``(H, W, 3)`` in [0, 1]. labels: int ``(H, W)`` in ``[0, C)`` or ``ignore_index``.
        num_classes: C. loss: registry name (its defaults). seconds, max_steps: the budget.
        size: longer side the image is trained at. seed: initial weights and augmentation.
        progress: called as ``progress(fraction_done, message)`` every few steps.

    Returns:
        ``(model in eval mode, {"steps", "seconds", "loss", "size"})``.

    Raises:
        ValueError: shapes that do not match, a non-positive budget, or a mask without valid pixels.
    """
    labels = np.asarray(labels)
    if image.ndim != 3 or image.shape[:2] != labels.shape:
        raise ValueError(f"image (H, W, 3) and labels (H, W) must match, got {image.shape} and {labels.shape}")
    if seconds <= 0 or max_steps < 1 or size < 16:
        raise ValueError(f"need seconds > 0, max_steps >= 1, size >= 16; got {seconds}, {max_steps}, {size}")
    if not bool((labels != ignore_index).any()):
        raise ValueError("the mask has no labelled pixel to learn from")
    x, y = _shrink(np.asarray(image, dtype=np.float32), labels, size)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyUNet(num_classes=num_classes)
    criterion = create_loss(loss, ignore_index=ignore_index,
                            **({"class_counts": np.bincount(labels[labels != ignore_index].ravel(),
                                                            minlength=num_classes)} if loss == "weighted_ce" else {}))
    optimizer = torch.optim.Adam([*model.parameters(), *criterion.parameters()], lr=3e-3)
    start, step, value = time.perf_counter(), 0, float("nan")
    model.train()
    while step < max_steps and time.perf_counter() - start < seconds:
        flips = torch.rand(4, 2, generator=generator) < 0.5
        shifts = torch.randint(-4, 5, (4, 2), generator=generator)
        batch_x, batch_y = [], []
        for (flip_h, flip_v), (dy, dx) in zip(flips.tolist(), shifts.tolist()):
            xi, yi = x[0], y[0]
            if flip_h:
                xi, yi = xi.flip(-1), yi.flip(-1)
            if flip_v:
                xi, yi = xi.flip(-2), yi.flip(-2)
            batch_x.append(xi.roll((dy, dx), dims=(-2, -1)))
            batch_y.append(yi.roll((dy, dx), dims=(-2, -1)))
        loss_value = criterion(model(torch.stack(batch_x)), torch.stack(batch_y))
        optimizer.zero_grad(set_to_none=True)
        loss_value.backward()
        optimizer.step()
        step, value = step + 1, float(loss_value.detach())
        if progress is not None and step % 5 == 0:
            elapsed = time.perf_counter() - start
            progress(min(1.0, max(step / max_steps, elapsed / seconds)), f"step {step}, loss {value:.3f}")
    return model.eval(), {"steps": step, "seconds": time.perf_counter() - start, "loss": value, "size": size}
