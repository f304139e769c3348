"""Your image, mask and logits: validated loading, and the maps the Upload page shows.

- :mod:`~segloss.uploads.loaders` (the public entry; byte decoding in :mod:`~segloss.uploads.decode`):
  uploads validated before use, logits read with ``allow_pickle=False``.
- :mod:`~segloss.uploads.scene`: an image and mask, uploaded or a shipped sample, ready to score.
- :mod:`~segloss.uploads.simulate`: a prediction simulated from a mask.
- :mod:`~segloss.uploads.pixel_maps`: loss and gradient maps of an image, the per-class table, display views.
- :mod:`~segloss.uploads.convention_inputs`: a sample scene, random input or your upload as the
  Conventions page's input.
"""
