"""How a loss runs: one formula per loss, several backends (torch, numpy, triton only).

- :mod:`~segloss.kernels.cpu`: the eager path, block by block with torch ops (bounded temporaries).
- :mod:`~segloss.kernels.compiled`: the same formulas traced by ``torch.compile`` (opt-in,
  :func:`segloss.use_compiled_kernels`).
- :mod:`~segloss.kernels.cuda`: Triton kernels (:mod:`~segloss.kernels.triton_pixelwise`), the
  default on CUDA tensors; under ``TRITON_INTERPRET=1`` they also run on CPU tensors (tests).
  :mod:`~segloss.kernels.cuda_region` (kernels: :mod:`~segloss.kernels.triton_region`): the region
  losses' sums there; :mod:`~segloss.kernels.device_checks`: their bad-input flags, read in one
  host-device synchronisation per call.
- :mod:`~segloss.kernels.region_sums`: the region losses' per-class sums and their gradient,
  blockwise (the CPU twin of the Triton region kernels).
- :mod:`~segloss.kernels.lovasz`: Lovász-Softmax as one batched sort with its gradient kept in
  pixel order (any device).

Nothing here imports :mod:`segloss.losses`: validation and reductions happen there, the kernels
take checked tensors.
"""
