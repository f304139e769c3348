"""A training step compiled with ``torch.compile`` may call any registry loss (as users do).

While dynamo traces, the losses take traceable formulas (the CE family's analytic autograd
function, the plain formulas of the others) with their value checks as asserts in the graph, so
a compiled loss is one graph with no break: ``fullgraph=True`` works, and the compiled step gives
the eager step's loss and gradients. The first test compiles a whole training step (backward
included, which dynamo breaks at) on one registry loss of each kind of kernel.
"""

import warnings

import numpy as np
import pytest
import torch

import segloss


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("name", ["weighted_ce", "dual_focal", "recall", "dice", "lovasz", "dice_boundary"])
def test_a_compiled_training_step_equals_the_eager_one(name, device):
    """On CUDA the losses run Triton kernels inside their autograd Functions: compiled too."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 3, padding=1).to(device)
    criterion = segloss.create_loss(name, **({"weight": [1.0, 2.0, 0.5, 1.0]} if name == "weighted_ce" else {}))
    criterion = criterion.to(device)
    x = torch.randn(2, 3, 12, 12, device=device)
    y = torch.randint(0, 4, (2, 12, 12), device=device)
    y[0, :2] = 255

    def step():
        model.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    eager_loss, eager_grads = step()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled_loss, compiled_grads = torch.compile(step)()
    untraceable = [str(w.message)[:120] for w in caught if "does not know how to trace" in str(w.message)]
    assert not untraceable  # functorch's C checks warned on every compiled step
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-6)
    for got, want in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


# --- One graph: while dynamo traces, every loss runs its plain formula, with its checks in the graph ---

_VARIANTS = {  # name -> (create_loss keywords, input shape); the registry's defaults otherwise
    "weighted_ce": ({"weight": [1.0, 2.0, 0.5, 1.0]}, (2, 4, 6, 5)),
    "focal": ({"alpha": [0.25, 0.5, 1.0, 0.75], "reduction": "none"}, (2, 4, 6, 5)),
    "dual_focal": ({"rho": 1.5, "learnable": ("alpha", "gamma")}, (2, 4, 6, 5)),
    "ce": ({"weight": torch.tensor([1.0, 2.0, 0.5, 1.0])}, (2, 4, 3, 4, 5)),  # 5-D, a weight tensor
    "dice": ({"per_image": "image", "weight": [1.0, 2.0, 0.5, 1.0]}, (2, 4, 6, 5)),
    "ohem": ({"min_kept": 0.5, "threshold": 0.3}, (2, 4, 6, 5)),
    "tversky": ({"reduction": "none"}, (2, 4, 6, 5)),
    "lovasz": ({"per_image": "image"}, (2, 4, 6, 5)),
    "label_smoothing_ce": ({"weight": [1.0, 2.0, 0.5, 1.0]}, (2, 4, 6, 5)),
}
_COUNTS = [10, 20, 5, 7]


def _registry_case(name):
    kwargs, shape = _VARIANTS.get(name, ({}, (2, 4, 6, 5)))
    if segloss.LOSSES[name].needs_class_counts and "weight" not in kwargs:
        kwargs = {**kwargs, "class_counts": _COUNTS}
    torch.manual_seed(0)
    logits = torch.randn(*shape, dtype=torch.float64) * 3
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    target.view(-1)[:4] = 255
    return segloss.create_loss(name, **kwargs), logits, target


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("name", sorted(segloss.LOSSES))
def test_every_registry_loss_compiles_into_one_graph(name, device):
    """``fullgraph=True``: no graph break anywhere in the loss (the boundary losses given their
    distance maps: scipy computes them outside any graph); the eager loss and gradients to 1e-9
    (on CUDA the eager side runs the Triton kernels, the compiled one inductor's code)."""
    criterion, logits, target = _registry_case(name)
    criterion, logits, target = criterion.to(device), logits.to(device), target.to(device)
    extra = ()
    if name == "boundary":
        extra = (segloss.losses.boundary.signed_distance_maps(target, logits.shape[1]),)
    elif name == "dice_boundary":  # without its maps the boundary part computes them: one break, there only
        explained = torch._dynamo.explain(criterion)(logits, target)
        assert explained.graph_break_count >= 1
        reasons = [str(r.reason) for r in explained.break_reasons]  # the maps' transform (and the one check's
        assert any("signed_distance_maps" in r for r in reasons)       # block it breaks: "step_unsupported")
        assert all("signed_distance_maps" in r or r == "step_unsupported" for r in reasons), reasons
        torch._dynamo.reset()
        extra = (segloss.losses.boundary.signed_distance_maps(target, logits.shape[1]),)
    x_eager = logits.clone().requires_grad_()
    eager = criterion(x_eager, target, *extra)
    params_eager = [p for p in criterion.parameters()]
    grads_eager = torch.autograd.grad(eager.sum(), [x_eager, *params_eager])
    compiled = torch.compile(criterion, fullgraph=True)
    x = logits.clone().requires_grad_()
    value = compiled(x, target, *extra)
    grads = torch.autograd.grad(value.sum(), [x, *criterion.parameters()])
    torch.testing.assert_close(value, eager, rtol=1e-9, atol=1e-12, equal_nan=True)
    for got, want in zip(grads, grads_eager):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-10)


