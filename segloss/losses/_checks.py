"""Argument validation shared by every loss.

Every check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong
shape or value) with a message that names the offending shapes, dtypes or values, so a user
sees what to fix without reading our source.
"""

from __future__ import annotations

import math
import sys
import warnings
import weakref
from collections.abc import Sequence

import numpy as np
import torch

Number = float | torch.Tensor  # a loss parameter: a number, or a 0-dim tensor (learnable, scheduled)
ClassWeights = torch.Tensor | Sequence[float] | None  # per-class weights (C,), or none

MAX_EXPONENT = 1000.0  # focal / Dual Focal / Tversky exponents: beyond it every power is 0 or 1 anyway
MAX_SCALE = 1e12  # class weights, alphas, betas, rho: products with losses and pixel counts stay finite in float32

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> None:
    """Raise ``ValueError`` unless ``reduction`` is one of ``REDUCTIONS``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def index_argument(ignore_index):
    """``ignore_index`` as a Python int when it is a numpy integer (torch's own losses take those, e.g.
    read from a config through numpy); anything else as given, for :func:`check_logits_target` to judge."""
    return int(ignore_index) if isinstance(ignore_index, np.integer) else ignore_index


def holds_index(target: torch.Tensor, ignore_index: int, num_classes: int = 0) -> torch.Tensor:
    """``target``, or ``target.long()`` when its integer dtype cannot hold ``ignore_index`` or
    ``num_classes``: torch wraps the number in a comparison (``uint8 255 == -1``, ``uint8 0 == 256``),
    so a uint8 mask with ``ignore_index=-1`` would have its 255s ignored by one check and indexed by
    the next, and with C = 256 every label would be ``>= 256`` (wrapped to ``>= 0``): out of range.
    A uint16, uint32 or uint64 mask is always made int64: torch has no comparison kernels for them
    (a uint64 label past 2**63 wraps to a negative one, refused as such)."""
    if target.dtype in (torch.int64, torch.bool) or target.is_floating_point() or target.is_complex():
        return target
    if target.dtype in (torch.uint16, torch.uint32, torch.uint64):
        return target.long()
    info = torch.iinfo(target.dtype)
    return target if info.min <= ignore_index <= info.max and num_classes <= info.max else target.long()


def check_num_classes(num_classes, minimum: int = 2) -> int:
    """``num_classes`` as an int (numpy integers too) of at least ``minimum``.

    Raises:
        TypeError: not an integer (a float or a bool). ValueError: below ``minimum``.
    """
    if isinstance(num_classes, (bool, np.bool_)) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int >= {minimum}, got {num_classes!r}")
    if num_classes < minimum:
        raise ValueError(f"num_classes must be an int >= {minimum}, got {num_classes}")
    return int(num_classes)


def check_per_image(per_image) -> bool:
    """A region loss's ``per_image`` as a bool: True or ``"image"`` (each image's regions scored
    apart, then averaged), False or ``"batch"`` (one region per class over the whole batch; the
    registry's and the app's words). Anything else raises: ``"batch"`` is a truthy string, and
    ``bool("batch")`` silently meant per image.

    Raises:
        TypeError: not a bool or one of the two words.
    """
    if isinstance(per_image, (bool, np.bool_)):
        return bool(per_image)
    if isinstance(per_image, str) and per_image in ("image", "batch"):
        return per_image == "image"
    raise TypeError(f"per_image must be True / 'image' (regions per image) or False / 'batch' (regions over the "
                    f"batch), got {per_image!r}")


def warn_ignored_class(num_classes: int) -> None:
    """Warn that ``ignore_index=255`` (segloss's default, the usual void label) names one of the
    ``num_classes > 255`` classes (ADE20K-full, LVIS-like label sets): its pixels are never scored."""
    level, frame = 2, sys._getframe(1)  # point at the caller's line: the first frame outside segloss and torch
    while frame is not None and frame.f_globals.get("__name__", "").partition(".")[0] in ("segloss", "torch"):
        level, frame = level + 1, frame.f_back
    warnings.warn(f"ignore_index=255 (segloss's default) lies among the C = {num_classes} classes: pixels of "
                  "class 255 are ignored, never scored. Pass an ignore_index outside [0, C), e.g. -100, to score "
                  "class 255 (or keep 255 if it is your void label).", UserWarning, stacklevel=level)


def check_logits_target(logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
                        check_finite: bool = True, check_labels: bool = True) -> torch.Tensor:
    """Validate a ``(N, C, *spatial)`` logits / ``(N, *spatial)`` target pair; return the target to use.

    The target returned is ``target`` itself, except while ``torch.compile`` traces: there the
    value checks are asserts in the graph (:func:`_assert_in_graph`), which inductor may order after
    the losses' indexing, so labels outside ``[0, C)`` become ``ignore_index`` in the returned
    target; no index is then out of bounds and the assert's message is the error the user sees.

    ``check_finite=False`` skips the scan for NaN/Inf (a full pass over the logits) for callers
    that detect them on the way, as the fused losses do; ``check_labels=False`` skips the label
    range check (a host-device synchronisation on CUDA) for the CUDA kernels, which count bad
    labels in their own pass and raise the same error.

    Raises:
        TypeError: if either is not a tensor, logits are not floating point, target is not an
            integer tensor, or ``ignore_index`` is not an int.
        ValueError: if the shapes disagree, ``C < 2``, a label lies outside ``[0, C)`` and is
            not ``ignore_index``, or the logits hold NaN or Inf.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"logits and target must be torch.Tensor, got {type(logits).__name__} and "
            f"{type(target).__name__}"
        )
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating point tensor, got dtype {logits.dtype}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(
            f"target must hold integer class indices (e.g. torch.long), got dtype {target.dtype}"
        )
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {ignore_index!r}")
    if logits.dim() < 2:
        raise ValueError(
            f"logits must have shape (N, C, *spatial), got {tuple(logits.shape)}"
        )
    num_classes = logits.shape[1]
    if num_classes < 2:
        raise ValueError(
            f"logits need at least 2 classes along dim 1, got shape {tuple(logits.shape)}; "
            "for binary segmentation pass 2 channels (background, foreground)"
        )
    if ignore_index == 255 and num_classes > 255 and not torch.compiler.is_compiling():
        warn_ignored_class(num_classes)
    expected = (logits.shape[0], *logits.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"Expected target size {expected} for logits of size {tuple(logits.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if logits.device != target.device:
        raise ValueError(
            f"logits and target must be on the same device, got {logits.device} and "
            f"{target.device}"
        )
    target = holds_index(target, ignore_index, num_classes)  # compared as numbers, not wrapped to the dtype
    if torch.compiler.is_compiling():  # no host read while dynamo traces: checks inside the graph
        _assert_in_graph(logits, target, ignore_index, check_finite)
        target = target.long()  # an ignore_index that a uint8 target cannot hold still fits
        return torch.where((target >= 0) & (target < num_classes), target, ignore_index)
    flags = {}
    labels, values = _unwrapped(target), _unwrapped(logits)  # inside vmap: every map's values at once
    if check_labels and labels.numel() > 0:
        flags["labels"] = ((labels != ignore_index) & ((labels < 0) | (labels >= num_classes))).any()
    if check_finite and values.numel() > 0:
        flags["finite"] = ~torch.isfinite(values).all()
    if not flags:
        return target
    found = dict(zip(flags, torch.stack(list(flags.values())).tolist()))  # one host-device synchronisation
    if found.get("labels"):
        bad = (labels != ignore_index) & ((labels < 0) | (labels >= num_classes))
        shown = torch.unique(labels[bad])[:8].tolist()
        raise ValueError(
            f"target holds labels outside [0, {num_classes}) that are not "
            f"ignore_index={ignore_index}: {shown}"
        )
    if found.get("finite"):
        n_nan = int(torch.isnan(values).sum())
        n_inf = int(torch.isinf(values).sum())
        raise ValueError(
            f"logits contain {n_nan} NaN and {n_inf} Inf values (shape {tuple(logits.shape)}); "
            "check the model output or the learning rate"
        )
    return target


def _assert_in_graph(logits, target, ignore_index, check_finite) -> None:
    """The value checks of :func:`check_logits_target` under ``torch.compile``, as asserts in the graph.

    Reading a flag on the host would break the graph; ``torch._assert_async`` stays in it and, on
    the CPU, raises ``RuntimeError`` with this message when the compiled step runs (on CUDA it is a
    device-side assertion, as an out-of-range target of torch's own compiled cross-entropy is).
    The message cannot name the offending values: they are not known while tracing; nor sizes that
    dynamo made symbolic (a batch of another size), which a message cannot hold. The labels are
    always checked here (``check_labels=False`` only spares the CUDA kernels a synchronisation, and
    an assert takes none): a caller given the cleaned target must not hide bad labels from the next.
    """
    num_classes = logits.shape[1]
    if target.numel() > 0:
        bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
        classes = num_classes if isinstance(num_classes, int) else "C"  # a plain int, not a symbolic size
        torch._assert_async(~bad.any(), f"target holds labels outside [0, {classes}) that are not "
                                        f"ignore_index={ignore_index}")
    if check_finite and logits.numel() > 0:
        assert_finite_in_graph(torch.isfinite(logits).all())


def assert_finite_in_graph(finite: torch.Tensor) -> None:
    """Under ``torch.compile``: stop with the NaN/Inf message unless the 0-dim bool ``finite``."""
    torch._assert_async(finite, "logits contain NaN or Inf values; check the model output or the learning rate")


def plain_torch_required() -> bool:
    """True where the losses must run as plain torch ops, not their kernels (custom autograd
    functions with host-side checks): inside a ``torch.func`` transform (``grad``, ``vmap``,
    ``jacrev``...), which such functions without a functorch rule cannot take part in, and while
    ``torch.compile`` traces, where each host read or kernel launch would break the graph; there
    the plain formulas trace into the caller's graph and inductor fuses them."""
    return torch.compiler.is_compiling() or functorch_transform_active()


def _unwrapped(tensor: torch.Tensor) -> torch.Tensor:
    """The plain tensor under ``torch.func``'s wrappers (``vmap``'s batched tensors, ``grad``'s
    tracking ones), to read values on the host: a batched tensor's cannot be read (``vmap`` over
    the target failed in the label check), and its plain tensor holds every map's. ``tensor``
    itself outside a transform and while dynamo traces."""
    if torch.compiler.is_compiling():
        return tensor
    functorch = getattr(torch._C, "_functorch", None)
    wrapped = getattr(functorch, "is_functorch_wrapped_tensor", None)
    while wrapped is not None and wrapped(tensor):
        tensor = functorch.get_unwrapped(tensor)
    return tensor


def _vmapped(tensor: torch.Tensor) -> bool:
    """True for a tensor batched by ``torch.func.vmap``, whose values cannot be read on the host
    (a vmapped class vector is not range-checked; the logits and target are, through
    :func:`_unwrapped`).
    False while dynamo traces (``torch.compile``): it cannot trace functorch's C checks and would
    warn and break the graph on every compiled step."""
    if torch.compiler.is_compiling():
        return False
    functorch = getattr(torch._C, "_functorch", None)
    check = getattr(functorch, "is_batchedtensor", None)
    while check is not None:
        if check(tensor):
            return True
        unwrap = getattr(functorch, "get_unwrapped", None)
        if unwrap is None or not functorch.is_functorch_wrapped_tensor(tensor):
            return False
        tensor = unwrap(tensor)
    return False


def class_vector(
    value: torch.Tensor | Sequence[float] | None,
    num_classes: int,
    name: str,
    like: torch.Tensor,
) -> torch.Tensor | None:
    """Return a per-class vector as a float tensor on ``like``'s device and dtype.

    Args:
        value: None, a 1-D tensor or a sequence of ``num_classes`` finite, non-negative numbers.
        num_classes: C, the length ``value`` must have.
        name: the argument's name, for error messages.
        like: a tensor whose device and dtype the result takes.

    Raises:
        TypeError: if ``value`` is not a tensor or a sequence of numbers.
        ValueError: if its length is not ``num_classes`` or it holds a negative or non-finite entry.
    """
    if value is None:
        return None
    from_sequence = not isinstance(value, torch.Tensor)
    if from_sequence:
        try:
            value = torch.as_tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a 1-D tensor or a sequence of numbers, got {value!r}") from err
    if value.dim() != 1 or value.numel() != num_classes:
        raise ValueError(
            f"{name} must have one entry per class: expected shape ({num_classes},), "
            f"got {tuple(value.shape)}"
        )
    if torch.compiler.is_compiling():
        value = value.to(device=like.device, dtype=like.dtype).contiguous()
        torch._assert_async((torch.isfinite(value) & (value >= 0) & (value <= MAX_SCALE)).all(),
                            f"{name} entries must be finite, >= 0 and <= {MAX_SCALE:g}")
        return value
    # a CPU vector is checked on every call (no synchronisation; ``.data`` writes keep its version)
    if not _vmapped(value) and not (value.device.type != "cpu" and _already_checked(value)):
        if value.is_complex() or not bool((torch.isfinite(value) & (value >= 0) & (value <= MAX_SCALE)).all()):
            raise ValueError(f"{name} entries must be finite, >= 0 and <= {MAX_SCALE:g}, got {value.tolist()}")
        _remember_checked(value)
    if from_sequence and like.device.type != "cpu":
        return _device_copy(value, like)
    if value.device.type == "cpu" and like.device.type != "cpu" and _plain(value):
        return _device_copy(value.detach(), like)  # a CPU weight tensor with CUDA logits: by its values too
    return value.to(device=like.device, dtype=like.dtype).contiguous()  # kernels read it with stride 1


def _plain(value: torch.Tensor) -> bool:
    """A tensor whose values are all it carries: no gradient, forward-mode tangent or vmap batch,
    outside torch.func (its device copy may then be shared by value, see :func:`_device_copy`)."""
    return not (value.requires_grad or _vmapped(value) or functorch_transform_active()
                or torch.autograd.forward_ad.unpack_dual(value).tangent is not None)


_DEVICE_COPIES: dict[tuple, torch.Tensor] = {}  # (values, device, dtype) -> accelerator copy of host values
_MAX_DEVICE_COPIES = 256


def _device_copy(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Class values on the host (a Python sequence made into the CPU tensor ``values``, or a plain
    CPU tensor: :func:`_plain`) on ``like``'s accelerator, copied once per distinct values: each copy
    from pageable host memory is a host-device synchronisation, and a call may take only one (the
    label check). Keyed by the values, not the tensor: a write through ``.data`` or a numpy view
    leaves a tensor's version as it was, and a copy kept by identity then went stale.

    The copies are never mutated (the losses index, multiply and save them), are made outside
    inference mode (a copy first made in a validation step is saved for backward in training),
    and are never freed: a freed copy could still be read by a kernel queued on another stream or
    by a captured CUDA graph. Past ``_MAX_DEVICE_COPIES`` distinct vectors, new ones are copied
    on each call instead.
    """
    key = (tuple(values.tolist()), like.device, like.dtype)
    copy = _DEVICE_COPIES.get(key)
    if copy is None:
        with torch.inference_mode(False):
            copy = values.to(device=like.device, dtype=like.dtype)
        if len(_DEVICE_COPIES) < _MAX_DEVICE_COPIES:
            _DEVICE_COPIES[key] = copy
    return copy


_CHECKED: dict[int, tuple[weakref.ref, int]] = {}  # id -> (tensor, version) of class vectors found valid


def _already_checked(value: torch.Tensor) -> bool:
    """True if this very tensor, unchanged since (same version), was validated before.

    A module's class-weight buffer is then checked once, not on every call: on CUDA each check
    is a host-device synchronisation.
    """
    if value.is_inference():  # no version counter: never remembered, checked on each call
        return False
    entry = _CHECKED.get(id(value))
    return entry is not None and entry[0]() is value and entry[1] == value._version


def _remember_checked(value: torch.Tensor) -> None:
    if value.requires_grad or value.device.type == "meta" or value.is_inference():
        return
    key = id(value)
    _CHECKED[key] = (weakref.ref(value, lambda _ref, key=key: _CHECKED.pop(key, None)), value._version)


def is_numpy_number(value) -> bool:
    """A numpy integer or float scalar, or a 0-dim numeric array (``np.float32(0.25)``, ``np.array(2)``).

    Booleans (``np.True_``) are not numbers here, as Python's ``True`` is not. While
    ``torch.compile`` traces, dynamo sees a numpy scalar as a 0-dim array whose ``dtype`` it cannot
    read; the dtype of the tensor made from it is static to it, so that is read instead."""
    if isinstance(value, (np.integer, np.floating)):
        return True
    if not isinstance(value, np.ndarray) or value.ndim != 0:
        return False
    if torch.compiler.is_compiling():
        dtype = torch.as_tensor(value).dtype
        return dtype != torch.bool and not dtype.is_complex
    return value.dtype.kind in "iuf"


def smoothing_given(eps) -> bool:
    """Whether label smoothing's ``eps`` is in play: not for 0. While ``torch.compile`` traces, a
    numpy scalar or tensor ``eps`` always is (its value is data to dynamo, and ``eps = 0`` gives
    the unsmoothed loss anyway); its check then refuses a numpy boolean as it does eagerly."""
    if torch.compiler.is_compiling() and isinstance(eps, (torch.Tensor, np.ndarray, np.generic)):
        return True
    if isinstance(eps, np.bool_) or (isinstance(eps, np.ndarray) and eps.ndim == 0 and eps.dtype == np.bool_):
        return True  # np.False_ too: its check refuses it, as it must while compiling (the value unknown there)
    return bool(eps)


def scalar_or_vector(value, device=None):
    """A per-class-or-scalar argument (focal's ``alpha``) with its scalar forms made one: Python and
    numpy numbers and 0-dim tensors that want no gradient become a float; anything else is returned
    as it is (a sequence, a ``(C,)`` tensor, a 0-dim tensor that requires grad, None). While
    ``torch.compile`` traces, a numpy number becomes a float64 0-dim tensor on ``device`` (the
    logits' device: dynamo's ``float()`` of it cannot be guarded on)."""
    if is_numpy_number(value) or (isinstance(value, torch.Tensor) and value.dim() == 0 and not value.requires_grad):
        return number_or_traced(value, device)  # no host read while tracing
    return value


def number_or_traced(value, device=None):
    """``float(value)``, except while ``torch.compile`` traces a tensor or numpy number: then a
    0-dim tensor (float64 on ``device`` for numpy), whose value is data to the graph rather than a
    constant dynamo would have to guard on (it cannot ``float()`` a numpy integer at all)."""
    if torch.compiler.is_compiling():
        if isinstance(value, torch.Tensor):
            return value
        if is_numpy_number(value):
            return torch.as_tensor(value, dtype=torch.float64, device=device)
    return float(value)


def check_number(
    value: float | torch.Tensor,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
) -> None:
    """Raise unless ``value`` is a finite real number within ``[low, high]``.

    A 0-dim tensor (e.g. a learnable ``nn.Parameter``) is accepted as well as a Python number.

    Raises:
        TypeError: if ``value`` is not a real number or a 0-dim tensor.
        ValueError: if it is NaN, infinite or out of range.
    """
    if torch.compiler.is_compiling() and (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          or is_numpy_number(value)):
        # a number that changed between calls is symbolic to dynamo, and Python's math cannot read it;
        # torch.full keeps it symbolic (torch.as_tensor guards on its value: a graph per value)
        value = (torch.as_tensor(value, dtype=torch.float64) if is_numpy_number(value)
                 else torch.full((), value, dtype=torch.float64))
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be a number or a 0-dim tensor, got shape {tuple(value.shape)}")
        if torch.compiler.is_compiling():  # its value is not known while tracing: an assert in the graph
            v = value.detach()
            ok = torch.isfinite(v) & (v >= (low if low is not None else -math.inf)) & (v <= (high if high is not None else math.inf))
            if low is not None and not low_inclusive:
                ok = ok & (v != low)
            sign = ">=" if low_inclusive else ">"
            bounds = [f"{sign} {low:g}" if low is not None else "", f"<= {high:g}" if high is not None else ""]
            torch._assert_async(ok.all(), f"{name} must be finite{''.join(' and ' + b for b in bounds if b)}")
            return
        number = float(value.detach())
    elif is_numpy_number(value):
        number = float(value)  # numpy scalars (e.g. np.float32(2.0)) are numbers too
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    if low is not None and (number < low or (not low_inclusive and number == low)):
        sign = ">=" if low_inclusive else ">"
        raise ValueError(f"{name} must be {sign} {low}, got {number}")
    if high is not None and number > high:
        raise ValueError(f"{name} must be <= {high:g}, got {number:g}")


def functorch_transform_active() -> bool:
    """True inside a ``torch.func`` transform (``grad``, ``vmap``, ``jacrev``...): custom autograd
    functions without a functorch rule cannot take part, so the losses use plain torch ops there."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active is not None and active())
