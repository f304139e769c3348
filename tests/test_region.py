"""Region losses against hand computations, MONAI's implementations and the Lovász property."""

import math

import pytest
import torch
from monai.losses import DiceLoss, TverskyLoss

from segloss.losses import region
from conftest import layout_case, random_batch


def test_dice_hand_computed_two_classes():
    # one image, 2 classes, 2 pixels: p(class 1) = 0.8 and 0.4; labels 1 and 0
    logits = torch.log(torch.tensor([[[0.2, 0.6], [0.8, 0.4]]]))  # (1, C=2, 2)
    target = torch.tensor([[1, 0]])
    # class 0: TP = .6, sum p = .8, sum y = 1 -> dice = (1.2 + 0) / 1.8 ; class 1: TP = .8, sum p 1.2, sum y 1
    per_class = region.soft_dice_loss(logits, target, smooth=0.0, reduction="none")
    torch.testing.assert_close(per_class, torch.tensor([1 - 1.2 / 1.8, 1 - 1.6 / 2.2]))
    assert region.soft_dice_loss(logits, target, smooth=0.0).item() == pytest.approx(
        ((1 - 1.2 / 1.8) + (1 - 1.6 / 2.2)) / 2, rel=1e-6)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_dice_matches_monai_when_every_class_is_present(smooth):
    logits, target = random_batch(3, 4, (8, 8), seed=1)
    target[0, :2, :2] = torch.arange(4).reshape(2, 2)  # every class present
    ours = region.soft_dice_loss(logits, target, smooth=smooth)
    monai = DiceLoss(softmax=True, to_onehot_y=True, batch=True, smooth_nr=smooth, smooth_dr=smooth)(
        logits, target.unsqueeze(1))
    torch.testing.assert_close(ours, monai)


def test_jaccard_matches_monai_without_smoothing():
    logits, target = random_batch(2, 3, (6, 6), seed=2)
    target[0, 0, :3] = torch.arange(3)
    ours = region.soft_jaccard_loss(logits, target, smooth=0.0)
    monai = DiceLoss(softmax=True, to_onehot_y=True, batch=True, jaccard=True, smooth_nr=0.0, smooth_dr=0.0)(
        logits, target.unsqueeze(1))
    torch.testing.assert_close(ours, monai)


@pytest.mark.parametrize("alpha, beta", [(0.3, 0.7), (0.7, 0.3), (1.0, 1.0)])
def test_tversky_matches_monai(alpha, beta):
    logits, target = random_batch(2, 3, (7, 5), seed=3)
    target[0, 0, :3] = torch.arange(3)
    ours = region.tversky_loss(logits, target, alpha=alpha, beta=beta, smooth=1e-5)
    monai = TverskyLoss(softmax=True, to_onehot_y=True, batch=True, alpha=alpha, beta=beta, smooth_nr=1e-5,
                        smooth_dr=1e-5)(logits, target.unsqueeze(1))
    torch.testing.assert_close(ours, monai)


def test_focal_tversky_is_tversky_to_the_gamma_and_dice_is_half_half_tversky():
    logits, target = random_batch(2, 3, (5, 5), seed=4)
    plain = region.tversky_loss(logits, target, alpha=0.3, beta=0.7, reduction="none")
    focal = region.tversky_loss(logits, target, alpha=0.3, beta=0.7, gamma=4 / 3, reduction="none")
    torch.testing.assert_close(focal, plain ** (4 / 3), equal_nan=True)
    torch.testing.assert_close(region.soft_dice_loss(logits, target, smooth=1.0),
                               region.tversky_loss(logits, target, alpha=0.5, beta=0.5, smooth=0.5))


def test_lovasz_equals_one_minus_iou_for_hard_predictions():
    g = torch.Generator().manual_seed(5)
    pred = torch.randint(0, 3, (2, 6, 6), generator=g)
    target = torch.randint(0, 3, (2, 6, 6), generator=g)
    logits = torch.nn.functional.one_hot(pred, 3).movedim(-1, 1).double() * 80.0
    per_class = region.lovasz_softmax_loss(logits, target, reduction="none")
    for c in range(3):
        inter = ((pred == c) & (target == c)).sum().item()
        union = ((pred == c) | (target == c)).sum().item()
        assert per_class[c].item() == pytest.approx(1 - inter / union, abs=1e-9)


