"""Data in, figure out: plotly builders (:mod:`~segloss.figures.plots`, :mod:`~segloss.figures.compare`,
:mod:`~segloss.figures.live`) and PIL renderings (:mod:`~segloss.figures.render`). The only wing that imports plotly.
"""
