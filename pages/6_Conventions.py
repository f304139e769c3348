"""Library conventions: why "focal loss" gives different numbers in different libraries.

One input, every library's focal loss (reproduced in ``segloss.explain.conventions``, no library needed),
the two "means" of weighted cross-entropy, the three formulas called "Dual Focal Loss" and the
soft Dice losses of MONAI and smp (``segloss.explain.dice_conventions``), side by side with the reason for
each difference and, where one is exact, the factor that converts it.
"""

import numpy as np
import pandas as pd
import streamlit as st

from segloss.explain import analysis
from segloss.uploads import convention_inputs
from segloss.explain import convention_table
from segloss.train import data
from segloss.figures import plots
from ui import upload_view
from ui.layout import page_setup
from ui.url_state import PageState, Preset, preset_buttons

page_setup("Library conventions", ":material/compare_arrows:")
SOURCES = {"sample": "Sample scene, simulated prediction", "random": "Random logits",
           "upload": "Your image from the Upload page"}
P_T = analysis.probability_grid(300)
CURVE_STYLES = ({"color": "#1f77b4"}, {"color": "#ff7f0e"}, {"color": "#2ca02c"}, {"color": "#7f7f7f"})


@st.cache_data(max_entries=64, show_spinner="Computing every convention...")
def comparison(source: str, seed: int, knobs: tuple, ignore_share: float, gamma: float, alpha: float):
    """Summary of the input and the table's columns; cached per argument set (every widget reruns the page)."""
    if source == "sample":
        logits, target = convention_inputs.sample_input(knobs[0], seed=seed, confidence=knobs[1])
    else:
        logits, target = convention_inputs.random_input(knobs[0], seed=seed, scale=knobs[1])
    return compare(logits, convention_inputs.with_ignored(target, ignore_share, seed=seed), gamma, alpha)


def compare(logits, target, gamma: float, alpha: float) -> tuple[dict, dict]:
    """``(input summary, table columns)`` of one input (uncached: an upload is not hashable cheaply)."""
    rows = convention_table.compare_conventions(logits, target, gamma=gamma, alpha=alpha)
    return convention_inputs.input_summary(logits, target), convention_table.rows_as_columns(rows)


@st.cache_data(max_entries=64, show_spinner=False)
def dual_focal_curves(num_classes: int, spread: str, gamma: float) -> dict[str, np.ndarray]:
    curves = convention_table.dual_focal_curves(P_T, num_classes, spread, gamma=gamma)
    return {name: values.astype(np.float32) for name, values in curves.items()}


st.title("Same input, different “focal loss” (and Dice)")
st.markdown(
    "Libraries agree on the name and disagree on the function: **softmax** or one-vs-all **sigmoid**, what "
    "**alpha** weighs (the positives, every class but the background, or one value per class) and what "
    "**“mean”** divides by (valid pixels, all N·C·H·W elements, or per-class means summed). Below, every "
    "convention runs on the same logits and labels; the ratio is to segloss's value for the same kind of loss. "
    "**Dice** has the same problem: regions per image or per batch, absent classes skipped, counted as 0 or "
    "scored, smoothing 1, 1e-5 or 0, and V-Net's squared denominator. Pick the sample scene, where some classes "
    "are absent from some images, to see them split."
)

