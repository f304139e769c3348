"""Shared by the Triton kernel tests (``test_triton_*.py``): the cases, the float64 references, the
comparison, and the fixtures that route the kernels to triton's interpreter on CPU tensors
(``TRITON_INTERPRET=1``, set by conftest) or run them on CUDA where there is one."""

import pytest
import torch

from segloss import functional as SF
from segloss.kernels import cuda
from segloss.losses import reference
from conftest import PIXELWISE_CASES

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

CASES = PIXELWISE_CASES[:5] + [("recall_loss", {}), ("recall_loss", {"weight": [1.0, 2.0, 0.5, 1.0]})] + \
    PIXELWISE_CASES[5:] + [("dual_focal_loss", {"alpha": 2.0, "beta": 0.5, "gamma": 3.0, "rho": 1.0}),
                           ("dual_focal_loss", {"alpha": 1.0, "beta": 1.0, "gamma": 0.0, "rho": 4.0})]


@pytest.fixture(autouse=True)
def triton_path():
    assert cuda.available(), "triton is not importable: the CUDA kernels cannot be tested"
    cuda.run_on_cpu_for_tests(True)
    yield
    cuda.run_on_cpu_for_tests(False)


def reference_recall_loss(logits, target, *, weight=None, ignore_index=255, reduction="mean"):
    """Recall loss by hand: ``1 - TP_c / N_c`` counted from the argmax in float64, then the reference CE."""
    valid = target != ignore_index
    hits = (logits.argmax(dim=1) == target) & valid
    recall_weights = torch.ones(logits.shape[1], dtype=torch.float64)
    for c in range(logits.shape[1]):
        n_c = int((valid & (target == c)).sum())
        if n_c:
            recall_weights[c] = 1.0 - int((hits & (target == c)).sum()) / n_c
    return reference.recall_weighted_ce(logits, target, recall_weights, weight=weight, ignore_index=ignore_index,
                                        reduction=reduction)


def reference_for(name):
    return reference_recall_loss if name == "recall_loss" else getattr(reference, name)


def kernel_and_reference(name, logits, target, reduction, kwargs, upstream=None):
    """``((value, grad) of the kernel path, (value, grad) of the float64 reference on the CPU))``."""
    results = []
    for loss, z0, y in ((getattr(SF, name), logits.to(DEVICE), target.to(DEVICE)),
                        (reference_for(name), logits.double().cpu(), target.cpu())):
        z = z0.detach().clone().requires_grad_()
        value = loss(z, y, reduction=reduction, **kwargs)
        weight = upstream.to(value.device, value.dtype) if upstream is not None and reduction == "none" else 1.0
        (value * weight).sum().backward()
        results.append((value.detach().double().cpu(), z.grad.double().cpu()))
    return results


def assert_matches(name, logits, target, reduction, kwargs, upstream=None, rtol=1e-5, atol=1e-6):
    (value, grad), (ref, ref_grad) = kernel_and_reference(name, logits, target, reduction, kwargs, upstream)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    torch.testing.assert_close(value, ref, rtol=rtol, atol=atol)
    torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=atol)


def count_syncs(call) -> list:
    import warnings

    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            call()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "synchroniz" in str(w.message)]


HOST_READS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__")


def count_host_reads(call) -> list:
    """Where ``call`` reads tensor values on the host (``item``, ``tolist``, ``float()``, ``bool()``,
    ``numpy``...): one line of the stack each. The CPU stand-in for :func:`count_syncs`: on the
    interpreter's CPU tensors no read synchronises, but each of these would on CUDA (reads of
    host-side class vectors aside, which stay on the host there). It does not see every
    synchronisation: ``.cpu()``/``.to("cpu")``, ``nonzero``, boolean-mask indexing and other ops
    with data-dependent output shapes synchronise on CUDA without a Python-level read; the GPU
    test with ``torch.cuda.set_sync_debug_mode`` (``count_syncs``) is the full count."""
    import traceback

    reads = []
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def counted(name, original):
        def read(self, *args, **kwargs):
            reads.append(f"{name}: {traceback.format_stack(limit=3)[0].strip()}")
            return original(self, *args, **kwargs)
        return read
    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counted(name, original))
        call()
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    return reads


@pytest.fixture
def small_tiles(monkeypatch):
    """Tiles of 4 pixels, at most 2 forward programs (each walks several tiles), 2 region programs
    per image: images whose pixels end mid-tile, past-the-end tiles, persistent loops."""
    monkeypatch.setattr(cuda, "TILE_ELEMENTS", 16)
    monkeypatch.setattr(cuda, "MAX_PROGRAMS", 2)
    monkeypatch.setattr(cuda, "REGION_PROGRAMS_PER_IMAGE", 2)


class KernelCounter:
    """Counts launches of the focal family's backward kernel and of the in-place scaling."""

    def __init__(self, monkeypatch):
        from segloss.kernels import triton_pixelwise

        self.launches = {"focal_backward_kernel": 0, "dual_focal_backward_kernel": 0, "scale_gradient_kernel": 0,
                         "denominator_kernel": 0}
        for name in self.launches:
            kernel = getattr(triton_pixelwise, name)
            monkeypatch.setattr(triton_pixelwise, name, self._wrap(name, kernel))

    def _wrap(self, name, kernel):
        counter = self

        class Wrapped:
            def __getitem__(self, grid):
                counter.launches[name] += 1
                return kernel[grid]
        return Wrapped()
