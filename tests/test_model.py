"""TinyUNet: shapes, size, gradients, validation, and that it can learn a batch."""

import pytest
import torch

from segloss.train.data import make_batch
from segloss.train.model import TinyUNet, count_parameters


@pytest.mark.parametrize("height, width", [(64, 64), (32, 48), (37, 50), (96, 40)])
def test_output_is_per_pixel_logits_of_the_input_size(height, width):
    torch.manual_seed(0)
    net = TinyUNet(in_channels=3, num_classes=9)
    out = net(torch.rand(2, 3, height, width))
    assert out.shape == (2, 9, height, width)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


def test_single_channel_input_and_tiny_images_in_eval_mode():
    net = TinyUNet(in_channels=1, num_classes=3, width=8).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 1, 5, 7)).shape == (1, 3, 5, 7)


def test_parameter_count_is_at_most_half_a_million():
    net = TinyUNet()
    n = count_parameters(net)
    assert n == sum(p.numel() for p in net.parameters())
    assert 50_000 < n <= 500_000
    assert count_parameters(TinyUNet(width=8)) < n


def test_count_parameters_skips_frozen_parameters_unless_asked():
    net = TinyUNet(width=8)
    total = count_parameters(net)
    net.head.requires_grad_(False)
    frozen = sum(p.numel() for p in net.head.parameters())
    assert count_parameters(net) == total - frozen
    assert count_parameters(net, trainable_only=False) == total


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = TinyUNet(num_classes=4, width=8)
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(net(x), torch.randint(0, 4, (2, 32, 32)))
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert bool(torch.isfinite(p.grad).all()) and float(p.grad.abs().sum()) > 0, name
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_a_few_adam_steps_reduce_the_loss_on_a_street_batch():
    torch.manual_seed(0)
    images, masks = make_batch("street", 4, 32, seed=0)
    net = TinyUNet(num_classes=9, width=8)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(images), masks)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_classes=1), ValueError, "num_classes must be >= 2, got 1"),
    (dict(width=0), ValueError, "width must be >= 1, got 0"),
    (dict(in_channels=3.0), TypeError, "in_channels must be an int"),
])
def test_bad_constructor_arguments_raise(kwargs, error, message):
    with pytest.raises(error, match=message):
        TinyUNet(**kwargs)


def test_bad_inputs_raise_with_the_offending_shape_or_dtype():
    net = TinyUNet(in_channels=3, num_classes=2, width=4)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\), got \(1, 4, 16, 16\)"):
        net(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"got \(3, 16, 16\)"):
        net(torch.rand(3, 16, 16))
    with pytest.raises(TypeError, match="floating point"):
        net(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="nn.Module"):
        count_parameters([torch.zeros(3)])
