"""Plotly figure builders (data in, figure out) and CSV helpers for the app.

Arrays are sent to plotly as float32; no figure here computes anything beyond layout.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

WELL_CLASSIFIED_COLOR = "rgba(46, 160, 67, 0.10)"


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def curves_figure(x: np.ndarray, curves: Mapping[str, np.ndarray], *, x_title: str, y_title: str,
                  log_x: bool = False, log_y: bool = False, well_classified: float | None = None,
                  dashed: Sequence[str] = (), styles: Mapping[str, dict] | None = None, log_floor: float = 1e-7,
                  show_legend: bool = True, height: int = 460) -> go.Figure:
    """Line chart of several named curves over a shared x.

    Args:
        x: ``(K,)`` abscissa.
        curves: name -> ``(K,)`` values (non-positive values are dropped on a log y axis).
        well_classified: if given, shade ``x >= well_classified`` as the well-classified region.
        dashed: names drawn dashed (e.g. reference curves).
        styles: optional name -> plotly ``line`` dict (colour, dash), e.g. one colour per gamma.
        log_floor: lowest value shown on a log y axis (values below it would flatten the rest).
    """
    fig = go.Figure()
    x32 = _f32(x)
    highest = 0.0
    for name, values in curves.items():
        y = _f32(values)
        if log_y:
            y = np.where(y > 0, y, np.nan).astype(np.float32)
        highest = max(highest, float(np.nanmax(y)) if np.isfinite(y).any() else 0.0)
        line = {"dash": "dash" if name in dashed else "solid", "width": 2, **(styles or {}).get(name, {})}
        fig.add_trace(go.Scatter(x=x32, y=y, mode="lines", name=name, line=line))
    if well_classified is not None:
        fig.add_vrect(x0=well_classified, x1=float(np.max(x)), fillcolor=WELL_CLASSIFIED_COLOR, line_width=0,
                      annotation_text="well-classified", annotation_position="top left")
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, hovermode="x unified",
                      showlegend=show_legend, legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})
    fig.update_xaxes(title=x_title, type="log" if log_x else "linear")
    if log_y and highest > log_floor:
        fig.update_yaxes(title=y_title, type="log", range=[np.log10(log_floor), np.log10(highest) + 0.3])
    else:
        fig.update_yaxes(title=y_title, type="log" if log_y else "linear")
    return fig


def heatmap_figure(x: np.ndarray, y: np.ndarray, z: np.ndarray, *, x_title: str, y_title: str,
                   color_title: str, log_color: bool = True, log_floor: float = 1e-6,
                   height: int = 480) -> go.Figure:
    """Heatmap of ``z`` ``(len(y), len(x))``; ``log_color`` shows ``log10 max(z, log_floor)`` (hover shows ``z``)."""
    z32 = _f32(z)
    shown = np.log10(np.maximum(z32, np.float32(log_floor))) if log_color else z32
    fig = go.Figure(go.Heatmap(
        x=_f32(x), y=_f32(y), z=shown.astype(np.float32), customdata=z32, colorscale="Viridis",
        colorbar={"title": f"log10 {color_title}" if log_color else color_title},
        hovertemplate=f"{x_title}=%{{x:.4f}}<br>{y_title}=%{{y:.3f}}<br>{color_title}=%{{customdata:.4g}}<extra></extra>",
    ))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return fig


def table_csv(columns: Mapping[str, Sequence]) -> str:
    """Columns of equal length as CSV text (header row first), numbers with 8 significant digits."""
    names = list(columns)
    arrays = [np.asarray(columns[name]) for name in names]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"columns must have equal lengths, got { {n: len(a) for n, a in zip(names, arrays)} }")
    out = io.StringIO()
    out.write(",".join(f'"{n}"' if "," in n else n for n in names) + "\n")
    for row in zip(*arrays):
        out.write(",".join(f"{v:.8g}" if isinstance(v, (float, np.floating)) else str(v) for v in row) + "\n")
    return out.getvalue()
