"""The registry is complete enough for pages to build widgets from, and create_loss checks input."""

import pytest
import torch

import segloss
from segloss.losses import functional as SF
from segloss.losses import region
from segloss.losses.boundary import boundary_loss
from segloss.losses.unified_focal import unified_focal_loss
from conftest import random_batch

COUNTS = [1000, 200, 50, 5]


REGION = {"generalized_dice", "unified_focal", "dice", "jaccard", "tversky", "focal_tversky", "lovasz", "dice_ce", "dice_focal",
          "dice_boundary"}


def test_registry_lists_the_losses_of_the_design_and_the_region_losses():
    pixelwise = {"ce", "weighted_ce", "focal", "dual_focal", "recall", "ohem", "label_smoothing_ce", "boundary"}
    assert set(segloss.LOSSES) == pixelwise | REGION
    assert {name for name, spec in segloss.LOSSES.items() if spec.pixelwise} == pixelwise


def test_region_entries_are_the_region_functions_with_the_registry_parameters():
    logits, target = random_batch(3, 4, (6, 6), ignore_frac=0.1, seed=33)
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5])
    common = {"weight": weight, "ignore_index": 255}
    cases = {
        "dice": ({"smooth": 2.0, "per_image": "image"},
                 region.soft_dice_loss(logits, target, smooth=2.0, per_image=True, **common)),
        "jaccard": ({"smooth": 0.0}, region.soft_jaccard_loss(logits, target, smooth=0.0, **common)),
        "tversky": ({"alpha": 0.2, "beta": 0.8},
                    region.tversky_loss(logits, target, alpha=0.2, beta=0.8, **common)),
        "focal_tversky": ({"gamma": 1.5}, region.tversky_loss(logits, target, alpha=0.3, beta=0.7, gamma=1.5,
                                                               **common)),
        "lovasz": ({"per_image": "image"}, region.lovasz_softmax_loss(logits, target, per_image=True, **common)),
        "generalized_dice": ({"smooth": 0.5}, region.generalized_dice_loss(logits, target, smooth=0.5, **common)),
        "unified_focal": ({"delta": 0.7}, unified_focal_loss(logits, target, delta=0.7)),  # takes no class weights
        "dice_ce": ({"dice_weight": 0.5},
                    SF.cross_entropy(logits, target, **common) + 0.5 * region.soft_dice_loss(logits, target, **common)),
        "dice_focal": ({"gamma": 1.0, "smooth": 3.0},
                       SF.focal_loss(logits, target, gamma=1.0, **common)
                       + region.soft_dice_loss(logits, target, smooth=3.0, **common)),
        "dice_boundary": ({"boundary_weight": 0.3, "region": "dice"},
                          region.soft_dice_loss(logits, target, **common)
                          + 0.3 * boundary_loss(logits, target, ignore_index=255)),  # the boundary term takes no weights
    }
    assert set(cases) == REGION
    for name, (params, expected) in cases.items():
        weights = {} if name == "unified_focal" else {"weight": weight}
        torch.testing.assert_close(segloss.create_loss(name, **weights, **params)(logits, target), expected,
                                   msg=name)


def test_a_sum_with_a_region_loss_has_no_per_pixel_map_and_says_so():
    with pytest.raises(ValueError, match="no per-pixel map"):
        segloss.create_loss("dice_ce", reduction="none")
    per_class = segloss.create_loss("dice", reduction="none")(*random_batch(2, 4, (5, 5), seed=34))
    assert per_class.shape == (4,)


@pytest.mark.parametrize("name", sorted(segloss.LOSSES))
def test_every_spec_is_complete(name):
    spec = segloss.LOSSES[name]
    assert spec.name == name and spec.title and spec.summary and spec.formula.strip()
    assert ("arXiv" in spec.citation or "doi" in spec.citation or "torch" in spec.citation)
    assert spec.link.startswith("https://")
    for param in spec.params:
        assert param.help and param.label
        if param.kind == "float":
            assert param.low <= param.default <= param.high and param.step > 0
        else:
            assert param.choices and (param.kind == "multichoice" or param.default in param.choices)


def _at_bounds(spec):
    yield {}
    for param in spec.params:
        if param.kind == "float":
            yield {param.name: param.low}
            yield {param.name: param.high}
            if param.slider:
                yield {param.name: param.slider[0]}
                yield {param.name: param.slider[1]}
        elif param.kind == "choice":
            for choice in param.choices:
                yield {param.name: choice}
        else:
            yield {param.name: tuple(param.choices)}


@pytest.mark.parametrize("name", sorted(segloss.LOSSES))
def test_create_loss_works_at_defaults_and_every_bound(name):
    spec = segloss.LOSSES[name]
    logits, target = random_batch(2, 4, (5, 5), scale=30.0, ignore_frac=0.1, seed=31)
    for params in _at_bounds(spec):
        module = segloss.create_loss(name, class_counts=COUNTS, **params)
        z = logits.clone().requires_grad_()
        value = module(z, target)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(z.grad).all(), params


@pytest.mark.parametrize("name, params", [("recall", {"momentum": 0.999}), ("focal", {"gamma": 12.0}),
                                          ("dual_focal", {"gamma": 15.0}), ("ohem", {"threshold": 0.01}),
                                          ("label_smoothing_ce", {"label_smoothing": 0.6}),
                                          ("focal", {"label_smoothing": 0.8})])
