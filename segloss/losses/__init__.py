"""The loss core: what a training loop imports (torch and numpy only).

- :mod:`~segloss.losses.functional`: the public loss functions (``from segloss import functional as SF``);
  recall loss (:mod:`~segloss.losses.recall`), OHEM (:mod:`~segloss.losses.ohem`) and the boundary loss
  (:mod:`~segloss.losses.boundary`) live in their own modules and are re-exported there.
- :mod:`~segloss.losses.modules`: their ``nn.Module`` forms (also ``segloss.FocalLoss`` etc.); the region
  losses' (:mod:`~segloss.losses.region_modules`) and the sums' (:mod:`~segloss.losses.sum_modules`) are
  re-exported there, their shared base in ``_module_base``.
- :mod:`~segloss.losses.region`: soft Dice, Jaccard, Tversky, Focal Tversky, Lovász-Softmax.
- :mod:`~segloss.losses.registry`: ``LOSSES`` and ``create_loss``, from which every page builds its widgets.
- :mod:`~segloss.losses.weights`: class-weight schemes (inverse, median frequency, effective number).
- :mod:`~segloss.losses.reference`: plain autograd implementations, the oracle the fast paths are tested against.
- ``_checks`` (argument validation with messages naming shapes and values), ``_reduction``.

How a pixel-wise loss runs (CPU blocks, ``torch.compile``) lives in :mod:`segloss.kernels`.
"""
