"""``torch.compile``'d kernels for the fused losses: one generated loop per pass, opt-in.

The eager fused path (:mod:`segloss.kernels.cpu`) runs a dozen torch ops per block of pixels; here
the same formulas are traced once by ``torch.compile`` (inductor), which fuses each pass into a
single loop over the logits: the forward reads them (max, sums and every per-pixel
quantity in one or two sweeps) and the backward reads them once and writes the gradient once.
Nothing of the logits' size is created but the gradient, as on the eager path.

It costs a compilation at the first call per dtype and number of dimensions (seconds to tens
of seconds; inductor caches the generated code on disk, so later processes start faster), and
needs a C++ compiler on CPU. So it is off by default (the app and short scripts would pay the
start-up on every new shape) and turned on with :func:`segloss.use_compiled_kernels` by training
loops that run many steps on one input size. Shapes are compiled as dynamic, and ``gamma``
is a tensor, so new sizes and parameter values do not recompile; each input dtype, a batch of
one image (dynamo specialises sizes 0 and 1) and recall loss's hit count are variants of their own.

The formulas are :func:`segloss.kernels.cpu._focal_block`'s (see :class:`~segloss.kernels.cpu.FocalFamily`
for the derivation); the tests compare both paths with the autograd oracle.
"""

from __future__ import annotations

import functools
import threading

import torch

_STATE = {"enabled": False}
RECOMPILE_LIMIT = 64  # per kernel; past it dynamo would run the Python formulas uncompiled (full-size temporaries)
_LOCK = threading.Lock()


