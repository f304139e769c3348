"""Focal loss against CE, its closed forms, a hand computation and gradcheck."""

import math

import pytest
import torch

import segloss.losses.functional as SF
from conftest import random_batch


def test_focal_equals_ce_at_gamma_zero_values_and_gradients():
    logits, target = random_batch(2, 5, (6, 6), ignore_frac=0.2)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    fl = SF.focal_loss(a, target, gamma=0.0, reduction="none")
    ce = SF.cross_entropy(b, target, reduction="none")
    assert torch.equal(fl, ce)
    fl.sum().backward()
    ce.sum().backward()
    assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_to_ce_ratio_is_one_minus_pt_to_gamma_times_alpha(gamma):
    logits, target = random_batch(2, 4, (5, 5), seed=1)
    alpha = torch.tensor([0.25, 0.5, 1.0, 2.0])
    fl = SF.focal_loss(logits.double(), target, gamma=gamma, alpha=alpha, reduction="none")
    ce = SF.cross_entropy(logits.double(), target, reduction="none")
    p_t = torch.softmax(logits.double(), 1).gather(1, target.unsqueeze(1)).squeeze(1)
    expected = (1 - p_t) ** gamma * alpha.double()[target]
    torch.testing.assert_close(fl / ce, expected)


def test_focal_hand_computed_two_class_pixel():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = (0.25, 0.75)
    target = torch.tensor([1])
    # -(1 - 0.75)^2 * log(0.75)
    expected = 0.0625 * -math.log(0.75)
    assert SF.focal_loss(logits, target, gamma=2.0).item() == pytest.approx(expected, rel=1e-6)
    assert SF.focal_loss(logits, target, gamma=2.0, alpha=0.25).item() == pytest.approx(0.25 * expected, rel=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_gradient_matches_closed_form(gamma):
    logits, target = random_batch(3, 4, (), seed=2)
    logits = logits.double().requires_grad_()
    alpha = torch.tensor([0.3, 1.0, 2.0, 0.7], dtype=torch.float64)
    SF.focal_loss(logits, target, gamma=gamma, alpha=alpha, reduction="sum").backward()
    p = torch.softmax(logits.detach(), 1)
    p_t = p.gather(1, target[:, None])
    a_t = alpha[target][:, None]
    factor = a_t * ((1 - p_t) ** gamma - gamma * p_t * (1 - p_t) ** (gamma - 1) * torch.log(p_t))
    expected = factor * (p - torch.nn.functional.one_hot(target, 4))
    torch.testing.assert_close(logits.grad, expected)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_gradcheck_float64(gamma):
    logits, target = random_batch(2, 3, (3, 2), ignore_frac=0.2, dtype=torch.float64, seed=4)
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: SF.focal_loss(z, target, gamma=gamma, alpha=[0.5, 1.0, 2.0]), (logits,))


def test_focal_learnable_gamma_and_alpha_get_the_closed_form_gradient():
    """``FL_i = -alpha (1 - p_t)^gamma log p_t``: ``dFL_i/dgamma = -alpha (1 - p_t)^gamma log(1 - p_t) log p_t``
    and ``dFL_i/dalpha = FL_i / alpha``; "mean" averages them over the valid pixels."""
    logits, target = random_batch(2, 3, (4,), ignore_frac=0.2, dtype=torch.float64, seed=6)
    gamma = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor(0.25, dtype=torch.float64, requires_grad=True)
    SF.focal_loss(logits, target, gamma=gamma, alpha=alpha).backward()
    valid = target != 255
    p_t = logits.softmax(dim=1).gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)[valid]
    d_gamma = -0.25 * (1 - p_t) ** 1.5 * torch.log1p(-p_t) * torch.log(p_t)
    d_alpha = -(1 - p_t) ** 1.5 * torch.log(p_t)
    torch.testing.assert_close(gamma.grad, d_gamma.mean(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(alpha.grad, d_alpha.mean(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.25, 0.5, 2.0])
def test_focal_saturated_logits_stay_finite_where_naive_pow_gives_nan(gamma):
    logits = torch.tensor([[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0]], requires_grad=True)
    target = torch.tensor([0, 0])  # one perfectly right pixel, one confidently wrong
    SF.focal_loss(logits, target, gamma=gamma).backward()
    assert torch.isfinite(logits.grad).all()
    naive = logits.detach().clone().requires_grad_()
    p_t = torch.softmax(naive, 1)[:, 0]
    (-(1 - p_t) ** gamma * torch.log_softmax(naive, 1)[:, 0]).mean().backward()
    if gamma < 1:
        assert torch.isnan(naive.grad).any()  # the trap our formulation avoids


def test_focal_rejects_bad_parameters():
    logits, target = random_batch(1, 3, (2,))
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        SF.focal_loss(logits, target, gamma=-1.0)
    with pytest.raises(ValueError, match="gamma must be finite"):
        SF.focal_loss(logits, target, gamma=float("nan"))
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        SF.focal_loss(logits, target, alpha=-0.5)
    with pytest.raises(ValueError, match=r"alpha must have one entry per class: expected shape \(3,\)"):
        SF.focal_loss(logits, target, alpha=[0.1, 0.2])
    with pytest.raises(TypeError, match="gamma must be a real number"):
        SF.focal_loss(logits, target, gamma="2")
