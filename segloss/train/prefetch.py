"""Draw training batches ahead, in worker processes, so a GPU is not bound by CPU scene drawing.

A trainer's batch of step ``k`` is a pure function of ``(seed, k)``
(:meth:`segloss.train.trainer.Trainer.batch`), so batches ``k+1 .. k+depth`` can be drawn while
step ``k`` trains, each in its own process, and they are the very same arrays as if drawn in
line. On an H200 host a 256 px street batch of 16 draws at about 4 batches/s on one core; ``w``
workers draw about ``w`` times that.

    prefetcher = BatchPrefetcher(partial(make_batch, "street", 16, 256), seeds_of_steps, workers=8)
    images, masks = prefetcher.get(step)     # waits only if that batch is not drawn yet
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

import torch


def default_workers(device: torch.device) -> int:
    """Workers a trainer on ``device`` uses: none on the CPU (training needs the cores), else up to 8."""
    if device.type == "cpu":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 2))


class BatchPrefetcher:
    """Batches ``draw(seed_of(k))`` for ``k = index, index + 1, ...`` computed ahead in processes.

    Args:
        draw: picklable ``seed -> (images, masks)`` (e.g. a ``functools.partial`` of ``make_batch``).
        seed_of: ``step -> seed`` (cheap; called in this process).
        workers: processes drawing in parallel (>= 1).
        depth: batches kept in flight ahead of the one asked for (default ``2 * workers``).
    """

    def __init__(self, draw: Callable, seed_of: Callable[[int], int], workers: int, depth: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.draw, self.seed_of, self.workers = draw, seed_of, workers
        self.depth = depth or 2 * workers
        # spawn: a forked child of a process that has initialised CUDA cannot use torch safely
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self._pending: dict[int, Future] = {}

    def get(self, index: int):
        """The batch of step ``index``; schedules the next ``depth`` steps' batches."""
        for k in [k for k in self._pending if k < index]:  # a skipped or reset sequence: drop stale work
            self._pending.pop(k).cancel()
        for k in range(index, index + self.depth + 1):
            if k not in self._pending:
                self._pending[k] = self._pool.submit(self.draw, self.seed_of(k))
        return self._pending.pop(index).result()

    def drop_pending(self) -> None:
        """Cancel the batches scheduled but not yet asked for (the workers stay)."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    def close(self) -> None:
        """Stop the workers (pending batches are dropped)."""
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass
