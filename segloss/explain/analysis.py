"""Curves and gradient surfaces of the losses, computed by autograd through :mod:`segloss.functional`.

Nothing here re-implements a formula: every value is the registry loss itself evaluated on a
synthetic batch of pixels whose softmax probabilities are chosen, and every gradient is
autograd's, on exactly the code path a training loop uses.

The synthetic pixel: C classes, the true class (index 0) has probability ``p_t``; the rest
``1 - p_t`` goes to the false classes either ``"even"``-ly or mostly (``CONFUSING_SHARE``) to one
``"confusing"`` class with the remainder spread evenly. Logits are ``log p`` in float64, so
the loss sees exactly these probabilities. A region loss (Dice, Lovász...) has no loss per
pixel; it sees an image of :data:`REGION_PIXELS` such pixels, all of the true class (see
:func:`pixel_loss`): soft Dice then gives ``(1 - p_t) / (1 + p_t)``, Jaccard and Lovász
``1 - p_t`` (up to smoothing).

The boundary loss weighs probabilities by distances to region boundaries, so its synthetic pixel
also has a place: it lies :data:`BOUNDARY_DEPTH` pixels inside its class's region, with the
region of the class after it (its confusing class) just across the boundary; it is a foreground
pixel (class 1, see :func:`picture_class`), since the authors score the foreground only.
:func:`boundary_shift_losses` gives the picture the boundary loss was made for: the loss of a
prediction whose region boundary is off by ``k`` pixels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from segloss.losses._checks import holds_index
from segloss.losses._reduction import pixel_weights
from segloss.losses.ohem import ohem_mask
from segloss.losses import functional as SF
from segloss.losses import modules
from segloss.losses.registry import LOSSES, create_loss

SPREADS = ("even", "confusing")
CONFUSING_SHARE = 0.9
COMPONENTS = ("norm", "true", "false")
WELL_CLASSIFIED = 0.5  # p_t above this: the argmax is the true class whatever C is
REGION_PIXELS = 100  # a region loss's synthetic image: this many pixels of one class, all alike
BOUNDARY_DEPTH = 2  # the boundary loss's synthetic pixel: this many pixels inside its region
BOUNDARY_LOSSES = ("boundary", "dice_boundary")
SHIFT_HALF_WIDTH, SHIFT_CONFIDENCE = 12, 0.95  # boundary_shift_losses' square and prediction

PixelLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def probability_grid(num_points: int = 256, low: float = 1e-3, high: float = 1 - 1e-3) -> np.ndarray:
    """``num_points`` values of ``p_t`` in ``[low, high]``, denser near both ends (logit-spaced)."""
    if num_points < 2 or not 0 < low < high < 1:
        raise ValueError(f"need num_points >= 2 and 0 < low < high < 1, got {num_points}, {low}, {high}")
    logit = np.linspace(np.log(low / (1 - low)), np.log(high / (1 - high)), num_points)
    return 1.0 / (1.0 + np.exp(-logit))


def synthetic_probabilities(p_t: Sequence[float] | np.ndarray, num_classes: int, spread: str = "even") -> torch.Tensor:
    """Softmax probabilities ``(K, C)`` float64 with ``p[:, 0] = p_t`` and ``1 - p_t`` spread as said.

    Raises:
        ValueError: ``num_classes < 2``, unknown ``spread``, or ``p_t`` outside ``(0, 1)``.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {SPREADS}, got {spread!r}")
    p_t = torch.as_tensor(np.asarray(p_t, dtype=np.float64))
    if p_t.dim() != 1 or not bool(((p_t > 0) & (p_t < 1)).all()):
        raise ValueError("p_t must be a 1-D sequence of values strictly between 0 and 1")
    rest = (1.0 - p_t)[:, None]
    n_false = num_classes - 1
    if spread == "even" or n_false == 1:
        false = rest.expand(-1, n_false) / n_false
    else:
        others = rest * (1 - CONFUSING_SHARE) / (n_false - 1)
        false = torch.cat([rest * CONFUSING_SHARE, others.expand(-1, n_false - 1)], dim=1)
    return torch.cat([p_t[:, None], false], dim=1)


