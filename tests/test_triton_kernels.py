"""The Triton kernels (segloss.kernels.cuda) equal the autograd reference in value and gradient: every
pixel-wise loss, shape, layout, dtype and class count, the region sums and label smoothing.

Without a GPU they run in triton's interpreter on CPU tensors (``TRITON_INTERPRET=1``, set by
conftest), routed there by ``cuda.run_on_cpu_for_tests``; with one they run on CUDA. Shapes are
small: the interpreter executes every program in Python. Launch details: ``test_triton_launch.py``;
synchronisation and devices: ``test_triton_sync.py``; learnable parameters: ``test_triton_learnable.py``.
"""

import pytest
import torch

import segloss
from segloss import functional as SF
from segloss.kernels import cuda
from segloss.losses import reference
from conftest import random_batch
from triton_support import (CASES, DEVICE, assert_matches, kernel_and_reference, reference_for,  # noqa: F401
                            triton_path)  # triton_path: an autouse fixture



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
    reference_for(name)(ref_z, target, reduction="sum", **kwargs).backward()
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


@pytest.mark.parametrize("name, key", [("cross_entropy", "weight"), ("focal_loss", "alpha"), ("focal_loss", "weight"),
                                       ("recall_loss", "weight"), ("dual_focal_loss", "weight")])
@pytest.mark.parametrize("layout", ["strided", "expanded"])
def test_class_vectors_on_the_device_may_be_strided_or_expanded(name, key, layout):
    """A column of a weight table, or one value expanded to C, is read by its strides: the kernels
    read a class vector with stride 1, so it must reach them contiguous (a strided CE weight gave
    3x the loss; an expanded one read past its storage)."""
    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.1, seed=12)
    if layout == "strided":
        table = torch.tensor([[0.5, 9.0], [2.0, 9.0], [1.0, 9.0], [3.0, 9.0]], device=DEVICE)
        vector = table[:, 0]
    else:
        vector = torch.tensor([0.75], device=DEVICE).expand(4)
    assert not vector.is_contiguous()
    results = []
    for given in (vector, vector.contiguous()):
        z = logits.to(DEVICE).requires_grad_()
        value = getattr(SF, name)(z, target.to(DEVICE), reduction="sum", **{key: given})
        value.backward()
        results.append((value.detach(), z.grad))
    torch.testing.assert_close(results[0], results[1], rtol=1e-6, atol=1e-6)


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


@pytest.mark.parametrize("threshold, min_kept", [(0.7, 0.1), (0.99, 1.0)])
def test_weighted_ohem_with_a_bad_label_inside_a_sums_block_raises_the_labels_error(threshold, min_kept):
    """Inside one_check_for_all the label check is read at the block's end, after OHEM has gathered
    its class weights by label: a label >= C (a pixel the kernel scores 0, so p_t = 1, kept once every
    pixel is) must not index past the weights (an IndexError here, a device assert on CUDA)."""
    from segloss.kernels import device_checks

    logits, target = random_batch(1, 4, (3, 3), seed=9)
    target[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"outside \[0, 4\).*: \[7\]"):
        with device_checks.one_check_for_all():
            SF.ohem_cross_entropy(logits.to(DEVICE), target.to(DEVICE), threshold=threshold, min_kept=min_kept,
                                  weight=[1.0, 2.0, 0.5, 1.0])