def test_ignored_pixels_are_left_out_and_absent_classes_are_nan_not_zero():
    logits, target = random_batch(1, 3, (4, 4), seed=6)
    target[0, 0] = 255
    target[target == 2] = 1  # class 2 absent
    kept = target != 255
    ours = region.soft_dice_loss(logits, target, reduction="none")
    assert math.isnan(ours[2].item())
    cropped = region.soft_dice_loss(logits[..., 1:, :], target[..., 1:, :], reduction="none")
    torch.testing.assert_close(ours, cropped, equal_nan=True)  # the ignored row changes nothing
    assert kept.sum() == 12


@pytest.mark.parametrize("loss", [region.soft_dice_loss, region.soft_jaccard_loss, region.lovasz_softmax_loss,
                                  lambda z, t, **k: region.tversky_loss(z, t, alpha=0.3, beta=0.7, gamma=1.5, **k),
                                  lambda z, t, **k: region.tversky_loss(z, t, alpha=0.3, beta=0.7, gamma=0.75, **k),
                                  lambda z, t, **k: region.tversky_loss(z, t, alpha=0.0, beta=0.7, gamma=0.5, **k)])
def test_region_losses_are_finite_at_saturated_logits_and_pass_gradcheck(loss):
    logits = torch.tensor([[[100.0, -100.0], [-100.0, 100.0], [-100.0, -100.0]]], requires_grad=True)
    target = torch.tensor([[1, 1]])
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()
    perfect = torch.tensor([[[100.0, -100.0], [-100.0, 100.0]]], requires_grad=True)  # 1 - score = 0 exactly
    no_smoothing = {} if loss is region.lovasz_softmax_loss else {"smooth": 0.0}  # Lovász has none
    loss(perfect, torch.tensor([[0, 1]]), **no_smoothing).backward()
    assert torch.isfinite(perfect.grad).all()
    z, t = random_batch(2, 3, (3, 3), ignore_frac=0.2, dtype=torch.float64, seed=7)
    assert torch.autograd.gradcheck(lambda x: loss(x, t, weight=[1.0, 2.0, 0.5]), (z.requires_grad_(),))


def test_per_image_scores_each_image_and_bad_parameters_are_rejected():
    logits, target = random_batch(3, 2, (4, 4), seed=8)
    assert region.soft_dice_loss(logits, target, per_image=True, reduction="none").shape == (3, 2)
    with pytest.raises(ValueError, match="gamma must be > 0"):
        region.tversky_loss(logits, target, gamma=0.0)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        region.tversky_loss(logits, target, alpha=-1.0)
    with pytest.raises(ValueError, match="Expected target size"):
        region.soft_dice_loss(logits, target[:, :2])


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "focal_tversky", "generalized_dice", "lovasz",
                                  "unified_focal"])
def test_per_image_takes_the_registrys_words_and_refuses_other_values(name):
    """``per_image="batch"`` is the registry's word for over the batch: a truthy string, which the
    modules and functions once took as ``bool("batch")``, so per image, silently."""
    from segloss.losses import modules, unified_focal

    logits, target = random_batch(2, 3, (8, 8), seed=3)
    function = {"dice": region.soft_dice_loss, "jaccard": region.soft_jaccard_loss, "tversky": region.tversky_loss,
                "focal_tversky": lambda *a, **k: region.tversky_loss(*a, gamma=0.75, **k),
                "generalized_dice": region.generalized_dice_loss, "lovasz": region.lovasz_softmax_loss,
                "unified_focal": unified_focal.unified_focal_loss}[name]
    module = {"dice": modules.DiceLoss, "jaccard": modules.JaccardLoss,
              "tversky": lambda **k: modules.TverskyLoss(alpha=0.5, beta=0.5, **k),  # the function's defaults
              "focal_tversky": lambda **k: modules.TverskyLoss(alpha=0.5, beta=0.5, gamma=0.75, **k),
              "generalized_dice": modules.GeneralizedDiceLoss, "lovasz": modules.LovaszSoftmaxLoss,
              "unified_focal": modules.UnifiedFocalLoss}[name]
    over_batch, per_image = function(logits, target, per_image=False), function(logits, target, per_image=True)
    assert abs(float(over_batch - per_image)) > 1e-4  # the two differ on this batch
    for word, expected in (("batch", over_batch), ("image", per_image)):
        torch.testing.assert_close(function(logits, target, per_image=word), expected, rtol=0, atol=0)
        torch.testing.assert_close(module(per_image=word)(logits, target), expected, rtol=0, atol=0)
    for bad in ("images", 1, None):
        with pytest.raises(TypeError, match="per_image must be True / 'image'"):
            function(logits, target, per_image=bad)
        with pytest.raises(TypeError, match="per_image must be True / 'image'"):
            module(per_image=bad)


