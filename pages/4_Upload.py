from ui.layout import page_setup; page_setup("Your image", ":material/upload:")  # noqa: E402, E702, I001

# Your image: upload an image and its mask (and, if you have them, your model's logits) and see
# where each loss puts its weight, pixel by pixel. Every upload is validated by segloss.uploads.loaders
# before use: a bad file shows an st.error saying what to fix, and the page keeps working. The
# numbers come from segloss.uploads.pixel_maps (registry losses: reduction="none" loss maps, or gradient
# maps |dL/dz| for every loss, region losses included); this file only lays out widgets (inputs in
# ui.upload_view, outputs in ui.upload_results).

import streamlit as st

from ui import upload_results, upload_view
from ui.layout import side_by_side
from ui.url_state import PageState

url = PageState("upload")
upload_view.keep_widget_state(url)  # before any widget: values survive runs that do not draw them (and links)
st.title("Your image: where each loss puts its weight")
st.markdown(
    "Upload an image and its class mask, or **try a sample**. Pick where the prediction comes from: your own "
    "model's logits, a prediction **simulated** from the mask (turn its confidence, boundary softness and noise, "
    "or make it miss a class), or a trained tiny U-Net. Each heatmap shows the loss of every pixel (or its gradient, "
    "where the loss pushes; region losses such as Dice have only that); the table "
    "shows which classes own the pixels and which own each loss, the class-imbalance story in numbers."
)

inputs, prediction_column = side_by_side("upload")
with inputs:
    st.subheader("1. Image and mask")
    # Streamlit reruns this script on every interaction; the helpers cache decoded uploads by content.
    found = upload_view.scene_input()
scene, scene_key = found if found is not None else (None, None)
with prediction_column:
    st.subheader("2. Prediction")
    prediction = upload_view.prediction_input(scene, scene_key)
    st.subheader("3. Losses")
    losses, kind = upload_results.loss_choice(url)

for notice in scene.notices if scene is not None else ():
    st.info(notice, icon=":material/info:")
if scene is not None and prediction is not None:
    upload_view.share_with_conventions(scene, prediction)  # "Your image" on the Library conventions page

if scene is not None and prediction is not None and losses:
    try:
        # One cached call computes every map, the per-class table and the downsampled view.
        result = upload_results.compute(prediction.key, scene, prediction.logits,
                                        tuple((name, tuple(sorted(values.items()))) for name, values in losses.items()),
                                        kind)
    except (ValueError, TypeError, MemoryError) as err:  # e.g. a class weight the losses refuse
        st.error(f"The losses could not be computed on this input: {err}", icon=":material/error:")
        result = None
    if result is not None and kind == "loss":
        st.subheader("Per-pixel loss")
        upload_results.heatmaps(scene, result, prediction)
        st.subheader("Loss against loss")
        upload_results.comparison(scene, result)
        st.subheader("Per class: who owns the pixels, who owns the loss")
        upload_results.table(scene, result)
        st.caption("Pixel share: the class's share of the scored pixels. Mean loss: its pixels' average loss. "
                   "Share of loss: its part of the image's total loss, per loss function. A rare class with a "
                   "large share of loss is where that loss spends its effort.")
    elif result is not None:
        st.subheader("Per-pixel gradient |dL/dz|: where each loss pushes")
        upload_results.heatmaps(scene, result, prediction)
        st.caption("A pixel's gradient, not its loss, moves the network. Under focal loss an easy pixel keeps a "
                   "larger part of its gradient than of its loss (at p_t = 0.9 and gamma = 2: about 3% of CE's push "
                   "for 1% of its loss), and region losses such as Dice push hardest on the pixels of small "
                   "regions and of uncertain ones, and little on a region predicted confidently wrong.")
        st.subheader("Gradient against gradient")
        upload_results.comparison(scene, result)
        st.subheader("Per class: who owns the pixels, who gets the push")
        upload_results.table(scene, result)
        st.caption("Mean |dL/dz|: its pixels' average gradient (times the number of pixels, so a pixel-wise loss "
                   "shows each pixel's own gradient). Share of gradient: its part of the image's total gradient.")

url.publish()
url.link_control("Opening it shows these settings (losses, parameters, the prediction) and a sample scene; "
                 "your own image and mask are not in a link: upload them again there.")
