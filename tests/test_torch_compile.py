"""A training step compiled with ``torch.compile`` may call any registry loss (as users do).

The losses' fused kernels are autograd Functions with host-side checks, so dynamo breaks the
graph around them; the compiled step must still give the eager step's loss and parameter
gradients. One registry loss of each kind of kernel (fused CE/focal and Dual Focal passes, recall's
counts, region sums, Lovász's sort, scipy's distance maps, a weighted sum), its default
parameters, on a tiny convolution.
"""

import warnings

import pytest
import torch

import segloss


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("name", ["weighted_ce", "dual_focal", "recall", "dice", "lovasz", "dice_boundary"])
def test_a_compiled_training_step_equals_the_eager_one(name, device):
    """On CUDA the losses run Triton kernels inside their autograd Functions: compiled too."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 3, padding=1).to(device)
    criterion = segloss.create_loss(name, **({"weight": [1.0, 2.0, 0.5, 1.0]} if name == "weighted_ce" else {}))
    criterion = criterion.to(device)
    x = torch.randn(2, 3, 12, 12, device=device)
    y = torch.randint(0, 4, (2, 12, 12), device=device)
    y[0, :2] = 255

    def step():
        model.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    eager_loss, eager_grads = step()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled_loss, compiled_grads = torch.compile(step)()
    untraceable = [str(w.message)[:120] for w in caught if "does not know how to trace" in str(w.message)]
    assert not untraceable  # functorch's C checks warned on every compiled step
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
