"""Property tests: random shapes, ignore masks and extreme logits never give NaN or Inf."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import segloss

LOSS_PARAMS = {
    "ce": {},
    "weighted_ce": {"scheme": "effective", "class_counts": None},
    "focal": {"gamma": st.sampled_from([0.0, 0.3, 1.0, 2.0, 7.5])},
    "dual_focal": {"gamma": st.sampled_from([0.0, 0.4, 1.0, 3.0]), "rho": st.sampled_from([1.0, 1.001, 2.0]),
                   "beta": st.sampled_from([0.0, 1.0, 4.0])},
    "recall": {"momentum": st.sampled_from([0.0, 0.9])},
    "label_smoothing_ce": {"label_smoothing": st.sampled_from([0.0, 0.1, 0.5])},
    "ohem": {"threshold": st.sampled_from([0.05, 0.7, 1.0]), "min_kept": st.sampled_from([0.0, 0.1, 1.0])},
    "boundary": {"classes": st.sampled_from(["foreground", "all"])},
}


@st.composite
def segmentation_case(draw):
    n = draw(st.integers(1, 3))
    c = draw(st.integers(2, 6))
    spatial = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=3)))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.0, 1.0, 30.0, 100.0]))
    logits = scale * torch.randn(n, c, *spatial, generator=g).sign() * torch.rand(n, c, *spatial, generator=g)
    if draw(st.booleans()):  # saturate: one class at +100, the rest at -100
        winner = torch.randint(0, c, (n, *spatial), generator=g)
        logits = torch.nn.functional.one_hot(winner, c).movedim(-1, 1).float() * 200 - 100
    target = torch.randint(0, c, (n, *spatial), generator=g)
    ignore = torch.rand(target.shape, generator=g) < draw(st.sampled_from([0.0, 0.5, 1.0]))
    target[ignore] = 255
    dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16]))
    return logits.to(dtype), target, c


@settings(max_examples=60, deadline=None)
@given(case=segmentation_case(), name=st.sampled_from(sorted(LOSS_PARAMS)), data=st.data())
def test_every_loss_is_finite_in_value_and_gradient(case, name, data):
    logits, target, c = case
    params = {k: (data.draw(v) if isinstance(v, st.SearchStrategy) else v) for k, v in LOSS_PARAMS[name].items()}
    if "class_counts" in params:
        params["class_counts"] = list(range(1, c + 1))
    reduction = data.draw(st.sampled_from(["mean", "sum", "none"]))
    module = segloss.create_loss(name, reduction=reduction, **params)
    z = logits.clone().requires_grad_()
    if name in ("boundary", "dice_boundary") and logits.dim() == 2:  # (N, C): no image to measure distances in
        with pytest.raises(ValueError, match="no spatial dimensions"):
            module(z, target)
        return
    value = module(z, target)
    assert value.shape == (() if reduction != "none" else target.shape)
    assert torch.isfinite(value).all()
    if reduction == "none":
        assert torch.all(value[target == 255] == 0)
    value.sum().backward()
    assert torch.isfinite(z.grad.float()).all()
    if bool((target == 255).all()):
        assert torch.all(value == 0) and torch.all(z.grad == 0)


REGION_PARAMS = {
    "dice": {"smooth": [0.0, 1.0], "per_image": ["batch", "image"]},
    "jaccard": {"smooth": [0.0, 1.0], "per_image": ["batch", "image"]},
    "tversky": {"alpha": [0.0, 0.3, 1.0], "beta": [0.0, 0.7, 1.0], "smooth": [0.0, 1.0]},
    "focal_tversky": {"alpha": [0.0, 0.3], "gamma": [0.1, 0.75, 2.0], "smooth": [0.0, 1.0],
                      "per_image": ["batch", "image"]},
    "lovasz": {"per_image": ["batch", "image"]},
    "dice_ce": {"dice_weight": [0.0, 1.0, 10.0], "smooth": [0.0, 1.0]},
    "dice_focal": {"gamma": [0.0, 2.0], "dice_weight": [1.0], "per_image": ["batch", "image"]},
    "generalized_dice": {"smooth": [0.0, 1e-5, 1.0], "per_image": ["batch", "image"]},
    "unified_focal": {"delta": [0.0, 0.6, 1.0], "gamma": [0.0, 0.5, 1.0], "per_image": ["batch", "image"]},
    "dice_boundary": {"region": ["generalized_dice", "dice"], "boundary_weight": [0.0, 1.0],
                      "classes": ["foreground", "all"], "per_image": ["batch", "image"]},
}
UNBOUNDED = {"dice_ce", "dice_focal", "unified_focal", "dice_boundary"}  # sums with a pixel-wise term


@settings(max_examples=80, deadline=None)
@given(case=segmentation_case(), name=st.sampled_from(sorted(REGION_PARAMS)), data=st.data())
def test_every_region_loss_is_finite_and_bounded_in_value_and_gradient(case, name, data):
    logits, target, c = case
    params = {k: data.draw(st.sampled_from(v)) for k, v in REGION_PARAMS[name].items()}
    weighted = data.draw(st.booleans()) and name != "unified_focal"  # its delta weighs the classes
    weight = torch.linspace(0.5, 2.0, c) if weighted else None
    reduction = data.draw(st.sampled_from(["mean", "sum"]))
    module = segloss.create_loss(name, weight=weight, reduction=reduction, **params)
    z = logits.clone().requires_grad_()
    if name in ("boundary", "dice_boundary") and logits.dim() == 2:  # (N, C): no image to measure distances in
        with pytest.raises(ValueError, match="no spatial dimensions"):
            module(z, target)
        return
    value = module(z, target)
    assert value.shape == () and torch.isfinite(value)
    if reduction == "mean" and name not in UNBOUNDED:
        assert -1e-6 <= value.item() <= 1 + 1e-6  # a mean of 1 - score per class
    value.backward()
    assert torch.isfinite(z.grad.float()).all()
    if bool((target == 255).all()):
        assert value.item() == 0 and torch.all(z.grad == 0)
