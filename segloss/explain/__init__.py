"""What the teaching pages show, computed by the loss core (torch and numpy; no plotting).

- :mod:`~segloss.explain.analysis`: loss curves over ``p_t``, gradient surfaces, per-pixel gradient
  maps (``segloss.analysis`` after ``import segloss``).
- :mod:`~segloss.explain.conventions`, :mod:`~segloss.explain.dice_conventions`: other libraries'
  focal, Dual Focal and soft Dice losses reproduced; :mod:`~segloss.explain.convention_table` puts
  them side by side with the factors that convert them.
"""
