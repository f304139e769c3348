"""The CUDA backend of the pixel-wise losses: Triton kernels behind two autograd functions.

The default for CUDA tensors (float32, bfloat16, float16) when triton is importable; float64
logits keep the eager path (:mod:`segloss.kernels.cpu`, device-agnostic). Per call:

- forward: one kernel reads each logit once and writes the loss map (``"none"``) or per-program
  partial sums; recall loss's argmax counts come from the same pass (its weights multiply
  per-class loss sums afterwards). One host-device synchronisation reads the flags back (labels
  outside ``[0, C)``, non-finite logits) so that bad input raises ``ValueError``.
- the gradient, in the logits' dtype and layout (channels_last stays channels_last), is either
  written by that same forward kernel (CE, weighted CE, focal, Dual Focal with ``"mean"``/``"sum"``,
  float32 and bfloat16: ``GRADIENT_IN_FORWARD``; the "mean" denominator comes first from a pass over the
  labels alone, and backward only multiplies by the upstream, on the device, skipped when it is
  1), or recomputed by a backward kernel that reads the logits again and writes ``dL/dz`` once,
  times the upstream (nothing of the logits' size kept in between). Extra memory is the gradient
  itself either way (written in forward, it lives from forward to backward).

Under ``TRITON_INTERPRET=1`` the same kernels run on CPU tensors (slowly): that is how the tests
check them without a GPU (:func:`run_on_cpu_for_tests`).
"""

from __future__ import annotations

import functools
import math

import torch

from segloss.kernels.cpu import gradient_buffer, refuse_double_backward
from segloss.kernels import device_checks

try:  # triton ships with CUDA builds of torch; CPU-only installs may lack it
    from segloss.kernels import triton_pixelwise as _tk
except ImportError:  # pragma: no cover - depends on the install
    _tk = None

TILE_ELEMENTS = 2048  # logits per tile: BLOCK_C * BLOCK_P
MAX_BLOCK_P = 512  # pixels per tile at most: per-pixel values (labels, offsets) take registers too
NUM_WARPS = 8  # 8 logits of a full tile per thread
MAX_PROGRAMS = 1024  # forward programs (each loops over tiles); bounds the partial-sum buffers
REGION_PROGRAMS_PER_IMAGE = 64  # forward programs per image of the region sums (:mod:`segloss.kernels.cuda_region`)
_CPU_FOR_TESTS = False
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
# CE, weighted CE, focal and Dual Focal with "mean"/"sum" write dL/dz in the forward pass itself (the logits
# read once; backward only scales it, and not at all for a plain loss.backward()); False: recompute
# it in backward from a second read of the logits. float16 always recomputes: an unscaled "mean"
# gradient of a large batch (~1e-7 a logit) is below float16's normal range, and AMP's loss scale
# only arrives in backward. The price: a loss computed with grad mode on but never backpropagated
# still writes its gradient (kept with the loss tensor), and bfloat16 with an upstream other than
# 1 is rounded twice. benchmarks/bench_gpu.py --sweep times both ways.
GRADIENT_IN_FORWARD = True


def on_the_tensors_device(method):
    """Run an autograd Function's ``forward``/``backward`` with the CUDA device of its first tensor
    argument current: Triton launches on the current device, and logits on ``cuda:1`` while
    ``cuda:0`` is current would be read from the wrong GPU (an illegal access)."""
    @functools.wraps(method)
    def guarded(ctx, *args):
        first = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if first is None or not first.is_cuda:
            return method(ctx, *args)
        with torch.cuda.device(first.device):
            return method(ctx, *args)
    guarded.device_guarded = True
    return guarded


def available() -> bool:
    """True if the Triton kernels can be used (triton imports)."""
    return _tk is not None


def run_on_cpu_for_tests(enabled: bool = True) -> None:
    """Route CPU tensors through the Triton kernels too (needs ``TRITON_INTERPRET=1``; tests only)."""
    global _CPU_FOR_TESTS
    _CPU_FOR_TESTS = bool(enabled)


