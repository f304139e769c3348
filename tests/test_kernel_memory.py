"""Extra memory of the kernel path: the gradient and nothing else of the logits' size (#12's targets).

What a forward + backward allocates above what existed before, as a multiple of the logits' bytes:
at most 1.05 for the pixel-wise losses (the gradient is 1.0) and 1.1 for the Dice family. On a GPU
this is the peak of the bytes requested from the caching allocator (``torch.cuda.memory_stats``:
``max_memory_allocated`` would add the allocator's block rounding; ``bench_gpu.py`` reports that on
shapes whose tensors fill whole blocks); without one the kernels run in triton's interpreter
on CPU tensors and the same allocations are read from torch's profiler (every tensor the loss
path makes, with its size, in order). The per-program partial-sum buffers are bounded by
``MAX_PROGRAMS`` on a real batch; the shapes here are small, so the bound is lowered to keep
those buffers as small against these logits as they are against a real batch's.
"""

import gc

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import segloss
from segloss import functional as SF
from segloss.kernels import cuda
from segloss.losses import region

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
C = 19
WEIGHT = torch.linspace(0.5, 2.0, C)

PIXELWISE = {
    "cross_entropy": lambda z, y: SF.cross_entropy(z, y),
    "cross_entropy weight": lambda z, y: SF.cross_entropy(z, y, weight=WEIGHT.to(z.device)),
    "focal gamma 2": lambda z, y: SF.focal_loss(z, y, gamma=2.0),
    "focal alpha per class": lambda z, y: SF.focal_loss(z, y, gamma=2.0, alpha=WEIGHT.to(z.device) / 2),
    "dual focal": lambda z, y: SF.dual_focal_loss(z, y),
    "dual focal rho 1.5 weight": lambda z, y: SF.dual_focal_loss(z, y, rho=1.5, weight=WEIGHT.to(z.device)),
    "recall": lambda z, y: SF.recall_loss(z, y),
    "label smoothing": lambda z, y: SF.cross_entropy(z, y, label_smoothing=0.1),
    "DualFocalLoss learnable": segloss.DualFocalLoss(learnable=("alpha", "gamma")).to(DEVICE),
    "RecallLoss momentum": segloss.RecallLoss(momentum=0.9, num_classes=C).to(DEVICE),
}
REGION = {
    "soft Dice": lambda z, y: region.soft_dice_loss(z, y),
    "Jaccard": lambda z, y: region.soft_jaccard_loss(z, y),
    "Focal Tversky": lambda z, y: region.tversky_loss(z, y, alpha=0.7, beta=0.3, gamma=0.75),
    "generalized Dice": lambda z, y: region.generalized_dice_loss(z, y),
}


# the interpreter is slow: small images with the program bound lowered in proportion; on a GPU a batch
# large enough that the allocator's 512-byte rounding of the small buffers is negligible too
SPATIAL = (32, 64) if DEVICE == "cpu" else (256, 512)


@pytest.fixture(autouse=True)
def kernel_path(monkeypatch):
    assert cuda.available(), "triton is not importable: the CUDA kernels cannot be tested"
    if DEVICE == "cpu":
        monkeypatch.setattr(cuda, "MAX_PROGRAMS", 16)
        monkeypatch.setattr(cuda, "REGION_PROGRAMS_PER_IMAGE", 4)
    cuda.run_on_cpu_for_tests(True)
    yield
    cuda.run_on_cpu_for_tests(False)


def _profiled_peak(step) -> int:
    """Peak bytes ``step()`` allocates on the CPU above what it found, from torch's profiler."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = []

    def walk(node):
        if type(node.extra_fields).__name__ == "_ExtraFields_Allocation":
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        for child in node.children:
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        walk(root)
    current = peak = 0
    for _, size in sorted(events):
        current += size
        peak = max(peak, current)
    return peak


def peak_extra_bytes(step) -> int:
    gc.collect()  # an earlier case's cycle freed during the window would offset the count
    if DEVICE == "cuda":
        # the bytes the loss asks for: the caching allocator hands a 19.9 MB gradient a whole 20 MiB block
        # (it splits only when more than 1 MiB would remain), which max_memory_allocated would count
        torch.cuda.synchronize()
        base = torch.cuda.memory_stats()["requested_bytes.all.current"]
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return torch.cuda.memory_stats()["requested_bytes.all.peak"] - base
    return _profiled_peak(step)


def extra_memory(fn, dtype) -> float:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, C, *SPATIAL, generator=g).to(dtype).to(DEVICE)
    target = torch.randint(0, C, (2, *SPATIAL), generator=g).to(DEVICE)
    target[:, :4] = 255
    z = logits.detach().clone().requires_grad_()

    def step():
        fn(z, target).backward()

    extra = peak_extra_bytes(step)
    assert z.grad is not None and torch.isfinite(z.grad.float()).all()
    return extra / (logits.numel() * logits.element_size())


def test_the_measure_sees_what_a_step_allocates():
    size = 1 << 20
    assert size <= peak_extra_bytes(lambda: torch.empty(size, dtype=torch.uint8, device=DEVICE)) < 1.1 * size
    twice = peak_extra_bytes(lambda: (torch.empty(size, dtype=torch.uint8, device=DEVICE),
                                      torch.empty(size, dtype=torch.uint8, device=DEVICE)))
    assert twice >= 2 * size


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("name", list(PIXELWISE))
def test_a_pixelwise_loss_takes_the_gradient_and_little_more(name, dtype):
    extra = extra_memory(PIXELWISE[name], dtype)
    assert 1.0 <= extra <= 1.05, f"{name} ({dtype}): extra memory {extra:.3f} x the logits"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("name", list(REGION))
def test_a_region_loss_takes_the_gradient_and_its_sums(name, dtype):
    extra = extra_memory(REGION[name], dtype)
    assert 1.0 <= extra <= 1.1, f"{name} ({dtype}): extra memory {extra:.3f} x the logits"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_the_boundary_loss_with_its_maps_takes_the_gradient_and_little_more(dtype):
    """Its term ``sum_c p_c phi_c`` in one Triton pass each way (maps given, as a data loader's): the
    blockwise torch ops it replaced took 3.2x (float32) and 5.3x (bfloat16) the logits here."""
    maps = torch.randn(2, C, *SPATIAL, device=DEVICE)
    extra = extra_memory(lambda z, y: SF.boundary_loss(z, y, distance_maps=maps), dtype)
    assert 1.0 <= extra <= 1.05, f"boundary ({dtype}): extra memory {extra:.3f} x the logits"
