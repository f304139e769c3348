"""The boundary loss's Triton kernels (``segloss.kernels.cuda_boundary``) against a float64 autograd
reference written here from the formula ``sum_{c in K} p_c phi_c`` (mean over valid pixels and
scored classes): values, gradients, every reduction, ignored pixels, layouts, shapes, dtypes and
maps in any real dtype. In triton's interpreter on CPU tensors here, on CUDA where there is one."""

import pytest
import torch

from conftest import random_batch
from segloss import functional as SF
from segloss.kernels import cuda, cuda_boundary
from segloss.losses.boundary import _DistanceWeightedSoftmax, signed_distance_maps
from triton_support import DEVICE, small_tiles, triton_path  # noqa: F401  (autouse)


def reference(logits, target, maps, foreground_only=True, ignore_index=255, reduction="mean"):
    """Plain float64 autograd of the formula."""
    valid = target != ignore_index
    first = 1 if foreground_only else 0
    probs = logits.double().softmax(dim=1)[:, first:]
    phi = torch.where(valid.unsqueeze(1), maps.double()[:, first:], 0.0)
    pixel = torch.where(valid, (probs * phi).sum(dim=1), 0.0) / (logits.shape[1] - first)
    if reduction == "none":
        return pixel
    if reduction == "sum":
        return pixel.sum()
    return pixel.sum() / valid.sum().clamp_min(1)


def both(logits, target, maps, upstream=None, **kwargs):
    """``((value, grad) of the kernel path, (value, grad) of the reference)``, all on the CPU, float64."""
    results = []
    for route, z0, y, m in (("kernel", logits.to(DEVICE), target.to(DEVICE), maps.to(DEVICE)),
                            ("reference", logits.double().cpu(), target.cpu(), maps.cpu())):
        z = z0.detach().clone().requires_grad_()
        value = SF.boundary_loss(z, y, distance_maps=m, **kwargs) if route == "kernel" else reference(z, y, m, **kwargs)
        weight = torch.ones_like(value) if upstream is None else upstream.to(value)
        (value * weight).sum().backward()
        results.append((value.detach().double().cpu(), z.grad.double().cpu()))
    return results


def assert_close(got, want, scale=None):
    """Within 1e-5 of the reference, relative to ``scale`` (default: the largest value): float32 cancels
    in ``phi - v`` and in sums of terms of both signs, so a loss near 0 is compared at its terms' scale
    (:func:`magnitude`)."""
    scale = want.abs().max() if scale is None else scale
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(scale.clamp_min(1e-3)))


def magnitude(logits, target, maps, **kwargs):
    """The largest value the loss's terms reach in size: the reference with ``|phi|`` (no cancellation)."""
    return reference(logits.double().cpu(), target.cpu(), maps.double().cpu().abs(), **kwargs).abs().max()


def noise(shape, seed, uniform=False, dtype=torch.float32):
    """Seeded random values (torch's global generator starts from a random seed in every process)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=dtype) if uniform else torch.randn(shape, generator=g, dtype=dtype)


def calls_the_kernels(monkeypatch):
    """Count the Triton autograd function's forward calls (the route really taken)."""
    calls = []
    original = cuda_boundary.DistanceWeightedSoftmaxTriton.forward

    def counted(*args):
        calls.append(1)
        return original(*args)
    monkeypatch.setattr(cuda_boundary.DistanceWeightedSoftmaxTriton, "forward", staticmethod(counted))
    return calls


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("foreground_only", [True, False], ids=["foreground", "all"])
@pytest.mark.parametrize("shape, num_classes", [((2, 5, 7), 3), ((1, 9, 40), 2), ((2, 3, 4, 5), 4),
                                               ((3,), 5), ((2, 33, 70), 19)], ids=str)
