"""Learnable Dual Focal parameters and recall with momentum on the Triton kernels."""

import pytest
import torch

from segloss import functional as SF
from segloss.kernels import cuda
from segloss.losses import reference
from conftest import random_batch
from triton_support import DEVICE, triton_path  # noqa: F401  (autouse)



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
