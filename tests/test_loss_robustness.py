"""Odd tensors and hostile arguments: the losses give the right gradient or a clear error, never a
crash deep inside or a silent wrong number (issue: "Hold up under load, hostile files and odd tensors")."""

import re

import numpy as np
import pytest
import torch

import segloss
from segloss import functional as SF
from segloss.losses import reference, region
from segloss.losses.unified_focal import unified_focal_loss
from conftest import random_batch

PIXELWISE = ["cross_entropy", "focal_loss", "dual_focal_loss"]


def _recall_reference(logits, target, **kwargs):
    weights, _ = SF.batch_recall_weights(logits.detach(), target)
    return reference.recall_weighted_ce(logits, target, weights, **kwargs)


@pytest.mark.parametrize("name", PIXELWISE + ["recall_loss"])
@pytest.mark.parametrize("shape", [(1, 3, 70, 60), (2, 3, 4, 5, 6)])
def test_inputs_whose_spatial_dims_cannot_be_merged_get_the_right_gradient(name, shape):
    logits, target = random_batch(shape[0], shape[1], shape[2:], scale=2.0, ignore_frac=0.1, seed=1)
    if len(shape) == 4:  # swapped H and W, N = 1, 4200 pixels
        logits, target = logits.transpose(2, 3), target.transpose(1, 2)
    else:  # a permuted volume
        logits, target = logits.permute(0, 1, 4, 2, 3), target.permute(0, 3, 1, 2)
    z = logits.clone().requires_grad_() if logits.is_contiguous() else logits.requires_grad_()
    getattr(SF, name)(z, target).backward()
    ref = logits.detach().double().requires_grad_()
    (_recall_reference if name == "recall_loss" else getattr(reference, name))(ref, target).backward()
    torch.testing.assert_close(z.grad.double(), ref.grad, rtol=1e-4, atol=1e-6)


def test_gradient_map_and_dice_ce_take_transposed_inputs():
    logits, target = random_batch(1, 3, (70, 60), seed=2)
    logits, target = logits.transpose(2, 3), target.transpose(1, 2)
    criterion = segloss.create_loss("dice_ce")
    assert segloss.analysis.gradient_map(criterion, logits, target).shape == target.shape
    z = logits.requires_grad_()
    criterion(z, target).backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", PIXELWISE + ["recall_loss"])
def test_a_class_weight_that_requires_grad_gets_the_closed_form_gradient(name):
    """``"mean"`` is ``L = sum_i w_{y_i} l_i / W`` with ``W = sum_i w_{y_i}`` over the valid pixels and
    ``l_i`` the unweighted per-pixel loss, so ``dL/dw_c = (sum_{i: y_i = c} l_i - L N_c) / W``."""
    logits, target = random_batch(2, 4, (5, 5), scale=2.0, ignore_frac=0.1, dtype=torch.float64, seed=3)
    weight = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64, requires_grad=True)
    loss = getattr(SF, name)(logits, target, weight=weight)
    loss.backward()
    pixel = getattr(SF, name)(logits, target, reduction="none")  # l_i, no weight (0 at ignored pixels)
    valid = target != 255
    labels = target[valid]
    counts = torch.bincount(labels, minlength=4).double()
    sums = torch.zeros(4, dtype=torch.float64).index_add_(0, labels, pixel[valid])
    total_weight = float((weight.detach()[labels]).sum())
    expected = (sums - loss.detach() * counts) / total_weight
    torch.testing.assert_close(weight.grad, expected, rtol=1e-9, atol=1e-12)
    assert weight.grad.abs().min() > 1e-6


@pytest.mark.parametrize("name", PIXELWISE + ["recall_loss"])
def test_double_backward_is_refused_with_a_clear_error(name):
    logits, target = random_batch(2, 3, (4, 4), seed=4)
    z = logits.requires_grad_()
    loss = getattr(SF, name)(z, target)
    with pytest.raises(RuntimeError, match="create_graph=True.*segloss.losses.reference"):
        torch.autograd.grad(loss, z, create_graph=True)