def test_recall_momentum_updates_its_running_weights_in_one_compiled_graph():
    """The buffer's EMA update happens inside the graph, step after step, as in eager mode."""
    torch.manual_seed(1)
    eager, compiled_loss = segloss.RecallLoss(momentum=0.8), segloss.RecallLoss(momentum=0.8)
    compiled = torch.compile(compiled_loss, fullgraph=True)
    for step in range(3):
        logits, target = torch.randn(2, 3, 5, 5) * (step + 1), torch.randint(0, 3, (2, 5, 5))
        torch.testing.assert_close(compiled(logits, target), eager(logits, target))
        torch.testing.assert_close(compiled_loss.class_weights, eager.class_weights)


_WEIGHT = {"weight": [1.0, 2.0, 0.5]}


@pytest.mark.parametrize("name, kwargs", [
    ("ce", {}), ("focal", {}), ("dual_focal", {}), ("recall", {}), ("dice", {}), ("lovasz", {}), ("ohem", {}),
    ("unified_focal", {}), ("weighted_ce", _WEIGHT), ("label_smoothing_ce", _WEIGHT), ("ohem", _WEIGHT),
    ("dice_ce", _WEIGHT), ("generalized_dice", {"class_counts": [5, 9, 2]})])
def test_bad_labels_and_nan_logits_stop_a_compiled_loss_with_a_message(name, kwargs):
    """Host reads would break the graph, so the checks are asserts in it: a ``RuntimeError`` with the
    eager error's wording (the values themselves are not known while tracing), not an index out of
    bounds from the losses' indexing, which inductor may run before the assert. Eager calls after
    it still raise the eager ``ValueError``."""
    criterion = segloss.create_loss(name, **kwargs)
    compiled = torch.compile(criterion, fullgraph=True)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    compiled(logits, target)
    bad = target.clone()
    bad[1, 2, 3] = 7
    with pytest.raises(RuntimeError, match=r"labels outside \[0, 3\) that are not ignore_index=255"):
        compiled(logits, bad)
    if name != "ohem":  # OHEM's CE is the fused one: NaN logits give NaN there, checked below for CE
        nan = logits.clone()
        nan[0, 1, 2, 2] = float("nan")
        with pytest.raises(RuntimeError, match="NaN or Inf"):
            compiled(nan, target)
        ignored = target.clone()
        ignored[0, 2, 2] = 255  # a NaN at an ignored pixel would still give a NaN gradient there
        with pytest.raises(RuntimeError, match="NaN or Inf"):
            compiled(nan, ignored)
    with pytest.raises(ValueError, match=r"outside \[0, 3\).*\[7\]"):
        criterion(logits, bad)


def test_a_tensor_gamma_is_checked_inside_the_compiled_graph():
    def loss(logits, target, gamma):
        return segloss.functional.focal_loss(logits, target, gamma=gamma)

    compiled = torch.compile(loss, fullgraph=True)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    torch.testing.assert_close(compiled(logits, target, torch.tensor(1.5)),
                               segloss.functional.focal_loss(logits, target, gamma=1.5))
    with pytest.raises(RuntimeError, match="gamma must be finite and >= 0 and <= 1000"):
        compiled(logits, target, torch.tensor(-1.0))


@pytest.mark.parametrize("name", ["ce", "focal", "dual_focal", "dice", "dice_ce"])
def test_half_precision_logits_compile_as_they_run_eagerly(name):
    """bfloat16 logits (an autocast model's output): computed in float32 either way, the gradient
    in bfloat16; compiled and eager agree to bfloat16's rounding."""
    criterion = segloss.create_loss(name)
    torch.manual_seed(3)
    logits = (torch.randn(2, 4, 6, 5) * 3).to(torch.bfloat16)
    target = torch.randint(0, 4, (2, 6, 5))
    target[0, 0] = 255
    x_eager, x = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    eager = criterion(x_eager, target)
    eager.backward()
    value = torch.compile(criterion, fullgraph=True)(x, target)
    value.backward()
    assert value.dtype == eager.dtype and x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(value, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, x_eager.grad, rtol=1e-2, atol=1e-3)


