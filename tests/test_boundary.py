"""Boundary loss: signed distance maps equal a brute-force Euclidean distance to the region's
boundary (the authors' one_hot2dist convention), the loss is sum_c p_c phi_c averaged, and its
gradient is autograd's through the softmax."""

import itertools
import math

import pytest
import torch

import segloss
from conftest import layout_case, random_batch
from segloss.losses import region
from segloss.losses.boundary import boundary_loss, signed_distance_maps


def brute_force_phi(mask):
    """edt(outside) * outside - (edt(inside) - 1) * inside, by checking every pixel pair."""
    h, w = mask.shape
    cells = list(itertools.product(range(h), range(w)))
    phi = torch.zeros(h, w, dtype=torch.float64)
    for y, x in cells:
        inside = bool(mask[y, x])
        others = [math.dist((y, x), (v, u)) for v, u in cells if bool(mask[v, u]) != inside]
        nearest = min(others)
        phi[y, x] = -(nearest - 1.0) if inside else nearest
    return phi


def test_signed_distances_are_negative_inside_positive_outside_and_exact():
    target = torch.zeros(1, 6, 7, dtype=torch.long)
    target[0, 1:4, 2:6] = 1
    target[0, 5, 0] = 2
    phi = signed_distance_maps(target, 3)
    for c in range(3):
        torch.testing.assert_close(phi[0, c].double(), brute_force_phi(target[0] == c), rtol=1e-6, atol=1e-6)
    absent = signed_distance_maps(torch.zeros(1, 3, 3, dtype=torch.long), 3)
    assert absent[0, 1:].abs().sum() == 0  # absent classes: 0


def test_boundary_loss_is_the_distance_weighted_softmax_and_autograd_agrees():
    g = torch.Generator().manual_seed(71)
    logits = torch.randn(2, 3, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 6, 6), generator=g)
    target[0, 0, 0] = 255
    phi = signed_distance_maps(target, 3).double()
    value = boundary_loss(logits, target, distance_maps=phi)
    valid = target != 255
    expected = ((logits.softmax(1)[:, 1:] * phi[:, 1:]).sum(1) / 2)[valid].mean()
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda z: boundary_loss(z, target, distance_maps=phi), (logits,))
    module = segloss.losses.modules.BoundaryLoss(foreground_only=False)
    torch.testing.assert_close(module(logits, target),  # computes its own maps when none are given
                               boundary_loss(logits, target, distance_maps=phi, foreground_only=False))


def test_distance_maps_of_another_shape_are_refused():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="distance_maps must have the logits' shape"):
        boundary_loss(logits, target, distance_maps=torch.zeros(1, 3, 4, 5))


def test_registry_boundary_is_the_function_and_refuses_class_weights():
    g = torch.Generator().manual_seed(72)
    logits = torch.randn(2, 4, 7, 7, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (2, 7, 7), generator=g)
    torch.testing.assert_close(segloss.create_loss("boundary")(logits, target), boundary_loss(logits, target))
    torch.testing.assert_close(segloss.create_loss("boundary", classes="all", reduction="none")(logits, target),
                               boundary_loss(logits, target, foreground_only=False, reduction="none"))
    with pytest.raises(ValueError, match="takes no class weights"):
        segloss.create_loss("boundary", weight=[1.0, 2.0, 1.0, 1.0])


def test_dice_boundary_follows_the_authors_steal_weight_schedule_and_keeps_it_in_the_state_dict():
    """StealWeight: (a, b) -> (max(0.1, a - s), b + s) per epoch, from (1, b0)."""
    loss = segloss.create_loss("dice_boundary", boundary_weight=0.01, steal=0.05)
    expected_a, expected_b = 1.0, 0.01
    for _ in range(25):
        assert loss.current_weights() == pytest.approx({"region": expected_a, "boundary": expected_b}, abs=1e-6)
        loss.schedule_step()
        expected_a, expected_b = max(0.1, expected_a - 0.05), expected_b + 0.05
    assert loss.current_weights()["region"] == pytest.approx(0.1)  # the floor
    resumed = segloss.create_loss("dice_boundary", boundary_weight=0.01, steal=0.05)
    resumed.load_state_dict(loss.state_dict())
    assert resumed.current_weights() == loss.current_weights()
    g = torch.Generator().manual_seed(73)
    logits = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    a, b = loss.current_weights().values()
    expected = a * region.generalized_dice_loss(logits, target) + b * boundary_loss(logits, target)
    torch.testing.assert_close(loss.double()(logits, target), expected)
    with pytest.raises(ValueError, match="no per-pixel map"):
        segloss.create_loss("dice_boundary", reduction="none")


