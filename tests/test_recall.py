"""Recall loss: batch recall weights, gradients, the running average, and torch.distributed."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import segloss
import segloss.losses.functional as SF
from conftest import random_batch


def recall_weights_by_loop(logits, target, ignore_index=255):
    """1 - TP_c / N_c counted pixel by pixel in Python."""
    num_classes = logits.shape[1]
    pred = logits.argmax(1).flatten().tolist()
    labels = target.flatten().tolist()
    n = [0] * num_classes
    tp = [0] * num_classes
    for p, y in zip(pred, labels):
        if y == ignore_index:
            continue
        n[y] += 1
        tp[y] += int(p == y)
    return torch.tensor([(n[c] - tp[c]) / n[c] if n[c] else 1.0 for c in range(num_classes)]), torch.tensor(n) > 0


def test_recall_weights_hand_computed():
    # class 0: 4 pixels, 1 predicted right -> R = .25, w = .75; class 1: 2 of 2 right -> w = 0;
    # class 2 absent -> weight 1 (unused), not present; the ignored pixel counts for nobody.
    target = torch.tensor([[0, 0, 0, 0, 1, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 2, 1, 1, 0]])
    logits = torch.nn.functional.one_hot(pred, 3).movedim(-1, 1).float() * 5
    weights, present = SF.batch_recall_weights(logits, target)
    torch.testing.assert_close(weights, torch.tensor([0.75, 0.0, 1.0]))
    assert present.tolist() == [True, True, False]
    # loss: (4 * .75 * CE_0-pixels + 0) / 6 valid pixels
    ce = SF.cross_entropy(logits, target, reduction="none")
    expected = 0.75 * ce[0, :4].sum() / 6
    torch.testing.assert_close(SF.recall_loss(logits, target), expected)


def test_recall_weights_match_a_python_loop_on_random_data():
    logits, target = random_batch(3, 6, (7, 5), ignore_frac=0.2, seed=11)
    weights, present = SF.batch_recall_weights(logits, target)
    expected_w, expected_present = recall_weights_by_loop(logits, target)
    torch.testing.assert_close(weights, expected_w)
    assert torch.equal(present, expected_present)


def test_recall_gradient_is_ce_gradient_scaled_by_detached_weights():
    logits, target = random_batch(2, 4, (6, 6), ignore_frac=0.1, seed=12)
    weights, _ = recall_weights_by_loop(logits, target)
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    SF.recall_loss(a, target, reduction="sum").backward()
    ce = SF.cross_entropy(b, target, reduction="none")
    (ce * weights[target.clamp(max=3)]).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_recall_of_a_perfect_prediction_is_zero():
    target = torch.randint(0, 3, (2, 4, 4))
    logits = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    assert SF.recall_loss(logits, target).item() == 0.0


def test_recall_gradcheck_float64():
    logits, target = random_batch(2, 3, (3, 3), ignore_frac=0.2, dtype=torch.float64, seed=13)
    logits.requires_grad_()
    assert torch.autograd.gradcheck(lambda z: SF.recall_loss(z, target, weight=[1.0, 2.0, 0.5]), (logits,))


def test_float64_logits_get_float64_recall_weights_exactly():
    # a recall with no float32 representation (1/3, 2/7, ...): float32 weights were 1e-8 off in float64
    logits, target = random_batch(2, 5, (7, 9), ignore_frac=0.1, dtype=torch.float64, seed=15)
    pred, valid = logits.argmax(1), target != 255
    expected_w = []
    for c in range(5):
        n_c = int(((target == c) & valid).sum())
        tp_c = int(((target == c) & (pred == c)).sum())
        expected_w.append((n_c - tp_c) / n_c if n_c else 1.0)  # Python floats: float64
    expected_w = torch.tensor(expected_w, dtype=torch.float64)
    weights, _ = SF.batch_recall_weights(logits, target)
    assert weights.dtype == torch.float64
    torch.testing.assert_close(weights, expected_w, rtol=0, atol=1e-15)
    ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none")
    expected = (expected_w[target.clamp(max=4)] * ce)[valid].mean()
    for loss in (SF.recall_loss(logits, target), segloss.RecallLoss()(logits, target)):
        assert loss.dtype == torch.float64
        torch.testing.assert_close(loss, expected, rtol=1e-14, atol=0)


def test_recall_module_ema_updates_present_classes_only():
    loss = segloss.RecallLoss(momentum=0.5)
    target = torch.tensor([[0, 0, 1, 1]])
    first = torch.nn.functional.one_hot(torch.tensor([[1, 1, 1, 1]]), 3).movedim(-1, 1).float()
    loss(first, target)  # batch weights: class 0 -> 1, class 1 -> 0; class 2 absent keeps 1
    torch.testing.assert_close(loss.class_weights, torch.tensor([1.0, 0.5, 1.0]))
    second = torch.nn.functional.one_hot(torch.tensor([[0, 1, 1, 2]]), 3).movedim(-1, 1).float()
    target2 = torch.tensor([[0, 0, 2, 2]])  # class 0: 1/2 right, class 2: 1/2 right, class 1 absent
    loss(second, target2)
    torch.testing.assert_close(loss.class_weights, torch.tensor([0.75, 0.5, 0.75]))
    loss.eval()
    loss(first, target)  # eval: no update, running weights used
    torch.testing.assert_close(loss.class_weights, torch.tensor([0.75, 0.5, 0.75]))
    ce = SF.cross_entropy(first, target, reduction="none")
    torch.testing.assert_close(loss(first, target), (ce[0, :2] * 0.75 + ce[0, 2:] * 0.5).sum() / 4)


def test_recall_module_with_zero_momentum_equals_the_function():
    logits, target = random_batch(2, 5, (6, 6), ignore_frac=0.2, seed=14)
    module = segloss.RecallLoss()
    torch.testing.assert_close(module(logits, target), SF.recall_loss(logits, target))
    module.eval()
    torch.testing.assert_close(module(logits, target), SF.recall_loss(logits, target))


def test_recall_state_dict_round_trip_with_lazy_size():
    trained = segloss.RecallLoss(momentum=0.9)
    trained(*random_batch(2, 4, (5, 5), seed=15))
    fresh = segloss.RecallLoss(momentum=0.9)
    fresh.load_state_dict(trained.state_dict())
    torch.testing.assert_close(fresh.class_weights, trained.class_weights)
    with pytest.raises(ValueError, match="holds weights for 4 classes, got logits with 3"):
        fresh(*random_batch(1, 3, (2, 2)))
    fresh.load_state_dict(segloss.RecallLoss(momentum=0.9).state_dict())  # a never-used loss's state: a reset
    assert fresh.class_weights.numel() == 0  # (was torch's "size mismatch" for class_weights)
    fresh(*random_batch(1, 3, (2, 2)))  # sized again on its next call
    assert fresh.class_weights.numel() == 3


def _distributed_worker(rank, world_size, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        logits, target = random_batch(2, 4, (6, 6), ignore_frac=0.1, seed=100 + rank)
        module = segloss.RecallLoss(momentum=0.0)
        value = module(logits, target)
        torch.save({"weights": module.class_weights.clone(), "loss": value.detach(),
                    "functional": SF.recall_loss(logits, target).detach()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_recall_uses_global_batch_recall_under_torch_distributed(tmp_path):
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    shards = [random_batch(2, 4, (6, 6), ignore_frac=0.1, seed=100 + r) for r in range(2)]
    all_logits = torch.cat([s[0] for s in shards])
    all_target = torch.cat([s[1] for s in shards])
    global_w, _ = SF.batch_recall_weights(all_logits, all_target)
    for rank, (logits, target) in enumerate(shards):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(result["weights"], global_w)
        expected = SF.recall_weighted_ce(logits, target, global_w)
        torch.testing.assert_close(result["loss"], expected)
        torch.testing.assert_close(result["functional"], expected)
        local_w, _ = SF.batch_recall_weights(logits, target)
        assert not torch.allclose(local_w, global_w)  # the test would catch per-replica recall


def test_recall_module_inside_torch_func_transforms_never_keeps_a_transforms_tensor():
    """Inside ``torch.func.grad`` the module cannot update its buffer in place: momentum 0 uses the
    batch's weights (the function's gradient) and leaves the buffer alone; momentum > 0 refuses in
    training mode and uses the stored weights in eval mode. A buffer first made inside the
    transform was the transform's tensor, dead after it (a later call then read a stale wrapper)."""
    logits, target = random_batch(2, 3, (6, 6), seed=21)
    expected = torch.func.grad(lambda z: SF.recall_loss(z, target))(logits)
    for trained_before in (False, True):
        module = segloss.RecallLoss()
        if trained_before:
            module(logits, target)
        before = module.class_weights.clone()
        got = torch.func.grad(lambda z: module(z, target))(logits)
        torch.testing.assert_close(got, expected)
        assert type(module.class_weights) is torch.Tensor and torch.equal(module.class_weights, before)
        assert not torch._C._functorch.is_functorch_wrapped_tensor(module.class_weights)
    running = segloss.RecallLoss(momentum=0.5)
    with pytest.raises(RuntimeError, match=r"momentum > 0\) updates its running class weights in place"):
        torch.func.grad(lambda z: running(z, target))(logits)
    running(logits, target)  # trained once, outside
    running.eval()
    got = torch.func.grad(lambda z: running(z, target))(logits)
    torch.testing.assert_close(got, torch.func.grad(
        lambda z: SF.recall_weighted_ce(z, target, running.class_weights))(logits))
    fresh = segloss.RecallLoss(momentum=0.5).eval()  # never trained: weights 1, plain CE
    torch.testing.assert_close(torch.func.grad(lambda z: fresh(z, target))(logits),
                               torch.func.grad(lambda z: SF.cross_entropy(z, target))(logits))
    assert fresh.class_weights.numel() == 0


