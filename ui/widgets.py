"""Widgets built from the loss registry, so a loss added to ``segloss.losses.registry`` shows up everywhere."""

from __future__ import annotations

import streamlit as st

from segloss.explain.analysis import CONFUSING_SHARE
from segloss.losses.registry import LossSpec
from ui.url_state import PageState

#: How the synthetic pixel's remaining 1 - p_t is spread (segloss.explain.analysis.SPREADS), in the
#: same words on every page
SPREAD_LABELS = {"even": "evenly to the false classes", "confusing": f"{CONFUSING_SHARE:.0%} to one confusing class"}


def loss_param_widgets(spec: LossSpec, key: str, *, skip: tuple[str, ...] = (), container=st,
                       url: PageState | None = None, static: bool = True) -> dict:
    """One widget per parameter of ``spec`` (slider, selectbox or multiselect), keyed by ``key``.

    Args:
        spec: the registry entry.
        key: prefix for widget keys, unique per place on the page.
        skip: parameter names not to offer (e.g. one the page sweeps or overlays).
        container: where to draw (``st``, ``st.sidebar``, a column...).
        url: the page's :class:`~ui.url_state.PageState`: each parameter then lives in the query
            string too, as ``<loss>.<parameter>`` (e.g. ``dual_focal.gamma=2``).
        static: the page shows the loss at one moment, so parameters that only change it between
            epochs (``schedule_only``) are not offered; the live trainer passes False.

    Returns:
        ``{name: value}`` for the parameters drawn.
    """
    values = {}
    for param in spec.params:
        if param.name in skip or (static and param.schedule_only):
            continue
        widget_key = f"{key}:{spec.name}:{param.name}"
        if url is not None:
            kind = {"float": "float", "choice": "choice"}.get(param.kind, "multi")
            low, high = param.slider_range if param.kind == "float" else (None, None)
            url.bind(f"{spec.name}.{param.name}", param.default if kind != "multi" else list(param.default), kind,
                     choices=param.choices or (), low=low, high=high, key=widget_key)
            values[param.name] = _bound_widget(container, param, widget_key)
            continue
        if param.kind == "float":
            low, high = param.slider_range
            values[param.name] = container.slider(
                param.label, min_value=float(low), max_value=float(high), value=float(param.default),
                step=float(param.step), help=param.help, key=widget_key, format="%.4g",
            )
        elif param.kind == "choice":
            values[param.name] = container.selectbox(
                param.label, param.choices, index=param.choices.index(param.default), help=param.help, key=widget_key,
            )
        else:
            values[param.name] = tuple(container.multiselect(
                param.label, param.choices, default=list(param.default), help=param.help, key=widget_key, wrap=True,
            ))
    return values


def _bound_widget(container, param, widget_key: str):
    """A parameter's widget whose value is already in session state (no default argument)."""
    if param.kind == "float":
        low, high = param.slider_range
        return container.slider(param.label, min_value=float(low), max_value=float(high), step=float(param.step),
                                help=param.help, key=widget_key, format="%.4g")
    if param.kind == "choice":
        return container.selectbox(param.label, param.choices, help=param.help, key=widget_key)
    return tuple(container.multiselect(param.label, param.choices, help=param.help, key=widget_key, wrap=True))


def loss_caption(spec: LossSpec) -> None:
    """The loss's formula and citation, as shown under every chart that uses it."""
    st.markdown(f"**{spec.title}**: {spec.summary}")
    st.latex(spec.formula)
    st.caption(f"Source: [{spec.citation}]({spec.link})")
