"""Forward + backward of every loss on a CUDA device, against torch's CE and a copy of the logits.

For each shape and dtype: torch ``F.cross_entropy`` (the baseline of the "x torch CE" column),
a device copy of the logits (``logits.clone()``: one read and one write, the bandwidth floor of
any loss that writes a gradient), every segloss loss (CE, weighted CE, focal with scalar and
per-class alpha, Dual Focal at the authors' defaults and with rho = 1.5, recall, soft Dice,
Lovász) and the contenders kornia ``focal_loss`` and MONAI ``FocalLoss(use_softmax=True)`` /
``DiceLoss(softmax=True)`` where installed (given targets without an ignore label, which they
do not take). Time: CUDA events around ``loss(logits, target).backward()``, the median of
``--repeats`` after ``--warmup`` calls (the first call compiles the Triton kernels). Memory:
``torch.cuda.max_memory_allocated`` during one forward + backward, above what was allocated
before it, in units of the logits' size (the gradient alone is 1.0x).

With ``--sweep`` it times instead the Triton launch settings that a CPU machine could only
compile (``segloss.kernels.cuda``: logits per tile, warps, and the gradient written in forward or
recomputed in backward) on CE, focal, Dual Focal and soft Dice, against the same copy floor, so
that the defaults can be chosen from measurements.

Usage: python benchmarks/bench_gpu.py [--shapes 8x19x512x1024 2x19x1024x2048 16x150x256x256]
                                      [--dtypes float32 bfloat16] [--repeats 20] [--json out.json]
                                      [--sweep]
Without CUDA it says so and exits (nothing is measured, nothing guessed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import segloss  # noqa: E402
from segloss import functional as SF  # noqa: E402
from segloss.losses import region  # noqa: E402
from segloss.losses.unified_focal import unified_focal_loss  # noqa: E402


def segloss_losses(num_classes: int, device: str) -> dict:
    weight = torch.linspace(0.5, 2.0, num_classes, device=device)
    alpha = torch.linspace(0.25, 1.0, num_classes, device=device)
    return {
        "segloss cross_entropy": lambda z, y: SF.cross_entropy(z, y),
        "segloss cross_entropy (weight)": lambda z, y: SF.cross_entropy(z, y, weight=weight),
        "segloss focal_loss (gamma 2)": lambda z, y: SF.focal_loss(z, y, gamma=2.0),
        "segloss focal_loss (alpha per class)": lambda z, y: SF.focal_loss(z, y, gamma=2.0, alpha=alpha),
        "segloss dual_focal_loss": lambda z, y: SF.dual_focal_loss(z, y),
        "segloss dual_focal_loss (rho 1.5, gamma 2)": lambda z, y: SF.dual_focal_loss(z, y, gamma=2.0, rho=1.5),
        "segloss recall_loss": lambda z, y: SF.recall_loss(z, y),
        "segloss DualFocalLoss(learnable gamma)": segloss.DualFocalLoss(learnable=("gamma",)).to(device),
        "segloss RecallLoss(momentum 0.9)": segloss.RecallLoss(momentum=0.9, num_classes=num_classes).to(device),
        "segloss soft Dice": lambda z, y: region.soft_dice_loss(z, y),
        "segloss Lovász-Softmax": lambda z, y: region.lovasz_softmax_loss(z, y),
        "segloss label-smoothing CE (0.1)": lambda z, y: SF.cross_entropy(z, y, label_smoothing=0.1),
        "segloss OHEM CE": lambda z, y: SF.ohem_cross_entropy(z, y),
        "segloss generalized Dice": lambda z, y: region.generalized_dice_loss(z, y),
        "segloss unified focal": lambda z, y: unified_focal_loss(z, y),
        "segloss boundary (maps given)": _boundary_with_maps(),
        "segloss boundary (maps on the device)": lambda z, y: SF.boundary_loss(z, y),  # each call: the exact EDT
    }


def _boundary_with_maps():
    """The boundary loss given its distance maps, as a data loader would precompute them. Its time does
    not depend on the maps' values, so random float32 maps of the logits' shape stand in for scipy's
    (which take 20-35 s of CPU per batch at these shapes and would eat the device's minutes)."""
    maps = {}

    def boundary(z, t):
        if z.shape not in maps:
            maps.clear()
            maps[z.shape] = torch.randn(z.shape, device=z.device)
        return SF.boundary_loss(z, t, distance_maps=maps[z.shape])
    return boundary


def contenders() -> dict:
    found = {}
    try:
        from kornia.losses import focal_loss as kornia_focal

        found["kornia focal_loss"] = lambda z, y: kornia_focal(z, y, alpha=0.25, gamma=2.0, reduction="mean")
    except Exception as err:  # not installed, or broken: the table goes on without it
        print(f"kornia: {type(err).__name__}: {err}", file=sys.stderr)
    try:
        from monai.losses import DiceLoss, FocalLoss

        monai_focal = FocalLoss(use_softmax=True, to_onehot_y=True, gamma=2.0)
        monai_dice = DiceLoss(softmax=True, to_onehot_y=True)
        found["MONAI FocalLoss(use_softmax)"] = lambda z, y: monai_focal(z, y.unsqueeze(1))
        found["MONAI DiceLoss(softmax)"] = lambda z, y: monai_dice(z, y.unsqueeze(1))
    except Exception as err:
        print(f"MONAI: {type(err).__name__}: {err}", file=sys.stderr)
    return found


def measure(fn, logits: torch.Tensor, target: torch.Tensor | None, repeats: int, warmup: int) -> tuple[float, float]:
    """``(median ms, peak extra memory / logits)`` of ``fn(logits, target)``, with ``.backward()`` when
    the result requires grad (a loss; the copy floor's clone of a detached tensor does not).

    On CUDA: CUDA events and ``torch.cuda.max_memory_allocated``. On a CPU tensor (the tests run the
    script's own code there, in triton's interpreter): ``time.perf_counter`` and no memory figure (NaN).
    """
    z = logits.detach().requires_grad_(target is not None)
    on_cuda = z.is_cuda
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)

    def step():
        z.grad = None
        out = fn(z, target)
        if out.requires_grad:
            out.backward()
        return out

    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        if on_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            began = time.perf_counter()
            step()
            times.append((time.perf_counter() - began) * 1e3)
    z.grad = None
    if not on_cuda:
        return statistics.median(times), float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    extra = (torch.cuda.max_memory_allocated() - base) / (logits.numel() * logits.element_size())
    z.grad = None
    return statistics.median(times), extra


