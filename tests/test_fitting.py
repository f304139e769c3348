"""Fitting the tiny U-Net to one uploaded image."""

import numpy as np
import pytest

from segloss.train import checkpoints
from segloss.train import data
from segloss.train import metrics
from segloss.train.fitting import fit_to_image


def test_fitting_to_one_image_learns_it_within_its_budget():
    images, masks = data.make_batch("lesion", 1, 96, seed=3)
    image, labels = images[0].permute(1, 2, 0).numpy(), masks[0].numpy()
    calls = []
    model, info = fit_to_image(image, labels, 3, seconds=600.0, max_steps=60, size=64,  # step-bounded: no clock
                               progress=lambda f, m: calls.append(f))
    assert info["steps"] <= 60 and calls and 0 < calls[-1] <= 1
    logits = checkpoints.predict_logits(model, image, info["size"])
    assert logits.shape == (3, 96, 96)
    cm = metrics.confusion_matrix(logits.argmax(0), masks[0], 3)
    assert metrics.metrics_from_confusion(cm)["overall_accuracy"] > 0.85


def test_fitting_rejects_bad_input():
    image = np.zeros((8, 8, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="must match"):
        fit_to_image(image, np.zeros((4, 4), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="no labelled pixel"):
        fit_to_image(image, np.full((8, 8), 255), 2)
    with pytest.raises(ValueError, match="seconds > 0"):
        fit_to_image(image, np.zeros((8, 8), dtype=np.int64), 2, seconds=0)
