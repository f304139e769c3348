"""segloss.analysis: curves and gradients from autograd agree with closed forms and finite differences."""

import numpy as np
import pytest
import torch

import segloss
import segloss.losses.modules
from conftest import random_batch

from segloss.explain import analysis


def test_synthetic_probabilities_hold_p_t_and_sum_to_one():
    p_t = analysis.probability_grid(50)
    for spread in analysis.SPREADS:
        probs = analysis.synthetic_probabilities(p_t, 7, spread)
        torch.testing.assert_close(probs.sum(1), torch.ones(50, dtype=torch.float64))
        torch.testing.assert_close(probs[:, 0], torch.as_tensor(p_t))
    confusing = analysis.synthetic_probabilities([0.5], 7, "confusing")
    assert confusing[0, 1].item() == pytest.approx(0.5 * analysis.CONFUSING_SHARE)


def test_ce_curve_is_minus_log_p_t_and_focal_matches_its_closed_form():
    p_t = analysis.probability_grid(64)
    ce = analysis.loss_curve(analysis.pixel_loss("ce"), p_t, 19)
    np.testing.assert_allclose(ce, -np.log(p_t), rtol=1e-10)
    focal = analysis.loss_curve(analysis.pixel_loss("focal", {"gamma": 2.0}), p_t, 19)
    np.testing.assert_allclose(focal, -(1 - p_t) ** 2 * np.log(p_t), rtol=1e-8)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_focal_gradient_matches_closed_form_from_loss_math(gamma):
    p_t = analysis.probability_grid(64)
    grads = analysis.logit_gradients(analysis.pixel_loss("focal", {"gamma": gamma}), p_t, 5, "confusing")
    probs = analysis.synthetic_probabilities(p_t, 5, "confusing").numpy()
    factor = (1 - p_t) ** gamma - gamma * p_t * (1 - p_t) ** (gamma - 1) * np.log(p_t)
    expected = factor[:, None] * (probs - np.eye(5)[0])
    np.testing.assert_allclose(grads, expected, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("name, params", [("dual_focal", {"gamma": 1.5, "rho": 1.3}), ("focal", {"gamma": 0.5}),
                                          ("recall", {})])
def test_logit_gradients_match_central_finite_differences(name, params):
    p_t = np.array([0.05, 0.3, 0.7, 0.95])
    loss = analysis.pixel_loss(name, params, recall=0.4)
    grads = analysis.logit_gradients(loss, p_t, 4, "confusing")
    logits = analysis.synthetic_probabilities(p_t, 4, "confusing").log()
    target = torch.zeros(4, dtype=torch.long)
    eps = 1e-6
    numeric = np.zeros_like(grads)
    for k in range(4):
        step = torch.zeros_like(logits)
        step[:, k] = eps
        with torch.no_grad():
            numeric[:, k] = ((loss(logits + step, target) - loss(logits - step, target)) / (2 * eps)).numpy()
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-9)


def test_dual_focal_terms_add_up_to_the_loss_and_only_the_false_term_depends_on_spread():
    p_t = analysis.probability_grid(32)
    params = {"alpha": 0.7, "beta": 1.3, "gamma": 2.0, "rho": 1.1}
    for spread in analysis.SPREADS:
        terms = analysis.dual_focal_terms(p_t, 6, spread, **params)
        full = analysis.loss_curve(analysis.pixel_loss("dual_focal", params), p_t, 6, spread)
        np.testing.assert_allclose(sum(terms.values()), full, rtol=1e-10)
        np.testing.assert_allclose(terms["true-class CE"], -np.log(p_t), rtol=1e-10)
    even = analysis.dual_focal_terms(p_t, 6, "even", **params)
    confusing = analysis.dual_focal_terms(p_t, 6, "confusing", **params)
    assert not np.allclose(even["false-class term"], confusing["false-class term"])


def test_recall_curve_is_one_minus_recall_times_ce():
    p_t = analysis.probability_grid(16)
    for recall in (0.0, 0.5, 0.9):
        values = analysis.loss_curve(analysis.pixel_loss("recall", recall=recall), p_t, 5)
        np.testing.assert_allclose(values, (1 - recall) * -np.log(p_t), rtol=1e-10)


def test_weighted_ce_curve_uses_the_chosen_class_weight():
    counts = [1000.0, 10.0, 100.0]
    p_t = analysis.probability_grid(8)
    loss = analysis.pixel_loss("weighted_ce", {"scheme": "median"}, class_counts=counts)
    for true_class, weight in enumerate([0.1, 10.0, 1.0]):
        values = analysis.loss_curve(loss, p_t, 3, true_class=true_class)
        np.testing.assert_allclose(values, weight * -np.log(p_t), rtol=1e-6)


