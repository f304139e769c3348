"""How a pixel-wise loss runs: one formula per loss, several backends (torch, numpy, triton only).

- :mod:`~segloss.kernels.cpu`: the eager path, block by block with torch ops (bounded temporaries).
- :mod:`~segloss.kernels.compiled`: the same formulas traced by ``torch.compile`` (opt-in,
  :func:`segloss.use_compiled_kernels`).
- :mod:`~segloss.kernels.cuda`: Triton kernels (:mod:`~segloss.kernels.triton_pixelwise`), the
  default on CUDA tensors; under ``TRITON_INTERPRET=1`` they also run on CPU tensors (tests).

Nothing here imports :mod:`segloss.losses`: validation and reductions happen there, the kernels
take checked tensors.
"""
