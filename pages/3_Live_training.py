from ui.layout import page_setup; page_setup("Live training", ":material/model_training:")  # noqa: E402, E702, I001

# Live training: a tiny U-Net learns a sample dataset under the loss you pick, and you watch what
# the loss does pixel by pixel. Streamlit concepts used here:
# - st.session_state holds one segloss.train.trainer.Trainer per browser session (two tabs never share a
#   model); it trains in its own thread, so it keeps going while you look at other pages, and it
#   stops by itself when the tab closes (ui.live_session watches the session).
# - @st.fragment(run_every=...) redraws only the live panels while training runs, every 2 s or once per
#   validation (every 10 steps), whichever is later (ui.live_view.refresh_seconds): watching then costs
#   the trainer little, even with several sessions training on one server (benchmarks/bench_live_load.py).
#   Images and charts are rebuilt only when the trainer has validated again (segloss.figures.live.ViewCache):
#   an unchanged chart costs neither the server nor the browser a redraw.
# - The buttons act through on_click callbacks, which run before the script: the page always draws
#   the state the click produced. All numbers come from segloss.figures (live, plots); ui.live_view lays out.

import streamlit as st

import segloss
from segloss.train import data
from ui import live_view
from ui.layout import side_by_side
from ui.url_state import PageState
from ui.widgets import loss_caption

st.title("Live training: watch a loss at work")
st.markdown(
    "A tiny U-Net (0.2 M parameters) learns to segment procedurally drawn scenes, a fresh batch every step, "
    "with the loss you choose. On the right: a fixed validation image, its ground truth and the current "
    "prediction, the **loss of every pixel** under your loss (or its **gradient**, where it pushes the network) next "
    "to **cross-entropy on the same prediction**, and how loss, mIoU, mean accuracy and each class's recall move "
    "as it learns."
)

trainer = st.session_state.get(live_view.TRAINER_KEY)  # after the buttons' callbacks have run
url = PageState("live")
controls, view = side_by_side("live")
with controls:
    live_view.settings_widgets(trainer, url)
    live_view.buttons(trainer)
    wanted, _ = live_view.read_settings()

trainer = st.session_state.get(live_view.TRAINER_KEY)
shown_status = trainer.status if trainer is not None else None
refresh = live_view.refresh_seconds(trainer.snapshot()) if shown_status == "running" else None


def live_panels() -> None:
    """Progress, the validation image, prediction, loss maps and curves, from one snapshot."""
    snap = trainer.snapshot()
    if snap.status != shown_status or live_view.refresh_is_off(refresh, snap):
        st.rerun()  # the buttons and the refresh schedule follow the status and the rate: redraw the whole page
    live_view.status_bar(snap)
    if snap.view is None:
        st.info("Evaluating the untrained model...", icon=":material/hourglass_top:")
        return
    kind = live_view.map_kind(snap)
    live_view.image_panels(snap, kind)
    live_view.charts(snap, kind)


with view:
    if trainer is None:
        st.info("Choose a dataset, a loss and its parameters, then press **Start**. Training runs in the "
                "background: switch pages and come back, it keeps going.", icon=":material/model_training:")
    else:
        st.markdown(live_view.describe(trainer.config))
        if trainer.config != live_view.wanted_config(wanted):
            st.caption(":material/info: The settings on the left differ from this run: Step continues this run; "
                       "Stop, then Start, begins a new run with them.")
        st.fragment(run_every=refresh)(live_panels)()

st.divider()
st.subheader("What to watch for")
st.markdown(
    """
- **Rare classes.** Poles, traffic signs and pedestrians own well under 2% of a street scene's pixels, the
  lesion about 1% of an ultrasound image (table below). Follow their lines in *recall per class*:
  with cross-entropy they tend to rise last, while pixel accuracy (the "% of pixels right" over the
  prediction) already looks fine (mIoU and mean accuracy, which average over classes, lag with them),
  because the big classes own most of the average loss. Check whether focal, Dual Focal, recall loss or
  weighted CE lift them sooner, and what it costs: weighted CE typically paints rare-class colours too generously (lower precision).
- **Boundaries.** Early on the loss map glows everywhere. As the model learns, region interiors go dark and
  the loss retreats to class edges and thin objects, pixels that are genuinely ambiguous at this resolution.
  The line under the maps measures it: boundary pixels' share of the loss against their share of the pixels.
- **Where the loss concentrates.** With *each to its own range*, compare where the two maps are bright: focal
  loss scales each pixel's CE by (1 - p_t)^γ, so easy pixels fade and what remains sits on the hard ones.
  With *one shared range* you also see how much smaller it is in absolute terms. The bars give each class's
  share of the pixels against its share of each loss.
- **Loss map or gradient map.** The gradient map shows |dL/dz| per pixel, where the loss actually pushes. Under
  focal loss easy pixels keep about three times more of CE's gradient than of CE's loss (at p_t = 0.9, γ = 2:
  3% against 1%), so the gradient map is less dark in the interiors. Region losses (Dice, Lovász...) have no
  loss per pixel at all: their gradient map is the only map. It glows on small regions and on uncertain
  ones; a region the model gets confidently wrong gets little push from Dice (the Gradients page shows why).
- **The loss's own state.** Recall loss weighs each class by 1 - its recall on the current batch; the weight
  curves show which classes the model is missing right now. Learnable Dual Focal parameters drift toward
  their bounds (γ and ρ up, α down; β down while ρ stays near 1, then up once ρ has grown): minimising
  a loss over its own parameters is degenerate.
"""
)
dataset = trainer.config.dataset if trainer is not None else wanted["dataset"]
st.subheader(f"Class frequencies: {data.DATASETS[dataset].title}")
live_view.frequency_table(dataset)
st.caption("Pixel shares over 64 generated samples. The weight columns are what weighted cross-entropy uses "
           "(median-frequency and inverse-frequency schemes).")

with st.container(border=True):
    loss_caption(segloss.LOSSES[trainer.config.loss if trainer is not None else wanted["loss"]])

url.publish()
url.link_control("Opening it sets up these settings; a run is not in a link: press Start there to train.")
