"""Other libraries' conventions (segloss.explain.conventions, segloss.explain.convention_table, segloss.uploads.convention_inputs).

kornia and MONAI are installed beside our torch and are compared directly on random inputs;
torchvision and segmentation_models_pytorch cannot be installed here (their wheels need another
torch), so those reproductions are compared with values computed by hand, in plain Python
floats, from the formulas of their sources (versions cited in each test).
"""

import itertools
import math

import kornia
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import FocalLoss as MonaiFocalLoss

from conftest import random_batch
from segloss.explain import analysis
from segloss.uploads import convention_inputs
from segloss.explain import convention_table
from segloss.explain import conventions as cv
from segloss.explain import dice_conventions
from segloss.losses import region
from segloss.losses import functional as SF


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def binary_focal_by_hand(z, positive, alpha, gamma):
    """One element of a sigmoid focal loss: alpha_t (1 - p_t)^gamma (-log p_t), p_t = p or 1 - p."""
    p_t = sigmoid(z) if positive else 1.0 - sigmoid(z)
    alpha_t = 1.0 if alpha is None else (alpha if positive else 1.0 - alpha)
    return alpha_t * (1.0 - p_t) ** gamma * -math.log(p_t)


# (N=1, C=3, H=1, W=3) logits and labels; the last pixel is ignored where a test says so.
TINY_LOGITS = [[2.0, -1.0, 0.3], [0.5, 0.0, -2.0], [-0.7, 1.5, 0.1]]  # [class][pixel]
TINY_LABELS = [0, 1, 2]


def tiny(ignore_last=False):
    logits = torch.tensor(TINY_LOGITS, dtype=torch.float64).view(1, 3, 1, 3)
    labels = torch.tensor([TINY_LABELS[:2] + [255 if ignore_last else 2]]).view(1, 1, 3)
    return logits, labels