def test_gradient_surface_shape_dtype_and_gamma_zero_row_equals_ce():
    p_t = analysis.probability_grid(256)
    gammas = np.linspace(0, 5, 64)
    surface = analysis.gradient_surface("focal", p_t, "gamma", gammas, 19)
    assert surface.shape == (64, 256) and surface.dtype == np.float32
    ce = analysis.gradient_magnitude(analysis.logit_gradients(analysis.pixel_loss("ce"), p_t, 19))
    np.testing.assert_allclose(surface[0], ce, rtol=1e-6)
    assert np.all(np.diff(surface[:, -1]) <= 0)  # more gamma, less push on the easiest pixel


def test_gradient_components_and_bad_arguments():
    grads = np.array([[-3.0, 4.0, 0.0]])
    assert analysis.gradient_magnitude(grads, "norm")[0] == 5.0
    assert analysis.gradient_magnitude(grads, "true")[0] == 3.0
    assert analysis.gradient_magnitude(grads, "false")[0] == 4.0
    with pytest.raises(ValueError, match="component must be one of"):
        analysis.gradient_magnitude(grads, "max")
    with pytest.raises(ValueError, match="spread must be one of"):
        analysis.synthetic_probabilities([0.5], 3, "random")
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        analysis.synthetic_probabilities([1.0], 3)
    with pytest.raises(ValueError, match=r"true_class must lie in \[0, 3\)"):
        analysis.loss_curve(analysis.pixel_loss("ce"), [0.5], 3, true_class=3)


def test_sweepable_parameters():
    assert analysis.sweepable_parameters("focal") == ["gamma", "alpha", "label_smoothing"]
    assert analysis.sweepable_parameters("recall") == ["recall"]
    assert analysis.sweepable_parameters("weighted_ce") == [] and analysis.sweepable_parameters("ce") == []
    assert analysis.sweepable_parameters("tversky") == ["beta", "smooth"]  # alpha: no false positives to weigh
    assert analysis.sweepable_parameters("dice_focal") == ["gamma", "dice_weight", "smooth"]
    assert analysis.sweepable_parameters("lovasz") == []


def test_gradient_map_of_ce_is_the_norm_of_p_minus_onehot_and_zero_when_ignored():
    logits, target = random_batch(2, 4, (5, 5), ignore_frac=0.3, seed=40)
    grad_map = analysis.gradient_map(segloss.create_loss("ce", reduction="sum"), logits, target)
    p = torch.softmax(logits, 1)
    onehot = torch.nn.functional.one_hot(target.clamp(max=3), 4).movedim(-1, 1).float()
    expected = torch.where(target != 255, (p - onehot).norm(dim=1), 0.0)
    torch.testing.assert_close(grad_map, expected)
    true = analysis.gradient_map(segloss.create_loss("ce", reduction="sum"), logits, target, "true")
    torch.testing.assert_close(true, torch.where(target != 255, 1 - p.gather(1, target.clamp(max=3)[:, None])[:, 0], 0.0))


def test_gradient_map_of_a_region_loss_matches_finite_differences():
    logits, target = random_batch(1, 3, (4, 4), dtype=torch.float64, seed=41)
    dice = segloss.losses.modules.DiceLoss()
    grad_map = analysis.gradient_map(dice, logits, target)
    eps, (h, w) = 1e-6, (1, 2)
    numeric = torch.zeros(3, dtype=torch.float64)
    for k in range(3):
        step = torch.zeros_like(logits)
        step[0, k, h, w] = eps
        numeric[k] = (dice(logits + step, target) - dice(logits - step, target)) / (2 * eps)
    # scaled by the 16 valid pixels: the mean's gradient on the per-pixel scale
    assert grad_map[0, h, w].item() == pytest.approx(16 * numeric.norm().item(), rel=1e-6)


def test_gradient_map_of_a_mean_is_each_pixels_own_gradient():
    logits, target = random_batch(2, 4, (5, 5), ignore_frac=0.3, seed=43)
    for component in analysis.COMPONENTS:
        by_sum = analysis.gradient_map(segloss.create_loss("focal", reduction="sum"), logits, target, component)
        by_mean = analysis.gradient_map(segloss.create_loss("focal"), logits, target, component)
        torch.testing.assert_close(by_mean, by_sum)