def copy_floor(logits: torch.Tensor, repeats: int) -> float:
    """Median ms of ``logits.clone()``: one read and one write of the logits, no autograd."""
    return measure(lambda z, _: z.clone(), logits, None, repeats, 3)[0]


def _batch(n: int, c: int, spatial, dtype, device: str):
    """Random logits ``(N, C, *spatial)`` (scale 3) and labels, no ignored pixels (the contenders take none)."""
    g = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(n, c, *spatial, device=device, dtype=dtype, generator=g) * 3
    target = torch.randint(0, c, (n, *spatial), device=device, generator=g)
    return logits, target


def run(shapes, dtypes, repeats: int, warmup: int, device: str = "cuda", on_block=None,
        on_progress=None) -> list[dict]:
    """The table's rows; ``on_progress(rows)`` after each loss, ``on_block(rows)`` as each shape and
    dtype is done."""
    rows = []
    for shape in shapes:
        n, c, *spatial = shape
        for dtype in dtypes:
            logits, target = _batch(n, c, spatial, dtype, device)
            floor = copy_floor(logits, repeats)
            torch_ce, torch_mem = measure(lambda z, y: F.cross_entropy(z, y), logits, target, repeats, warmup)

            def add(name, ms, mem):
                rows.append({"shape": "x".join(map(str, shape)), "dtype": str(dtype).replace("torch.", ""),
                             "loss": name, "ms": ms, "x_torch_ce": ms / torch_ce, "x_copy": ms / floor,
                             "extra_memory": mem})
                if on_progress:
                    on_progress(rows)
            add("torch F.cross_entropy", torch_ce, torch_mem)
            add("device copy of the logits", floor, 1.0)
            for name, fn in {**segloss_losses(c, device), **contenders()}.items():
                if "Lovász" in name and logits.numel() > 2e8:
                    continue  # sorts C x pixels: minutes per call at this size
                try:
                    add(name, *measure(fn, logits, target, repeats, warmup))
                except Exception as err:  # a contender that cannot take this dtype: say so in the table
                    add(name, float("nan"), float("nan"))
                    print(f"{name} on {shape} {dtype}: {type(err).__name__}: {err}", file=sys.stderr)
            if on_block:
                on_block(rows)
    return rows


