"""Cross-entropy and the conventions shared by every loss (shapes, reductions, ignore, errors)."""

import pytest
import torch
import torch.nn.functional as F

import segloss.losses.functional as SF
from conftest import random_batch

ALL_LOSSES = [SF.cross_entropy, SF.focal_loss, SF.dual_focal_loss, SF.recall_loss]


@pytest.mark.parametrize("spatial", [(), (7,), (5, 6), (2, 3, 4)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_torch(spatial, reduction, weighted):
    logits, target = random_batch(3, 5, spatial, ignore_frac=0.3, seed=len(spatial))
    weight = torch.tensor([0.5, 1.0, 2.0, 0.1, 3.0]) if weighted else None
    ours = SF.cross_entropy(logits, target, weight=weight, reduction=reduction)
    ref = F.cross_entropy(logits, target, weight=weight, ignore_index=255, reduction=reduction)
    torch.testing.assert_close(ours, ref)


def test_cross_entropy_gradient_matches_torch():
    logits, target = random_batch(2, 6, (4, 4), ignore_frac=0.25)
    weight = torch.rand(6) + 0.1
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    SF.cross_entropy(a, target, weight=weight).backward()
    F.cross_entropy(b, target, weight=weight, ignore_index=255).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_weighted_mean_divides_by_sum_of_target_weights():
    logits = torch.zeros(1, 2, 2)  # every pixel: CE = log 2
    target = torch.tensor([[0, 1]])
    weight = torch.tensor([1.0, 3.0])
    # (1 * log2 + 3 * log2) / (1 + 3) = log 2, not 4 log 2 / 2
    torch.testing.assert_close(SF.cross_entropy(logits, target, weight=weight), torch.tensor(0.6931472))


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_map_is_zero_at_ignored_pixels_and_mean_uses_valid_pixels(loss):
    logits, target = random_batch(2, 4, (6, 6), ignore_frac=0.4, seed=3)
    pixel_map = loss(logits, target, reduction="none")
    assert pixel_map.shape == target.shape
    assert torch.all(pixel_map[target == 255] == 0)
    valid = target != 255
    torch.testing.assert_close(loss(logits, target), pixel_map.sum() / valid.sum())
    torch.testing.assert_close(loss(logits, target, reduction="sum"), pixel_map.sum())


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_all_ignored_gives_zero_with_zero_gradient(loss):
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), 255)
    value = loss(logits, target)
    value.backward()
    assert value.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_ignored_pixels_get_no_gradient(loss):
    logits, target = random_batch(1, 3, (4, 4), ignore_frac=0.5, seed=5)
    logits.requires_grad_()
    loss(logits, target).backward()
    assert torch.all(logits.grad.permute(1, 0, 2, 3)[:, target == 255] == 0)


@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(loss, dtype):
    logits, target = random_batch(2, 4, (8, 8), scale=8.0, seed=7)
    half = logits.to(dtype).requires_grad_()
    value = loss(half, target)
    value.backward()
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(half.detach().float(), target))
    assert half.grad.dtype == dtype and torch.isfinite(half.grad.float()).all()


def test_custom_ignore_index():
    logits, target = random_batch(2, 3, (4, 4), seed=9)
    target[0, 0] = -1
    ours = SF.cross_entropy(logits, target, ignore_index=-1)
    torch.testing.assert_close(ours, F.cross_entropy(logits, target, ignore_index=-1))


@pytest.mark.parametrize("loss", ALL_LOSSES)
@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: (torch.randn(2, 3, 4, 4), torch.zeros(2, 5, 4, dtype=torch.long)), ValueError, "(2, 4, 4)"),
        (lambda: (torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 3)), ValueError, "outside [0, 3)"),
        (lambda: (torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), -2)), ValueError, "[-2]"),
        (lambda: (torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4)), TypeError, "torch.float32"),
        (lambda: (torch.zeros(2, 3, 4, 4, dtype=torch.long), torch.zeros(2, 4, 4, dtype=torch.long)), TypeError,
         "floating point"),
        (lambda: (torch.full((2, 3, 4, 4), float("nan")), torch.zeros(2, 4, 4, dtype=torch.long)), ValueError, "NaN"),
        (lambda: (torch.full((1, 3, 2), float("inf")), torch.zeros(1, 2, dtype=torch.long)), ValueError, "Inf"),
        (lambda: (torch.randn(2, 1, 4), torch.zeros(2, 4, dtype=torch.long)), ValueError, "at least 2 classes"),
        (lambda: (torch.randn(3), torch.zeros(3, dtype=torch.long)), ValueError, "(N, C, *spatial)"),
        (lambda: (torch.randn(2, 3).numpy(), torch.zeros(2, dtype=torch.long)), TypeError, "ndarray"),
    ],
)
def test_bad_input_raises_with_a_message_naming_the_problem(loss, make, error, words):
    logits, target = make()
    with pytest.raises(error) as info:
        loss(logits, target)
    assert words in str(info.value)


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_bad_reduction_and_weight_are_rejected(loss):
    logits, target = random_batch(1, 3, (2, 2))
    with pytest.raises(ValueError, match="reduction must be one of"):
        loss(logits, target, reduction="avg")
    with pytest.raises(ValueError, match=r"expected shape \(3,\), got \(4,\)"):
        loss(logits, target, weight=torch.ones(4))
    with pytest.raises(ValueError, match="finite, >= 0"):
        loss(logits, target, weight=[1.0, -1.0, 1.0])


def test_a_weight_tensor_is_checked_once_and_again_after_an_in_place_change():
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    weight = torch.tensor([1.0, 2.0, 0.5])
    first = SF.cross_entropy(logits, target, weight=weight)
    assert SF.cross_entropy(logits, target, weight=weight) == first  # validated once, reused
    weight[1] = float("nan")  # bumps the tensor's version: validated again
    with pytest.raises(ValueError, match="weight entries must be finite, >= 0"):
        SF.cross_entropy(logits, target, weight=weight)
