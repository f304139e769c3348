"""Forward + backward time and peak memory of each loss, as ratios to torch's cross-entropy.

Every measurement runs in a fresh child process, so one loss's allocations cannot hide
another's. Memory: with ``MALLOC_MMAP_THRESHOLD_=65536`` (freed blocks leave the resident set),
after a warm-up forward + backward and dropping the gradient, the peak is reset with
``/proc/self/clear_refs`` and ``VmHWM`` read after one more pass; "extra memory" is that peak
above the resident set before the pass, in units of the logits' size (the gradient alone is
1.0x). Time: in a separate child with the default allocator (that setting makes every large
allocation an mmap with fresh page faults, which is not how a training process runs), the median
of ``--repeats`` passes after a warm-up. Torch's own ``F.cross_entropy`` is measured in the same
run, interleaved, and is the baseline of every ratio; absolute times on a shared machine mean
little. kornia's ``focal_loss`` and MONAI's ``FocalLoss(use_softmax=True)`` (benchmark/test-only
dependencies) run on the same inputs (ignored pixels set to class 0 for MONAI, which has no
ignore index over a softmax).

With ``--compiled`` segloss's losses run through ``torch.compile``'d kernels
(``segloss.use_compiled_kernels()``); their compilation happens in the warm-up, outside the
measurement, and its time is printed in its own column.

Usage: python benchmarks/bench_losses.py [--shape 8 19 256 256] [--rounds 2] [--repeats 5] [--compiled]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

COMPILED = ("ce", "focal", "dual_focal", "recall")  # the losses use_compiled_kernels() changes
LOSSES = {
    "torch F.cross_entropy": "torch_ce",
    "segloss cross_entropy": "ce",
    "segloss focal_loss": "focal",
    "segloss dual_focal_loss": "dual_focal",
    "segloss recall_loss": "recall",
    "segloss label-smoothing CE (0.1)": "label_smoothing",
    "segloss OHEM CE": "ohem",
    "segloss soft Dice": "dice",
    "segloss generalized Dice": "generalized_dice",
    "segloss unified focal": "unified_focal",
    "segloss Lovász-Softmax": "lovasz",
    "segloss boundary (maps given)": "boundary",
    "segloss boundary (maps per call)": "boundary_maps",
    "kornia focal_loss": "kornia_focal",
    "MONAI FocalLoss(softmax)": "monai_focal",
}


def _read_status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _loss_fn(key: str):
    import torch
    import torch.nn.functional as F

    import segloss.losses.functional as SF
    from segloss.losses import region
    from segloss.losses.unified_focal import unified_focal_loss

    if key == "kornia_focal":
        from kornia.losses import focal_loss

        return lambda z, t: focal_loss(z, t, alpha=None, gamma=2.0, reduction="mean", ignore_index=255)
    if key == "monai_focal":
        from monai.losses import FocalLoss

        monai_loss = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0)
        return lambda z, t: monai_loss(z, torch.where(t == 255, 0, t).unsqueeze(1))
    if key == "boundary":  # the distance maps computed once per mask (in the warm-up), as a data loader would
        from timing import boundary_with_cached_maps

        return boundary_with_cached_maps()
    return {
        "torch_ce": lambda z, t: F.cross_entropy(z, t, ignore_index=255),
        "boundary_maps": SF.boundary_loss,
        "ce": SF.cross_entropy,
        "focal": lambda z, t: SF.focal_loss(z, t, gamma=2.0),
        "dual_focal": SF.dual_focal_loss,
        "recall": SF.recall_loss,
        "label_smoothing": lambda z, t: SF.cross_entropy(z, t, label_smoothing=0.1),
        "ohem": SF.ohem_cross_entropy,
        "dice": region.soft_dice_loss,
        "generalized_dice": region.generalized_dice_loss,
        "unified_focal": unified_focal_loss,
        "lovasz": region.lovasz_softmax_loss,
    }[key]


def child(key: str, shape: list[int], repeats: int, compiled: bool) -> dict:
    """Measure one loss in this (fresh) process: seconds per pass (``repeats > 0``) or peak bytes."""
    import torch

    import segloss

    segloss.use_compiled_kernels(compiled and key in COMPILED)
    torch.manual_seed(0)
    logits = (3 * torch.randn(*shape)).requires_grad_()
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    target[:, :8] = 255
    loss_fn = _loss_fn(key)
    start = time.perf_counter()
    loss_fn(logits, target).backward()  # warm-up (and compilation)
    warm_up = time.perf_counter() - start
    logits.grad = None
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    if repeats == 0:
        before = _read_status("VmRSS")
        loss_fn(logits, target).backward()
        return {"extra_bytes": _read_status("VmHWM") - before, "logits_bytes": logits.numel() * 4,
                "warm_up": warm_up}
    times = []
    for _ in range(repeats):
        logits.grad = None
        start = time.perf_counter()
        loss_fn(logits, target).backward()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"seconds": times[len(times) // 2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[8, 19, 256, 256])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is kept")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per child (median)")
    parser.add_argument("--compiled", action="store_true", help="segloss.use_compiled_kernels() for segloss's losses")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.shape, args.repeats, args.compiled)))
        return
    memory_env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    best: dict[str, dict] = {key: {"seconds": float("inf"), "extra_bytes": float("inf")} for key in LOSSES.values()}

    def run_child(key: str, repeats: int, env: dict) -> dict:
        cmd = [sys.executable, __file__, "--child", key, "--repeats", str(repeats), "--shape", *map(str, args.shape),
               *(["--compiled"] if args.compiled else [])]
        return json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)

    for _ in range(args.rounds):
        for key in LOSSES.values():
            memory = run_child(key, 0, memory_env)
            seconds = run_child(key, args.repeats, dict(os.environ))["seconds"]
            best[key] = {"seconds": min(seconds, best[key]["seconds"]), "logits_bytes": memory["logits_bytes"],
                         "extra_bytes": min(memory["extra_bytes"], best[key]["extra_bytes"]),
                         "warm_up": memory["warm_up"]}
    base = best["torch_ce"]
    mode = "torch.compile'd kernels (use_compiled_kernels)" if args.compiled else "eager fused path"
    print(f"forward + backward on float32 logits {tuple(args.shape)}, CPU, {os.cpu_count()} cores, segloss {mode} "
          f"(best of {args.rounds} rounds, median of {args.repeats} passes)")
    print(f"{'loss':<34}{'ms':>9}{'time / torch CE':>17}{'extra mem / logits':>20}{'mem / torch CE':>16}"
          f"{'first call s':>14}")
    for label, key in LOSSES.items():
        r = best[key]
        print(f"{label:<34}{r['seconds'] * 1e3:>9.1f}{r['seconds'] / base['seconds']:>17.2f}"
              f"{r['extra_bytes'] / r['logits_bytes']:>20.2f}{r['extra_bytes'] / max(base['extra_bytes'], 1):>16.2f}"
              f"{r['warm_up']:>14.2f}")


if __name__ == "__main__":
    main()