SWEEP_SETTINGS = [(1024, 4), (2048, 4), (2048, 8), (4096, 8), (4096, 16), (8192, 16)]  # (TILE_ELEMENTS, NUM_WARPS)
# (MAX_PROGRAMS, REGION_PROGRAMS_PER_IMAGE) beside the defaults, at the default tile: how many programs
# share the forward's tiles (132 SMs on an H100/H200: 128 region programs at N = 2 leave SMs idle)
PROGRAM_SETTINGS = [(256, 16), (4096, 256)]


def _sweep_points():
    """Every launch setting the sweep times, the defaults' tile first (with the gradient written in
    forward, then recomputed in backward: the choice that matters most), then the other tiles, then
    the program counts: ``(tile, warps, gradient in forward, programs, region programs)``."""
    from segloss.kernels import cuda

    programs = (cuda.MAX_PROGRAMS, cuda.REGION_PROGRAMS_PER_IMAGE)
    tiles = sorted(SWEEP_SETTINGS, key=lambda setting: setting != (cuda.TILE_ELEMENTS, cuda.NUM_WARPS))
    points = [(tile, warps, in_forward, *programs) for tile, warps in tiles for in_forward in (True, False)]
    return points + [(cuda.TILE_ELEMENTS, cuda.NUM_WARPS, cuda.GRADIENT_IN_FORWARD, *more) for more in PROGRAM_SETTINGS]


def sweep(shapes, dtypes, repeats: int, warmup: int, device: str = "cuda", on_block=None,
          on_progress=None) -> list[dict]:
    """Time CE, focal, Dual Focal and soft Dice under each launch setting (:func:`_sweep_points`) on
    every shape and dtype; restores the defaults. Settings are the outer loop, so that a time limit
    cuts the least important settings, not a shape. ``on_progress(rows)`` after each setting;
    ``on_block(rows)`` once at the end, the rows grouped by shape and dtype."""
    from segloss.kernels import cuda

    names = ("TILE_ELEMENTS", "NUM_WARPS", "GRADIENT_IN_FORWARD", "MAX_PROGRAMS", "REGION_PROGRAMS_PER_IMAGE")
    defaults = tuple(getattr(cuda, name) for name in names)
    points = _sweep_points()
    losses = {"cross_entropy": lambda z, y: SF.cross_entropy(z, y),
              "focal_loss (gamma 2)": lambda z, y: SF.focal_loss(z, y, gamma=2.0),
              "dual_focal_loss": lambda z, y: SF.dual_focal_loss(z, y),
              "soft Dice": lambda z, y: region.soft_dice_loss(z, y)}
    batches = []  # (shape, dtype, logits, target, copy floor ms, torch CE ms), measured at the defaults
    for shape in shapes:
        n, c, *spatial = shape
        for dtype in dtypes:
            logits, target = _batch(n, c, spatial, dtype, device)
            torch_ce = measure(lambda z, y: F.cross_entropy(z, y), logits, target, repeats, warmup)[0]
            batches.append((shape, dtype, logits, target, copy_floor(logits, repeats), torch_ce))
    rows = []
    try:
        for point in points:
            for name, value in zip(names, point):
                setattr(cuda, name, value)
            tile, warps, in_forward, programs, region_programs = point
            for shape, dtype, logits, target, floor, torch_ce in batches:
                for name, fn in losses.items():
                    if not in_forward and name == "soft Dice":
                        continue  # its gradient needs the whole batch's sums: always in backward
                    try:
                        ms, mem = measure(fn, logits, target, repeats, warmup)
                    except Exception as err:  # keep the rest of the sweep: say so
                        ms = mem = float("nan")
                        print(f"{name} at {point}: {type(err).__name__}: {err}", file=sys.stderr)
                    rows.append({"shape": "x".join(map(str, shape)), "dtype": str(dtype).replace("torch.", ""),
                                 "tile": tile, "warps": warps, "gradient": "forward" if in_forward else
                                 "backward", "programs": f"{programs}/{region_programs}", "loss": name,
                                 "ms": ms, "x_copy": ms / floor, "x_torch_ce": ms / torch_ce, "extra_memory": mem})
            if on_progress:
                on_progress(rows)
    finally:
        for name, value in zip(names, defaults):
            setattr(cuda, name, value)
    order = [("x".join(map(str, shape)), str(dtype).replace("torch.", "")) for shape, dtype, *_ in batches]
    rows.sort(key=lambda row: order.index((row["shape"], row["dtype"])))  # stable: settings keep their order
    if on_block:
        on_block(rows)
    return rows


