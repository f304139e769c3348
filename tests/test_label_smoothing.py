"""Label-smoothing cross-entropy equals torch's F.cross_entropy(label_smoothing=...) for every
combination of ignore_index, class weights and reduction (torch itself once had bugs exactly
there: pytorch#73205, #69339, #72056), in value and gradient, on the fused path."""

import itertools

import pytest
import torch
import torch.nn.functional as F

import segloss
from segloss import functional as SF
from segloss.kernels import cpu, smoothing
from segloss.losses import functional
from conftest import random_batch

WEIGHT = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)


@pytest.mark.parametrize("eps, weighted, ignored, reduction", list(itertools.product(
    (0.1, 0.5, 1.0), (False, True), (False, True), ("mean", "sum", "none"))))
def test_label_smoothing_equals_torch_in_value_and_gradient(eps, weighted, ignored, reduction):
    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.25 if ignored else 0.0,
                                  dtype=torch.float64, seed=51)
    weight = WEIGHT if weighted else None
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    value = SF.cross_entropy(ours, target, weight=weight, reduction=reduction, label_smoothing=eps)
    expected = F.cross_entropy(theirs, target, weight=weight, ignore_index=255, reduction=reduction,
                               label_smoothing=eps)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(value.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (value * upstream).sum().backward()
    (expected * upstream).sum().backward()
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-10, atol=1e-12)


def test_label_smoothing_runs_on_the_fused_path_with_a_weight_gradient_when_asked(monkeypatch):
    calls, fused = [], []
    original, original_fused = smoothing.SmoothingTerm.apply, cpu.FocalFamily.apply
    monkeypatch.setattr(smoothing.SmoothingTerm, "apply", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(cpu.FocalFamily, "apply", lambda *a: fused.append(a[-1]) or original_fused(*a))
    logits, target = random_batch(2, 4, (5, 6), dtype=torch.float64, seed=52)
    SF.cross_entropy(logits, target, label_smoothing=0.1)
    segloss.create_loss("focal", label_smoothing=0.3)(logits, target)
    assert not calls and [f[0] for f in fused] == [0.1, 0.3]  # folded into the CE/focal passes: one gradient buffer
    weight = WEIGHT.clone().requires_grad_()
    SF.cross_entropy(logits, target, weight=weight, label_smoothing=0.2).backward()
    reference = WEIGHT.clone().requires_grad_()  # torch refuses a weight gradient: the formula by hand
    log_p = logits.log_softmax(1)
    true = -log_p.gather(1, target.unsqueeze(1)).squeeze(1) * reference[target]
    uniform = -(log_p * reference.reshape(1, -1, 1, 1)).sum(1) / 4
    ((0.8 * true + 0.2 * uniform).sum() / reference[target].sum()).backward()
    torch.testing.assert_close(weight.grad, reference.grad, rtol=1e-10, atol=1e-12)


def test_smoothed_focal_is_the_mix_of_focal_and_the_smoothing_term_and_registry_entries_work():
    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.2, dtype=torch.float64, seed=53)
    eps, c = 0.2, 4
    valid = target != 255
    focal_map = SF.focal_loss(logits, target, gamma=2.0, reduction="none")
    uniform = -logits.log_softmax(1).sum(1) / c
    expected = (((1 - eps) * focal_map + eps * torch.where(valid, uniform, 0.0)).sum() / valid.sum())
    got = segloss.create_loss("focal", gamma=2.0, label_smoothing=eps)(logits, target)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    smoothed = segloss.create_loss("label_smoothing_ce", label_smoothing=0.1)(logits, target)
    torch.testing.assert_close(smoothed, F.cross_entropy(logits, target, ignore_index=255, label_smoothing=0.1))
    all_ignored = torch.full_like(target, 255)
    assert SF.cross_entropy(logits, all_ignored, label_smoothing=0.1).item() == 0.0  # not NaN
    with pytest.raises(ValueError, match="label_smoothing must be <= 1"):
        SF.cross_entropy(logits, target, label_smoothing=1.5)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_the_separate_smoothing_term_of_the_cuda_and_compiled_paths_equals_torch(monkeypatch, gamma):
    """CUDA and the compiled kernels add the blockwise smoothing term to the unsmoothed loss."""
    calls = []
    original = smoothing.SmoothingTerm.apply
    monkeypatch.setattr(smoothing.SmoothingTerm, "apply", lambda *a: calls.append(1) or original(*a))
    monkeypatch.setattr(functional, "_folds_smoothing", lambda *a: False)
    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.25, dtype=torch.float64, seed=54)
    ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    folded = logits.clone().requires_grad_()
    value = SF.focal_loss(ours, target, gamma=gamma, weight=WEIGHT, label_smoothing=0.3)
    assert calls
    monkeypatch.undo()
    expected = SF.focal_loss(folded, target, gamma=gamma, weight=WEIGHT, label_smoothing=0.3)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    value.backward()
    expected.backward()
    torch.testing.assert_close(ours.grad, folded.grad, rtol=1e-10, atol=1e-12)
    if gamma == 0:
        F.cross_entropy(theirs, target, weight=WEIGHT, ignore_index=255, label_smoothing=0.3).backward()
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-10, atol=1e-12)


