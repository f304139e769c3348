"""The Triton kernels' host-device synchronisation (counted on CUDA, by marker) and devices: one
synchronisation per call, host class vectors copied once, kernels launched on their tensors' device."""

import numpy as np
import pytest
import torch

from segloss import functional as SF
from segloss.kernels import cuda, cuda_region
from conftest import random_batch
from triton_support import DEVICE, count_host_reads, count_syncs, triton_path  # noqa: F401  (autouse)

# The losses' registry names whose host reads the interpreter can count (the boundary losses with their
# distance maps computed on the device): weighted CE's CPU class vector is read on the host by design
# (on CUDA it is copied once and checked once: the GPU tests below).
HOST_READ_LOSSES = ["ce", "focal", "dual_focal", "recall", "dice", "label_smoothing_ce", "ohem", "unified_focal",
                    "generalized_dice", "jaccard", "tversky", "focal_tversky", "lovasz", "dice_ce", "dice_focal",
                    "boundary", "dice_boundary"]


@pytest.mark.parametrize("name", HOST_READ_LOSSES)
def test_every_loss_reads_the_device_once_per_call_on_the_kernel_path(name):
    """#12's one synchronisation per call, counted without a GPU: on the kernels' path (the
    interpreter here) a forward and backward read tensor values on the host once, the flags."""
    import segloss

    logits, target = random_batch(2, 5, (6, 7), ignore_frac=0.1, seed=12)
    z = logits.requires_grad_()
    criterion = segloss.create_loss(name)
    criterion(z, target).backward()  # a first call may cache (class vectors, compiled kernels)
    reads = count_host_reads(lambda: criterion(z, target).backward())
    assert len(reads) == 1, reads


@pytest.mark.parametrize("make", [
    lambda segloss: segloss.DualFocalLoss(learnable=("alpha", "beta", "gamma", "rho")),
    lambda segloss: segloss.DualFocalLoss(learnable=("gamma",), reduction="none"),
    lambda segloss: segloss.RecallLoss(momentum=0.9, num_classes=5)],
    ids=["learnable Dual Focal", "learnable Dual Focal, none", "recall with momentum"])
def test_losses_with_state_read_the_device_once_per_call_on_the_kernel_path(make):
    """Learnable parameters and running weights stay on the device: one host read per call."""
    import segloss

    logits, target = random_batch(2, 5, (6, 7), ignore_frac=0.1, seed=12)
    z = logits.requires_grad_()
    criterion = make(segloss)
    criterion(z, target).sum().backward()
    reads = count_host_reads(lambda: criterion(z, target).sum().backward())
    assert len(reads) == 1, reads


@pytest.mark.parametrize("kwargs", [{"gamma": "tensor"}, {"alpha": "tensor"}, {"gamma": "tensor", "alpha": "tensor"},
                                    {"gamma": "tensor", "label_smoothing": 0.1}])
def test_focal_parameters_given_as_device_tensors_are_read_on_the_device(kwargs):
    """A 0-dim tensor on the logits' device (a schedule's buffer, say) is not read on the host: gamma
    goes to the kernels as a pointer, a scalar alpha becomes the class scale there, and both are
    range-checked with the flags, in the call's one read."""
    logits, target = random_batch(2, 5, (6, 7), ignore_frac=0.1, seed=13)
    z = logits.requires_grad_()
    given = {key: torch.tensor(2.0 if key == "gamma" else 0.25) if value == "tensor" else value
             for key, value in kwargs.items()}
    reads = count_host_reads(lambda: SF.focal_loss(z, target, **given).backward())
    assert len(reads) == 1, reads


@pytest.mark.parametrize("name, device_param", [("focal_loss", "gamma"), ("focal_loss", "alpha"),
                                                 ("dual_focal_loss", "rho"), ("dual_focal_loss", "gamma")])
def test_a_parameter_off_the_logits_device_is_read_as_a_number(monkeypatch, name, device_param):
    """gamma on the logits' device with a CPU 0-dim alpha (or the other way round): only the one on
    the device goes to the kernels there; the other is read on its host as a number, as copying it to
    the device would synchronise. ``meta`` stands in for the accelerator (the route, not the kernels)."""
    from segloss.losses import functional

    routed = {}
    monkeypatch.setattr(cuda, "handles", lambda logits: True)
    monkeypatch.setattr(functional, "_focal_device_scalars",
                        lambda logits, target, gamma, alpha, *rest: routed.update(gamma=gamma, alpha=alpha))
    monkeypatch.setattr(functional, "_dual_focal_device_params", lambda logits, target, values, *rest: routed.update(
        zip(("alpha", "beta", "gamma", "rho"), values)))
    logits, target = torch.empty(2, 3, 4, 4, device="meta"), torch.empty(2, 4, 4, dtype=torch.long, device="meta")
    params = {"gamma": torch.tensor(2.0), "alpha": torch.tensor(0.25)}
    if name == "dual_focal_loss":
        params.update(rho=torch.tensor(1.5), beta=0.5)
    params[device_param] = params[device_param].to("meta")
    getattr(SF, name)(logits, target, **params)
    assert routed[device_param] is params[device_param]
    for other in set(params) - {device_param}:
        assert type(routed[other]) is float and routed[other] == float(params[other]), other


