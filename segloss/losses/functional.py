"""Class-imbalance losses for semantic segmentation, as pure functions.

Notation (see ``LOSS_MATH.md``): pixel ``i``, logits ``z_i`` over ``C`` classes,
``p_i = softmax(z_i)``, label ``y_i``, ``p_t = p_{i, y_i}``, ``V`` the valid (non-ignored) pixels.

Shared conventions of every loss here:

- ``logits``: float ``(N, C, *spatial)`` of any float dtype; half precision is computed in
  float32 (float64 stays float64). ``target``: integer ``(N, *spatial)`` with values in
  ``[0, C)`` or ``ignore_index``.
- ``weight``: optional per-class weights ``(C,)``; pixel ``i`` is scaled by ``weight[y_i]``.
- ``reduction="none"`` returns the per-pixel map ``(N, *spatial)``, exactly 0 at ignored pixels;
  ``"sum"`` sums it; ``"mean"`` divides the sum by ``|V|``, or by ``sum_{i in V} weight[y_i]``
  when ``weight`` is given (torch's convention). A batch without valid pixels gives 0, still in
  the autograd graph with zero gradient.
- All math is written to stay finite at saturated logits (e.g. +-100): ``1 - p`` and
  ``log(1 - p)`` are formed from log-probabilities, never from a rounded ``p``.

How it runs: on CUDA tensors (float32, bfloat16, float16) every pixel-wise loss runs as Triton
kernels (:mod:`segloss.kernels.cuda`: one read of the logits for the loss, one read and one
write for the gradient). Elsewhere, CE, weighted CE, focal and recall loss go through one fused autograd function
(:mod:`segloss.kernels.cpu`) with an analytic backward that keeps nothing of the logits' size but
the gradient; Dual Focal Loss computes its closed-form gradient in the forward pass into the
one full-size buffer backward returns. Both work block by block with torch ops, or, after
:func:`segloss.use_compiled_kernels`, through ``torch.compile``'d kernels
(:mod:`segloss.kernels.compiled`: faster than torch's own cross-entropy, at a compilation cost on the
first call). On the CPU a loss parameter given as a tensor that requires a gradient (e.g. a
learnable gamma) takes the plain autograd path of :mod:`segloss.losses.reference`, which is also the
oracle the tests compare against; on CUDA the Triton kernels form those parameters' gradients too.
"""

from __future__ import annotations

import contextlib
import math

import torch

from segloss.losses import reference
from segloss.losses._checks import (MAX_EXPONENT, MAX_SCALE, ClassWeights, Number, assert_finite_in_graph,
                                    check_logits_target, check_number, check_reduction, class_vector,
                                    functorch_transform_active, index_argument, number_or_traced, scalar_or_vector,
                                    smoothing_given)
from segloss.kernels import cuda
from segloss.kernels.compiled import TracedFocalFamily, compiled_kernels_enabled
from segloss.kernels.cpu import DualFocalFused, FocalFamily
from segloss.kernels.smoothing import SmoothingTerm
from segloss.losses._reduction import reduce_map


def _needs_autograd(*params) -> bool:
    """True where only plain autograd (:mod:`segloss.losses.reference`) gives the right answer.

    That is when a hyper-parameter or class weight is a tensor that wants a gradient (the fast
    paths differentiate with respect to the logits only), or inside a ``torch.func`` transform
    (``grad``, ``vmap``, ``jacrev``...), which custom autograd functions without a functorch rule
    cannot take part in. While ``torch.compile`` traces, the CE family takes
    :class:`~segloss.kernels.compiled.TracedFocalFamily` and the rest their plain formulas
    (:func:`segloss.losses._checks.plain_torch_required`).
    """
    if any(isinstance(p, torch.Tensor) and p.requires_grad for p in params):
        return True
    return functorch_transform_active()


def _float_like(logits: torch.Tensor) -> torch.Tensor:
    """An empty tensor with the compute dtype (float32, or float64 for float64 logits) and device."""
    return torch.empty(0, dtype=torch.float64 if logits.dtype == torch.float64 else torch.float32,
                       device=logits.device)