def test_create_loss_takes_what_the_modules_take_beyond_the_apps_sliders(name, params):
    """create_loss refused values the modules accept (a recall momentum of 0.999, focal gamma 12): its
    bounds were the app's slider ranges, which a config file has no reason to keep to."""
    module = segloss.create_loss(name, **params)
    (key, value), = params.items()
    assert getattr(module, key) == value
    param = segloss.LOSSES[name].param(key)
    assert param.slider is not None and not (param.slider[0] <= value <= param.slider[1])  # the app keeps its range


def test_create_loss_passes_parameters_through():
    logits, target = random_batch(2, 4, (5, 5), seed=32)
    focal = segloss.create_loss("focal", gamma=3.0, alpha=[0.1, 0.2, 0.3, 0.4], reduction="sum")
    expected = segloss.functional.focal_loss(logits, target, gamma=3.0, alpha=[0.1, 0.2, 0.3, 0.4], reduction="sum")
    torch.testing.assert_close(focal(logits, target), expected)
    weighted = segloss.create_loss("weighted_ce", scheme="inverse", class_counts=COUNTS)
    weight = segloss.losses.weights.inverse_frequency(COUNTS)
    torch.testing.assert_close(weighted(logits, target), segloss.functional.cross_entropy(logits, target, weight=weight))


@pytest.mark.parametrize("call, error, message", [
    (lambda: segloss.create_loss("dyce"), ValueError, "unknown loss 'dyce'"),
    (lambda: segloss.create_loss("dice", per_image="pixel"), ValueError, r"per_image must be one of \('batch', 'image'\)"),
    (lambda: segloss.create_loss("focal_tversky", gamma=0.0), ValueError, r"gamma must lie in \[0.1, 5.0\]"),
    (lambda: segloss.create_loss("dice_ce", dice_weight=-1.0), ValueError, r"dice_weight must lie in \[0.0, 10.0\]"),
    (lambda: segloss.create_loss("focal", gama=2.0), ValueError, r"no parameter\(s\) \['gama'\]"),
    (lambda: segloss.create_loss("focal", gamma=2000.0), ValueError, r"focal: gamma must lie in \[0.0, 1000.0\]"),
    (lambda: segloss.create_loss("focal", gamma="big"), TypeError, "must be a number"),
    (lambda: segloss.create_loss("weighted_ce"), ValueError, "needs class_counts"),
    (lambda: segloss.create_loss("weighted_ce", scheme="sqrt", class_counts=COUNTS), ValueError, "must be one of"),
    (lambda: segloss.create_loss("dual_focal", learnable=("zeta",)), ValueError, "unknown"),
    (lambda: segloss.create_loss("dual_focal", learnable=None), TypeError,
     r"dual_focal: learnable must be a name or a collection of names .* got None"),
    (lambda: segloss.create_loss("dual_focal", learnable=b"gamma"), TypeError, "dual_focal: learnable must be a name"),
    (lambda: segloss.create_loss("dual_focal", learnable=3), TypeError, "dual_focal: learnable must be a name"),
    (lambda: segloss.create_loss("dual_focal", rho=0.5), ValueError, r"rho must lie in \[1.0, 10.0\]"),
])
def test_create_loss_rejects_bad_requests(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_settings_are_shown_in_the_symbols_of_the_formulas():
    """Pages name a run's parameters as the loss's formula does (λ, δ, γ), not by Python names
    (``tversky_weight``); parameters without a symbol keep their widget label."""
    from segloss.losses.registry import PARAM_SYMBOLS, settings_text

    assert settings_text("unified_focal", {"tversky_weight": 0.5, "delta": 0.6, "gamma": 0.5, "per_image": "image"}) \
        == "λ = 0.5, δ = 0.6, γ = 0.5, Regions per image"
    assert settings_text("dual_focal", {"learnable": ("gamma", "rho")}) == "Learn by backpropagation gamma + rho"
    assert settings_text("not_a_loss", {"gamma": 2.0, "odd": 1}) == "γ = 2, odd 1"
    for loss, names in (("unified_focal", ("tversky_weight", "delta", "gamma")), ("focal", ("alpha", "gamma")),
                        ("dual_focal", ("alpha", "beta", "gamma", "rho")), ("dice_ce", ("dice_weight",))):
        for name in names:  # the symbols are those the formulas write
            latex = {"α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "ρ": r"\rho", "δ": r"\delta", "λ": r"\lambda"}
            assert latex[PARAM_SYMBOLS[name]] in segloss.LOSSES[loss].formula, (loss, name)



def test_each_loss_has_its_own_symbol_in_its_formula():
    """The Home page sets the formulas side by side: Lovász-Softmax and label smoothing were both L_LS."""
    import re

    symbols = {}
    for name, spec in segloss.LOSSES.items():
        found = re.match(r"(?:\\begin\{aligned\})?\\mathcal\{L\}_\{((?:[^{}]|\{[^{}]*\})*)\}", spec.formula)
        if found:  # sums (Dice + CE, ...) write a plain L for the total
            symbols.setdefault(found.group(1), []).append(name)
    assert len(symbols) >= 14 and all(len(names) == 1 for names in symbols.values()), symbols