def picture_class(name: str) -> int:
    """The synthetic pixel's true class for loss ``name``: 1 (a foreground pixel) for the boundary
    losses, whose authors score the foreground classes only; 0 for every other loss (for them it
    does not matter, except through class weights)."""
    return 1 if name in BOUNDARY_LOSSES else 0


def boundary_pixel_loss(foreground_only: bool = True, depth: float = BOUNDARY_DEPTH) -> PixelLoss:
    """The boundary loss of synthetic pixels, ``(logits (K, C), target (K,)) -> (K,)``.

    Each pixel lies ``depth`` pixels inside the region of its class ``t`` (signed distance
    ``phi_t = -depth``, the authors' convention where a region's edge pixel has 0), the region of
    class ``(t + 1) mod C`` starts just across the boundary (``phi = depth + 1``) and the other
    classes are absent (``phi = 0``). The value is :func:`segloss.functional.boundary_loss` with
    these distance maps.
    """
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not 0 <= depth <= 1000:
        raise ValueError(f"depth must be a number in [0, 1000], got {depth!r}")

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        phi = torch.zeros_like(logits)
        rows = torch.arange(len(target))
        phi[rows, target] = -float(depth)
        phi[rows, (target + 1) % num_classes] = float(depth) + 1.0
        return SF.boundary_loss(logits, target, distance_maps=phi, foreground_only=foreground_only,
                                reduction="none")
    return loss


def pixel_loss(name: str, params: dict | None = None, *, class_counts=None, recall: float = 0.0,
               depth: float = BOUNDARY_DEPTH, region_pixels: int = REGION_PIXELS) -> PixelLoss:
    """The registry loss ``name`` as a function ``(logits (K, C), target (K,)) -> (K,)``.

    Pixel-wise losses give each pixel's loss. Learnable Dual Focal parameters are held at their
    values. Recall loss weighs a pixel by ``1 - R`` of its class, which depends on the batch,
    not on the pixel's ``p_t``: here the recall is fixed at ``recall`` and the same
    :func:`~segloss.functional.recall_weighted_ce` as in training is used.

    Region losses (``spec.pixelwise`` False) have no per-pixel loss. For them entry k is the
    loss of an image of ``region_pixels`` pixels, all of class ``target[k]`` with logits
    ``logits[k]``: one region, scored on its own (``per_image``). Its gradient with respect to
    ``logits[k]`` is the sum over the region's pixels, i.e. ``region_pixels`` times one pixel's
    gradient: on the scale of a pixel-wise loss's per-pixel gradient (a pixel-wise loss gives
    the same values and gradients either way).

    The boundary loss's pixel lies ``depth`` pixels inside its region (see
    :func:`boundary_pixel_loss`); the region image of Dice + boundary has no other class, so its
    distances are those to the image's border.
    """
    params = {k: v for k, v in (params or {}).items() if k != "learnable"}
    if name == "boundary":
        create_loss(name, **params)  # the parameters checked as everywhere else
        return boundary_pixel_loss(params.get("classes", "foreground") == "foreground", depth)
    if name == "recall":
        def recall_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            weights = torch.full((logits.shape[1],), 1.0 - recall, dtype=logits.dtype)
            return SF.recall_weighted_ce(logits, target, weights, reduction="none")
        return recall_ce
    spec = LOSSES[name]
    kwargs = {"class_counts": class_counts} if spec.needs_class_counts else {}
    if spec.pixelwise:
        return create_loss(name, reduction="none", **params, **kwargs).double()
    module = create_loss(name, **{**params, "per_image": "image"}, **kwargs).double()
    return uniform_region_loss(module, region_pixels)


