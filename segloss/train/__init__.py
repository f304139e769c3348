"""Training a tiny segmentation model on sample scenes, and comparing losses with it.

Scenes (:mod:`~segloss.train.drawing`, :mod:`~segloss.train.data`, :mod:`~segloss.train.samples`),
the model (:mod:`~segloss.train.model`), the :class:`~segloss.train.trainer.Trainer` with its
background loop and history, validation views and metrics, fitting a model to one image,
checkpoints and their export, and the loss comparison behind ``python -m segloss compare``.
"""