LESSONS = (
    Preset("Ignored pixels and 'mean'", {"input": "random", "ignored": 0.5, "gamma": 2.0, "alpha": 0.25},
           "Half the pixels are labelled ignore: kornia's mean over every N·C·H·W element, ignored pixels "
           "included, is now about 2C times smaller than the same sum over the valid pixels (segloss and "
           "MONAI with ignore_index, as torch's cross-entropy divides); the same factor separates torchvision's sigmoid loss from MONAI's. Read the 'exact "
           "conversion' column: the factor is the count of elements over the valid pixels."),
    Preset("Absent classes split Dice", {"input": "sample", "dataset": "street", "seed": 0, "ignored": 0.0},
           "In these two street scenes one class is absent from both images. Look at the Dice rows: smp counts "
           "it as 0 in a mean over all C, segloss leaves it out, MONAI scores it like the others (predicted "
           "anywhere, it costs a full loss). Same input, three numbers. MONAI per image and over the batch differ "
           "already; seed 8 misses a class in one image only, which MONAI per image charges to that image "
           "alone as a full loss: the gap between them widens."),
    Preset("What alpha means", {"input": "random", "gamma": 0.0, "alpha": 0.75, "ignored": 0.0},
           "At γ = 0 every softmax focal loss is cross-entropy up to its α and its normalisation (kornia, and "
           "MONAI without ignore_index, also divide by C: the table's factors): segloss's scalar α is a global "
           "factor (exactly α times the reference); kornia and MONAI's softmax weigh the background 1 - α and "
           "every other class α (segloss's per-class row). The sigmoid losses (torchvision, MONAI's default, smp) "
           "are C one-vs-all binary cross-entropies, positives weighed α and negatives 1 - α: no constant "
           "converts them into the softmax ones."),
)

url = PageState("conventions")
preset_buttons(url, LESSONS)
# Controls in a row above the chart: its bar labels are long and need the page's whole width.
pick_input, pick_scene, pick_loss = st.columns(3, gap="medium")
with pick_input:
    uploaded = st.session_state.get(upload_view.UPLOAD_INPUTS)
    options = [key for key in SOURCES if key != "upload" or uploaded is not None]
    source_key = url.bind("input", "sample", "choice", choices=options)
    if st.session_state[source_key] not in options:  # "upload" in a link, but nothing uploaded in this session
        st.session_state[source_key] = "sample"
    source = st.radio("Input", options, format_func=SOURCES.get, key=source_key,
                      help="The Upload page offers its image here once it has logits for it.")
    if source != "upload":
        seed = int(st.number_input("Seed", min_value=0, max_value=10_000, step=1,
                                   key=url.bind("seed", 0, "int", low=0, high=10_000)))
with pick_scene:
    if source == "sample":
        knobs = (st.selectbox("Dataset", list(data.DATASETS), format_func=lambda k: data.DATASETS[k].title,
                              key=url.bind("dataset", "street", "choice", choices=list(data.DATASETS))),
                 st.slider("Simulated confidence", 0.2, 0.99, step=0.01,
                           key=url.bind("confidence", 0.7, "float", low=0.2, high=0.99),
                           help="True-class probability of the simulated prediction away from class edges."))
    elif source == "random":
        knobs = (st.slider("Classes C", 2, 20, key=url.bind("C", 5, "int", low=2, high=20)),
                 st.slider("Logit scale", 0.5, 8.0, step=0.5, key=url.bind("scale", 2.0, "float", low=0.5, high=8.0)))
    if source != "upload":
        ignore_share = st.slider("Share of pixels labelled ignore (255)", 0.0, 0.9, step=0.05,
                                 key=url.bind("ignored", 0.0, "float", low=0.0, high=0.9),
                                 help="With none ignored, N·C·H·W / |V| is exactly C.")
with pick_loss:
    gamma = st.slider("gamma (γ)", 0.0, 5.0, step=0.5, key=url.bind("gamma", 2.0, "float", low=0.0, high=5.0))
    alpha = st.slider("alpha (α)", 0.05, 0.95, step=0.05, key=url.bind("alpha", 0.25, "float", low=0.05, high=0.95),
                      help="Given to every library; each reads it its own way.")

if source == "upload":
    try:
        summary, columns = compare(*convention_inputs.input_from_upload(uploaded), gamma, alpha)
    except (TypeError, ValueError) as err:
        st.error(f"The Upload page's data cannot be used here: {err}", icon=":material/error:")
        st.stop()
else:
    summary, columns = comparison(source, seed, knobs, ignore_share, gamma, alpha)

