"""A Cityscapes-sized batch: every loss forward + backward on float32 ``(2, 19, 1024, 2048)`` logits.

Prints, per loss, the time and the peak resident memory above the logits' own allocation, as a
ratio to the logits' size (and torch's ``F.cross_entropy`` as the baseline in the same run), for
``reduction="mean"`` (forward + backward) and ``reduction="none"`` (forward: the per-pixel map).
Each loss runs in a fresh process with ``MALLOC_MMAP_THRESHOLD_=65536``, after one warm-up pass.
With ``--compiled`` segloss's losses use ``segloss.use_compiled_kernels()`` (compiled in the
warm-up).

Usage: python benchmarks/bench_large.py [--shape 2 19 1024 2048] [--compiled]
"""

import argparse
import json
import os
import subprocess
import sys
import time

NAMES = ("torch_ce", "cross_entropy", "focal_loss", "dual_focal_loss", "recall_loss")


def child(name: str, shape: list[int], compiled: bool) -> dict:
    import torch
    import torch.nn.functional as F

    import segloss
    import segloss.losses.functional as SF

    fn = (lambda z, t, reduction: F.cross_entropy(z, t, ignore_index=255, reduction=reduction)) if name == "torch_ce" \
        else (lambda z, t, reduction: getattr(SF, name)(z, t, reduction=reduction))
    torch.manual_seed(0)
    logits = (3 * torch.randn(*shape)).requires_grad_()
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]))
    target[:, :16] = 255
    segloss.use_compiled_kernels(compiled and name != "torch_ce")
    fn(logits, target, "mean").backward()  # warm-up (and compilation) at full size: steady-state timing
    logits.grad = None

    def rss(field: str) -> int:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith(field))

    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    before, start = rss("VmRSS"), time.perf_counter()
    fn(logits, target, "mean").backward()
    seconds, peak = time.perf_counter() - start, rss("VmHWM") - before
    logits.grad = None
    with torch.no_grad():
        pixel_map = fn(logits, target, "none")
    return {"seconds": seconds, "extra": peak / (logits.numel() * 4), "map_shape": list(pixel_map.shape),
            "finite": bool(torch.isfinite(pixel_map).all())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[2, 19, 1024, 2048])
    parser.add_argument("--compiled", action="store_true", help="segloss.use_compiled_kernels() for segloss's losses")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.shape, args.compiled)))
        return
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    rows = {}
    for name in NAMES:
        cmd = [sys.executable, __file__, "--child", name, "--shape", *map(str, args.shape),
               *(["--compiled"] if args.compiled else [])]
        rows[name] = json.loads(subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout)
    base = rows["torch_ce"]["seconds"]
    mode = "torch.compile'd kernels" if args.compiled else "eager fused path"
    print(f"float32 logits {tuple(args.shape)}, segloss {mode}: forward + backward (mean), then the "
          "reduction='none' map")
    print(f"{'loss':<18}{'s':>8}{'time / torch CE':>17}{'extra mem / logits':>20}  map")
    for name, row in rows.items():
        print(f"{name:<18}{row['seconds']:>8.2f}{row['seconds'] / base:>17.2f}{row['extra']:>20.2f}  "
              f"{tuple(row['map_shape'])} finite={row['finite']}")


if __name__ == "__main__":
    main()
