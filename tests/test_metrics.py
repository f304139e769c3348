"""Confusion matrix and metrics against hand computations and a brute-force loop."""

import math

import numpy as np
import pytest
import torch

from segloss.train.metrics import confusion_matrix, metrics_from_confusion

NAN = float("nan")


def assert_close_nan(actual, expected):
    torch.testing.assert_close(torch.as_tensor(actual, dtype=torch.float64),
                               torch.tensor(expected, dtype=torch.float64), equal_nan=True)


def test_hand_computed_confusion_matrix_and_metrics():
    target = torch.tensor([[0, 0, 0, 1], [1, 2, 255, 255]])
    pred = torch.tensor([[0, 0, 1, 1], [2, 2, 0, 2]])
    cm = confusion_matrix(pred, target, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    m = metrics_from_confusion(cm)
    # TP = (2, 1, 1), support = (3, 2, 1), predicted = (2, 2, 2)
    assert_close_nan(m["iou"], [2 / 3, 1 / 3, 1 / 2])
    assert_close_nan(m["recall"], [2 / 3, 1 / 2, 1.0])
    assert_close_nan(m["precision"], [1.0, 1 / 2, 1 / 2])
    assert_close_nan(m["pixel_share"], [1 / 2, 1 / 3, 1 / 6])
    assert m["support"].tolist() == [3, 2, 1]
    assert m["miou"] == pytest.approx(0.5)
    assert m["mean_accuracy"] == pytest.approx(13 / 18)
    assert m["overall_accuracy"] == pytest.approx(4 / 6)


def test_ignored_pixels_are_excluded_whatever_their_prediction():
    target = torch.tensor([0, 1, -1, -1])
    a = confusion_matrix(torch.tensor([0, 1, 0, 0]), target, 2, ignore_index=-1)
    b = confusion_matrix(torch.tensor([0, 1, 1, 7]), target, 2, ignore_index=-1)
    assert a.tolist() == b.tolist() == [[1, 0], [0, 1]]
    assert int(a.sum()) == 2


def test_class_absent_from_target_and_prediction_is_nan_not_zero():
    cm = confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), 3)
    m = metrics_from_confusion(cm)
    assert math.isnan(m["iou"][2]) and math.isnan(m["recall"][2]) and math.isnan(m["precision"][2])
    assert m["pixel_share"][2] == 0
    # IoU (1/2, 1/2, nan): the absent class does not drag mIoU down
    assert m["miou"] == pytest.approx(0.5)
    assert m["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)


def test_class_predicted_but_absent_from_target_has_nan_recall_and_zero_iou():
    cm = confusion_matrix(torch.tensor([0, 2, 1]), torch.tensor([0, 0, 1]), 3)
    m = metrics_from_confusion(cm)
    assert math.isnan(m["recall"][2])
    assert m["iou"][2] == 0 and m["precision"][2] == 0
    assert m["miou"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m["mean_accuracy"] == pytest.approx((1 / 2 + 1) / 2)


def test_class_never_predicted_has_nan_precision_and_zero_recall():
    m = metrics_from_confusion(torch.tensor([[3, 0], [2, 0]]))
    assert math.isnan(m["precision"][1])
    assert m["recall"][1] == 0 and m["iou"][1] == 0


def test_empty_matrix_gives_nan_everywhere():
    m = metrics_from_confusion(torch.zeros(2, 2, dtype=torch.int64))
    assert all(math.isnan(m[k]) for k in ("miou", "mean_accuracy", "overall_accuracy"))
    assert bool(torch.isnan(m["iou"]).all()) and bool(torch.isnan(m["pixel_share"]).all())


@pytest.mark.parametrize("seed", range(3))
def test_matches_a_brute_force_python_loop_on_random_labels(seed):
    g = torch.Generator().manual_seed(seed)
    c = 5
    target = torch.randint(0, c, (2, 7, 9), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.15] = 255
    target[target == 3] = 4  # class 3 absent from the target
    pred = torch.randint(0, c, (2, 7, 9), generator=g)
    pred[pred == 1] = 0  # class 1 never predicted
    expected = [[0] * c for _ in range(c)]
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist()):
        if t != 255:
            expected[t][p] += 1
    cm = confusion_matrix(pred, target, c)
    assert cm.tolist() == expected
    m = metrics_from_confusion(cm)
    for k in range(c):
        tp = expected[k][k]
        row = sum(expected[k])
        col = sum(expected[i][k] for i in range(c))
        union = row + col - tp
        for key, den in (("iou", union), ("recall", row), ("precision", col)):
            value = float(m[key][k])
            assert (math.isnan(value) if den == 0 else value == pytest.approx(tp / den)), (key, k)
    recalls = [expected[k][k] / sum(expected[k]) for k in range(c) if sum(expected[k])]
    assert m["mean_accuracy"] == pytest.approx(sum(recalls) / len(recalls))
    total = sum(map(sum, expected))
    assert m["overall_accuracy"] == pytest.approx(sum(expected[k][k] for k in range(c)) / total)


def test_numpy_inputs_and_accumulated_matrices_are_accepted():
    cm = confusion_matrix(np.array([0, 1]), np.array([0, 1], dtype=np.uint8), 2)
    total = cm + confusion_matrix(torch.tensor([1]), torch.tensor([0]), 2)
    assert total.tolist() == [[1, 1], [0, 1]]
    assert metrics_from_confusion(total.numpy())["overall_accuracy"] == pytest.approx(2 / 3)


def test_bad_inputs_raise_with_clear_messages():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(2, 4\)"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="argmax"):
        confusion_matrix(torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.long), 2)
    with pytest.raises(ValueError, match=r"target holds labels outside \[0, 2\).*\[5\]"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 5]), 2)
    with pytest.raises(ValueError, match=r"pred holds labels outside \[0, 2\).*\[-1\]"):
        confusion_matrix(torch.tensor([0, -1]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 0"):
        confusion_matrix(torch.tensor([0]), torch.tensor([0]), 0)
    with pytest.raises(ValueError, match=r"square \(C, C\) matrix, got shape \(2, 3\)"):
        metrics_from_confusion(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="non-negative"):
        metrics_from_confusion(torch.tensor([[1, -1], [0, 1]]))
    with pytest.raises(TypeError, match="real counts"):
        metrics_from_confusion(torch.zeros(2, 2, dtype=torch.bool))