def uniform_region_loss(module: nn.Module, region_pixels: int = REGION_PIXELS) -> PixelLoss:
    """``(logits (K, C), target (K,)) -> (K,)``: entry k is ``module``'s loss on an image of
    ``region_pixels`` pixels, all with logits ``logits[k]`` and label ``target[k]``.

    ``module`` is a registry module with reduction "mean" (region losses with
    ``per_image=True``); see :func:`per_image_loss`.
    """
    if isinstance(region_pixels, bool) or not isinstance(region_pixels, int) or region_pixels < 1:
        raise ValueError(f"region_pixels must be a positive int, got {region_pixels!r}")

    boundary = _boundary_part(module)

    def region_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        z = logits[:, :, None].expand(-1, -1, region_pixels)
        t = target[:, None].expand(-1, region_pixels)
        maps = None
        if boundary is not None:  # one distance transform per class present, not per image (every image is uniform)
            classes, inverse = target.unique(return_inverse=True)
            maps = SF.signed_distance_maps(classes[:, None].expand(-1, region_pixels), logits.shape[1],
                                           ignore_index=boundary.ignore_index)[inverse].to(logits.dtype)
        return per_image_loss(module, z, t, maps)
    return region_loss


def _boundary_part(module: nn.Module) -> modules.BoundaryLoss | None:
    """The :class:`~segloss.BoundaryLoss` in ``module`` (itself or a part of its sum), if any."""
    if isinstance(module, modules._WeightedSum):
        return next(filter(None, (_boundary_part(part) for _, part in module.parts())), None)
    return module if isinstance(module, modules.BoundaryLoss) else None


def per_image_loss(module: nn.Module, logits: torch.Tensor, target: torch.Tensor,
                   distance_maps: torch.Tensor | None = None) -> torch.Tensor:
    """Each image's own loss under ``module`` (a registry module built with reduction "mean").

    Pixel-wise losses: the image's per-pixel map summed and divided as "mean" divides (by its
    valid pixels, OHEM's kept ones, or their class weights when the loss has ``weight``). Region
    losses built with ``per_image=True``: the weighted mean of the image's per-class losses over
    the classes present in it. Sums: the sum of their parts.

    Args:
        logits: float ``(N, C, *S)``. target: integer ``(N, *S)``.
        distance_maps: ``(N, C, *S)``, the boundary loss's maps of ``target`` (computed if None).

    Returns:
        ``(N,)`` in the logits' dtype, differentiable.
    """
    if isinstance(module, modules._WeightedSum):  # Dice + CE, GDL + boundary...: the sum of their parts
        return sum(weight * per_image_loss(part, logits, target, distance_maps) for weight, part in module.parts())
    each = copy.copy(module)  # same parameters and buffers, its own reduction
    each.reduction = "none"
    given = (distance_maps,) if distance_maps is not None and isinstance(module, modules.BoundaryLoss) else ()
    values = each(logits, target, *given)
    if isinstance(module, modules._RegionLoss):
        if not module.per_image:
            raise ValueError("per_image_loss needs a region loss built with per_image=True")
        if values.dim() == 1:  # a loss of the whole image, with no per-class terms (generalized Dice)
            return values
        present = ~values.isnan()
        w = present.to(values.dtype) * (1.0 if module.weight is None else module.weight.to(values.dtype))
        return torch.where(present, values, 0.0).mul(w).sum(1) / w.sum(1).clamp_min(1e-12)
    target = holds_index(target, module.ignore_index)
    counted = target != module.ignore_index
    if isinstance(module, modules.OhemCrossEntropyLoss):  # its "mean" divides by the kept pixels
        counted = ohem_mask(logits, target, threshold=module.threshold, min_kept=module.min_kept,
                            ignore_index=module.ignore_index)
    per_pixel = pixel_weights(target, counted, module.weight, values.dtype)
    flat = per_pixel.reshape(len(target), -1)
    return values.reshape(len(values), -1).sum(1) / flat.sum(1).clamp_min(1e-12)