@pytest.mark.parametrize("name", PIXELWISE + ["recall_loss"])
def test_torch_func_grad_takes_the_autograd_path_and_agrees(name):
    logits, target = random_batch(2, 3, (4, 4), dtype=torch.float64, seed=5)
    got = torch.func.grad(lambda z: getattr(SF, name)(z, target))(logits)
    z = logits.clone().requires_grad_()
    getattr(SF, name)(z, target).backward()
    torch.testing.assert_close(got, z.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", [region.soft_dice_loss, region.soft_jaccard_loss, region.tversky_loss,
                                  region.lovasz_softmax_loss])
@pytest.mark.parametrize("per_image", [False, True])
def test_region_losses_of_an_empty_batch_are_zero_like_the_pixel_losses(loss, per_image):
    z = torch.zeros(0, 4, 3, 3, requires_grad=True)
    value = loss(z, torch.zeros(0, 3, 3, dtype=torch.long), per_image=per_image)
    value.backward()
    assert value.item() == 0.0 and z.grad.shape == z.shape
    assert SF.focal_loss(z, torch.zeros(0, 3, 3, dtype=torch.long)).item() == 0.0


def test_finite_logits_that_overflow_the_loss_are_named_as_such():
    logits = torch.tensor([[3e38, -3e38]]).reshape(1, 2, 1, 1)
    target = torch.tensor([[[1]]])
    with pytest.raises(ValueError, match=r"overflows float32 although the logits are finite: they reach 3e\+38"):
        SF.cross_entropy(logits, target)


@pytest.mark.parametrize("call, message", [
    (lambda z, t: SF.cross_entropy(z, t, weight=[1.0, 3e38, 1.0]), r"weight entries must be finite, >= 0 and <= 1e\+12"),
    (lambda z, t: SF.focal_loss(z, t, gamma=1e300), r"gamma must be <= 1000"),
    (lambda z, t: SF.focal_loss(z, t, alpha=3.4e38), r"alpha must be <= 1e\+12"),
    (lambda z, t: SF.dual_focal_loss(z, t, gamma=1e300), r"gamma must be <= 1000"),
    (lambda z, t: SF.dual_focal_loss(z, t, rho=1e30), r"rho must be <= 1e\+12"),
])
def test_parameters_beyond_float32s_reach_are_refused_with_their_bound(call, message):
    logits, target = random_batch(1, 3, (4, 4), seed=6)
    with pytest.raises(ValueError, match=message):
        call(logits, target)


