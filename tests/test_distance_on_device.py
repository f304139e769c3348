"""The boundary loss's signed distance maps on the labels' device (``segloss.kernels.distance``): the
same maps as scipy's exact transform on the host, for 1-D to 3-D images, ignored pixels, absent and
image-filling classes, labels beyond C; the Triton min-plus kernel runs in triton's interpreter here
(on CUDA where there is one). The boundary losses' one read per call: ``test_triton_sync.py``."""

import pytest
import torch

from conftest import random_batch
from segloss.kernels import cuda, distance
from segloss.losses.boundary import _signed_distance_maps, boundary_loss, signed_distance_maps
from triton_support import DEVICE, triton_path  # noqa: F401  (autouse)


def host_maps(target, num_classes, maps=signed_distance_maps, **kwargs):
    """scipy's maps (the host path: the kernels' route switched off)."""
    cuda.run_on_cpu_for_tests(False)
    try:
        return maps(target.cpu(), num_classes, **kwargs)
    finally:
        cuda.run_on_cpu_for_tests(True)


def labels(shape, num_classes, seed, blobs=True):
    """Random labels with some structure (runs of one class along the last axis), a few ignored."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, shape, generator=g)
    if blobs and shape[-1] > 2:
        y = y[..., :1].expand(shape).clone()  # whole rows of a class...
        y[..., shape[-1] // 2:] = torch.randint(0, num_classes, (*shape[:-1], 1), generator=g)  # ...in two halves
    y[torch.rand(shape, generator=g) < 0.1] = 255
    return y


@pytest.mark.parametrize("shape, num_classes", [
    ((2, 9, 11), 3), ((2, 9, 11), 2), ((3, 17), 4), ((2, 4, 5, 6), 3), ((1, 1, 8), 2), ((2, 12, 1), 3),
    ((1, 3, 1, 7), 2), ((1, 40, 70), 3), ((1, 3, 35, 66), 2)], ids=str)  # the last two: several tiles of the kernel
@pytest.mark.parametrize("blobs", [True, False], ids=["blobs", "noise"])
def test_device_maps_equal_scipys_exact_transform(shape, num_classes, blobs):
    target = labels(shape, num_classes, seed=sum(shape) + num_classes, blobs=blobs)
    assert distance.handles(target.to(DEVICE))
    got = signed_distance_maps(target.to(DEVICE), num_classes)
    assert got.device.type == DEVICE and got.dtype == torch.float32
    torch.testing.assert_close(got.cpu(), host_maps(target, num_classes), rtol=1e-6, atol=1e-6)


def test_filling_absent_beyond_and_ignored_classes_match_the_host():
    """A class filling an image (distances to the border), a class absent from it (0), labels >= C and
    an ignore_index inside [0, C) (outside every class), an image of ignored pixels only. Labels >= C
    reach the unchecked maps inside the boundary loss on CUDA (their error is read at the call's end);
    the public function refuses them."""
    target = torch.ones(4, 6, 7, dtype=torch.long)  # image 0: class 1 fills it
    target[1, 2:4, 3:6] = 0  # image 1: a block of 0 in 1
    target[1, 0, :] = 7  # beyond C: outside every class
    target[2] = 2  # image 2: class 2 everywhere, 2 is ignore_index in the second call
    target[2, 3, 3] = 0
    target[3] = 255
    for ignore_index in (255, 2):
        got = _signed_distance_maps(target.to(DEVICE), 3, ignore_index)
        torch.testing.assert_close(got.cpu(), host_maps(target, 3, _signed_distance_maps, ignore_index=ignore_index),
                                   rtol=1e-6, atol=1e-6)
    for device in (DEVICE, "cpu"):
        with pytest.raises(ValueError, match=r"outside \[0, 3\) that are not ignore_index=255: \[7\]; is num_classes"):
            signed_distance_maps(target.to(device), 3)
    target[1, 0, :] = 255
    border = signed_distance_maps(target.to(DEVICE), 3)[0, 1].cpu()
    assert border[0, 0] == 0 and border[3, 3] == -2  # -(distance to the nearest pixel past the border - 1)


@pytest.mark.parametrize("spatial", [(5, 6), (3, 4, 5)], ids=["2-D", "3-D"])
def test_squared_distances_are_exact_and_maps_not_needed_are_skipped(spatial):
    """Against a brute force over every pixel pair; a map flagged as not needed (its class absent or
    filling the image: replaced by the caller) is left at ``INF`` by the kernel, without a host read."""
    g = torch.Generator().manual_seed(len(spatial))
    features = torch.rand(4, *spatial, generator=g) < 0.15
    features[2] = False  # no feature: INF everywhere
    grids = torch.meshgrid(*(torch.arange(s) for s in spatial), indexing="ij")
    coords = torch.stack(grids, -1).reshape(-1, len(spatial))
    pair = ((coords[:, None] - coords[None]) ** 2).sum(-1)  # (P, P) squared distances
    want = torch.stack([torch.where(f.reshape(-1)[None], pair, distance.INF).amin(1).clamp_max(distance.INF)
                        for f in features]).reshape(features.shape).to(torch.int32)
    torch.testing.assert_close(distance.squared_distances(features.to(DEVICE)).cpu(), want, rtol=0, atol=0)
    needed = torch.tensor([True, False, True, True])
    got = distance.squared_distances(features.to(DEVICE), needed.to(DEVICE)).cpu()
    torch.testing.assert_close(got[needed], want[needed], rtol=0, atol=0)
    assert features[1].any() and (got[1] == distance.INF).all()


def test_maps_are_computed_in_chunks_as_in_one_piece(monkeypatch):
    target = labels((3, 7, 9), 4, seed=5)
    whole = signed_distance_maps(target.to(DEVICE), 4)
    monkeypatch.setattr(distance, "CHUNK_ELEMENTS", 4 * 63)  # two maps (four transforms) a chunk, 6 chunks
    torch.testing.assert_close(signed_distance_maps(target.to(DEVICE), 4), whole, rtol=0, atol=0)


def test_an_empty_batch_and_an_empty_image_give_empty_maps():
    assert signed_distance_maps(torch.zeros(0, 4, 5, dtype=torch.long, device=DEVICE), 3).shape == (0, 3, 4, 5)
    assert signed_distance_maps(torch.zeros(2, 0, 5, dtype=torch.long, device=DEVICE), 3).shape == (2, 3, 0, 5)


def test_axes_too_long_for_exact_int32_squares_take_the_host_path():
    """``sum_k S_k^2`` must stay below 2^30 (squared distances in int32, exactly)."""
    assert distance.handles(torch.zeros(1, 32767, 1, dtype=torch.long, device=DEVICE))
    assert not distance.handles(torch.zeros(1, 32768, 1, dtype=torch.long, device=DEVICE))
    assert not distance.handles(torch.zeros(3, dtype=torch.long, device=DEVICE))  # no spatial axis
    volume = torch.zeros(1, 1, 1, 1, dtype=torch.uint8, device=DEVICE).expand(1, 1300, 1300, 1300)
    assert not distance.handles(volume)  # 2.2e9 voxels an image: beyond the kernel's int32 offsets


def test_uint8_labels_with_a_negative_ignore_index_match_the_host():
    """With C = 256, uint8 label 255 is a class, not ``ignore_index=-1``: compared as numbers (a uint8
    comparison would wrap -1 to 255)."""
    target = torch.zeros(2, 6, 7, dtype=torch.uint8)
    target[:, 2:5, 1:4] = 255
    target[1, 0, :] = 7
    got = signed_distance_maps(target.to(DEVICE), 256, ignore_index=-1)
    assert got[:, 255].abs().sum() > 0
    torch.testing.assert_close(got.cpu(), host_maps(target, 256, ignore_index=-1), rtol=1e-6, atol=1e-6)


def test_the_boundary_loss_on_the_device_path_names_bad_labels_and_non_finite_logits():
    logits, target = random_batch(2, 3, (4, 5), seed=3)
    logits, target = logits.to(DEVICE), target.to(DEVICE)
    torch.testing.assert_close(boundary_loss(logits, target).cpu(),
                               boundary_loss(logits.cpu(), target.cpu(), distance_maps=host_maps(target, 3)))
    bad = target.clone()
    bad[1, 2, 3] = 5
    with pytest.raises(ValueError, match=r"labels outside \[0, 3\) that are not ignore_index=255: \[5\]"):
        boundary_loss(logits, bad)
    nan = logits.clone()
    nan[0, 1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        boundary_loss(nan, target)


@pytest.mark.parametrize("route", ["kernel", "host"])
def test_given_maps_that_are_not_finite_or_not_real_are_refused(route):
    """NaN maps gave a NaN loss, silently; on the kernel path they are counted on the device and read
    with the call's one synchronisation (the label and logit flags' read)."""
    device = DEVICE if route == "kernel" else "cpu"
    logits, target = random_batch(2, 3, (4, 5), seed=3)
    logits, target = logits.to(device), target.to(device)
    maps = host_maps(target, 3).to(device)  # (turns the kernels' route back on for CPU tensors when done)
    if route == "host":
        cuda.run_on_cpu_for_tests(False)
    assert cuda.handles(logits) == (route == "kernel")  # the two routes really are taken
    for value, count in ((float("nan"), "1 NaN and 0 infinite"), (float("inf"), "0 NaN and 1 infinite")):
        bad = maps.clone()
        bad[1, 2, 3, 4] = value
        with pytest.raises(ValueError, match="distance_maps hold NaN or infinite values") as raised:
            boundary_loss(logits, target, distance_maps=bad)
        if not cuda.handles(logits):
            assert count in str(raised.value)  # the host path also counts them
    with pytest.raises(TypeError, match="distance_maps must be a real-valued tensor.*torch.bool"):
        boundary_loss(logits, target, distance_maps=maps > 0)
    with pytest.raises(TypeError, match="distance_maps must be a real-valued tensor.*got ndarray"):
        boundary_loss(logits, target, distance_maps=maps.cpu().numpy())
    torch.testing.assert_close(boundary_loss(logits, target, distance_maps=maps.round().long()),
                               boundary_loss(logits, target, distance_maps=maps.round()))  # integer maps: their values


@pytest.mark.parametrize("route", ["kernel", "host", "autograd"])
def test_an_ignored_pixels_map_may_hold_anything(route):
    """Ignored pixels contribute nothing, whatever their maps hold: a NaN there gave a NaN loss on the
    fast path (0 x NaN) and a NaN gradient on the autograd one (maps that require a gradient)."""
    device = DEVICE if route == "kernel" else "cpu"
    logits, target = random_batch(2, 3, (4, 5), seed=4)
    target[1, 2, 3] = 255
    maps = host_maps(target, 3)
    if route != "kernel":
        cuda.run_on_cpu_for_tests(False)
    bad = maps.clone()
    bad[1, :, 2, 3] = float("nan")
    results = []
    for given in (maps, bad):
        z = logits.to(device).requires_grad_()
        m = given.to(device).requires_grad_(route == "autograd")
        value = boundary_loss(z, target.to(device), distance_maps=m)
        value.backward()
        results.append((value.detach().cpu(), z.grad.cpu()))
    assert torch.isfinite(results[1][0]) and torch.isfinite(results[1][1]).all()
    torch.testing.assert_close(results[1], results[0])