def _berman_lovasz_per_image(probs, labels, ignore_index=255):
    """Berman et al.'s reference ``lovasz_softmax(per_image=True, classes="present")``, in plain Python.

    ``probs`` (N, C, P) float64, ``labels`` (N, P): per image, for each class present, the errors
    ``|fg - p_c|`` sorted down, dotted with the Lovász gradient of the sorted ground truth; the
    mean over that image's present classes; then the mean over images.
    """
    image_losses = []
    for p, y in zip(probs, labels):
        keep = [i for i, v in enumerate(y.tolist()) if v != ignore_index]
        class_losses = []
        for c in range(p.shape[0]):
            fg = [1.0 if y[i] == c else 0.0 for i in keep]
            if sum(fg) == 0:
                continue
            errors = [abs(f - float(p[c, i])) for f, i in zip(fg, keep)]
            order = sorted(range(len(errors)), key=lambda k: -errors[k])
            inter, union, previous, total = sum(fg), sum(fg), 0.0, 0.0
            for k in order:
                inter -= fg[k]
                union += 1.0 - fg[k]
                jaccard = 1.0 - inter / union
                total += errors[k] * (jaccard - previous)
                previous = jaccard
            class_losses.append(total)
        image_losses.append(sum(class_losses) / len(class_losses))
    return sum(image_losses) / len(image_losses)


