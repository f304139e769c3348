"""The boundary loss's distance-weighted softmax on CUDA: one Triton pass forward, one backward.

``v_i = sum_c p_ic phi'_ic`` per pixel (kernels and formulas: :mod:`segloss.kernels.triton_boundary`;
the CPU twin: ``segloss.losses.boundary._DistanceWeightedSoftmax``, blockwise torch ops). Forward reads
the logits and the maps once and writes the map ``(N, *S)`` (``reduction="none"``) or per-program
partial sums; its flags (bad labels, non-finite logits, non-finite terms from given maps) are read
with the call's one synchronisation. Backward reads them again and writes ``dL/dz`` once, times the
upstream: nothing of the logits' size is kept in between but the maps, which the caller holds anyway.
"""

from __future__ import annotations

import torch

from segloss.kernels import cuda, device_checks
from segloss.kernels.cpu import gradient_buffer
from segloss.kernels.cuda import _Launch, _pixels_view, _strides, on_the_tensors_device
from segloss.kernels.region_sums import autograd_backward

try:  # triton ships with CUDA builds of torch; CPU-only installs may lack it (cuda.handles is then False)
    from segloss.kernels import triton_boundary as _tb
except ImportError:  # pragma: no cover - depends on the install
    _tb = None


def _maps_view(launch: _Launch, maps: torch.Tensor) -> torch.Tensor:
    """The maps' ``(N, C, P)`` view as the kernels see the logits (``(1, C, N)`` for ``(N, C)`` logits)."""
    view = _pixels_view(maps, launch.n, launch.c)
    return view.permute(2, 1, 0) if launch.single_pixels else view


class DistanceWeightedSoftmaxTriton(torch.autograd.Function):
    """The boundary loss, float32: ``scale v`` ``(N, *S)`` (0 at ignored pixels) with
    ``reduction="none"``, else its sum, or that over the valid pixels (``"mean"``; 0 with none).

    Args (of ``apply``): logits ``(N, C, *S)`` (float32, bfloat16 or float16, any layout); maps
    ``(N, C, *S)`` (any real dtype, moved to the logits' device); target ``(N, *S)``;
    ``ignore_index``; ``first`` (1: class 0 not scored); ``scale`` (a Python float: the loss's
    ``1 / |K|``, applied in the kernels); ``reduction``; ``check_maps`` (count non-finite terms:
    maps the caller was given); ``plain`` (``plain(z)`` the same loss by torch ops: a second-order
    backward). With ``"mean"``/``"sum"`` no map is written: per-program partial sums (summed by torch).
    """

    @staticmethod
    @on_the_tensors_device
    def forward(ctx, logits, maps, target, ignore_index, first, scale, reduction, check_maps, plain):
        launch = _Launch(logits, target)
        maps = maps.to(device=logits.device)
        write_map = reduction == "none"
        out = torch.empty(launch.total if write_map else 1, dtype=torch.float32, device=logits.device)
        part = torch.zeros(launch.programs, 2, dtype=torch.float32, device=logits.device)
        flags = torch.zeros(launch.programs, 3, dtype=torch.int32, device=logits.device)
        if launch.total:
            phi = _maps_view(launch, maps)
            _tb.boundary_forward_kernel[(launch.programs,)](
                launch.flat, launch.labels, phi, out, part, flags, *launch.common(), *_strides(phi), ignore_index,
                launch.programs, scale, FIRST=first, BLOCK_C=launch.block_c, BLOCK_P=launch.block_p,
                INDEX_64=launch.index_64_with(phi), NUM_STEPS=launch.steps, WRITE_MAP=write_map,
                num_warps=launch.num_warps)
        extra = ((flags[:, 2].sum(), device_checks.NON_FINITE_MAPS),) if check_maps else ()
        device_checks.raise_bad_input(flags[:, :2], logits, target, ignore_index, extra=extra)
        factor = cuda._mean_factor(reduction, part[:, 1])
        ctx.save_for_backward(logits, maps, target, factor)
        ctx.ignore_index, ctx.first, ctx.scale, ctx.reduction, ctx.plain = ignore_index, first, scale, reduction, plain
        return out.view(target.shape) if write_map else part[:, 0].sum() * factor

    @staticmethod
    @on_the_tensors_device
    def backward(ctx, grad_out):
        logits, maps, target, factor = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return (None,) * 9
        if torch.is_grad_enabled():  # create_graph=True: the same gradient, as a graph (plain torch ops)
            return autograd_backward(logits, grad_out, ctx.plain) + (None,) * 8
        launch = _Launch(logits, target)
        grad, grad_view = gradient_buffer(logits)
        grad_view = launch.grad_view(grad_view)
        if launch.total:
            phi = _maps_view(launch, maps)
            _tb.boundary_backward_kernel[(launch.tiles,)](
                launch.flat, launch.labels, phi, cuda._upstream(grad_out, ctx.reduction, factor), grad_view,
                *launch.common(), *_strides(phi), *_strides(grad_view), ctx.ignore_index, ctx.scale, FIRST=ctx.first,
                BLOCK_C=launch.block_c, BLOCK_P=launch.block_p,
                INDEX_64=launch.index_64_with(grad_view) or launch.index_64_with(phi), UP_MAP=ctx.reduction == "none",
                num_warps=launch.num_warps)
        else:
            grad.zero_()
        return (grad,) + (None,) * 8

