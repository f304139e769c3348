"""Other libraries' focal-loss and "mean" conventions, reproduced in plain torch.

"Focal loss" names several different functions. On the same logits ``z`` ``(N, C, *S)`` and
labels ``y`` ``(N, *S)`` the libraries differ in

- **the probability**: softmax over the classes (one focal term per pixel, on its true class)
  or one-vs-all sigmoid (``C`` binary focal terms per pixel: the true class is a positive, every
  other class a negative);
- **alpha**: a global scale (segloss, scalar), ``1 - alpha`` for class 0 and ``alpha`` for the
  rest (kornia; MONAI with softmax), ``alpha`` for positives and ``1 - alpha`` for negatives
  (torchvision; MONAI with sigmoid; segmentation_models_pytorch), or a per-class vector;
- **what "mean" divides by**: the valid pixels ``|V|`` (segloss; MONAI when ``ignore_index`` is
  set), every element ``N * C * prod(S)``, ignored pixels included (torchvision, kornia, MONAI
  without ``ignore_index``), or a sum over classes of per-class means (smp).

Weighted cross-entropy's "mean" divides by ``sum_{i in V} w_{y_i}`` in torch, by ``|V|`` in most
hand-written code; and "Dual Focal Loss" names three different formulas (see the functions): Hossain et al. 2021,
Tao et al. 2023, and a third-party port of Hossain et al.'s withdrawn 2019 preprint.

Each function mirrors one library version's formula and reduction, without importing it. They
take ``logits`` float ``(N, C, *S)`` (float64 stays float64, anything else is computed in
float32) and integer ``target`` ``(N, *S)`` in ``[0, C)`` or ``ignore_index``, and return a
scalar (``reduction`` ``"mean"`` or ``"sum"``) unless said otherwise. Libraries without an
``ignore_index`` are given the usual wrapper: ignored pixels contribute 0 but still count
wherever the library's mean counts every element. The segloss side is :mod:`segloss.functional`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from segloss.losses._checks import check_logits_target, check_number, holds_index

SCALAR_REDUCTIONS = ("mean", "sum")
PORT_2019_EPS = 1e-5


def _prepare(logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None, reduction: str,
             allowed: Sequence[str] = SCALAR_REDUCTIONS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate the inputs; return ``(z, safe, valid)``.

    ``z``: the logits in the compute dtype; ``safe``: int64 labels with ignored ones set to 0;
    ``valid``: boolean ``(N, *S)``, False at ignored pixels (all True for ``ignore_index=None``).

    Raises:
        TypeError: as :func:`segloss.losses._checks.check_logits_target`; a non-int ``ignore_index``.
        ValueError: bad shapes or labels, NaN/Inf logits, a ``reduction`` not in ``allowed``.
    """
    if reduction not in allowed:
        raise ValueError(f"reduction must be one of {tuple(allowed)}, got {reduction!r}")
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise TypeError(f"ignore_index must be an int or None, got {ignore_index!r}")
    check_logits_target(logits, target, -1 if ignore_index is None else ignore_index)
    if ignore_index is None and target.numel() and bool((target < 0).any()):
        raise ValueError(f"target holds negative labels {torch.unique(target[target < 0])[:8].tolist()} "
                         "and ignore_index is None")
    z = logits if logits.dtype == torch.float64 else logits.float()
    if ignore_index is not None:
        target = holds_index(target, ignore_index)  # uint8 masks: compared as the number, not wrapped
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    return z, torch.where(valid, target, 0).long(), valid


