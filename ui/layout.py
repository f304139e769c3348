"""The frame every page shares: page config, navigation in words, and the sidebar.

The app uses Streamlit's file-based routing (``app.py`` + ``pages/``), so a page opened by its
own URL on a fresh server runs its own script directly: that is why every page calls
:func:`page_setup` itself instead of relying on an entry script. The default navigation (which
would label the home page "app") is hidden in ``.streamlit/config.toml`` and drawn here with
``st.page_link``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import torch

from ui.url_state import keep_bound_widgets

ROOT = Path(__file__).resolve().parents[1]

# (script path relative to the app root, label, icon); pages that do not exist yet are skipped.
PAGES = (
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Loss_curves.py", "Loss curves", ":material/show_chart:"),
    ("pages/2_Gradients.py", "Gradients", ":material/gradient:"),
    ("pages/3_Live_training.py", "Live training", ":material/model_training:"),
    ("pages/4_Upload.py", "Your image", ":material/upload:"),
    ("pages/5_Compare.py", "Compare losses", ":material/leaderboard:"),
    ("pages/6_Conventions.py", "Library conventions", ":material/compare_arrows:"),
)


def available_pages() -> list[tuple[str, str, str]]:
    """The entries of :data:`PAGES` whose script exists."""
    return [page for page in PAGES if (ROOT / page[0]).exists()]


def page_setup(title: str, icon: str = ":material/insights:") -> None:
    """Configure the page and draw the shared sidebar. Call first on every page."""
    st.set_page_config(page_title=f"{title} · segloss", page_icon=icon, layout="wide")
    keep_bound_widgets()  # settings chosen on other pages survive this page's run
    with st.sidebar:
        pages = available_pages()
        if len(pages) > 1:  # Streamlit knows pages only once pages/ holds one (multipage mode)
            for path, label, page_icon in pages:
                st.page_link(path, label=label, icon=page_icon)
            st.divider()
        device = "CUDA · " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
        st.caption(f"Compute device: **{device}**")
        st.caption("segloss: class-imbalance losses for semantic segmentation.")
        # before the page's content: styled about 0.4 s after the first frame (st.html beside the columns: 2 s)
        st.markdown(layout_css(), unsafe_allow_html=True)


NARROW_PX = 720  # below this width of the page's content, side-by-side controls and charts stack
CONTROLS_PX = 300  # side by side, the controls take at least this (the longest loss title fits its box)
# The pages' controls-beside-chart layouts: name -> column spec (controls, chart) and the controls'
# least width, or None for Streamlit's own widths (Live training: its view's two charts a row need the
# room more than the longest loss title, which is cut there at 1280 px with the sidebar open). Their CSS goes out
# with every page's sidebar, before any page content (Streamlit still draws raw HTML a moment after
# the elements around it: a first load may show the unstyled columns for about 0.4 s).
SIDE_BY_SIDE = {"curves": ((1, 2), CONTROLS_PX), "gradients": ((1, 2), CONTROLS_PX), "upload": ((1, 1.3), CONTROLS_PX),
                "live": ((1.25, 3), None)}
# %(col)s: the layout's own two columns, not the columns of a widget group inside one (the Upload page's knobs)
_COLUMN = ".st-key-%(key)s [data-testid=stColumn]:not(.st-key-%(key)s [data-testid=stColumn] *)"
_LEAST_CSS = (" %(col)s:first-child {flex: 0 0 max(%(controls)dpx, calc((100%% - 4rem) * %(share).4f)); min-width: 0;}"
              " %(col)s:last-child {flex: 1 1 0%%; min-width: 0;}")
_STACKING_CSS = (".st-key-%(key)s {container-type: inline-size;}"
                 "%(least)s"
                 " @container (max-width: %(px)dpx) {"
                 " .st-key-%(key)s [data-testid=stHorizontalBlock]:not(.st-key-%(key)s [data-testid=stColumn] *)"
                 " {flex-wrap: wrap;}"
                 " %(col)s:first-child, %(col)s:last-child {flex: 1 1 100%%; min-width: 100%%;} }")


def layout_css() -> str:
    """The ``<style>`` of every :data:`SIDE_BY_SIDE` layout, and formulas that scroll within their
    card in a narrow window (at 800 px five of them ran past its edge)."""
    rules = [".katex-display {overflow-x: auto; overflow-y: hidden;}"]
    for name, ((controls, chart), least) in SIDE_BY_SIDE.items():
        key = f"{name}-layout"
        col = _COLUMN % {"key": key}
        rules.append(_STACKING_CSS % {"key": key, "px": NARROW_PX, "col": col, "least": "" if least is None else
                                      _LEAST_CSS % {"col": col, "controls": least, "share": controls / (controls + chart)}})
    return "<style>" + " ".join(rules) + "</style>"


def side_by_side(name: str):
    """The two columns (controls, chart) of the layout ``name`` in :data:`SIDE_BY_SIDE`, which stack
    when the page's content is narrower than :data:`NARROW_PX` (a CSS container query: the
    sidebar's width counts, the window's alone does not). Side by side, a control column of 100 px
    at an 800 px window showed its chosen losses as bare × chips, 156 px at 1024 px with the sidebar
    open cut them to "Cross…"; side by side the controls take their share of the width but at least
    their layout's least width (:data:`CONTROLS_PX`; Live training: Streamlit's widths). The gap is Streamlit's "large" (4rem), which the CSS counts with."""
    if name not in SIDE_BY_SIDE:
        raise ValueError(f"unknown layout {name!r}; add it to SIDE_BY_SIDE: {sorted(SIDE_BY_SIDE)}")
    return st.container(key=f"{name}-layout").columns(SIDE_BY_SIDE[name][0], gap="large")
