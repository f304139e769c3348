"""nn.Module wrappers: module == function, learnable Dual Focal parameters, device/dtype moves."""

import pytest
import torch

import segloss
import segloss.losses.functional as SF
from conftest import random_batch

CASES = [
    (segloss.CrossEntropyLoss, SF.cross_entropy, {"weight": [1.0, 2.0, 0.5, 1.5]}),
    (segloss.FocalLoss, SF.focal_loss, {"gamma": 1.5, "alpha": [0.2, 0.4, 0.6, 0.8]}),
    (segloss.FocalLoss, SF.focal_loss, {"gamma": 0.5, "alpha": 0.25}),
    (segloss.DualFocalLoss, SF.dual_focal_loss, {"alpha": 0.5, "beta": 2.0, "gamma": 1.5, "rho": 1.2}),
    (segloss.RecallLoss, SF.recall_loss, {"weight": [1.0, 1.0, 3.0, 1.0]}),
]


@pytest.mark.parametrize("module_cls, function, kwargs", CASES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_module_equals_function(module_cls, function, kwargs, reduction):
    logits, target = random_batch(2, 4, (5, 5), ignore_frac=0.2, seed=21)
    module = module_cls(**kwargs, reduction=reduction)
    torch.testing.assert_close(module(logits, target), function(logits, target, **kwargs, reduction=reduction))


@pytest.mark.parametrize("module_cls, function, kwargs", CASES)
def test_module_weights_follow_dtype_moves(module_cls, function, kwargs):
    logits, target = random_batch(2, 4, (3, 3), seed=22)
    module = module_cls(**kwargs).double()
    torch.testing.assert_close(module(logits.double(), target), function(logits.double(), target, **kwargs))


def test_dfl_learnable_parameters_are_reachable_and_bounded():
    loss = segloss.DualFocalLoss(gamma=2.0, rho=1.0, learnable=("gamma", "rho"), bounds={"gamma": (0.5, 4.0)})
    names = {name for name, _ in loss.named_parameters()}
    assert names == {"raw_gamma", "raw_rho"}
    values = loss.current_params()
    assert values["gamma"] == pytest.approx(2.0, rel=1e-5)
    assert 1.0 < values["rho"] < 1.01  # starts just inside its lower bound
    logits, target = random_batch(4, 3, (8, 8), seed=23)
    optimizer = torch.optim.SGD(loss.parameters(), lr=50.0)
    for _ in range(200):
        optimizer.zero_grad()
        loss(logits, target).backward()
        optimizer.step()
    after = loss.current_params()
    assert after["gamma"] > 3.0 and after["gamma"] <= 4.0  # pushed up, held by its bound
    assert 1.0 < after["rho"] <= 10.0 and after["rho"] > values["rho"]
    assert after["alpha"] == 1.0 and after["beta"] == 1.0


def test_dfl_learnable_equals_fixed_at_the_same_values():
    logits, target = random_batch(2, 3, (4, 4), seed=24)
    learned = segloss.DualFocalLoss(alpha=0.7, gamma=1.3, learnable=("alpha", "gamma"))
    fixed = segloss.DualFocalLoss(**{k: v for k, v in learned.current_params().items()})
    torch.testing.assert_close(learned(logits, target), fixed(logits, target))


@pytest.mark.parametrize("kwargs, message", [
    ({"learnable": ("delta",)}, "unknown Dual Focal parameter 'delta'"),
    ({"learnable": ("gamma",), "bounds": {"gamma": (3.0, 1.0)}}, "low < high"),
    ({"learnable": ("gamma",), "gamma": 20.0}, "gamma must be <= 10, got 20"),
    ({"learnable": ("rho",), "bounds": {"rho": (0.5, 2.0)}}, "rho's lower bound must be >= 1"),
    ({"rho": 0.5}, "rho must be >= 1.0"),
])
def test_dfl_module_rejects_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        segloss.DualFocalLoss(**kwargs)


def test_module_arguments_are_checked_at_construction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        segloss.CrossEntropyLoss(reduction="avg")
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        segloss.FocalLoss(ignore_index=2.5)
    with pytest.raises(ValueError, match="momentum must be < 1"):
        segloss.RecallLoss(momentum=1.0)
    with pytest.raises(TypeError, match="per-class sequence"):
        segloss.CrossEntropyLoss(weight=2.0)


def test_modules_train_a_model_end_to_end():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 1)
    images = torch.randn(4, 3, 8, 8)
    target = images[:, :2].argmax(1) * 2  # learnable labels 0 / 2
    for module in (segloss.FocalLoss(), segloss.DualFocalLoss(learnable=("gamma",)), segloss.RecallLoss(0.5)):
        optimizer = torch.optim.Adam([*model.parameters(), *module.parameters()], lr=0.05)
        first = module(model(images), target).item()
        for _ in range(30):
            optimizer.zero_grad()
            module(model(images), target).backward()
            optimizer.step()
        assert module(model(images), target).item() < first


def test_a_modules_repr_shows_every_setting_that_changes_its_value():
    assert repr(segloss.FocalLoss(gamma=2, alpha=0.25, label_smoothing=0.1)) == (
        "FocalLoss(gamma=2.0, alpha=0.25, label_smoothing=0.1, ignore_index=255, reduction='mean')")
    assert "alpha=[0.1, 0.2, 0.3]" in repr(segloss.FocalLoss(alpha=[0.1, 0.2, 0.3]))
    assert repr(segloss.CrossEntropyLoss(weight=[1.0, 2.0, 3.0], label_smoothing=0.1)) == (
        "CrossEntropyLoss(label_smoothing=0.1, weight=[1, 2, 3], ignore_index=255, reduction='mean')")
    assert "weight=(19 values in [1, 19])" in repr(segloss.CrossEntropyLoss(weight=list(range(1, 20))))
    assert repr(segloss.CrossEntropyLoss()) == "CrossEntropyLoss(ignore_index=255, reduction='mean')"
    with torch.device("meta"):
        assert "weight=(3 values)" in repr(segloss.CrossEntropyLoss(weight=torch.ones(3)))


def test_modules_take_a_numpy_integer_ignore_index_and_store_an_int():
    import numpy as np

    for build in (lambda: segloss.CrossEntropyLoss(ignore_index=np.int64(255)),
                  lambda: segloss.create_loss("dice", ignore_index=np.int32(255))):
        module = build()
        assert type(module.ignore_index) is int and module.ignore_index == 255
    logits, target = random_batch(2, 3, (4, 4), ignore_frac=0.3, seed=5)
    torch.testing.assert_close(segloss.CrossEntropyLoss(ignore_index=np.int64(255))(logits, target),
                               SF.cross_entropy(logits, target))
    with pytest.raises(TypeError, match="ignore_index must be an int"):
        segloss.CrossEntropyLoss(ignore_index=255.0)
