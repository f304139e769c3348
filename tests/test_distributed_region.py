"""Region losses under DistributedDataParallel score the global batch: two gloo processes, each
with half the batch (shards holding different classes), give every replica the loss of one
process on the whole batch, and after DDP's averaging the model's gradient of that process."""

import gc

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import segloss
from segloss.losses.region import soft_dice_loss

CASES = {  # name -> create_loss parameters
    "dice": {}, "jaccard": {}, "tversky": {"alpha": 0.3, "beta": 0.7}, "focal_tversky": {},
    "dice_image": {"per_image": "image"}, "lovasz_image": {"per_image": "image"},
    "generalized_dice": {}, "generalized_dice_image": {"per_image": "image"},
    "unified_focal": {"per_image": "batch"}, "unified_focal_image": {"per_image": "image"},
}


def criterion(case: str, sync: bool = True) -> torch.nn.Module:
    name = case.replace("_image", "")
    module = segloss.create_loss(name, **CASES[case])
    module.sync_distributed = sync
    return module


def batch():
    """The whole batch: 4 images; images 0-1 hold classes 0 and 1, images 2-3 classes 0, 2 and 3."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64)
    target = torch.zeros(4, 8, 8, dtype=torch.long)
    target[:2, :, 4:] = 1
    target[2:, :4, :] = 2
    target[2:, 6:, 6:] = 3
    target[0, 0, 0] = 255
    return images, target


def model():
    torch.manual_seed(7)
    return torch.nn.Conv2d(3, 4, 3, padding=1).double()


def _worker(rank, world_size, init_file, out_dir, sync):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        images, target = batch()
        mine = slice(2 * rank, 2 * rank + 2)
        net = torch.nn.parallel.DistributedDataParallel(model())
        out = {}
        for case in CASES:
            net.zero_grad()
            loss = criterion(case, sync)(net(images[mine]), target[mine])
            loss.backward()
            out[case] = {"loss": loss.detach(), "grads": [p.grad.clone() for p in net.parameters()]}
        torch.save(out, f"{out_dir}/rank{rank}.pt")
        # DDP's reducer goes before its process group: torn down after it (at the worker's exit) it
        # hung the process in about one run in ten here (gloo, torch 2.13), and with it the test
        del net, loss
        gc.collect()
    finally:
        dist.destroy_process_group()


def run(tmp_path, sync: bool) -> list[dict]:
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), sync), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def whole_batch() -> dict:
    images, target = batch()
    net = model()
    out = {}
    for case in CASES:
        net.zero_grad()
        loss = criterion(case)(net(images), target)
        loss.backward()
        out[case] = {"loss": loss.detach(), "grads": [p.grad.clone() for p in net.parameters()]}
    return out


def test_every_replica_gets_the_whole_batchs_loss_and_gradient(tmp_path):
    expected = whole_batch()
    for rank, result in enumerate(run(tmp_path, sync=True)):
        for case in CASES:
            torch.testing.assert_close(result[case]["loss"], expected[case]["loss"], rtol=0, atol=1e-6,
                                       msg=f"{case}, rank {rank}: loss")
            for got, want in zip(result[case]["grads"], expected[case]["grads"]):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-6, msg=f"{case}, rank {rank}: gradient")


def test_without_the_switch_each_replica_scores_only_its_shard(tmp_path):
    expected = whole_batch()
    result = run(tmp_path, sync=False)[0]
    assert abs(float(result["dice"]["loss"] - expected["dice"]["loss"])) > 1e-3  # the test above can fail


EVAL_LOSSES = ("recall", "dice", "generalized_dice", "unified_focal", "dice_ce", "dice_boundary")


def _evaluate_on_rank_0(rank, world_size, init_file, out_dir):
    """Rank 0 scores its shard with every loss that all-reduces, built with sync_distributed=False;
    rank 1 never joins a collective (it waits for rank 0's file). A collective on rank 0 would wait
    for it until the group's 15 s timeout and raise."""
    import datetime
    import os
    import time

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=15))
    try:
        done = f"{out_dir}/rank0.pt"
        if rank == 1:
            deadline = time.monotonic() + 120
            while not os.path.exists(done) and time.monotonic() < deadline:
                time.sleep(0.1)
            return
        images, target = batch()
        logits = model()(images[:2]).detach()
        out = {}
        for name in EVAL_LOSSES:
            started = time.monotonic()
            try:
                with torch.inference_mode():
                    value = segloss.create_loss(name, sync_distributed=False)(logits, target[:2])
                out[name] = {"loss": value.clone(), "seconds": time.monotonic() - started}
            except Exception as err:  # a collective timed out: reported by the test
                out[name] = {"error": f"{type(err).__name__}: {err}"[:300], "seconds": time.monotonic() - started}
        torch.save(out, done + ".tmp")
        os.replace(done + ".tmp", done)
    finally:
        dist.destroy_process_group()