@pytest.mark.parametrize("build, message", [
    (lambda: segloss.FocalLoss(gamma=5000), r"gamma must be <= 1000"),
    (lambda: segloss.FocalLoss(alpha=3.4e38), r"alpha must be <= 1e\+12"),
    (lambda: segloss.DualFocalLoss(gamma=2000), r"gamma must be <= 1000"),
    (lambda: segloss.DualFocalLoss(rho=1e30), r"rho must be <= 1e\+12"),
    (lambda: segloss.DualFocalLoss(beta=1e13, learnable=("alpha",)), r"beta must be <= 1e\+12"),
])
def test_the_modules_refuse_those_parameters_when_built_not_at_their_first_call(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_recall_loss_module_checks_its_class_count_and_the_state_it_loads():
    with pytest.raises(ValueError, match="num_classes must be None .* or an int >= 2, got -3"):
        segloss.RecallLoss(num_classes=-3)
    module = segloss.RecallLoss(momentum=0.5, num_classes=3)
    with pytest.raises(ValueError, match=r"class_weights in the state dict must be .* in \[0, 1\]"):
        module.load_state_dict({"class_weights": torch.tensor([0.5, float("nan"), 0.2])})
    module.load_state_dict({"class_weights": torch.tensor([0.5, 0.1, 0.2])})
    assert module.class_weights.tolist() == pytest.approx([0.5, 0.1, 0.2])


def test_create_loss_takes_numpy_numbers_and_vectors_and_names_bad_strings():
    logits, target = random_batch(1, 3, (4, 4), seed=7)
    focal = segloss.create_loss("focal", gamma=np.float32(2.0), alpha=np.array([0.2, 0.5, 1.0]))
    expected = SF.focal_loss(logits, target, gamma=2.0, alpha=[0.2, 0.5, 1.0])
    torch.testing.assert_close(focal(logits, target), expected)
    with pytest.raises(TypeError, match="alpha must be a 1-D tensor or a sequence of numbers"):
        segloss.create_loss("focal", alpha=["a", "b", "c"])(logits, target)
    with pytest.raises(TypeError, match="counts must be a 1-D vector of pixel counts"):
        segloss.create_loss("weighted_ce", class_counts=["many", "few", "none"])


@pytest.mark.parametrize("name", PIXELWISE + ["recall_loss"])
def test_torch_func_vmap_over_a_stack_of_logits_equals_a_loop(name):
    import warnings

    g = torch.Generator().manual_seed(8)
    stacked = torch.randn(3, 2, 3, 4, 4, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 4), generator=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's "no batching rule, slower" notes
        got = torch.func.vmap(lambda z: getattr(SF, name)(z, target))(stacked)
    expected = torch.stack([getattr(SF, name)(z, target) for z in stacked])
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(segloss.LOSSES))
def test_torch_func_vmap_over_logits_and_targets_equals_a_loop_for_every_registry_loss(name):
    """An ensemble's losses (one target) and a stack of batches (logits and targets mapped). Lovász
    wrote its gradient in place, recall and OHEM read counts on the host, and the label check read a
    batched target: each failed under vmap. The boundary losses need their maps given when the target
    is mapped (scipy computes them on the host): a clear error says so."""
    import warnings

    g = torch.Generator().manual_seed(9)
    logits = torch.randn(3, 2, 4, 5, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (3, 2, 5, 5), generator=g)
    target[0, 0, 0, :2] = 255
    loss = segloss.create_loss(name, class_counts=[40, 30, 20, 10]).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's "no batching rule, slower" notes
        ensemble = torch.func.vmap(lambda z: loss(z, target[0]))(logits)
        torch.testing.assert_close(ensemble, torch.stack([loss(z, target[0]) for z in logits]), rtol=1e-9, atol=1e-12)
        if "boundary" in name:
            with pytest.raises(ValueError, match="compute the maps first"):
                torch.func.vmap(loss)(logits, target)
            return
        z = logits[0].clone().requires_grad_(True)
        loss(z, target[0]).backward()
        torch.testing.assert_close(torch.func.jacrev(lambda v: loss(v, target[0]))(logits[0]), z.grad)
        mapped = torch.func.vmap(loss)(logits, target)
        torch.testing.assert_close(mapped, torch.stack([loss(z, y) for z, y in zip(logits, target)]),
                                   rtol=1e-9, atol=1e-12)
        bad = target.clone()
        bad[2, 1, 3, 3] = 7
        with pytest.raises(ValueError, match=r"labels outside \[0, 4\) that are not ignore_index=255: \[7\]"):
            torch.func.vmap(loss)(logits, bad)
        nan = logits.clone()
        nan[1, 0, 2, 1, 1] = float("nan")
        with pytest.raises(ValueError, match="logits contain 1 NaN and 0 Inf values"):
            torch.func.vmap(lambda z: loss(z, target[0]))(nan)


INFERENCE_CALLS = {
    **{f"create_loss({name!r})": (lambda name=name: segloss.create_loss(name, class_counts=[40, 30, 20, 10]))
       for name in segloss.LOSSES},
    "cross_entropy weight list": lambda: lambda z, y: SF.cross_entropy(z, y, weight=[1.0, 2.0, 3.0, 4.0]),
    "focal_loss alpha list": lambda: lambda z, y: SF.focal_loss(z, y, alpha=[0.1, 0.2, 0.3, 0.4]),
    "soft Dice weight list": lambda: lambda z, y: region.soft_dice_loss(z, y, weight=[1.0, 2.0, 3.0, 4.0]),
}


