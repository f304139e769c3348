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
    with pytest.raises(TypeError, match="beta must be a real number, got '0.9'"):
        weights.effective_number([1, 2], "0.9")


@pytest.mark.parametrize("num_classes, error", [(-1, ValueError), (0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_pixel_counts_refuse_a_bad_number_of_classes_in_a_clear_message(num_classes, error):
    """torch's own errors came through (a RuntimeError for -1, bincount's TypeError for 2.0), and
    count_pixels of an all-ignored batch with C = 0 returned empty counts."""
    with pytest.raises(error, match=f"num_classes must be an int >= 1, got {num_classes}"):
        weights.pixel_counts(torch.tensor([0]), num_classes)
    with pytest.raises(error, match="num_classes must be an int >= 1"):
        weights.count_pixels(torch.full((1, 2, 2), 255), num_classes)


def test_count_pixels_records_the_pixels_of_the_images_each_class_appears_in():
    masks = torch.tensor([[[0, 0], [1, 255]],    # image 0: 3 valid pixels, classes 0 and 1
                          [[0, 2], [2, 2]],      # image 1: 4 valid pixels, classes 0 and 2
                          [[2, 2], [2, 255]]])   # image 2: 3 valid pixels, class 2
    counts = weights.count_pixels(masks, 4)
    assert counts.pixels.tolist() == [3, 1, 6, 0]
    assert counts.image_pixels.tolist() == [3 + 4, 3, 4 + 3, 0]
    assert counts.pixels.tolist() == weights.pixel_counts(masks, 4).tolist()
    both = weights.count_pixels(masks[:1], 4) + weights.count_pixels(masks[1:].numpy(), 4)
    assert both.pixels.tolist() == counts.pixels.tolist() and both.image_pixels.tolist() == counts.image_pixels.tolist()
    with pytest.raises(ValueError, match=r"one mask per image; got shape \(2, 2\).*\[mask\]"):
        weights.count_pixels(masks[0], 4)
    with pytest.raises(ValueError, match="cannot add counts of 3 classes"):
        counts + weights.count_pixels(masks, 3)


def test_median_frequency_follows_eigen_and_fergus_with_image_pixels():
    """f_c = n_c / m_c, m_c the pixels of the images where c appears (Eigen & Fergus 2015, SegNet):
    class 1 appears in one small image only, so its frequency there is high and its weight lower
    than the global share would give."""
    masks = torch.zeros(4, 10, 10, dtype=torch.int64)
    masks[:, :5] = 2           # class 2: half of every image
    masks[0, 5:, :4] = 1       # class 1: 20 pixels, in image 0 only
    counts = weights.count_pixels(masks, 3)
    n, m = counts.pixels.double(), counts.image_pixels.double()
    assert n.tolist() == [180, 20, 200] and m.tolist() == [400, 100, 400]
    f = n / m                                                   # 0.45, 0.2, 0.5
    want = (np.median(f.numpy()) / f).float()                   # median 0.45
    torch.testing.assert_close(weights.median_frequency(counts), want)
    torch.testing.assert_close(weights.class_weights("median", counts), want)
    assert weights.median_frequency(counts)[1] == pytest.approx(0.45 / 0.2)
    assert weights.median_frequency(counts.pixels)[1] == pytest.approx(180 / 20)  # global shares: 4x that
    # the other schemes read the pixels only
    torch.testing.assert_close(weights.class_weights("inverse", counts), weights.inverse_frequency(counts.pixels))
    torch.testing.assert_close(weights.class_weights("effective", counts, 0.99),
                               weights.effective_number(counts.pixels, 0.99))


def test_median_frequency_refuses_image_pixels_below_the_pixels():
    bad = weights.PixelCounts(torch.tensor([5, 3]), torch.tensor([10, 2]))
    with pytest.raises(ValueError, match="image_pixels >= pixels"):
        weights.median_frequency(bad)


def test_create_loss_takes_pixel_counts_for_weighted_ce():
    import segloss

    masks = torch.zeros(2, 4, 4, dtype=torch.int64)
    masks[0, :2] = 1
    counts = weights.count_pixels(masks, 2)
    loss = segloss.create_loss("weighted_ce", scheme="median", class_counts=counts)
    torch.testing.assert_close(loss.weight, weights.median_frequency(counts))


def test_effective_number_for_pixel_counts_needs_beta_near_one_and_create_loss_takes_it():
    counts = [5e8, 1e8, 2e7, 3e6, 5e5]  # pixel counts of a real dataset
    torch.testing.assert_close(weights.effective_number(counts, 0.999), torch.ones(5))  # saturated: no rebalancing
    near = weights.effective_number(counts, 1 - 1e-8)
    inverse = weights.inverse_frequency(counts)
    assert float(near[-1] / near[0]) > 100 and float(inverse[-1] / inverse[0]) == pytest.approx(1000)
    import segloss

    loss = segloss.create_loss("weighted_ce", scheme="effective", beta=1 - 1e-8, class_counts=counts)
    torch.testing.assert_close(loss.weight, near)
    assert segloss.LOSSES["weighted_ce"].param("beta").slider_range == (0.9, 0.99999)


def test_count_pixels_takes_a_list_of_masks_of_different_sizes():
    small = torch.tensor([[0, 1], [1, 255]])
    large = np.array([[2, 2, 2], [0, 0, 2]], dtype=np.uint8)
    counts = weights.count_pixels([small, large], 3)
    assert counts.pixels.tolist() == [3, 2, 4] and counts.image_pixels.tolist() == [3 + 6, 3, 6]
    with pytest.raises(ValueError, match="at least one mask"):
        weights.count_pixels([], 3)


def test_pixel_counts_add_with_sum_and_refuse_an_empty_batch():
    batches = [torch.tensor([[[0, 1]], [[1, 1]]]), torch.tensor([[[2, 2]]])]
    total = sum(weights.count_pixels(b, 3) for b in batches)
    assert total.pixels.tolist() == [1, 3, 2] and total.image_pixels.tolist() == [2, 4, 2]
    with pytest.raises(ValueError, match="N >= 1"):
        weights.count_pixels(torch.zeros(0, 4, 4, dtype=torch.int64), 3)
