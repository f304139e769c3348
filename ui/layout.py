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


NARROW_PX = 720  # below this width of the page's content, side-by-side controls and charts stack
CONTROLS_PX = 300  # side by side, the controls take at least this (the longest loss title fits its box)
# %(col)s: the layout's own two columns, not the columns of a widget group inside one (the Upload page's knobs)
_COLUMN = ".st-key-%(key)s [data-testid=stColumn]:not(.st-key-%(key)s [data-testid=stColumn] *)"
_STACKING_CSS = ("<style>.st-key-%(key)s {container-type: inline-size;}"
                 " %(col)s:first-child {flex: 0 0 max(%(controls)dpx, calc((100%% - 4rem) * %(share).4f)); min-width: 0;}"
                 " %(col)s:last-child {flex: 1 1 0%%; min-width: 0;}"
                 " @container (max-width: %(px)dpx) {"
                 " .st-key-%(key)s [data-testid=stHorizontalBlock]:not(.st-key-%(key)s [data-testid=stColumn] *)"
                 " {flex-wrap: wrap;}"
                 " %(col)s:first-child, %(col)s:last-child {flex: 1 1 100%%; min-width: 100%%;} }</style>")


def side_by_side(spec: tuple[float, float] | list[float], key: str):
    """Two ``st.columns(spec)`` (controls, chart) that stack when the page's content is narrower
    than :data:`NARROW_PX` (a CSS container query: the sidebar's width counts, the window's alone
    does not). Side by side, a control column of 100 px at an 800 px window showed its chosen
    losses as bare × chips, 156 px at 1024 px with the sidebar open cut them to "Cross…"; side by
    side the controls take their share of the width but at least :data:`CONTROLS_PX`.
    ``key`` names the container the CSS reaches (unique on the page). The gap is Streamlit's
    "large" (4rem), which the CSS counts with."""
    if len(spec) != 2:
        raise ValueError(f"side_by_side lays out two columns (controls, chart), got spec {spec!r}")
    box = st.container(key=key)
    box.html(_STACKING_CSS % {"key": key, "px": NARROW_PX, "controls": CONTROLS_PX,
                              "share": spec[0] / (spec[0] + spec[1]), "col": _COLUMN % {"key": key}})
    return box.columns(spec, gap="large")