def _one_hot(safe: torch.Tensor, valid: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """``(N, C, *S)`` one-hot labels, all-zero at ignored pixels."""
    return (F.one_hot(safe, num_classes).movedim(-1, 1) * valid.unsqueeze(1)).to(dtype)


def _sigmoid_focal_elements(z: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """Binary focal terms ``BCE(z, y) * (1 - p_t)^gamma`` per element, with ``1 - p_t = sigmoid(z (1 - 2y))``."""
    return F.binary_cross_entropy_with_logits(z, y, reduction="none") * torch.sigmoid(z * (1 - 2 * y)) ** gamma


def _softmax_focal(z: torch.Tensor, safe: torch.Tensor, gamma: float) -> torch.Tensor:
    """``-(1 - p_t)^gamma log p_t`` per pixel ``(N, *S)``, with ``1 - p_t = -expm1(log p_t)``."""
    log_pt = z.log_softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
    return -(-torch.expm1(log_pt)) ** gamma * log_pt


def torchvision_sigmoid_focal_loss(logits, target, *, alpha: float = 0.25, gamma: float = 2.0,
                                   ignore_index: int | None = 255, reduction: str = "mean") -> torch.Tensor:
    """torchvision 0.29 ``torchvision.ops.sigmoid_focal_loss(logits, one_hot(target))``.

    One-vs-all sigmoid, ``p = sigmoid(z_c)``, ``y_c`` one-hot, ``p_t = p y_c + (1 - p)(1 - y_c)``::

        FL_{i,c} = alpha_t (1 - p_t)^gamma BCE(z_{i,c}, y_{i,c}),  alpha_t = alpha y_c + (1 - alpha)(1 - y_c)

    ``alpha < 0`` disables the weighting (torchvision's convention). ``"mean"`` is ``loss.mean()``
    over all ``N * C * prod(S)`` elements. torchvision has no ``ignore_index``: ignored pixels are
    zeroed after the elementwise loss and still counted by the mean.

    Raises:
        TypeError, ValueError: bad inputs (see the module docstring), negative ``gamma``.
    """
    check_number(gamma, "gamma", low=0.0)
    z, safe, valid = _prepare(logits, target, ignore_index, reduction)
    y = _one_hot(safe, valid, z.shape[1], z.dtype)
    loss = _sigmoid_focal_elements(z, y, float(gamma))
    if alpha >= 0:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    loss = loss * valid.unsqueeze(1)
    return loss.mean() if reduction == "mean" else loss.sum()


def kornia_focal_loss(logits, target, *, alpha: float | None, gamma: float = 2.0,
                      ignore_index: int | None = 255, reduction: str = "mean") -> torch.Tensor:
    """kornia 0.9.0 ``kornia.losses.focal_loss(logits, target, alpha, gamma, reduction, ignore_index=...)``.

    Softmax focal on the true class, ``FL_i = -alpha_t (1 - p_t)^gamma log p_t`` with
    ``alpha_t = 1 - alpha`` for class 0 (background) and ``alpha`` for every other class (1 for
    ``alpha=None``). kornia's map has shape ``(N, C, *S)`` (zero off the true class) and
    ``"mean"`` divides its sum by all of its ``N * C * prod(S)`` elements, ignored pixels included:
    with ``alpha=None`` that is exactly segloss's mean times ``|V| / (N C prod(S))``, i.e. ``1 / C``
    when nothing is ignored. (kornia's own default ``ignore_index`` is -100.)

    Raises:
        TypeError, ValueError: bad inputs, negative ``gamma``, ``alpha`` outside ``[0, 1]``.
    """
    check_number(gamma, "gamma", low=0.0)
    if alpha is not None:
        check_number(alpha, "alpha", low=0.0, high=1.0)
    z, safe, valid = _prepare(logits, target, ignore_index, reduction)
    loss = torch.where(valid, _softmax_focal(z, safe, float(gamma)), 0.0)
    if alpha is not None:
        background, other = (torch.tensor(v, dtype=z.dtype) for v in (1.0 - alpha, alpha))
        loss = loss * torch.where(safe == 0, background, other)
    return loss.sum() / z.numel() if reduction == "mean" else loss.sum()


def _alpha_vector(alpha, num_classes: int, like: torch.Tensor) -> torch.Tensor:
    alpha = torch.as_tensor(alpha, dtype=like.dtype)
    if alpha.dim() != 1 or alpha.numel() != num_classes:
        raise ValueError(f"alpha must be a number or have one entry per class ({num_classes},), "
                         f"got shape {tuple(alpha.shape)}")
    return alpha.view(1, -1, *[1] * (like.dim() - 2))


def monai_focal_loss(logits, target, *, use_softmax: bool = False, alpha: float | Sequence[float] | None = None,
                     gamma: float = 2.0, ignore_index: int | None = None, reduction: str = "mean") -> torch.Tensor:
    """MONAI 1.6.1 ``FocalLoss(to_onehot_y=True, use_softmax=..., alpha, gamma, ignore_index, reduction)``.

    Labels go in as ``target[:, None]``; ``include_background=True`` and no ``weight``. Per element
    of the ``(N, C, *S)`` map, with one-hot ``y``:

    - ``use_softmax=True``: ``-y_c (1 - p_c)^gamma log p_c`` (only the true class is non-zero);
      scalar ``alpha``: ``1 - alpha`` for class 0 and ``alpha`` for the others (as kornia); a
      sequence: ``alpha_c`` per class.
    - ``use_softmax=False``: one-vs-all sigmoid focal, as :func:`torchvision_sigmoid_focal_loss`;
      scalar ``alpha`` weights positives ``alpha`` and negatives ``1 - alpha``; a sequence weights
      the positives of class c by ``alpha_c`` and the negatives by 1.

    Reduction: with ``ignore_index`` set, ``"mean"`` divides the sum by the number of valid pixels
    ``|V|`` (not by ``C |V|``); without it, by all ``N * C * prod(S)`` elements, a factor ``C``
    apart. ``"sum"`` first averages over the spatial positions of each image and class (over its
    valid pixels when ``ignore_index`` is set), then sums over images and classes.

    Raises:
        TypeError, ValueError: bad inputs, negative ``gamma``, an ``alpha`` vector of wrong length.
    """
    check_number(gamma, "gamma", low=0.0)
    z, safe, valid = _prepare(logits, target, ignore_index, reduction)
    num_classes, gamma = z.shape[1], float(gamma)
    y = _one_hot(safe, valid, num_classes, z.dtype)
    if use_softmax:
        loss = y * _softmax_focal(z, safe, gamma).unsqueeze(1)  # the true class's term, in its class's channel
        if alpha is not None:
            scalar = isinstance(alpha, (int, float))
            loss = loss * _alpha_vector([1.0 - alpha] + [alpha] * (num_classes - 1) if scalar else alpha,
                                        num_classes, z)
    else:
        loss = _sigmoid_focal_elements(z, y, gamma)
        if isinstance(alpha, (int, float)):
            loss = loss * (alpha * y + (1 - alpha) * (1 - y))
        elif alpha is not None:
            loss = loss * torch.where(y == 1, _alpha_vector(alpha, num_classes, z), 1.0)
    mask = valid.unsqueeze(1).to(z.dtype)
    loss = loss * mask
    eps = torch.finfo(torch.float32).eps  # MONAI clamps its float32 mask's count at this
    spatial = tuple(range(2, z.dim()))
    if reduction == "mean":
        return loss.sum() / mask.sum().clamp(min=eps) if ignore_index is not None else loss.mean()
    if ignore_index is not None:
        return (loss.sum(dim=spatial, keepdim=True) / mask.sum(dim=spatial, keepdim=True).clamp(min=eps)).sum()
    return loss.mean(dim=spatial).sum()


def smp_focal_loss(logits, target, *, alpha: float | None = None, gamma: float = 2.0,
                   ignore_index: int | None = None, reduction: str = "mean", version: str = "0.5") -> torch.Tensor:
    """segmentation_models_pytorch ``losses.FocalLoss("multiclass", alpha, gamma, ignore_index)``:
    ``version="0.5"`` as in 0.3 to 0.5.0 (the sum over classes, below), ``"0.6"`` as in 0.6.0, which
    takes the mean over classes instead: C times smaller (checked against both releases' code).

    Not softmax: for every class ``c`` a binary (one-vs-all) sigmoid focal loss of ``z_c`` against
    ``[y == c]`` (``focal_loss_with_logits``: ``(1 - p_t)^gamma BCE``, times ``alpha`` for positives and
    ``1 - alpha`` for negatives when ``alpha`` is given; the class default is None), reduced over
    the valid pixels, then **summed over classes**. So ``"mean"`` is
    ``sum_c mean_{i in V} FL_{i,c} = sum / |V|``: C times torchvision's mean when nothing is
    ignored. A batch with no valid pixel gives NaN, as in smp (the mean of nothing).

    Raises:
        TypeError, ValueError: bad inputs, negative ``gamma``.
    """
    check_number(gamma, "gamma", low=0.0)
    z, safe, valid = _prepare(logits, target, ignore_index, reduction)
    y = F.one_hot(safe, z.shape[1]).movedim(-1, 1).to(z.dtype)
    loss = _sigmoid_focal_elements(z, y, float(gamma))
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    if version not in ("0.5", "0.6"):
        raise ValueError(f"version must be '0.5' (smp 0.3 to 0.5.0) or '0.6', got {version!r}")
    per_class = (loss * valid.unsqueeze(1)).sum(dim=(0, *range(2, z.dim())))  # (C,)
    total = (per_class / valid.sum()).sum() if reduction == "mean" else per_class.sum()
    return total / z.shape[1] if version == "0.6" else total


def weighted_ce_mean_by_valid_pixels(logits, target, weight, *, ignore_index: int = 255) -> torch.Tensor:
    """The common hand-written weighted CE: ``sum_V w_y CE_i / |V|``.

    It differs from torch's weighted mean (``sum_V w_y CE_i / sum_V w_y``, segloss's
    ``cross_entropy``) by exactly ``sum_V w_y / |V|``, a factor that changes with each batch's
    class mix (like a learning rate that moves with the data). ``weight``: ``(C,)``.
    """
    z, safe, valid = _prepare(logits, target, ignore_index, "mean")
    w = torch.as_tensor(weight, dtype=z.dtype)
    if w.dim() != 1 or w.numel() != z.shape[1]:
        raise ValueError(f"weight must have shape ({z.shape[1]},), got {tuple(w.shape)}")
    w_pixel = torch.where(valid, w[safe], 0.0)
    nll = -z.log_softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
    return (w_pixel * nll).sum() / valid.sum()


def _reduce_pixels(loss: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    loss = torch.where(valid, loss, 0.0)
    if reduction == "none":
        return loss
    return loss.sum() / valid.sum().clamp_min(1) if reduction == "mean" else loss.sum()


def tao_dual_focal_loss(logits, target, *, gamma: float = 2.0, ignore_index: int | None = 255,
                        reduction: str = "mean") -> torch.Tensor:
    """"Dual Focal Loss for Calibration" (Tao, Dong, Xu; ICML 2023, arXiv:2305.13665).

    A focal loss for calibration, unrelated to Hossain et al.'s::

        DFL_i = -(1 - p_t + p_j)^gamma log p_t,   p_j = max {p_c : p_c < p_t}  (0 if no class is below p_t)

    ``p_j`` is the largest probability ranked *below* the true class, as in the authors' code
    (github Linwei94/ICML2023-DualFocalLoss, ``Losses/dual_focal_loss.py``: a strict ``<`` mask then
    top-1). When the true class is the argmax, ``p_j`` is the largest false-class probability and the
    factor is ``1 - (p_t - p_j)``: one minus the margin; otherwise ``p_j`` is the largest
    probability under ``p_t`` (so the loss jumps where ``p_t`` passes a false class). Here ``"mean"`` averages over valid pixels; the authors' class sums by default
    (``size_average=False``) and defaults to ``gamma=0``. ``reduction="none"`` gives ``(N, *S)``.

    Raises:
        TypeError, ValueError: bad inputs, negative ``gamma``.
    """
    check_number(gamma, "gamma", low=0.0)
    z, safe, valid = _prepare(logits, target, ignore_index, reduction, (*SCALAR_REDUCTIONS, "none"))
    log_p = z.log_softmax(1)
    p = log_p.exp()
    log_pt = log_p.gather(1, safe.unsqueeze(1))
    p_j = torch.where(p < log_pt.exp(), p, 0.0).amax(dim=1)
    log_pt = log_pt.squeeze(1)
    return _reduce_pixels(-(1 - log_pt.exp() + p_j) ** float(gamma) * log_pt, valid, reduction)


def port_2019_dual_focal_loss(logits, target, *, eps: float = PORT_2019_EPS, ignore_index: int | None = 255,
                              reduction: str = "mean") -> torch.Tensor:
    """The 2019 public port of the withdrawn arXiv:1909.11932 (github CoinCheung/pytorch-loss, ``dual_focal_loss.py``).

    Per pixel, with softmax ``p`` and one-hot ``y``::

        L_i = -sum_c log(eps + 1 - (p_c - y_c)^2),   eps = 1e-5

    It has no separate cross-entropy term, yet its true-class term ``-log(1 - (1 - p_t)^2) =
    -log p_t - log(2 - p_t)`` grows like CE as ``p_t -> 0``; only ``eps`` bounds it (``-C log eps``
    per pixel at most, about 11.5 a class). At ``p = y`` it is
    ``-C log(1 + eps)``, about ``-5e-5`` (0 but for its epsilon).
    ``"mean"`` divides by the valid pixels, as the port does; ``"none"`` gives ``(N, *S)``.

    Raises:
        TypeError, ValueError: bad inputs.
    """
    check_number(eps, "eps", low=0.0)
    z, safe, valid = _prepare(logits, target, ignore_index, reduction, (*SCALAR_REDUCTIONS, "none"))
    y = F.one_hot(safe, z.shape[1]).movedim(-1, 1).to(z.dtype)
    loss = -torch.log(eps + 1.0 - (z.softmax(1) - y) ** 2).sum(dim=1)
    return _reduce_pixels(loss, valid, reduction)