st.caption(f"Input: N = {summary['N']}, C = {summary['C']}, {summary['pixels']:,} pixels, "
           f"|V| = {summary['valid']:,} valid ({summary['ignored']:,} ignored), "
           f"N·C·H·W = {summary['elements']:,} elements."
           + (" MONAI's row with ignore_index=None is left out: without an ignore index its one-hot cannot "
              "take the ignore label; set the ignored share to 0 to see it." if summary["ignored"] else ""))
st.plotly_chart(plots.ratio_bars_figure(columns["name"], columns["ratio"], columns["group"]),
                width="stretch", key="ratios")

table = pd.DataFrame({"convention — what it mirrors": [f"{name} — {library}" for name, library in
                                                       zip(columns["name"], columns["library"])],
                      "loss": columns["group"], "value": [f"{v:.5f}" for v in columns["value"]],
                      "÷ segloss": [f"{r:.4g}×" for r in columns["ratio"]],
                      "why it differs": columns["reason"], "exact conversion": columns["conversion"]})
# long words (N·C·H·W, monai.losses.FocalLoss) may break anywhere: unbroken, they widened the table past the
# page at a 1280 px window, and its right edge hid the conversions (in a narrower one the table scrolls sideways)
styled = (table.style.set_properties(**{"overflow-wrap": "anywhere"})
          .set_properties(subset=["why it differs"], **{"min-width": "200px"}))
st.table(styled)  # a static table wraps the sentences (an interactive st.dataframe would cut them)
st.caption("Exact conversion: value × factor = the named row's value (up to float rounding); empty where no "
           "constant converts one into the other (sigmoid vs softmax, α per class, different formulas).")
st.download_button("Download the table (CSV)", pd.DataFrame(columns).to_csv(index=False),
                   file_name="loss_conventions.csv", mime="text/csv")

st.subheader("Three losses called “Dual Focal”")
st.markdown(
    "**Hossain et al. 2021** (segloss's `dual_focal_loss`, for class imbalance) adds a false-class term and an "
    "additive focal term to CE. **Tao et al. 2023** (*Dual Focal Loss for Calibration*, arXiv:2305.13665) is a "
    "focal loss whose factor (1 - p_t + p_j)^γ uses p_j, the largest probability ranked below the true class. "
    "A **2019 port** (CoinCheung/pytorch-loss, third-party) of a preprint by the same authors, arXiv:1909.11932 "
    "(later withdrawn; its versions 1 and 2 remain on arXiv), uses -Σ log(1 - (p - y)²): no separate CE term, yet its "
    "true-class term is -log p_t - log(2 - p_t), which grows like CE as p_t → 0; only the port's ε = 1e-5 caps "
    "it, at -log 1e-5 ≈ 11.5 per class. "
    "Two are papers; the third is one reader's port of a withdrawn preprint."
)
left, right = st.columns([1, 2.8], gap="large")
with left:
    num_classes = st.slider("Classes C of the pixel", 2, 50, key=url.bind("dfl_C", 5, "int", low=2, high=50))
    spread = st.radio("The remaining 1 - p_t goes", analysis.SPREADS, horizontal=True,
                      format_func={"even": "evenly", "confusing": "mostly to one class"}.get,
                      key=url.bind("spread", "even", "choice", choices=analysis.SPREADS))
    log_y = st.toggle("log y axis", key=url.bind("logy", False, "bool"))
    st.caption(f"Tao et al.'s γ is the γ above ({gamma:g}); Hossain's parameters stay at the authors' 1. "
               "p_j, and so Tao's curve, jumps where p_t passes the probability of a false class.")
with right:
    curves = dual_focal_curves(num_classes, spread, gamma)
    fig = plots.curves_figure(P_T, curves, x_title="p_t (probability of the true class)", y_title="loss per pixel",
                            log_y=log_y, well_classified=analysis.WELL_CLASSIFIED, dashed=["cross-entropy"],
                            styles=dict(zip(curves, CURVE_STYLES)))
    st.plotly_chart(fig, width="stretch", key="dual_focal_curves")
    st.download_button("Download curve data (CSV)", plots.table_csv({"p_t": P_T, **curves}),
                       file_name="dual_focal_curves.csv", mime="text/csv")

