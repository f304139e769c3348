"""Loss curves: how much loss a pixel gets at each true-class probability p_t, per loss.

The classic focal-loss picture (several gammas overlaid), made explicit for the multi-class
case: C classes and how the rest of the probability is spread over the false classes, which
changes Dual Focal Loss but not CE or focal loss.
"""

import numpy as np
import streamlit as st

import segloss
from segloss.explain import analysis
from segloss.losses.weights import class_weights
from segloss.train import data
from segloss.figures import plots
from ui.layout import page_setup, side_by_side
from ui.url_state import PageState, Preset, preset_buttons
from ui.widgets import SPREAD_LABELS, loss_caption, loss_param_widgets

page_setup("Loss curves", ":material/show_chart:")
P_T = analysis.probability_grid(400)
GAMMAS, GAMMA_COLORS = plots.GAMMAS, plots.GAMMA_COLORS
LOSS_DASHES = {"focal": "solid", "dual_focal": "dot"}
# none of the gammas' colours, each legible on both themes' backgrounds (segloss.figures.colors); past seven
# losses the colours come round again with another dash
OTHER_COLORS = ("#17becf", "#ff6692", "#bcbd22", "#8c564b", "#1f77b4", "#2ca02c", "#d62728")
OTHER_DASHES = ("solid", "longdashdot", "dash")
RECALLS = (0.0, 0.25, 0.5, 0.75, 0.9)
RECALL_COLORS = dict(zip(RECALLS, ("#8f5a36", "#a56d45", "#b98457", "#cc9c6e", "#dbb38a")))  # browns: no gamma colour
STREET = data.DATASETS["street"]
SHIFTS = tuple(range(-10, 11))  # pixels by which the predicted square's boundary is off


@st.cache_data(max_entries=512, show_spinner=False)
def curve(name: str, params: tuple, num_classes: int, spread: str, true_class: int = 0,
          recall: float = 0.0, depth: float = analysis.BOUNDARY_DEPTH) -> np.ndarray:
    """One loss curve; cached per argument set (streamlit reruns the script on every widget change)."""
    counts = None
    if segloss.LOSSES[name].needs_class_counts:  # weights come from the street scenes' pixel counts, so C is theirs
        counts = data.class_pixel_counts("street")
        num_classes = counts.pixels.numel()
    true_class = true_class or analysis.picture_class(name)
    loss = analysis.pixel_loss(name, dict(params), class_counts=counts, recall=recall, depth=depth)
    return analysis.loss_curve(loss, P_T, num_classes, spread, true_class).astype(np.float32)


@st.cache_data(max_entries=64, show_spinner="Scoring shifted boundaries...")
def shifted(items: tuple, num_classes: int) -> dict[str, np.ndarray]:
    """``(label, loss name, params)`` items: each loss of a square predicted ``k`` pixels too big or too small."""
    losses = {label: segloss.create_loss(name, **dict(values)) for label, name, values in items}
    return analysis.boundary_shift_losses(losses, SHIFTS, num_classes)


st.title("Loss against the true-class probability")
st.markdown(
    "Each curve is the loss one pixel contributes when the model gives its true class probability "
    "**p_t**. Cross-entropy (dashed) never lets go: even at p_t = 0.9 a pixel still costs 0.1. Focal-style "
    "losses shrink the loss of **well-classified** pixels (shaded), so the many easy background pixels stop "
    "drowning out the few hard ones. The log y axis (on by default) shows by how many orders of magnitude."
)

LESSONS = (
    Preset("Focal vs CE: easy pixels", {"losses": ["ce", "focal"], "gammas": [0.0, 2.0], "logy": True,
                                          "logx": False, "spread": "even"},
           "In the shaded region focal loss with γ = 2 costs a pixel at p_t = 0.9 a hundred times less than "
           "cross-entropy, while the hardest pixels on the left keep almost all of theirs (98% at p_t = 0.01, half "
           "at p_t = 0.3). That is how focal loss "
           "stops the many easy background pixels from drowning out the few hard ones."),
    Preset("Dice: confident mistakes", {"losses": ["ce", "dice"], "gammas": [], "logy": False,
                                                   "logx": False},
           "Soft Dice is bounded by 1: a region the model gets confidently wrong (p_t near 0) costs at most 1, "
           "three times a region at p_t = 0.5, while cross-entropy grows without bound there (6.9 at p_t = 0.001). "
           "Dice counts overlap, not how "
           "wrong each pixel is."),
    Preset("Recall: batch recall", {"losses": ["ce", "recall"], "gammas": [],
                                                   "recalls": list(RECALLS), "logy": False, "logx": False},
           "Recall loss is cross-entropy scaled by 1 - R of the pixel's class, R its recall in the current batch. "
           "A class the model already finds (R near 1) stops counting, whatever this pixel's own p_t."),
)

