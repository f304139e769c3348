"""Plotly figures of a loss comparison (a summary from :mod:`segloss.train.compare`): data in, figure out."""

from __future__ import annotations

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from segloss.figures.colors import for_both_themes
from segloss.figures.plots import legend_layout, legend_name
from segloss.losses.registry import LOSSES, settings_text

METRIC_TITLES = {"iou": "IoU", "recall": "recall", "precision": "precision"}
SUMMARY_TITLES = {"miou": "mIoU", "mean_accuracy": "mean accuracy", "overall_accuracy": "overall accuracy"}
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "hexagon", "cross", "pentagon", "triangle-down")
# 24 colours distinct side by side (more than the registry has losses): a loss keeps its colour in every chart.
# D3's ten hues, then darker shades of five of them, then Dark24's greens, blues and browns: Dark24 alone gave
# the first fifteen losses six pinks and magentas
# the dark ones lifted until the dark theme's background shows them (segloss.figures.colors)
PALETTE = tuple(for_both_themes(c) for c in (
    *plotly.colors.qualitative.D3, "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
    "#1CA71C", "#511CFB", "#00A08B", "#B68100", "#222A2A", "#6C7C32", "#2E91E5", "#EB663B", "#750D86"))


def loss_colors(summary: dict) -> dict[str, str]:
    """One colour per loss of ``summary``, by its place in the summary (so a subset keeps its colours)."""
    return {label: PALETTE[k % len(PALETTE)] for k, label in enumerate(summary["losses"])}


