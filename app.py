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
that matter (pedestrians, poles, a lesion) own a sliver. Plain cross-entropy then spends its
effort on pixels it already gets right. **Focal-style losses** change *how much each pixel
counts*; this app shows exactly how, on the same torch code you can drop into your own training
loop (`pip install -e .`, then `import segloss`).
"""
)

pages = [page for page in available_pages() if page[0] != "app.py"]
if pages:
    st.subheader("Explore")
    columns = st.columns(len(pages))
    for column, (path, label, icon) in zip(columns, pages):
        column.page_link(path, label=label, icon=icon)

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
