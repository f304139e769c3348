"""How a pixel-wise loss runs: one formula per loss, several backends (torch, numpy, triton only).

- :mod:`~segloss.kernels.cpu`: the eager path, block by block with torch ops (bounded temporaries).
- :mod:`~segloss.kernels.compiled`: the same formulas traced by ``torch.compile`` (opt-in,
  :func:`segloss.use_compiled_kernels`).

Nothing here imports :mod:`segloss.losses`: validation and reductions happen there, the kernels
take checked tensors.
"""
