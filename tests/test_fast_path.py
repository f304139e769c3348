"""The fused losses (segloss.kernels.cpu behind segloss.functional) equal the reference autograd path."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import segloss.losses.functional as SF
from segloss.kernels import cpu
from segloss.losses import reference
from conftest import PIXELWISE_CASES, random_batch

CASES = PIXELWISE_CASES + [("recall_weighted_ce", {"recall_weights": torch.tensor([0.2, 0.0, 1.0, 0.7])})]


def both(name, logits, target, reduction, kwargs, upstream=None):
    """Value and gradient of the public (fast) and the reference implementation."""
    kwargs = dict(kwargs)
    extra = (kwargs.pop("recall_weights"),) if "recall_weights" in kwargs else ()
    results = []
    for module in (SF, reference):
        z = logits.detach().clone().requires_grad_()
        value = getattr(module, name)(z, target, *extra, reduction=reduction, **kwargs)
        (value * (upstream if upstream is not None and reduction == "none" else 1.0)).sum().backward()
        results.append((value.detach(), z.grad))
    return results


@pytest.mark.parametrize("name, kwargs", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("spatial", [(), (9,), (6, 7), (2, 3, 5)])
def test_fast_path_equals_reference_in_value_and_gradient(name, kwargs, reduction, spatial):
    logits, target = random_batch(3, 4, spatial, scale=4.0, ignore_frac=0.2, dtype=torch.float64, seed=len(spatial))
    upstream = torch.randn(target.shape, dtype=torch.float64)  # signed: exercises the unfolded backward
    (fast, fast_grad), (ref, ref_grad) = both(name, logits, target, reduction, kwargs, upstream)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-9, atol=1e-12)


def saturated_batch():
    """float32 logits ``(4, 4, 16)`` at +-60 (one winner per pixel, plus noise) and random labels."""
    g = torch.Generator().manual_seed(3)
    winner = torch.randint(0, 4, (4, 16), generator=g)
    logits = torch.nn.functional.one_hot(winner, 4).movedim(-1, 1).float() * 120 - 60
    logits += torch.randn(logits.shape, generator=g)
    return logits, torch.randint(0, 4, (4, 16), generator=g)


@pytest.mark.parametrize("name, kwargs", CASES)
def test_fast_path_equals_reference_at_saturated_float32_logits(name, kwargs):
    (fast, fast_grad), (ref, ref_grad) = both(name, *saturated_batch(), "none", kwargs)
    assert torch.isfinite(fast).all() and torch.isfinite(fast_grad).all()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name, kwargs", CASES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fast_path_equals_reference_for_half_precision_inputs(name, kwargs, dtype):
    logits, target = random_batch(2, 4, (8, 8), scale=6.0, ignore_frac=0.1, dtype=dtype, seed=5)
    (fast, fast_grad), (ref, ref_grad) = both(name, logits, target, "mean", kwargs)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    assert fast_grad.dtype == dtype
    torch.testing.assert_close(fast_grad.float(), ref_grad.float(), rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("name, kwargs", CASES)
def test_block_boundaries_do_not_change_results(name, kwargs, monkeypatch):
    logits, target = random_batch(2, 4, (50, 3), scale=3.0, ignore_frac=0.2, dtype=torch.float64, seed=6)
    (whole, whole_grad), _ = both(name, logits, target, "none", kwargs)
    monkeypatch.setattr(cpu, "_blocks", lambda n, c, device, *_: ((a, min(n, a + 7)) for a in range(0, n, 7)))
    (blocked, blocked_grad), _ = both(name, logits, target, "none", kwargs)
    torch.testing.assert_close(blocked, whole, rtol=1e-12, atol=0)
    torch.testing.assert_close(blocked_grad, whole_grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name, kwargs", [("focal_loss", {"gamma": 2.0, "alpha": [0.5, 1.0, 2.0]}),
                                          ("focal_loss", {"gamma": 0.5}), ("cross_entropy", {}),
                                          ("dual_focal_loss", {"gamma": 0.5, "rho": 1.3, "beta": 2.0}),
                                          ("dual_focal_loss", {"gamma": 2.0})])
def test_fused_gradcheck_float64(name, kwargs):
    logits, target = random_batch(2, 3, (3, 3), ignore_frac=0.2, dtype=torch.float64, seed=7)
    reduction = "sum" if name == "dual_focal_loss" else "none"  # "none" would need a second in-place backward
    fn = lambda z: getattr(SF, name)(z, target, reduction=reduction, weight=[1.0, 2.0, 0.5], **kwargs)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (logits.requires_grad_(),))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_fused_dual_focal_backward_twice_is_right_and_never_touches_a_gradient_handed_out(reduction):
    """The first backward hands its forward-computed gradient over; later ones recompute it: a
    gradient already returned is never scaled again, and one the caller changes changes nothing."""
    logits, target = random_batch(2, 3, (4, 4), ignore_frac=0.1, seed=9)
    logits.requires_grad_()
    ref = logits.detach().double().requires_grad_()
    kwargs = {"gamma": 2.0, "rho": 1.5, "weight": [1.0, 2.0, 0.5], "reduction": reduction}
    loss, ref_loss = SF.dual_focal_loss(logits, target, **kwargs), reference.dual_focal_loss(ref, target, **kwargs)
    up = torch.rand_like(loss) + 0.5
    expected = torch.autograd.grad(ref_loss, ref, up.double())[0]
    (first,) = torch.autograd.grad(loss, logits, up, retain_graph=True)
    kept = first.clone()
    (second,) = torch.autograd.grad(loss, logits, 3 * up, retain_graph=True)
    torch.testing.assert_close(first, kept, rtol=0, atol=0)  # not rescaled by the second backward
    torch.testing.assert_close(second.double(), 3 * expected, rtol=1e-5, atol=1e-7)
    first.mul_(10.0)  # the caller's tensor is the caller's
    (third,) = torch.autograd.grad(loss, logits, up)
    torch.testing.assert_close(third.double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(kept.double(), expected, rtol=1e-5, atol=1e-7)


def test_learnable_parameters_fall_back_to_autograd():
    logits, target = random_batch(2, 3, (4, 4), seed=8)
    gamma = torch.tensor(1.5, requires_grad=True)
    rho = torch.tensor(1.2, requires_grad=True)
    SF.focal_loss(logits, target, gamma=gamma).backward()
    SF.dual_focal_loss(logits, target, rho=rho, gamma=gamma).backward()
    assert gamma.grad is not None and rho.grad is not None


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(2, 7), pixels=st.integers(1, 40), seed=st.integers(0, 10_000),
       scale=st.sampled_from([0.1, 3.0, 30.0]), gamma=st.sampled_from([0.0, 0.3, 1.0, 2.5]),
       ignore=st.sampled_from([0.0, 0.3, 1.0]))
def test_fast_focal_equals_reference_on_random_inputs(n, c, pixels, seed, scale, gamma, ignore):
    logits, target = random_batch(n, c, (pixels,), scale=scale, ignore_frac=ignore, dtype=torch.float64, seed=seed)
    (fast, fast_grad), (ref, ref_grad) = both("focal_loss", logits, target, "mean", {"gamma": gamma})
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name, kwargs", CASES)
@pytest.mark.parametrize("label_dtype", [torch.uint8, torch.int16, torch.int32])
def test_any_integer_label_dtype_gives_the_int64_result(name, kwargs, label_dtype):
    logits, target = random_batch(2, 4, (6, 6), scale=3.0, ignore_frac=0.0, dtype=torch.float64, seed=15)
    (wide, wide_grad), _ = both(name, logits, target, "mean", kwargs)
    (narrow, narrow_grad), _ = both(name, logits, target.to(label_dtype), "mean", kwargs)
    torch.testing.assert_close(narrow, wide, rtol=0, atol=0)
    torch.testing.assert_close(narrow_grad, wide_grad, rtol=0, atol=0)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_fused_dual_focal_gradient_is_right_at_margins_beyond_float64_exp(gamma):
    # margins of ~800: r_a = p_a / (1 - p_a) and (1 - p_t)^(gamma - 1) exceed float64 as numbers
    logits = torch.tensor([[-240.0, 593.0, -336.0, -146.0], [900.0, -100.0, 50.0, 10.0],
                           [-900.0, 100.0, 50.0, 10.0], [0.5, -0.2, 3.0, 1.0]], dtype=torch.float64)
    for labels in ([3, 0, 0, 2], [1, 3, 2, 0]):
        (fast, fast_grad), (ref, ref_grad) = both("dual_focal_loss", logits, torch.tensor(labels), "sum",
                                                  {"gamma": gamma})
        torch.testing.assert_close(fast, ref, rtol=1e-12, atol=0)
        torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(fast_grad.sum(dim=1), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-9)
