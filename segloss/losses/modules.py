"""``nn.Module`` wrappers of :mod:`segloss.functional`: drop-in losses for any training loop.

Each module stores its hyper-parameters (class weights as buffers, so ``.to(device)`` moves
them) and calls the functional form. Two hold state: :class:`DualFocalLoss` can make its
parameters learnable, :class:`RecallLoss` can keep a running average of its class weights.
The pixel-wise losses are defined here; the region losses' modules (:mod:`~segloss.losses.region_modules`)
and the sums (:mod:`~segloss.losses.sum_modules`) are re-exported, so every loss module is
``segloss.losses.modules.<Name>``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from segloss.losses import boundary
from segloss.losses import functional as SF
from segloss.losses._checks import (MAX_EXPONENT, MAX_SCALE, check_number, functorch_transform_active,
                                    scalar_or_vector)
from segloss.losses._distributed import check_sync
from segloss.losses._module_base import _Float32State, _NormalTensors, _PixelLoss, _short, _weight_buffer  # noqa: F401
from segloss.losses.region_modules import (DiceLoss, GeneralizedDiceLoss, JaccardLoss,  # noqa: F401  (re-exported)
                                           LovaszSoftmaxLoss, TverskyLoss, UnifiedFocalLoss, _RegionLoss)
from segloss.losses.sum_modules import ScheduledSumLoss, SumLoss, _WeightedSum  # noqa: F401  (re-exported)


class CrossEntropyLoss(_PixelLoss):
    """Cross-entropy, optionally label-smoothed; see :func:`segloss.functional.cross_entropy`.

    Example:
        >>> loss = CrossEntropyLoss(weight=[1.0, 2.0, 5.0], label_smoothing=0.1)
        >>> loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))).shape
        torch.Size([])
    """

    def __init__(self, weight=None, ignore_index: int = 255, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(weight, ignore_index, reduction)
        check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return SF.cross_entropy(logits, target, label_smoothing=self.label_smoothing, **self._common())

    def extra_repr(self) -> str:
        smoothing = f"label_smoothing={self.label_smoothing}, " if self.label_smoothing else ""
        return smoothing + super().extra_repr()


class OhemCrossEntropyLoss(_PixelLoss):
    """Cross-entropy on the hardest pixels (OHEM); see :func:`segloss.losses.ohem.ohem_cross_entropy`."""

    def __init__(self, threshold: float = 0.7, min_kept: float = 0.1, **common) -> None:
        super().__init__(**common)
        check_number(threshold, "threshold", low=0.0, high=1.0, low_inclusive=False)
        check_number(min_kept, "min_kept", low=0.0, high=1.0)
        self.threshold, self.min_kept = float(threshold), float(min_kept)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return SF.ohem_cross_entropy(logits, target, threshold=self.threshold, min_kept=self.min_kept,
                                     **self._common())

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, min_kept={self.min_kept}, " + super().extra_repr()


class BoundaryLoss(_PixelLoss):
    """Boundary loss (Kervadec et al.); see :func:`segloss.losses.boundary.boundary_loss`. Pass the
    masks' ``distance_maps`` (computed once per mask) as a third argument, or let it compute them."""

    def __init__(self, foreground_only: bool = True, ignore_index: int = 255, reduction: str = "mean", *,
                 weight=None) -> None:
        if weight is not None:
            raise ValueError("the boundary loss takes no class weights: each class's term is already weighted by "
                             "its distance map (weight the region loss it is paired with instead)")
        super().__init__(None, ignore_index, reduction)
        self.foreground_only = bool(foreground_only)

    def extra_repr(self) -> str:
        return f"foreground_only={self.foreground_only}, " + super().extra_repr()

    def forward(self, logits: torch.Tensor, target: torch.Tensor, distance_maps: torch.Tensor | None = None):
        return boundary.boundary_loss(logits, target, distance_maps=distance_maps,
                                      foreground_only=self.foreground_only, ignore_index=self.ignore_index,
                                      reduction=self.reduction)


