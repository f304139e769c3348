"""Streamlit helpers for the Upload page's outputs: loss heatmaps, their comparison, the table.

All numbers come from :mod:`segloss.uploads.pixel_maps` (the registry losses with ``reduction="none"``)
and all figures from :mod:`segloss.figures.plots`; this module only lays them out. The maps and the
downsampled views are cached per (scene, prediction, losses), so moving the opacity slider
redraws without recomputing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import torch

import segloss
from segloss.uploads import pixel_maps
from segloss.figures import plots
from segloss.train.evaluation import MAP_KINDS
from segloss.uploads.scene import Scene
from ui.url_state import PageState
from ui.upload_view import Prediction
from ui.widgets import loss_param_widgets

#: Hover data grows with the pixels drawn, so the panels share this budget (4 panels: 192 px).
PANEL_PIXELS = 4 * 192 * 192
MAX_SIDE = 512
COMPARISON_SIDE = 320
COMPARISON_LABELS = {"difference": "difference A - B", "log_ratio": "log10 ratio A / B"}
MAP_LABELS = {"loss": "loss map", "gradient": "gradient map"}
SKIPPED = ("learnable", "momentum", "per_image")  # one image: no learning, no running average, one region set


@dataclass
class Result:
    """Full-resolution maps and table, and the downsampled view the panels draw."""

    maps: dict[str, torch.Tensor]
    table: dict[str, np.ndarray]
    view: pixel_maps.DisplayView
    hover_text: np.ndarray
    titles: dict[str, str]
    kind: str  # "loss" or "gradient"

    @property
    def unit(self) -> str:
        return "loss" if self.kind == "loss" else "|dL/dz|"


def panel_side(count: int) -> int:
    """Longest side of each of ``count`` panels: the shared pixel budget, within [128, 512]."""
    return int(min(MAX_SIDE, max(128, (PANEL_PIXELS / max(count, 1)) ** 0.5)))


def loss_choice(url: PageState | None = None) -> tuple[dict[str, dict], str]:
    """Loss multiselect, each loss's parameters and the map kind: ``(name -> params, kind)``.

    In "loss map" mode the region losses chosen are left out with a note (they have no
    per-pixel loss); the gradient map shows every loss. With no loss chosen, a note asks for one.
    """
    if url is not None:
        url.bind("losses", list(pixel_maps.DEFAULT_LOSSES), "multi", choices=list(segloss.LOSSES), key="upload_losses")
        url.bind("kind", "loss", "choice", choices=MAP_KINDS, key="upload_kind")
    else:
        st.session_state.setdefault("upload_losses", list(pixel_maps.DEFAULT_LOSSES))
        st.session_state.setdefault("upload_kind", "loss")
    names = st.multiselect("Losses", list(segloss.LOSSES),
                           format_func=lambda n: segloss.LOSSES[n].title, key="upload_losses",
                           help="Weighted CE weighs classes by this mask's pixel counts; recall loss by the "
                           "prediction's recall on this image. Region losses (Dice, Lovász...) have gradient maps only.",
                           wrap=True)
    kind = st.segmented_control("Show", MAP_KINDS, format_func=MAP_LABELS.get, key="upload_kind",
                                help="Loss map: what each pixel costs. Gradient map: |dL/dz| at each pixel (scaled by "
                                "the number of pixels), how hard the loss pushes that pixel's logits.") or "loss"
    chosen = {}
    with st.expander("Loss parameters"):
        for name in names:
            spec = segloss.LOSSES[name]
            if any(p.name not in SKIPPED and not p.schedule_only for p in spec.params):
                st.markdown(f"**{spec.title}**")
            chosen[name] = loss_param_widgets(spec, "upload", skip=SKIPPED)
    region = [name for name in chosen if not segloss.LOSSES[name].pixelwise]
    if not names:
        st.info("Choose at least one loss above to see its maps.", icon=":material/info:")
    elif kind == "loss" and region:
        st.info(f"{', '.join(segloss.LOSSES[n].title for n in region)}: no loss per pixel (they score whole regions). "
                "Switch to **gradient map** to see where they push.", icon=":material/info:")
        chosen = {name: values for name, values in chosen.items() if name not in region}
    return chosen, kind


@st.cache_resource(max_entries=4, show_spinner="Computing the maps...")
def compute(key: str, _scene: Scene, _logits: torch.Tensor, losses: tuple, kind: str = "loss") -> Result:
    """Maps, table and view; cached per ``key`` (scene + prediction, by content), ``losses``
    (``((name, ((param, value), ...)), ...)``) and ``kind``. Arguments starting with ``_`` are not hashed."""
    params = {name: dict(values) for name, values in losses}
    maps = pixel_maps.loss_maps(_logits, _scene.labels, params, kind=kind, ignore_index=_scene.ignore_index)
    titles = {name: segloss.LOSSES[name].title for name in maps}
    table = pixel_maps.class_table(maps, _scene.labels, _scene.num_classes, class_names=_scene.class_names,
                                   logits=_logits, kind=kind, ignore_index=_scene.ignore_index)
    view = pixel_maps.display_view(_scene.image, _scene.labels, _logits, maps, max_side=panel_side(len(maps)),
                                   ignore_index=_scene.ignore_index)
    text = plots.pixel_hover_text(view.labels, view.top_classes, _scene.class_names, _scene.ignore_index)
    return Result(maps, table, view, text, titles, kind)


def heatmaps(scene: Scene, result: Result, prediction: Prediction) -> None:
    """Loss panels over the image, with opacity, colour-scale controls and a PNG download."""
    c1, c2, c3 = st.columns([2, 2, 1])
    opacity = c1.slider("Heatmap opacity", 0.0, 1.0, step=0.05, key="upload_opacity")
    scale = c2.radio("Colour scale", ("shared", "per loss"), horizontal=True, key="upload_scale",
                     help="Shared: the same colour is the same loss in every panel. Per loss: each panel "
                     "spans its own range (up to its 99th percentile).")
    log_color = c3.toggle("log colour", key="upload_log", help="Colour by log10 of the loss (easy pixels "
                          "under focal loss sit orders of magnitude below hard ones).")
    view = result.view
    panels = {result.titles[name]: values for name, values in view.maps.items()}
    fig = plots.loss_panels_figure(view.image, panels, factor=view.factor, hover_text=result.hover_text,
                                 top_probs=view.top_probs, opacity=opacity, shared_scale=scale == "shared",
                                 log_color=log_color, unit=result.unit)
    st.plotly_chart(fig, width="stretch", key="upload_panels")
    full = {result.titles[name]: values.numpy() for name, values in result.maps.items()}
    st.download_button("Download the heatmaps (PNG, full resolution)", icon=":material/download:",
                       data=lambda: plots.heatmaps_png(scene.image, full, opacity=opacity,
                                                     shared_scale=scale == "shared", log_color=log_color,
                                                     unit=result.unit),
                       file_name=f"{scene.name}_{result.kind}_maps.png", mime="image/png", key="upload_png")
    drawn = (f"drawn at {view.image.shape[1]} x {view.image.shape[0]}, each block of {view.factor} x {view.factor} "
             f"px coloured by its mean {result.unit}" if view.factor > 1 else "drawn at full resolution")
    st.caption(f"Prediction: {prediction.label}; {drawn}. Zoom into one panel and the others follow; hover a "
               "pixel for its label, top-3 probabilities and every map's value. The PNG is at full resolution.")


def comparison(scene: Scene, result: Result) -> None:
    """A difference or log-ratio map between two of the losses."""
    names = list(result.maps)
    if len(names) < 2:
        st.info("Choose two or more losses to compare them pixel by pixel.")
        return
    c1, c2, c3 = st.columns(3)
    for key, default in (("compare_a", names[0]), ("compare_b", names[1])):  # defaults, or a loss dropped since
        if st.session_state.get(key) not in names:
            st.session_state[key] = default
    first = c1.selectbox("Loss A", names, format_func=result.titles.get, key="compare_a")
    second = c2.selectbox("Loss B", names, format_func=result.titles.get, key="compare_b")
    mode = c3.radio("Show", pixel_maps.COMPARISONS, format_func=COMPARISON_LABELS.get, key="compare_mode")
    a, b = result.maps[first], result.maps[second]
    values = pixel_maps.compare_maps(a, b, mode)
    view = pixel_maps.display_view(scene.image, scene.labels, None, {"a": a, "b": b, "v": values},
                                   max_side=COMPARISON_SIDE, ignore_index=scene.ignore_index)
    text = plots.pixel_hover_text(view.labels, view.top_classes, scene.class_names, scene.ignore_index)
    title = f"{result.titles[first]} {'-' if mode == 'difference' else '/'} {result.titles[second]}"
    fig = plots.comparison_figure(view.image, view.maps["v"], factor=view.factor, hover_text=text,
                                title="A - B" if mode == "difference" else "log10 A/B",
                                first=(result.titles[first], view.maps["a"]),
                                second=(result.titles[second], view.maps["b"]))
    st.plotly_chart(fig, width="stretch", key="upload_compare")
    st.caption(f"{title}: red where A puts more weight on a pixel than B, blue where less (colour range: "
               "99th percentile of |value|).")


def table(scene: Scene, result: Result) -> None:
    """The per-class table: pixel share, then one column per loss (its share of the loss, or its
    mean per pixel), the prediction's recall and IoU; shares in percent, "None" for an absent class.
    The CSV holds every column."""
    share, mean = ("share of loss", "mean loss") if result.kind == "loss" else ("share of gradient", "mean |dL/dz|")
    shown = st.radio("Per loss, show", (share, mean), horizontal=True, key="upload_table_metric",
                     help="Share: the part of the loss's total that the class's pixels carry (each column sums "
                     "to 100%; of |loss| for a loss that can be negative, the boundary loss). Mean: the loss of an "
                     "average pixel of the class.")
    columns = [k for k in result.table if ": " not in k or k.endswith(f": {shown}")]
    frame = pd.DataFrame({k: result.table[k] for k in columns})
    percent = [k for k in columns if k == "pixel share" or k.endswith(f": {share}") or k.startswith("prediction")]
    formats = {k: ("{:.1%}" if k in percent else "{:.3g}") for k in columns if k not in ("class", "pixels")}
    # the grid writes "None" where a value is missing (a styler's na_rep does not reach it)
    # headers name the loss alone (the radio above says what its column shows): the full names ran
    # the table past the page's width
    headers = {k: st.column_config.Column(label=k.removesuffix(f": {shown}")) for k in columns if ": " in k}
    st.dataframe(frame.style.format(formats), hide_index=True, key="upload_table",
                 column_config={"class": st.column_config.TextColumn(pinned=True), **headers})  # class kept in view
    st.caption(f"Each loss's column: its {shown}. None: the class has no pixel in this mask. Shares are of the "
               "pixels / of each loss's total.")
    st.download_button("Download the table (CSV)", plots.table_csv(result.table), file_name=f"{scene.name}_per_class.csv",
                       mime="text/csv", icon=":material/download:", key="upload_csv")