def test_values_and_gradients_equal_the_reference(reduction, foreground_only, shape, num_classes, monkeypatch):
    logits, target = random_batch(shape[0], num_classes, shape[1:], ignore_frac=0.2, seed=sum(shape) + num_classes)
    maps = noise(logits.shape, 1, dtype=torch.float64) * 5  # any values: the kernels do not care where they came from
    maps[target.unsqueeze(1).expand_as(maps) == 255] = float("nan")  # an ignored pixel's maps are never read
    upstream = noise(target.shape, 2, uniform=True) if reduction == "none" else None
    calls = calls_the_kernels(monkeypatch)
    (value, grad), (ref_value, ref_grad) = both(logits, target, maps, upstream, foreground_only=foreground_only,
                                                reduction=reduction)
    assert calls, "the kernel route was not taken"
    assert_close(value, ref_value, magnitude(logits, target, maps, foreground_only=foreground_only,
                                             reduction=reduction))
    assert_close(grad, ref_grad)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("shape, num_classes", [((3, 5, 7), 3), ((2, 3, 4, 5), 5), ((11,), 3)], ids=str)
def test_small_tiles_and_programs_that_walk_several_tiles(small_tiles, reduction, shape, num_classes):
    """Tiles of a few pixels, two forward programs: images ending mid-tile, past-the-end tiles, sums
    over several tiles per program, and (N, C) logits seen as one image of N pixels."""
    logits, target = random_batch(shape[0], num_classes, shape[1:], ignore_frac=0.2, seed=sum(shape))
    maps = noise(logits.shape, 3) * 3
    upstream = noise(target.shape, 4, uniform=True) if reduction == "none" else None
    (value, grad), (ref_value, ref_grad) = both(logits, target, maps, upstream, reduction=reduction)
    assert_close(value, ref_value, magnitude(logits, target, maps, reduction=reduction))
    assert_close(grad, ref_grad)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_64_bit_offsets_give_the_same_values(monkeypatch, reduction):
    """``INDEX_64`` (a tensor of 2**31 elements or more) forced by lowering the limit: the kernels' 64-bit
    offset arithmetic for logits, labels, maps and gradient."""
    logits, target = random_batch(2, 3, (5, 6), ignore_frac=0.2, seed=12)
    maps = noise(logits.shape, 5) * 3
    want = both(logits, target, maps, reduction=reduction)[1]
    monkeypatch.setattr(cuda, "INT32_LIMIT", 8)
    got = both(logits, target, maps, reduction=reduction)[0]
    assert_close(got[0], want[0], magnitude(logits, target, maps, reduction=reduction))
    assert_close(got[1], want[1])


