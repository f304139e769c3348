"""What ``torch.compile`` of a training step does to each loss: eager against compiled, both timed.

While dynamo traces, segloss's losses run their plain formulas (one graph, no break, no host
read; see ``segloss.losses._checks.plain_torch_required``) and inductor generates the kernels;
called eagerly they run their own kernels (the blockwise autograd functions on the CPU, Triton on
CUDA). This script times, for each loss, forward + backward of ``loss(logits, target)`` called
eagerly and through ``torch.compile`` of the same call, against torch's own ``F.cross_entropy``
eager and compiled in the same run. Compilation happens in the warm-up, outside the timing, and
its seconds are printed in their own column. On CUDA also the device copy of the logits (the
bandwidth floor) and the peak extra memory / logits (``torch.cuda.max_memory_allocated``).

Usage: python benchmarks/bench_compile.py [--device cpu|cuda] [--shape 8 19 256 256]
                                          [--repeats 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import segloss  # noqa: E402
from bench_gpu import _batch, copy_floor, measure  # noqa: E402
from segloss import functional as SF  # noqa: E402
from segloss.losses import region  # noqa: E402


def losses(num_classes: int) -> dict:
    return {
        "torch F.cross_entropy": lambda z, y: F.cross_entropy(z, y),
        "segloss cross_entropy": lambda z, y: SF.cross_entropy(z, y),
        "segloss focal_loss (gamma 2)": lambda z, y: SF.focal_loss(z, y, gamma=2.0),
        "segloss dual_focal_loss": lambda z, y: SF.dual_focal_loss(z, y),
        "segloss recall_loss": lambda z, y: SF.recall_loss(z, y),
        "segloss OHEM CE": lambda z, y: SF.ohem_cross_entropy(z, y),
        "segloss soft Dice": lambda z, y: region.soft_dice_loss(z, y),
        "segloss Dice + CE": segloss.create_loss("dice_ce"),
        "segloss Lovász-Softmax": lambda z, y: region.lovasz_softmax_loss(z, y),
    }


def run(shape, dtype, device: str, repeats: int, warmup: int = 2, on_progress=None, names=None) -> list[dict]:
    """One row per loss (``names``: a subset of :func:`losses`; torch CE, the baseline, always first):
    eager and compiled ms, both as ratios to torch CE eager, and compile seconds."""
    n, c, *spatial = shape
    logits, target = _batch(n, c, spatial, dtype, device)
    floor = copy_floor(logits, repeats) if device == "cuda" else float("nan")
    rows, baseline = [], None
    chosen = {name: fn for name, fn in losses(c).items()
              if names is None or name == "torch F.cross_entropy" or name in names}
    for name, fn in chosen.items():
        torch._dynamo.reset()
        eager_ms, eager_mem = measure(fn, logits, target, repeats, warmup)
        compiled = torch.compile(fn)
        began = time.perf_counter()
        measure(compiled, logits, target, 1, 0)  # the first call compiles forward and backward
        compile_s = time.perf_counter() - began
        compiled_ms, compiled_mem = measure(compiled, logits, target, repeats, warmup)
        baseline = baseline or eager_ms  # torch CE eager, the first row
        rows.append({"shape": "x".join(map(str, shape)), "dtype": str(dtype).replace("torch.", ""), "loss": name,
                     "eager_ms": eager_ms, "compiled_ms": compiled_ms, "eager_x_torch_ce": eager_ms / baseline,
                     "compiled_x_torch_ce": compiled_ms / baseline, "compiled_x_copy": compiled_ms / floor,
                     "eager_memory": eager_mem, "compiled_memory": compiled_mem, "compile_s": compile_s})
        if on_progress:
            on_progress(rows)
    return rows


COLUMNS = [("loss", "loss", "{}"), ("eager ms", "eager_ms", "{:.2f}"), ("compiled ms", "compiled_ms", "{:.2f}"),
           ("eager x torch CE", "eager_x_torch_ce", "{:.2f}"), ("compiled x torch CE", "compiled_x_torch_ce", "{:.2f}"),
           ("compiled x copy", "compiled_x_copy", "{:.2f}"), ("eager / compiled memory", "memory", "{}"),
           ("compile s", "compile_s", "{:.1f}")]


def print_header() -> None:
    print("| " + " | ".join(title for title, _, _ in COLUMNS) + " |")
    print("|---" * len(COLUMNS) + "|")


def print_row(row: dict) -> None:
    row = {**row, "memory": f"{row['eager_memory']:.2f} / {row['compiled_memory']:.2f}"}
    print("| " + " | ".join(fmt.format(row[key]) for _, key, fmt in COLUMNS) + " |", flush=True)


def print_table(rows: list[dict]) -> None:
    print_header()
    for row in rows:
        print_row(row)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shape", nargs=4, type=int, default=None,
                        help="N C H W (default: 8 19 256 256 on the CPU, 8 19 512 1024 on CUDA)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return 0
    shape = tuple(args.shape or ((8, 19, 512, 1024) if args.device == "cuda" else (8, 19, 256, 256)))
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}, torch {torch.__version__}, logits {shape} {args.dtype}; forward + backward, median of "
          f"{args.repeats}")

    def save(rows):  # each row printed and saved as it is measured: a time limit loses only the rest
        print_row(rows[-1])
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))

    print_header()
    try:
        run(shape, getattr(torch, args.dtype), args.device, args.repeats, on_progress=save)
    except KeyboardInterrupt:  # run_on_device.sh's time limit
        print("stopped by the time limit; the rows above were measured")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