@pytest.mark.parametrize("kwargs", [{"gamma": 2.0}, {"gamma": 0.0}, {"alpha": 0.25}, {"gamma": 1.5, "alpha": 3.0},
                                    {"gamma": 0.5, "alpha": 0.5, "weight": [1.0, 2.0, 0.5, 1.0]},
                                    {"gamma": 2.0, "label_smoothing": 0.2}])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_parameters_as_device_tensors_equal_the_numbers(kwargs, reduction):
    """gamma and a scalar alpha given as 0-dim tensors on the logits' device (read there, not on the
    host): the same values and gradients as the numbers, and the reference; gamma = 0 at
    saturated logits takes the general formula (no GAMMA_ZERO branch) and stays finite."""
    logits, target = random_batch(2, 4, (5, 7), scale=4.0, ignore_frac=0.2, seed=21)
    logits[0, :, 0, 0] = torch.tensor([300.0, -300.0, 0.0, 1.0])  # saturated: p_t = 1 or 0
    upstream = torch.randn(target.shape, generator=torch.Generator().manual_seed(22)).to(DEVICE)
    as_tensors = {k: torch.tensor(v, device=DEVICE) if k in ("gamma", "alpha") else v for k, v in kwargs.items()}
    results = []
    for given in (as_tensors, kwargs):
        z = logits.to(DEVICE).clone().requires_grad_()
        value = SF.focal_loss(z, target.to(DEVICE), reduction=reduction, **given)
        (value * (upstream if reduction == "none" else 1.0)).sum().backward()
        results.append((value.detach().double().cpu(), z.grad.double().cpu()))
    (value, grad), (number_value, number_grad) = results
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(value, number_value, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(grad, number_grad, rtol=1e-6, atol=1e-7)
    cuda.run_on_cpu_for_tests(False)  # float64 on the CPU: the eager path, with the numbers
    ref = logits.double().requires_grad_()
    ref_value = SF.focal_loss(ref, target, reduction=reduction, **kwargs)
    cuda.run_on_cpu_for_tests(True)
    (ref_value * (upstream.cpu().double() if reduction == "none" else 1.0)).sum().backward()
    torch.testing.assert_close(value, ref_value.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction, change", [("mean", "add_"), ("none", "add_"), ("none", "data")])
def test_a_device_gamma_changed_before_backward_keeps_the_forwards_gradient(reduction, change):
    """A schedule that steps its gamma buffer in place between forward and backward neither breaks
    the backward (a saved view of the caller's tensor) nor changes the gradient it recomputes
    ("none"). A ``.data`` write has no "mean" case: that gradient is written in the forward pass."""
    logits, target = random_batch(2, 4, (5, 6), scale=3.0, seed=25)
    grads = []
    for step in (False, True):
        gamma = torch.tensor(2.0, device=DEVICE)
        z = logits.to(DEVICE).clone().requires_grad_()
        value = SF.focal_loss(z, target.to(DEVICE), gamma=gamma, reduction=reduction)
        if step:
            gamma.add_(0.5) if change == "add_" else gamma.data.fill_(0.5)
        value.sum().backward()
        grads.append(z.grad.cpu())
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["gamma", "alpha"])
@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_focal_parameters_as_device_tensors_are_range_checked(name, bad):
    """Checked on the device with the labels, and named in the error; an empty batch too."""
    logits, target = random_batch(1, 4, (3, 3), seed=23)
    for z, y in ((logits, target), (logits[:0], target[:0])):
        with pytest.raises(ValueError, match=rf"{name} must be finite and within \[0.0, "):
            SF.focal_loss(z.to(DEVICE), y.to(DEVICE), **{name: torch.tensor(bad, device=DEVICE)})
    with pytest.raises(TypeError, match="gamma must be a number or a 0-dim tensor"):
        SF.focal_loss(logits.to(DEVICE), target.to(DEVICE), gamma=torch.ones(2, device=DEVICE))


def test_ohem_on_the_kernel_path_keeps_the_pixels_of_the_eager_path():
    """On the kernels' path OHEM's k-th hardest pixel comes from a sort with k on the device (no host
    read of the count): the same kept pixels, value and gradient as the eager path's kthvalue."""
    logits, target = random_batch(2, 4, (6, 7), scale=3.0, ignore_frac=0.2, seed=24)
    results = []
    for on_kernels in (True, False):
        cuda.run_on_cpu_for_tests(on_kernels)
        for threshold, min_kept in ((0.7, 0.1), (0.05, 0.6), (0.99, 1.0)):
            z = logits.to(DEVICE).clone().requires_grad_()
            kept = SF.ohem_mask(z, target.to(DEVICE), threshold=threshold, min_kept=min_kept)
            value = SF.ohem_cross_entropy(z, target.to(DEVICE), threshold=threshold, min_kept=min_kept,
                                          weight=[1.0, 2.0, 0.5, 1.0])
            value.backward()
            results.append((kept.cpu(), value.detach().cpu(), z.grad.cpu()))
    cuda.run_on_cpu_for_tests(True)
    for (kept, value, grad), (eager_kept, eager_value, eager_grad) in zip(results[:3], results[3:]):
        assert torch.equal(kept, eager_kept) and kept.sum() > 0
        torch.testing.assert_close(value, eager_value, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(0, 4, 3, 3), (2, 4, 0, 5)])
def test_ohem_on_the_kernel_path_takes_an_empty_batch(shape):
    """An empty batch (no images, or an empty image) keeps nothing: no sort of nothing to gather from."""
    z = torch.randn(*shape, device=DEVICE, requires_grad=True)
    target = torch.zeros(shape[0], *shape[2:], dtype=torch.long, device=DEVICE)
    assert SF.ohem_mask(z, target).shape == target.shape
    value = SF.ohem_cross_entropy(z, target, min_kept=0.5)
    value.backward()
    assert value.item() == 0.0 and z.grad.shape == z.shape
    assert segloss.create_loss("ohem")(z, target).item() == 0.0


def test_recall_loss_uses_the_batchs_argmax_recall():
    logits, target = random_batch(2, 3, (4, 4), scale=2.0, seed=10)
    logits_dev, target_dev = logits.to(DEVICE), target.to(DEVICE)
    weights, _ = SF.batch_recall_weights(logits_dev, target_dev)
    by_hand = SF.cross_entropy(logits_dev, target_dev, reduction="none") * weights[target_dev]
    torch.testing.assert_close(SF.recall_loss(logits_dev, target_dev, reduction="none"), by_hand)


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


def test_region_sums_refuse_a_second_order_gradient_in_their_own_words():
    """The kernels' refusal said "the region and boundary losses take it as they are", raised by a region loss."""
    from segloss.losses import region

    logits, target = random_batch(2, 3, (4, 4), seed=13)
    z = logits.to(DEVICE).requires_grad_()
    value = region.soft_dice_loss(z, target.to(DEVICE))
    with pytest.raises(RuntimeError, match="region sums on CUDA .* not supported on CUDA tensors"):
        torch.autograd.grad(value, z, create_graph=True)


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
