"""How the Triton kernels are launched: tiles that end mid-image, programs that walk several tiles,
64-bit offsets, and the gradient written in forward or recomputed in backward."""

import pytest
import torch
import triton
import triton.language as tl

from segloss import functional as SF
from segloss.kernels import cuda, triton_pixelwise
from segloss.losses import reference
from conftest import random_batch
from triton_support import (CASES, DEVICE, KernelCounter, assert_matches, reference_for, small_tiles,  # noqa: F401
                            triton_path)  # small_tiles, triton_path: fixtures



@pytest.mark.parametrize("name, kwargs", [CASES[0], CASES[3], CASES[5], CASES[8]])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_tiles_that_end_mid_image_and_programs_that_walk_several_tiles(small_tiles, name, kwargs, reduction):
    launch = cuda._Launch(torch.zeros(3, 4, 5, 3), torch.zeros(3, 5, 3, dtype=torch.long))
    assert (launch.block_p, launch.tiles_per_image, launch.programs, launch.steps) == (4, 4, 2, 8)
    logits, target = random_batch(3, 4, (5, 3), scale=3.0, ignore_frac=0.2, seed=21)
    assert_matches(name, logits, target, reduction, kwargs, upstream=torch.rand(3, 5, 3))
    logits, target = random_batch(13, 4, (), scale=3.0, ignore_frac=0.2, seed=22)  # (N, C): one image of 13
    assert cuda._Launch(logits, target).tiles_per_image == 4
    assert_matches(name, logits, target, reduction, kwargs, upstream=torch.rand(13))


