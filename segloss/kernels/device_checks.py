"""Bad input on the device, read back in one host-device synchronisation per call.

The CUDA kernels (:mod:`segloss.kernels.cuda`) count, per program, labels outside ``[0, C)`` that
are not ``ignore_index`` and non-finite logits into int32 flags; the losses' device parameters
(Dual Focal's alpha, beta, gamma, rho) are checked against their bounds on the device too. The flags
are read once (``tolist``): at the end of the call, or, inside :func:`one_check_for_all`, once at
the end of the block for every call in it (a sum of losses, Unified Focal's three passes). Then the
first bad input raises ``ValueError`` naming the values.
"""

from __future__ import annotations

import contextlib
import threading

import torch

from segloss.kernels.cpu import _raise_non_finite

PARAM_NAMES = ("alpha", "beta", "gamma", "rho")


def raise_bad_input(flags: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
                    params: torch.Tensor | None = None, bounds=None, names=PARAM_NAMES, extra=()) -> None:
    """The one synchronisation of a call: read the flags (and whether the device parameters
    ``params`` ``(k,)``, called ``names``, lie within ``bounds`` ``((low, high),) * k``; and the
    ``extra`` counts, ``((0-dim count on the device, message), ...)``), raise ``ValueError`` on bad
    input. Inside :func:`one_check_for_all` the read waits for the block's end, with every other call's."""
    if not flags.numel() and params is None and not extra:
        return  # no pixel, no parameter: nothing to check
    checks = flags.reshape(-1, 2).sum(dim=0)  # (programs, 2) -> (2,); zeros for no program
    if params is not None and bounds is not None:
        inside = [(params[i] >= low) & (params[i] <= high) for i, (low, high) in enumerate(bounds)]  # NaN: False
        checks = torch.cat([checks, (~torch.stack(inside)).to(checks.dtype)])  # no host-to-device copy
    if extra:
        checks = torch.cat([checks, torch.stack([count.to(checks.dtype) for count, _ in extra])])
    call = (checks, logits, target, ignore_index, params, bounds, names, tuple(message for _, message in extra))
    pending = getattr(_DEFERRED, "calls", None)
    if pending is not None:
        pending.append(call)
        return
    raise_from(checks.tolist(), *call[1:])


def check_on_device(logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
                    bad_map_terms: torch.Tensor | None = None) -> None:
    """The bad-input flags of a loss with no kernel of its own to count them (the boundary loss):
    labels outside ``[0, C)`` that are not ``ignore_index``, non-finite logits and (given maps) the
    0-dim count ``bad_map_terms`` of the loss's non-finite per-pixel terms, which finite logits
    leave only to NaN or infinite distance maps; counted by torch ops on the device and read with
    the call's one synchronisation (inside :func:`one_check_for_all`, with the other parts' at its end)."""
    num_classes = logits.shape[1]
    bad_labels = ((target != ignore_index) & ((target < 0) | (target >= num_classes))).sum()
    non_finite = (~torch.isfinite(logits)).sum()
    extra = () if bad_map_terms is None else ((bad_map_terms, NON_FINITE_MAPS),)
    raise_bad_input(torch.stack([bad_labels, non_finite]).view(1, 2), logits, target, ignore_index, extra=extra)


NON_FINITE_MAPS = ("distance_maps hold NaN or infinite values (or values so large that the loss overflows) at "
                   "scored pixels: compute them with segloss.functional.signed_distance_maps(target, C), or check "
                   "how yours were made")


def raise_from(checks: list, logits, target, ignore_index, params, bounds, names=PARAM_NAMES, messages=()) -> None:
    """Raise for the host copy ``checks`` of one call's flags: bad labels, non-finite logits,
    device parameters out of their bounds, or an ``extra`` count (its message)."""
    bad_labels, non_finite = checks[:2]
    num_params = len(bounds) if params is not None and bounds is not None else 0  # as raise_bad_input adds them
    param_checks = checks[2:2 + num_params]
    for name, value, (low, high), bad in zip(names, params.tolist() if any(param_checks) else (),
                                            bounds or (), param_checks):
        if bad:
            raise ValueError(f"{name} must be finite and within [{low}, {high}], got {value}")
    if bad_labels:
        num_classes = logits.shape[1]
        bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
        values = torch.unique(target[bad])[:8].tolist()
        raise ValueError(f"target holds labels outside [0, {num_classes}) that are not "
                         f"ignore_index={ignore_index}: {values}")
    if non_finite:
        _raise_non_finite(logits)
    for message, bad in zip(messages, checks[2 + num_params:]):
        if bad:
            raise ValueError(message)


_DEFERRED = threading.local()  # .calls: the flag reads waiting for one_check_for_all's end, or None


@contextlib.contextmanager
def one_check_for_all():
    """Read the bad-input flags of every kernel call inside the block in one host-device
    synchronisation at its end (a sum of losses, Unified Focal's three passes: one per call, as
    #12 asks, not one per part), then raise for the first bad one. Nested blocks join the outer one."""
    if getattr(_DEFERRED, "calls", None) is not None:
        yield
        return
    _DEFERRED.calls = []
    try:
        yield
        calls = _DEFERRED.calls
    finally:
        _DEFERRED.calls = None
    if not calls:
        return
    read = torch.cat([checks.to(torch.int64) for checks, *_ in calls]).tolist()  # the one synchronisation
    start = 0
    for checks, *rest in calls:
        raise_from(read[start:start + checks.numel()], *rest)
        start += checks.numel()
