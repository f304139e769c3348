"""The region losses' per-class sums on CUDA: one Triton pass for the sums, one for the gradient.

``sum p y``, ``sum p`` and ``sum y`` per class (per image or over the batch) over valid pixels, with
no one-hot tensor of the logits' size (kernels: :mod:`segloss.kernels.triton_region`; the CPU twin:
:mod:`segloss.kernels.region_sums`).
"""

from __future__ import annotations

import torch

from segloss.kernels import cuda, device_checks
from segloss.kernels.cpu import REGION_DOUBLE_BACKWARD, gradient_buffer, refuse_double_backward
from segloss.kernels.cuda import _Launch, _strides, on_the_tensors_device

try:  # triton ships with CUDA builds of torch; CPU-only installs may lack it (cuda.handles is then False)
    from segloss.kernels import triton_region as _tr
except ImportError:  # pragma: no cover - depends on the install
    _tr = None

class RegionSumsTriton(torch.autograd.Function):
    """Per-class sums of the region losses, ``(N or 1, 3, C)`` float32: ``sum p y``, ``sum p``, ``sum y``.

    Args (of ``apply``): logits ``(N, C, *S)``; target ``(N, *S)``; ``ignore_index``;
    ``per_image`` (sums per image, else over the batch). Sums run over valid pixels, with no
    one-hot tensor; backward turns the sums' gradients into ``dL/dz`` in one pass.
    """

    @staticmethod
    @on_the_tensors_device
    def forward(ctx, logits, target, ignore_index, per_image):
        launch = _Launch(logits, target, per_image=per_image)
        images, c, device = launch.images, launch.c, logits.device
        steps = 1 << max(0, (-(-launch.tiles_per_image // cuda.REGION_PROGRAMS_PER_IMAGE) - 1).bit_length())
        programs = max(1, -(-launch.tiles_per_image // steps))
        part = torch.zeros(images, programs, 3, c, dtype=torch.float32, device=device)
        flags = torch.zeros(images, programs, 2, dtype=torch.int32, device=device)
        if launch.total:
            n, pixels, c, s_n, s_c, s_p, y_n, y_p, _ = launch.common()
            _tr.region_sums_kernel[(images * programs,)](
                launch.flat, launch.labels, part, flags, n, pixels, c, s_n, s_c, s_p, y_n, y_p, ignore_index,
                programs, BLOCK_C=launch.block_c, BLOCK_P=launch.block_p,
                INDEX_64=launch.index_64 or programs * steps * launch.block_p > cuda.INT32_LIMIT,  # past-the-end tiles
                NUM_STEPS=steps, num_warps=launch.num_warps)
            device_checks.raise_bad_input(flags.view(-1, 2), logits, target, ignore_index)
        sums = part.sum(dim=1)
        ctx.save_for_backward(logits, target)
        ctx.ignore_index, ctx.per_image = ignore_index, per_image
        return sums if per_image else sums.sum(dim=0, keepdim=True)

    @staticmethod
    @on_the_tensors_device
    def backward(ctx, grad_sums):
        refuse_double_backward(REGION_DOUBLE_BACKWARD)
        logits, target = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        launch = _Launch(logits, target, per_image=ctx.per_image)
        grad, grad_view = gradient_buffer(logits)
        grad_view = launch.grad_view(grad_view)
        if launch.total:
            a = grad_sums[:, 1].to(torch.float32).contiguous()
            b = grad_sums[:, 0].to(torch.float32).contiguous()
            _tr.region_backward_kernel[(launch.tiles,)](
                launch.flat, launch.labels, a, b, grad_view, *launch.common(), *_strides(grad_view),
                launch.c if ctx.per_image else 0, ctx.ignore_index, BLOCK_C=launch.block_c, BLOCK_P=launch.block_p,
                INDEX_64=launch.index_64_with(grad_view), num_warps=launch.num_warps)
        else:
            grad.zero_()
        return grad, None, None, None