@pytest.mark.parametrize("name, closed_form", [
    ("dice", lambda p: (1 - p) / (1 + p)),
    ("jaccard", lambda p: 1 - p),
    ("lovasz", lambda p: 1 - p),
    ("tversky", lambda p: 0.7 * (1 - p) / (p + 0.7 * (1 - p))),
    ("focal_tversky", lambda p: (0.7 * (1 - p) / (p + 0.7 * (1 - p))) ** 0.75),
    ("dice_ce", lambda p: -np.log(p) + 0.5 * (1 - p) / (1 + p)),
])
def test_region_loss_curves_are_the_closed_forms_of_one_uniform_region(name, closed_form):
    p_t = analysis.probability_grid(33)
    params = {"smooth": 0.0} if "smooth" in segloss.LOSSES[name].defaults else {}
    if name == "dice_ce":
        params["dice_weight"] = 0.5
    for spread in analysis.SPREADS:
        values = analysis.loss_curve(analysis.pixel_loss(name, params), p_t, 7, spread)
        np.testing.assert_allclose(values, closed_form(p_t), rtol=1e-9, atol=1e-12)


def test_region_loss_gradient_is_the_region_total_on_the_per_pixel_scale():
    # Jaccard of a uniform region is 1 - p_t, so d/dz of the shared logits is -p_t (onehot - p)
    p_t = np.array([0.05, 0.3, 0.7, 0.99])
    grads = analysis.logit_gradients(analysis.pixel_loss("jaccard", {"smooth": 0.0}), p_t, 5, "confusing")
    probs = analysis.synthetic_probabilities(p_t, 5, "confusing").numpy()
    expected = -p_t[:, None] * (np.eye(5)[0] - probs)
    np.testing.assert_allclose(grads, expected, rtol=1e-9, atol=1e-15)
    # a pixel-wise loss is the same whether one pixel or a region of them
    one = analysis.logit_gradients(analysis.pixel_loss("focal"), p_t, 5)
    region = analysis.logit_gradients(analysis.uniform_region_loss(segloss.create_loss("focal").double(), 50), p_t, 5)
    np.testing.assert_allclose(region, one, rtol=1e-9)


def test_per_image_loss_splits_a_batch_into_its_images():
    logits, target = random_batch(3, 4, (6, 6), ignore_frac=0.2, seed=44, dtype=torch.float64)
    weight = [1.0, 2.0, 0.5, 1.0]
    for name in ("focal", "dice", "dice_ce", "lovasz"):
        extra = {"per_image": "image"} if not segloss.LOSSES[name].pixelwise else {}
        module = segloss.create_loss(name, weight=weight, **extra).double()
        each = analysis.per_image_loss(module, logits, target)
        alone = torch.stack([module(logits[i:i + 1], target[i:i + 1]) for i in range(3)])
        torch.testing.assert_close(each, alone, msg=name)
    with pytest.raises(ValueError, match="per_image=True"):
        analysis.per_image_loss(segloss.create_loss("dice"), logits, target)


def test_focal_loss_and_gradient_maps_tell_different_stories_on_easy_pixels():
    p_t = np.array([0.9])  # an easy pixel
    focal = analysis.pixel_loss("focal", {"gamma": 2.0})
    ce = analysis.pixel_loss("ce")
    loss_ratio = analysis.loss_curve(focal, p_t, 19)[0] / analysis.loss_curve(ce, p_t, 19)[0]
    grads = [analysis.gradient_magnitude(analysis.logit_gradients(f, p_t, 19))[0] for f in (focal, ce)]
    assert loss_ratio == pytest.approx(0.01, rel=1e-6)  # (1 - 0.9)^2
    assert grads[0] / grads[1] == pytest.approx(0.01 - 2 * 0.9 * 0.1 * np.log(0.9), rel=1e-6)  # ~0.029


def test_gradient_map_rejects_per_pixel_losses_and_unknown_components():
    logits, target = random_batch(1, 3, (2, 2), seed=42)
    with pytest.raises(ValueError, match="must return a scalar"):
        analysis.gradient_map(segloss.create_loss("ce", reduction="none"), logits, target)
    with pytest.raises(ValueError, match="component must be one of"):
        analysis.gradient_map(segloss.create_loss("ce"), logits, target, "max")


