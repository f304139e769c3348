"""Lovász-Softmax's lean autograd function equals the loss by differentiable torch ops and the
authors' algorithm, in value and gradient, on every layout, dtype and reduction."""

import gc

import pytest
import torch

from segloss.kernels.lovasz import LovaszSoftmax, lovasz_gradient, lovasz_rows_autograd
from segloss.losses import region
from conftest import random_batch
from test_kernel_memory import _profiled_peak


def _values_and_gradients(fn, logits, target, upstream):
    z = logits.detach().clone().requires_grad_()
    out = fn(z, target)
    (out * upstream).sum().backward()
    return out.detach(), z.grad


@pytest.mark.parametrize("per_image", [False, True], ids=["batch", "image"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "3d", "flat"])
def test_the_function_equals_the_autograd_loss_in_value_and_gradient(per_image, layout):
    spatial = {"3d": (3, 4, 5), "flat": (17,)}.get(layout, (5, 6))
    logits, target = random_batch(3, 5, spatial, ignore_frac=0.2, dtype=torch.float64, seed=11)
    if layout == "channels_last":
        logits = logits.to(memory_format=torch.channels_last)
    rows = 3 if per_image else 1
    upstream = torch.randn(rows, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got, got_grad = _values_and_gradients(lambda z, t: LovaszSoftmax.apply(z, t, 255, per_image), logits, target,
                                          upstream)
    want, want_grad = _values_and_gradients(lambda z, t: lovasz_rows_autograd(z, t, 255, per_image), logits, target,
                                            upstream)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-12, atol=1e-12)
    if layout == "channels_last":
        assert got_grad.is_contiguous(memory_format=torch.channels_last)


def _berman_lovasz_rows(errors, fg):
    """The authors' ``lovasz_softmax_flat`` for each row, one pixel at a time in float64."""
    out = []
    for e_row, f_row in zip(errors.tolist(), fg.tolist()):
        order = sorted(range(len(e_row)), key=lambda k: -e_row[k])
        gts = sum(f_row)
        inter, union, previous, total = gts, gts, 0.0, 0.0
        for k in order:
            inter -= f_row[k]
            union += 1.0 - f_row[k]
            jaccard = 1.0 - inter / union if union else 0.0
            total += e_row[k] * (jaccard - previous)
            previous = jaccard
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def test_over_the_batch_each_class_ranks_every_valid_pixel_of_the_batch():
    logits, target = random_batch(2, 3, (4, 5), ignore_frac=0.25, dtype=torch.float64, seed=12)
    probs = logits.softmax(1).movedim(1, 0).reshape(3, -1)
    labels = target.reshape(-1)
    keep = labels != 255
    fg = (labels[keep].unsqueeze(0) == torch.arange(3).unsqueeze(1)).double()
    expected = _berman_lovasz_rows((fg - probs[:, keep]).abs(), fg)
    torch.testing.assert_close(LovaszSoftmax.apply(logits, target, 255, False)[0], expected, rtol=1e-12, atol=1e-12)


def test_the_jaccard_gradient_matches_the_authors_running_sums():
    fg = torch.rand(4, 50, generator=torch.Generator().manual_seed(3)) < 0.3
    fg[3] = False  # a class with no pixel: J_k = 1 from the first pixel on
    g = lovasz_gradient(fg, torch.float64)
    f = fg.double()
    gts = f.sum(1, keepdim=True)
    jaccard = 1.0 - (gts - f.cumsum(1)) / (gts + (1.0 - f).cumsum(1))
    expected = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-14)
    assert g[3, 0] == 1 and g[3, 1:].abs().max() == 0
    assert lovasz_gradient(torch.zeros(2, 0, dtype=torch.bool), torch.float32).shape == (2, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_logits_are_computed_in_float32_and_the_gradient_keeps_their_dtype(dtype):
    logits, target = random_batch(2, 4, (6, 6), ignore_frac=0.1, seed=13)
    z = logits.to(dtype).clone().requires_grad_()
    loss = region.lovasz_softmax_loss(z, target)
    loss.backward()
    ref = z.detach().double().requires_grad_()
    expected = region.lovasz_softmax_loss(ref, target)
    expected.backward()
    assert loss.dtype == torch.float32 and z.grad.dtype == dtype
    torch.testing.assert_close(loss.double(), expected.detach(), rtol=1e-5, atol=1e-6)
    tolerance = {torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float16: 1e-3}[dtype]
    torch.testing.assert_close(z.grad.double(), ref.grad, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("per_image", [False, True])
def test_a_second_backward_sorts_again_and_gives_the_same_gradient(reduction, per_image):
    logits, target = random_batch(2, 4, (5, 5), ignore_frac=0.2, dtype=torch.float64, seed=14)
    z = logits.requires_grad_()
    loss = region.lovasz_softmax_loss(z, target, per_image=per_image, reduction=reduction,
                                      weight=[1.0, 2.0, 0.5, 1.5])
    out = loss.nan_to_num().sum()
    (first,) = torch.autograd.grad(out, z, retain_graph=True)
    (second,) = torch.autograd.grad(out, z)
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_double_backward_and_torch_func_use_the_autograd_loss():
    logits, target = random_batch(2, 3, (4, 4), ignore_frac=0.2, dtype=torch.float64, seed=15)
    assert torch.autograd.gradgradcheck(lambda z: region.lovasz_softmax_loss(z, target), (logits.requires_grad_(),))
    by_func = torch.func.grad(lambda z: region.lovasz_softmax_loss(z, target, per_image=True))(logits.detach())
    z = logits.detach().requires_grad_()
    region.lovasz_softmax_loss(z, target, per_image=True).backward()
    torch.testing.assert_close(by_func, z.grad, rtol=1e-12, atol=1e-12)


def test_empty_and_all_ignored_batches_give_zero_and_a_zero_gradient():
    for logits, target in [(torch.randn(0, 3, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long)),
                           (torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 255))]:
        for per_image in (False, True):
            z = logits.clone().requires_grad_()
            loss = region.lovasz_softmax_loss(z, target, per_image=per_image)
            loss.backward()
            assert loss.item() == 0 and z.grad.abs().sum() == 0
    logits, target = random_batch(2, 3, (4, 4), seed=17)
    target[1] = 255  # an image of ignored pixels: no gradient, whatever the upstream
    z = logits.requires_grad_()
    LovaszSoftmax.apply(z, target, 255, True).sum().backward()
    assert z.grad[1].abs().max() == 0 and z.grad[0].abs().max() > 0


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.int32])
def test_narrow_integer_masks_give_the_int64_loss(dtype):
    logits, target = random_batch(2, 3, (4, 5), ignore_frac=0.2, dtype=torch.float64, seed=19)
    for per_image in (False, True):
        want, want_grad = _values_and_gradients(
            lambda z, t: region.lovasz_softmax_loss(z, t, per_image=per_image), logits, target, 1.0)
        got, got_grad = _values_and_gradients(
            lambda z, t: region.lovasz_softmax_loss(z, t, per_image=per_image), logits, target.to(dtype), 1.0)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=0)


