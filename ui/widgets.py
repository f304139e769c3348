"""Widgets built from the loss registry, so a loss added to ``segloss.losses.registry`` shows up everywhere."""

from __future__ import annotations

import streamlit as st

from segloss.losses.registry import LossSpec


def loss_param_widgets(spec: LossSpec, key: str, *, skip: tuple[str, ...] = (), container=st) -> dict:
    """One widget per parameter of ``spec`` (slider, selectbox or multiselect), keyed by ``key``.

    Args:
        spec: the registry entry.
        key: prefix for widget keys, unique per place on the page.
        skip: parameter names not to offer (e.g. one the page sweeps or overlays).
        container: where to draw (``st``, ``st.sidebar``, a column...).

    Returns:
        ``{name: value}`` for the parameters drawn.
    """
    values = {}
    for param in spec.params:
        if param.name in skip:
            continue
        widget_key = f"{key}:{spec.name}:{param.name}"
        if param.kind == "float":
            values[param.name] = container.slider(
                param.label, min_value=float(param.low), max_value=float(param.high), value=float(param.default),
                step=float(param.step), help=param.help, key=widget_key, format="%.4g",
            )
        elif param.kind == "choice":
            values[param.name] = container.selectbox(
                param.label, param.choices, index=param.choices.index(param.default), help=param.help, key=widget_key,
            )
        else:
            values[param.name] = tuple(container.multiselect(
                param.label, param.choices, default=list(param.default), help=param.help, key=widget_key,
            ))
    return values


def loss_caption(spec: LossSpec) -> None:
    """The loss's formula and citation, as shown under every chart that uses it."""
    st.markdown(f"**{spec.title}**: {spec.summary}")
    st.latex(spec.formula)
    st.caption(f"Source: [{spec.citation}]({spec.link})")
