"""Gradient explorer: how hard each loss pushes on the logits, over p_t and a loss parameter.

All values are autograd gradients through segloss.functional (via segloss.analysis), the same
code path a training loop runs.
"""

import numpy as np
import streamlit as st

import segloss
from segloss.explain import analysis
from segloss.figures import plots
from ui.layout import page_setup, side_by_side
from ui.url_state import PageState, Preset, preset_buttons
from ui.widgets import SPREAD_LABELS, loss_caption, loss_param_widgets

page_setup("Gradients", ":material/gradient:")
P_T = analysis.probability_grid(256)
COMPONENT_LABELS = {"norm": "‖dL/dz‖ (all logits)", "true": "|dL/dz_t| (true class)",
                    "false": "|dL/dz_c| (most probable false class)"}
# CE is the dashed reference of every chart; weighted CE's gradient is w_y times CE's
LOSS_NAMES = [n for n in segloss.LOSSES if n != "ce" and not segloss.LOSSES[n].needs_class_counts]


@st.cache_data(max_entries=64, show_spinner="Computing the gradient surface...")
def surfaces(name: str, sweep: str, values: tuple, num_classes: int, spread: str, params: tuple) -> dict:
    """Every component's surface at once: switching components recomputes nothing."""
    return analysis.gradient_surfaces(name, P_T, sweep, values, num_classes, spread, dict(params))


@st.cache_data(max_entries=64, show_spinner="Computing the gradients...")
def magnitude(name: str, num_classes: int, spread: str, component: str, params: tuple = ()) -> np.ndarray:
    """One loss's gradient magnitude against p_t (no parameter swept)."""
    grads = analysis.logit_gradients(analysis.pixel_loss(name, dict(params)), P_T, num_classes, spread,
                                     analysis.picture_class(name))
    return analysis.gradient_magnitude(grads, component).astype(np.float32)


st.title("Gradient magnitude against p_t")
st.markdown(
    "Training moves the logits by the gradient, so the gradient, not the loss value, decides which pixels the "
    "network learns from. The heatmap shows its size for one pixel at each true-class probability **p_t** "
    "(x) and each value of a parameter (y). Bright on the left means hard pixels are pushed hard; dark on the "
    "right means easy pixels are left alone. Compare the **true-class** and **false-class** components: "
    "Dual Focal Loss pushes the false classes down harder than cross-entropy does."
)

LESSONS = (
    Preset("Focal: gradient vs loss", {"loss": "focal", "sweep": "gamma", "component": "norm",
                                                               "spread": "even"},
           "Read the ratio chart at p_t = 0.9: with γ = 2 an easy pixel keeps about 3% of cross-entropy's push, "
           "though its loss is 1% of CE's. Loss curves and gradients tell different stories; training follows "
           "the gradient."),
    Preset("Dual Focal: false classes", {"loss": "dual_focal", "sweep": "beta", "component": "false",
                                                        "spread": "confusing"},
           "The false-class component is the push on the most probable wrong class. Raise β (y axis) and it "
           "grows at every p_t; on the right, where the pixel is already right, it stays well above "
           "cross-entropy's (the α term alone does that, at β = 0): Dual Focal keeps lowering a confusing "
           "class even for pixels already right."),
    Preset("Dice: confident mistakes", {"loss": "dice", "sweep": "smooth", "component": "norm",
                                                        "spread": "even"},
           "On the left (p_t near 0, confidently wrong) soft Dice's gradient falls far below cross-entropy's: a "
           "region it scores as lost gives almost no signal. More smoothing (y axis) lowers it further, everywhere "
           "and most on the left: about 5-13% at s = 10, 20-44% at s = 50."),
)

url = PageState("gradients")
preset_buttons(url, LESSONS)
controls, chart = side_by_side("gradients")
with controls:
    name = st.selectbox("Loss", LOSS_NAMES, format_func=lambda n: segloss.LOSSES[n].title,
                        key=url.bind("loss", "focal", "choice", choices=LOSS_NAMES))
    spec = segloss.LOSSES[name]
    sweeps = analysis.sweepable_parameters(name)
    sweep = None
    if sweeps:
        sweep_key = url.bind("sweep", sweeps[0], "choice", choices=sweeps)
        if st.session_state[sweep_key] not in sweeps:  # the previous loss's parameter: take this loss's first
            st.session_state[sweep_key] = sweeps[0]
        sweep = st.selectbox("Parameter on the y axis", sweeps, key=sweep_key,
                             help="recall: the batch recall R of the pixel's class (recall loss weighs by 1 - R). "
                                  "depth: pixels between the pixel and its region's edge (boundary loss).")
    component = st.radio("Which gradient", analysis.COMPONENTS, format_func=COMPONENT_LABELS.get,
                         key=url.bind("component", "norm", "choice", choices=analysis.COMPONENTS))
    num_classes = st.slider("Number of classes C", 2, 50, key=url.bind("C", 19, "int", low=2, high=50))
    spread = st.radio("The remaining 1 - p_t goes", analysis.SPREADS, horizontal=True, format_func=SPREAD_LABELS.get,
                      key=url.bind("spread", "even", "choice", choices=analysis.SPREADS))
    log_color = st.toggle("log colour scale", disabled=sweep is None, key=url.bind("logc", True, "bool"))
    skip = (sweep, "learnable", "per_image")
    params = {}
    if any(p.name not in skip and not p.schedule_only for p in spec.params):  # an expander with nothing in it would only confuse
        with st.expander("Other parameters"):
            params = loss_param_widgets(spec, "gradients", skip=skip, url=url)