def loss_symbols(summary: dict) -> dict[str, str]:
    """One marker shape per loss of ``summary``, by its place in the summary as its colour is; the
    shapes move on by one every ten places, so the darker shades of the first colours (places 10 to
    14) never share a shape with them (Tversky's dark blue circle looked like CE's blue one)."""
    return {label: SYMBOLS[(k + k // len(SYMBOLS)) % len(SYMBOLS)] for k, label in enumerate(summary["losses"])}


def only(summary: dict, labels) -> dict:
    """``summary`` restricted to the losses ``labels`` (in the summary's order)."""
    keep = set(labels)
    return {**summary, "losses": {k: v for k, v in summary["losses"].items() if k in keep}}


def loss_title(label: str, entry: dict) -> str:
    """A comparison's loss as a reader names it: the registry title, with the parameters that were set
    in the formula's symbols (``"focal:gamma=3"`` -> ``"Focal loss (γ = 3)"``; ``"ce"`` -> ``"Cross-entropy"``)."""
    name = entry.get("name", label)
    spec = LOSSES.get(name)
    title = spec.title if spec is not None else label
    shown = settings_text(name, entry.get("params") or {})
    return f"{title} ({shown})" if shown else title


def _legend(summary: dict, height: int) -> tuple[dict, dict]:
    """Legend names (long ones over two lines, when there are more than four) and the layout of a
    chart with one legend entry per loss of ``summary``: two a row under the chart."""
    titles = {label: loss_title(label, entry) for label, entry in summary["losses"].items()}
    if len(titles) <= 4:  # one row above the plot: names in full
        return titles, legend_layout(height, len(titles))
    names = {label: legend_name(title) for label, title in titles.items()}
    lines = [name.count("<br>") + 1 for name in names.values()]
    extra = sum(max(lines[i:i + 2]) - 1 for i in range(0, len(lines), 2))  # a row is as tall as its tallest name
    return names, legend_layout(height, len(names), 2, fixed=True, extra_rows=extra)


def class_order(summary: dict) -> list[int]:
    """Class indices from the rarest to the most common (by pixel share)."""
    return list(np.argsort(summary["pixel_share"]))


def per_class_figure(summary: dict, metric: str = "iou", height: int = 420, colors: dict | None = None) -> go.Figure:
    """Grouped bars: one group per class (rarest first, share in the label), one bar per loss, std as error bars;
    more than four losses put their legend under the chart, two a row (see :func:`segloss.figures.plots.legend_layout`:
    flowing, a 1280 px window fit two of the long names a row where three were made room for, and the last
    losses were cut off)."""
    if metric not in METRIC_TITLES:
        raise ValueError(f"metric must be one of {tuple(METRIC_TITLES)}, got {metric!r}")
    order = class_order(summary)
    names = [f"{summary['class_names'][c]} ({100 * summary['pixel_share'][c]:.2g}%)" for c in order]
    colors = colors or loss_colors(summary)
    legend_names, legend = _legend(summary, height)
    fig = go.Figure()
    for label, entry in summary["losses"].items():
        mean = np.asarray(entry[metric], dtype=np.float32)[order]
        std = np.asarray(entry[f"{metric}_std"], dtype=np.float32)[order]
        fig.add_trace(go.Bar(x=names, y=mean, name=legend_names[label], marker_color=colors.get(label),
                             error_y={"type": "data", "array": std, "visible": len(entry["seeds"]) > 1}))
    fig.update_layout(barmode="group", **legend)  # never over the bars
    fig.update_yaxes(title=f"per-class {METRIC_TITLES[metric]} (mean over seeds)", range=[0, 1])
    fig.update_xaxes(title="class (rarest first, pixel share of the held-out images)")
    return fig


def tradeoff_figure(summary: dict, height: int = 420, colors: dict | None = None,
                    symbols: dict | None = None) -> go.Figure:
    """mIoU (x) against mean accuracy (y) per loss, one marker shape each, named in the legend (labels
    next to the points would sit on the error bars), with the seeds' standard deviation as error bars.
    More than four losses have their legend under the plot, two a row (beside it, it squeezed the plot to
    100 px in a narrow window); up to four, in a row above it."""
    colors, symbols = colors or loss_colors(summary), symbols or loss_symbols(summary)
    legend_names, legend = _legend(summary, height)
    fig = go.Figure()
    for label, entry in summary["losses"].items():
        spread = len(entry["seeds"]) > 1
        fig.add_trace(go.Scatter(
            x=np.float32([entry["miou"]]), y=np.float32([entry["mean_accuracy"]]), mode="markers",
            name=legend_names[label], marker={"size": 12, "symbol": symbols.get(label),
                                                   "color": colors.get(label)},
            hovertemplate="%{fullData.name}<br>mIoU %{x:.3f}<br>mean accuracy %{y:.3f}<extra></extra>",
            error_x={"type": "data", "array": np.float32([entry["miou_std"]]), "visible": spread},
            error_y={"type": "data", "array": np.float32([entry["mean_accuracy_std"]]), "visible": spread},
        ))
    fig.update_layout(showlegend=True, **legend)
    entries = list(summary["losses"].values())
    fig.update_xaxes(title="mIoU", range=_span([e["miou"] for e in entries], [e["miou_std"] for e in entries]))
    fig.update_yaxes(title="mean accuracy (mean per-class recall)",
                     range=_span([e["mean_accuracy"] for e in entries], [e["mean_accuracy_std"] for e in entries]))
    return fig


def _span(values, stds, min_span: float = 0.1) -> list[float]:
    """An axis range over ``values +- stds`` at least ``min_span`` wide (inside [0, 1] where it fits), so
    that a 0.01 difference between two runs does not fill the chart as if it were a wide one; 4% of it
    beyond the outermost points, so that their markers (about 12 px) are not cut by the chart's edge."""
    low = min(v - (s or 0.0) for v, s in zip(values, stds))
    high = max(v + (s or 0.0) for v, s in zip(values, stds))
    pad = max(min_span - (high - low), 0.0) / 2 + 0.04 * max(high - low, min_span)
    low, high = low - pad, high + pad
    if low < 0 and high - low <= 1:
        low, high = 0.0, high - low
    if high > 1 and high - low <= 1:
        low, high = 1.0 - (high - low), 1.0
    return [low, high]