def test_a_lazily_sized_running_weight_buffer_takes_the_modules_dtype():
    module = segloss.RecallLoss(momentum=0.5).double()
    logits, target = random_batch(2, 3, (4, 4), dtype=torch.float64, seed=22)
    module(logits, target)
    assert module.class_weights.dtype == torch.float64 and module.class_weights.shape == (3,)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_running_weights_stay_float32_in_a_half_precision_model(dtype):
    """``model.to(bfloat16)`` converts every float buffer of the modules it holds; the running recall
    weights would then round each small update away (at momentum 0.99 a weight stuck 0.08 short)."""
    model = torch.nn.ModuleDict({"head": torch.nn.Conv2d(3, 3, 1), "loss": segloss.RecallLoss(momentum=0.99,
                                                                                              num_classes=3)})
    model.to(dtype)
    loss = model["loss"]
    assert model["head"].weight.dtype == dtype and loss.class_weights.dtype == torch.float32
    batch = torch.tensor([0.9, 0.5, 0.1])
    for _ in range(1000):
        loss._choose_weights(batch, torch.ones(3, dtype=torch.bool))
    torch.testing.assert_close(loss.class_weights, 0.99 ** 1000 * torch.ones(3) + (1 - 0.99 ** 1000) * batch,
                               rtol=1e-4, atol=1e-5)
    assert loss.double().class_weights.dtype == torch.float64  # more precision is kept