def test_distance_maps_skip_absent_classes_and_labels_beyond_num_classes():
    target = torch.full((1, 5, 5), 255, dtype=torch.long)
    target[0, 1:3, 1:3] = 1
    phi = signed_distance_maps(target, 3)
    assert phi[0, 0].abs().sum() == 0 and phi[0, 2].abs().sum() == 0
    assert phi[0, 1, 1, 1] == 0 and phi[0, 1, 0, 0] == pytest.approx(2 ** 0.5)


def test_an_ignore_index_inside_the_class_range_is_no_region():
    """ignore_index=2 with C = 3: its pixels are outside every class, as 255's are (they were
    scored as a region of class 2, and the loss changed with them)."""
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[0, 2:6, 2:6] = 1
    target[0, :, :2] = 2
    logits = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    relabelled = torch.where(target == 2, 255, target)
    assert signed_distance_maps(target, 3, ignore_index=2)[0, 2].abs().sum() == 0
    torch.testing.assert_close(signed_distance_maps(target, 3, ignore_index=2), signed_distance_maps(relabelled, 3))
    torch.testing.assert_close(boundary_loss(logits, target, ignore_index=2), boundary_loss(logits, relabelled))


@pytest.mark.parametrize("foreground_only", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "half"])
def test_the_blockwise_boundary_loss_equals_plain_autograd(foreground_only, layout):
    """One gradient buffer, the softmax recomputed in backward: same values and gradients as autograd
    through softmax * phi, for any upstream map, with ignored pixels, on odd layouts and in fp16."""
    logits, target, dtype, tolerance = layout_case(2, 4, 6, 9, layout, seed=74)
    g = torch.Generator().manual_seed(75)
    phi = signed_distance_maps(target, 4).double()
    z = logits.clone().requires_grad_()
    value = boundary_loss(z, target, distance_maps=phi, foreground_only=foreground_only, reduction="none")
    upstream = torch.randn(value.shape, generator=g, dtype=torch.float64)
    (value.double() * upstream).sum().backward()
    ref_z = logits.double().requires_grad_()
    scored = slice(1, None) if foreground_only else slice(None)
    count = 3 if foreground_only else 4
    expected = torch.where(target != 255, (ref_z.softmax(1)[:, scored] * phi[:, scored]).sum(1) / count, 0.0)
    (expected * upstream).sum().backward()
    torch.testing.assert_close(value.double(), expected.detach(), **tolerance)
    torch.testing.assert_close(z.grad.double(), ref_z.grad, **tolerance)
    assert z.grad.dtype == dtype


def test_boundary_loss_takes_a_double_backward_and_keeps_its_positional_arguments():
    g = torch.Generator().manual_seed(76)
    logits = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (2, 5, 5), generator=g)
    phi = signed_distance_maps(target, 3).double()
    assert torch.autograd.gradgradcheck(lambda z: boundary_loss(z, target, distance_maps=phi), (logits,))
    module = segloss.losses.modules.BoundaryLoss(False, 0, "sum")  # foreground_only, ignore_index, reduction
    assert (module.foreground_only, module.ignore_index, module.reduction) == (False, 0, "sum")


@pytest.mark.parametrize("name", ["boundary", "dice_boundary"])
def test_the_maps_are_computed_inside_torch_func_grad_too(name):
    """``torch.func.grad`` of a boundary loss that computes its own maps: every op on the labels
    inside the transform gives a wrapper without storage, which numpy could not read."""
    logits, target = random_batch(2, 3, (8, 8), seed=4, ignore_frac=0.1)
    loss = segloss.create_loss(name)
    got = torch.func.grad(lambda z: loss(z, target))(logits)
    z = logits.clone().requires_grad_(True)
    loss(z, target).backward()
    torch.testing.assert_close(got, z.grad)
    assert got.abs().sum() > 0


