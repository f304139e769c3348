"""Fixed-memory time series for training logs: however long a run, at most ``capacity`` rows.

A :class:`BoundedHistory` records rows of named columns (scalars or fixed-width vectors)
against a step number. Rows arrive one per ``append``; they are grouped into windows of
``stride`` consecutive rows and each window is stored as one row, either the mean of the window
(``mode="mean"``, a box filter: right for noisy per-step losses) or its last row
(``mode="last"``, decimation: right for exact point measurements such as validation metrics,
which may hold NaN). When all ``capacity`` rows are used, adjacent pairs are merged the same
way and ``stride`` doubles, so the history always spans the whole run at a resolution of
``capacity / 2`` to ``capacity`` rows.

Example:
    >>> h = BoundedHistory(capacity=4, columns={"loss": 0, "weights": 3})
    >>> for step in range(1, 11):
    ...     h.append(step, loss=float(step), weights=[0.0, 1.0, 2.0])
    >>> h.stride, h.arrays()["step"].tolist(), h.arrays()["loss"].tolist()
    (4, [4, 8], [2.5, 6.5])
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

MODES = ("mean", "last")


class BoundedHistory:
    """Step-indexed rows of named float columns in preallocated arrays (not thread-safe:
    the owner holds a lock around ``append`` and ``arrays``).

    Args:
        capacity: maximum number of stored rows, an even int >= 2.
        columns: name -> width; width 0 stores a scalar per row, width ``C`` a ``(C,)`` vector.
        mode: ``"mean"`` (average each window) or ``"last"`` (keep each window's last row).

    Raises:
        TypeError: if ``capacity`` or a width is not an int.
        ValueError: odd or too small ``capacity``, negative width, reserved column name
            ``"step"`` or unknown ``mode``.
    """

    def __init__(self, capacity: int, columns: Mapping[str, int], mode: str = "mean") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int):
            raise TypeError(f"capacity must be an int, got {capacity!r}")
        if capacity < 2 or capacity % 2:
            raise ValueError(f"capacity must be an even int >= 2, got {capacity}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if "step" in columns:
            raise ValueError("'step' is recorded automatically; do not declare it as a column")
        for name, width in columns.items():
            if isinstance(width, bool) or not isinstance(width, int) or width < 0:
                raise ValueError(f"column {name!r} needs a width >= 0 (0 = scalar), got {width!r}")
        self.capacity = capacity
        self.mode = mode
        self.widths = dict(columns)
        self.stride = 1
        self._size = 0
        self._steps = np.zeros(capacity, np.int64)
        self._data = {name: np.zeros((capacity, w) if w else capacity, np.float64) for name, w in columns.items()}
        self._window: dict[str, np.ndarray] = {}
        self._window_rows = 0

    def __len__(self) -> int:
        return self._size

    def append(self, step: int, **values) -> None:
        """Add one row; every declared column must be given (a number or a ``(width,)`` vector).

        Raises:
            ValueError: missing or unknown columns, or a value of the wrong shape.
        """
        if set(values) != set(self.widths):
            raise ValueError(f"append needs exactly the columns {sorted(self.widths)}, got {sorted(values)}")
        row = {}
        for name, value in values.items():
            array = np.asarray(value, dtype=np.float64)
            expected = (self.widths[name],) if self.widths[name] else ()
            if array.shape != expected:
                raise ValueError(f"column {name!r} expects shape {expected}, got {array.shape}")
            row[name] = array
        if self.mode == "last" or not self._window_rows:
            self._window = row
        else:
            self._window = {name: self._window[name] + row[name] for name in row}
        self._window_rows += 1
        if self._window_rows < self.stride:
            return
        if self._size == self.capacity:
            self._halve()
            if self._window_rows < self.stride:  # the open window now needs more rows
                return
        scale = 1.0 / self._window_rows if self.mode == "mean" else 1.0
        self._steps[self._size] = int(step)
        for name, total in self._window.items():
            self._data[name][self._size] = total * scale
        self._size += 1
        self._window, self._window_rows = {}, 0

    def _halve(self) -> None:
        """Merge adjacent pairs of stored rows; the stride doubles."""
        half = self.capacity // 2
        self._steps[:half] = self._steps[1::2]
        for array in self._data.values():
            array[:half] = 0.5 * (array[0::2] + array[1::2]) if self.mode == "mean" else array[1::2]
        self._size = half
        self.stride *= 2

    def arrays(self) -> dict[str, np.ndarray]:
        """Copies of the stored rows: ``"step"`` int64 ``(K,)`` and each column as float32
        ``(K,)`` or ``(K, width)``, oldest first (the partial current window is not included)."""
        out = {"step": self._steps[: self._size].copy()}
        for name, array in self._data.items():
            out[name] = array[: self._size].astype(np.float32)
        return out
