"""Shared helpers of the benchmark scripts (run as ``python benchmarks/<script>.py``): timing, loss fixtures."""

import time
from collections.abc import Callable


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Seconds of the fastest of ``repeats`` calls of ``fn``, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def boundary_with_cached_maps():
    """The boundary loss with each target's distance maps computed once (on its first call, e.g. a
    warm-up), as a data loader would precompute them: scipy's EDT stays out of the timing."""
    from segloss.losses import functional as SF

    maps = {}

    def boundary(z, t):
        if id(t) not in maps:
            maps[id(t)] = SF.signed_distance_maps(t, z.shape[1])
        return SF.boundary_loss(z, t, distance_maps=maps[id(t)])
    return boundary