def handles(logits: torch.Tensor) -> bool:
    """Whether a loss on ``logits`` runs here: CUDA (or the interpreter in tests), a kernel dtype."""
    if _tk is None or logits.dtype not in KERNEL_DTYPES or torch.compiler.is_compiling():
        return False  # while torch.compile traces, the losses' plain formulas go into the graph instead
    return logits.is_cuda or (_CPU_FOR_TESTS and logits.device.type == "cpu")


def _blocks(num_classes: int) -> tuple[int, int]:
    """``(BLOCK_C, BLOCK_P)``: all classes (the next power of two) by as many pixels as a tile holds.

    ``TILE_ELEMENTS``, ``MAX_BLOCK_P`` and ``NUM_WARPS`` were chosen by compiling every kernel for
    sm_90 without a GPU (``benchmarks/kernel_resources.py``, C = 2 to 1024, float32 and bfloat16):
    4096-logit tiles spilled registers in some variants with 4 warps (Dual Focal, C = 2 with
    2048-pixel tiles, channels_last) and in one with 8; 2048 with 8 warps spills in none
    (``tests/test_triton_compile.py``); Dual Focal writing its gradient takes the most registers,
    236 a thread (one 8-warp block per SM), the focal family at most 126. Their speed is
    not measured yet: ``benchmarks/bench_gpu.py --sweep`` times the alternatives on a GPU.
    """
    block_c = max(2, 1 << (num_classes - 1).bit_length())
    return block_c, max(1, min(MAX_BLOCK_P, TILE_ELEMENTS // block_c))


def _pixels_view(tensor: torch.Tensor, n: int, c: int | None) -> torch.Tensor:
    """``(N, C, P)`` (or ``(N, P)``) view of ``tensor`` without a copy when its strides allow."""
    pixels = math.prod(tensor.shape[1 if c is None else 2:])
    shape = (n, pixels) if c is None else (n, c, pixels)
    try:
        return tensor.view(shape)
    except RuntimeError:  # spatial dims that cannot be merged (e.g. a transposed H and W): one copy
        return tensor.reshape(shape)


def _strides(view: torch.Tensor) -> tuple[int, ...]:
    return tuple(view.stride()) if view.numel() else (0,) * view.dim()


def _max_offset(view: torch.Tensor) -> int:
    """The largest element offset a view reaches (0 when empty)."""
    if not view.numel():
        return 0
    return sum((size - 1) * stride for size, stride in zip(view.shape, view.stride()))


INT32_LIMIT = 2**31 - 1


class _Launch:
    """Shapes, views and block sizes of one call, shared by forward and backward.

    ``(N, C)`` logits (one pixel per image) are seen as one image of ``N`` pixels, so that a tile
    holds many of them (``per_image``: keep images apart, for the region sums). Tiles are
    numbered image by image, ``tiles_per_image`` each; forward programs walk ``steps`` tiles.
    """

    def __init__(self, logits: torch.Tensor, target: torch.Tensor, per_image: bool = False) -> None:
        self.n, self.c = logits.shape[:2]
        self.flat = _pixels_view(logits, self.n, self.c)
        self.labels = _pixels_view(target, self.n, None)
        self.single_pixels = self.flat.shape[2] == 1 and not per_image
        if self.single_pixels:
            self.flat = self.flat.permute(2, 1, 0)  # (1, C, N)
            self.labels = self.labels.t()  # (1, N)
        self.images, self.pixels = self.labels.shape
        self.total = self.images * self.pixels
        self.block_c, block_p = _blocks(self.c)
        self.block_p = min(block_p, max(1, 1 << (self.pixels - 1).bit_length()))
        self.num_warps = NUM_WARPS
        self.tiles_per_image = -(-self.pixels // self.block_p)
        self.tiles = self.images * self.tiles_per_image
        # tiles per forward program: a power of two (a compile-time loop bound, few variants)
        self.steps = 1 << max(0, (-(-self.tiles // MAX_PROGRAMS) - 1).bit_length())
        self.programs = max(1, -(-self.tiles // self.steps))
        self.index_64 = max(_max_offset(self.flat), _max_offset(self.labels), self.total + self.block_p,
                            self.programs * self.steps * self.block_p) > INT32_LIMIT  # past-the-end tiles too

    def grad_view(self, grad_view: torch.Tensor) -> torch.Tensor:
        """The gradient buffer's ``(N, C, P)`` view as the kernels see the logits."""
        return grad_view.permute(2, 1, 0) if self.single_pixels else grad_view

    def index_64_with(self, grad_view: torch.Tensor) -> bool:
        return self.index_64 or _max_offset(grad_view) > INT32_LIMIT

    def common(self):
        s_n, s_c, s_p = _strides(self.flat)
        y_n, y_p = _strides(self.labels)
        return (self.images, self.pixels, self.c, s_n, s_c, s_p, y_n, y_p, self.tiles_per_image)

    def buffers(self, device, per_class: bool, write_map: bool):
        """Per-program partial sums: loss ``(G,)`` (``(G, C)`` per class), denominator ``(G,)``,
        class counts ``(G, 2, C)`` (per class only, else a placeholder), flags ``(G, 2)``; the map."""
        g, c = self.programs, self.c
        new = torch.empty if self.total else torch.zeros  # no kernel writes them for an empty batch
        part_loss = new((g, c) if per_class else (g,), dtype=torch.float32, device=device)
        part_den = new(g, dtype=torch.float32, device=device)
        part_count = new((g, 2, c) if per_class else (1,), dtype=torch.int32, device=device)
        flags = new(g, 2, dtype=torch.int32, device=device)
        loss_map = torch.empty(self.total if write_map else 1, dtype=torch.float32, device=device)
        return part_loss, part_den, part_count, flags, loss_map


def _mean_factor(reduction: str, part_den: torch.Tensor) -> torch.Tensor:
    """1 / (valid pixels, or the sum of their weights) for ``"mean"`` (0 when that is 0), else 1;
    ``part_den`` the kernels' per-program partial denominators. A device scalar, float32."""
    if reduction != "mean":
        return torch.ones((), dtype=torch.float32, device=part_den.device)
    denominator = part_den.sum(dtype=torch.float64)
    return torch.where(denominator > 0, 1.0 / denominator.clamp_min(1e-30), 0.0).to(torch.float32)


def _upstream(grad_out: torch.Tensor, reduction: str, factor: torch.Tensor) -> torch.Tensor:
    """A device scalar (upstream x mean factor) or the per-pixel upstream map, float32 and flat."""
    if reduction == "none":
        return grad_out.to(torch.float32).contiguous().view(-1)
    return (grad_out.to(torch.float32) * factor).reshape(1)


def _smoothing_weights(eps: float, weight, num_classes: int, device) -> torch.Tensor | None:
    """Label smoothing's class weights, float32 ``(C,)`` (ones without class weights; the kernels
    sum them themselves: no host read), or None without smoothing."""
    if not eps:
        return None
    return torch.ones(num_classes, dtype=torch.float32, device=device) if weight is None else weight.float().contiguous()


class FocalFamilyTriton(torch.autograd.Function):
    """CE, weighted CE, focal and recall loss: ``-s (1 - p_t)^gamma log p_t`` per pixel.

    Args (of ``apply``): logits ``(N, C, *S)``; target ``(N, *S)``; ``ignore_index``; ``gamma``
    (float); ``class_scale`` ``(C,)`` float32 or None (alpha x weight); ``weight`` ``(C,)`` or
    None (the "mean" denominator's weights); ``scale_from_counts`` or None (recall loss: called
    with the ``(C,)`` valid-pixel and argmax-hit counts, returns the class scale); ``reduction``;
    ``smoothing`` 0 or label smoothing's ``eps``, folded into the same passes (not with recall);
    ``wants_grad``: grad mode was on at the call (inside ``forward`` it is off, and
    ``needs_input_grad`` does not tell): with logits that require grad, a backward can follow;
    ``param_checks``: None, or ``(values (k,), bounds ((low, high),) * k, names)`` of parameters
    given as device tensors, range-checked with the call's one synchronisation (``gamma`` may be
    such a 0-dim tensor: the kernels read it on the device, never the host).
    Returns the loss (scalar, or the ``(N, *S)`` float32 map).

    Two ways to the gradient (see ``GRADIENT_IN_FORWARD``): written by the forward kernel, the
    "mean" denominator first read from the labels alone, so that backward only multiplies by the
    upstream (in place, skipped on the device when it is 1); or recomputed by a backward kernel
    (``reduction="none"``, recall loss, float16, and a second backward after ``retain_graph``).
    """

    @staticmethod
    @on_the_tensors_device
    def forward(ctx, logits, target, ignore_index, gamma, class_scale, weight, scale_from_counts, reduction,
                smoothing=0.0, wants_grad=False, param_checks=None):
        launch = _Launch(logits, target)
        gamma_vec = gamma.detach().to(device=logits.device, dtype=torch.float32).reshape(1).clone() \
            if isinstance(gamma, torch.Tensor) else None  # a copy: a schedule may step the caller's before backward
        gamma = 1.0 if gamma_vec is not None else float(gamma)  # not 0: GAMMA_ZERO is known only for a number
        device = logits.device
        per_class = scale_from_counts is not None
        write_map = reduction == "none"
        part_loss, part_den, part_count, flags, loss_map = launch.buffers(device, per_class, write_map)
        scale = class_scale.float().contiguous() if class_scale is not None and not per_class else None  # read with stride 1
        den_weight = weight.float().contiguous() if weight is not None else None
        smooth = _smoothing_weights(smoothing, weight, launch.c, device)
        wants_logits_grad = wants_grad and logits.requires_grad and not per_class
        grad, grad_view, gscale = _forward_gradient(launch, logits, wants_logits_grad, reduction, den_weight,
                                                    ignore_index)
        in_forward = grad is not None
        if launch.total:
            placeholder = part_loss
            _tk.focal_forward_kernel[(launch.programs,)](
                launch.flat, launch.labels, scale if scale is not None else placeholder,
                den_weight if den_weight is not None else placeholder, loss_map, part_loss, part_den, part_count,
                flags, grad_view if in_forward else placeholder, gscale if in_forward else placeholder,
                *launch.common(),
                *(_strides(grad_view) if in_forward else (0, 0, 0)), ignore_index, gamma,
                gamma_vec if gamma_vec is not None else placeholder, launch.programs,
                smooth if smooth is not None else placeholder, float(smoothing),
                BLOCK_C=launch.block_c, BLOCK_P=launch.block_p,
                INDEX_64=launch.index_64_with(grad_view) if in_forward else launch.index_64,
                NUM_STEPS=launch.steps, num_warps=launch.num_warps,
                HAS_SCALE=scale is not None, HAS_DEN_WEIGHT=den_weight is not None, WRITE_MAP=write_map,
                PER_CLASS=per_class, GAMMA_ZERO=gamma == 0, GAMMA_FROM_PTR=gamma_vec is not None,
                SMOOTH=smooth is not None, WRITE_GRAD=in_forward)
        if launch.total or param_checks is not None:  # an empty batch has nothing to check but device parameters
            device_checks.raise_bad_input(flags, logits, target, ignore_index, *(param_checks or ()))
        if per_class:
            counts = part_count.sum(dim=0, dtype=torch.int64)
            # a copy: RecallLoss(momentum) hands its running buffer, which its next call (an auxiliary
            # head's, before this backward) updates in place
            scale = scale_from_counts(counts[0], counts[1]).to(device=device, dtype=torch.float32).clone()
            total = (part_loss.sum(dim=0) * scale).sum()
        else:
            total = part_loss.sum()
        factor = _mean_factor(reduction, part_den)
        if write_map:
            value = loss_map.view(target.shape)
            if per_class:
                safe = torch.where(target != ignore_index, target, 0).long()
                value = value * scale[safe]
        else:
            value = total * factor
        ctx.save_for_backward(logits, target, scale, factor, smooth, gamma_vec)
        ctx.ignore_index, ctx.gamma, ctx.reduction = ignore_index, gamma, reduction
        ctx.smoothing = float(smoothing) if smooth is not None else None
        ctx.forward_grad = grad  # used (and dropped) by the first backward
        return value

    @staticmethod
    @on_the_tensors_device
    def backward(ctx, grad_out):
        refuse_double_backward()
        logits, target, scale, factor, smooth_w, gamma_vec = ctx.saved_tensors
        inputs = len(ctx.needs_input_grad)
        if not ctx.needs_input_grad[0]:
            return (None,) * inputs
        grad = _take_forward_gradient(ctx, grad_out)
        if grad is not None:
            return (grad,) + (None,) * (inputs - 1)
        launch = _Launch(logits, target)
        grad, grad_view = gradient_buffer(logits)
        grad_view = launch.grad_view(grad_view)
        if launch.total:
            up = _upstream(grad_out, ctx.reduction, factor)
            _tk.focal_backward_kernel[(launch.tiles,)](
                launch.flat, launch.labels, scale if scale is not None else up, up, grad_view, *launch.common(),
                *_strides(grad_view), ctx.ignore_index, ctx.gamma, gamma_vec if gamma_vec is not None else up,
                smooth_w if smooth_w is not None else up, ctx.smoothing or 0.0,
                BLOCK_C=launch.block_c, BLOCK_P=launch.block_p,
                INDEX_64=launch.index_64_with(grad_view), num_warps=launch.num_warps,
                HAS_SCALE=scale is not None, UP_MAP=ctx.reduction == "none", GAMMA_ZERO=ctx.gamma == 0,
                GAMMA_FROM_PTR=gamma_vec is not None, SMOOTH=ctx.smoothing is not None)
        return (grad,) + (None,) * (inputs - 1)


def _forward_gradient(launch: _Launch, logits: torch.Tensor, wants_grad: bool, reduction: str, den_weight,
                      ignore_index: int):
    """``(grad, its kernel view, gscale)`` when the forward kernel is to write the gradient
    (``GRADIENT_IN_FORWARD``, a backward to come, ``"mean"``/``"sum"``, not float16), with
    ``gscale`` the device scalar it is scaled by (the "mean" factor, from the labels alone);
    ``(None, None, None)`` otherwise."""
    if not (GRADIENT_IN_FORWARD and wants_grad and reduction != "none" and logits.dtype != torch.float16
            and launch.total):
        return None, None, None
    grad, grad_view = gradient_buffer(logits)
    if reduction == "sum":
        return grad, launch.grad_view(grad_view), torch.ones(1, dtype=torch.float32, device=logits.device)
    part_den = torch.empty(launch.programs, dtype=torch.float32, device=logits.device)
    images, pixels, c, _, _, _, y_n, y_p, tiles_per_image = launch.common()
    _tk.denominator_kernel[(launch.programs,)](
        launch.labels, den_weight if den_weight is not None else part_den, part_den, images, pixels, c, y_n, y_p,
        tiles_per_image, ignore_index, launch.programs, BLOCK_P=launch.block_p, INDEX_64=launch.index_64,
        NUM_STEPS=launch.steps, HAS_WEIGHT=den_weight is not None, num_warps=4)
    return grad, launch.grad_view(grad_view), _mean_factor(reduction, part_den).reshape(1)


def _take_forward_gradient(ctx, grad_out: torch.Tensor) -> torch.Tensor | None:
    """The gradient the forward kernel wrote, times the upstream (in place), handed over once:
    a second backward (``retain_graph``) finds None and recomputes."""
    grad, ctx.forward_grad = ctx.forward_grad, None
    if grad is not None:
        _scale_in_place(grad, grad_out)
    return grad


SCALE_BLOCK = 4096


def _scale_in_place(grad: torch.Tensor, grad_out: torch.Tensor) -> None:
    """``grad *= grad_out`` (a scalar upstream) on the device, nothing done where it is 1; ``grad``
    is dense (``gradient_buffer``), so its storage is ``numel`` elements in some order."""
    up = grad_out.to(torch.float32).reshape(1)
    numel = grad.numel()
    _tk.scale_gradient_kernel[(-(-numel // SCALE_BLOCK),)](grad, up, numel, BLOCK=SCALE_BLOCK, num_warps=4)


class DualFocalTriton(torch.autograd.Function):
    """Dual Focal Loss (Hossain et al. 2021) per pixel; see :func:`segloss.functional.dual_focal_loss`.

    Args (of ``apply``): logits ``(N, C, *S)``; target ``(N, *S)``; ``ignore_index``; ``weight``
    ``(C,)`` float32 or None; ``params`` ``(alpha, beta, gamma, rho)`` floats; ``reduction``;
    ``wants_grad``: grad mode was on at the call (then the logits' gradient is written in forward
    as in :class:`FocalFamilyTriton` if they require it, and the parameters' sums are formed);
    ``param_vec``: None, or the parameters as a device vector ``(4,)`` (learnable ones: the
    kernels read them on the device, never the host, and backward returns their gradient from
    per-program sums of each pixel's derivatives); then ``param_bounds`` ``((low, high),) * 4``
    are checked on the device and read back with the call's one synchronisation.
    """

    @staticmethod
    @on_the_tensors_device
    def forward(ctx, logits, target, ignore_index, weight, params, reduction, wants_grad=False, param_vec=None,
                param_bounds=None):
        launch = _Launch(logits, target)
        device = logits.device
        write_map = reduction == "none"
        part_loss, part_den, _, flags, loss_map = launch.buffers(device, False, write_map)
        from_ptr = param_vec is not None
        alpha, beta, gamma, rho = (0.0, 0.0, 0.0, 2.0) if from_ptr else (float(v) for v in params)
        log_rho_minus_1 = math.log(rho - 1.0) if rho > 1 else 0.0
        rho_one = rho == 1 and not from_ptr
        param_sums = from_ptr and param_vec.requires_grad and wants_grad
        weight = weight.float().contiguous() if weight is not None else None
        grad, grad_view, gscale = _forward_gradient(launch, logits, wants_grad and logits.requires_grad, reduction,
                                                    weight, ignore_index)
        in_forward = grad is not None
        vec = param_vec.detach().contiguous() if from_ptr else None  # float32, or float64: read as float32
        sums_here = param_sums and not write_map
        part_param = torch.zeros(launch.programs if sums_here else 1, 4, dtype=torch.float32, device=device)
        if launch.total:
            placeholder = part_loss
            _tk.dual_focal_forward_kernel[(launch.programs,)](
                launch.flat, launch.labels, weight if weight is not None else placeholder, loss_map, part_loss,
                part_den, flags, grad_view if in_forward else placeholder, gscale if in_forward else placeholder,
                vec if from_ptr else placeholder, part_param,
                *launch.common(), *(_strides(grad_view) if in_forward else (0, 0, 0)), ignore_index,
                launch.programs, alpha, beta, gamma, rho, log_rho_minus_1,
                BLOCK_C=launch.block_c, BLOCK_P=launch.block_p,
                INDEX_64=launch.index_64_with(grad_view) if in_forward else launch.index_64,
                NUM_STEPS=launch.steps, num_warps=launch.num_warps, HAS_WEIGHT=weight is not None,
                WRITE_MAP=write_map, RHO_ONE=rho_one, WRITE_GRAD=in_forward, PARAMS_FROM_PTR=from_ptr,
                PARAM_GRADS=sums_here)
        if launch.total or from_ptr:  # an empty batch has nothing to check but device parameters
            device_checks.raise_bad_input(flags, logits, target, ignore_index, vec, param_bounds)
        factor = _mean_factor(reduction, part_den)
        value = loss_map.view(target.shape) if write_map else part_loss.sum() * factor
        ctx.save_for_backward(logits, target, weight, factor, vec)
        ctx.forward_grad = grad  # used (and dropped) by the first backward
        ctx.param_sums = part_param.sum(dim=0) if sums_here else None
        ctx.ignore_index, ctx.params, ctx.reduction = ignore_index, (alpha, beta, gamma, rho), reduction
        ctx.rho_one = rho_one
        return value

    @staticmethod
    @on_the_tensors_device
    def backward(ctx, grad_out):
        refuse_double_backward()
        logits, target, weight, factor, vec = ctx.saved_tensors
        inputs = len(ctx.needs_input_grad)  # 7 without param_vec and param_bounds
        wants_logits, wants_params = ctx.needs_input_grad[0], inputs > 7 and ctx.needs_input_grad[7]
        grad = _take_forward_gradient(ctx, grad_out) if wants_logits else None
        grad_params = None
        if wants_params and ctx.reduction != "none":  # the sums from forward, times upstream and mean factor
            grad_params = grad_out.to(torch.float32) * factor * ctx.param_sums
        if (wants_logits and grad is None) or (wants_params and ctx.reduction == "none"):
            grad, grad_params_map = DualFocalTriton._recompute(ctx, grad_out, logits, target, weight, factor, vec,
                                                               wants_params and ctx.reduction == "none",
                                                               wants_logits and grad is None)
            grad_params = grad_params if grad_params_map is None else grad_params_map
        if grad_params is not None:
            grad_params = grad_params.to(vec.dtype)
        return ((grad if wants_logits else None), None, None, None, None, None, None, grad_params, None)[:inputs]

    @staticmethod
    def _recompute(ctx, grad_out, logits, target, weight, factor, vec, param_sums: bool, store_grad: bool):
        """``(dL/dz or None, dL/dparams or None)`` from a second read of the logits; without
        ``store_grad`` (only the parameters want a gradient) no gradient of the logits' size is made."""
        launch = _Launch(logits, target)
        grad = grad_view = None
        if store_grad:
            grad, grad_view = gradient_buffer(logits)
            grad_view = launch.grad_view(grad_view)
        alpha, beta, gamma, rho = ctx.params
        part_param = torch.zeros(max(launch.tiles, 1) if param_sums else 1, 4, dtype=torch.float32,
                                 device=logits.device)
        if launch.total:
            up = _upstream(grad_out, ctx.reduction, factor)
            _tk.dual_focal_backward_kernel[(launch.tiles,)](
                launch.flat, launch.labels, weight if weight is not None else up, up,
                grad_view if store_grad else up, vec if vec is not None else up, part_param, *launch.common(),
                *(_strides(grad_view) if store_grad else (0, 0, 0)), ctx.ignore_index, alpha, beta, gamma, rho,
                math.log(rho - 1.0) if rho > 1 else 0.0, BLOCK_C=launch.block_c, BLOCK_P=launch.block_p,
                INDEX_64=launch.index_64_with(grad_view) if store_grad else launch.index_64,
                num_warps=launch.num_warps, HAS_WEIGHT=weight is not None, UP_MAP=ctx.reduction == "none",
                RHO_ONE=ctx.rho_one, PARAMS_FROM_PTR=vec is not None, PARAM_GRADS=param_sums, STORE_GRAD=store_grad)
        elif store_grad:
            grad.zero_()
        return grad, (part_param.sum(dim=0) if param_sums else None)