def loss_curve(loss: PixelLoss, p_t: np.ndarray, num_classes: int, spread: str = "even",
               true_class: int = 0) -> np.ndarray:
    """Loss of one pixel against its true-class probability: ``(K,)`` float64.

    ``true_class`` picks which class index the pixel belongs to (it matters only for losses
    with class weights); the probabilities are rotated so that class holds ``p_t``.
    """
    if not 0 <= true_class < num_classes:
        raise ValueError(f"true_class must lie in [0, {num_classes}), got {true_class}")
    probs = torch.roll(synthetic_probabilities(p_t, num_classes, spread), true_class, dims=1)
    target = torch.full((len(probs),), true_class, dtype=torch.long)
    with torch.no_grad():
        return loss(probs.log(), target).numpy()


def dual_focal_terms(p_t: np.ndarray, num_classes: int, spread: str = "even", *, alpha: float = 1.0,
                     beta: float = 1.0, gamma: float = 1.0, rho: float = 1.0) -> dict[str, np.ndarray]:
    """The three terms of Dual Focal Loss against ``p_t``, each from the loss itself.

    ``true-class CE`` is DFL with alpha = beta = 0; the false-class and focal-style terms are
    what beta and alpha add to it. Their sum is the full loss.
    """
    probs = synthetic_probabilities(p_t, num_classes, spread)
    z, target = probs.log(), torch.zeros(len(probs), dtype=torch.long)
    def dfl(a: float, b: float) -> np.ndarray:
        return SF.dual_focal_loss(z, target, alpha=a, beta=b, gamma=gamma, rho=rho, reduction="none").numpy()
    ce = dfl(0.0, 0.0)
    return {"true-class CE": ce, "false-class term": dfl(0.0, beta) - ce, "focal-style term": dfl(alpha, 0.0) - ce}


def logit_gradients(loss: PixelLoss, p_t: np.ndarray, num_classes: int, spread: str = "even",
                    true_class: int = 0) -> np.ndarray:
    """``dL/dz`` of each synthetic pixel, ``(K, C)`` float64, columns ordered from the true class:
    column 0 the true class, column 1 the most confusing one.

    ``true_class`` is the class index the pixel has for the loss (see :func:`picture_class`); the
    probabilities are rotated to it and the gradient rotated back.
    """
    if not 0 <= true_class < num_classes:
        raise ValueError(f"true_class must lie in [0, {num_classes}), got {true_class}")
    probs = torch.roll(synthetic_probabilities(p_t, num_classes, spread), true_class, dims=1)
    logits = probs.log().requires_grad_()
    loss(logits, torch.full((len(probs),), true_class, dtype=torch.long)).sum().backward()
    return torch.roll(logits.grad, -true_class, dims=1).numpy()


def gradient_magnitude(grads: np.ndarray, component: str = "norm") -> np.ndarray:
    """Reduce ``(..., C)`` logit gradients to one magnitude per pixel.

    ``"norm"``: Euclidean norm over classes; ``"true"``: ``|dL/dz_t|``; ``"false"``:
    ``|dL/dz_c|`` of the most probable false class (class 1 of the synthetic pixel).
    """
    if component == "norm":
        return np.linalg.norm(grads, axis=-1)
    if component == "true":
        return np.abs(grads[..., 0])
    if component == "false":
        return np.abs(grads[..., 1])
    raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")


def gradient_surface(name: str, p_t: np.ndarray, sweep: str, values: Sequence[float], num_classes: int,
                     spread: str = "even", component: str = "norm", params: dict | None = None,
                     class_counts=None) -> np.ndarray:
    """Gradient magnitude over ``p_t`` (columns) and a swept parameter (rows): ``(len(values), K)``;
    ``component``'s entry of :func:`gradient_surfaces` (see there).
    """
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
    return gradient_surfaces(name, p_t, sweep, values, num_classes, spread, params, class_counts)[component]