def test_the_computed_maps_route_equals_the_eager_path_on_the_hosts_maps():
    logits, target = random_batch(2, 4, (12, 9), ignore_frac=0.1, seed=7)
    maps = signed_distance_maps(target, 4)  # on the "device" (the interpreter's CPU tensors)
    (value, grad), (ref_value, ref_grad) = both(logits, target, maps)
    assert_close(value, ref_value, magnitude(logits, target, maps))
    assert_close(grad, ref_grad)
    z = logits.to(DEVICE).requires_grad_()
    SF.boundary_loss(z, target.to(DEVICE)).backward()  # maps computed inside, on the device
    torch.testing.assert_close(z.grad.double().cpu(), grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("layout", ["channels_last", "transposed", "maps_channels_last", "maps_expanded"])
def test_any_layout_of_logits_and_maps(layout):
    logits, target = random_batch(2, 5, (6, 8), ignore_frac=0.2, seed=11)
    maps = noise(logits.shape, 6) * 3
    (ref_value, ref_grad), _ = both(logits, target, maps)
    z, m = logits.to(DEVICE), maps.to(DEVICE)
    if layout == "channels_last":
        z = z.to(memory_format=torch.channels_last)
    elif layout == "transposed":  # H and W swapped in memory: not mergeable into one pixel stride
        z = z.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == "maps_channels_last":
        m = m.to(memory_format=torch.channels_last)
    else:  # one map for every image, broadcast (stride 0 along N)
        m = m[:1].expand_as(m)
        (ref_value, ref_grad), _ = both(logits, target, m.cpu())
    z = z.detach().requires_grad_()
    value = SF.boundary_loss(z, target.to(DEVICE), distance_maps=m)
    value.backward()
    assert z.grad.stride() == z.stride()  # the gradient in the logits' layout
    torch.testing.assert_close(value.double().cpu(), ref_value, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(z.grad.double().cpu(), ref_grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_compute_in_float32_and_return_their_gradient_dtype(dtype):
    logits, target = random_batch(2, 3, (5, 6), ignore_frac=0.1, seed=5)
    logits = logits.to(dtype)
    maps = noise(logits.shape, 7) * 4
    z = logits.to(DEVICE).detach().clone().requires_grad_()
    value = SF.boundary_loss(z, target.to(DEVICE), distance_maps=maps.to(DEVICE))
    value.backward()
    assert value.dtype == torch.float32 and z.grad.dtype == dtype
    zr = logits.double().requires_grad_()  # the rounded logits, exactly
    ref_value = reference(zr, target, maps)
    ref_value.backward()
    torch.testing.assert_close(value.double().cpu(), ref_value.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(z.grad.double().cpu(), zr.grad, rtol=1e-2, atol=1e-5)  # rounded to dtype


@pytest.mark.parametrize("maps_dtype", [torch.float64, torch.float16, torch.int32, torch.int64, torch.uint8])
def test_maps_in_any_real_dtype_are_read_as_their_values(maps_dtype):
    logits, target = random_batch(2, 3, (4, 7), seed=6)
    maps = (noise(logits.shape, 8, uniform=True) * 9).round().to(maps_dtype)
    (value, grad), (ref_value, ref_grad) = both(logits, target, maps)
    assert_close(value, ref_value, magnitude(logits, target, maps))
    assert_close(grad, ref_grad)


def test_empty_and_all_ignored_batches_give_zero_and_a_zero_gradient():
    for logits, target in (random_batch(0, 3, (4, 5)), random_batch(2, 3, (4, 5))):
        target = torch.full_like(target, 255)
        maps = noise(logits.shape, 9)
        z = logits.to(DEVICE).requires_grad_()
        value = SF.boundary_loss(z, target.to(DEVICE), distance_maps=maps.to(DEVICE))
        value.backward()
        assert float(value.detach()) == 0.0 and z.grad.shape == logits.shape and not z.grad.abs().sum()


def test_double_backward_builds_the_same_gradient_as_a_graph():
    logits, target = random_batch(2, 3, (4, 5), ignore_frac=0.2, seed=8)
    maps = noise(logits.shape, 10) * 2
    grads = []
    for route in ("kernel", "reference"):
        z = (logits.to(DEVICE) if route == "kernel" else logits.double()).requires_grad_()
        y, m = (target.to(DEVICE), maps.to(DEVICE)) if route == "kernel" else (target, maps)
        value = SF.boundary_loss(z, y, distance_maps=m) if route == "kernel" else reference(z, y, m)
        (g,) = torch.autograd.grad(value, z, create_graph=True)
        (gg,) = torch.autograd.grad((g ** 2).sum(), z)
        grads.append((g.detach().double().cpu(), gg.double().cpu()))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_the_cpu_path_is_not_taken_on_the_kernel_route(monkeypatch):
    """The blockwise torch ops (a Python loop over images and blocks) stay off the device."""
    def refuse(*args):
        raise AssertionError("the blockwise CPU path ran on the kernel route")
    monkeypatch.setattr(_DistanceWeightedSoftmax, "forward", staticmethod(refuse))
    logits, target = random_batch(2, 3, (4, 5), seed=9)
    SF.boundary_loss(logits.to(DEVICE).requires_grad_(), target.to(DEVICE)).backward()
    assert cuda.handles(logits.to(DEVICE))


@pytest.mark.parametrize("where", ["valid", "ignored"])
def test_minus_inf_logits_are_refused_as_on_the_other_routes(where):
    """A -inf logit beside finite ones leaves the softmax's max and sum finite (the focal kernels' test,
    which takes a class masked out), but the boundary loss refuses every non-finite logit on its CPU,
    compiled and earlier CUDA routes: so does its kernel."""
    logits, target = random_batch(2, 3, (4, 5), seed=13)
    logits[0, 2, 1, 1] = float("-inf")
    if where == "ignored":
        target[0, 1, 1] = 255
    maps = noise(logits.shape, 11)
    for route in ("kernel", "cpu"):
        device = DEVICE if route == "kernel" else "cpu"
        cuda.run_on_cpu_for_tests(route == "kernel")
        with pytest.raises(ValueError, match="logits contain 0 NaN and 1 Inf values"):
            SF.boundary_loss(logits.to(device), target.to(device), distance_maps=maps.to(device))
    cuda.run_on_cpu_for_tests(True)