def test_lovasz_per_image_averages_each_images_classes_then_the_images():
    # image 0 holds 2 classes, image 1 holds 4: pooling (image, class) pairs would weigh image 1 double
    logits = torch.randn(2, 4, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = torch.zeros(2, 5, 6, dtype=torch.long)
    target[0, :, 3:] = 1
    target[1] = torch.arange(30).reshape(5, 6) % 4
    target[1, 0, 0] = 255
    expected = _berman_lovasz_per_image(logits.softmax(1).reshape(2, 4, -1), target.reshape(2, -1))
    got = region.lovasz_softmax_loss(logits, target, per_image=True)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    pooled = region.lovasz_softmax_loss(logits, target, per_image=True, reduction="none")
    assert got.item() != pytest.approx(pooled[~pooled.isnan()].mean().item(), rel=1e-4)


def test_per_image_mean_skips_images_without_valid_pixels():
    logits = torch.randn(3, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    target = torch.randint(0, 3, (3, 4, 4), generator=torch.Generator().manual_seed(6))
    target[2] = 255
    for loss in (region.soft_dice_loss, region.lovasz_softmax_loss):
        both = loss(logits[:2], target[:2], per_image=True)
        assert loss(logits, target, per_image=True).item() == pytest.approx(both.item(), rel=1e-12)
        per_class = loss(logits[:2], target[:2], per_image=True, reduction="none")
        means = [row[~row.isnan()].mean() for row in per_class]
        assert both.item() == pytest.approx(float(sum(means) / 2), rel=1e-12)


@pytest.mark.parametrize("per_image", [False, True])
def test_generalized_dice_matches_monai_over_the_batch_and_per_image(per_image):
    from monai.losses import GeneralizedDiceLoss

    logits, target = random_batch(3, 4, (6, 6), scale=2.0, seed=31)
    target[target == 3] = 0  # class 3 absent: it takes the largest finite weight, as in MONAI
    target[1][target[1] == 2] = 0  # class 2 absent from image 1 only: per image, the image's largest weight
    ours = region.generalized_dice_loss(logits.double(), target, per_image=per_image)
    monai = GeneralizedDiceLoss(softmax=True, to_onehot_y=True, batch=not per_image)(logits.double(),
                                                                                    target.unsqueeze(1))
    torch.testing.assert_close(ours, monai.to(ours.dtype), rtol=1e-8, atol=1e-12)


def test_generalized_dice_hand_computed_per_image_and_weights_carry_no_gradient():
    # one image, 2 pixels of class 0 and 1 of class 1; p given per pixel
    probs = torch.tensor([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]], dtype=torch.float64)
    logits = probs.log().T.reshape(1, 2, 3).requires_grad_()
    target = torch.tensor([[0, 0, 1]])
    w0, w1 = 1 / 2**2, 1 / 1**2
    tp0, tp1 = 0.8 + 0.6, 0.7
    p0, p1 = 0.8 + 0.6 + 0.3, 0.2 + 0.4 + 0.7
    expected = 1 - 2 * (w0 * tp0 + w1 * tp1) / (w0 * (p0 + 2) + w1 * (p1 + 1))
    got = region.generalized_dice_loss(logits, target, smooth=0.0, per_image=True)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    got.backward()
    assert torch.isfinite(logits.grad).all()
    assert region.generalized_dice_loss(logits, target, smooth=0.0, per_image=True, reduction="none").shape == (1,)


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "half", "empty"])
def test_blockwise_region_sums_equal_the_autograd_sums_in_value_and_gradient(per_image, layout):
    """The CPU twin of the Triton region sums: TP, P, G and, for any upstream, the logits' gradient."""
    from segloss.kernels.region_sums import RegionSums
    from segloss.kernels.region_sums import region_sums_autograd

    logits, target, dtype, tolerance = layout_case(3, 5, 7, 6, layout, seed=81)
    g = torch.Generator().manual_seed(82)
    z = logits.clone().requires_grad_()
    sums = RegionSums.apply(z, target, 255, per_image)
    upstream = torch.randn(sums.shape, generator=g, dtype=torch.float64)
    (sums.double() * upstream).sum().backward()
    ref_z = logits.double().requires_grad_()
    expected = region_sums_autograd(ref_z, target, 255, per_image)
    (expected * upstream).sum().backward()
    torch.testing.assert_close(sums.double(), expected.detach(), **tolerance)
    torch.testing.assert_close(z.grad.double(), ref_z.grad, **tolerance)
    assert z.grad.dtype == dtype


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("block", [64, 1000, 1 << 19], ids=["an image a slab", "four images a slab", "all at once"])
def test_blockwise_region_sums_of_many_small_images_group_them_exactly(monkeypatch, per_image, block):
    """Small images go several to a slab (the app's 400 one-class regions looped image by image took
    8x longer); a last slab of fewer images, and one image a slab, give the same sums and gradient."""
    from segloss.kernels import cpu
    from segloss.kernels.region_sums import RegionSums, region_sums_autograd

    monkeypatch.setattr(cpu, "CPU_BLOCK", block)
    logits, target = random_batch(10, 5, (7, 6), scale=3.0, ignore_frac=0.2, dtype=torch.float64, seed=83)
    assert len(list(cpu._slabs(10, 42, 5, logits.device))) == {64: 10, 1000: 3, 1 << 19: 1}[block]
    z = logits.clone().requires_grad_()
    sums = RegionSums.apply(z, target, 255, per_image)
    upstream = torch.randn(sums.shape, generator=torch.Generator().manual_seed(84), dtype=torch.float64)
    (sums * upstream).sum().backward()
    ref = logits.clone().requires_grad_()
    expected = region_sums_autograd(ref, target, 255, per_image)
    (expected * upstream).sum().backward()
    torch.testing.assert_close(sums, expected.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(z.grad, ref.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["dice", "generalized_dice", "focal_tversky"])
def test_region_losses_take_a_double_backward(name):
    """create_graph=True recomputes the sums by plain torch ops: Hessian-vector products stay exact."""
    import segloss

    logits, target = random_batch(2, 3, (4, 4), ignore_frac=0.2, dtype=torch.float64, seed=83)
    loss = segloss.create_loss(name).double()
    assert torch.autograd.gradgradcheck(lambda z: loss(z, target), (logits.requires_grad_(),))


def test_generalized_dice_of_an_all_ignored_batch_is_nan_per_batch_with_none_and_zero_reduced():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.full((2, 4, 4), 255)
    for smooth in (0.0, 1e-5):
        assert torch.isnan(region.generalized_dice_loss(logits, target, smooth=smooth, reduction="none")).all()
        assert region.generalized_dice_loss(logits, target, smooth=smooth) == 0


def test_create_loss_takes_per_image_as_a_bool_too():
    import segloss

    logits, target = random_batch(2, 3, (8, 8), seed=3)
    for flag, word in ((True, "image"), (False, "batch")):
        torch.testing.assert_close(segloss.create_loss("dice", per_image=flag)(logits, target),
                                   segloss.create_loss("dice", per_image=word)(logits, target), rtol=0, atol=0)


def test_generalized_dice_smoothing_weighs_in_on_large_inputs_as_documented():
    target = torch.randint(0, 4, (2, 256, 256), generator=torch.Generator().manual_seed(0))
    uniform = torch.zeros(2, 4, 256, 256)
    assert float(region.generalized_dice_loss(uniform, target)) == pytest.approx(0.720, abs=1e-3)
    assert float(region.generalized_dice_loss(uniform, target, smooth=0.0)) == pytest.approx(0.750, abs=1e-4)
    small = torch.randint(0, 4, (2, 32, 32), generator=torch.Generator().manual_seed(0))
    assert float(region.generalized_dice_loss(torch.zeros(2, 4, 32, 32), small)) == pytest.approx(0.750, abs=1e-3)