@pytest.mark.parametrize("kernels", [False, True], ids=["eager", "triton"])
@pytest.mark.parametrize("name", list(INFERENCE_CALLS))
def test_every_loss_runs_under_inference_mode_as_under_no_grad(monkeypatch, name, kernels):
    """Lightning validates under ``torch.inference_mode()``: its tensors have no version counter
    (the class-vector check cached by version crashed on them: unified focal on every call)."""
    from segloss.kernels import cuda

    on_gpu = kernels and torch.cuda.is_available()  # the kernels compiled for the GPU, or in the interpreter
    monkeypatch.setattr(cuda, "_CPU_FOR_TESTS", kernels and not on_gpu)
    logits, target = random_batch(2, 4, (6, 6), scale=2.0, ignore_frac=0.1, seed=71)
    target[target == 255] = 0 if "boundary" in name else 255
    logits, target = (logits.cuda(), target.cuda()) if on_gpu else (logits, target)
    with torch.no_grad():
        want = INFERENCE_CALLS[name]()(logits, target)
    with torch.inference_mode():
        got = INFERENCE_CALLS[name]()(logits, target)
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_recall_loss_trains_after_a_first_call_under_inference_mode(momentum):
    """A sanity-check validation before training: the lazily sized running weights must not be
    created as an inference tensor, which the next training step could not update in place."""
    logits, target = random_batch(2, 4, (6, 6), seed=72)
    criterion = segloss.RecallLoss(momentum=momentum).eval()
    with torch.inference_mode():
        criterion(logits, target)
    assert not criterion.class_weights.is_inference()
    criterion.train()
    z = logits.clone().requires_grad_()
    criterion(z, target).backward()
    assert torch.isfinite(z.grad).all()


@pytest.mark.parametrize("name", list(segloss.LOSSES))
def test_every_registry_loss_built_under_inference_mode_trains_and_maps_its_gradient(name):
    """A loss built inside ``torch.inference_mode()`` (a validation or app helper building it lazily)
    holds no inference tensor that training or :func:`segloss.analysis.gradient_map` would save for
    backward or update in place (dice_boundary's schedule weights did: "Inference tensors cannot
    be saved for backward")."""
    from segloss.explain.analysis import gradient_map

    logits, target = random_batch(2, 4, (6, 6), scale=2.0, seed=73)
    with torch.inference_mode():
        criterion = segloss.create_loss(name, class_counts=[40, 30, 20, 10])
        inside = gradient_map(criterion, logits, target)
    assert not any(t.is_inference() for t in criterion.buffers())
    z = logits.clone().requires_grad_()
    criterion(z, target).backward()
    if hasattr(criterion, "schedule_step"):
        criterion.schedule_step()
    torch.testing.assert_close(inside, gradient_map(segloss.create_loss(name, class_counts=[40, 30, 20, 10]),
                                                    logits, target))
    assert torch.isfinite(z.grad).all()


def test_a_learnable_dual_focal_built_under_inference_mode_learns():
    """Its raw parameters are normal tensors: they get a gradient and an optimizer step moves them."""
    with torch.inference_mode():
        criterion = segloss.DualFocalLoss(learnable=("alpha", "gamma"))
    assert not any(p.is_inference() for p in criterion.parameters())
    before = [p.detach().clone() for p in criterion.parameters()]
    optimizer = torch.optim.SGD(criterion.parameters(), lr=0.5)
    logits, target = random_batch(2, 4, (6, 6), scale=2.0, seed=74)
    criterion(logits.requires_grad_(), target).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in criterion.parameters())
    optimizer.step()
    assert all(not torch.equal(p.detach(), b) for p, b in zip(criterion.parameters(), before))


MOVED_IN_INFERENCE = {**{name: (lambda name=name: segloss.create_loss(name, class_counts=[40, 30, 20, 10]))
                         for name in segloss.LOSSES},
                      "recall, momentum": lambda: segloss.RecallLoss(momentum=0.9),
                      "dual focal, learnable": lambda: segloss.DualFocalLoss(learnable=("alpha", "gamma"))}


@pytest.mark.parametrize("name", ["recall, momentum", "dice_boundary"])
def test_float32_state_moved_and_halved_inside_inference_mode_stays_a_normal_tensor(name):
    """``.to(device, torch.bfloat16)`` in one call inside ``inference_mode``: the running state kept in
    float32 is moved by hand after the conversion, outside it (``meta`` stands in for the accelerator)."""
    criterion = MOVED_IN_INFERENCE[name]()
    criterion(*random_batch(2, 4, (6, 6), seed=76))
    with torch.inference_mode():
        criterion = criterion.to("meta", torch.bfloat16)
    kept = [t for t in criterion.buffers() if t.dtype == torch.float32]
    assert kept and all(t.device.type == "meta" and not t.is_inference() for t in kept)