def _fold_small_images(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C, *S)`` -> ``(1, C, N * prod(S))`` when images are small (e.g. ``(N, C)`` inputs);
    labels of any integer dtype (a uint8 mask from a PNG) become int64 indices.

    The fused functions loop over images in Python; for many tiny images (or plain ``(N, C)``
    classification-shaped inputs) that loop would dominate, so they are put side by side in one
    image (a copy, cheap at these sizes). Large images are left alone: no copy of the logits.
    """
    target = target.long()
    n, c = logits.shape[:2]
    pixels = logits[0, 0].numel() if logits.numel() else 0
    if n == 1 or pixels >= 4096:
        return logits, target
    return logits.movedim(1, 0).reshape(1, c, -1), target.reshape(1, -1)


@contextlib.contextmanager
def _errors_name_the_callers_shape(user_shape, folded_shape):
    """A ``ValueError`` raised on folded logits (:func:`_fold_small_images`) names the shape the
    caller passed, not the folded one (NaN logits of ``(2, 5, 8, 8)`` were reported as ``(1, 5, 128)``)."""
    try:
        yield
    except ValueError as err:
        folded, user = f"shape {tuple(folded_shape)}", f"shape {tuple(user_shape)}"
        if folded == user or folded not in str(err):
            raise
        raise ValueError(str(err).replace(folded, user)) from err


def _focal_family(logits, target, *, gamma: float, class_scale, weight, ignore_index: int, reduction: str,
                  scale_name: str = "alpha", scale_from_counts=None, smoothing: float = 0.0, param_checks=None):
    """Shared body of CE, focal and recall losses on the fused path (see :mod:`segloss.kernels.cpu`).

    ``class_scale`` (focal's alpha, recall weights) multiplies the loss but, unlike ``weight``,
    not the "mean" denominator: None, a number, or a ``(C,)`` vector indexed by the target.
    ``scale_from_counts(n_c, tp_c) -> (C,)`` computes it from the batch's counts instead.
    ``smoothing`` (label smoothing's eps) is folded into the same passes (see
    :func:`_folds_smoothing`). ``param_checks``: parameters given as device tensors, for the
    CUDA kernels to range-check (:class:`~segloss.kernels.cuda.FocalFamilyTriton`).
    """
    check_reduction(reduction)
    on_gpu = cuda.handles(logits)
    target = check_logits_target(logits, target, ignore_index, check_finite=False, check_labels=not on_gpu)
    like = _float_like(logits)
    num_classes = logits.shape[1]
    w = class_vector(weight, num_classes, "weight", like)
    if isinstance(class_scale, torch.Tensor) and class_scale.dim() == 0 and torch.compiler.is_compiling():
        class_scale = class_scale.to(device=logits.device, dtype=like.dtype).expand(num_classes)  # no host read
    elif isinstance(class_scale, torch.Tensor) and class_scale.dim() == 0 and param_checks is not None:
        class_scale = class_scale.detach().to(device=logits.device, dtype=like.dtype).repeat(num_classes)
    elif isinstance(class_scale, (int, float)) or (isinstance(class_scale, torch.Tensor) and class_scale.dim() == 0):
        class_scale = torch.full((num_classes,), float(class_scale), dtype=like.dtype, device=logits.device)
    elif class_scale is not None:
        class_scale = class_vector(class_scale, num_classes, scale_name, like)
    if scale_from_counts is not None and w is not None:
        inner = scale_from_counts
        scale_from_counts = lambda n_c, tp_c: inner(n_c, tp_c).to(like.dtype) * w  # noqa: E731
    elif w is not None:
        class_scale = w if class_scale is None else class_scale * w
    if torch.compiler.is_compiling():
        return _traced_focal_family(logits, target, ignore_index, gamma, class_scale, w, reduction)
    if on_gpu:
        gamma = gamma if param_checks is not None and isinstance(gamma, torch.Tensor) else float(gamma)
        return cuda.FocalFamilyTriton.apply(logits, target, ignore_index, gamma, class_scale, w, scale_from_counts,
                                            reduction, float(smoothing), torch.is_grad_enabled(), param_checks)
    shape, user_shape = target.shape, logits.shape
    logits, target = _fold_small_images(logits, target)
    folded = (float(smoothing), w) if smoothing else None
    gamma = gamma if isinstance(gamma, torch.Tensor) else float(gamma)  # a (C,) tensor: per-class exponents
    with _errors_name_the_callers_shape(user_shape, logits.shape):
        pixel_loss, counts = FocalFamily.apply(logits, target, ignore_index, gamma, class_scale, scale_from_counts,
                                               folded)
    pixel_loss = pixel_loss.reshape(shape)
    denominator = counts.sum().to(like.dtype) if w is None else (counts.to(like.dtype) * w).sum()
    return reduce_map(pixel_loss, denominator, reduction)


def _traced_focal_family(logits, target, ignore_index, gamma, class_scale, w, reduction):
    """:func:`_focal_family` while ``torch.compile`` traces: one :class:`TracedFocalFamily` over the
    whole batch (no blocks, no host read), reduced as the fused path reduces."""
    n, c = logits.shape[:2]
    pixels = math.prod(logits.shape[2:])  # explicit: N = 0 leaves -1 undetermined
    z = logits.reshape(n, c, pixels)
    labels = target.reshape(n, pixels).long()
    valid = labels != ignore_index
    safe = torch.where(valid, labels, 0)
    like = torch.float64 if logits.dtype == torch.float64 else torch.float32
    pixel_scale = torch.ones((), dtype=like, device=logits.device) if class_scale is None else class_scale.to(like)[safe]
    gamma = gamma.detach().to(torch.float64) if isinstance(gamma, torch.Tensor) else \
        torch.tensor(float(gamma), dtype=torch.float64, device=logits.device)
    pixel_loss, finite = TracedFocalFamily.apply(z, labels, ignore_index, gamma, pixel_scale.expand(n, labels.shape[1]))
    assert_finite_in_graph(finite)
    denominator = valid.sum().to(like) if w is None else torch.where(valid, w.to(like)[safe], 0.0).sum()
    return reduce_map(pixel_loss.reshape(target.shape), denominator, reduction)


def _folds_smoothing(logits: torch.Tensor, weight) -> bool:
    """Whether label smoothing goes into the fused passes (the CPU blocks or the CUDA kernels: one
    gradient buffer) rather than the separate term of :mod:`segloss.kernels.smoothing` (the
    compiled CPU kernels, weights that want a gradient)."""
    if _needs_autograd(weight) or torch.compiler.is_compiling():
        return False
    return cuda.handles(logits) or not compiled_kernels_enabled()


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Cross-entropy ``CE_i = -w_{y_i} log p_t``, optionally with label smoothing.

    Gives the same numbers as ``torch.nn.functional.cross_entropy`` with the same arguments,
    except that a batch without valid pixels gives 0 instead of NaN. With ``label_smoothing=eps``
    (Szegedy et al., CVPR 2016, arXiv:1512.00567) the target is ``(1 - eps) onehot + eps / C``:
    ``CE_i = (1 - eps) w_{y_i} (-log p_t) + (eps / C) sum_c w_c (-log p_c)``, and "mean" divides
    by the sum of ``w_{y_i}`` over valid pixels, as torch does (ignored pixels contribute to
    neither term; see :mod:`segloss.kernels.smoothing`).

    Args:
        logits: float ``(N, C, *spatial)``.
        target: integer ``(N, *spatial)``, values in ``[0, C)`` or ``ignore_index``.
        weight: optional class weights ``(C,)``.
        ignore_index: label of pixels that contribute nothing.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-pixel map ``(N, *spatial)``).
        label_smoothing: ``eps`` in ``[0, 1]`` (0: none), as torch's ``label_smoothing``.

    Returns:
        A scalar, or the per-pixel map for ``reduction="none"``.

    Raises:
        TypeError: non-tensor inputs, float target, non-float logits.
        ValueError: shape mismatch, labels out of range, NaN/Inf logits, bad weight or reduction.

    Example:
        >>> logits = torch.randn(2, 3, 4, 4)
        >>> target = torch.randint(0, 3, (2, 4, 4))
        >>> cross_entropy(logits, target).shape
        torch.Size([])
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    if smoothing_given(label_smoothing):
        check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        if _folds_smoothing(logits, weight):
            return _focal_family(logits, target, gamma=0.0, class_scale=None, weight=weight, ignore_index=ignore_index,
                                 reduction=reduction, smoothing=label_smoothing)
        return _smoothed(lambda: cross_entropy(logits, target, weight=weight, ignore_index=ignore_index,
                                               reduction="none"),
                         logits, target, label_smoothing, weight, ignore_index, reduction)
    if _needs_autograd(weight):
        return reference.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction)
    return _focal_family(logits, target, gamma=0.0, class_scale=None, weight=weight, ignore_index=ignore_index,
                         reduction=reduction)


def _smoothed(pixel_loss, logits, target, eps, weight, ignore_index: int, reduction: str) -> torch.Tensor:
    """``(1 - eps) pixel_loss() + eps S`` reduced as torch reduces a label-smoothed CE.

    ``pixel_loss()`` gives the unsmoothed per-pixel map (weighted by ``w_y``, 0 at ignored pixels);
    ``S`` is the smoothing term of :mod:`segloss.kernels.smoothing` (plain autograd when the
    class weights want a gradient).
    """
    check_number(eps, "label_smoothing", low=0.0, high=1.0)
    check_reduction(reduction)
    base = pixel_loss()  # validates logits and target (once: the smoothing term below relies on it)
    target = check_logits_target(logits, target, ignore_index, check_finite=False, check_labels=False)
    like = _float_like(logits)
    w = class_vector(weight, logits.shape[1], "weight", like)
    valid = target != ignore_index
    if _needs_autograd(weight) or torch.compiler.is_compiling():
        log_probs = (logits if logits.dtype == torch.float64 else logits.float()).log_softmax(dim=1)
        w_c = torch.ones(logits.shape[1], dtype=log_probs.dtype, device=logits.device) if w is None else w
        shape = (1, -1) + (1,) * (logits.dim() - 2)
        term = -(log_probs * w_c.reshape(shape)).sum(dim=1) / logits.shape[1]
        term = torch.where(valid, term, 0.0)
    else:
        term = SmoothingTerm.apply(logits, target, ignore_index, w)
    pixel = (1.0 - eps) * base + eps * term
    safe = torch.where(valid, target, 0).long()
    denominator = valid.sum().to(pixel.dtype) if w is None else (w.to(pixel.dtype)[safe] * valid).sum()
    return reduce_map(pixel, denominator, reduction)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: Number = 2.0,
    alpha: Number | ClassWeights = None,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Softmax focal loss (Lin et al., ICCV 2017, arXiv:1708.02002).

    With ``label_smoothing=eps`` the focal term is mixed with cross-entropy's smoothing term as
    label smoothing mixes CE: ``(1 - eps) FL_i + (eps / C) sum_c w_c (-log p_c)`` (the uniform part
    of the target is not focused; libraries that smooth focal loss do not agree on more).

    ``FL_i = -alpha_{y_i} (1 - p_t)^gamma log p_t``, times ``weight[y_i]`` when given.
    ``gamma = 0`` with ``alpha = None`` is exactly cross-entropy. ``alpha`` is part of the
    formula, not of the "mean" normalisation: None (1), a scalar that scales every pixel (the
    paper's 0.25 weighted positives against negatives in the *sigmoid* form; in this softmax form a
    scalar is a global scale), or a per-class vector ``(C,)`` indexed by the target class.
    ``(1 - p_t)^gamma`` is computed as ``exp(gamma * logsumexp_{c != t} log p_c)``, so it is finite
    with finite gradients at saturated logits and for ``0 < gamma < 1``.

    Args:
        logits: float ``(N, C, *spatial)``.
        target: integer ``(N, *spatial)``.
        gamma: focusing parameter, ``>= 0`` (a number or a 0-dim tensor; on the logits' CUDA
            device the kernels read it there, range-checked with the labels: no extra
            host-device synchronisation).
        alpha: None, a scalar ``>= 0`` (likewise a number or a 0-dim tensor), or per-class ``(C,)``.
        weight, ignore_index, reduction: as in :func:`cross_entropy`.
        label_smoothing: ``eps`` in ``[0, 1]``, mixed in as above (0: none).

    Returns:
        A scalar, or the per-pixel map ``(N, *spatial)`` for ``reduction="none"``.

    Raises:
        TypeError, ValueError: as in :func:`cross_entropy`; also a negative or non-finite
            ``gamma``/``alpha`` or an ``alpha`` vector of the wrong length.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    gamma, alpha = _off_device_as_number(gamma, logits), _off_device_as_number(alpha, logits)
    if _device_scalars(logits, (gamma, alpha), weight):  # checked on the device, with the labels
        return _focal_device_scalars(logits, target, gamma, alpha, weight, ignore_index, reduction, label_smoothing)
    check_number(gamma, "gamma", low=0.0, high=MAX_EXPONENT)
    alpha = scalar_or_vector(alpha, logits.device)  # np.float32(0.25), a 0-dim tensor: a scalar alpha
    fold = False
    if smoothing_given(label_smoothing):  # before the autograd path, which knows no smoothing
        check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        fold = _folds_smoothing(logits, weight) and not _needs_autograd(gamma, alpha)
        if not fold:
            return _smoothed(lambda: focal_loss(logits, target, gamma=gamma, alpha=alpha, weight=weight,
                                                ignore_index=ignore_index, reduction="none"),
                             logits, target, label_smoothing, weight, ignore_index, reduction)
    if _needs_autograd(gamma, alpha, weight):
        return reference.focal_loss(logits, target, gamma=gamma, alpha=alpha, weight=weight,
                                    ignore_index=ignore_index, reduction=reduction)
    if isinstance(alpha, (int, float)) or (isinstance(alpha, torch.Tensor) and alpha.dim() == 0):
        check_number(alpha, "alpha", low=0.0, high=MAX_SCALE)
    gamma = number_or_traced(gamma, logits.device)  # while compiling, no host read
    return _focal_family(logits, target, gamma=gamma, class_scale=alpha, weight=weight,
                         ignore_index=ignore_index, reduction=reduction, smoothing=label_smoothing if fold else 0.0)


def _off_device_as_number(value, logits: torch.Tensor):
    """A 0-dim tensor that wants no gradient and lies off the logits' device (a CPU ``alpha`` next to
    CUDA logits) as a number: read on its host it costs nothing, copied to the device it would
    synchronise. Anything else is returned as it is."""
    if (isinstance(value, torch.Tensor) and value.dim() == 0 and value.device != logits.device
            and not value.requires_grad):
        return number_or_traced(value, logits.device)
    return value


def _device_scalars(logits: torch.Tensor, params, weight) -> bool:
    """Whether some of ``params`` are 0-dim tensors on the logits' CUDA device (e.g. a schedule's
    buffer) for the kernels to read there: a host read of each (``float``) would synchronise."""
    return (any(isinstance(p, torch.Tensor) and p.dim() == 0 and p.device == logits.device
                and not p.requires_grad for p in params)
            and cuda.handles(logits) and not _needs_autograd(*params, weight))


def _focal_device_scalars(logits, target, gamma, alpha, weight, ignore_index, reduction, label_smoothing):
    """:func:`focal_loss` with ``gamma`` and/or a scalar ``alpha`` given as 0-dim device tensors:
    the kernels read gamma on the device, alpha becomes the class scale ``(C,)`` there, and both
    are range-checked with the call's one synchronisation (the labels' check)."""
    checks, bounds, names = [], [], []
    for name, value, high in (("gamma", gamma, MAX_EXPONENT), ("alpha", alpha, MAX_SCALE)):
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            checks.append(value.detach().to(logits.device))
            bounds.append((0.0, high))
            names.append(name)
        elif name == "gamma":
            check_number(value, name, low=0.0, high=high)
    alpha = scalar_or_vector(alpha, logits.device) if not (isinstance(alpha, torch.Tensor) and alpha.dim() == 0) else alpha
    if isinstance(alpha, (int, float)):
        check_number(alpha, "alpha", low=0.0, high=MAX_SCALE)
    if smoothing_given(label_smoothing):
        check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    dtype = torch.float64 if any(v.dtype == torch.float64 for v in checks) else torch.float32  # checked as given
    param_checks = (torch.stack([v.to(dtype) for v in checks]), tuple(bounds), tuple(names))
    return _focal_family(logits, target, gamma=gamma, class_scale=alpha, weight=weight, ignore_index=ignore_index,
                         reduction=reduction, smoothing=label_smoothing, param_checks=param_checks)


def dual_focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: Number = 1.0,
    beta: Number = 1.0,
    gamma: Number = 1.0,
    rho: Number = 1.0,
    weight: ClassWeights = None,
    ignore_index: int = 255,
    reduction: str = "mean",
) -> torch.Tensor:
    """Dual Focal Loss (Hossain, Betts, Paplinski; Neurocomputing 2021, doi:10.1016/j.neucom.2021.07.055).

    Per pixel, summed over classes, with one-hot ``y`` and softmax ``p``::

        DFL = sum_c [ -y_c log p_c  -  beta (1 - y_c) log(rho - p_c)  +  alpha |y_c - p_c|^gamma ]

    term 1 is CE on the true class, term 2 penalises probability on the false classes, term 3 is
    an additive focal-style term. At the authors' defaults (all 1)
    ``DFL = -log p_t - sum_{c != t} log(1 - p_c) + 2 (1 - p_t)``. The pixel value is multiplied
    by ``weight[y_i]`` when given. ``log(1 - p_c)`` and ``|y_c - p_c|^gamma`` are formed from
    log-probabilities, so values and gradients stay finite at saturated logits.

    Args:
        logits: float ``(N, C, *spatial)``.
        target: integer ``(N, *spatial)``.
        alpha: weight of the focal-style term, ``>= 0``.
        beta: weight of the false-class term, ``>= 0``.
        gamma: exponent of the focal-style term, ``>= 0``.
        rho: offset of the false-class term, ``>= 1`` (``rho - p_c`` must stay positive).
        weight, ignore_index, reduction: as in :func:`cross_entropy`.
        Each of alpha, beta, gamma, rho may be a 0-dim tensor (e.g. a learnable parameter).

    Returns:
        A scalar, or the per-pixel map ``(N, *spatial)`` for ``reduction="none"``.

    Raises:
        TypeError, ValueError: as in :func:`cross_entropy`; also ``rho < 1`` or a negative or
            non-finite alpha, beta or gamma.
    """
    ignore_index = index_argument(ignore_index)  # numpy integers, as torch takes
    bounds = ((0.0, MAX_SCALE), (0.0, MAX_SCALE), (0.0, MAX_EXPONENT), (1.0, MAX_SCALE))
    alpha, beta, gamma, rho = values = tuple(_off_device_as_number(v, logits) for v in (alpha, beta, gamma, rho))
    if any(isinstance(v, torch.Tensor) for v in values) and cuda.handles(logits) and not _needs_autograd(weight):
        return _dual_focal_device_params(logits, target, values, bounds, weight, ignore_index, reduction)
    for name, value, (low, high) in zip(("alpha", "beta", "gamma", "rho"), values, bounds):
        check_number(value, name, low=low, high=high)
    if _needs_autograd(alpha, beta, gamma, rho, weight) or torch.compiler.is_compiling():
        return reference.dual_focal_loss(logits, target, alpha=alpha, beta=beta, gamma=gamma, rho=rho,
                                         weight=weight, ignore_index=ignore_index, reduction=reduction)
    check_reduction(reduction)
    on_gpu = cuda.handles(logits)
    target = check_logits_target(logits, target, ignore_index, check_finite=False, check_labels=not on_gpu)
    like = _float_like(logits)
    w = class_vector(weight, logits.shape[1], "weight", like)
    params = (float(alpha), float(beta), float(gamma), float(rho))
    if on_gpu:
        return cuda.DualFocalTriton.apply(logits, target, ignore_index, w, params, reduction, torch.is_grad_enabled())
    shape, user_shape = target.shape, logits.shape
    logits, target = _fold_small_images(logits, target)
    with _errors_name_the_callers_shape(user_shape, logits.shape):
        value, _ = DualFocalFused.apply(logits, target, ignore_index, w, params, reduction)
    return value.reshape(shape) if reduction == "none" else value


def _dual_focal_device_params(logits, target, values, bounds, weight, ignore_index, reduction):
    """Dual Focal Loss on the CUDA kernels with parameters given as tensors (e.g. learnable):
    they stay on the device (a vector ``(4,)``, range-checked there with the call's one
    synchronisation) and get their gradient from the kernels' per-pixel derivatives."""
    for name, value, (low, high) in zip(("alpha", "beta", "gamma", "rho"), values, bounds):
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise TypeError(f"{name} must be a number or a 0-dim tensor, got shape {tuple(value.shape)}")
        else:
            check_number(value, name, low=low, high=high)
    check_reduction(reduction)
    target = check_logits_target(logits, target, ignore_index, check_finite=False, check_labels=False)
    w = class_vector(weight, logits.shape[1], "weight", _float_like(logits))
    dtype = torch.float64 if any(isinstance(v, torch.Tensor) and v.dtype == torch.float64 for v in values) \
        else torch.float32  # range-checked in the parameters' own precision
    param_vec = torch.stack([
        v.to(device=logits.device, dtype=dtype).reshape(()) if isinstance(v, torch.Tensor)
        else torch.full((), float(v), dtype=dtype, device=logits.device) for v in values])
    return cuda.DualFocalTriton.apply(logits, target, ignore_index, w, None, reduction, torch.is_grad_enabled(),
                                      param_vec, bounds)


from segloss.losses.boundary import boundary_loss, signed_distance_maps  # noqa: E402,F401  (public: SF.boundary_loss)
from segloss.losses.ohem import ohem_cross_entropy, ohem_mask  # noqa: E402,F401  (public: SF.ohem_cross_entropy)
from segloss.losses.recall import (batch_recall_weights, recall_family, recall_loss,  # noqa: E402,F401
                                   recall_weighted_ce)  # (public: SF.recall_loss)