@pytest.mark.gpu
@pytest.mark.parametrize("name, kwargs", [("cross_entropy", {}), ("focal_loss", {}), ("recall_loss", {}),
                                          ("dual_focal_loss", {}), ("cross_entropy", {"label_smoothing": 0.1}),
                                          ("ohem_cross_entropy", {}), ("focal_loss", {"gamma": "device", "alpha": "device"}),
                                          ("focal_loss", {"gamma": "device", "alpha": "host"}),
                                          ("focal_loss", {"gamma": "host", "alpha": "device"}),
                                          ("dual_focal_loss", {"gamma": "device", "rho": "host"})])
def test_one_synchronisation_per_call_on_cuda(name, kwargs):
    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z = logits.cuda().requires_grad_()
    y = target.cuda()
    made = {"device": lambda: torch.tensor(1.5, device="cuda"), "host": lambda: torch.tensor(1.5)}
    kwargs = {key: made[value]() if value in made else value for key, value in kwargs.items()}

    def step():
        getattr(SF, name)(z, y, **kwargs).backward()
    step()  # warm-up: compilation may synchronise
    syncs = count_syncs(step)
    assert len(syncs) <= 1, syncs


@pytest.mark.gpu
@pytest.mark.parametrize("name, params", [
    ("dice", {}), ("jaccard", {"per_image": "image"}), ("focal_tversky", {}), ("generalized_dice", {}),
    ("lovasz", {}), ("lovasz", {"per_image": "image"}), ("dice_ce", {}), ("dice_focal", {}), ("unified_focal", {}),
    ("boundary", {}), ("dice_boundary", {})])
def test_region_losses_take_one_synchronisation_per_call_on_cuda(name, params):
    """#12: no host-device synchronisation per call beyond one (the label and finiteness check); the
    sums and Unified Focal read all their passes' flags at once (``device_checks.one_check_for_all``)."""
    import segloss

    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z, y = logits.cuda().requires_grad_(), target.cuda()
    criterion = segloss.create_loss(name, **params)

    def step():
        criterion(z, y).backward()
    step()
    syncs = count_syncs(step)
    assert len(syncs) <= 1, syncs


@pytest.mark.gpu
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_learnable_dual_focal_takes_one_synchronisation_on_cuda(reduction):
    import segloss

    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z, y = logits.cuda().requires_grad_(), target.cuda()
    module = segloss.DualFocalLoss(learnable=("alpha", "beta", "gamma", "rho"), reduction=reduction).cuda()

    def step():
        module(z, y).sum().backward()
    step()  # warm-up: compilation may synchronise
    assert len(count_syncs(step)) <= 1


@pytest.mark.gpu
@pytest.mark.parametrize("kwargs", [{"weight": [0.5] * 10 + [2.0] * 9}, {"alpha": [0.25] * 19, "gamma": 2.0},
                                    {"weight": torch.tensor([0.5] * 10 + [2.0] * 9)}],
                         ids=["weight list", "alpha list", "weight CPU tensor"])
def test_class_vectors_from_the_host_take_no_extra_synchronisation_on_cuda(kwargs):
    """A weight list (or a CPU weight tensor) is copied to the device once, not on every call: each
    copy from pageable memory synchronises."""
    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z, y = logits.cuda().requires_grad_(), target.cuda()
    loss = SF.focal_loss if "alpha" in kwargs else SF.cross_entropy

    def step():
        loss(z, y, **kwargs).backward()
    step()
    assert len(count_syncs(step)) <= 1


def test_a_host_class_vector_is_copied_to_an_accelerator_once_per_distinct_values():
    """The meta device stands in for CUDA here. Sequences and plain CPU tensors are cached by value
    (not a tensor carrying a gradient, a tangent or a vmap batch); a copy first made in inference
    mode is a normal tensor, which a later training step can save for backward."""
    from segloss.losses._checks import class_vector

    on_device = torch.empty(2, 3, device="meta")
    with torch.inference_mode():
        first = class_vector([1.0, 2.0, 3.0], 3, "weight", on_device)
    assert not first.is_inference()
    assert class_vector([1.0, 2.0, 3.0], 3, "weight", on_device) is first
    assert class_vector(torch.tensor([1.0, 2.0, 3.0]), 3, "weight", on_device) is first  # a plain tensor: by values
    assert class_vector([1.0, 2.0, 4.0], 3, "weight", on_device) is not first
    assert class_vector([1.0, 2.0, 3.0], 3, "weight", on_device.double()).dtype == torch.float64
    with pytest.raises(ValueError, match="finite, >= 0"):
        class_vector([1.0, -2.0, 3.0], 3, "weight", on_device)  # still checked on every call