@pytest.mark.parametrize("name", list(MOVED_IN_INFERENCE))
def test_a_loss_converted_inside_inference_mode_still_trains(name):
    """``.double()`` (or ``.to(device)``) inside ``torch.inference_mode()`` remade the buffers and
    parameters as inference tensors: the next training step could not save them for backward
    (dice_boundary's schedule weights), and learnable parameters stopped learning."""
    criterion = MOVED_IN_INFERENCE[name]()
    logits, target = random_batch(2, 4, (6, 6), scale=2.0, seed=75)
    criterion(logits, target)  # lazily sized state (recall's running weights) exists before the move
    with torch.inference_mode():
        criterion = criterion.double()
    tensors = list(criterion.buffers()) + list(criterion.parameters())
    assert not any(t.is_inference() for t in tensors)
    before = [p.detach().clone() for p in criterion.parameters()]
    optimizer = torch.optim.SGD(criterion.parameters(), lr=0.5) if before else None
    z = logits.double().requires_grad_()
    for _ in range(2):  # a second step updates running state saved by the first
        criterion(z, target).backward()
        if hasattr(criterion, "schedule_step"):
            criterion.schedule_step()
    assert torch.isfinite(z.grad).all()
    if optimizer is not None:
        optimizer.step()
        assert all(not torch.equal(p.detach(), b) for p, b in zip(criterion.parameters(), before))


@pytest.mark.parametrize("name", list(segloss.LOSSES))
def test_every_registry_loss_gives_zero_on_an_empty_batch_and_names_a_bad_shape(name):
    """Unified focal reshaped its per-image sums before any check: an empty batch and 1-D logits
    gave torch's reshape and index errors; every loss now answers as the others do."""
    criterion = segloss.create_loss(name, class_counts=[40, 30, 20, 10])
    z = torch.zeros(0, 4, 3, 3, requires_grad=True)
    value = criterion(z, torch.zeros(0, 3, 3, dtype=torch.long))
    value.backward()
    assert value.item() == 0.0 and z.grad.shape == z.shape
    with pytest.raises(ValueError, match=r"logits must have shape \(N, C, \*spatial\), got \(4,\)"):
        criterion(torch.randn(4), torch.tensor(1))


@pytest.mark.parametrize("name", PIXELWISE + ["recall_loss"])
@pytest.mark.parametrize("shape", [(2, 5, 8, 8), (6, 5)])
def test_nan_logits_are_reported_with_the_callers_shape(name, shape):
    """Small images are folded into one for speed; the error names the logits the caller passed."""
    logits = torch.randn(shape)
    logits.view(-1)[3] = float("nan")
    target = torch.randint(0, 5, (shape[0], *shape[2:]))
    with pytest.raises(ValueError, match=rf"1 NaN and 0 Inf values \(shape {re.escape(str(shape))}\)"):
        getattr(SF, name)(logits, target)


@pytest.mark.parametrize("alpha", [0.25, np.float32(0.25), np.array(0.25), torch.tensor(0.25)],
                         ids=["float", "np.float32", "0-dim array", "0-dim tensor"])
def test_a_scalar_alpha_is_one_in_every_form_for_the_function_and_the_module(alpha):
    logits, target = random_batch(2, 4, (5, 5), seed=73)
    want = SF.focal_loss(logits, target, alpha=0.25)
    torch.testing.assert_close(SF.focal_loss(logits, target, alpha=alpha), want)
    torch.testing.assert_close(segloss.FocalLoss(alpha=alpha)(logits, target), want)
    torch.testing.assert_close(segloss.create_loss("focal", alpha=alpha)(logits, target), want)


def test_focal_loss_module_names_the_way_to_a_learnable_alpha():
    with pytest.raises(TypeError, match=r"FocalLoss keeps a fixed alpha.*functional.focal_loss"):
        segloss.FocalLoss(alpha=torch.tensor(0.25, requires_grad=True))


