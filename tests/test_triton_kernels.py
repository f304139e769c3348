"""The Triton kernels (segloss.kernels.cuda) equal the autograd reference in value and gradient.

Without a GPU they run in triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``, set by
conftest), routed there by ``cuda.run_on_cpu_for_tests``; with one they run on CUDA. Shapes are
small: the interpreter executes every program in Python.
"""

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from segloss import functional as SF
from segloss.kernels import cuda, triton_pixelwise
from segloss.losses import reference
from conftest import random_batch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

CASES = [
    ("cross_entropy", {}),
    ("cross_entropy", {"weight": [0.5, 2.0, 1.0, 3.0]}),
    ("focal_loss", {"gamma": 2.0}),
    ("focal_loss", {"gamma": 0.5, "alpha": [0.1, 0.5, 1.0, 2.0], "weight": [1.0, 2.0, 0.5, 1.0]}),
    ("focal_loss", {"gamma": 5.0, "alpha": 0.25}),
    ("recall_loss", {}),
    ("recall_loss", {"weight": [1.0, 2.0, 0.5, 1.0]}),
    ("dual_focal_loss", {}),
    ("dual_focal_loss", {"alpha": 0.5, "beta": 2.0, "gamma": 0.5, "rho": 1.5, "weight": [1.0, 3.0, 1.0, 0.2]}),
    ("dual_focal_loss", {"alpha": 2.0, "beta": 0.5, "gamma": 3.0, "rho": 1.0}),
    ("dual_focal_loss", {"alpha": 1.0, "beta": 1.0, "gamma": 0.0, "rho": 4.0}),
]


@pytest.fixture(autouse=True)
def triton_path():
    assert cuda.available(), "triton is not importable: the CUDA kernels cannot be tested"
    cuda.run_on_cpu_for_tests(True)
    yield
    cuda.run_on_cpu_for_tests(False)


def reference_recall_loss(logits, target, *, weight=None, ignore_index=255, reduction="mean"):
    """Recall loss by hand: ``1 - TP_c / N_c`` counted from the argmax in float64, then the reference CE."""
    valid = target != ignore_index
    hits = (logits.argmax(dim=1) == target) & valid
    recall_weights = torch.ones(logits.shape[1], dtype=torch.float64)
    for c in range(logits.shape[1]):
        n_c = int((valid & (target == c)).sum())
        if n_c:
            recall_weights[c] = 1.0 - int((hits & (target == c)).sum()) / n_c
    return reference.recall_weighted_ce(logits, target, recall_weights, weight=weight, ignore_index=ignore_index,
                                        reduction=reduction)


def _reference(name):
    return reference_recall_loss if name == "recall_loss" else getattr(reference, name)


def kernel_and_reference(name, logits, target, reduction, kwargs, upstream=None):
    """``((value, grad) of the kernel path, (value, grad) of the float64 reference on the CPU))``."""
    results = []
    for loss, z0, y in ((getattr(SF, name), logits.to(DEVICE), target.to(DEVICE)),
                        (_reference(name), logits.double().cpu(), target.cpu())):
        z = z0.detach().clone().requires_grad_()
        value = loss(z, y, reduction=reduction, **kwargs)
        weight = upstream.to(value.device, value.dtype) if upstream is not None and reduction == "none" else 1.0
        (value * weight).sum().backward()
        results.append((value.detach().double().cpu(), z.grad.double().cpu()))
    return results


def assert_matches(name, logits, target, reduction, kwargs, upstream=None, rtol=1e-5, atol=1e-6):
    (value, grad), (ref, ref_grad) = kernel_and_reference(name, logits, target, reduction, kwargs, upstream)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(value, ref, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=atol)


def test_losses_take_the_kernel_path(monkeypatch):
    calls = []
    for fn in (cuda.FocalFamilyTriton, cuda.DualFocalTriton):
        original = fn.apply
        monkeypatch.setattr(fn, "apply", lambda *a, _o=original, _n=fn.__name__: calls.append(_n) or _o(*a))
    logits, target = random_batch(2, 3, (4, 4))
    for name in ("cross_entropy", "focal_loss", "recall_loss", "dual_focal_loss"):
        getattr(SF, name)(logits.to(DEVICE), target.to(DEVICE))
    assert calls == ["FocalFamilyTriton"] * 3 + ["DualFocalTriton"]
    SF.cross_entropy(logits.double().to(DEVICE), target.to(DEVICE))  # float64 keeps the eager path
    assert len(calls) == 4