def use_compiled_kernels(enabled: bool = True) -> None:
    """Run CE, weighted CE, focal and recall loss through ``torch.compile``'d kernels (or not).

    Process-wide. The first loss call afterwards compiles (seconds to tens of seconds, once per
    input dtype, for a batch of one image or more, and for recall loss); see
    :mod:`segloss.kernels.compiled`. Turning it on raises ``torch._dynamo.config.recompile_limit`` to at
    least :data:`RECOMPILE_LIMIT`, so these variants never fall back to uncompiled code. On the benchmark shape
    ``(8, 19, 256, 256)`` forward + backward then takes less time than torch's own
    cross-entropy (``benchmarks/bench_losses.py --compiled``).

    Raises:
        TypeError: ``enabled`` is not a bool.
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {enabled!r}")
    if enabled:  # one variant per dtype, batch of 1 or more, recall or not: more than dynamo's default 8
        import torch._dynamo.config as dynamo_config

        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
    _STATE["enabled"] = enabled


def compiled_kernels_enabled() -> bool:
    """Whether :func:`use_compiled_kernels` is on."""
    return _STATE["enabled"]


def _onehot_mask(z: torch.Tensor, safe: torch.Tensor) -> torch.Tensor:
    classes = torch.arange(z.shape[1], device=z.device).view(1, -1, 1)
    return classes == safe.unsqueeze(1)


def _focal_forward(z: torch.Tensor, target: torch.Tensor, ignore_index: int, gamma: torch.Tensor,
                   with_hits: bool):
    """``(loss, coef, m, log_s, hit)``, each ``(N, P)``, for logits ``(N, C, P)``: ``m`` the max
    over classes, ``log_s = log sum exp(z - m)``, ``hit`` whether ``argmax(z) == target`` (None
    unless ``with_hits``; torch's first-index tie rule, found with sums, since an index
    reduction would slow the whole loop); loss and coef are 0 at ignored pixels, the class scale
    is not applied."""
    z = z if z.dtype == torch.float64 else z.float()
    valid = target != ignore_index
    safe = torch.where(valid, target, 0)
    # every reduction reads z itself: a shared full-size intermediate would be materialised
    m = z.amax(dim=1, keepdim=True)
    shifted_t = (z.gather(1, safe.unsqueeze(1)) - m).squeeze(1)
    s_others = torch.where(_onehot_mask(z, safe), 0.0, torch.exp(z - m)).sum(1)
    log_s = torch.log(s_others + shifted_t.exp())
    log1m_pt = s_others.clamp_min(1e-38).log() - log_s  # log(1 - p_t)
    one_minus = log1m_pt.exp()
    log_pt = torch.where(one_minus < 0.5, torch.log1p(-one_minus), shifted_t - log_s)
    ratio = torch.where(one_minus > 1e-6, log_pt / one_minus, -1.0 - 0.5 * one_minus)  # log(p_t) / (1 - p_t)
    gamma = gamma.to(z.dtype)
    modulator = torch.where(gamma == 0, 1.0, torch.exp(gamma * log1m_pt))
    coef = modulator * (1.0 - gamma * ratio * torch.exp(log_pt))
    loss = -modulator * log_pt
    hit = None
    if with_hits:  # the target is a maximum and no earlier class ties with it
        classes = torch.arange(z.shape[1], device=z.device).view(1, -1, 1)
        earlier_ties = ((z == m) & (classes < safe.unsqueeze(1))).sum(1)
        hit = valid & (shifted_t == 0) & (earlier_ties == 0)
    return torch.where(valid, loss, 0.0), torch.where(valid, coef, 0.0), m.squeeze(1), log_s, hit


def _focal_backward(z: torch.Tensor, target: torch.Tensor, ignore_index: int, m: torch.Tensor,
                    log_s: torch.Tensor, coef: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """``coef * upstream * (softmax(z) - onehot(target))`` ``(N, C, P)`` in the logits' dtype; 0 at
    ignored pixels (their ``coef`` is 0). ``upstream`` ``(N, P)`` may be an expanded scalar."""
    out_dtype = z.dtype
    z = z if z.dtype == torch.float64 else z.float()
    safe = torch.where(target != ignore_index, target, 0)
    w = (coef * upstream.to(coef.dtype)).unsqueeze(1).to(z.dtype)
    probs = torch.exp((z - m.unsqueeze(1).to(z.dtype)) - log_s.unsqueeze(1))
    grad = w * probs - torch.where(_onehot_mask(z, safe), w, 0.0)
    return grad.to(out_dtype)


def _dual_focal(z: torch.Tensor, labels: torch.Tensor, ignore_index: int, class_scale: torch.Tensor,
                grad_scale: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor,
                rho: torch.Tensor, gamma_is_one: bool, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, tiny)``: Dual Focal Loss ``(B,)`` of a block ``z`` ``(C, B)`` with labels ``(B,)``, times
    ``keep = class_scale[label]`` (0 at ignored pixels), and whether any pixel's other classes
    underflow (``sum_{c != a} exp(z_c - m) < 1e-30``, margins above ~69: the caller then redoes
    the block with :func:`segloss.kernels.cpu._dual_focal_block`, which works in log space there).
    The gradient times ``keep * grad_scale`` is written into ``grad_out`` ``(C, B)``.

    :func:`segloss.kernels.cpu._dual_focal_block`'s closed form (see its docstring), written with
    masks instead of scatters and with few transcendental functions per element: ``a`` is the
    first index of the maximum (a min reduction) and ``r_c = p_c / (rho - p_c)`` is a division
    (``c`` not in ``{t, a}``, so ``p_c <= 1/2``). Parameters are 0-d float64 tensors (no
    recompilation per value); ``gamma_is_one`` skips ``p^gamma``.
    """
    f64 = torch.float64
    z = z if z.dtype == torch.float64 else z.float()
    valid = labels != ignore_index
    t = torch.where(valid, labels, 0)
    keep = torch.where(valid, class_scale.to(z.dtype)[t], 0.0)
    c = z.shape[0]
    classes = torch.arange(c, device=z.device).view(-1, 1)
    m = z.amax(dim=0)
    a = torch.where(z == m, classes, c).amin(dim=0)
    is_a, is_t = classes == a, classes == t
    shifted = z - m
    s_not_a = torch.where(is_a, 0.0, torch.exp(shifted)).sum(0)  # 1 - p_a without cancellation
    tiny = (s_not_a < 1e-30).any()  # the other classes underflow: the caller redoes the block in log space
    log_s_not_a = torch.log(s_not_a.clamp_min(1e-38))
    log_s = torch.log1p(s_not_a)
    log1m_pa = log_s_not_a - log_s
    t_is_a = t == a
    log_pt = (z.gather(0, t.unsqueeze(0))[0] - m) - log_s
    p_t = log_pt.exp()
    log1m_pt = torch.where(t_is_a, log1m_pa, torch.log1p(-torch.where(t_is_a, 0.0, p_t)))
    alpha, beta, gamma, rho = (v.to(z.dtype) for v in (alpha, beta, gamma, rho))
    log_rho_pa = torch.logaddexp(log1m_pa, torch.log(rho - 1.0))  # log(rho - p_a); log(0) = -inf at rho = 1
    log_p = shifted - log_s
    p = log_p.exp()
    false_sum = torch.where(is_t, 0.0, torch.where(is_a, log_rho_pa, torch.log1p((rho - 1.0) - p))).sum(0)
    powers = torch.where(is_t, 0.0, p if gamma_is_one else torch.exp(gamma * log_p))  # p_c^gamma, c != t
    power_sum = powers.sum(0)
    modulator = torch.exp(gamma * log1m_pt)
    loss = (-log_pt - beta * false_sum + alpha * (modulator + power_sum)) * keep
    # gradient: K in float64 (it may hold cancelling huge terms)
    ratios = torch.where(is_t | is_a, 0.0, p / (rho - p))  # r_c, c not in {t, a}
    r_sum = ratios.sum(0)
    ag = (alpha * gamma).to(f64)
    beta64 = beta.to(f64)
    k1 = 1.0 - beta64 * r_sum.to(f64) - ag * power_sum.to(f64)
    log_pa = -log_s.to(f64)
    log_ra = (log_pa - log_rho_pa.to(f64)).clamp(max=700.0)
    r_a = torch.where(t_is_a, 0.0, torch.exp(log_ra))
    log_tq = ((gamma.to(f64) - 1.0) * log1m_pt.to(f64) + log_pt.to(f64)).clamp(max=700.0)
    k = k1 - beta64 * r_a + ag * torch.exp(log_tq)
    # p_k K in float64: K's large terms (r_a, (1 - p_t)^(gamma - 1)) stay below ~1e30 in a block
    # without underflow, and p_k <= 1 - p_a cancels them
    general = (p.to(f64) * k.unsqueeze(0)).to(z.dtype) + beta * ratios + (alpha * gamma) * powers
    p_t64, log_pt64 = p_t.to(f64), log_pt.to(f64)
    pt_ra = torch.where(t_is_a, 0.0, torch.exp((log_pt64 + log_ra).clamp(max=700.0)))
    g_t = p_t64 * k1 - beta64 * pt_ra - 1.0 - ag * modulator.to(f64) * p_t64
    v_a = torch.exp(log_pa + log1m_pa.to(f64) - log_rho_pa.to(f64))
    g_a = (torch.exp(log_pa) * k1 + beta64 * v_a + ag * torch.exp(gamma.to(f64) * log_pa)
           + ag * torch.exp(log_pa + log_tq))
    grad = torch.where(is_t, g_t.to(z.dtype), torch.where(is_a, g_a.to(z.dtype), general))
    grad_out.copy_(grad * (keep * grad_scale.to(z.dtype)))
    return loss, tiny