# --------------------------------------------------------------------------- installed libraries
@pytest.mark.parametrize("alpha", [None, 0.25, 0.8])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_frac", [0.0, 0.3])
def test_kornia_reproduction_matches_kornia_0_9(alpha, gamma, reduction, ignore_frac):
    assert kornia.__version__ == "0.9.0"
    logits, target = random_batch(2, 5, (6, 7), ignore_frac=ignore_frac, dtype=torch.float64, seed=3)
    expected = kornia.losses.focal_loss(logits, target, alpha, gamma, reduction, ignore_index=255)
    got = cv.kornia_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction=reduction)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_kornia_reproduction_matches_kornia_on_its_large_cpu_path():
    logits, target = random_batch(1, 8, (256, 256), ignore_frac=0.1, seed=4)  # 2**19 logits: kornia's chunked path
    for alpha in (None, 0.25):
        expected = kornia.losses.focal_loss(logits, target, alpha, 2.0, "mean", ignore_index=255)
        torch.testing.assert_close(cv.kornia_focal_loss(logits, target, alpha=alpha), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("use_softmax", [True, False])
@pytest.mark.parametrize("alpha", [None, 0.25, (0.1, 0.2, 0.3, 0.9)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index, ignore_frac", [(255, 0.3), (255, 0.0), (None, 0.0)])
def test_monai_reproduction_matches_monai_1_6_1(use_softmax, alpha, reduction, ignore_index, ignore_frac):
    logits, target = random_batch(2, 4, (5, 6), ignore_frac=ignore_frac, dtype=torch.float64, seed=5)
    loss = MonaiFocalLoss(to_onehot_y=True, use_softmax=use_softmax, alpha=alpha, gamma=2.0,
                          ignore_index=ignore_index, reduction=reduction)
    expected = loss(logits, target.unsqueeze(1)).double()  # MONAI computes in float32
    got = cv.monai_focal_loss(logits, target, use_softmax=use_softmax, alpha=alpha, gamma=2.0,
                              ignore_index=ignore_index, reduction=reduction)
    torch.testing.assert_close(got, expected, rtol=2e-6, atol=1e-7)


def test_monai_mean_divides_by_valid_pixels_with_ignore_index_and_by_all_elements_without():
    logits, target = random_batch(2, 4, (5, 6), dtype=torch.float64, seed=6)
    with_ignore = cv.monai_focal_loss(logits, target, use_softmax=True, ignore_index=255)
    without = cv.monai_focal_loss(logits, target, use_softmax=True, ignore_index=None)
    torch.testing.assert_close(with_ignore, 4 * without, rtol=1e-12, atol=0)
    torch.testing.assert_close(with_ignore, SF.focal_loss(logits, target), rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- hand-computed references
def test_torchvision_reproduction_matches_hand_computed_sigmoid_focal_loss():
    """torchvision 0.29, ``torchvision/ops/focal_loss.py``: ``sigmoid_focal_loss(inputs, targets, alpha, gamma,
    reduction)`` is ``alpha_t * BCE * (1 - p_t) ** gamma`` per element (``p = sigmoid``, ``p_t = p y + (1-p)(1-y)``,
    ``alpha_t = alpha y + (1 - alpha)(1 - y)``, no weighting for alpha < 0), and ``"mean"`` is ``loss.mean()``."""
    logits, labels = tiny()
    for alpha, gamma in ((0.25, 2.0), (-1.0, 0.0), (0.6, 0.5)):
        elements = [binary_focal_by_hand(TINY_LOGITS[c][i], TINY_LABELS[i] == c, alpha if alpha >= 0 else None, gamma)
                    for c in range(3) for i in range(3)]
        got_mean = cv.torchvision_sigmoid_focal_loss(logits, labels, alpha=alpha, gamma=gamma)
        got_sum = cv.torchvision_sigmoid_focal_loss(logits, labels, alpha=alpha, gamma=gamma, reduction="sum")
        assert got_mean.item() == pytest.approx(sum(elements) / 9, rel=1e-12)
        assert got_sum.item() == pytest.approx(sum(elements), rel=1e-12)
    # the paper defaults on the first pixel's class-0 logit 2.0 (positive): 0.25 * (1 - σ(2))^2 * -log σ(2)
    assert binary_focal_by_hand(2.0, True, 0.25, 2.0) == pytest.approx(4.50891e-4, rel=1e-5)


def test_torchvision_at_gamma_zero_without_alpha_is_bce_with_logits():
    logits, target = random_batch(2, 4, (5, 6), dtype=torch.float64, seed=7)
    one_hot = F.one_hot(target, 4).movedim(-1, 1).double()
    got = cv.torchvision_sigmoid_focal_loss(logits, target, alpha=-1.0, gamma=0.0)
    torch.testing.assert_close(got, F.binary_cross_entropy_with_logits(logits, one_hot), rtol=1e-12, atol=0)


@pytest.mark.parametrize("alpha", [None, 0.25])
def test_smp_reproduction_matches_hand_computed_multiclass_focal_loss(alpha):
    """segmentation_models_pytorch 0.3.x/0.4, ``losses/focal.py`` (``FocalLoss(mode="multiclass")``) and
    ``losses/_functional.py`` (``focal_loss_with_logits``): for each class ``cls``, the binary focal loss of
    ``y_pred[:, cls]`` against ``y_true == cls`` over the non-ignored pixels, ``(1 - pt) ** gamma * BCE`` times
    ``alpha * t + (1 - alpha) * (1 - t)`` when alpha is given, reduced by ``.mean()``; the class losses are summed."""
    logits, labels = tiny(ignore_last=True)
    valid = [0, 1]
    expected = sum(sum(binary_focal_by_hand(TINY_LOGITS[c][i], TINY_LABELS[i] == c, alpha, 2.0) for i in valid)
                   / len(valid) for c in range(3))
    got = cv.smp_focal_loss(logits, labels, alpha=alpha, gamma=2.0, ignore_index=255)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    total = cv.smp_focal_loss(logits, labels, alpha=alpha, gamma=2.0, ignore_index=255, reduction="sum")
    assert total.item() == pytest.approx(expected * len(valid), rel=1e-12)


def test_smp_mean_is_c_times_torchvision_mean_when_nothing_is_ignored():
    logits, target = random_batch(2, 5, (4, 6), dtype=torch.float64, seed=8)
    smp = cv.smp_focal_loss(logits, target, alpha=0.25, ignore_index=None)
    tv = cv.torchvision_sigmoid_focal_loss(logits, target, alpha=0.25)
    torch.testing.assert_close(smp, 5 * tv, rtol=1e-12, atol=0)


def test_weighted_ce_means_match_torch_cross_entropy():
    logits, target = random_batch(2, 4, (5, 6), ignore_frac=0.2, dtype=torch.float64, seed=9)
    weight = torch.tensor([0.2, 1.0, 3.0, 0.5], dtype=torch.float64)
    torch_mean = F.cross_entropy(logits, target, weight=weight, ignore_index=255)
    torch_sum = F.cross_entropy(logits, target, weight=weight, ignore_index=255, reduction="sum")
    by_weights = SF.cross_entropy(logits, target, weight=weight)
    by_pixels = cv.weighted_ce_mean_by_valid_pixels(logits, target, weight)
    torch.testing.assert_close(by_weights, torch_mean, rtol=1e-12, atol=0)
    torch.testing.assert_close(by_pixels, torch_sum / (target != 255).sum(), rtol=1e-12, atol=0)
    assert not torch.isclose(by_weights, by_pixels)


def test_tao_dual_focal_matches_hand_computation_with_p_j_ranked_below_p_t():
    """Tao et al. 2023 (arXiv:2305.13665; github Linwei94/ICML2023-DualFocalLoss, ``Losses/dual_focal_loss.py``):
    ``-(1 - p_k + p_j) ** gamma * log p_k`` with ``p_j`` the top-1 of the probabilities strictly below ``p_k``."""
    probs = [0.6, 0.3, 0.1]
    logits = torch.tensor(probs, dtype=torch.float64).log().view(1, 3).repeat(3, 1)
    target = torch.tensor([0, 1, 2])  # the argmax, the middle class, the smallest class
    p_j = [0.3, 0.1, 0.0]
    expected = [-(1 - probs[t] + p_j[t]) ** 2 * math.log(probs[t]) for t in range(3)]
    got = cv.tao_dual_focal_loss(logits, target, gamma=2.0, reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert cv.tao_dual_focal_loss(logits, target, gamma=2.0).item() == pytest.approx(sum(expected) / 3, rel=1e-12)


def test_tao_dual_focal_with_two_classes_is_2_to_gamma_focal_when_right_and_focal_when_wrong():
    logits, target = random_batch(3, 2, (8, 8), dtype=torch.float64, seed=10)
    tao = cv.tao_dual_focal_loss(logits, target, gamma=1.5, reduction="none")
    focal = SF.focal_loss(logits, target, gamma=1.5, reduction="none")
    right = logits.argmax(1) == target
    torch.testing.assert_close(tao[right], 2 ** 1.5 * focal[right], rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(tao[~right], focal[~right], rtol=1e-12, atol=1e-15)


def test_port_2019_matches_hand_computation_and_ignores_pixels():
    """github CoinCheung/pytorch-loss ``dual_focal_loss.py`` (2019): ``-log(eps + 1 - MSE(p, onehot)).sum(1)``,
    zero at ignored pixels, ``"mean"`` = sum / number of valid pixels, eps = 1e-5."""
    logits, labels = tiny(ignore_last=True)
    expected = []
    for i in (0, 1):
        column = [TINY_LOGITS[c][i] for c in range(3)]
        total = sum(math.exp(v) for v in column)
        p = [math.exp(v) / total for v in column]
        expected.append(-sum(math.log(1e-5 + 1 - (p[c] - (TINY_LABELS[i] == c)) ** 2) for c in range(3)))
    per_pixel = cv.port_2019_dual_focal_loss(logits, labels, reduction="none")
    np.testing.assert_allclose(per_pixel.numpy().ravel(), expected + [0.0], rtol=1e-12)
    assert cv.port_2019_dual_focal_loss(logits, labels).item() == pytest.approx(sum(expected) / 2, rel=1e-12)


# --------------------------------------------------------------------------- the comparison table
@pytest.mark.parametrize("ignore_frac", [0.0, 0.25])
def test_every_stated_conversion_factor_holds(ignore_frac):
    logits, target = random_batch(2, 6, (7, 9), ignore_frac=ignore_frac, scale=2.0, seed=11)
    rows = convention_table.compare_conventions(logits, target, gamma=2.0, alpha=0.3)
    by_name = {row.name: row for row in rows}
    assert len(by_name) == len(rows)
    with_factor = [row for row in rows if row.factor is not None]
    assert len(with_factor) >= 7
    for row in with_factor:
        assert row.value * row.factor == pytest.approx(by_name[row.converts_to].value, rel=1e-12), row.name
    n_valid, elements = int((target != 255).sum()), logits.numel()
    assert by_name["kornia focal_loss, α=None"].factor == pytest.approx(elements / n_valid, rel=1e-15)
    assert ("MONAI FocalLoss softmax, α=0.3, ignore_index=None" in by_name) == (ignore_frac == 0.0)


def test_torchvision_style_mean_is_exactly_ours_over_c_when_nothing_is_ignored():
    logits, target = random_batch(2, 6, (7, 9), seed=12)
    rows = {row.name: row for row in convention_table.compare_conventions(logits, target)}
    kornia_row = rows["kornia focal_loss, α=None"]
    assert kornia_row.factor == 6.0 and kornia_row.factor_formula == "N·C·H·W / |V|"
    assert kornia_row.ratio == pytest.approx(1 / 6, rel=1e-12)


def test_rows_carry_library_reason_and_ratio_to_the_groups_segloss_row():
    logits, target = random_batch(2, 4, (6, 6), ignore_frac=0.1, seed=13)
    rows = convention_table.compare_conventions(logits, target)
    assert [row.group for row in rows] == sorted((row.group for row in rows), key=convention_table.GROUPS.index)
    for group in convention_table.GROUPS:
        first = next(row for row in rows if row.group == group)
        assert first.name.startswith("segloss") and first.ratio == 1.0
    for row in rows:
        assert row.library and row.reason.endswith(".") and math.isfinite(row.value)
    columns = convention_table.rows_as_columns(rows)
    assert len(columns["conversion"]) == len(rows) and columns["conversion"][0] == ""
    assert any(text.startswith("× N·C·H·W / |V| = ") for text in columns["conversion"])


def test_compare_conventions_rejects_bad_parameters():
    logits, target = random_batch(1, 3, (4, 4), seed=14)
    with pytest.raises(ValueError, match="alpha"):
        convention_table.compare_conventions(logits, target, alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        convention_table.compare_conventions(logits, target, alpha=1.0)
    with pytest.raises(ValueError, match="gamma"):
        convention_table.compare_conventions(logits, target, gamma=-1.0)


def test_reproductions_validate_their_inputs():
    logits, target = random_batch(1, 3, (4, 4), seed=15)
    with pytest.raises(ValueError, match="reduction"):
        cv.kornia_focal_loss(logits, target, alpha=None, reduction="none")
    with pytest.raises(TypeError, match="integer"):
        cv.smp_focal_loss(logits, target.float())
    with pytest.raises(ValueError, match=r"Expected target size \(1, 4, 4\)"):
        cv.torchvision_sigmoid_focal_loss(logits, target[:, :3])
    with pytest.raises(ValueError, match="alpha"):
        cv.monai_focal_loss(logits, target, use_softmax=True, alpha=[0.5, 0.5])
    with pytest.raises(ValueError, match="ignore_index is None"):
        cv.monai_focal_loss(logits, torch.full_like(target, -1), ignore_index=None)
    with pytest.raises(ValueError, match="weight"):
        cv.weighted_ce_mean_by_valid_pixels(logits, target, [1.0, 2.0])


def test_dual_focal_curves_follow_each_formula():
    p_t = analysis.probability_grid(64)
    for spread in analysis.SPREADS:
        curves = convention_table.dual_focal_curves(p_t, 5, spread, gamma=2.0)
        assert list(curves) == ["Hossain et al. 2021 (segloss, α=β=γ=ρ=1)", "Tao et al. 2023 (γ=2)",
                                "2019 port: -Σ log(1-(p-y)²)", "cross-entropy"]
        probs = analysis.synthetic_probabilities(p_t, 5, spread).numpy()
        below = np.where(probs[:, 1:] < probs[:, :1], probs[:, 1:], 0.0).max(axis=1)
        np.testing.assert_allclose(curves["Tao et al. 2023 (γ=2)"], -(1 - p_t + below) ** 2 * np.log(p_t), rtol=1e-10)
        hossain = -np.log(p_t) - np.log1p(-probs[:, 1:]).sum(axis=1) + 2 * (1 - p_t)
        np.testing.assert_allclose(curves["Hossain et al. 2021 (segloss, α=β=γ=ρ=1)"], hossain, rtol=1e-10)
        assert np.all(curves["2019 port: -Σ log(1-(p-y)²)"] <= -5 * np.log(1e-5))


# --------------------------------------------------------------------------- inputs
def test_inputs_are_seeded_and_ignored_share_is_applied():
    a, b = convention_inputs.sample_input("lesion", batch_size=1, image_size=32, seed=3)
    c, _ = convention_inputs.sample_input("lesion", batch_size=1, image_size=32, seed=3)
    assert a.shape == (1, 3, 32, 32) and a.dtype == torch.float32 and torch.equal(a, c)
    logits, target = convention_inputs.random_input(4, seed=1)
    assert not torch.equal(logits, convention_inputs.random_input(4, seed=2)[0])
    ignored = convention_inputs.with_ignored(target, 0.5, seed=1)
    assert 0.4 < float((ignored == 255).float().mean()) < 0.6
    assert torch.equal(convention_inputs.with_ignored(target, 0.0), target)


class _Holder:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_upload_inputs_in_several_shapes_are_accepted():
    logits = np.random.default_rng(0).normal(size=(3, 8, 8)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 3, size=(8, 8))
    for stored in ({"logits": logits, "labels": labels}, (torch.from_numpy(logits), torch.from_numpy(labels)),
                   {"scene": _Holder(labels=labels), "prediction": _Holder(logits=torch.from_numpy(logits))}):
        z, y = convention_inputs.input_from_upload(stored)
        assert z.shape == (1, 3, 8, 8) and y.shape == (1, 8, 8) and y.dtype == torch.int64
    with pytest.raises(ValueError, match="no logits and labels"):
        convention_inputs.input_from_upload({"image": logits})
    with pytest.raises(ValueError, match="Expected target size"):
        convention_inputs.input_from_upload({"logits": logits, "mask": labels[:4]})


def test_a_batch_without_valid_pixels_gives_rows_without_factors():
    logits, target = random_batch(1, 3, (4, 4), seed=16)
    rows = convention_table.compare_conventions(logits, torch.full_like(target, 255))
    assert all(row.factor is None for row in rows)
    assert convention_table.rows_as_columns(rows)["conversion"] == [""] * len(rows)


@pytest.mark.parametrize("kwargs", [{}, {"batch": True}, {"include_background": False},
                                    {"batch": True, "squared_pred": True}, {"smooth_nr": 0.5, "smooth_dr": 2.0}])
def test_monai_dice_reproduction_matches_monai_1_6_1(kwargs):
    from monai.losses import DiceLoss

    logits, target = random_batch(3, 4, (6, 6), scale=2.0, seed=21)
    target[target == 3] = 0  # class 3 absent: MONAI still scores it
    ours = dice_conventions.monai_dice_loss(logits, target, **kwargs)
    monai = DiceLoss(softmax=True, to_onehot_y=True, **kwargs)(logits, target.unsqueeze(1))
    torch.testing.assert_close(ours.float(), monai, rtol=1e-5, atol=1e-6)


def test_smp_dice_reproduction_matches_hand_computation():
    # one image, 3 classes, 2 pixels with labels 0 and 1 (class 2 absent); p per pixel given
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]], dtype=torch.float64)
    logits = probs.log().T.unsqueeze(0)  # (1, C=3, 2)
    target = torch.tensor([[0, 1]])
    dice0 = 2 * 0.7 / (0.7 + 0.3 + 1)  # TP = 0.7, sum p = 1.0, sum y = 1
    dice1 = 2 * 0.6 / (0.2 + 0.6 + 1)
    expected = ((1 - dice0) + (1 - dice1) + 0.0) / 3  # absent class 2: 0 in a mean over C = 3
    assert dice_conventions.smp_dice_loss(logits, target).item() == pytest.approx(expected, rel=1e-9)
    ours = region.soft_dice_loss(logits, target, smooth=0.0).item()
    assert ours == pytest.approx(((1 - dice0) + (1 - dice1)) / 2, rel=1e-9)  # present classes only


def test_smp_dice_versions_place_the_smoothing_differently():
    # same input; smooth = 1: smp 0.4+ scores (2I + 2s) / (P + G + 2s), smp 0.3 (2I + s) / (P + G + s)
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]], dtype=torch.float64)
    logits = probs.log().T.unsqueeze(0)
    target = torch.tensor([[0, 1]])
    new0, new1 = (2 * 0.7 + 2) / (1.0 + 1 + 2), (2 * 0.6 + 2) / (0.8 + 1 + 2)
    old0, old1 = (2 * 0.7 + 1) / (1.0 + 1 + 1), (2 * 0.6 + 1) / (0.8 + 1 + 1)
    got_new = dice_conventions.smp_dice_loss(logits, target, smooth=1.0).item()
    got_old = dice_conventions.smp_dice_loss(logits, target, smooth=1.0, version="0.3").item()
    assert got_new == pytest.approx(((1 - new0) + (1 - new1)) / 3, rel=1e-12)
    assert got_old == pytest.approx(((1 - old0) + (1 - old1)) / 3, rel=1e-12)
    assert got_new != pytest.approx(got_old, rel=1e-3)
    assert dice_conventions.smp_dice_loss(logits, target, version="0.3").item() == pytest.approx(
        dice_conventions.smp_dice_loss(logits, target).item(), rel=1e-12)  # the same at smooth 0
    with pytest.raises(ValueError, match="version must be one of"):
        dice_conventions.smp_dice_loss(logits, target, version="0.5")


def _dice_values(logits, target):
    return {row.name: row.value for row in convention_table.compare_conventions(logits, target) if row.group == "dice"}


def test_the_absent_classes_lesson_shows_what_it_says():
    # Library conventions' lesson "Absent classes split Dice": the street scenes of seed 0 miss one
    # class in both images, so smp, segloss and MONAI give three numbers; seed 8 misses one in one image
    # only, so MONAI per image parts from MONAI over the batch.
    logits, target = convention_inputs.sample_input("street", seed=0)
    present = [set(image.unique().tolist()) for image in target]
    assert set(range(logits.shape[1])) - (present[0] | present[1]), "a class absent from both images"
    values = _dice_values(logits, target)
    three = [values["segloss dice, s=0"], values["smp DiceLoss multiclass (smooth=0)"],
             values["MONAI DiceLoss (defaults: per image)"]]
    assert min(abs(a - b) for a, b in itertools.combinations(three, 2)) > 0.03
    logits, target = convention_inputs.sample_input("street", seed=8)
    present = [set(image.unique().tolist()) for image in target]
    assert present[0] != present[1] and present[0] | present[1] == set(range(logits.shape[1]))
    values = _dice_values(logits, target)
    assert values["MONAI DiceLoss (defaults: per image)"] - values["MONAI DiceLoss batch=True"] > 0.02
    assert values["segloss dice, s=0"] == pytest.approx(values["smp DiceLoss multiclass (smooth=0)"], rel=1e-9)


def test_the_ignored_pixels_lesson_factor_is_2c_for_kornia_and_torchvision():
    logits, target = convention_inputs.random_input(5, seed=0)
    target = convention_inputs.with_ignored(target, 0.5, seed=0)
    rows = {row.name: row for row in convention_table.compare_conventions(logits, target, gamma=2.0, alpha=0.25)}
    valid = int((target != 255).sum())
    assert valid == pytest.approx(target.numel() / 2, rel=0.01)
    for name, reference in (("kornia focal_loss, α=None", "segloss focal_loss, α=None"),
                            ("torchvision sigmoid_focal_loss, α=0.25", "MONAI FocalLoss sigmoid, α=0.25")):
        assert rows[name].factor == pytest.approx(logits.numel() / valid, rel=1e-12)
        assert rows[name].factor == pytest.approx(2 * 5, rel=0.01)
        assert rows[name].value * rows[name].factor == pytest.approx(rows[reference].value, rel=1e-9)


def test_a_uint8_mask_gives_the_int64_table_whatever_ignore_index():
    logits, target = convention_inputs.random_input(4, seed=2)
    for ignore_index in (256, -1):  # no uint8 value: nothing ignored (torch would wrap 256 to 0, -1 to 255)
        want = convention_table.compare_conventions(logits, target, ignore_index=ignore_index)
        got = convention_table.compare_conventions(logits, target.to(torch.uint8), ignore_index=ignore_index)
        assert [r.value for r in got] == pytest.approx([r.value for r in want], rel=1e-12, nan_ok=True)


def test_smp_0_6_averages_its_class_losses_where_0_5_summed_them():
    """smp 0.6.0's FocalLoss takes the mean over classes (checked against its code): 1/C of 0.5's."""
    logits, target = random_batch(2, 5, (4, 6), dtype=torch.float64, seed=8)
    old = cv.smp_focal_loss(logits, target, alpha=0.25, ignore_index=None)
    new = cv.smp_focal_loss(logits, target, alpha=0.25, ignore_index=None, version="0.6")
    torch.testing.assert_close(new * 5, old, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="version must be"):
        cv.smp_focal_loss(logits, target, version="0.7")
