"""segloss.uploads.simulate: the simulated prediction does what each knob says, by seed."""

import numpy as np
import pytest
import torch

from segloss.losses import functional as SF
from segloss.uploads.simulate import gaussian_blur, most_common_neighbour, simulate_logits, smooth_noise


def squares(size=48):
    """Class 0 background, class 1 a large square, class 2 a small square touching it (in class 1)."""
    labels = torch.zeros(size, size, dtype=torch.long)
    labels[8:40, 8:40] = 1
    labels[20:26, 34:40] = 2
    return labels


def mean_ce(logits, labels):
    return float(SF.cross_entropy(logits[None], labels[None]))


def test_interior_pixels_get_exactly_the_confidence_without_noise():
    labels = squares()
    probs = simulate_logits(labels, 3, confidence=0.8, boundary_width=2.0, noise=0.0).softmax(0)
    assert probs.shape == (3, 48, 48)
    np.testing.assert_allclose(float(probs[0, 0, 0]), 0.8, atol=1e-5)      # far from any edge
    np.testing.assert_allclose(float(probs[1, 14, 14]), 0.8, atol=1e-5)
    np.testing.assert_allclose(probs[:, 0, 0].tolist(), [0.8, 0.1, 0.1], atol=1e-5)  # rest split evenly


def test_sharp_edges_at_zero_width_everywhere_p_t_equals_confidence():
    labels = squares()
    probs = simulate_logits(labels, 3, confidence=0.7, boundary_width=0.0, noise=0.0).softmax(0)
    p_t = probs.gather(0, labels[None])[0]
    np.testing.assert_allclose(p_t.numpy(), 0.7, atol=1e-5)


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_confidence_knob_lowers_the_mean_ce_monotonically(noise):
    labels = squares()
    losses = [mean_ce(simulate_logits(labels, 3, confidence=c, noise=noise, seed=3), labels)
              for c in (0.4, 0.6, 0.8, 0.95)]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses


def test_wider_boundary_band_makes_more_pixels_uncertain():
    labels = squares()

    def uncertain(width):
        probs = simulate_logits(labels, 3, confidence=0.9, boundary_width=width, noise=0.0).softmax(0)
        return int((probs.gather(0, labels[None])[0] < 0.89).sum())

    counts = [uncertain(w) for w in (0.0, 2.0, 6.0, 12.0)]
    assert counts[0] == 0 and all(a < b for a, b in zip(counts, counts[1:])), counts


def test_missed_class_never_wins_the_argmax_and_goes_to_its_neighbour():
    labels = squares()
    logits = simulate_logits(labels, 3, confidence=0.95, noise=1.0, missed_class=2, seed=1)
    pred = logits.argmax(0)
    assert not bool((pred == 2).any())
    assert float((pred[labels == 2] == 1).float().mean()) > 0.9  # class 2 sits inside class 1
    chosen = simulate_logits(labels, 3, confidence=0.95, boundary_width=0.0, noise=0.0, missed_class=2,
                             missed_to=0).argmax(0)
    assert bool((chosen[labels == 2] == 0).all())


def test_partial_miss_moves_only_that_share_of_probability():
    labels = squares()
    base = simulate_logits(labels, 3, confidence=0.9, noise=0.0).softmax(0)
    half = simulate_logits(labels, 3, confidence=0.9, noise=0.0, missed_class=1, missed_to=0,
                           miss_strength=0.5).softmax(0)
    np.testing.assert_allclose(half[1].numpy(), base[1].numpy() / 2, atol=1e-5)
    np.testing.assert_allclose((half[0] - base[0]).numpy(), base[1].numpy() / 2, atol=1e-5)


def test_same_seed_same_logits_other_seed_other_noise():
    labels = squares()
    a = simulate_logits(labels, 3, noise=0.7, seed=5)
    np.testing.assert_array_equal(a.numpy(), simulate_logits(labels, 3, noise=0.7, seed=5).numpy())
    assert not torch.equal(a, simulate_logits(labels, 3, noise=0.7, seed=6))
    assert a.dtype == torch.float32 and bool(torch.isfinite(a).all())


def test_ignored_pixels_get_a_uniform_prediction():
    labels = squares()
    labels[:4] = 255
    probs = simulate_logits(labels, 3, confidence=0.9, boundary_width=0.0, noise=0.0).softmax(0)
    np.testing.assert_allclose(probs[:, 0, 0].numpy(), 1 / 3, atol=1e-5)


def test_blur_keeps_a_distribution_and_noise_has_unit_std():
    one_hot = torch.nn.functional.one_hot(squares(), 3).permute(2, 0, 1).float()
    np.testing.assert_allclose(gaussian_blur(one_hot, 2.0).sum(0).numpy(), 1.0, atol=1e-5)
    field = smooth_noise((2, 64, 64), 4.0, seed=0)
    assert field.shape == (2, 64, 64) and abs(float(field.std()) - 1) < 1e-4
    assert most_common_neighbour(squares(), 2, 3) == 1


@pytest.mark.parametrize("kwargs, error", [
    ({"confidence": 1.0}, ValueError), ({"confidence": 0.0}, ValueError), ({"boundary_width": -1}, ValueError),
    ({"noise": -0.1}, ValueError), ({"missed_class": 3}, ValueError), ({"missed_class": 1, "missed_to": 1}, ValueError),
    ({"missed_class": 1.5}, TypeError), ({"confidence": "high"}, TypeError), ({"seed": -1}, ValueError),
])
def test_bad_knobs_raise_clear_errors(kwargs, error):
    with pytest.raises(error):
        simulate_logits(squares(), 3, **kwargs)


def test_bad_labels_raise():
    with pytest.raises(TypeError, match="integer"):
        simulate_logits(torch.zeros(4, 4), 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        simulate_logits(torch.full((4, 4), 7), 3)