ce = magnitude("ce", num_classes, spread, component)
# Beside the controls: the heatmap (or, with nothing to sweep, the gradient against p_t). Below, the
# page's whole width: the slices and their ratio to CE, side by side (half a column each was too
# narrow to read at a 1024 px window).
if sweep is None:
    own = magnitude(name, num_classes, spread, component, tuple(params.items()))
    with chart:
        st.plotly_chart(plots.curves_figure(P_T, {spec.title: own, "cross-entropy": ce}, x_title="p_t",
                                            y_title="gradient", log_y=True, dashed=["cross-entropy"],
                                            well_classified=analysis.WELL_CLASSIFIED, height=380),
                        width="stretch", key="slices")
        st.caption(f"{spec.title} has no parameter to sweep: its gradient against p_t, next to cross-entropy's.")
    left, right = st.columns(2)
    left.plotly_chart(plots.curves_figure(P_T, analysis.ratio_to_ce({spec.title: own}, ce), x_title="p_t",
                                          y_title="gradient / CE gradient", log_y=True, height=380,
                                          well_classified=analysis.WELL_CLASSIFIED, show_legend=False),
                      width="stretch", key="ratios")
    right.caption("How strongly the loss scales a pixel's gradient compared with cross-entropy, at each p_t; "
                  "below 1 the pixel is down-weighted.")
    if note := analysis.zero_gradient_note(P_T, {spec.title: own}):
        st.caption(note)
    table = {"p_t": P_T, "gradient": own}
else:
    values, rows = analysis.sweep_grid(*analysis.sweep_range(name, sweep), sweep)
    z = surfaces(name, sweep, values, num_classes, spread, tuple(params.items()))[component]
    with chart:
        fig = plots.heatmap_figure(P_T, np.asarray(values), z, x_title="p_t", y_title=sweep, color_title="gradient",
                                   log_color=log_color)
        st.plotly_chart(fig, width="stretch", key="surface")
    offered = [values[i] for i in rows]  # in the link as values; a key per loss and parameter (their own ranges)
    chosen_slices = st.multiselect(f"Slices at {sweep} =", offered, format_func=lambda v: f"{v:g}", wrap=True,
                                   key=url.bind("slices", offered, "multi", choices=offered,
                                                key=f"gradients:slices:{name}:{sweep}"))
    picked = sorted(values.index(v) for v in chosen_slices)
    slices = {f"{sweep} = {values[i]:g}": z[i] for i in picked}
    colors = {f"gamma = {g:g}": {"color": c} for g, c in plots.GAMMA_COLORS.items()} if sweep == "gamma" else {}
    left, right = st.columns(2)
    # slices that coincide until each stops (OHEM's thresholds: CE's gradient up to the cut): the one that
    # stops first in front, so every stop shows (the last drawn hid the others)
    front = analysis.first_to_stop(slices)
    left.plotly_chart(plots.curves_figure(P_T, {**slices, "cross-entropy": ce}, x_title="p_t", y_title="gradient",
                                          log_y=True, dashed=["cross-entropy"], styles=colors,
                                          well_classified=analysis.WELL_CLASSIFIED, height=380,
                                          legend_columns=1, front=front),  # half the page wide: one name a row
                      width="stretch", key="slices")
    # the same legend on both (CE's ratio: the line at 1, below it a pixel is down-weighted), so that
    # plotly lays both out alike and the plot areas stand level
    right.plotly_chart(plots.curves_figure(P_T, analysis.ratio_to_ce({**slices, "cross-entropy": ce}, ce),
                                           x_title="p_t", y_title="gradient / CE gradient", log_y=True,
                                           dashed=["cross-entropy"], well_classified=analysis.WELL_CLASSIFIED,
                                           height=380, styles=colors, front=front, legend_columns=1),
                       width="stretch", key="ratios")
    at_easy = analysis.ratio_at(P_T, analysis.ratio_to_ce(slices, ce), 0.9)
    shown = [f"{label}: {ratio:.2%}" + (" (more than CE)" if ratio > 1.005 else "") for label, ratio in at_easy.items()]
    st.caption(f"Left: the gradient's size {COMPONENT_LABELS[component]} against p_t at each chosen {sweep}, cross-entropy's "
               f"dashed. Right: how strongly each setting scales a pixel's gradient compared with cross-entropy; "
               f"below 1 the pixel is down-weighted. An easy pixel (p_t = 0.9) gets this share of CE's push under "
               f"{spec.title}: " + "; ".join(shown) + ".")
    table = {sweep: np.repeat(values, len(P_T)), "p_t": np.tile(P_T, len(values)), "gradient": z.ravel()}
    if note := analysis.zero_gradient_note(P_T, slices):
        st.caption(note)
if name == "ohem":
    st.caption(analysis.OHEM_GRID_NOTE)
if name in analysis.NO_EFFECT_HERE:
    st.caption(analysis.NO_EFFECT_REASON)
if name == "boundary":
    st.caption("Boundary loss: a foreground pixel (class 1) lying `depth` pixels inside its region, the confusing "
               "class's region just across the boundary. Its push grows with the distances. Near p_t = 1 it fades "
               "as cross-entropy's does (both about in proportion to 1 - p_t); near p_t = 0 it levels off at a small "
               "floor, where CE's is largest: relative to CE it weighs confident pixels more than hard ones.")
if not spec.pixelwise:
    own_now = magnitude(name, num_classes, spread, component, tuple(params.items()))  # the swept one at its default
    swept = next((p for p in spec.params if p.name == sweep), None)
    st.caption(analysis.region_push_note(spec.title, P_T, own_now, ce,
                                         f"{sweep} = {swept.default:g}" if swept is not None else ""))
st.download_button("Download the data (CSV)", plots.table_csv(table), file_name=f"gradients_{name}.csv",
                   mime="text/csv")

with st.container(border=True):
    loss_caption(spec)

url.publish()
url.link_control()