NUMPY_INDEX_CALLS = {
    "cross_entropy": lambda z, y, i: SF.cross_entropy(z, y, ignore_index=i),
    "focal_loss": lambda z, y, i: SF.focal_loss(z, y, ignore_index=i, alpha=[0.2, 0.3, 0.5]),
    "dual_focal_loss": lambda z, y, i: SF.dual_focal_loss(z, y, ignore_index=i, rho=1.5),
    "recall_loss": lambda z, y, i: SF.recall_loss(z, y, ignore_index=i),
    "batch_recall_weights": lambda z, y, i: SF.batch_recall_weights(z, y, ignore_index=i)[0],
    "recall_weighted_ce": lambda z, y, i: SF.recall_weighted_ce(z, y, torch.tensor([0.5, 1.0, 0.2]), ignore_index=i),
    "ohem_cross_entropy": lambda z, y, i: SF.ohem_cross_entropy(z, y, ignore_index=i),
    "boundary_loss": lambda z, y, i: SF.boundary_loss(z, y, ignore_index=i),
    "soft_dice_loss": lambda z, y, i: region.soft_dice_loss(z, y, ignore_index=i),
    "generalized_dice_loss": lambda z, y, i: region.generalized_dice_loss(z, y, ignore_index=i),
    "lovasz_softmax_loss": lambda z, y, i: region.lovasz_softmax_loss(z, y, ignore_index=i),
    "unified_focal_loss": lambda z, y, i: unified_focal_loss(z, y, ignore_index=i),
}


@pytest.mark.parametrize("name", list(NUMPY_INDEX_CALLS))
def test_every_loss_function_takes_a_numpy_integer_ignore_index_as_torch_does(name):
    logits, target = random_batch(2, 3, (6, 6), ignore_frac=0.3, seed=23)
    call = NUMPY_INDEX_CALLS[name]
    expected = call(logits, target, 255)
    for index in (np.int64(255), np.int32(255), np.uint8(255)):
        torch.testing.assert_close(call(logits, target, index), expected, rtol=0, atol=0)
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        call(logits, target, 255.0)


@pytest.mark.parametrize("name", sorted(segloss.LOSSES))
def test_small_integer_masks_hold_every_class_of_a_model_with_more_classes_than_their_dtype_counts(name):
    """C = 256 with uint8 masks (labels 0..255, ignore_index -1) and C = 130 with int8 ones: torch wraps
    the number of classes to the dtype in a comparison (uint8: ``label >= 256`` is ``label >= 0``), so
    every label was refused as outside [0, C)."""
    for num_classes, dtype, top in ((256, torch.uint8, 255), (130, torch.int8, 127)):
        counts = torch.ones(num_classes) if segloss.LOSSES[name].needs_class_counts else None
        loss = segloss.create_loss(name, ignore_index=-1, class_counts=counts)
        logits, target = random_batch(2, num_classes, (3, 4), seed=num_classes)
        target = target.clamp(max=top)
        target[0, 0, 0], target[1, 0, :2] = -1 if dtype == torch.int8 else top, top
        torch.testing.assert_close(loss(logits, target.to(dtype)), loss(logits, target))


@pytest.mark.parametrize("name", sorted(segloss.LOSSES))
def test_wide_unsigned_masks_give_the_loss_of_int64_ones(name):
    """torch has no comparison kernels for uint16, uint32 and uint64 (a 16-bit PNG's mask is uint16):
    every loss raised NotImplementedError ("lt_cpu")."""
    counts = [40, 30, 30, 28] if segloss.LOSSES[name].needs_class_counts else None
    loss = segloss.create_loss(name, class_counts=counts)
    logits, target = random_batch(2, 4, (6, 6), ignore_frac=0.2, seed=43)
    for dtype in (torch.uint16, torch.uint32, torch.uint64):
        torch.testing.assert_close(loss(logits, target.to(dtype)), loss(logits, target))