# What the tests below check is dynamo's tracing (graph breaks, symbolic sizes, numpy scalars), which
# happens before any backend: most compile with "aot_eager" (dynamo and AOTAutograd, no code
# generation), which skips inductor's C++ compiler, the bulk of a cold CI run's time (this file took
# 8.8 min with a cold inductor cache on the 2-core VM, 6.1 with these on aot_eager). Inductor's own
# code, symbolic sizes included, is checked on a pixel-wise and a region loss here and on every
# registry loss above.
_TRACING_ONLY = "aot_eager"
_SHAPE_LOSSES = ["ce", "focal", "dual_focal", "recall", "ohem", "dice", "lovasz", "unified_focal", "label_smoothing_ce"]
_SHAPE_INDUCTOR = ("dual_focal", "dice")


@pytest.mark.parametrize("name", _SHAPE_LOSSES)
def test_another_batch_size_and_an_empty_batch_stay_in_one_graph(name):
    """A smaller last batch makes dynamo's sizes symbolic: no assert message may hold them. N = 0
    gives 0 as eagerly (the shapes are taken explicitly, not by a -1 that N = 0 leaves open)."""
    criterion = segloss.create_loss(name)
    compiled = torch.compile(criterion, fullgraph=True,
                             backend="inductor" if name in _SHAPE_INDUCTOR else _TRACING_ONLY)
    torch.manual_seed(4)
    for n in (2, 3, 1, 0):
        logits, target = torch.randn(n, 3, 5, 4), torch.randint(0, 3, (n, 5, 4))
        torch.testing.assert_close(compiled(logits, target), criterion(logits, target))


@pytest.mark.parametrize("name, attribute", [("focal", "gamma"), ("focal", "label_smoothing"), ("dice", "smooth"),
                                             ("tversky", "alpha"), ("ohem", "threshold"), ("dual_focal", "gamma"),
                                             ("dual_focal", "beta")])
def test_a_changed_number_parameter_stays_in_one_graph(name, attribute):
    """A parameter scheduled between steps is checked in the graph. Dynamo makes a changed Python float
    symbolic (a second graph, as for any float attribute); segloss's check turned it back into a
    constant (``torch.as_tensor`` guards on its value): a graph per value, and past torch's recompile
    limit (8) ``fullgraph=True`` failed."""
    from torch._dynamo.testing import CompileCounterWithBackend

    criterion, fresh = segloss.create_loss(name), segloss.create_loss(name)
    counter = CompileCounterWithBackend(_TRACING_ONLY)
    compiled = torch.compile(criterion, fullgraph=True, backend=counter)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    for value in (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55):
        setattr(criterion, attribute, torch.tensor(value))
        setattr(fresh, attribute, value)
        torch.testing.assert_close(compiled(logits, target), fresh(logits, target))
    assert counter.frame_count <= 2


@pytest.mark.parametrize("name, attribute", [("focal", "gamma"), ("dice", "smooth"), ("dual_focal", "beta")])
def test_a_changed_python_float_is_symbolic_to_dynamo_and_right_under_a_backend(name, attribute):
    """Dynamo makes a changed Python float symbolic; segloss's range check turned it back into a
    constant (``torch.as_tensor`` guards on its value), so even dynamo's own graph was remade per
    value and ``fullgraph=True`` failed at the ninth. A backend (aot_eager, inductor) may still
    specialise it, as it does torch's ``x ** gamma``: the values must be right there."""
    frames = []

    def dynamo_only(graph, example_inputs):
        frames.append(graph)
        return graph.forward

    criterion, fresh = segloss.create_loss(name), segloss.create_loss(name)
    compiled = torch.compile(criterion, fullgraph=True, backend=dynamo_only)
    backend = torch.compile(fresh, fullgraph=True, backend=_TRACING_ONLY)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    for i, value in enumerate((0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55)):
        setattr(criterion, attribute, value)
        setattr(fresh, attribute, value)
        expected = getattr(segloss.functional, "dual_focal_loss" if name == "dual_focal" else "focal_loss")(
            logits, target, **{attribute: value}) if name != "dice" else None
        got = compiled(logits, target)
        if expected is not None:
            torch.testing.assert_close(got, expected)
        if i < 4:  # under the recompile limit whatever the backend does
            torch.testing.assert_close(backend(logits, target), got)
    assert len(frames) <= 2


_NUMPY = np.float32