def test_losses_built_without_sync_evaluate_on_one_rank_alone(tmp_path):
    """``if rank == 0: validate()``: recall's counts and the region sums (in sums too) take no
    collective with ``create_loss(..., sync_distributed=False)``; each equals its shard scored alone."""
    mp.spawn(_evaluate_on_rank_0, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    result = torch.load(tmp_path / "rank0.pt", weights_only=True)
    images, target = batch()
    logits = model()(images[:2]).detach()
    for name in EVAL_LOSSES:
        assert "error" not in result[name], (name, result[name])  # a collective would time out (15 s): an error
        torch.testing.assert_close(result[name]["loss"], segloss.create_loss(name)(logits, target[:2]))


def _double_backward(rank, world_size, init_file, out_dir):
    import datetime

    from segloss.losses.region import global_sum

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=30))
    try:
        x = torch.tensor([1.0 + rank], dtype=torch.float64, requires_grad=True)
        y = global_sum(x)  # x_0 + x_1 = 3 on both ranks
        g, = torch.autograd.grad((y ** 2).sum(), x, create_graph=True)  # the sum over ranks of 2 y: 4 y
        gg, = torch.autograd.grad(g.sum(), x)  # 4 d y / d x_r summed over ranks: 8
        torch.save({"g": g.detach(), "gg": gg}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_the_all_reduce_takes_a_double_backward(tmp_path):
    """A gradient penalty through a region loss under DDP: the all-reduce's backward is the all-reduce
    itself, so its own gradient is right (an in-place all-reduce in backward gave 4 here, not 8)."""
    mp.spawn(_double_backward, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert result["g"].tolist() == [12.0] and result["gg"].tolist() == [8.0], (rank, result)


GROUP_LOSSES = ("dice", "lovasz_image", "generalized_dice_image", "unified_focal")


def _in_subgroups(rank, world_size, init_file, out_dir):
    """Ranks 0 and 1 share the whole batch's halves and sum over their own group; rank 2, alone in
    a second group, scores its own images (as a second model's replica would)."""
    import datetime

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=30))
    try:
        pair, single = dist.new_group([0, 1]), dist.new_group([2])  # every rank makes every group
        mine = pair if rank < 2 else single
        images, target = batch()
        shard = slice(2 * rank, 2 * rank + 2) if rank < 2 else slice(0, 4)
        out = {}
        for case in GROUP_LOSSES:
            logits = model()(images[shard]).detach().requires_grad_(True)
            loss = criterion(case, mine)(logits, target[shard])
            loss.backward()
            out[case] = {"loss": loss.detach(), "grad": logits.grad.clone()}
            out["recall"] = segloss.functional.batch_recall_weights(logits.detach(), target[shard],
                                                                    sync_distributed=mine)[0]
        if rank == 2:
            try:
                criterion("dice", pair)(model()(images[:2]), target[:2])
                out["non_member"] = "no error"
            except ValueError as err:
                out["non_member"] = str(err)
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_a_process_group_sums_over_its_own_processes_only(tmp_path):
    """``sync_distributed=group``: the losses sum over that group, not the world. The pair's
    replicas get the loss of their two shards together (and, before DDP's averaging over the pair,
    twice the whole batch's logits gradient: each replica's share of the global sum comes back from
    both); the third process, in a group of its own, scores its own batch as one process would."""
    mp.spawn(_in_subgroups, args=(3, str(tmp_path / "init"), str(tmp_path)), nprocs=3, join=True)
    images, target = batch()
    logits = model()(images).detach().requires_grad_(True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(3)]
    for case in GROUP_LOSSES:
        logits.grad = None
        expected = criterion(case)(logits, target)
        expected.backward()
        for rank in (0, 1):
            got = results[rank][case]
            torch.testing.assert_close(got["loss"], expected.detach(), rtol=0, atol=1e-9, msg=f"{case}, rank {rank}")
            torch.testing.assert_close(got["grad"], 2 * logits.grad[2 * rank:2 * rank + 2], rtol=0, atol=1e-9,
                                       msg=f"{case}, rank {rank}: gradient")
        # the whole batch on one process: the world (3 replicas) would have given another value
        torch.testing.assert_close(results[2][case]["loss"], expected.detach(), rtol=0, atol=1e-9)
        torch.testing.assert_close(results[2][case]["grad"], logits.grad, rtol=0, atol=1e-9)
    whole_recall = segloss.functional.batch_recall_weights(logits.detach(), target)[0]
    for rank in range(3):
        torch.testing.assert_close(results[rank]["recall"], whole_recall)
    assert "not a member" in results[2]["non_member"] and "global rank 2" in results[2]["non_member"]


