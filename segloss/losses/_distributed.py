"""Sums over the replicas of ``torch.distributed``, for the losses that score the global batch
(the region losses' sums, recall's counts).

Every such loss takes ``sync_distributed``: True sums over the default process group, False over
nothing (e.g. an evaluation on one rank alone), a ``torch.distributed.ProcessGroup`` over that
group's processes (e.g. the replicas of one model when a job trains several, or the data-parallel
group of a job that also splits models across GPUs).
"""

from __future__ import annotations

import numpy as np
import torch


_NOT_A_MEMBER = ("sync_distributed is a process group that this process (global rank {rank}) is not a "
                 "member of (new_group gives non-members a placeholder): pass each rank the group it belongs to")


def check_sync(sync_distributed):
    """``sync_distributed`` as the losses take it: True (sum over every process of the default
    ``torch.distributed`` group), False (no collective) or a ``torch.distributed.ProcessGroup``
    (sum over its processes only, e.g. the replicas of one model when a job trains several).

    Raises:
        TypeError: anything else (a rank list is not a group: make one with ``new_group``).
    """
    if isinstance(sync_distributed, (bool, np.bool_)):
        return bool(sync_distributed)
    if torch.distributed.is_available():
        if isinstance(sync_distributed, torch.distributed.ProcessGroup):
            return sync_distributed
        if (isinstance(sync_distributed, int) and sync_distributed == torch.distributed.GroupMember.NON_GROUP_MEMBER
                and torch.distributed.is_initialized()):
            raise ValueError(_NOT_A_MEMBER.format(rank=torch.distributed.get_rank()))
    raise TypeError("sync_distributed must be True, False or a torch.distributed.ProcessGroup "
                    f"(from torch.distributed.new_group), got {sync_distributed!r}")


def _replicas(group=True) -> int:
    """Processes that ``global_sum`` sums over: 1 with ``group=False``, when ``torch.distributed`` is
    not initialised, or in a group of one; else the default group's (``True``) or ``group``'s size.

    Raises:
        ValueError: this process is not a member of ``group``.
    """
    if group is False or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 1
    size = torch.distributed.get_world_size(None if group is True else group)
    if size < 1:  # torch answers -1 for a group this rank is not in
        raise ValueError(_NOT_A_MEMBER.format(rank=torch.distributed.get_rank()))
    return size


class _AllReduceSum(torch.autograd.Function):
    """``y = sum over replicas of x``; the gradient of each replica's ``x`` is the sum over replicas
    of the gradients of ``y``, itself this function, so that a double backward is right too (what
    ``torch.distributed.nn.functional.all_reduce`` did; that API is deprecated and warns on every call).
    ``group``: None (the default group) or a process group."""

    @staticmethod
    def forward(ctx, values, group):
        ctx.group = group
        total = values.clone(memory_format=torch.contiguous_format)  # NCCL takes contiguous tensors only
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.SUM, group=group)
        return total

    @staticmethod
    def backward(ctx, grad):
        return _AllReduceSum.apply(grad, ctx.group), None


def global_sum(values: torch.Tensor, group=True) -> torch.Tensor:
    """``values`` summed over every replica, differentiably: the backward pass sums the replicas'
    gradients too, so after DistributedDataParallel averages them each parameter gets the gradient
    of the loss on the whole batch. ``group``: as the losses' ``sync_distributed`` (True: the
    default group; a ``ProcessGroup``: its processes; False: no sum). The identity in a single
    process."""
    group = check_sync(group)
    if _replicas(group) == 1:
        return values
    return _AllReduceSum.apply(values, None if group is True else group)


def all_reduce_counts(counts: torch.Tensor, group=True) -> torch.Tensor:
    """Integer ``counts`` summed over the replicas of ``group`` (as :func:`global_sum`), no gradient."""
    group = check_sync(group)
    if _replicas(group) == 1:
        return counts
    counts = counts.clone()
    torch.distributed.all_reduce(counts, op=torch.distributed.ReduceOp.SUM, group=None if group is True else group)
    return counts