@pytest.mark.parametrize("name, call", [
    ("focal", lambda F, R, U, z, y: F.focal_loss(z, y, gamma=_NUMPY(2), alpha=_NUMPY(0.25),
                                                label_smoothing=_NUMPY(0.1))),
    ("focal, numpy gamma only", lambda F, R, U, z, y: F.focal_loss(z, y, gamma=np.float64(1.5))),
    ("focal, numpy integers", lambda F, R, U, z, y: F.focal_loss(z, y, gamma=np.int64(2), alpha=np.int32(1))),
    ("Dual Focal, numpy integers", lambda F, R, U, z, y: F.dual_focal_loss(z, y, alpha=np.int64(1), gamma=np.int64(2),
                                                                          rho=np.int64(2))),
    ("OHEM, numpy integer min_kept", lambda F, R, U, z, y: F.ohem_cross_entropy(z, y, threshold=np.int64(1),
                                                                                min_kept=np.int64(1))),
    ("focal Tversky, numpy integers", lambda F, R, U, z, y: R.tversky_loss(z, y, alpha=np.int64(0), beta=np.int64(1),
                                                                          gamma=np.int64(2))),
    ("Unified Focal, numpy integer gamma", lambda F, R, U, z, y: U(z, y, gamma=np.int64(1))),
    ("CE smoothing", lambda F, R, U, z, y: F.cross_entropy(z, y, label_smoothing=_NUMPY(0.1))),
    ("Dual Focal", lambda F, R, U, z, y: F.dual_focal_loss(z, y, alpha=_NUMPY(1), beta=_NUMPY(0.5), gamma=_NUMPY(2),
                                                          rho=_NUMPY(1.5))),
    ("OHEM", lambda F, R, U, z, y: F.ohem_cross_entropy(z, y, threshold=_NUMPY(0.7), min_kept=_NUMPY(0.2))),
    ("focal Tversky", lambda F, R, U, z, y: R.tversky_loss(z, y, alpha=_NUMPY(0.3), beta=_NUMPY(0.7),
                                                          gamma=_NUMPY(0.75))),
    ("Unified Focal", lambda F, R, U, z, y: U(z, y, tversky_weight=_NUMPY(0.5), delta=_NUMPY(0.6), gamma=_NUMPY(0.5))),
])
def test_numpy_scalar_parameters_compile_into_one_graph(name, call):
    """Parameters from a numpy sweep (``np.linspace(...)[i]``) are numbers to the losses; dynamo sees
    them as 0-dim arrays, whose dtype it cannot read and whose ``float()`` it cannot branch on."""
    from segloss import functional as F
    from segloss.losses import region as R
    from segloss.losses.unified_focal import unified_focal_loss as U

    torch.manual_seed(5)
    logits, target = torch.randn(2, 4, 5, 6), torch.randint(0, 4, (2, 5, 6))
    x_eager, x = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    eager = call(F, R, U, x_eager, target)
    eager.backward()
    value = torch.compile(lambda z, y: call(F, R, U, z, y), fullgraph=True, backend=_TRACING_ONLY)(x, target)
    value.backward()
    torch.testing.assert_close(value, eager, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(x.grad, x_eager.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("name, kwargs", [
    ("focal_loss", {"gamma": np.True_}), ("focal_loss", {"label_smoothing": np.True_}),
    ("cross_entropy", {"label_smoothing": np.False_}),
    ("dual_focal_loss", {"rho": np.True_}), ("ohem_cross_entropy", {"threshold": np.False_})])
def test_numpy_booleans_are_refused_compiled_as_eagerly(compiled, name, kwargs):
    """``np.True_`` is no number, as ``True`` is not; while tracing, dynamo sees it as a 0-dim array
    like a numpy float, and the check must still tell them apart (the compiled call falls back to
    eager at the error and raises the same TypeError)."""
    from segloss import functional as F

    logits, target = torch.randn(2, 4, 5, 6), torch.randint(0, 4, (2, 5, 6))
    call = lambda z, y: getattr(F, name)(z, y, **kwargs)  # noqa: E731
    with pytest.raises(TypeError, match="must be a real number"):
        (torch.compile(call) if compiled else call)(logits, target)


def test_region_sums_stay_float32_under_autocast_when_compiled():
    """Autocast would run the sums' matrix product in float16, where a class's probability sum over
    90,000 pixels overflows; eagerly the region kernels switch autocast off, and so does the traced path."""
    logits = torch.zeros(1, 2, 300, 300)
    logits[:, 0] = 5.0
    target = torch.zeros(1, 300, 300, dtype=torch.long)
    target[:, :10] = 1
    criterion = segloss.create_loss("dice")
    with torch.autocast("cpu", dtype=torch.float16):
        eager = criterion(logits, target)
        compiled = torch.compile(criterion, fullgraph=True)(logits, target)
    torch.testing.assert_close(compiled, eager)


def test_a_uint8_mask_with_an_ignore_index_it_cannot_hold():
    criterion = segloss.create_loss("ce", ignore_index=300)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4), dtype=torch.uint8)
    torch.testing.assert_close(torch.compile(criterion, fullgraph=True)(logits, target), criterion(logits, target))
