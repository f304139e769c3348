"""Procedural datasets: determinism, shapes, class balance, validation, colour helpers."""

import numpy as np
import pytest
import torch

from segloss.train import data
from segloss.train.data import DATASETS, class_frequencies, colorize, make_batch
from segloss.losses.weights import pixel_counts as class_pixel_counts


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_same_seed_gives_identical_batch(name):
    a_images, a_masks = make_batch(name, 3, 48, seed=7)
    b_images, b_masks = make_batch(name, 3, 48, seed=7)
    assert torch.equal(a_images, b_images)
    assert torch.equal(a_masks, b_masks)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_different_seeds_give_different_batches(name):
    a_images, a_masks = make_batch(name, 2, 48, seed=1)
    b_images, b_masks = make_batch(name, 2, 48, seed=2)
    assert not torch.equal(a_images, b_images)
    assert not torch.equal(a_masks, b_masks)


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("size", [32, 45, 64, 128])
def test_batch_shapes_dtypes_and_value_ranges(name, size):
    images, masks = make_batch(name, 2, size, seed=0)
    assert images.shape == (2, 3, size, size) and images.dtype == torch.float32
    assert masks.shape == (2, size, size) and masks.dtype == torch.int64
    assert images.is_contiguous()
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert bool(torch.isfinite(images).all())
    assert int(masks.min()) >= 0 and int(masks.max()) < DATASETS[name].num_classes


def test_samples_within_a_batch_differ():
    images, masks = make_batch("street", 4, 64, seed=3)
    assert not torch.equal(masks[0], masks[1])
    assert not torch.equal(images[2], images[3])


def test_street_shares_span_two_orders_of_magnitude_and_every_class_is_present():
    shares = class_frequencies("street")
    assert shares.shape == (9,)
    assert bool((shares > 0).all()), shares
    assert float(shares.max() / shares.min()) >= 100.0, shares
    small = {"pedestrian", "pole", "traffic sign"}
    for name, share in zip(DATASETS["street"].class_names, shares.tolist()):
        assert (share < 0.02) == (name in small), (name, share)


def test_lesion_shares_match_the_description():
    background, organ, lesion = class_frequencies("lesion").tolist()
    assert 0.10 <= organ <= 0.20
    assert 0.005 <= lesion <= 0.02
    assert background > 0.75


def test_lesion_lies_inside_the_organ():
    _, masks = make_batch("lesion", 8, 64, seed=5)
    lesion = masks == 2
    grown = torch.nn.functional.max_pool2d(lesion[:, None].float(), 3, 1, 1)[:, 0].bool()
    ring = grown & ~lesion
    assert int(lesion.sum()) > 0
    assert float((masks[ring] == 1).float().mean()) > 0.9


def test_class_frequencies_sum_to_one_and_are_cached_copies():
    shares = class_frequencies("lesion", image_size=32, n=20, seed=1)
    assert shares.dtype == torch.float64
    assert abs(float(shares.sum()) - 1.0) < 1e-9
    shares[0] = 5.0  # mutating the returned tensor must not poison the cache
    assert float(class_frequencies("lesion", image_size=32, n=20, seed=1)[0]) < 1.0


def test_unknown_dataset_raises_listing_the_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset 'cityscapes'.*'lesion'.*'street'"):
        make_batch("cityscapes", 1, 64, 0)
    with pytest.raises(ValueError, match="known datasets"):
        class_frequencies("nope")


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(image_size=31), ValueError, "image_size must be >= 32, got 31"),
    (dict(image_size=64.0), TypeError, "image_size must be an int"),
    (dict(image_size=True), TypeError, "image_size must be an int"),
    (dict(batch_size=0), ValueError, "batch_size must be >= 1, got 0"),
    (dict(seed=-1), ValueError, "seed must be >= 0, got -1"),
])
def test_bad_sizes_and_seeds_raise(kwargs, error, message):
    args = dict(dataset="street", batch_size=2, image_size=64, seed=0) | kwargs
    with pytest.raises(error, match=message):
        make_batch(**args)


def test_numpy_integers_are_accepted_as_sizes():
    images, _ = make_batch("lesion", np.int64(1), np.int32(40), np.uint8(3))
    assert images.shape == (1, 3, 40, 40)


def test_class_pixel_counts_exclude_the_ignore_label():
    masks = torch.tensor([[[0, 0, 2], [255, 1, 2]]])
    assert class_pixel_counts(masks, 4).tolist() == [2, 1, 2, 0]
    assert class_pixel_counts(masks.numpy(), 3).dtype == torch.int64
    with pytest.raises(ValueError, match=r"range \[0, 2\]"):
        class_pixel_counts(masks, 2)
    with pytest.raises(TypeError, match="integer"):
        class_pixel_counts(masks.float(), 3)


def test_colorize_maps_each_label_to_its_palette_colour_and_ignore_to_ignore_color():
    palette = DATASETS["lesion"].palette
    mask = torch.tensor([[0, 1], [2, 255]])
    rgb = colorize(mask, palette)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb[0, 1].tolist() == list(palette[1]) and rgb[1, 0].tolist() == list(palette[2])
    assert rgb[1, 1].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match=r"labels \[3\] outside"):
        colorize(torch.tensor([[3]]), palette)
    with pytest.raises(TypeError, match="integer"):
        colorize(np.zeros((2, 2)), palette)


def test_to_uint8_image_clips_rounds_and_moves_channels_last():
    image = torch.tensor([[[0.0, 0.5]], [[1.0, 2.0]], [[-1.0, 0.2]]])  # (3, 1, 2)
    out = data.to_uint8_image(image)
    assert out.shape == (1, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 255, 0] and out[0, 1].tolist() == [128, 255, 51]
    assert data.to_uint8_image(np.full((4, 5), 1.0)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"got \(2, 4, 4\)"):
        data.to_uint8_image(torch.zeros(2, 4, 4))


def test_every_dataset_palette_has_one_colour_per_class():
    for info in DATASETS.values():
        assert len(info.palette) == len(info.class_names) == info.num_classes
        assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in info.palette)


def test_class_pixel_counts_are_counts_so_the_effective_number_depends_on_b():
    """Weighted CE's "effective" scheme needs pixel counts, not shares: with shares (<= 1) every b
    gives inverse frequency. The Loss curves page and the trainer take these counts."""
    from segloss.losses.weights import class_weights

    counts = data.class_pixel_counts("street", image_size=32, n=16)
    assert int(counts.pixels.sum()) == 16 * 32 * 32
    assert (counts.image_pixels >= counts.pixels).all()
    assert class_frequencies("street", image_size=32, n=16).tolist() == pytest.approx(
        (counts.pixels / counts.pixels.sum()).tolist())
    low, high = class_weights("effective", counts, 0.9), class_weights("effective", counts, 0.99999)
    assert float((low - high).abs().max()) > 0.5
    assert torch.allclose(low, torch.ones_like(low), atol=1e-3)  # b = 0.9: every class has "enough" pixels