url = PageState("curves")
preset_buttons(url, LESSONS)
controls, chart = side_by_side("curves")
with controls:
    chosen = st.multiselect("Losses", list(segloss.LOSSES), format_func=lambda n: segloss.LOSSES[n].title,
                            key=url.bind("losses", ["ce", "focal"], "multi", choices=list(segloss.LOSSES)), wrap=True)
    overlay = st.multiselect("Overlay gamma values", GAMMAS, key=url.bind("gammas", list(GAMMAS), "multi", choices=GAMMAS),
                             help="One curve per gamma for every loss with a gamma; empty: use each loss's slider.",
                             wrap=True)
    num_classes = st.slider("Number of classes C", 2, 50, key=url.bind("C", 19, "int", low=2, high=50))
    spread = st.radio("The remaining 1 - p_t goes", analysis.SPREADS, horizontal=True,
                      key=url.bind("spread", "even", "choice", choices=analysis.SPREADS),
                      format_func=SPREAD_LABELS.get)
    log_x = st.toggle("log x axis", key=url.bind("logx", False, "bool"))
    log_y = st.toggle("log y axis", key=url.bind("logy", True, "bool"))
    params = {}
    for name in chosen:
        spec = segloss.LOSSES[name]
        overlaid = bool(overlay) and analysis.takes_values(spec.name, "gamma", GAMMAS)
        skip = ("learnable", "per_image", "gamma") if overlaid else ("learnable", "per_image")
        if any(p.name not in skip and not p.schedule_only for p in spec.params):
            with st.expander(f"{spec.title} parameters", expanded=False):
                params[name] = loss_param_widgets(spec, "curves", skip=skip, url=url)
                if spec.needs_class_counts:
                    classes = range(len(STREET.class_names))
                    params[name]["true_class"] = st.selectbox(
                        "Pixel's class (street counts)", classes, format_func=STREET.class_names.__getitem__,
                        key=url.bind(f"{name}.class", 6, "choice", choices=classes))
    recalls = RECALLS
    if "recall" in chosen:
        recalls = st.multiselect("Batch recall R of the pixel's class", RECALLS,
                                 key=url.bind("recalls", list(RECALLS), "multi", choices=RECALLS), wrap=True)
    depth = analysis.BOUNDARY_DEPTH
    if "boundary" in chosen:
        depth = st.slider("Boundary loss: pixels between the pixel and its region's edge", 0, 20,
                          key=url.bind("depth", analysis.BOUNDARY_DEPTH, "int", low=0, high=20),
                          help="The boundary loss weighs probabilities by distances: deeper inside its region, a "
                               "pixel's right answer earns more and a wrong one costs more.")

