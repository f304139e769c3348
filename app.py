"""segloss home page: what the app is for, and the losses at a glance.

Run with ``make run`` (or ``streamlit run app.py``). Every other page lives in ``pages/`` and
can be opened directly by its URL; all of them draw the same sidebar through ``ui.layout``.
"""

import streamlit as st

import segloss
from ui.layout import available_pages, page_setup
from ui.widgets import loss_caption

page_setup("Home", ":material/home:")

st.title("segloss: losses for imbalanced segmentation")
st.markdown(
    """
In semantic segmentation a few classes (road, sky, background) own most pixels, while the ones
that matter (pedestrians, poles, a lesion) own a sliver. Under plain cross-entropy each easy
pixel costs little, but there are so many of them that together they drown out the few hard ones. **Focal-style losses** change *how much each pixel
counts*; this app shows exactly how, on the same torch code you can drop into your own training
loop (`pip install -e .`, then `import segloss`).
"""
)

EXPLORE = {"pages/1_Loss_curves.py": "Loss against p_t, gammas overlaid, any loss.",
           "pages/2_Gradients.py": "Where each loss pushes: |dL/dz| over p_t and a parameter.",
           "pages/3_Live_training.py": "A tiny U-Net learning under your loss, pixel by pixel.",
           "pages/4_Upload.py": "Your image and mask as loss and gradient heatmaps.",
           "pages/5_Compare.py": "Per-class results of every loss on the same data.",
           "pages/6_Conventions.py": "Why libraries' focal and Dice losses disagree."}
pages = [page for page in available_pages() if page[0] != "app.py"]
if pages:
    st.subheader("Explore")
    per_row = 2  # two cards a row: whole labels down to a 1024 px window (three cut "Library conventions")
    for start in range(0, len(pages), per_row):
        for column, (path, label, icon) in zip(st.columns(per_row), pages[start:start + per_row]):
            with column.container(border=True):
                st.page_link(path, label=label, icon=icon)
                st.caption(EXPLORE.get(path, ""))

st.subheader("The losses")
st.caption(
    "Notation: pixel i, softmax probabilities p, true class y, p_t = p_{i,y_i}; V = non-ignored pixels."
)
GROUPS = {True: ("Pixel-wise losses", "Each pixel has its own loss: the per-pixel maps show it."),
          False: ("Region losses", "They score whole regions (a class's pixels over the image or batch): no loss "
                  "per pixel, so the app shows their gradient map, where each pixel is pushed. Their curves are for "
                  "an image of one class, every pixel at p_t.")}
for pixelwise, (heading, note) in GROUPS.items():
    st.markdown(f"#### {heading}")
    st.caption(note)
    for spec in (spec for spec in segloss.LOSSES.values() if spec.pixelwise == pixelwise):
        with st.container(border=True):
            loss_caption(spec)
            params = ", ".join(f"{p.name} = {p.default!r}" for p in spec.params) or "none"
            st.caption(f"Registry name `{spec.name}`; parameters (defaults): {params}.")