TABLE_COLUMNS = [("loss", "loss", "{}"), ("ms", "ms", "{:.3f}"), ("x torch CE", "x_torch_ce", "{:.2f}"),
                 ("x copy", "x_copy", "{:.2f}"), ("extra memory / logits", "extra_memory", "{:.2f}")]
SWEEP_COLUMNS = [("tile", "tile", "{}"), ("warps", "warps", "{}"), ("gradient", "gradient", "{}"),
                 ("programs / region programs", "programs", "{}"), *TABLE_COLUMNS]


def print_table(rows: list[dict], columns=TABLE_COLUMNS) -> None:
    """Markdown tables, one per shape and dtype, of ``columns`` ``(title, key, format)``."""
    key = None
    for row in rows:
        if (row["shape"], row["dtype"]) != key:
            key = (row["shape"], row["dtype"])
            print(f"\n({row['shape']}) {row['dtype']}\n| " + " | ".join(title for title, _, _ in columns) + " |")
            print("|---" * len(columns) + "|")
        print("| " + " | ".join(fmt.format(row[name]) for _, name, fmt in columns) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["8x19x512x1024", "2x19x1024x2048", "16x150x256x256"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--sweep", action="store_true", help="time the Triton launch settings instead")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured (the GPU figures need a GPU)")
        return 0
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]
    dtypes = [getattr(torch, d) for d in args.dtypes]
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    printed = []

    latest = []

    def save(rows):  # the JSON as measured: a time limit loses only what was left
        latest[:] = rows
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))

    def on_block(rows):  # printed as each shape and dtype is done
        print_table(rows[len(printed):], SWEEP_COLUMNS if args.sweep else TABLE_COLUMNS)
        sys.stdout.flush()
        printed[:] = rows
        save(rows)

    try:
        (sweep if args.sweep else run)(shapes, dtypes, args.repeats, args.warmup, on_block=on_block, on_progress=save)
    except KeyboardInterrupt:  # run_on_device.sh's time limit (SIGINT): print what was measured
        rest = latest[len(printed):]
        groups = list(dict.fromkeys((row["shape"], row["dtype"]) for row in rest))
        print(f"\nstopped after {len(latest)} rows (time limit); the rows measured so far:")
        print_table(sorted(rest, key=lambda row: groups.index((row["shape"], row["dtype"]))),
                    SWEEP_COLUMNS if args.sweep else TABLE_COLUMNS)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
