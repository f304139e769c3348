"""Asymmetric Unified Focal loss: with two classes it is the authors' loss (a line-by-line
transcription of their Keras code, github mlyg/unified-focal-loss), multi-class it suppresses the
background only, and it is finite at the edges."""

import pytest
import torch

import segloss
from segloss.losses.unified_focal import unified_focal_loss
from conftest import random_batch


def authors_binary(logits, target, weight=0.5, delta=0.6, gamma=0.5):
    """asym_unified_focal_loss of the authors' code, channels last, clipped at K.epsilon() = 1e-7."""
    eps = 1e-7
    y_pred = logits.softmax(1).movedim(1, -1).clamp(eps, 1 - eps)  # (N, H, W, 2)
    y_true = torch.nn.functional.one_hot(target, 2).to(y_pred.dtype)
    # asymmetric focal loss
    cross_entropy = -y_true * torch.log(y_pred)
    back_ce = (1 - delta) * torch.pow(1 - y_pred[..., 0], gamma) * cross_entropy[..., 0]
    fore_ce = delta * cross_entropy[..., 1]
    focal = torch.stack([back_ce, fore_ce], -1).sum(-1).mean()
    # asymmetric focal Tversky loss, per image (axis = spatial)
    tp = (y_true * y_pred).sum((1, 2))
    fn = (y_true * (1 - y_pred)).sum((1, 2))
    fp = ((1 - y_true) * y_pred).sum((1, 2))
    dice_class = (tp + eps) / (tp + delta * fn + (1 - delta) * fp + eps)
    back_dice = 1 - dice_class[:, 0]
    fore_dice = (1 - dice_class[:, 1]) * torch.pow(1 - dice_class[:, 1], -gamma)
    tversky = torch.stack([back_dice, fore_dice], -1).mean()
    return weight * tversky + (1 - weight) * focal


@pytest.mark.parametrize("weight, delta, gamma", [(0.5, 0.6, 0.5), (0.2, 0.7, 0.3), (0.8, 0.5, 0.9)])
def test_binary_case_is_the_authors_loss(weight, delta, gamma):
    logits, target = random_batch(3, 2, (8, 8), scale=1.5, dtype=torch.float64, seed=61)
    target[:, :2] = 0
    target[:, -2:] = 1  # both classes in every image, as the authors' mean over both assumes
    ours = unified_focal_loss(logits, target, tversky_weight=weight, delta=delta, gamma=gamma, smooth=1e-7)
    theirs = authors_binary(logits, target, weight, delta, gamma)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-8)


def test_multi_class_suppresses_only_the_background_and_stays_finite():
    logits, target = random_batch(2, 4, (6, 6), scale=2.0, ignore_frac=0.1, dtype=torch.float64, seed=62)
    z = logits.clone().requires_grad_()
    value = segloss.create_loss("unified_focal")(z, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(z.grad).all()
    # the focal part: a background pixel is focused (gamma), a rare-class pixel is plain CE times delta
    af_only = unified_focal_loss(logits, target, tversky_weight=0.0, gamma=0.5, per_image=False)
    valid = target != 255
    log_p = logits.log_softmax(1).gather(1, torch.where(valid, target, 0).unsqueeze(1)).squeeze(1)
    p_t = log_p.exp()
    per_pixel = torch.where(target == 0, 0.4 * (1 - p_t) ** 0.5 * -log_p, 0.6 * -log_p)
    expected = torch.where(valid, per_pixel, 0.0).sum() / valid.sum()
    torch.testing.assert_close(af_only, expected, rtol=1e-10, atol=1e-12)
    saturated = torch.nn.functional.one_hot(torch.where(valid, target, 0), 4).movedim(-1, 1).double() * 80
    z = saturated.requires_grad_()
    unified_focal_loss(z, target).backward()
    assert torch.isfinite(z.grad).all()  # (1 - TI)^(1 - gamma) at a perfect class: no NaN


def test_unified_focal_refuses_class_weights_and_a_bad_background():
    logits, target = random_batch(1, 3, (4, 4), seed=63)
    with pytest.raises(ValueError, match="takes no class weights"):
        segloss.create_loss("unified_focal", weight=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"background must be a class index in \[0, 3\)"):
        unified_focal_loss(logits, target, background=5)


@pytest.mark.parametrize("gamma, delta", [(0.5, 0.6), (0.0, 0.3), (1.0, 1.0)])
def test_the_one_pass_focal_term_equals_the_two_pass_form(monkeypatch, gamma, delta):
    """CPU: one fused pass with per-class exponents and scales; CUDA and the compiled kernels keep a focal
    and a CE pass. Same values and gradients."""
    from segloss.losses import unified_focal

    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.2, dtype=torch.float64, seed=57)
    results = []
    for two_pass in (False, True):
        monkeypatch.setattr(unified_focal, "compiled_kernels_enabled", lambda: two_pass)
        z = logits.clone().requires_grad_()
        value = unified_focal.unified_focal_loss(z, target, gamma=gamma, delta=delta, background=1)
        value.backward()
        results.append((value.detach(), z.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-10, atol=1e-12)