def test_gradient_map_of_a_summed_compound_loss_is_not_rescaled():
    logits, target = random_batch(2, 4, (8, 8), seed=45)
    by_sum = analysis.gradient_map(segloss.create_loss("dice_ce", reduction="sum"), logits, target)
    by_mean = analysis.gradient_map(segloss.create_loss("dice_ce"), logits, target)
    assert segloss.create_loss("dice_ce", reduction="sum").reduction == "sum"
    # "sum": the CE part's per-pixel gradient as is; the Dice part is the same in both
    z = logits.clone().requires_grad_()
    segloss.create_loss("dice_ce", reduction="sum")(z, target).backward()
    torch.testing.assert_close(by_sum, z.grad.norm(dim=1))
    assert by_mean.mean() < 10 * by_sum.mean()


@pytest.mark.parametrize("num_classes", [2, 3, 7])
def test_boundary_pixel_is_a_foreground_pixel_inside_its_region_next_to_the_confusing_class(num_classes):
    """(1/|K|) [ -d p_t + (d + 1) p_confusing ], K the foreground classes; with C = 2 the confusing
    class is the (unscored) background."""
    p_t = analysis.probability_grid(9)
    for depth in (0, 2, 5):
        got = analysis.loss_curve(analysis.pixel_loss("boundary", depth=depth), p_t, num_classes, "confusing",
                                  true_class=analysis.picture_class("boundary"))
        confusing = (1 - p_t) * (analysis.CONFUSING_SHARE if num_classes > 2 else 1.0)
        across = confusing if num_classes > 2 else 0.0
        np.testing.assert_allclose(got, (-depth * p_t + (depth + 1) * across) / (num_classes - 1), rtol=1e-10,
                                   atol=1e-12)


def test_gradients_with_the_pixel_in_another_class_come_back_in_true_class_order():
    p_t = analysis.probability_grid(7)
    ce = analysis.pixel_loss("ce")
    np.testing.assert_allclose(analysis.logit_gradients(ce, p_t, 5, "confusing", true_class=3),
                               analysis.logit_gradients(ce, p_t, 5, "confusing"), rtol=1e-12, atol=1e-15)
    surface = analysis.gradient_surface("boundary", p_t, "depth", [0.0, 4.0], 4, component="true")
    assert analysis.sweepable_parameters("boundary") == ["depth"]
    assert (surface[1] > surface[0]).all()  # deeper inside its region: a stronger push on the true class
    assert analysis.sweepable_parameters("dice_boundary") == ["boundary_weight"]  # not the schedule's step


def test_a_shifted_boundary_costs_the_boundary_loss_about_k_squared_and_the_others_about_k():
    losses = {name: segloss.create_loss(name) for name in ("ce", "dice", "boundary")}
    values = analysis.boundary_shift_losses(losses, [-8, -4, 0, 4, 8], 5)
    for name, curve in values.items():
        excess = curve - curve[2]
        assert excess.argmin() == 2 and (np.delete(excess, 2) > 0).all(), name  # best at the true boundary
        grown, shrunk = excess[4] / excess[3], excess[0] / excess[1]
        if name == "boundary":
            assert grown > 3.5 and shrunk > 3, (grown, shrunk)  # distances add up: about k^2
        else:
            assert grown < 2.5 and shrunk < 2.5, (name, grown, shrunk)  # wrong pixels add up: about k
    with pytest.raises(ValueError, match="shifts must lie"):
        analysis.boundary_shift_losses(losses, [-12], 5)


def test_per_image_loss_of_the_scheduled_sum_is_each_images_own_loss():
    module = segloss.create_loss("dice_boundary", region="dice", per_image="image", boundary_weight=0.5).double()
    module.schedule_step()
    logits, target = random_batch(3, 4, (6, 6), seed=91)
    each = analysis.per_image_loss(module, logits.double(), target)
    for n in range(3):
        torch.testing.assert_close(each[n], module(logits[n:n + 1].double(), target[n:n + 1]))


@pytest.mark.parametrize("name", analysis.BOUNDARY_LOSSES[1:])
def test_a_uniform_region_with_a_boundary_term_is_scored_with_its_own_maps(name):
    """The region images' maps come from one transform per class (every image is one class): the same
    values and gradients as the module computing each image's maps itself (it ran scipy per image per
    row of a surface: 19 s for a Gradients page of Dice + boundary)."""
    module = segloss.create_loss(name, per_image="image", boundary_weight=0.3).double()
    loss = analysis.uniform_region_loss(module, 9)
    logits = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1, 0, 3, 1, 2])
    values = loss(logits, target)
    (grad,) = torch.autograd.grad(values.sum(), logits)
    z = logits.detach().clone().requires_grad_(True)
    want = torch.stack([module(z[n, :, None].expand(-1, 9)[None], target[n].expand(1, 9)) for n in range(5)])
    (want_grad,) = torch.autograd.grad(want.sum(), z)
    torch.testing.assert_close(values, want)
    torch.testing.assert_close(grad, want_grad)