curves: dict[str, np.ndarray] = {}
styles: dict[str, dict] = {}  # one colour per gamma, one dash per loss, so the same gamma reads across losses
for name in chosen:
    spec, values = segloss.LOSSES[name], dict(params.get(name, {}))
    true_class = values.pop("true_class", 0)
    if name == "recall":
        for r in recalls:
            label = f"{spec.title}, R = {r:g}"
            curves[label] = curve(name, tuple(values.items()), num_classes, spread, recall=r)
            styles[label] = {"color": RECALL_COLORS[r], "dash": "longdash"}
    elif overlay and analysis.takes_values(spec.name, "gamma", GAMMAS):
        for g in overlay:
            label = f"{spec.title}, γ = {g:g}"
            curves[label] = curve(name, tuple({**values, "gamma": g}.items()), num_classes, spread)
            styles[label] = {"color": GAMMA_COLORS[g], "dash": LOSS_DASHES.get(name, "dashdot")}
    else:
        label = spec.title + (f" ({STREET.class_names[true_class]} pixel, C = {len(STREET.class_names)})"
                              if spec.needs_class_counts else "")
        curves[label] = curve(name, tuple(values.items()), num_classes, spread, true_class, depth=depth)
        if name != "ce":
            k = sum(1 for style in styles.values() if style["color"] in OTHER_COLORS)
            styles[label] = {"color": OTHER_COLORS[k % len(OTHER_COLORS)],
                             "dash": OTHER_DASHES[k // len(OTHER_COLORS) % len(OTHER_DASHES)]}

with chart:
    if not curves:
        st.info("Pick at least one loss on the left.")
    else:
        fig = plots.curves_figure(P_T, curves, x_title="p_t (probability of the true class)", y_title="loss per pixel",
                                log_x=log_x, log_y=log_y, well_classified=analysis.WELL_CLASSIFIED,
                                dashed=[segloss.LOSSES["ce"].title], styles=styles)
        st.plotly_chart(fig, width="stretch", key="curves")
        st.download_button("Download curve data (CSV)", plots.table_csv({"p_t": P_T, **curves}),
                           file_name="loss_curves.csv", mime="text/csv")
    overlaid = [name for name in chosen if name != "recall" and analysis.takes_values(name, "gamma", GAMMAS)]
    if overlay and overlaid:  # only when a chosen loss is drawn once per gamma
        dashes = {"solid": "solid", "dot": "dotted", "dashdot": "dash-dot"}
        styles_named = [f"{dashes[LOSS_DASHES.get(name, 'dashdot')]} {segloss.LOSSES[name].title}" for name in overlaid]
        st.caption("Colour: gamma. Line style: " + ", ".join(styles_named)
                   + (", long dashes in browns recall loss (dark: low batch recall)" if "recall" in chosen else "")
                   + (". Focal with γ = 0 lies exactly on CE." if "focal" in overlaid and "ce" in chosen and 0 in overlay
                      and params.get("focal", {}).get("alpha", 1.0) == 1.0  # α scales it, ε mixes in other classes
                      and not params.get("focal", {}).get("label_smoothing", 0.0) else "."))
    region = [segloss.LOSSES[n].title for n in chosen
              if not segloss.LOSSES[n].pixelwise and n not in analysis.BOUNDARY_LOSSES]
    if region:
        st.caption(f"{', '.join(region)}: region losses have no loss per pixel. Their curve is the loss of an image of "
                   f"{analysis.REGION_PIXELS} pixels of one class, every pixel at p_t (soft Dice: (1 - p_t)/(1 + p_t); "
                   "Jaccard and Lovász: 1 - p_t, Dice and Jaccard without smoothing; s = 1 moves them by about 1%; "
                   "Generalized Dice: 1 - p_t too, since the absent classes take the largest weight, so the "
                   "probability they receive counts in its denominator as fully as the true class's). A region "
                   "loss alone is bounded by 1 and falls "
                   "slowly: "
                   "it does not punish confident mistakes the way cross-entropy does (its sums with CE or focal "
                   "loss, and Unified Focal's focal part, do).")
    if "ohem" in chosen:
        ohem = segloss.LOSSES["ohem"].title
        zero = analysis.zero_gradient_note(P_T, {ohem: curves[ohem]}) if log_y else None
        st.caption(analysis.OHEM_GRID_NOTE + (" " + zero if zero else ""))
    if "boundary" in chosen:
        background_unscored = params.get("boundary", {}).get("classes", "foreground") == "foreground"
        boundary_curve = curves[segloss.LOSSES["boundary"].title]
        crossing = (f"; here (C = {num_classes}, d = {depth}, this spread) from p_t = {P_T[boundary_curve < 0][0]:.2g}"
                    if (boundary_curve < 0).any() and depth >= 1 else "")
        inside = ("with C = 2 the confusing class is the background, which the loss does not score, so it is "
                  "negative at every p_t" if num_classes == 2 and background_unscored else
                  "it turns negative once p_t exceeds (d + 1)/d times the confusing class's probability (d: the "
                  f"depth{crossing})")
        st.caption(f"Boundary loss: a foreground pixel {depth} pixel{'s' if depth != 1 else ''} inside its region, "
                   "the confusing class's "
                   "region just across the boundary. It is linear in the probabilities. Inside the region (depth "
                   f">= 1) {inside}; on the edge (depth 0) it is never negative"
                   + (": a log y axis shows only its positive part." if log_y else "."))
    if "dice_boundary" in chosen:
        st.caption(f"Generalized Dice + boundary: the loss of an image of {analysis.REGION_PIXELS} pixels of one foreground "
                   "class at p_t, with the weights of the first epoch; the image has no other class, so its boundary "
                   "term uses the distances to the image's border. Its schedule shows on the Live training page.")
    if "weighted_ce" in chosen:
        wce = dict(params.get("weighted_ce", {}))
        cls = wce.pop("true_class", 6)
        counts = data.class_pixel_counts("street")
        w = float(class_weights(wce.get("scheme", "median"), counts, wce.get("beta", 0.999))[cls])
        st.caption(f"Weighted cross-entropy: one {STREET.class_names[cls]} pixel's w · (-log p_t), w = {w:.3g} from the "
                   "street scenes' pixel counts. A batch's loss divides by the sum of its pixels' weights (the formula "
                   "below), so over a batch the weights shift which pixels count, not the loss's overall scale.")
    if "recall" in chosen:
        st.caption("Recall loss weighs a pixel by 1 - R of its class, where R is that class's recall in the current "
                   "batch: it does not depend on this pixel's p_t. Each curve is (1 - R) · CE for one batch recall R.")
    if "dual_focal" in chosen and st.toggle("Show Dual Focal's three terms separately", key=url.bind("terms", False, "bool")):
        dfl = {k: v for k, v in params.get("dual_focal", {}).items() if k in ("alpha", "beta", "rho", "gamma")}
        gamma = dfl.pop("gamma", None)  # None: overlaid; then the one overlaid gamma, or a slider
        if gamma is None and len(overlay) == 1:
            gamma = overlay[0]
        if gamma is None:
            gamma = st.select_slider("gamma for the terms", GAMMAS,
                                     key=url.bind("terms_gamma", 1.0, "choice", choices=GAMMAS))
        terms = analysis.dual_focal_terms(P_T, num_classes, spread, gamma=gamma, **dfl)
        st.plotly_chart(plots.curves_figure(P_T, terms, x_title="p_t", y_title="term value", log_x=log_x,
                                          well_classified=analysis.WELL_CLASSIFIED), width="stretch", key="terms")
        st.caption(f"The three terms at γ = {gamma:g} add up to the Dual Focal curve with that γ. The false-class "
                   "term depends on how 1 - p_t is spread (and so does the focal-style term, unless γ = 1): switch "
                   "the spread above and watch them change while cross-entropy stays put.")

if any(name in analysis.BOUNDARY_LOSSES for name in chosen):
    st.subheader("Loss when the predicted boundary is off by k pixels")
    items = []  # the main chart's curves (same labels, colours, gammas) of the losses without class counts
    for name in chosen:
        spec = segloss.LOSSES[name]
        if spec.needs_class_counts:
            continue
        values = {k: v for k, v in params.get(name, {}).items() if k not in ("true_class", "learnable")}
        for g in (overlay if overlay and analysis.takes_values(spec.name, "gamma", GAMMAS) else [None]):
            label = spec.title if g is None else f"{spec.title}, γ = {g:g}"
            items.append((label, name, tuple({**values, **({} if g is None else {"gamma": g})}.items())))
    shift = shifted(tuple(items), num_classes)
    panels = [(kind, {label: shift[label] for label, name, _ in items
                      if (name in analysis.BOUNDARY_LOSSES) == (kind == "boundary")})
              for kind in ("others", "boundary")]
    panels = [(kind, panel) for kind, panel in panels if panel]
    for column, (kind, panel) in zip(st.columns(len(panels)), panels):
        with column:  # each panel its own y scale: the boundary loss is ~20x smaller than CE here
            st.plotly_chart(plots.curves_figure(
                np.asarray(SHIFTS), panel, x_title="k: square grown by k pixels (negative: shrunk)",
                y_title="boundary losses" if kind == "boundary" else "loss of the image", height=340,
                dashed=[segloss.LOSSES["ce"].title], styles={k: v for k, v in styles.items() if k in panel},
                legend_columns=2 if len(panels) > 1 else plots.LEGEND_COLUMNS), width="stretch", key=f"shift_{kind}")
    shown = {name for _, name, _ in items}
    others = [kind for kind, present in (("pixel-wise losses", any(segloss.LOSSES[n].pixelwise and n not in
                                                                  analysis.BOUNDARY_LOSSES for n in shown)),
                                         ("region losses", any(not segloss.LOSSES[n].pixelwise and n not in
                                                               analysis.BOUNDARY_LOSSES for n in shown))) if present]
    st.caption(f"A {2 * analysis.SHIFT_HALF_WIDTH} px square of class 1 on background, predicted with confidence "
               f"{analysis.SHIFT_CONFIDENCE} as a square k pixels too big or too small."
               + (f" The {' and '.join(others)} grow with the number of wrong pixels, about linearly in k." if others
                  else "")
               + (" The boundary loss grows with their distances to the true boundary, about as k squared: it "
                  "measures how far the contour is off, not only how many pixels are wrong (shrinking by one pixel "
                  "costs it nothing: the region's edge pixels have distance 0)." if "boundary" in shown else "")
               + (" Generalized Dice + boundary, still mostly GDL at its first epoch's weights, grows about "
                  "linearly." if "dice_boundary" in shown else "")
               + (" OHEM averages over the pixels it keeps: while the wrong pixels are fewer than its min_kept "
                  "share, easy right pixels fill that share and pull the mean down; once they are more, it keeps "
                  "only them, and jumps." if "ohem" in shown else "")
               + " Each panel has its own scale."
               + (" Losses that need class counts are left out." if any(segloss.LOSSES[n].needs_class_counts
                                                                         for n in chosen) else ""))

for name in chosen:
    with st.container(border=True):
        loss_caption(segloss.LOSSES[name])

url.publish()
url.link_control()