def gradient_surfaces(name: str, p_t: np.ndarray, sweep: str, values: Sequence[float], num_classes: int,
                      spread: str = "even", params: dict | None = None, class_counts=None) -> dict[str, np.ndarray]:
    """Gradient magnitudes over ``p_t`` (columns) and a swept parameter (rows), every component of
    :func:`gradient_magnitude` from one set of gradients (a page switching components recomputes nothing).

    Args:
        name: registry loss name.
        p_t: ``(K,)`` true-class probabilities.
        sweep: the parameter swept along the rows (e.g. ``"gamma"``; ``"recall"`` for recall loss,
            ``"depth"`` for the boundary loss).
        values: its values.
        num_classes, spread: the synthetic pixel (see module docstring).
        params: the loss's other parameters.

    Returns:
        component -> float32 ``(len(values), K)``, ready for a heatmap.
    """
    rows = []
    for value in values:
        if sweep == "recall":
            loss = pixel_loss(name, params, class_counts=class_counts, recall=float(value))
        elif sweep == "depth":
            loss = pixel_loss(name, params, depth=float(value))
        else:
            loss = pixel_loss(name, {**(params or {}), sweep: float(value)}, class_counts=class_counts)
        rows.append(logit_gradients(loss, p_t, num_classes, spread, picture_class(name)))
    grads = np.asarray(rows)  # (len(values), K, C)
    return {component: gradient_magnitude(grads, component).astype(np.float32) for component in COMPONENTS}


OHEM_GRID_NOTE = ("OHEM's min_kept treats this chart's p_t values as one batch of pixels, one pixel per p_t, "
                  "and always keeps that share of them, the hardest (smallest p_t). So where the threshold keeps "
                  "fewer, the curve runs on past it, to the p_t below which that share of the chart's values lie. "
                  "They are spaced evenly in log-odds, not in p_t: min_kept 0.5 reaches p_t = 0.5, the default "
                  "0.1 only about 0.004. On a real batch the cut depends on that batch's p_t.")


def zero_gradient_note(p_t: np.ndarray, curves: dict[str, np.ndarray]) -> str | None:
    """A sentence naming the curves that are exactly 0 somewhere and from which ``p_t`` on (a log
    axis cannot draw 0, so those curves just stop), or zero everywhere (to rounding: a whole curve
    within 1e-9 of the largest value of all ``curves``), or None. E.g. OHEM's threshold drops easy
    pixels; Focal Tversky with beta = 0 scores a one-class image as perfect whatever p_t (its
    gradient: rounding noise of 1e-12). A focal tail of 1e-15 is a value, drawn as one."""
    scale = max((float(np.max(np.abs(values))) for values in curves.values() if np.size(values)), default=0.0)
    parts = []
    for name, values in curves.items():
        values = np.abs(np.asarray(values))
        zero = values == 0
        if (values <= 1e-9 * scale).all():
            parts.append(f"{name} (at every p_t)")
        elif zero.any():
            first = float(np.asarray(p_t)[zero.argmax()])
            where = (f"from p_t = {first:.3g} on" if zero[zero.argmax():].all()
                     else f"at {zero.mean():.0%} of the p_t values")
            parts.append(f"{name} ({where})")
    if not parts:
        return None
    return ("Zero, so not drawn on the log axis (the curve stops): " + "; ".join(parts) + ". These pixels "
            "get no push at all.")


def sweepable_parameters(name: str) -> list[str]:
    """Parameters of a loss that shape its gradient and a surface can sweep.

    ``recall`` (the batch recall ``R``) for recall loss; ``depth`` (how far inside its region
    the pixel lies) for the boundary loss; none for (weighted) cross-entropy, whose only
    parameters pick class weights.
    """
    if name == "recall":
        return ["recall"]
    if name == "boundary":
        return ["depth"]
    if LOSSES[name].needs_class_counts:
        return []
    return [p.name for p in LOSSES[name].params if p.kind == "float" and not p.schedule_only
            and p.name not in NO_EFFECT_HERE.get(name, ())]


# Parameters that change nothing on the pages' one-class test image (region losses score the classes
# present only, and that image has no false positives), with the reason a page gives for leaving them out.
NO_EFFECT_HERE = {"tversky": ("alpha",), "focal_tversky": ("alpha",)}
NO_EFFECT_REASON = ("alpha (the weight of false positives) is not offered: the region scored here is an image of "
                    "one class, which has no false positives, so alpha changes nothing (every row would be alike).")


