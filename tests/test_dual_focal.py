"""Dual Focal Loss: the authors' formula, its identity at the defaults, brute force, gradients."""

import math

import pytest
import torch

import segloss.losses.functional as SF
from conftest import random_batch


def brute_force_dfl(logits, target, alpha=1.0, beta=1.0, gamma=1.0, rho=1.0):
    """The formula term by term in the logits' dtype, straight from probabilities (no tricks)."""
    p = torch.softmax(logits, 1)
    y = torch.nn.functional.one_hot(target, p.shape[1]).movedim(-1, 1).to(p.dtype)
    terms = -y * torch.log(p) - beta * (1 - y) * torch.log(rho - p) + alpha * (y - p).abs() ** gamma
    return terms.sum(1)


def test_dfl_identity_at_authors_defaults():
    logits, target = random_batch(2, 5, (4, 4), seed=1)
    p = torch.softmax(logits.double(), 1)
    p_t = p.gather(1, target.unsqueeze(1)).squeeze(1)
    others = torch.log(1 - p).sum(1) - torch.log(1 - p_t)
    expected = -torch.log(p_t) - others + 2 * (1 - p_t)
    torch.testing.assert_close(SF.dual_focal_loss(logits.double(), target, reduction="none"), expected)


def test_dfl_hand_computed_two_class_pixel():
    logits = torch.tensor([[0.0, math.log(3.0)]])  # p = (0.25, 0.75), true class 1
    target = torch.tensor([1])
    # defaults: -log .75 - log(1 - .25) + 2 * .25
    assert SF.dual_focal_loss(logits, target).item() == pytest.approx(2 * -math.log(0.75) + 0.5, rel=1e-6)
    # alpha 2, beta .5, gamma 2, rho 1.5: -log .75 - .5 log(1.25) + 2 (.25^2 + .25^2)
    expected = -math.log(0.75) - 0.5 * math.log(1.25) + 2 * 0.125
    value = SF.dual_focal_loss(logits, target, alpha=2.0, beta=0.5, gamma=2.0, rho=1.5)
    assert value.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("params", [{}, {"alpha": 2.0, "beta": 0.5, "gamma": 0.5, "rho": 1.2}, {"gamma": 3.0}])