def test_given_maps_that_are_not_finite_are_refused_inside_torch_func_and_torch_compile():
    """Eagerly a NaN map is a ``ValueError``; inside ``torch.func`` (``grad``, ``vmap`` over an ensemble
    of logits or over the maps) the same, read from the transform's plain tensors; under
    ``torch.compile`` an assert in the graph, which names the maps, not the logits (NaN logits keep
    their own message)."""
    logits, target = random_batch(2, 3, (6, 7), seed=5)
    maps = signed_distance_maps(target, 3)
    bad = maps.clone()
    bad[1, 2, 3, 4] = float("nan")

    def loss(z, m):
        return boundary_loss(z, target, distance_maps=m)

    message = "distance_maps hold NaN or infinite values"
    torch.func.grad(loss)(logits, maps)  # good maps pass
    with pytest.raises(ValueError, match=message):
        torch.func.grad(loss)(logits, bad)
    with pytest.raises(ValueError, match=message):
        torch.func.vmap(loss, in_dims=(0, None))(torch.stack([logits, logits + 1]), bad)
    with pytest.raises(ValueError, match=message):
        torch.func.vmap(loss, in_dims=(None, 0))(logits, torch.stack([maps, bad]))
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(logits, maps), loss(logits, maps))
    with pytest.raises(RuntimeError, match=message):
        compiled(logits, bad)
    nan_logits = logits.clone()
    nan_logits[0, 1, 2, 2] = float("nan")
    with pytest.raises(RuntimeError, match="logits contain NaN or Inf"):
        compiled(nan_logits, maps)


def test_dice_boundary_takes_precomputed_maps_as_the_boundary_loss_does():
    """``dice_boundary(logits, target, maps)``: maps from a data loader, no distance transform per step,
    one compiled graph and ``vmap`` over the labels (whose error message says to pass them)."""
    logits, target = random_batch(2, 3, (8, 8), seed=6, ignore_frac=0.1)
    loss = segloss.create_loss("dice_boundary")
    loss.schedule_step()  # a boundary weight that shows
    maps = signed_distance_maps(target, 3)
    z, z_maps = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    computed, given = loss(z, target), loss(z_maps, target, maps)
    torch.testing.assert_close(given, computed)
    computed.backward()
    given.backward()
    torch.testing.assert_close(z_maps.grad, z.grad)
    torch.testing.assert_close(loss(logits, target, maps * 2) - given.detach(),
                               loss.current_weights()["boundary"] * boundary_loss(logits, target, distance_maps=maps))
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(logits, target, maps), given.detach())
    mapped = torch.func.vmap(loss)(logits.unsqueeze(1), target.unsqueeze(1), maps.unsqueeze(1))
    torch.testing.assert_close(mapped, torch.stack([loss(logits[i:i + 1], target[i:i + 1], maps[i:i + 1])
                                                    for i in range(2)]))


def test_the_schedule_stays_exact_in_a_bfloat16_model():
    """A model converted to bfloat16 converts the loss it holds; the schedule's weights stay float32
    (in bfloat16, 60 steps of 0.01 ended at 0.332 / 0.617 instead of 0.4 / 0.61)."""
    loss = segloss.create_loss("dice_boundary").to(torch.bfloat16)
    assert loss.loss_weights.dtype == torch.float32
    for _ in range(60):
        loss.schedule_step()
    assert loss.current_weights() == pytest.approx({"region": 0.4, "boundary": 0.61}, abs=1e-5)


def test_n_c_logits_without_maps_are_refused_and_with_maps_scored():
    """(N, C) logits have no image to measure distances in: the loss was a silent 0 with a zero gradient."""
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    for name in ("boundary", "dice_boundary"):
        with pytest.raises(ValueError, match=r"shape \(4, 3\) have no spatial dimensions"):
            segloss.create_loss(name)(logits, target)
    maps = torch.randn(4, 3)  # given maps (the Loss curves page's synthetic pixels): scored as before
    expected = (torch.softmax(logits, 1)[:, 1:] * maps[:, 1:]).sum(1).mean() / 2
    torch.testing.assert_close(boundary_loss(logits, target, distance_maps=maps), expected)
