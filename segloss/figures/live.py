"""What the live-training view shows, computed from a :class:`~segloss.train.trainer.TrainerSnapshot`.

No UI code: a page (or a notebook, or the training benchmark's simulated viewer) asks for the
image panels of one validation image, the curves, and a CSV table, and draws them::

    snap = trainer.snapshot()
    panels = image_panels(snap, index=0, loss_title="Focal loss")    # list of Panel (RGB arrays)
    steps, curves = per_class_curves(snap, "recall")                 # class name -> (E,) recall

A viewer that refreshes often keeps a :class:`ViewCache`: it rebuilds panels and figures only
when the snapshot holds a new validation, which keeps a live view cheap for the training thread
it watches and for the browser that draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from segloss.train import data
from segloss.figures import plots, render
from segloss.figures.colors import for_both_themes
from segloss.train.evaluation import MAP_KINDS
from segloss.losses.registry import LOSSES
from segloss.train.trainer import TrainerSnapshot

SCALES = ("own", "shared")  # maps: each on its own colour range, or both on one
EARLY_ROWS = 50  # ViewCache redraws the loss curve on every refresh until it has this many points


@dataclass(frozen=True)
class Panel:
    """One image of the live view: a title, uint8 RGB ``(H', W', 3)`` (upscaled) and a caption."""

    title: str
    rgb: np.ndarray
    caption: str

    @cached_property
    def png(self) -> bytes:
        """The image as lossless PNG bytes (encoded once)."""
        return render.png_bytes(self.rgb)


def _check_view(snapshot: TrainerSnapshot, index: int) -> None:
    if not isinstance(snapshot, TrainerSnapshot):
        raise TypeError(f"expected a TrainerSnapshot, got {type(snapshot).__name__}")
    if snapshot.view is None:
        raise ValueError("the snapshot has no validation view yet (no evaluation has run)")
    count = len(snapshot.val_images)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise ValueError(f"index must be an int in [0, {count}), got {index!r}")


def available_kinds(snapshot: TrainerSnapshot) -> tuple[str, ...]:
    """The map kinds the snapshot's view holds for the training loss: ``("loss", "gradient")``
    for a pixel-wise loss, ``("gradient",)`` for a region loss (no view yet: the loss's own)."""
    if snapshot.view is not None:
        return tuple(kind for kind in MAP_KINDS if snapshot.view.map(kind) is not None)
    return MAP_KINDS if LOSSES[snapshot.config.loss].pixelwise else ("gradient",)


def map_titles(loss_title: str, kind: str) -> tuple[str, str]:
    """Panel titles of the training loss's map and cross-entropy's map of one kind."""
    if kind == "loss":
        return f"{loss_title} per pixel", "Cross-entropy per pixel"
    return f"{loss_title}: gradient |dL/dz|", "Cross-entropy: gradient |dL/dz|"


def image_panels(snapshot: TrainerSnapshot, index: int = 0, *, loss_title: str, kind: str = "loss",
                 scale: str = "own", log: bool = False, min_side: int = 256) -> list[Panel]:
    """Input, ground truth, prediction, then the training loss's and CE's maps for one image.

    Args:
        snapshot: a snapshot whose ``view`` is not None.
        index: which validation image, ``0 <= index < V``.
        loss_title: name of the training loss, for the panel title.
        kind: ``"loss"`` (loss per pixel) or ``"gradient"`` (``|dL/dz|`` per pixel, see
            :func:`segloss.analysis.gradient_map`); region losses have only the gradient.
        scale: ``"own"``: each map coloured up to its own 99th percentile (where does each
            loss concentrate?); ``"shared"``: both up to the larger one (how much, in
            comparable colours).
        log: colour by log10 over 4 decades instead of linearly.
        min_side: upscale (nearest neighbour) until the short side is at least this.

    Returns:
        Five :class:`Panel`.

    Raises:
        TypeError / ValueError: not a snapshot, no view yet, bad index, scale or kind (a loss
            map asked of a region loss).
    """
    _check_view(snapshot, index)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    view, info = snapshot.view, data.get_dataset(snapshot.config.dataset)
    if view.map(kind) is None:
        raise ValueError(f"{loss_title} has no per-pixel loss map (a region loss); use kind='gradient'")
    target, prediction = snapshot.val_masks[index], view.predictions[index]
    own, ce = view.map(kind).values[index], view.map(kind, "ce").values[index]
    top = {"own": render.robust_max(own), "ce": render.robust_max(ce)}
    if scale == "shared":
        top = dict.fromkeys(top, max(top.values()))
    accuracy = float((prediction == target).mean())
    scale_text = "log colour, 4 decades up to" if log else "colour 0 to"

    def heat(values: np.ndarray, key: str, name: str) -> Panel:
        caption = f"mean {values.mean():.3g}, max {values.max():.3g}; {scale_text} {top[key]:.3g}"
        return Panel(name, render.upscale(render.heatmap_rgb(values, top[key], log=log), min_side), caption)

    own_title, ce_title = map_titles(loss_title, kind)
    return [
        Panel("Input", render.upscale(snapshot.val_images[index], min_side), f"validation image {index + 1}"),
        Panel("Ground truth", render.upscale(data.colorize(target, info.palette), min_side),
              f"{len(np.unique(target))} classes present"),
        Panel("Prediction", render.upscale(data.colorize(prediction, info.palette), min_side),
              f"step {view.step}: {accuracy:.1%} of pixels right"),
        heat(own, "own", own_title),
        heat(ce, "ce", ce_title),
    ]


def class_colors(dataset: str) -> dict[str, str]:
    """Class name -> ``"#rrggbb"``: the dataset's palette colour for line charts, lifted where the dark
    theme's background would hide it (Cityscapes' navy car, grey building; :mod:`segloss.figures.colors`)."""
    info = data.get_dataset(dataset)
    return {name: for_both_themes("#{:02x}{:02x}{:02x}".format(*c)) for name, c in zip(info.class_names, info.palette)}


def per_class_curves(snapshot: TrainerSnapshot, metric: str = "recall") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(steps (E,), {class name: (E,) values})`` of a per-class validation metric over time.

    Raises:
        ValueError: ``metric`` not one of ``iou``, ``recall``, ``precision``.
    """
    if metric not in ("iou", "recall", "precision"):
        raise ValueError(f"metric must be 'iou', 'recall' or 'precision', got {metric!r}")
    evals = snapshot.evaluations
    names = data.get_dataset(snapshot.config.dataset).class_names
    return evals["step"], {name: evals[metric][:, c] for c, name in enumerate(names)}


def recall_weight_curves(snapshot: TrainerSnapshot) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Recall loss's class weights over time, ``(steps, {class: (K,)})``; None for other losses."""
    history = snapshot.history
    if "recall_weights" not in history:
        return None
    names = data.get_dataset(snapshot.config.dataset).class_names
    return history["step"], {name: history["recall_weights"][:, c] for c, name in enumerate(names)}


def dfl_parameter_curves(snapshot: TrainerSnapshot) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Learnable Dual Focal parameters over time, ``(steps, {name: (K,)})``; None if there are none."""
    history = snapshot.history
    curves = {key.removeprefix("dfl_"): values for key, values in history.items() if key.startswith("dfl_")}
    return (history["step"], curves) if curves else None


def schedule_curves(snapshot: TrainerSnapshot) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """A scheduled sum's two weights over time (``weight_region`` a, ``weight_boundary`` b); None if none."""
    history = snapshot.history
    curves = {f"{key.removeprefix('weight_')} weight": values for key, values in history.items()
              if key.startswith("weight_")}
    return (history["step"], curves) if curves else None


def evaluation_table(snapshot: TrainerSnapshot) -> dict[str, np.ndarray]:
    """Every recorded validation as columns (one row per evaluation), for a CSV download:
    ``step``, ``miou``, ``mean_accuracy``, ``overall_accuracy``, then ``iou``/``recall``/
    ``precision`` per class (``recall pole``, ...)."""
    evals = snapshot.evaluations
    names = data.get_dataset(snapshot.config.dataset).class_names
    table = {key: evals[key] for key in ("step", "miou", "mean_accuracy", "overall_accuracy")}
    for metric in ("iou", "recall", "precision"):
        table.update({f"{metric} {name}": evals[metric][:, c] for c, name in enumerate(names)})
    return table


def loss_figure(snapshot: TrainerSnapshot):
    """The training loss per step (window means once the history is long), on a log y axis unless
    the loss has gone to 0 or below (the boundary loss is negative when training goes well)."""

    history = snapshot.history
    title = LOSSES[snapshot.config.loss].title
    positive = bool(len(history["loss"]) == 0 or np.nanmin(history["loss"]) > 0)
    return plots.training_curves_figure(history["step"], {f"{title} (training batch)": history["loss"]},
                                      y_title="training loss", log_y=positive)


def figures(snapshot: TrainerSnapshot, kind: str = "loss") -> dict:
    """The live view's plotly figures (built by :mod:`segloss.figures.plots`), by name.

    ``loss``: training loss per step (log y); ``validation``: mIoU and mean accuracy;
    ``recall``: recall per class in palette colours; ``share``: each class's share of the pixels,
    of the training loss's map and of cross-entropy's map of ``kind`` on the latest validation
    (needs a view; a region loss shows its gradient); and, when the loss has state, ``state``:
    learnable Dual Focal parameters, recall-loss weights or a schedule's loss weights.
    """

    config = snapshot.config
    names = data.get_dataset(config.dataset).class_names
    colors = class_colors(config.dataset)
    title = LOSSES[config.loss].title
    evals = snapshot.evaluations
    out = {
        "loss": loss_figure(snapshot),
        "validation": plots.training_curves_figure(evals["step"], {"mIoU": evals["miou"],
                                                                 "mean accuracy": evals["mean_accuracy"]},
                                                 y_title="validation", y_range=(0, 1)),
        "recall": plots.training_curves_figure(*per_class_curves(snapshot, "recall"),
                                             y_title="recall per class (validation)", colors=colors,
                                             y_range=(0, 1.02), legend_columns=2,  # half the page wide,
                                             legend_fixed=True),  # a third of a 1280 px window: every class
    }
    if snapshot.view is not None:
        view = snapshot.view
        kind = kind if view.map(kind) is not None else "gradient"
        what = "" if kind == "loss" else "gradient of "
        ce_label = f"share of {what}cross-entropy"
        out["share"] = plots.class_share_figure(
            names, {"share of pixels": view.pixel_share, f"share of {what}{title.lower()}": view.map(kind).class_share,
                    ce_label: view.map(kind, "ce").class_share},
            colors={"share of pixels": "#9e9e9e", ce_label: "#636efa"})
    dfl, weights, schedule = dfl_parameter_curves(snapshot), recall_weight_curves(snapshot), schedule_curves(snapshot)
    if schedule is not None:
        out["state"] = plots.training_curves_figure(*schedule, y_title="loss weights (schedule)")
    elif dfl is not None:
        out["state"] = plots.training_curves_figure(*dfl, y_title="learnable Dual Focal parameters")
    elif weights is not None:
        out["state"] = plots.training_curves_figure(*weights, y_title="recall-loss class weights 1 - R_c",
                                                  colors=colors)
    return out


class ViewCache:
    """Panels and figures of the latest snapshot, rebuilt only when there is a new validation.

    Everything the live view draws is tied to a :class:`~segloss.train.evaluation.ValidationView`
    (one every ``eval_every`` steps, compared by identity: a view is never modified), the
    training-loss curve included once it has :data:`EARLY_ROWS` points, so between two
    validations a refresh re-sends identical images and figures, which a browser does not
    redraw. One cache per viewer (not thread-safe).
    """

    def __init__(self) -> None:
        self._panels: tuple = (None, None, None)  # (view, options, panels)
        self._figures: tuple = (None, None, None)  # (view, kind, figures)

    def panels(self, snapshot: TrainerSnapshot, index: int, **options) -> list[Panel]:
        """:func:`image_panels` of ``snapshot`` (same arguments), cached per view and options."""
        key = (index, tuple(sorted(options.items())))
        view, cached_key, panels = self._panels
        if view is not snapshot.view or cached_key != key:
            panels = image_panels(snapshot, index, **options)
            self._panels = (snapshot.view, key, panels)
        return panels

    def figures(self, snapshot: TrainerSnapshot, kind: str = "loss") -> dict:
        """:func:`figures` of ``snapshot``, rebuilt when its view (or ``kind``) is new; the loss
        curve also on every call while it is short (never empty during the first validation period)."""
        view, built_kind, built = self._figures
        if built is None or view is not snapshot.view or built_kind != kind:
            built = figures(snapshot, kind)
            self._figures = (snapshot.view, kind, built)
        elif len(snapshot.history["step"]) < EARLY_ROWS:
            built = {**built, "loss": loss_figure(snapshot)}
            self._figures = (snapshot.view, kind, built)
        return built