def test_dfl_matches_float64_brute_force_at_large_logits(params):
    """Margins of 20-30 saturate float32 probabilities (1 - p rounds to 0) but not float64's."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 4, generator=g, dtype=torch.float64)
    winner = torch.randint(0, 4, (64,), generator=g)
    logits[torch.arange(64), winner] += 20 + 10 * torch.rand(64, generator=g, dtype=torch.float64)
    target = torch.where(torch.rand(64, generator=g) < 0.5, winner, torch.randint(0, 4, (64,), generator=g))
    ours = SF.dual_focal_loss(logits.float(), target, reduction="none", **params)
    expected = brute_force_dfl(logits, target, **params)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-4)
    if params.get("rho", 1.0) == 1.0:  # the same formula in float32 without the log-space tricks breaks
        assert not torch.isfinite(brute_force_dfl(logits.float(), target, **params)).all()


@pytest.mark.parametrize("params", [{}, {"alpha": 0.7, "beta": 1.5, "gamma": 0.5, "rho": 1.3}, {"gamma": 2.5}])
def test_dfl_gradcheck_float64(params):
    logits, target = random_batch(2, 3, (2, 3), ignore_frac=0.2, dtype=torch.float64, seed=2)
    logits.requires_grad_()
    weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    fn = lambda z: SF.dual_focal_loss(z, target, weight=weight, **params)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (logits,))


def test_dfl_parameter_gradients_match_closed_forms():
    logits, target = random_batch(3, 4, (), seed=3)
    logits = logits.double()
    params = {name: torch.tensor(v, dtype=torch.float64, requires_grad=True)
              for name, v in {"alpha": 1.5, "beta": 0.8, "gamma": 1.7, "rho": 1.4}.items()}
    SF.dual_focal_loss(logits, target, reduction="sum", **params).backward()
    p = torch.softmax(logits, 1)
    y = torch.nn.functional.one_hot(target, 4).double()
    a, b, g, r = (params[k].detach() for k in ("alpha", "beta", "gamma", "rho"))
    err = (y - p).abs()
    torch.testing.assert_close(params["gamma"].grad, (a * err**g * torch.log(err)).sum())
    torch.testing.assert_close(params["alpha"].grad, (err**g).sum())
    torch.testing.assert_close(params["beta"].grad, (-(1 - y) * torch.log(r - p)).sum())
    torch.testing.assert_close(params["rho"].grad, (-b * (1 - y) / (r - p)).sum())
    assert params["gamma"].grad < 0  # minimising the loss pushes gamma up (documented degeneracy)


@pytest.mark.parametrize("rho, beta_falls", [(1.0, True), (1.5, False), (3.0, False)])
def test_learnable_beta_falls_only_while_rho_is_near_one(rho, beta_falls):
    """The documented drift of learnable parameters: alpha always falls and rho rises, but beta falls
    only while rho - p_c < 1; with confident predictions (false classes' p_c small) and rho = 1.5
    it rises (the module docstring, README and registry help said "alpha and beta down" before)."""
    from segloss.losses.modules import DualFocalLoss

    logits, target = random_batch(2, 4, (6, 6), scale=4.0, seed=5)
    loss = DualFocalLoss(alpha=1.0, beta=1.0, gamma=1.0, rho=rho, learnable=("alpha", "beta", "rho"))
    loss(logits, target).backward()
    grads = {name: param.grad.item() for name, param in loss.named_parameters()}
    beta_grad = next(g for name, g in grads.items() if "beta" in name)
    assert (beta_grad > 0) == beta_falls, grads  # gradient descent moves beta down iff its gradient is > 0
    assert next(g for name, g in grads.items() if "alpha" in name) > 0
    assert next(g for name, g in grads.items() if "rho" in name) < 0


def test_dfl_saturated_logits_are_finite_in_value_and_gradient():
    logits = torch.tensor([[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0], [60.0, 60.0, -60.0]],
                          requires_grad=True)
    target = torch.tensor([1, 1, 2])
    for params in ({}, {"gamma": 0.5}, {"rho": 1.0001, "gamma": 3.0}):
        logits.grad = None
        value = SF.dual_focal_loss(logits, target, **params)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    # pixel 0: -log p_t = 200, -log(1 - p_0) = 200 - log 2, focal term 2 (defaults)
    per_pixel = SF.dual_focal_loss(logits, target, reduction="none")
    assert per_pixel[0].item() == pytest.approx(400 - math.log(2) + 2, rel=1e-6)


def test_dfl_false_class_term_grows_with_probability_on_a_confusing_class():
    target = torch.tensor([0, 0])
    spread = torch.log(torch.tensor([[0.6, 0.2, 0.2], [0.6, 0.4, 1e-6]]))  # same p_t, different false mass
    values = SF.dual_focal_loss(spread, target, reduction="none", alpha=0.0)
    ce = SF.cross_entropy(spread, target, reduction="none")
    torch.testing.assert_close(ce[0], ce[1])
    assert values[1] > values[0]


@pytest.mark.parametrize("name, value, message", [
    ("rho", 0.9, "rho must be >= 1.0"), ("beta", -1.0, "beta must be >= 0"),
    ("gamma", float("inf"), "gamma must be finite"), ("alpha", -0.1, "alpha must be >= 0"),
])
def test_dfl_rejects_bad_parameters(name, value, message):
    logits, target = random_batch(1, 3, (2,))
    with pytest.raises(ValueError, match=message):
        SF.dual_focal_loss(logits, target, **{name: value})


def test_a_tensor_rho_of_exactly_one_has_a_finite_gradient():
    """d DFL / d rho = -beta sum_{c != t} 1 / (rho - p_c): finite at rho = 1 (was NaN from log(rho - 1))."""
    from segloss.losses import reference

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 4, 3, 3, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, 4, (2, 3, 3), generator=g)
    grads = []
    for rho in (1.0, 1.0 + 1e-9):
        r = torch.tensor(rho, dtype=torch.float64, requires_grad=True)
        value = reference.dual_focal_loss(logits, target, rho=r)
        value.backward()
        grads.append((value.detach(), r.grad))
    assert torch.isfinite(grads[0][1])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-8)  # the limit from above


def test_a_fixed_parameter_set_on_the_module_is_used_and_a_learnable_one_refuses_it():
    """``loss.gamma = 3.0`` between steps (the schedule every other loss takes) silently did nothing:
    the module kept its parameters as ``fixed_gamma``, so the assignment made an unused attribute."""
    import segloss

    logits, target = random_batch(2, 4, (3, 3), seed=21)
    loss = segloss.DualFocalLoss(gamma=1.0, rho=1.5)
    loss.gamma, loss.beta = 3.0, 0.5
    torch.testing.assert_close(loss(logits, target),
                               SF.dual_focal_loss(logits, target, gamma=3.0, beta=0.5, rho=1.5))
    assert loss.current_params() == {"alpha": 1.0, "beta": 0.5, "gamma": 3.0, "rho": 1.5}
    loss.gamma = torch.tensor(2.5)  # a 0-dim tensor: torch.compile keeps one graph as it changes
    torch.testing.assert_close(loss(logits, target),
                               SF.dual_focal_loss(logits, target, gamma=2.5, beta=0.5, rho=1.5))
    with pytest.raises(ValueError, match="rho must be >= 1"):
        loss.rho = 0.5
    import copy

    twin = copy.copy(loss)  # a shallow copy's schedule is its own
    twin.gamma = 1.0
    assert loss.current_params()["gamma"] == 2.5 and twin.current_params()["gamma"] == 1.0
    learned = segloss.DualFocalLoss(learnable=("gamma",))
    with pytest.raises(AttributeError, match="learns gamma"):
        learned.gamma = 2.0
    assert learned.gamma.requires_grad  # read: the bounded value the loss uses


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_learned_parameters_stay_float32_in_a_half_precision_model(dtype):
    """``model.to(torch.bfloat16)`` with the loss as a submodule (as DDP wants it) rounded a learned
    gamma of 2.0 to 1.992 and rho 1.0009 to 1.0; the parameter must stay the optimizer's."""
    import segloss

    loss = segloss.DualFocalLoss(gamma=2.0, rho=1.5, learnable=("gamma", "rho"))
    before, raw = loss.current_params(), loss.raw_gamma
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.1)
    model = torch.nn.ModuleDict({"head": torch.nn.Conv2d(3, 4, 1), "loss": loss}).to(dtype)
    assert model["head"].weight.dtype == dtype
    assert loss.raw_gamma is raw and loss.raw_gamma.dtype == loss.raw_rho.dtype == torch.float32
    assert loss.current_params() == before
    logits = model["head"](torch.randn(2, 3, 4, 4, dtype=dtype))
    loss(logits, torch.randint(0, 4, (2, 4, 4))).backward()
    optimizer.step()
    assert loss.current_params()["gamma"] != before["gamma"]
    model.double()  # float64 applies as usual
    assert loss.raw_gamma.dtype == torch.float64