@pytest.mark.parametrize("per_image", [False, True])
def test_region_sums_over_several_tiles_and_programs_per_image(small_tiles, per_image):
    from segloss.losses import region

    logits, target = random_batch(3, 4, (5, 7), scale=3.0, ignore_frac=0.2, seed=23)
    for z0, y in ((logits, target), (logits[:, :, 0, 0], target[:, 0, 0])):  # images, and (N, C)
        z = z0.to(DEVICE).clone().requires_grad_()
        value = region.soft_dice_loss(z, y.to(DEVICE), per_image=per_image)
        value.backward()
        cuda.run_on_cpu_for_tests(False)
        ref = z0.detach().double().requires_grad_()
        ref_value = region.soft_dice_loss(ref, y, per_image=per_image)
        ref_value.backward()
        cuda.run_on_cpu_for_tests(True)
        torch.testing.assert_close(value.double().cpu(), ref_value.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(z.grad.double().cpu(), ref.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name, kwargs", [CASES[1], CASES[5], CASES[7]])
def test_64_bit_offsets_give_the_same_results(monkeypatch, name, kwargs):
    """Tensors of 2**31 elements or more take 64-bit offsets; here every call is made to."""
    monkeypatch.setattr(cuda, "INT32_LIMIT", 8)
    logits, target = random_batch(2, 4, (5, 3), scale=3.0, ignore_frac=0.2, seed=24)
    assert cuda._Launch(logits, target).index_64
    assert_matches(name, logits, target, "none", kwargs, upstream=torch.rand(2, 5, 3))
    assert_matches(name, logits.to(memory_format=torch.channels_last), target, "mean", kwargs)


def test_launch_takes_64_bit_offsets_only_past_2_to_the_31():
    def launch(*shape):
        return cuda._Launch(torch.empty(shape, device="meta"),
                            torch.empty(shape[:1] + shape[2:], dtype=torch.long, device="meta"))
    assert not launch(8, 19, 512, 1024).index_64  # 80 M logits
    assert not launch(16, 150, 256, 256).index_64  # 157 M
    assert launch(2, 19, 2**14, 2**14).index_64  # 10 G
    assert launch(2**31, 2).index_64  # (N, C) past 2**31 elements
    assert not launch(2**29, 2).index_64


def test_past_the_end_tiles_of_the_last_program_count_toward_64_bit_offsets(monkeypatch):
    """Forward programs walk ``steps`` tiles each, ``programs * steps`` in all (more than the tiles):
    their pixel offsets must fit too. Logits expanded along the classes (stride 0) reach no further
    than their pixels, so only that product says 64 bits are needed."""
    monkeypatch.setattr(cuda, "MAX_PROGRAMS", 4)
    pixels = 9 * 512  # 9 tiles of 512 pixels at C = 2: 3 programs of 4 steps, 12 tiles walked
    logits = torch.empty(1, 1, pixels, device="meta").expand(1, 2, pixels)
    target = torch.empty(1, pixels, dtype=torch.long, device="meta")
    monkeypatch.setattr(cuda, "INT32_LIMIT", 12 * 512 - 1)
    launch = cuda._Launch(logits, target)
    assert (launch.block_p, launch.steps, launch.programs) == (512, 4, 3)
    assert launch.index_64
    monkeypatch.setattr(cuda, "INT32_LIMIT", 12 * 512)
    assert not cuda._Launch(logits, target).index_64


def test_a_label_past_32_bits_is_not_taken_for_a_class():
    logits, target = random_batch(1, 4, (3, 3), seed=25)
    target[0, 1, 1] = 2**32 + 1  # class 1 if the kernels compared labels in 32 bits
    with pytest.raises(ValueError, match=r"outside \[0, 4\).*4294967297"):
        SF.focal_loss(logits.to(DEVICE), target.to(DEVICE))


FORWARD_GRADIENT_CASES = [CASES[0], CASES[1], CASES[3], ("cross_entropy", {"label_smoothing": 0.1}),
                          ("focal_loss", {"gamma": 2.0, "label_smoothing": 0.2, "weight": [1.0, 2.0, 0.5, 1.0]}),
                          CASES[7], CASES[8], CASES[9]]


@pytest.mark.parametrize("name, kwargs", FORWARD_GRADIENT_CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("in_forward", [True, False])
def test_gradient_written_in_forward_or_recomputed_in_backward_is_the_same(monkeypatch, name, kwargs, reduction,
                                                                           in_forward):
    monkeypatch.setattr(cuda, "GRADIENT_IN_FORWARD", in_forward)
    counter = KernelCounter(monkeypatch)
    logits, target = random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.2, seed=31)
    if "label_smoothing" in kwargs:
        logits, target = logits.to(DEVICE), target.to(DEVICE)
        ref = logits.double().requires_grad_()
        ref_value = _smoothed_reference(name, ref, target, reduction, kwargs)
        ref_value.backward()
        z = logits.clone().requires_grad_()
        value = getattr(SF, name)(z, target, reduction=reduction, **kwargs)
        value.backward()
        torch.testing.assert_close(value.double(), ref_value.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(z.grad.double(), ref.grad, rtol=1e-5, atol=1e-6)
    else:
        assert_matches(name, logits, target, reduction, kwargs)
    backward = "dual_focal_backward_kernel" if name == "dual_focal_loss" else "focal_backward_kernel"
    launches = counter.launches
    assert (launches[backward], launches["scale_gradient_kernel"]) == ((0, 1) if in_forward else (1, 0))
    assert launches["denominator_kernel"] == (in_forward and reduction == "mean")  # "sum" needs no denominator


def _smoothed_reference(name, logits, target, reduction, kwargs):
    """The eager float64 path (tested against torch's ``label_smoothing`` and the formula elsewhere)."""
    cuda.run_on_cpu_for_tests(False)
    try:
        return getattr(SF, name)(logits, target, reduction=reduction, **kwargs)
    finally:
        cuda.run_on_cpu_for_tests(True)


def test_a_gradient_written_in_forward_takes_any_upstream_and_a_second_backward(monkeypatch):
    counter = KernelCounter(monkeypatch)
    logits, target = (t.to(DEVICE) for t in random_batch(2, 4, (4, 5), scale=3.0, ignore_frac=0.1, seed=32))
    weight = [0.5, 2.0, 1.0, 3.0]
    ref = logits.double().requires_grad_()
    reference.focal_loss(ref, target, gamma=2.0, weight=weight).backward()
    z = logits.clone().requires_grad_()
    loss = SF.focal_loss(z, target, gamma=2.0, weight=weight)
    (loss * 1024.0).backward(retain_graph=True)  # scaled in place, the stored gradient handed over
    torch.testing.assert_close(z.grad.double(), ref.grad * 1024.0, rtol=1e-5, atol=1e-6)
    assert counter.launches == {"focal_backward_kernel": 0, "dual_focal_backward_kernel": 0,
                                "scale_gradient_kernel": 1, "denominator_kernel": 1}
    z.grad = None
    (loss + 0.5 * loss).backward()  # the second backward recomputes from the logits
    torch.testing.assert_close(z.grad.double(), ref.grad * 1.5, rtol=1e-5, atol=1e-7)
    assert counter.launches["focal_backward_kernel"] == 1


def test_no_gradient_is_written_without_a_backward_to_come(monkeypatch):
    written = []
    original = cuda.gradient_buffer
    monkeypatch.setattr(cuda, "gradient_buffer", lambda z: written.append(z.shape) or original(z))
    logits, target = (t.to(DEVICE) for t in random_batch(2, 4, (4, 5), seed=33))
    z = logits.clone().requires_grad_()
    with torch.no_grad():
        SF.cross_entropy(z, target)
    SF.cross_entropy(logits, target)  # logits that want no gradient
    SF.cross_entropy(z, target, reduction="none").sum().backward()  # "none": recomputed in backward
    assert written == [z.shape]
    z16 = logits.half().requires_grad_()
    SF.cross_entropy(z16, target).backward()  # float16: recomputed in backward (see GRADIENT_IN_FORWARD)
    assert len(written) == 2


@triton.jit
def _locate_probe(out_ptr, tile, tiles_per_image, BLOCK_P: tl.constexpr, INDEX_64: tl.constexpr):
    """Writes ``_locate``'s pixel offsets ``p`` and image ``n`` for one tile."""
    n, p = triton_pixelwise._locate(tile + tl.program_id(0) * 0, tiles_per_image, BLOCK_P, INDEX_64)
    tl.store(out_ptr + tl.arange(0, BLOCK_P), p.to(tl.int64))
    tl.store(out_ptr + BLOCK_P + tl.arange(0, 1), (n + tl.zeros((1,), tl.int32)).to(tl.int64))


def test_64_bit_tile_offsets_do_not_wrap_in_an_image_of_2_to_the_31_pixels():
    """(N, C) logits of 2**31 + 100 rows are one image of that many pixels: its last tile starts
    past 2**31, which a 32-bit product wraps to a negative offset (unmasked: memory before the
    tensors). Probed with the kernels' own ``_locate`` and a meta-device launch (no 8 GB here)."""
    rows = 2**31 + 100
    launch = cuda._Launch(torch.empty(rows, 2, device="meta"), torch.empty(rows, dtype=torch.long, device="meta"))
    assert launch.index_64 and launch.images == 1 and launch.pixels == rows
    out = torch.empty(launch.block_p + 1, dtype=torch.int64, device=DEVICE)
    last = launch.tiles - 1
    _locate_probe[(1,)](out, last, launch.tiles_per_image, BLOCK_P=launch.block_p, INDEX_64=True)
    expected = last * launch.block_p + torch.arange(launch.block_p)
    assert out[-1].item() == 0
    assert torch.equal(out[:-1].cpu(), expected)


@pytest.mark.parametrize("in_forward", [True, False])
@pytest.mark.parametrize("name, kwargs", [CASES[1], CASES[8]])
def test_bfloat16_gradients_with_an_upstream_other_than_one(monkeypatch, in_forward, name, kwargs):
    """Written in forward, a bfloat16 gradient is rounded twice when the upstream is not 1 (a
    weighted sum of losses): still within bfloat16's precision of the float64 gradient."""
    monkeypatch.setattr(cuda, "GRADIENT_IN_FORWARD", in_forward)
    logits, target = random_batch(2, 4, (6, 6), scale=3.0, ignore_frac=0.1, dtype=torch.bfloat16, seed=34)
    z = logits.to(DEVICE).clone().requires_grad_()
    (0.3 * getattr(SF, name)(z, target.to(DEVICE), **kwargs)).backward()
    ref = logits.detach().double().requires_grad_()
    (0.3 * reference_for(name)(ref, target, **kwargs)).backward()
    assert z.grad.dtype == torch.bfloat16
    nonzero = ref.grad != 0
    error = ((z.grad.double().cpu() - ref.grad).abs() / ref.grad.abs())[nonzero]
    # two roundings of at most an ulp (2**-7 relative) each: triton's interpreter truncates to
    # bfloat16 where a GPU rounds to nearest (half an ulp)
    assert error.max() < 2 * 2.0**-7 and torch.equal(z.grad[~nonzero.to(DEVICE)].cpu(), ref.grad[~nonzero].bfloat16())