def test_sync_distributed_takes_booleans_and_groups_only():
    for bad in ("yes", [0, 1], 1, None):
        with pytest.raises(TypeError, match="sync_distributed must be True, False or a torch.distributed.ProcessGroup"):
            segloss.create_loss("dice", sync_distributed=bad)
        with pytest.raises(TypeError, match="sync_distributed"):
            soft_dice_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), sync_distributed=bad)
        with pytest.raises(TypeError, match="sync_distributed"):
            segloss.functional.recall_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long),
                                           sync_distributed=bad)


def test_a_loss_holding_a_group_deep_copies_with_it_and_refuses_pickling_clearly(tmp_path):
    """An EMA of a model with the loss as a submodule deep-copies it: the copy shares the group (a
    handle to connections). Pickling says what to do instead of torch's "cannot pickle ProcessGroup"."""
    import copy
    import pickle

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        group = dist.new_group([0])
        model = torch.nn.Conv2d(3, 4, 1)
        model.loss = segloss.create_loss("dice_ce", sync_distributed=group)
        ema = copy.deepcopy(model)
        parts = [m for m in ema.loss.modules() if hasattr(m, "sync_distributed")]
        assert parts and all(m.sync_distributed is group for m in parts)
        assert ema.weight is not model.weight and torch.equal(ema.weight, model.weight)
        images, target = batch()
        torch.testing.assert_close(ema.loss(ema(images.float()), target), model.loss(model(images.float()), target))
        with pytest.raises(TypeError, match="sums over a torch.distributed process group .* save its state_dict"):
            pickle.dumps(model.loss)
        pickle.loads(pickle.dumps(segloss.create_loss("dice_ce")))  # without a group: as any module
    finally:
        dist.destroy_process_group()


def test_a_shallow_copy_shares_the_group_too(tmp_path):
    import copy

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        group = dist.new_group([0])
        loss = segloss.create_loss("dice", sync_distributed=group)
        shallow = copy.copy(loss)
        shallow.reduction = "none"
        assert shallow.sync_distributed is group and loss.reduction == "mean"
    finally:
        dist.destroy_process_group()