class FocalLoss(_PixelLoss):
    """Softmax focal loss ``-alpha_t (1 - p_t)^gamma log p_t``; see :func:`segloss.functional.focal_loss`.

    Args:
        gamma: focusing parameter ``>= 0``.
        alpha: None, a scalar, or a per-class sequence (stored as a buffer).
        weight, ignore_index, reduction: as in :class:`CrossEntropyLoss`.
        label_smoothing: ``eps`` in ``[0, 1]`` (0: none), as :func:`segloss.functional.focal_loss` mixes it.
    """

    def __init__(self, gamma: float = 2.0, alpha=None, weight=None, ignore_index: int = 255,
                 reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(weight, ignore_index, reduction)
        check_number(gamma, "gamma", low=0.0, high=MAX_EXPONENT)  # the function's bounds, at construction
        check_number(label_smoothing, "label_smoothing", low=0.0, high=1.0)
        self.gamma, self.label_smoothing = float(gamma), float(label_smoothing)
        self.register_buffer("alpha", None)
        self._store_alpha(alpha, copy=True)

    def __setattr__(self, name: str, value) -> None:
        """``loss.alpha = ...`` takes what the constructor takes: a number, a per-class vector, None
        (torch's buffer assignment refused numbers with its own wording). A tensor is kept as it is,
        on its device and in its dtype (a schedule's 0-dim tensor, ``load_state_dict(assign=True)``)."""
        if name != "alpha" or "alpha" not in self.__dict__.get("_buffers", {}):
            return super().__setattr__(name, value)
        self._store_alpha(value, copy=False)

    def _store_alpha(self, value, copy: bool) -> None:
        if isinstance(value, torch.Tensor) and value.requires_grad:
            raise TypeError("FocalLoss keeps a fixed alpha: pass a number or a per-class vector; for an alpha "
                            "that learns, call segloss.functional.focal_loss(..., alpha=tensor) with it")
        if isinstance(value, torch.Tensor) and not copy:
            if value.dim() > 1 or not value.is_floating_point():
                raise ValueError(f"alpha must be a number or a 1-D float vector, got a {value.dtype} tensor of "
                                 f"shape {tuple(value.shape)}")
            self._buffers["alpha"] = value  # checked against C and for its values at call time
            super().__setattr__("scalar_alpha", None)
            return
        alpha = scalar_or_vector(value)
        if alpha is None or isinstance(alpha, (int, float)):
            if alpha is not None:
                check_number(alpha, "alpha", low=0.0, high=MAX_SCALE)
            self._buffers["alpha"] = None
            super().__setattr__("scalar_alpha", alpha)
        else:
            near = next((b for b in (self._buffers["alpha"], self._buffers.get("weight")) if b is not None), None)
            vector = _weight_buffer(alpha, "alpha")  # a new tensor: on the device the module's buffers are on
            self._buffers["alpha"] = vector if near is None else vector.to(near.device)
            super().__setattr__("scalar_alpha", None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha if self.alpha is not None else self.scalar_alpha
        return SF.focal_loss(logits, target, gamma=self.gamma, alpha=alpha, label_smoothing=self.label_smoothing,
                             **self._common())

    def extra_repr(self) -> str:
        alpha = self.scalar_alpha if self.alpha is None else _short(self.alpha)
        smoothing = f"label_smoothing={self.label_smoothing}, " if self.label_smoothing else ""
        alpha = f"alpha={alpha}, " if alpha is not None else ""
        return f"gamma={self.gamma}, {alpha}{smoothing}" + super().extra_repr()


DFL_PARAMETERS = ("alpha", "beta", "gamma", "rho")
DFL_DEFAULT_BOUNDS = {"alpha": (1e-3, 10.0), "beta": (1e-3, 10.0), "gamma": (0.05, 10.0), "rho": (1.0, 10.0)}


def _dfl_parameter(name: str, what: str) -> property:
    """A Dual Focal parameter as an attribute: read, :meth:`DualFocalLoss.value`; set,
    :meth:`DualFocalLoss._set_fixed`."""
    return property(lambda self: self.value(name), lambda self, value: self._set_fixed(name, value),
                    doc=f"{name}, {what} (a 0-dim tensor when learnable)")


class DualFocalLoss(_Float32State, _PixelLoss):
    """Dual Focal Loss; see :func:`segloss.functional.dual_focal_loss`.

    Any of ``alpha``, ``beta``, ``gamma``, ``rho`` named in ``learnable`` becomes an
    ``nn.Parameter`` (reachable through ``.parameters()``, so an optimizer tunes it by
    backpropagation), stored unconstrained as ``u`` and used as
    ``value = low + (high - low) * sigmoid(u)``: always positive and inside ``bounds[name]``
    (defaults in ``DFL_DEFAULT_BOUNDS``). A starting value on a bound starts just inside it.

    What the gradient does to them, plainly: minimising the loss it also tunes is degenerate.
    ``dDFL/dgamma = alpha * sum_c |y_c - p_c|^gamma log|y_c - p_c| <= 0`` so gamma grows toward
    its upper bound and the focal-style term fades; ``dDFL/dalpha = sum_c |y_c - p_c|^gamma >= 0``
    pushes alpha toward its lower bound; ``dDFL/drho = -beta sum_{c != t} 1 / (rho - p_c) < 0`` pushes
    rho upward. ``dDFL/dbeta = -sum_{c != t} log(rho - p_c)`` is ``>= 0`` at rho = 1 (beta falls), but
    negative wherever a false class's probability is below ``rho - 1``: once rho has grown, beta is
    pushed up to its upper bound (the false-class term then rewards the loss without limit). The
    bounds are what keeps them finite; watch them (``current_params()``) rather than trust them.

    Args:
        alpha, beta, gamma, rho: starting values (``rho >= 1``; others ``>= 0``).
        weight, ignore_index, reduction: as in :class:`CrossEntropyLoss`.
        learnable: names of the parameters to learn, e.g. ``("gamma",)``. Under
            DistributedDataParallel make this loss a submodule of the wrapped model: DDP averages
            only its own parameters' gradients, and the replicas' values would drift apart.
        bounds: optional ``{name: (low, high)}`` overriding ``DFL_DEFAULT_BOUNDS``.

    Raises:
        ValueError: unknown names in ``learnable``/``bounds``, empty or invalid bounds, a value
            outside its bounds, ``rho < 1``.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0, rho: float = 1.0,
                 weight=None, ignore_index: int = 255, reduction: str = "mean",
                 learnable: Iterable[str] = (), bounds: Mapping[str, tuple[float, float]] | None = None) -> None:
        super().__init__(weight, ignore_index, reduction)
        if isinstance(learnable, str):
            learnable = (learnable,)
        learnable = tuple(learnable)
        for name in (*learnable, *(bounds or {})):
            if name not in DFL_PARAMETERS:
                raise ValueError(f"unknown Dual Focal parameter {name!r}; choose from {DFL_PARAMETERS}")
        self.bounds = {**DFL_DEFAULT_BOUNDS, **{k: tuple(map(float, v)) for k, v in (bounds or {}).items()}}
        self.learnable = learnable
        values = {"alpha": alpha, "beta": beta, "gamma": gamma, "rho": rho}
        for name, value in values.items():
            check_number(value, name, low=1.0 if name == "rho" else 0.0,
                         high=MAX_EXPONENT if name == "gamma" else MAX_SCALE)
            if name in learnable:
                low, high = self.bounds[name]
                if not (math.isfinite(low) and math.isfinite(high) and low < high):
                    raise ValueError(f"bounds for {name} must be finite with low < high, got {(low, high)}")
                if name == "rho" and low < 1.0:
                    raise ValueError(f"rho's lower bound must be >= 1, got {low}")
                if low < 0.0:
                    raise ValueError(f"{name}'s lower bound must be >= 0, got {low}")
                check_number(value, name, low=low, high=high)
                fraction = min(max((value - low) / (high - low), 1e-4), 1.0 - 1e-4)
                with torch.inference_mode(False):  # built in inference mode, it still learns
                    raw = torch.tensor(math.log(fraction / (1.0 - fraction)), dtype=torch.float32)
                    self.register_parameter(f"raw_{name}", nn.Parameter(raw))
            else:
                setattr(self, f"fixed_{name}", float(value))  # one attribute each: copies stay apart

    def _state_parameters(self) -> tuple[str, ...]:
        return tuple(f"raw_{name}" for name in self.learnable)  # float32 in a half-precision model

    def value(self, name: str) -> torch.Tensor | float:
        """The parameter as used by the loss: a 0-dim tensor if learnable, else as set (a float, or
        the 0-dim tensor a schedule assigned)."""
        if name in self.learnable:
            low, high = self.bounds[name]
            return low + (high - low) * torch.sigmoid(getattr(self, f"raw_{name}"))
        return getattr(self, f"fixed_{name}")

    def _set_fixed(self, name: str, value) -> None:
        """``loss.gamma = 2.0`` (or a 0-dim tensor, which ``torch.compile`` keeps in one graph when it
        changes): a schedule sets a fixed parameter between steps, as on the other losses."""
        if name in self.learnable:
            raise AttributeError(f"DualFocalLoss learns {name}: it is the parameter raw_{name} (through its "
                                 f"bounds {self.bounds[name]}), not an attribute to assign")
        check_number(value, name, low=1.0 if name == "rho" else 0.0,
                     high=MAX_EXPONENT if name == "gamma" else MAX_SCALE)
        setattr(self, f"fixed_{name}", value if isinstance(value, torch.Tensor) else float(value))

    alpha = _dfl_parameter("alpha", "the weight of the focal-style term")
    beta = _dfl_parameter("beta", "the false-class term's scale")
    gamma = _dfl_parameter("gamma", "the focal exponent")
    rho = _dfl_parameter("rho", "the false-class term's offset (>= 1)")

    def current_params(self) -> dict[str, float]:
        """Current values of alpha, beta, gamma, rho as floats (for logging and plots)."""
        return {name: float(torch.as_tensor(self.value(name)).detach()) for name in DFL_PARAMETERS}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        params = {name: self.value(name) for name in DFL_PARAMETERS}
        return SF.dual_focal_loss(logits, target, **params, **self._common())

    def extra_repr(self) -> str:
        fixed = ", ".join(f"{n}={self.value(n)}" for n in DFL_PARAMETERS if n not in self.learnable)
        return f"{fixed}, learnable={self.learnable}, " + super().extra_repr()


class RecallLoss(_Float32State, _PixelLoss):
    """Recall loss: CE reweighted per class by ``1 - recall``; see :func:`segloss.functional.recall_loss`.

    With ``momentum = m > 0`` the module keeps running class weights ``class_weights`` (a
    buffer, 1 at start): in training mode, for each class present in the batch,
    ``w_c <- m * w_c + (1 - m) * (1 - R_c)``; absent classes keep their weight. In eval mode the
    running weights are used as they are. ``m = 0`` is the paper's instantaneous recall (the
    buffer then holds the last training batch's weights, except for calls inside a ``torch.func``
    transform, which cannot update it; with ``m > 0`` training mode refuses those). Under
    ``torch.distributed`` the counts are all-reduced, so every replica holds the same weights.

    Args:
        momentum: ``m`` in ``[0, 1)``.
        num_classes: C, to allocate ``class_weights`` up front; otherwise it is sized on the
            first call.
        weight, ignore_index, reduction: as in :class:`CrossEntropyLoss`.
        sync_distributed: False counts each replica's pixels alone, with no collective (an
            evaluation on one rank only; with momentum the replicas' weights then drift apart); a
            ``torch.distributed.ProcessGroup`` counts over that group's processes only.
    """

    _state_buffers = ("class_weights",)  # the running weights: float32 even in a bfloat16 model

    def __init__(self, momentum: float = 0.0, weight=None, ignore_index: int = 255,
                 reduction: str = "mean", num_classes: int | None = None,
                 sync_distributed: bool | torch.distributed.ProcessGroup = True) -> None:
        super().__init__(weight, ignore_index, reduction)
        self.sync_distributed = check_sync(sync_distributed)
        check_number(momentum, "momentum", low=0.0, high=1.0)
        if momentum >= 1.0:
            raise ValueError(f"momentum must be < 1 (1 would never update), got {momentum}")
        self.momentum = float(momentum)
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                        or num_classes < 2):
            raise ValueError(f"num_classes must be None (set on the first call) or an int >= 2, got {num_classes!r}")
        size = 0 if num_classes is None else int(num_classes)
        with torch.inference_mode(False):
            self.register_buffer("class_weights", torch.ones(size))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        stored = state_dict.get(prefix + "class_weights")
        if isinstance(stored, torch.Tensor) and (stored.dim() != 1 or not stored.is_floating_point()
                                                 or not bool(((stored >= 0) & (stored <= 1)).all())):
            raise ValueError(f"{prefix}class_weights in the state dict must be a 1-D float vector of recall "
                             f"weights in [0, 1] (no NaN), got {stored.tolist() if stored.numel() <= 16 else stored.shape}")
        if stored is not None and self.class_weights.numel() == 0 or (
                isinstance(stored, torch.Tensor) and stored.numel() == 0):  # a never-used loss's state: unsized again
            with torch.inference_mode(False):
                self.class_weights = torch.empty(stored.shape, dtype=torch.promote_types(stored.dtype, torch.float32),
                                                 device=self.class_weights.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _choose_weights(self, batch_weights: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The EMA rule (training) or the stored weights (eval with momentum); see the class docstring."""
        if self.training and functorch_transform_active():
            if self.momentum > 0:
                raise RuntimeError(
                    "RecallLoss(momentum > 0) updates its running class weights in place, which a torch.func "
                    "transform (grad, vmap, ...) cannot do: call it in eval mode there (the stored weights), "
                    "outside the transform, or use segloss.functional.recall_loss (the batch's weights)")
            return batch_weights  # momentum 0: the batch's weights; the buffer is not updated inside a transform
        if self.training:
            with torch.no_grad():
                blended = self.momentum * self.class_weights + (1.0 - self.momentum) * batch_weights
                self.class_weights.copy_(torch.where(present, blended, self.class_weights))
            # momentum 0: the batch's own weights (float64 for float64 logits; the buffer is float32)
            return batch_weights if self.momentum == 0 else self.class_weights
        if self.momentum == 0:
            return batch_weights
        return self.class_weights if self.class_weights.numel() else torch.ones_like(batch_weights)  # never trained

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1] if isinstance(logits, torch.Tensor) and logits.dim() >= 2 else None
        if num_classes is not None and self.class_weights.numel() == 0 and not functorch_transform_active():
            # (inside a transform a new tensor would be the transform's, dead once it returns)
            with torch.inference_mode(False):  # a normal tensor even when the first call is inside inference_mode
                self.class_weights = torch.ones(num_classes, device=logits.device, dtype=self.class_weights.dtype)
        if num_classes is not None and self.class_weights.numel() not in (num_classes, 0):
            raise ValueError(
                f"RecallLoss holds weights for {self.class_weights.numel()} classes, "
                f"got logits with {num_classes} (shape {tuple(logits.shape)})"
            )
        return SF.recall_family(logits, target, choose_weights=self._choose_weights,
                                sync_distributed=self.sync_distributed, **self._common())

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, " + super().extra_repr()
