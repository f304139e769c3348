"""Streamlit-only helpers shared by the app's pages (layout, sidebar, widgets from the registry).

Computation never lives here: it is in :mod:`segloss`, tested without Streamlit.
"""