@pytest.mark.parametrize("name", sorted(segloss.LOSSES))
def test_small_integer_masks_compare_ignore_index_as_the_number_it_is(name):
    """torch wraps an ignore_index a uint8/int8 mask cannot hold (uint8: 255 == -1, 0 == 256), so
    one check ignored what the next indexed: an IndexError, or class 0 silently dropped."""
    counts = [40, 30, 30, 28] if segloss.LOSSES[name].needs_class_counts else None
    loss = segloss.create_loss(name, ignore_index=256, class_counts=counts)
    logits, target = random_batch(2, 4, (8, 8), scale=2.0, seed=41)
    want = loss(logits, target)  # int64 labels 0..3, nothing ignored
    torch.testing.assert_close(loss(logits, target.to(torch.uint8)), want)  # 256 is no uint8 value: nothing ignored
    void = target.clone()
    void[:, :2] = 255
    refused = segloss.create_loss(name, ignore_index=-1, class_counts=counts)
    for mask in (void, void.to(torch.uint8)):  # a PNG's void 255 is a label, not ignore_index=-1
        with pytest.raises(ValueError, match=r"not ignore_index=-1: \[255\]"):
            refused(logits, mask)
    signed = target.to(torch.int8)
    signed[:, :2] = -1
    ignores = segloss.create_loss(name, ignore_index=255, class_counts=counts)
    with pytest.raises(ValueError, match=r"not ignore_index=255: \[-1\]"):
        ignores(logits, signed)


@pytest.mark.parametrize("name", ["ce", "focal", "dice", "lovasz"])
def test_the_default_ignore_index_among_more_than_255_classes_warns(name):
    """With C > 255 the default ignore_index=255 silently dropped class 255's pixels from the loss."""
    import warnings

    logits, target = torch.randn(1, 300, 2, 2), torch.tensor([[[255, 3], [4, 5]]])
    with pytest.warns(UserWarning, match=r"ignore_index=255 .* C = 300 classes: pixels of class 255 are ignored") as seen:
        segloss.create_loss(name)(logits, target)
    assert {w.filename for w in seen} == {__file__}  # the caller's line, which a filter can name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # outside [0, C), or C <= 255: no warning
        segloss.create_loss(name, ignore_index=-100)(logits, target)
        segloss.create_loss(name)(logits[:, :255], target.clamp(max=254))


def test_focal_alpha_assigned_on_the_module_is_checked_as_the_constructor_checks_it():
    """``FocalLoss(alpha=0.25).alpha = 0.5`` raised torch's "cannot assign 'float' as buffer"; a vector
    that requires grad was silently detached while a 0-dim one was refused."""
    logits, target = random_batch(2, 3, (3, 3), seed=31)
    loss = segloss.FocalLoss(alpha=0.25)
    loss.alpha = 0.5
    torch.testing.assert_close(loss(logits, target), SF.focal_loss(logits, target, alpha=0.5))
    loss.alpha = [1.0, 2.0, 3.0]
    torch.testing.assert_close(loss(logits, target), SF.focal_loss(logits, target, alpha=[1.0, 2.0, 3.0]))
    assert torch.equal(loss.state_dict()["alpha"], torch.tensor([1.0, 2.0, 3.0]))
    loss.alpha = None
    torch.testing.assert_close(loss(logits, target), SF.focal_loss(logits, target))
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        loss.alpha = -1.0
    loss.alpha = torch.tensor(0.5)  # a schedule's 0-dim tensor stays one (no host read, one compiled graph)
    assert isinstance(loss.alpha, torch.Tensor) and loss.alpha.dim() == 0
    torch.testing.assert_close(loss(logits, target), SF.focal_loss(logits, target, alpha=0.5))
    with torch.device("meta"):  # meta-initialised, then loaded with assign=True: the checkpoint's tensor itself
        empty = segloss.FocalLoss(alpha=[0.0, 0.0, 0.0])
    stored = {"alpha": torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)}
    empty.load_state_dict(stored, assign=True)
    assert empty.alpha is stored["alpha"]
    for learnable in (torch.tensor(0.5, requires_grad=True), torch.ones(3, requires_grad=True)):
        with pytest.raises(TypeError, match="keeps a fixed alpha"):
            loss.alpha = learnable
        with pytest.raises(TypeError, match="keeps a fixed alpha"):
            segloss.FocalLoss(alpha=learnable)