def test_a_host_class_tensor_is_copied_to_an_accelerator_once_per_distinct_values():
    """A CPU weight tensor with accelerator logits: one copy per distinct values, however they were
    changed: a write through ``.data`` or a numpy view keeps the tensor's version, and a copy kept by
    the tensor's identity went stale there. A tensor that wants a gradient is copied on each call.
    The meta device stands in for CUDA; ``.data`` writes are checked again too."""
    from segloss.losses._checks import class_vector

    on_device = torch.empty(2, 3, device="meta")
    weight = torch.tensor([1.0, 2.0, 3.0])
    with torch.inference_mode():
        first = class_vector(weight, 3, "weight", on_device)
    assert not first.is_inference() and first.device.type == "meta"
    assert class_vector(weight, 3, "weight", on_device) is first
    assert class_vector(weight.clone(), 3, "weight", on_device) is first  # the same values
    assert class_vector(weight, 3, "weight", on_device.double()).dtype == torch.float64
    version = weight._version
    weight.data.mul_(7.0)
    assert weight._version == version  # what fooled a cache keyed by (tensor, version)
    changed = class_vector(weight, 3, "weight", on_device)
    assert changed is not first and class_vector(torch.tensor([7.0, 14.0, 21.0]), 3, "weight", on_device) is changed
    array = np.ones(3, dtype=np.float32)
    from_numpy = torch.from_numpy(array)
    ones = class_vector(from_numpy, 3, "weight", on_device)
    array *= 3.0
    assert class_vector(from_numpy, 3, "weight", on_device) is not ones
    weight.data[1] = -1.0
    with pytest.raises(ValueError, match="finite, >= 0"):
        class_vector(weight, 3, "weight", on_device)  # a .data write is checked again
    learnable = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    assert class_vector(learnable, 3, "weight", on_device) is not class_vector(learnable, 3, "weight", on_device)


@pytest.mark.gpu
def test_recall_loss_with_momentum_takes_one_synchronisation_on_cuda():
    import segloss

    logits, target = random_batch(2, 19, (64, 64), seed=11)
    z, y = logits.cuda().requires_grad_(), target.cuda()
    module = segloss.RecallLoss(momentum=0.9, num_classes=19).cuda()

    def step():
        module(z, y).backward()
    step()
    assert len(count_syncs(step)) <= 1


def test_every_kernel_function_runs_on_its_tensors_device():
    """Triton launches on the current CUDA device: each autograd Function of the CUDA backend makes its
    tensors' device current (logits on cuda:1 with cuda:0 current would be read from the wrong GPU)."""
    functions = [value for module in (cuda, cuda_region) for value in vars(module).values()
                 if isinstance(value, type) and issubclass(value, torch.autograd.Function)]
    assert {f.__name__ for f in functions} >= {"FocalFamilyTriton", "DualFocalTriton", "RegionSumsTriton"}
    for function in functions:
        for method in ("forward", "backward"):
            assert getattr(getattr(function, method), "device_guarded", False), f"{function.__name__}.{method}"


def test_the_device_guard_makes_the_first_cuda_tensors_device_current(monkeypatch):
    entered = []

    class Recorder:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            entered.append(self.device)

        def __exit__(self, *exc):
            return False

    class OnCuda(torch.Tensor):  # a CPU tensor that says it is on CUDA: the guard's only question
        @property
        def is_cuda(self):
            return True

    monkeypatch.setattr(torch.cuda, "device", Recorder)
    guarded = cuda.on_the_tensors_device(lambda ctx, *args: len(args))
    on_cuda = torch.Tensor._make_subclass(OnCuda, torch.zeros(1))
    assert guarded(None, 0.5, on_cuda, torch.zeros(2)) == 3 and entered == [on_cuda.device]
    entered.clear()
    assert guarded(None, torch.zeros(1), on_cuda) == 2 and entered == []  # the first tensor decides


@pytest.mark.parametrize("name", ["dice_ce", "dice_focal", "unified_focal", "dice"])
def test_a_sum_of_losses_reads_its_flags_once(monkeypatch, name):
    """#12's one synchronisation per call: the parts of a sum (and Unified Focal's focal, CE and
    region passes) hand their bad-input flags to one read at the end; bad labels still raise."""
    import segloss

    reads = []
    real_tolist = torch.Tensor.tolist

    def counting_tolist(self):
        reads.append(self.shape)
        return real_tolist(self)

    logits, target = (t.to(DEVICE) for t in random_batch(2, 4, (5, 6), scale=3.0, ignore_frac=0.1, seed=40))
    criterion = segloss.create_loss(name)
    want = criterion(logits, target)  # before counting: the first call may read once-only things
    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    torch.testing.assert_close(criterion(logits, target), want)
    assert len(reads) == 1, reads  # the flags of every pass, in one read
    monkeypatch.setattr(torch.Tensor, "tolist", real_tolist)
    bad = target.clone()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"labels outside \[0, 4\) that are not ignore_index=255: \[7\]"):
        criterion(logits, bad)