@pytest.mark.parametrize("name, kwargs", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_kernels_equal_reference_on_images_with_ignored_pixels(name, kwargs, reduction):
    logits, target = random_batch(2, 4, (5, 7), scale=4.0, ignore_frac=0.2, seed=1)
    upstream = torch.randn(target.shape, generator=torch.Generator().manual_seed(2))
    assert_matches(name, logits, target, reduction, kwargs, upstream)


@pytest.mark.parametrize("name, kwargs", [CASES[0], CASES[3], CASES[5], CASES[8]])
@pytest.mark.parametrize("spatial", [(), (11,), (2, 3, 5)])
def test_kernels_take_n_c_and_volumes(name, kwargs, spatial):
    logits, target = random_batch(6 if not spatial else 2, 4, spatial, scale=3.0, ignore_frac=0.2, seed=3)
    assert_matches(name, logits, target, "mean", kwargs)


@pytest.mark.parametrize("name, kwargs", [CASES[2], CASES[5], CASES[7]])
def test_kernels_take_channels_last_and_transposed_inputs(name, kwargs):
    logits, target = random_batch(2, 4, (6, 5), scale=3.0, ignore_frac=0.1, seed=4)
    assert_matches(name, logits.to(memory_format=torch.channels_last), target, "mean", kwargs)
    assert_matches(name, logits.transpose(2, 3), target.transpose(1, 2), "none", kwargs,
                   upstream=torch.rand(2, 5, 6))
    z = logits.to(DEVICE).to(memory_format=torch.channels_last).requires_grad_()
    getattr(SF, name)(z, target.to(DEVICE), **kwargs).backward()
    assert z.grad.is_contiguous(memory_format=torch.channels_last)  # the gradient keeps the layout


@pytest.mark.parametrize("name, kwargs", [CASES[0], CASES[2], CASES[5], CASES[7], CASES[9]])
def test_kernels_are_finite_and_right_at_saturated_logits(name, kwargs):
    g = torch.Generator().manual_seed(5)
    winner = torch.randint(0, 4, (2, 16), generator=g)
    for margin in (60.0, 200.0):  # 200: every other class underflows float32
        logits = torch.nn.functional.one_hot(winner, 4).movedim(-1, 1).float() * margin - margin / 2
        logits += torch.randn(logits.shape, generator=g)
        target = torch.randint(0, 4, (2, 16), generator=g)
        assert_matches(name, logits, target, "none", kwargs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, kwargs", [CASES[1], CASES[3], CASES[5], CASES[8]])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_computed_in_float32_with_a_gradient_in_their_dtype(name, kwargs, dtype):
    logits, target = random_batch(2, 4, (6, 6), scale=5.0, ignore_frac=0.1, dtype=dtype, seed=6)
    (value, _), (ref, _) = kernel_and_reference(name, logits, target, "sum", kwargs)
    torch.testing.assert_close(value, ref, rtol=1e-5, atol=1e-5)  # the same half inputs, computed in float32
    z = logits.to(DEVICE).clone().requires_grad_()
    getattr(SF, name)(z, target.to(DEVICE), reduction="sum", **kwargs).backward()
    ref_z = logits.detach().double().requires_grad_()
    _reference(name)(ref_z, target, reduction="sum", **kwargs).backward()
    assert z.grad.dtype == dtype
    torch.testing.assert_close(z.grad.double().cpu(), ref_z.grad, rtol=1e-2, atol=1e-2)  # half's rounding


@pytest.mark.parametrize("num_classes", [2, 3, 150, 1024])
def test_kernels_take_two_to_a_thousand_classes(num_classes):
    logits, target = random_batch(1, num_classes, (3, 3), scale=3.0, ignore_frac=0.1, seed=num_classes)
    for name, kwargs in (("focal_loss", {"gamma": 2.0}), ("dual_focal_loss", {"rho": 1.5})):
        assert_matches(name, logits, target, "mean", kwargs)


@pytest.mark.parametrize("name, kwargs", [CASES[0], CASES[5], CASES[7]])
def test_all_ignored_batch_gives_zero_with_zero_gradient(name, kwargs):
    logits, target = random_batch(2, 4, (3, 3), seed=7)
    target[:] = 255
    z = logits.to(DEVICE).clone().requires_grad_()
    value = getattr(SF, name)(z, target.to(DEVICE), **kwargs)
    value.backward()
    assert value.item() == 0.0 and torch.count_nonzero(z.grad) == 0


def test_empty_batch_gives_zero():
    z = torch.zeros(0, 4, 3, 3, device=DEVICE, requires_grad=True)
    value = SF.focal_loss(z, torch.zeros(0, 3, 3, dtype=torch.long, device=DEVICE))
    value.backward()
    assert value.item() == 0.0 and z.grad.shape == z.shape


def test_scaled_upstream_and_a_second_backward_are_exact():
    logits, target = random_batch(2, 4, (4, 4), scale=3.0, seed=8)
    z = logits.to(DEVICE).clone().requires_grad_()
    loss = SF.dual_focal_loss(z, target.to(DEVICE), gamma=2.0)
    (loss * 1024.0).backward(retain_graph=True)  # AMP's GradScaler scales the loss like this
    first = z.grad.clone()
    z.grad = None
    loss.backward()
    torch.testing.assert_close(first, z.grad * 1024.0)
    ref = logits.detach().double().requires_grad_()
    reference.dual_focal_loss(ref, target, gamma=2.0).backward()
    torch.testing.assert_close(z.grad.double().cpu(), ref.grad, rtol=1e-5, atol=1e-7)


def test_bad_labels_and_non_finite_logits_raise_clear_errors():
    logits, target = random_batch(1, 4, (3, 3), seed=9)
    target[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"outside \[0, 4\).*ignore_index=255: \[7\]"):
        SF.cross_entropy(logits.to(DEVICE), target.to(DEVICE))
    target[0, 0, 0] = 1
    logits[0, 2, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="logits contain 1 NaN and 0 Inf"):
        SF.dual_focal_loss(logits.to(DEVICE), target.to(DEVICE))


def test_recall_loss_uses_the_batchs_argmax_recall():
    logits, target = random_batch(2, 3, (4, 4), scale=2.0, seed=10)
    logits_dev, target_dev = logits.to(DEVICE), target.to(DEVICE)
    weights, _ = SF.batch_recall_weights(logits_dev, target_dev)
    by_hand = SF.cross_entropy(logits_dev, target_dev, reduction="none") * weights[target_dev]
    torch.testing.assert_close(SF.recall_loss(logits_dev, target_dev, reduction="none"), by_hand)


@pytest.mark.gpu
@pytest.mark.parametrize("name, kwargs", [("cross_entropy", {}), ("focal_loss", {}), ("recall_loss", {}),
                                          ("dual_focal_loss", {}), ("cross_entropy", {"label_smoothing": 0.1})])
def test_one_synchronisation_per_call_on_cuda(name, kwargs):
    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z = logits.cuda().requires_grad_()
    y = target.cuda()

    def step():
        getattr(SF, name)(z, y, **kwargs).backward()
    step()  # warm-up: compilation may synchronise
    syncs = _count_syncs(step)
    assert len(syncs) <= 1, syncs


@pytest.mark.gpu
@pytest.mark.parametrize("name, params", [
    ("dice", {}), ("jaccard", {"per_image": "image"}), ("focal_tversky", {}), ("generalized_dice", {}),
    ("lovasz", {}), ("lovasz", {"per_image": "image"}), ("dice_ce", {}), ("dice_focal", {}), ("unified_focal", {})])
def test_region_losses_take_one_synchronisation_per_call_on_cuda(name, params):
    """#12: no host-device synchronisation per call beyond one (the label and finiteness check); the
    sums and Unified Focal read all their passes' flags at once (``cuda.one_check_for_all``)."""
    import segloss

    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z, y = logits.cuda().requires_grad_(), target.cuda()
    criterion = segloss.create_loss(name, **params)

    def step():
        criterion(z, y).backward()
    step()
    syncs = _count_syncs(step)
    assert len(syncs) <= 1, syncs


def _count_syncs(call) -> list:
    import warnings

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "synchroniz" in str(w.message)]


@pytest.mark.gpu
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_learnable_dual_focal_takes_one_synchronisation_on_cuda(reduction):
    import segloss

    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z, y = logits.cuda().requires_grad_(), target.cuda()
    module = segloss.DualFocalLoss(learnable=("alpha", "beta", "gamma", "rho"), reduction=reduction).cuda()

    def step():
        module(z, y).sum().backward()
    step()  # warm-up: compilation may synchronise
    assert len(_count_syncs(step)) <= 1


@pytest.mark.gpu
@pytest.mark.parametrize("kwargs", [{"weight": [0.5] * 10 + [2.0] * 9}, {"alpha": [0.25] * 19, "gamma": 2.0},
                                    {"weight": torch.tensor([0.5] * 10 + [2.0] * 9)}],
                         ids=["weight list", "alpha list", "weight CPU tensor"])
def test_class_vectors_from_the_host_take_no_extra_synchronisation_on_cuda(kwargs):
    """A weight list (or a CPU weight tensor) is copied to the device once, not on every call: each
    copy from pageable memory synchronises."""
    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z, y = logits.cuda().requires_grad_(), target.cuda()
    loss = SF.focal_loss if "alpha" in kwargs else SF.cross_entropy

    def step():
        loss(z, y, **kwargs).backward()
    step()
    assert len(_count_syncs(step)) <= 1


def test_a_host_class_vector_is_copied_to_an_accelerator_once_per_distinct_values():
    """The meta device stands in for CUDA here. Sequences and plain CPU tensors are cached by value
    (not a tensor carrying a gradient, a tangent or a vmap batch); a copy first made in inference
    mode is a normal tensor, which a later training step can save for backward."""
    from segloss.losses._checks import class_vector

    on_device = torch.empty(2, 3, device="meta")
    with torch.inference_mode():
        first = class_vector([1.0, 2.0, 3.0], 3, "weight", on_device)
    assert not first.is_inference()
    assert class_vector([1.0, 2.0, 3.0], 3, "weight", on_device) is first
    assert class_vector(torch.tensor([1.0, 2.0, 3.0]), 3, "weight", on_device) is first  # a plain tensor: by values
    assert class_vector([1.0, 2.0, 4.0], 3, "weight", on_device) is not first
    assert class_vector([1.0, 2.0, 3.0], 3, "weight", on_device.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="finite, >= 0"):
        class_vector([1.0, -2.0, 3.0], 3, "weight", on_device)  # still checked on every call


def test_a_host_class_tensor_is_copied_to_an_accelerator_once_per_distinct_values():
    """A CPU weight tensor with accelerator logits: one copy per distinct values, however they were
    changed: a write through ``.data`` or a numpy view keeps the tensor's version, and a copy kept by
    the tensor's identity went stale there. A tensor that wants a gradient is copied on each call.
    The meta device stands in for CUDA; ``.data`` writes are checked again too."""
    from segloss.losses._checks import class_vector

    on_device = torch.empty(2, 3, device="meta")
    weight = torch.tensor([1.0, 2.0, 3.0])
    with torch.inference_mode():
        first = class_vector(weight, 3, "weight", on_device)
    assert not first.is_inference() and first.device.type == "meta"
    assert class_vector(weight, 3, "weight", on_device) is first
    assert class_vector(weight.clone(), 3, "weight", on_device) is first  # the same values
    assert class_vector(weight, 3, "weight", on_device.double()).dtype == torch.float64
    version = weight._version
    weight.data.mul_(7.0)
    assert weight._version == version  # what fooled a cache keyed by (tensor, version)
    changed = class_vector(weight, 3, "weight", on_device)
    assert changed is not first and class_vector(torch.tensor([7.0, 14.0, 21.0]), 3, "weight", on_device) is changed
    array = np.ones(3, dtype=np.float32)
    from_numpy = torch.from_numpy(array)
    ones = class_vector(from_numpy, 3, "weight", on_device)
    array *= 3.0
    assert class_vector(from_numpy, 3, "weight", on_device) is not ones
    weight.data[1] = -1.0
    with pytest.raises(ValueError, match="finite, >= 0"):
        class_vector(weight, 3, "weight", on_device)  # a .data write is checked again
    learnable = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert class_vector(learnable, 3, "weight", on_device) is not class_vector(learnable, 3, "weight", on_device)


REGION_CASES = [
    ("dice", {}), ("dice", {"smooth": 0.0, "per_image": "image"}), ("jaccard", {"per_image": "image"}),
    ("tversky", {"alpha": 0.3, "beta": 0.7}), ("focal_tversky", {"gamma": 0.75, "per_image": "image"}),
    ("dice_ce", {}), ("dice_focal", {"gamma": 2.0}),
]


@pytest.mark.parametrize("name, params", REGION_CASES)
def test_region_losses_on_the_kernel_path_equal_the_torch_path(name, params):
    import segloss

    logits, target = random_batch(3, 4, (5, 6), scale=3.0, ignore_frac=0.2, seed=12)
    target[1][target[1] == 3] = 0  # class 3 absent from image 1
    criterion = segloss.create_loss(name, **params)
    z = logits.to(DEVICE).clone().requires_grad_()
    value = criterion(z, target.to(DEVICE))
    value.backward()
    cuda.run_on_cpu_for_tests(False)
    ref = logits.double().requires_grad_()
    ref_value = criterion(ref, target)  # float64 on the CPU: the torch implementation
    ref_value.backward()
    torch.testing.assert_close(value.double().cpu(), ref_value.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z.grad.double().cpu(), ref.grad, rtol=1e-4, atol=1e-7)


def test_region_sums_need_no_one_hot_and_take_channels_last_and_half_precision():
    from segloss.losses import region

    logits, target = random_batch(2, 5, (6, 7), scale=3.0, ignore_frac=0.1, seed=13)
    for z0 in (logits.to(memory_format=torch.channels_last), logits.to(torch.bfloat16)):
        z = z0.to(DEVICE).clone().requires_grad_()
        region.soft_dice_loss(z, target.to(DEVICE), per_image=True).backward()
        ref = z0.detach().double().requires_grad_()
        cuda.run_on_cpu_for_tests(False)
        region.soft_dice_loss(ref, target, per_image=True).backward()
        cuda.run_on_cpu_for_tests(True)
        assert z.grad.dtype == z0.dtype
        torch.testing.assert_close(z.grad.double().cpu(), ref.grad, rtol=1e-2, atol=1e-4)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        region.soft_dice_loss(logits.to(DEVICE), torch.full_like(target, 9).to(DEVICE))


def test_label_smoothing_on_the_kernel_path_equals_torch():
    import torch.nn.functional as F

    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.2, seed=14)
    weight = torch.tensor([0.5, 2.0, 1.0, 3.0])
    z = logits.to(DEVICE).clone().requires_grad_()
    value = SF.cross_entropy(z, target.to(DEVICE), weight=weight.to(DEVICE), label_smoothing=0.1)
    value.backward()
    ref = logits.double().requires_grad_()
    expected = F.cross_entropy(ref, target, weight=weight.double(), ignore_index=255, label_smoothing=0.1)
    expected.backward()
    torch.testing.assert_close(value.double().cpu(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z.grad.double().cpu(), ref.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gamma, weighted", [(0.0, False), (0.0, True), (2.0, True), (0.5, False)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_label_smoothing_is_folded_into_the_kernels_and_equals_the_formula(gamma, weighted, reduction, monkeypatch):
    """(1 - eps) FL + eps (1/C) sum_c w_c (-log p_c), one kernel pass each way (no separate term)."""
    from segloss.kernels import smoothing

    monkeypatch.setattr(smoothing.SmoothingTerm, "apply", lambda *a: pytest.fail("the separate smoothing term ran"))
    logits, target = random_batch(2, 5, (4, 6), scale=4.0, ignore_frac=0.2, seed=61)
    weight = [0.5, 2.0, 1.0, 3.0, 0.7] if weighted else None
    upstream = torch.randn(target.shape, generator=torch.Generator().manual_seed(62))
    eps = 0.3
    z = logits.detach().clone().to(DEVICE).requires_grad_()
    value = SF.focal_loss(z, target.to(DEVICE), gamma=gamma, weight=weight, reduction=reduction, label_smoothing=eps)
    (value * (upstream.to(value.device) if reduction == "none" else 1.0)).sum().backward()
    ref_z = logits.detach().double().requires_grad_()
    valid = target != 255
    w = torch.ones(5, dtype=torch.float64) if weight is None else torch.tensor(weight, dtype=torch.float64)
    focal = reference.focal_loss(ref_z, target, gamma=gamma, weight=weight, reduction="none")
    uniform = torch.where(valid, -(ref_z.log_softmax(1) * w.reshape(1, -1, 1, 1)).sum(1) / 5, 0.0)
    ref = (1 - eps) * focal + eps * uniform
    if reduction != "none":
        ref = ref.sum() / (1.0 if reduction == "sum" else w[torch.where(valid, target, 0)][valid].sum())
    (ref * (upstream.double() if reduction == "none" else 1.0)).sum().backward()
    torch.testing.assert_close(value.double().cpu(), ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z.grad.double().cpu(), ref_z.grad, rtol=1e-5, atol=1e-6)


def test_smoothing_in_the_kernels_keeps_precision_at_a_large_logit_offset():
    logits, target = random_batch(2, 5, (4, 6), scale=3.0, ignore_frac=0.1, seed=63)
    shifted = logits + 1e4  # float32: the inputs themselves are rounded; the reference takes the same ones
    value = SF.cross_entropy(shifted.to(DEVICE), target.to(DEVICE), label_smoothing=0.2, reduction="none")
    expected = torch.nn.functional.cross_entropy(shifted.double(), target, ignore_index=255, label_smoothing=0.2,
                                                 reduction="none")
    torch.testing.assert_close(value.double().cpu(), expected, rtol=1e-5, atol=1e-5)


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 4 pixels, at most 2 forward programs (each walks several tiles), 2 region programs
    per image: images whose pixels end mid-tile, past-the-end tiles, persistent loops."""
    monkeypatch.setattr(cuda, "TILE_ELEMENTS", 16)
    monkeypatch.setattr(cuda, "MAX_PROGRAMS", 2)
    monkeypatch.setattr(cuda, "REGION_PROGRAMS_PER_IMAGE", 2)


@pytest.mark.parametrize("name, kwargs", [CASES[0], CASES[3], CASES[5], CASES[8]])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_tiles_that_end_mid_image_and_programs_that_walk_several_tiles(small_tiles, name, kwargs, reduction):
    launch = cuda._Launch(torch.zeros(3, 4, 5, 3), torch.zeros(3, 5, 3, dtype=torch.long))
    assert (launch.block_p, launch.tiles_per_image, launch.programs, launch.steps) == (4, 4, 2, 8)
    logits, target = random_batch(3, 4, (5, 3), scale=3.0, ignore_frac=0.2, seed=21)
    assert_matches(name, logits, target, reduction, kwargs, upstream=torch.rand(3, 5, 3))
    logits, target = random_batch(13, 4, (), scale=3.0, ignore_frac=0.2, seed=22)  # (N, C): one image of 13
    assert cuda._Launch(logits, target).tiles_per_image == 4
    assert_matches(name, logits, target, reduction, kwargs, upstream=torch.rand(13))


@pytest.mark.parametrize("per_image", [False, True])
def test_region_sums_over_several_tiles_and_programs_per_image(small_tiles, per_image):
    from segloss.losses import region

    logits, target = random_batch(3, 4, (5, 7), scale=3.0, ignore_frac=0.2, seed=23)
    for z0, y in ((logits, target), (logits[:, :, 0, 0], target[:, 0, 0])):  # images, and (N, C)
        z = z0.to(DEVICE).clone().requires_grad_()
        value = region.soft_dice_loss(z, y.to(DEVICE), per_image=per_image)
        value.backward()
        cuda.run_on_cpu_for_tests(False)
        ref = z0.detach().double().requires_grad_()
        ref_value = region.soft_dice_loss(ref, y, per_image=per_image)
        ref_value.backward()
        cuda.run_on_cpu_for_tests(True)
        torch.testing.assert_close(value.double().cpu(), ref_value.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(z.grad.double().cpu(), ref.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name, kwargs", [CASES[1], CASES[5], CASES[7]])
def test_64_bit_offsets_give_the_same_results(monkeypatch, name, kwargs):
    """Tensors of 2**31 elements or more take 64-bit offsets; here every call is made to."""
    monkeypatch.setattr(cuda, "INT32_LIMIT", 8)
    logits, target = random_batch(2, 4, (5, 3), scale=3.0, ignore_frac=0.2, seed=24)
    assert cuda._Launch(logits, target).index_64
    assert_matches(name, logits, target, "none", kwargs, upstream=torch.rand(2, 5, 3))
    assert_matches(name, logits.to(memory_format=torch.channels_last), target, "mean", kwargs)


def test_launch_takes_64_bit_offsets_only_past_2_to_the_31():
    def launch(*shape):
        return cuda._Launch(torch.empty(shape, device="meta"),
                            torch.empty(shape[:1] + shape[2:], dtype=torch.long, device="meta"))
    assert not launch(8, 19, 512, 1024).index_64  # 80 M logits
    assert not launch(16, 150, 256, 256).index_64  # 157 M
    assert launch(2, 19, 2**14, 2**14).index_64  # 10 G
    assert launch(2**31, 2).index_64  # (N, C) past 2**31 elements
    assert not launch(2**29, 2).index_64


def test_a_label_past_32_bits_is_not_taken_for_a_class():
    logits, target = random_batch(1, 4, (3, 3), seed=25)
    target[0, 1, 1] = 2**32 + 1  # class 1 if the kernels compared labels in 32 bits
    with pytest.raises(ValueError, match=r"outside \[0, 4\).*4294967297"):
        SF.focal_loss(logits.to(DEVICE), target.to(DEVICE))


class _KernelCounter:
    """Counts launches of the focal family's backward kernel and of the in-place scaling."""

    def __init__(self, monkeypatch):
        from segloss.kernels import triton_pixelwise

        self.launches = {"focal_backward_kernel": 0, "dual_focal_backward_kernel": 0, "scale_gradient_kernel": 0,
                         "denominator_kernel": 0}
        for name in self.launches:
            kernel = getattr(triton_pixelwise, name)
            monkeypatch.setattr(triton_pixelwise, name, self._wrap(name, kernel))

    def _wrap(self, name, kernel):
        counter = self

        class Wrapped:
            def __getitem__(self, grid):
                counter.launches[name] += 1
                return kernel[grid]
        return Wrapped()


FORWARD_GRADIENT_CASES = [CASES[0], CASES[1], CASES[3], ("cross_entropy", {"label_smoothing": 0.1}),
                          ("focal_loss", {"gamma": 2.0, "label_smoothing": 0.2, "weight": [1.0, 2.0, 0.5, 1.0]}),
                          CASES[7], CASES[8], CASES[9]]


@pytest.mark.parametrize("name, kwargs", FORWARD_GRADIENT_CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("in_forward", [True, False])
def test_gradient_written_in_forward_or_recomputed_in_backward_is_the_same(monkeypatch, name, kwargs, reduction,
                                                                           in_forward):
    monkeypatch.setattr(cuda, "GRADIENT_IN_FORWARD", in_forward)
    counter = _KernelCounter(monkeypatch)
    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.2, seed=31)
    if "label_smoothing" in kwargs:
        logits, target = logits.to(DEVICE), target.to(DEVICE)
        ref = logits.double().requires_grad_()
        ref_value = _smoothed_reference(name, ref, target, reduction, kwargs)
        ref_value.backward()
        z = logits.clone().requires_grad_()
        value = getattr(SF, name)(z, target, reduction=reduction, **kwargs)
        value.backward()
        torch.testing.assert_close(value.double(), ref_value.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(z.grad.double(), ref.grad, rtol=1e-5, atol=1e-6)
    else:
        assert_matches(name, logits, target, reduction, kwargs)
    backward = "dual_focal_backward_kernel" if name == "dual_focal_loss" else "focal_backward_kernel"
    launches = counter.launches
    assert (launches[backward], launches["scale_gradient_kernel"]) == ((0, 1) if in_forward else (1, 0))
    assert launches["denominator_kernel"] == (in_forward and reduction == "mean")  # "sum" needs no denominator


def _smoothed_reference(name, logits, target, reduction, kwargs):
    """The eager float64 path (tested against torch's ``label_smoothing`` and the formula elsewhere)."""
    cuda.run_on_cpu_for_tests(False)
    try:
        return getattr(SF, name)(logits, target, reduction=reduction, **kwargs)
    finally:
        cuda.run_on_cpu_for_tests(True)


def test_a_gradient_written_in_forward_takes_any_upstream_and_a_second_backward(monkeypatch):
    counter = _KernelCounter(monkeypatch)
    logits, target = (t.to(DEVICE) for t in random_batch(2, 4, (4, 5), scale=3.0, ignore_frac=0.1, seed=32))
    weight = [0.5, 2.0, 1.0, 3.0]
    ref = logits.double().requires_grad_()
    reference.focal_loss(ref, target, gamma=2.0, weight=weight).backward()
    z = logits.clone().requires_grad_()
    loss = SF.focal_loss(z, target, gamma=2.0, weight=weight)
    (loss * 1024.0).backward(retain_graph=True)  # scaled in place, the stored gradient handed over
    torch.testing.assert_close(z.grad.double(), ref.grad * 1024.0, rtol=1e-5, atol=1e-6)
    assert counter.launches == {"focal_backward_kernel": 0, "dual_focal_backward_kernel": 0,
                                "scale_gradient_kernel": 1, "denominator_kernel": 1}
    z.grad = None
    (loss + 0.5 * loss).backward()  # the second backward recomputes from the logits
    torch.testing.assert_close(z.grad.double(), ref.grad * 1.5, rtol=1e-5, atol=1e-7)
    assert counter.launches["focal_backward_kernel"] == 1


def test_no_gradient_is_written_without_a_backward_to_come(monkeypatch):
    written = []
    original = cuda.gradient_buffer
    monkeypatch.setattr(cuda, "gradient_buffer", lambda z: written.append(z.shape) or original(z))
    logits, target = (t.to(DEVICE) for t in random_batch(2, 4, (4, 5), seed=33))
    z = logits.clone().requires_grad_()
    with torch.no_grad():
        SF.cross_entropy(z, target)
    SF.cross_entropy(logits, target)  # logits that want no gradient
    SF.cross_entropy(z, target, reduction="none").sum().backward()  # "none": recomputed in backward
    assert written == [z.shape]
    z16 = logits.half().requires_grad_()
    SF.cross_entropy(z16, target).backward()  # float16: recomputed in backward (see GRADIENT_IN_FORWARD)
    assert len(written) == 2


@triton.jit
def _locate_probe(out_ptr, tile, tiles_per_image, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr):
    """Writes ``_locate``'s pixel offsets ``p`` and image ``n`` for one tile."""
    n, p = triton_pixelwise._locate(tile + tl.program_id(0) * 0, tiles_per_image, BLOCK_P, INDEX_64)
    tl.store(out_ptr + tl.arange(0, BLOCK_P), p.to(tl.int64))
    tl.store(out_ptr + BLOCK_P + tl.arange(0, 1), (n + tl.zeros((1,), tl.int32)).to(tl.int64))


def test_64_bit_tile_offsets_do_not_wrap_in_an_image_of_2_to_the_31_pixels():
    """(N, C) logits of 2**31 + 100 rows are one image of that many pixels: its last tile starts
    past 2**31, which a 32-bit product wraps to a negative offset (unmasked: memory before the
    tensors). Probed with the kernels' own ``_locate`` and a meta-device launch (no 8 GB here)."""
    rows = 2**31 + 100
    launch = cuda._Launch(torch.empty(rows, 2, device="meta"), torch.empty(rows, dtype=torch.long, device="meta"))
    assert launch.index_64 and launch.images == 1 and launch.pixels == rows
    out = torch.empty(launch.block_p + 1, dtype=torch.int64, device=DEVICE)
    last = launch.tiles - 1
    _locate_probe[(1,)](out, last, launch.tiles_per_image, BLOCK_P=launch.block_p, INDEX_64=True)
    expected = last * launch.block_p + torch.arange(launch.block_p)
    assert out[-1].item() == 0
    assert torch.equal(out[:-1].cpu(), expected)


@pytest.mark.parametrize("in_forward", [True, False])
@pytest.mark.parametrize("name, kwargs", [CASES[1], CASES[8]])
def test_bfloat16_gradients_with_an_upstream_other_than_one(monkeypatch, in_forward, name, kwargs):
    """Written in forward, a bfloat16 gradient is rounded twice when the upstream is not 1 (a
    weighted sum of losses): still within bfloat16's precision of the float64 gradient."""
    monkeypatch.setattr(cuda, "GRADIENT_IN_FORWARD", in_forward)
    logits, target = random_batch(2, 4, (6, 6), scale=3.0, ignore_frac=0.1, dtype=torch.bfloat16, seed=34)
    z = logits.to(DEVICE).clone().requires_grad_()
    (0.3 * getattr(SF, name)(z, target.to(DEVICE), **kwargs)).backward()
    ref = logits.detach().double().requires_grad_()
    (0.3 * _reference(name)(ref, target, **kwargs)).backward()
    assert z.grad.dtype == torch.bfloat16
    nonzero = ref.grad != 0
    error = ((z.grad.double().cpu() - ref.grad).abs() / ref.grad.abs())[nonzero]
    # two roundings of at most an ulp (2**-7 relative) each: triton's interpreter truncates to
    # bfloat16 where a GPU rounds to nearest (half an ulp)
    assert error.max() < 2 * 2.0**-7 and torch.equal(z.grad[~nonzero.to(DEVICE)].cpu(), ref.grad[~nonzero].bfloat16())


def _no_autograd_reference(monkeypatch):
    """Fail if the losses fall back to the plain-autograd reference or read a tensor parameter on the host."""
    from segloss.losses import functional

    def refuse(*args, **kwargs):
        raise AssertionError("the autograd reference was used")

    def check_number(value, *args, **kwargs):
        assert not isinstance(value, torch.Tensor), "a tensor parameter was read on the host"
        return original_check(value, *args, **kwargs)

    original_check = functional.check_number
    monkeypatch.setattr(functional.reference, "dual_focal_loss", refuse)
    monkeypatch.setattr(functional, "check_number", check_number)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("in_forward", [True, False])
@pytest.mark.parametrize("rho", [1.0, 1.4])
def test_learnable_dual_focal_parameters_take_the_kernels(monkeypatch, reduction, weighted, in_forward, rho):
    """Tensor parameters stay on the device; their gradients (sums of each pixel's derivatives,
    formed by the kernels) equal autograd's through the float64 reference."""
    monkeypatch.setattr(cuda, "GRADIENT_IN_FORWARD", in_forward)
    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.2, seed=35)
    weight = [0.5, 2.0, 1.0, 3.0] if weighted else None
    values = {"alpha": 0.7, "beta": 1.3, "gamma": 1.5, "rho": rho}
    upstream = torch.rand(target.shape, dtype=torch.float64) if reduction == "none" else torch.tensor(0.75)
    ref_params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
    ref_z = logits.double().requires_grad_()
    ref_value = reference.dual_focal_loss(ref_z, target, weight=weight, reduction=reduction, **ref_params)
    (ref_value * upstream).sum().backward()

    _no_autograd_reference(monkeypatch)
    params = {k: torch.tensor(v, device=DEVICE, requires_grad=True) for k, v in values.items()}
    z = logits.to(DEVICE).requires_grad_()
    value = SF.dual_focal_loss(z, target.to(DEVICE), weight=weight, reduction=reduction, **params)
    (value * upstream.to(DEVICE, torch.float32)).sum().backward()
    torch.testing.assert_close(value.double().cpu(), ref_value.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z.grad.double().cpu(), ref_z.grad, rtol=1e-5, atol=1e-6)
    for name in values:
        torch.testing.assert_close(params[name].grad.double().cpu(), ref_params[name].grad, rtol=1e-4, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_dual_focal_loss_module_learns_its_parameters_on_the_kernels(monkeypatch):
    import segloss

    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.1, seed=36)
    learnable = ("alpha", "beta", "gamma", "rho")
    reference_module = segloss.DualFocalLoss(alpha=0.5, gamma=2.0, rho=1.5, learnable=learnable)
    reference_module(logits.double(), target).backward()  # float64: the autograd reference
    _no_autograd_reference(monkeypatch)
    module = segloss.DualFocalLoss(alpha=0.5, gamma=2.0, rho=1.5, learnable=learnable).to(DEVICE)
    z = logits.to(DEVICE).requires_grad_()
    module(z, target.to(DEVICE)).backward()
    for (name, got), (_, want) in zip(module.named_parameters(), reference_module.named_parameters()):
        torch.testing.assert_close(got.grad.cpu(), want.grad, rtol=1e-4, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_tensor_parameters_out_of_range_are_refused_from_the_device_check():
    logits, target = random_batch(1, 4, (3, 3), seed=37)
    for name, bad in (("gamma", -1.0), ("rho", 0.5), ("alpha", float("nan"))):
        with pytest.raises(ValueError, match=rf"{name} must be finite and within \[.*\], got {bad}"):
            SF.dual_focal_loss(logits.to(DEVICE), target.to(DEVICE), **{name: torch.tensor(bad, device=DEVICE)})
    with pytest.raises(TypeError, match="gamma must be a number or a 0-dim tensor"):
        SF.dual_focal_loss(logits.to(DEVICE), target.to(DEVICE), gamma=torch.ones(2, device=DEVICE))


def test_recall_loss_with_momentum_takes_a_main_and_an_auxiliary_head_before_one_backward():
    """``crit(main) + 0.4 * crit(aux)``: the second call updates the running weights in place before
    the backward of the first; the kernel path keeps its own copy of the weights it used, as the
    eager path does (it failed with "modified by an inplace operation")."""
    import segloss

    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.1, seed=39)
    aux = logits.flip(1) + 0.5
    grads = {}
    for path in ("kernels", "eager"):
        cuda.run_on_cpu_for_tests(path == "kernels")
        device = DEVICE if path == "kernels" else "cpu"
        module = segloss.RecallLoss(momentum=0.9, num_classes=4).to(device)
        z, a = logits.to(device).requires_grad_(), aux.to(device).requires_grad_()
        module(z, target.to(device))  # a first step: the running weights start from it
        (module(z, target.to(device)) + 0.4 * module(a, target.to(device))).backward()
        grads[path] = (z.grad.cpu(), a.grad.cpu(), module.class_weights.cpu())
    for got, want in zip(grads["kernels"], grads["eager"]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_recall_loss_with_momentum_takes_one_synchronisation_on_cuda():
    import segloss

    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z, y = logits.cuda().requires_grad_(), target.cuda()
    module = segloss.RecallLoss(momentum=0.9, num_classes=19).cuda()

    def step():
        module(z, y).backward()
    step()
    assert len(_count_syncs(step)) <= 1


@pytest.mark.parametrize("beta", [1.0, 0.0])
def test_learnable_rho_at_one_with_saturated_wrong_pixels_stays_finite(monkeypatch, beta):
    """At rho = 1, 1 / (rho - p_a) for a wrong argmax with margin m is e^m: past float32's range.
    Kernels and reference both cap it at e^60; beta = 0 gives exactly 0."""
    g = torch.Generator().manual_seed(38)
    winner = torch.randint(0, 4, (2, 12), generator=g)
    for margin in (60.0, 95.0, 200.0):
        logits = torch.nn.functional.one_hot(winner, 4).movedim(-1, 1).float() * margin - margin / 2
        logits += torch.randn(logits.shape, generator=g)
        target = (winner + 1) % 4  # every pixel wrong, saturated
        ref_rho = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
        reference.dual_focal_loss(logits.double(), target, rho=ref_rho, beta=beta).backward()
        rho = torch.tensor(1.0, device=DEVICE, requires_grad=True)
        SF.dual_focal_loss(logits.to(DEVICE), target.to(DEVICE), rho=rho, beta=beta).backward()
        assert torch.isfinite(rho.grad) and torch.isfinite(ref_rho.grad)
        if beta == 0.0:
            assert rho.grad.item() == 0.0 and ref_rho.grad.item() == 0.0
        else:
            torch.testing.assert_close(rho.grad.double().cpu(), ref_rho.grad, rtol=1e-4, atol=0.0)


def test_an_empty_batch_of_dual_focal_gives_zero_whatever_memory_held():
    for _ in range(20):  # freed int32 blocks with nonzero contents: the flags must not be read from them
        torch.full((64, 2), 7, dtype=torch.int32, device=DEVICE)
        for gamma in (2.0, torch.tensor(2.0, device=DEVICE)):
            z = torch.zeros(0, 4, 5, 6, device=DEVICE, requires_grad=True)
            value = SF.dual_focal_loss(z, torch.zeros(0, 5, 6, dtype=torch.long, device=DEVICE), gamma=gamma)
            value.backward()
            assert value.item() == 0.0 and z.grad.shape == z.shape


def test_float64_parameters_are_range_checked_in_float64():
    logits, target = random_batch(1, 4, (3, 3), seed=39)
    with pytest.raises(ValueError, match="rho must be finite and within"):
        SF.dual_focal_loss(logits.to(DEVICE), target.to(DEVICE),
                           rho=torch.tensor(1 - 1e-8, dtype=torch.float64, device=DEVICE))


def test_only_the_parameters_wanting_a_gradient_make_no_logits_sized_buffer(monkeypatch):
    made = []
    original = cuda.gradient_buffer
    monkeypatch.setattr(cuda, "gradient_buffer", lambda z: made.append(z.shape) or original(z))
    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.2, seed=40)
    gamma = torch.tensor(1.5, device=DEVICE, requires_grad=True)
    upstream = torch.rand(target.shape)
    (SF.dual_focal_loss(logits.to(DEVICE), target.to(DEVICE), gamma=gamma, reduction="none")
     * upstream.to(DEVICE)).sum().backward()
    assert made == []
    ref_gamma = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    (reference.dual_focal_loss(logits.double(), target, gamma=ref_gamma, reduction="none")
     * upstream.double()).sum().backward()
    torch.testing.assert_close(gamma.grad.double().cpu(), ref_gamma.grad, rtol=1e-5, atol=1e-7)


def test_every_kernel_function_runs_on_its_tensors_device():
    """Triton launches on the current CUDA device: each autograd Function of the CUDA backend makes its
    tensors' device current (logits on cuda:1 with cuda:0 current would be read from the wrong GPU)."""
    functions = [value for value in vars(cuda).values()
                 if isinstance(value, type) and issubclass(value, torch.autograd.Function)]
    assert len(functions) >= 3
    for function in functions:
        for method in ("forward", "backward"):
            assert getattr(getattr(function, method), "device_guarded", False), f"{function.__name__}.{method}"


def test_the_device_guard_makes_the_first_cuda_tensors_device_current(monkeypatch):
    entered = []

    class Recorder:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            entered.append(self.device)

        def __exit__(self, *exc):
            return False

    class OnCuda(torch.Tensor):  # a CPU tensor that says it is on CUDA: the guard's only question
        @property
        def is_cuda(self):
            return True

    monkeypatch.setattr(torch.cuda, "device", Recorder)
    guarded = cuda.on_the_tensors_device(lambda ctx, *args: len(args))
    on_cuda = torch.Tensor._make_subclass(OnCuda, torch.zeros(1))
    assert guarded(None, 0.5, on_cuda, torch.zeros(2)) == 3 and entered == [on_cuda.device]
    entered.clear()
    assert guarded(None, torch.zeros(1), on_cuda) == 2 and entered == []  # the first tensor decides


@pytest.mark.parametrize("name", ["dice_ce", "dice_focal", "unified_focal", "dice"])
def test_a_sum_of_losses_reads_its_flags_once(monkeypatch, name):
    """#12's one synchronisation per call: the parts of a sum (and Unified Focal's focal, CE and
    region passes) hand their bad-input flags to one read at the end; bad labels still raise."""
    import segloss

    reads = []
    real_tolist = torch.Tensor.tolist

    def counting_tolist(self):
        reads.append(self.shape)
        return real_tolist(self)

    logits, target = (t.to(DEVICE) for t in random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.1, seed=40))
    criterion = segloss.create_loss(name)
    want = criterion(logits, target)  # before counting: the first call may read once-only things
    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    torch.testing.assert_close(criterion(logits, target), want)
    assert len(reads) == 1, reads  # the flags of every pass, in one read
    monkeypatch.setattr(torch.Tensor, "tolist", real_tolist)
    bad = target.clone()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"labels outside \[0, 4\) that are not ignore_index=255: \[7\]"):
        criterion(logits, bad)