def test_sweep_range_and_grid_offer_round_slices_within_the_losses_bounds():
    assert analysis.sweep_range("focal", "gamma") == (0.0, 5.0)
    assert analysis.sweep_range("dual_focal", "rho") == (1.0, 3.0)
    low, high = analysis.sweep_range("ohem", "threshold")
    assert (low, high) == (0.05, 1.0)
    values, rows = analysis.sweep_grid(0.0, 5.0, "gamma")
    assert [values[i] for i in rows] == [0.0, 0.5, 1.0, 2.0, 5.0]
    assert values == tuple(sorted(values)) and values[0] == 0.0 and values[-1] == 5.0 and len(values) >= 64
    values, rows = analysis.sweep_grid(0.05, 1.0, "threshold")  # no preferred slices: round values inside
    assert [values[i] for i in rows] == [0.25, 0.5, 0.75, 0.9, 1.0]


def test_ratios_to_ce_and_the_drawing_order_of_curves_that_stop():
    ce = np.array([2.0, 1.0, 0.0])
    ratios = analysis.ratio_to_ce({"a": np.array([1.0, 1.0, 0.0])}, ce)
    np.testing.assert_allclose(ratios["a"], [0.5, 1.0, 0.0])
    assert analysis.ratio_at(np.array([0.1, 0.5, 0.9]), ratios, 0.88) == {"a": 0.0}
    curves = {"late": np.array([1.0, 1.0, 0.0]), "never": np.array([1.0, 1.0, 1.0]), "early": np.array([1.0, 0, 0])}
    assert analysis.first_to_stop(curves) == ["early", "late", "never"]
    assert analysis.first_to_stop({"never": np.ones(3)}) == []


def test_takes_values_checks_the_parameter_and_its_bounds():
    assert analysis.takes_values("focal", "gamma", [0.0, 5.0])
    assert not analysis.takes_values("ce", "gamma", [0.0])
    assert not analysis.takes_values("dual_focal", "rho", [0.5])  # rho >= 1


def test_gradient_map_works_under_inference_mode_as_a_validation_loop_runs():
    import segloss

    logits = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    target = torch.randint(0, 3, (2, 6, 6), generator=torch.Generator().manual_seed(6))
    for name in ("focal", "dice"):
        loss = segloss.create_loss(name)
        want = analysis.gradient_map(loss, logits, target)
        with torch.inference_mode():
            inside = analysis.gradient_map(loss, logits, target)
            made_inside = analysis.gradient_map(loss, logits.clone(), target.clone())  # inference tensors
        torch.testing.assert_close(inside, want)
        torch.testing.assert_close(made_inside, want)


def test_per_image_loss_of_ohem_divides_by_the_kept_pixels():
    logits, target = random_batch(1, 4, (8, 8), scale=3.0, ignore_frac=0.1, seed=45, dtype=torch.float64)
    for weight in (None, [1.0, 2.0, 0.5, 1.0]):
        module = segloss.create_loss("ohem", threshold=0.5, min_kept=0.2, weight=weight).double()
        torch.testing.assert_close(analysis.per_image_loss(module, logits, target)[0], module(logits, target))


def test_region_push_note_reads_each_region_losss_two_ends_off_its_curve():
    """The Gradients page said of every region loss that its push vanishes for confident mistakes and
    fades near p_t = 1 as CE's: false for Dice + CE (CE's push at p_t -> 0) and Focal Tversky
    (3.2x CE's at p_t = 0.999 with its exponent 0.75)."""
    p_t = analysis.probability_grid(256)

    def note(name):
        grads = analysis.logit_gradients(analysis.pixel_loss(name), p_t, 19, "even")
        ce = analysis.gradient_magnitude(analysis.logit_gradients(analysis.pixel_loss("ce"), p_t, 19, "even"))
        return analysis.region_push_note(segloss.LOSSES[name].title, p_t, analysis.gradient_magnitude(grads), ce)

    dice = note("dice")
    assert "scores regions, not pixels" in dice and "vanishes for confident mistakes" in dice
    assert "fades as cross-entropy's does" in dice
    focal_tversky = note("focal_tversky")
    assert "vanishes" in focal_tversky and "falls off more slowly than cross-entropy's (3.2x" in focal_tversky
    dice_ce = note("dice_ce")
    assert "and pixels in its pixel-wise part" in dice_ce and "keeps pushing confident mistakes (100%" in dice_ce