class TracedFocalFamily(torch.autograd.Function):
    """CE, focal and their class scales with the analytic gradient, for a graph that ``torch.compile``
    traces (the losses take it while dynamo traces; inductor then compiles it with the caller's code).

    :func:`_focal_forward` and :func:`_focal_backward`, uncompiled here: the caller's compilation
    fuses them. Forward reads the logits for the loss and keeps per-pixel vectors; backward reads
    them again and writes the gradient once, with nothing else of the logits' size.

    Args (of ``apply``): logits ``(N, C, P)``; target ``(N, P)`` int64 (labels checked by the
    caller); ``ignore_index``; ``gamma`` a 0-dim float64 tensor; ``pixel_scale`` ``(N, P)`` (the
    class scale at each pixel's label; no gradient). Returns ``(loss, finite)``: the per-pixel loss
    ``(N, P)``, 0 at ignored pixels, in float32 (float64 for float64 logits), and whether every
    pixel's max and log-sum-exp are finite (False for NaN or +Inf logits, ignored pixels included:
    the caller's check, from per-pixel values rather than another read of the logits).
    """

    @staticmethod
    def forward(ctx, z, target, ignore_index, gamma, pixel_scale):
        loss, coef, m, log_s, _ = _focal_forward(z, target, ignore_index, gamma, False)
        ctx.save_for_backward(z, target, m, log_s, coef * pixel_scale)
        ctx.ignore_index = ignore_index
        loss = loss * pixel_scale
        finite = (torch.isfinite(m) & torch.isfinite(log_s) & torch.isfinite(loss)).all()
        ctx.mark_non_differentiable(finite)
        return loss, finite

    @staticmethod
    def backward(ctx, upstream, _):
        z, target, m, log_s, coef = ctx.saved_tensors
        return _focal_backward(z, target, ctx.ignore_index, m, log_s, coef, upstream), None, None, None, None


