"""Boundary loss: signed distance maps equal a brute-force Euclidean distance to the region's
boundary (the authors' one_hot2dist convention), the loss is sum_c p_c phi_c averaged, and its
gradient is autograd's through the softmax."""

import itertools
import math

import pytest
import torch

import segloss
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
