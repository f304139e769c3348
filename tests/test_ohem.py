"""OHEM cross-entropy: kept pixels chosen as mmsegmentation's OHEMPixelSampler chooses them, CE on
them only, gradient zero elsewhere (checked by brute force in float64)."""

import math

import pytest
import torch
import torch.nn.functional as F

import segloss
from segloss import functional as SF
from conftest import random_batch


def brute_force(logits, target, threshold, min_kept, weight=None):
    """Sort the valid pixels' p_t, raise the threshold to the k-th hardest, average CE over the kept."""
    valid = target != 255
    p_t = logits.softmax(1).gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
    values = sorted(p_t[valid].tolist())
    k = math.ceil(min_kept * len(values))
    limit = max(threshold, values[k - 1]) if k else threshold
    kept = valid & ((p_t < limit) | ((p_t <= limit) & (k > 0) & (p_t == values[k - 1] if k else False)))
    ce = F.cross_entropy(logits, torch.where(valid, target, 0), weight=weight, reduction="none")
    ce = torch.where(kept, ce, 0.0)
    w = torch.ones(logits.shape[1], dtype=logits.dtype) if weight is None else weight
    return kept, ce.sum() / (w[torch.where(kept, target, 0)] * kept).sum()


@pytest.mark.parametrize("threshold, min_kept", [(0.7, 0.1), (0.3, 0.5), (1.0, 0.0), (0.05, 0.2)])
def test_ohem_keeps_the_hard_pixels_and_averages_their_cross_entropy(threshold, min_kept):
    logits, target = random_batch(2, 4, (7, 6), scale=3.0, ignore_frac=0.15, dtype=torch.float64, seed=41)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    for w in (None, weight):
        kept, expected = brute_force(logits, target, threshold, min_kept, w)
        assert torch.equal(SF.ohem_mask(logits, target, threshold=threshold, min_kept=min_kept), kept)
        z = logits.clone().requires_grad_()
        got = SF.ohem_cross_entropy(z, target, threshold=threshold, min_kept=min_kept, weight=w)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
        got.backward()
        dropped = ~kept
        assert torch.count_nonzero(z.grad.movedim(1, -1)[dropped]) == 0  # no gradient on easy pixels
        assert kept.sum() >= math.ceil(min_kept * int((target != 255).sum()))


def test_ohem_map_shows_the_kept_pixels_and_an_easy_batch_keeps_its_hardest_share():
    logits, target = random_batch(1, 3, (10, 10), seed=42)
    onehot = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).double()
    logits = onehot * (5 + 0.01 * torch.arange(100, dtype=torch.float64).reshape(1, 1, 10, 10))  # p_t > 0.98, distinct
    pixel = segloss.create_loss("ohem", reduction="none")(logits, target)
    assert (pixel > 0).sum() == 10  # none under the threshold: the hardest 10% of 100 pixels
    all_ignored = torch.full_like(target, 255)
    assert SF.ohem_cross_entropy(logits, all_ignored).item() == 0.0


def test_ohem_parameters_are_checked():
    logits, target = random_batch(1, 3, (4, 4), seed=43)
    with pytest.raises(ValueError, match="threshold must be > 0"):
        SF.ohem_cross_entropy(logits, target, threshold=0.0)
    with pytest.raises(ValueError, match=r"min_kept must lie in \[0.0, 1.0\]"):
        segloss.create_loss("ohem", min_kept=1.5)


@pytest.mark.parametrize("below", [True, False])
def test_float64_logits_are_cut_at_the_threshold_in_float64(below):
    """p_t was compared in float32: a float64 pixel 1e-9 below the threshold rounded up to it and was dropped."""
    from segloss.losses.ohem import ohem_mask

    p_t = 0.7 - 1e-9 if below else 0.7 + 1e-9
    logits = torch.tensor([[[math.log(p_t / (1 - p_t))], [0.0]]], dtype=torch.float64)
    assert ohem_mask(logits, torch.zeros(1, 1, dtype=torch.long), threshold=0.7, min_kept=0.0).item() is below