@functools.cache
def _compiled(name: str):
    function = {"focal_forward": _focal_forward, "focal_backward": _focal_backward, "dual_focal": _dual_focal}[name]
    return torch.compile(function, dynamic=True)


def focal_forward(z: torch.Tensor, target: torch.Tensor, ignore_index: int, gamma: float, with_hits: bool = False):
    """Compiled :func:`_focal_forward` (``z`` ``(N, C, P)``, ``target`` ``(N, P)``)."""
    gamma = torch.tensor(float(gamma), dtype=torch.float64, device=z.device)
    with _LOCK:  # the first call compiles, which must not run twice at once
        # detached and int64: requires_grad and the label dtype would each be another compiled variant
        return _compiled("focal_forward")(z.detach(), target.long(), ignore_index, gamma, with_hits)


def focal_backward(z: torch.Tensor, target: torch.Tensor, ignore_index: int, m: torch.Tensor,
                   log_s: torch.Tensor, coef: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """Compiled :func:`_focal_backward`; an upstream expanded from a scalar (a "mean" or "sum") is
    passed as ``(1, 1)``, so its zero strides are not another compiled variant."""
    if upstream.numel() and all(stride == 0 for stride in upstream.stride()):
        upstream = upstream.reshape(-1)[:1].reshape(1, 1)
    with _LOCK:
        return _compiled("focal_backward")(z.detach(), target.long(), ignore_index, m, log_s, coef, upstream)


def dual_focal_params(params, device: torch.device) -> tuple:
    """``(alpha, beta, gamma, rho)`` floats as the kernel's arguments (make them once per call)."""
    return (*(torch.tensor(float(v), dtype=torch.float64, device=device) for v in params), float(params[2]) == 1.0)


def dual_focal(z: torch.Tensor, labels: torch.Tensor, ignore_index: int, class_scale: torch.Tensor,
               grad_scale: torch.Tensor, params: tuple, grad_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Compiled :func:`_dual_focal`; ``params`` from :func:`dual_focal_params`."""
    with _LOCK:
        # labels copied (a block of int64): a view would expose its base's batch size to the guards
        return _compiled("dual_focal")(z.detach(), labels.long().contiguous(), ignore_index, class_scale, grad_scale,
                                       *params, grad_out)