# The Gradients page's sweeps: the usual range of each swept value (within a loss's own bounds), and
# the round values its slices are offered at.
SWEEP_RANGES = {"gamma": (0.0, 5.0), "alpha": (0.0, 5.0), "beta": (0.0, 5.0), "rho": (1.0, 3.0), "recall": (0.0, 0.99),
                "smooth": (0.0, 50.0), "dice_weight": (0.0, 5.0), "threshold": (0.05, 1.0), "min_kept": (0.0, 1.0),
                "label_smoothing": (0.0, 0.5), "depth": (0.0, 10.0), "boundary_weight": (0.0, 1.0)}
ROUND_VALUES = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
PREFERRED_SLICES = {"gamma": (0.0, 0.5, 1.0, 2.0, 5.0), "recall": (0.0, 0.25, 0.5, 0.75, 0.9),
                    "rho": (1.0, 1.25, 1.5, 2.0, 3.0), "smooth": (0.0, 1.0, 5.0, 10.0, 50.0),
                    "depth": (0.0, 1.0, 2.0, 5.0, 10.0), "boundary_weight": (0.0, 0.01, 0.1, 0.5, 1.0)}


def takes_values(name: str, param: str, values: Sequence[float]) -> bool:
    """Whether loss ``name`` has the parameter ``param`` and its bounds take every one of ``values``
    (the Loss curves page overlays gammas only on the losses whose gamma takes them all)."""
    spec = LOSSES[name]
    return param in spec.defaults and spec.param(param).low <= min(values) and max(values) <= spec.param(param).high


def sweep_range(name: str, sweep: str) -> tuple[float, float]:
    """The range a gradient surface of loss ``name`` sweeps ``sweep`` over (one of
    :func:`sweepable_parameters`): the usual range of :data:`SWEEP_RANGES`, within the parameter's
    range in the app (a parameter without a usual range: that range)."""
    spec = LOSSES[name]
    bounds = spec.param(sweep).slider_range if sweep in spec.defaults else None  # the app's range of it
    low, high = SWEEP_RANGES.get(sweep) or bounds
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return low, high


def sweep_grid(low: float, high: float, sweep: str, count: int = 64) -> tuple[tuple[float, ...], list[int]]:
    """The swept values (``count`` evenly spaced in ``[low, high]``, rounded to 6 decimals, plus the
    round values) and the indices of up to five round values to slice at (gamma: 0, 0.5, 1, 2, 5)."""
    wanted = [v for v in PREFERRED_SLICES.get(sweep, (0.0, 0.5, 1.0, 2.0, 5.0)) if low <= v <= high]
    if len(wanted) < 3:
        wanted = [v for v in ROUND_VALUES if low <= v <= high][:5]
    values = tuple(sorted(set(np.round(np.linspace(low, high, count), 6).tolist()) | set(wanted)))
    return values, [values.index(v) for v in wanted]


def ratio_to_ce(curves: dict[str, np.ndarray], ce: np.ndarray) -> dict[str, np.ndarray]:
    """Each gradient curve over cross-entropy's at the same ``p_t`` (CE's floored at 1e-30)."""
    return {name: np.asarray(values) / np.maximum(ce, 1e-30) for name, values in curves.items()}


def ratio_at(p_t: np.ndarray, ratios: dict[str, np.ndarray], where: float) -> dict[str, float]:
    """Each curve's value at the grid point nearest ``p_t = where`` (e.g. 0.9, an easy pixel)."""
    index = int(np.argmin(np.abs(np.asarray(p_t) - where)))
    return {name: float(values[index]) for name, values in ratios.items()}


