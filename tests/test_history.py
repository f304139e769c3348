"""BoundedHistory: fixed memory, and its rows are box-filter means (or last values) of the input."""

import numpy as np
import pytest

from segloss.train.history import BoundedHistory


@pytest.mark.parametrize("n", [1, 7, 8, 9, 33, 1000])
def test_mean_rows_are_window_averages_of_the_input_at_any_length(n):
    history = BoundedHistory(capacity=8, columns={"loss": 0, "w": 2})
    values = np.arange(1, n + 1, dtype=np.float64) ** 1.5
    for step, value in enumerate(values, start=1):
        history.append(step, loss=value, w=[value, -value])
    out = history.arrays()
    stride = history.stride
    assert len(out["step"]) <= 8 and history._data["loss"].shape == (8,)
    expected_steps = np.arange(stride, n + 1, stride)
    np.testing.assert_array_equal(out["step"], expected_steps)
    expected = values[: len(expected_steps) * stride].reshape(-1, stride).mean(axis=1)
    np.testing.assert_allclose(out["loss"], expected, rtol=1e-6)
    np.testing.assert_allclose(out["w"][:, 1], -expected, rtol=1e-6)
    assert out["loss"].dtype == np.float32 and out["step"].dtype == np.int64


def test_last_mode_keeps_exact_points_including_nan():
    history = BoundedHistory(capacity=4, columns={"iou": 2}, mode="last")
    for step in range(0, 100, 10):
        history.append(step, iou=[step / 100, np.nan])
    out = history.arrays()
    assert history.stride == 4 and out["step"].tolist() == [30, 70]
    np.testing.assert_allclose(out["iou"][:, 0], [0.3, 0.7])
    assert np.isnan(out["iou"][:, 1]).all()


def test_arrays_are_copies():
    history = BoundedHistory(capacity=4, columns={"loss": 0})
    history.append(1, loss=2.0)
    out = history.arrays()
    out["loss"][0] = 99.0
    assert history.arrays()["loss"][0] == 2.0


@pytest.mark.parametrize("kwargs, error", [
    ({"capacity": 3, "columns": {"a": 0}}, ValueError),
    ({"capacity": 2.0, "columns": {"a": 0}}, TypeError),
    ({"capacity": 4, "columns": {"step": 0}}, ValueError),
    ({"capacity": 4, "columns": {"a": -1}}, ValueError),
    ({"capacity": 4, "columns": {"a": 0}, "mode": "median"}, ValueError),
])
def test_bad_construction_raises(kwargs, error):
    with pytest.raises(error):
        BoundedHistory(**kwargs)


def test_append_checks_columns_and_shapes():
    history = BoundedHistory(capacity=4, columns={"loss": 0, "w": 3})
    with pytest.raises(ValueError, match="exactly the columns"):
        history.append(1, loss=1.0)
    with pytest.raises(ValueError, match=r"expects shape \(3,\)"):
        history.append(1, loss=1.0, w=[1.0, 2.0])
