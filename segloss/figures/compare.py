"""Plotly figures of a loss comparison (a summary from :mod:`segloss.train.compare`): data in, figure out."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

METRIC_TITLES = {"iou": "IoU", "recall": "recall", "precision": "precision"}


def class_order(summary: dict) -> list[int]:
    """Class indices from the rarest to the most common (by pixel share)."""
    return list(np.argsort(summary["pixel_share"]))


def per_class_figure(summary: dict, metric: str = "iou", height: int = 420) -> go.Figure:
    """Grouped bars: one group per class (rarest first, share in the label), one bar per loss, std as error bars."""
    if metric not in METRIC_TITLES:
        raise ValueError(f"metric must be one of {tuple(METRIC_TITLES)}, got {metric!r}")
    order = class_order(summary)
    names = [f"{summary['class_names'][c]} ({100 * summary['pixel_share'][c]:.2g}%)" for c in order]
    fig = go.Figure()
    for label, entry in summary["losses"].items():
        mean = np.asarray(entry[metric], dtype=np.float32)[order]
        std = np.asarray(entry[f"{metric}_std"], dtype=np.float32)[order]
        fig.add_trace(go.Bar(x=names, y=mean, name=label, error_y={"type": "data", "array": std, "visible": True}))
    fig.update_layout(barmode="group", height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0})  # above: never over bars
    fig.update_yaxes(title=f"per-class {METRIC_TITLES[metric]} (mean over seeds)", range=[0, 1])
    fig.update_xaxes(title="class (rarest first, pixel share)")
    return fig


def tradeoff_figure(summary: dict, height: int = 420) -> go.Figure:
    """mIoU (x) against mean accuracy (y) per loss, with the seeds' standard deviation as error bars."""
    fig = go.Figure()
    for label, entry in summary["losses"].items():
        fig.add_trace(go.Scatter(
            x=np.float32([entry["miou"]]), y=np.float32([entry["mean_accuracy"]]), mode="markers+text", name=label,
            text=[label], textposition="top center", marker={"size": 12},
            error_x={"type": "data", "array": np.float32([entry["miou_std"]]), "visible": True},
            error_y={"type": "data", "array": np.float32([entry["mean_accuracy_std"]]), "visible": True},
        ))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10}, showlegend=False)
    fig.update_xaxes(title="mIoU")
    fig.update_yaxes(title="mean accuracy (mean per-class recall)")
    return fig