def region_push_note(title: str, p_t: np.ndarray, own: np.ndarray, ce: np.ndarray, setting: str = "") -> str:
    """What the Gradients page draws for the region loss ``title`` and how its gradient curve ``own``
    compares with cross-entropy's ``ce`` (both against ``p_t``) at its two ends, in words read off
    the curves: whether it vanishes for confident
    mistakes (under 5% of CE's at the smallest ``p_t``: soft Dice, Jaccard, Lovász) or keeps a
    pixel-wise part's push (Dice + CE), and whether near ``p_t = 1`` it fades as CE's does (the
    ratio at the largest ``p_t`` within 1.5x of the one at 0.9) or more slowly (Focal Tversky with
    an exponent below 1) or faster. ``setting`` names the parameter values ``own`` was drawn at
    (e.g. ``"gamma = 0.75"``), when the page sweeps one."""
    ratio = ratio_to_ce({"own": own}, ce)["own"]
    left, easy, right = ratio[0], ratio_at(p_t, {"own": ratio}, 0.9)["own"], ratio[-1]
    where_left, where_right = f"p_t = {float(p_t[0]):.3g}", f"p_t = {float(p_t[-1]):.3g}"
    setup = (f"here an image of {REGION_PIXELS} pixels of one class, every pixel at p_t, and the gradient of its "
             "loss with respect to their shared logits (the sum over the region, on the scale of one pixel's "
             "gradient under a pixel-wise loss). ")
    if left < 0.05:
        setup = f"{title} scores regions, not pixels: " + setup
        start = (f"Its push vanishes for confident mistakes ({left:.1%} of cross-entropy's at {where_left}), where "
                 "cross-entropy's is largest")
    else:
        setup = f"{title} scores regions, and pixels in its pixel-wise part: " + setup
        start = f"Its pixel-wise part keeps pushing confident mistakes ({left:.0%} of cross-entropy's at {where_left})"
    if setting:
        start = f"At {setting}: " + start[0].lower() + start[1:]
    if right > 1.5 * easy:
        end = f"near p_t = 1 it falls off more slowly than cross-entropy's ({right:.2g}x at {where_right})"
    elif right < easy / 1.5:
        end = f"near p_t = 1 it fades faster than cross-entropy's ({right:.2g}x at {where_right})"
    else:
        end = "near p_t = 1 it fades as cross-entropy's does"
    return f"{setup}{start}; {end}."


def first_to_stop(curves: dict[str, np.ndarray]) -> list[str]:
    """The curves' names ordered by where each first hits exactly 0 (earliest first; one that never
    does last), or ``[]`` when none does: the drawing order that keeps every stop visible where
    curves coincide until they stop (OHEM's thresholds cut CE's gradient at different ``p_t``)."""
    stops = {name: int(np.argmax(values == 0)) if (values == 0).any() else len(values)
             for name, values in curves.items()}
    if not any((np.asarray(values) == 0).any() for values in curves.values()):
        return []
    return sorted(curves, key=stops.get)


