"""segloss.use_compiled_kernels(): the torch.compile'd kernels equal the reference autograd path.

Each new dtype compiles once (a few seconds); the shapes are dynamic, so the cases below share
their kernels.
"""

import pytest
import torch

import segloss
import segloss.losses.functional as SF
from conftest import random_batch
from segloss.kernels import compiled as _compiled
from test_fast_path import CASES, both, saturated_batch

COMPILED_CASES = CASES


@pytest.fixture
def compiled():
    segloss.use_compiled_kernels(True)
    yield
    segloss.use_compiled_kernels(False)


def test_the_switch_is_off_by_default_and_checked():
    assert not segloss.compiled_kernels_enabled()
    with pytest.raises(TypeError, match="must be a bool"):
        segloss.use_compiled_kernels("yes")


@pytest.mark.parametrize("name, kwargs", COMPILED_CASES)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_compiled_path_equals_reference_in_value_and_gradient(compiled, name, kwargs, reduction):
    logits, target = random_batch(3, 4, (6, 7), scale=4.0, ignore_frac=0.2, dtype=torch.float64, seed=11)
    upstream = torch.randn(target.shape, dtype=torch.float64)
    (fast, fast_grad), (ref, ref_grad) = both(name, logits, target, reduction, kwargs, upstream)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name, kwargs", COMPILED_CASES)
def test_compiled_path_equals_reference_at_saturated_float32_logits(compiled, name, kwargs):
    (fast, fast_grad), (ref, ref_grad) = both(name, *saturated_batch(), "none", kwargs)
    assert torch.isfinite(fast).all() and torch.isfinite(fast_grad).all()
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_compiled_path_keeps_half_precision_gradients(compiled):
    logits, target = random_batch(2, 4, (8, 8), scale=6.0, ignore_frac=0.1, dtype=torch.float16, seed=5)
    (fast, fast_grad), (ref, ref_grad) = both("focal_loss", logits, target, "mean", {"gamma": 2.0})
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-6)
    assert fast_grad.dtype == torch.float16
    torch.testing.assert_close(fast_grad.float(), ref_grad.float(), rtol=1e-2, atol=1e-4)


def test_compiled_recall_loss_counts_hits_like_argmax_even_with_ties():
    logits, target = random_batch(2, 5, (9, 9), scale=3.0, ignore_frac=0.2, seed=12)
    logits[0, :, :3] = 0.0  # every class ties: argmax picks class 0
    logits[1, 2:4, :, :4] = 7.0  # classes 2 and 3 tie at the top: argmax picks 2
    results = []
    for enabled in (False, True):
        segloss.use_compiled_kernels(enabled)
        z = logits.clone().requires_grad_()
        value = SF.recall_loss(z, target)
        value.backward()
        results.append((value.detach(), z.grad))
    segloss.use_compiled_kernels(False)
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-8)


def test_compiled_kernels_are_reused_across_shapes_and_gammas(compiled):
    for spatial, gamma in (((5, 5), 1.0), ((17, 3), 2.5), ((40,), 0.0)):
        logits, target = random_batch(2, 6, spatial, seed=13, dtype=torch.float64)
        z = logits.requires_grad_()
        SF.focal_loss(z, target, gamma=gamma).backward()
        ref = logits.detach().clone().requires_grad_()
        segloss.losses.reference.focal_loss(ref, target, gamma=gamma).backward()
        torch.testing.assert_close(z.grad, ref.grad, rtol=1e-9, atol=1e-12)
    forward = _compiled._compiled("focal_forward")
    assert forward is _compiled._compiled("focal_forward")  # one compiled function, dynamic shapes


def test_compiled_dual_focal_redoes_underflowing_blocks_in_log_space(compiled, monkeypatch):
    from segloss.kernels import cpu

    calls = []
    eager = cpu._dual_focal_block
    monkeypatch.setattr(cpu, "_dual_focal_block", lambda *a, **k: calls.append(1) or eager(*a, **k))
    logits, target = random_batch(2, 4, (5, 5), scale=2.0, seed=14, dtype=torch.float64)
    both("dual_focal_loss", logits, target, "mean", {})
    assert not calls  # ordinary margins: the compiled kernel alone
    logits[0, 0] = 90.0  # margins of ~90: the other classes' exponentials underflow float32
    (fast, fast_grad), (ref, ref_grad) = both("dual_focal_loss", logits.float(), target, "mean", {"rho": 1.0})
    assert calls
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast_grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_compiled_path_takes_uint8_labels_and_stays_within_its_recompile_budget(compiled):
    import torch._dynamo.config as dynamo_config

    assert dynamo_config.recompile_limit >= _compiled.RECOMPILE_LIMIT
    logits, target = random_batch(2, 4, (6, 6), scale=3.0, dtype=torch.float64, seed=16)
    for name in ("cross_entropy", "focal_loss", "dual_focal_loss", "recall_weighted_ce"):
        kwargs = {"recall_weights": torch.tensor([0.2, 0.0, 1.0, 0.7])} if name == "recall_weighted_ce" else {}
        (wide, wide_grad), _ = both(name, logits, target, "mean", kwargs)
        (narrow, narrow_grad), _ = both(name, logits, target.to(torch.uint8), "mean", kwargs)
        torch.testing.assert_close(narrow, wide)
        torch.testing.assert_close(narrow_grad, wide_grad)
