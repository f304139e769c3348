"""Class-weight schemes against hand computations."""

import numpy as np
import pytest
import torch

from segloss.losses import weights


def test_pixel_counts_ignore_the_ignore_label():
    target = torch.tensor([[0, 0, 1, 255], [2, 2, 2, 255]])
    assert weights.pixel_counts(target, 4).tolist() == [2, 1, 3, 0]
    with pytest.raises(ValueError, match=r"got range \[0, 5\]"):
        weights.pixel_counts(torch.tensor([0, 5]), 3)


def test_inverse_frequency_hand_computed():
    w = weights.inverse_frequency([100, 50, 0, 25])
    # 1/n = .01, .02, 0, .04 -> sum .07, rescaled to sum 4
    torch.testing.assert_close(w, torch.tensor([0.01, 0.02, 0.0, 0.04]) * 4 / 0.07)


def test_median_frequency_hand_computed():
    w = weights.median_frequency([100, 50, 0, 25])  # median of present counts = 50
    torch.testing.assert_close(w, torch.tensor([0.5, 1.0, 0.0, 2.0]))


def test_median_frequency_of_an_even_count_takes_numpys_median():
    """The mean of the two middle counts (35 here), as numpy and SegNet's class balancing; torch's
    ``median`` would give the lower one, and with it every weight a fifth smaller."""
    counts = [10, 20, 0, 40, 60]
    present = np.array([10, 20, 40, 60], dtype=float)
    want = np.where(np.array(counts) > 0, np.median(present) / np.maximum(counts, 1), 0.0)
    torch.testing.assert_close(weights.median_frequency(counts), torch.tensor(want, dtype=torch.float32))


def test_effective_number_hand_computed_and_limits():
    beta = 0.9
    n = torch.tensor([1.0, 2.0, 10.0], dtype=torch.float64)
    raw = (1 - beta) / (1 - beta**n)
    torch.testing.assert_close(weights.effective_number(n, beta), (raw * 3 / raw.sum()).float())
    torch.testing.assert_close(weights.effective_number([5, 500, 50000], 0.0), torch.ones(3))
    assert weights.effective_number([100, 10], 0.999)[1] > weights.effective_number([100, 10], 0.999)[0]


@pytest.mark.parametrize("counts, message", [
    ([0, 0], "all zero"), ([1, -1], ">= 0"), ([[1, 2]], "1-D"), ([1, float("nan")], "finite"),
])
def test_bad_counts_are_rejected(counts, message):
    with pytest.raises(ValueError, match=message):
        weights.class_weights("inverse", counts)


def test_unknown_scheme_and_bad_beta_are_rejected():
    with pytest.raises(ValueError, match="unknown class-weight scheme 'sqrt'"):
        weights.class_weights("sqrt", [1, 2])
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\)"):
        weights.effective_number([1, 2], 1.0)