st.subheader("Recall loss: the paper's weights and the authors' code")
st.markdown(
    "Tian et al. (ICRA 2022) weight class c by **1 - R_c = FN_c / N_c**, from the batch's argmax; segloss "
    "follows the paper, so a class with no false negatives in the batch contributes **0**. The authors' code "
    "(PotatoTian/recall-semseg) starts each class's counter at 1, so such a class keeps a weight of **1/N_c** "
    "instead, and it divides by every pixel of the batch, ignored ones included (it has an `ignore_index`, "
    "but it writes the ignored label's counts over class 1's, and `weight[target]` indexes its C weights with the "
    "ignored pixels' 255, which fails). The difference is small for "
    "large classes and large batches, and largest for a rare class that the model already gets right."
)

st.subheader("Same name, other definitions: the newer losses")
st.markdown(
    "- **Label smoothing** (segloss `label_smoothing_ce`, focal's `label_smoothing`): segloss gives torch's numbers, "
    "class weights on both terms and the \"mean\" divided by the true classes' weights; torch's own `label_smoothing` "
    "gave wrong numbers or crashed with `ignore_index` and weights in earlier releases (pytorch#73205, #69339, "
    "#72056). On focal loss, "
    "segloss mixes in CE's uniform term unfocused; other ports focus it too.\n"
    "- **OHEM**: segloss averages CE over the kept pixels, as CCNet's `OhemCrossEntropy2d` does (HRNet's too "
    "without class weights; with them HRNet divides by |K|, not by the kept pixels' weights); "
    "mmsegmentation's `OHEMPixelSampler` keeps the same pixels but its CE then divides by all N·H·W pixels (or the "
    "valid ones with `avg_non_ignore`), |K|/(N·H·W) times segloss's value. Their `min_kept` is a *count* "
    "(mmsegmentation 100,000 per image at 512 x 1024 crops, CCNet 100,000 at 769 x 769, HRNet's configs 131,072); segloss takes a *share* of the valid "
    "pixels. mmsegmentation's sampler without `thresh` (its default) keeps the top `min_kept` losses, no "
    "threshold.\n"
    "- **Generalized Dice**: MONAI's `GeneralizedDiceLoss` gives an absent class the largest finite weight (per "
    "image: the image's largest); segloss does the same, per batch and per image. The paper weighs by "
    "1/G_c^2; some ports use 1/G_c.\n"
    "- **Unified Focal**: MONAI's `AsymmetricUnifiedFocalLoss` is binary only; the authors' code averages the "
    "Tversky term over both classes of every image. segloss's multi-class form suppresses one background class "
    "and averages over the classes present. segloss's λ weighs the focal-Tversky term, as the authors' code "
    "does; MONAI's `weight` weighs the focal term: the two agree only at the default 0.5.\n"
    "- **Boundary loss**: the authors score the foreground classes (`idc=[1]`) with distance maps "
    "`edt(outside) - (edt(inside) - 1)` from scipy's exact transform (a region's edge pixel gets 0, not -1); segloss "
    "does the same by default (`classes=\"foreground\"`). The plain signed distance `edt(outside) - edt(inside)` "
    "moves every inside value down by one, and so the loss by the probability mass inside the regions. The pairing with a region loss also differs: "
    "the authors' code starts GDL at weight 1 and the boundary term at 0.01, and its `StealWeight` scheduler moves "
    "0.01 of weight per epoch from GDL to the boundary term (GDL never below 0.1), which is segloss's "
    "`dice_boundary`; ports with a fixed "
    "`alpha * dice + (1 - alpha) * boundary` never shift the balance."
)

url.publish()
url.link_control()