def test_smoothed_focal_keeps_its_smoothing_when_a_parameter_wants_a_gradient():
    """gamma or weight requiring grad takes the autograd path, which must not drop the smoothing."""
    logits, target = random_batch(2, 3, (4, 4), scale=2.0, ignore_frac=0.2, dtype=torch.float64, seed=55)
    gamma = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    value = SF.focal_loss(logits, target, gamma=gamma, label_smoothing=0.4)
    plain = SF.focal_loss(logits, target, gamma=1.5, label_smoothing=0.4)
    torch.testing.assert_close(value, plain, rtol=1e-12, atol=1e-12)
    assert value != SF.focal_loss(logits, target, gamma=1.5)
    value.backward()
    assert gamma.grad is not None and torch.isfinite(gamma.grad)


@pytest.mark.parametrize("offset", [1e3, 1e5])
def test_smoothing_keeps_float32_precision_when_every_logit_shares_a_large_offset(offset):
    """S is taken relative to each pixel's max logit: W lse - sum w z would cancel offset against offset."""
    logits, target = random_batch(2, 5, (4, 6), scale=3.0, ignore_frac=0.1, seed=56)
    shifted = logits + offset  # float32: the inputs themselves are rounded; the reference takes the same ones
    value = SF.cross_entropy(shifted, target, label_smoothing=0.2, reduction="none")
    expected = F.cross_entropy(shifted.double(), target, ignore_index=255, label_smoothing=0.2, reduction="none")
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("route", ["fused", "separate", "kernel"])
def test_a_minus_inf_logit_is_refused_with_smoothing_and_harmless_at_an_ignored_pixel(monkeypatch, route):
    """A -inf logit masks a class: plain CE takes it (its pixel's loss stays finite, as torch's does), but
    smoothing puts eps / C of the target on every class, so the loss is infinite (torch: inf, or NaN
    with a zero weight there). That is refused as NaN logits are, on every route: the fused CPU
    blocks, the separate term (compiled kernels, CUDA's fallback) and the Triton kernel (interpreter).
    At an ignored pixel it changes nothing (it gave NaN: inf x 0)."""
    if route == "separate":
        monkeypatch.setattr(functional, "_folds_smoothing", lambda *a: False)
    elif route == "kernel":
        from segloss.kernels import cuda
        monkeypatch.setattr(cuda, "_CPU_FOR_TESTS", True)  # the interpreter's CPU tensors (put back after)
    logits, target = random_batch(2, 3, (4, 5), seed=55)
    masked = logits.clone()
    masked[0, 2, 1, 1] = float("-inf")
    target[0, 1, 1] = 0
    assert torch.isfinite(SF.cross_entropy(masked, target))  # no smoothing: a class masked out is fine
    for weight in (None, torch.tensor([1.0, 1.0, 0.0])):
        with pytest.raises(ValueError, match="logits contain 0 NaN and 1 Inf values"):
            SF.cross_entropy(masked, target, weight=weight, label_smoothing=0.1)
    with pytest.raises(ValueError, match="logits contain 0 NaN and 1 Inf values"):
        SF.focal_loss(masked, target, label_smoothing=0.1)
    ignored = target.clone()
    ignored[0, 1, 1] = 255
    masked[0, :, 1, 1] = torch.tensor([float("-inf"), 0.0, float("-inf")])  # its class 0 masked too
    for loss in (lambda z: SF.cross_entropy(z, ignored, label_smoothing=0.1),
                 lambda z: SF.focal_loss(z, ignored, label_smoothing=0.1)):
        z, clean = masked.clone().requires_grad_(), logits.clone()
        clean[0, :, 1, 1] = 0.0
        clean.requires_grad_()
        value = loss(z)
        value.backward()
        expected = loss(clean)
        expected.backward()
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(z.grad, clean.grad)
