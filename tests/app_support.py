"""AppTest helpers: open a page the way a browser would, and read plotly figures back."""

import base64
import json
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def open_page(path: str) -> AppTest:
    """Run ``path`` (relative to the repo root) as a page of the multipage app."""
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    if path != "app.py":
        app.switch_page(path)
    return app.run()


def figures(app: AppTest) -> list[dict]:
    """The plotly specs of every chart on the page, in order."""
    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def trace_values(trace: dict, axis: str = "y") -> np.ndarray:
    """A trace's array, decoding plotly's typed-array form ({"dtype": "f4", "bdata": ...})."""
    value = trace[axis]
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value, dtype=float)


def by_label(elements, label: str):
    """The one widget among ``elements`` with this label."""
    matches = [element for element in elements if element.label == label]
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} widgets labelled {label!r}: {[e.label for e in elements]}")
    return matches[0]