def test_ties_split_the_gradient_but_not_the_loss():
    """Saturated logits tie many errors (0 or 1 exactly): the loss equals the authors' value."""
    logits = torch.tensor([[[30.0, 30.0, -30.0, -30.0, 0.0], [-30.0, -30.0, 30.0, 30.0, 0.0]]])
    target = torch.tensor([[0, 1, 1, 0, 1]])
    got = LovaszSoftmax.apply(logits.double(), target, 255, False)[0]
    probs = logits.double().softmax(1)[0]
    fg = (target[0].unsqueeze(0) == torch.arange(2).unsqueeze(1)).double()
    torch.testing.assert_close(got, _berman_lovasz_rows((fg - probs).abs(), fg), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("per_image", [False, True], ids=["batch", "image"])
def test_forward_and_backward_take_about_six_logits_of_memory(per_image):
    """Peak extra memory of a forward + backward in units of the float32 logits: the sort's keys
    and 64-bit order (and the CPU sort's own buffer), the ranks' counts, the gradient. The autograd
    loss keeps its intermediates (9.5 units here; 15 for the version this replaced)."""
    logits, target = random_batch(4, 19, (32, 64), ignore_frac=0.1, seed=16)

    def peak(fn):
        z = logits.clone().requires_grad_()
        gc.collect()
        return _profiled_peak(lambda: fn(z, target).sum().backward()) / (logits.numel() * 4)

    lean = peak(lambda z, t: LovaszSoftmax.apply(z, t, 255, per_image))
    full = peak(lambda z, t: lovasz_rows_autograd(z, t, 255, per_image))
    assert lean <= 6.5 and lean < 0.7 * full, (lean, full)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_on_cuda_it_equals_the_cpu_loss(dtype):
    logits, target = random_batch(2, 19, (64, 96), ignore_frac=0.1, seed=18)
    logits = logits.to(dtype)
    for per_image in (False, True):
        got, got_grad = _values_and_gradients(lambda z, t: region.lovasz_softmax_loss(z, t, per_image=per_image),
                                              logits.cuda(), target.cuda(), 1.0)
        want, want_grad = _values_and_gradients(lambda z, t: region.lovasz_softmax_loss(z, t, per_image=per_image),
                                                logits, target, 1.0)
        assert got.is_cuda and got_grad.is_cuda and got_grad.dtype == dtype
        torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-6)
        if dtype == torch.bfloat16:
            torch.testing.assert_close(got_grad.cpu().double(), want_grad.double(), rtol=1e-2, atol=1e-2)
            continue
        # the gradient is piecewise in the errors' order: two errors within an ulp of each other (CUDA's
        # softmax may differ from the CPU's by one) can swap ranks and trade Lovász weights (~1/|union|);
        # all but such pairs must agree to float32's precision
        diff = (got_grad.cpu().double() - want_grad.double()).abs()
        agree = diff <= 1e-6 + 1e-5 * want_grad.double().abs()
        assert agree.double().mean() > 0.999 and diff.max() < 1e-3, (agree.double().mean(), diff.max())


def test_per_image_mean_leaves_out_an_image_whose_pixels_are_all_ignored():
    """Documented difference from Berman et al.'s reference (which counts such an image as 0):
    a void crop in the batch neither lowers the loss nor scales the others' gradients down."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 4, 5, 6, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (3, 5, 6), generator=g)
    target[1] = 255
    both = region.lovasz_softmax_loss(logits, target, per_image=True)
    alone = [region.lovasz_softmax_loss(logits[i:i + 1], target[i:i + 1], per_image=True) for i in (0, 2)]
    torch.testing.assert_close(both, (alone[0] + alone[1]) / 2)