def gradient_map(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], logits: torch.Tensor,
                 target: torch.Tensor, component: str = "norm", *, ignore_index: int | None = None) -> torch.Tensor:
    """Where a loss pushes the network: ``|dL/dz|`` at every pixel, for any loss.

    Region losses (Dice, Lovász...) have no per-pixel loss, but every loss has a per-pixel
    gradient. ``loss`` is called on a detached copy of ``logits`` (float32 or float64) and must return a
    scalar. The gradient of a ``"mean"`` reduction (a module whose ``reduction`` is not
    ``"sum"``, or a plain function) is multiplied by the number of valid pixels, so that a
    pixel-wise loss without class weights gives exactly each pixel's own ``|dl_i/dz_i|`` and
    the maps of different losses and batch sizes share one scale (OHEM, whose "mean" divides by
    the kept pixels ``|K|``, shows ``|V| / |K|`` times its pixels' own); a ``"sum"`` is taken as is.
    It also works under ``torch.inference_mode``. The loss is called as in training: a module in
    training mode updates its running state (``RecallLoss(momentum > 0)``'s weights, as BatchNorm's
    statistics would); call ``loss.eval()`` first to leave it as it is (the app does).

    Args:
        loss: e.g. ``segloss.create_loss("dice")``.
        logits: float ``(N, C, *S)``. target: integer ``(N, *S)``.
        component: ``"norm"`` (over all classes), ``"true"`` (the target class's logit) or
            ``"false"`` (the largest false-class component).
        ignore_index: label of ignored pixels; default the loss's ``ignore_index`` attribute, or 255.

    Returns:
        float32 ``(N, *S)`` (float64 for float64 logits), 0 where the loss does not depend on
        the pixel (e.g. ignored).

    Raises:
        ValueError: the loss did not return a scalar, or an unknown component.
    """
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
    with torch.inference_mode(False), torch.enable_grad():  # also under inference_mode (a validation loop)
        z = logits.detach()
        z = (z if z.dtype == torch.float64 else z.float())
        z = (z.clone() if z.is_inference() else z).requires_grad_()  # inference tensors take no gradient
        target = target.clone() if target.is_inference() else target
        value = loss(z, target)
        if value.dim() != 0:
            raise ValueError(f"the loss must return a scalar for a gradient map, got shape {tuple(value.shape)}; "
                             "build it with reduction='mean' or 'sum'")
        (grad,) = torch.autograd.grad(value, z)
    if ignore_index is None:
        ignore_index = getattr(loss, "ignore_index", 255)
    if getattr(loss, "reduction", "mean") != "sum":
        grad = grad * int((holds_index(target, ignore_index) != ignore_index).sum())
    if component == "norm":
        return grad.norm(dim=1)
    target = holds_index(target, ignore_index)
    safe = torch.where(target == ignore_index, 0, target).long().unsqueeze(1)
    true = grad.gather(1, safe).squeeze(1)
    if component == "true":
        return true.abs()
    return grad.abs().scatter(1, safe, 0.0).amax(dim=1)


def boundary_shift_losses(losses: dict[str, nn.Module], shifts: Sequence[int], num_classes: int, *,
                          size: int = 48, half_width: int = SHIFT_HALF_WIDTH,
                          confidence: float = SHIFT_CONFIDENCE) -> dict[str, np.ndarray]:
    """Each loss of a prediction whose region boundary is off by ``k`` pixels, for every ``k``.

    The image: ``size x size`` pixels of background (class 0) with a square of class 1, side
    ``2 * half_width``, in the middle. The prediction: the same square grown by ``k`` pixels on
    every side (shrunk for negative ``k``), each pixel giving ``confidence`` to its predicted class
    and the rest evenly to the others. Every value is the module's own (reduction "mean"): a
    pixel-wise loss grows with the number of wrong pixels, the boundary loss with their distances
    to the true boundary, so roughly with the square of ``k``.

    Returns:
        ``{label: (len(shifts),) float64}``.

    Raises:
        ValueError: a shift that empties the square or leaves the image, or bad sizes.
    """
    if not 0 < confidence < 1 or num_classes < 2 or not 0 < half_width < size // 2:
        raise ValueError(f"need 0 < confidence < 1, num_classes >= 2, 0 < half_width < size / 2; got {confidence}, "
                         f"{num_classes}, {half_width}, {size}")
    shifts = [int(k) for k in shifts]
    if any(not -half_width < k < size // 2 - half_width for k in shifts):
        raise ValueError(f"shifts must lie in ({-half_width}, {size // 2 - half_width}), got {shifts}")
    centre = size // 2

    def square(grow: int) -> torch.Tensor:
        mask = torch.zeros(size, size, dtype=torch.long)
        low, high = centre - half_width - grow, centre + half_width + grow
        mask[low:high, low:high] = 1
        return mask

    target = square(0)[None].expand(len(shifts), -1, -1)
    predicted = torch.stack([square(k) for k in shifts])
    rest = (1 - confidence) / (num_classes - 1)
    probs = torch.full((len(shifts), num_classes, size, size), rest, dtype=torch.float64)
    probs.scatter_(1, predicted[:, None], confidence)
    logits = probs.log()
    out = {}
    with torch.no_grad():
        for label, module in losses.items():
            module = copy.deepcopy(module).double()
            out[label] = np.array([float(module(logits[i:i + 1], target[i:i + 1]))
                                   for i in range(len(shifts))])
    return out
