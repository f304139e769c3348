"""``python -m segloss <command>``: headless runs of what the app shows.

Commands (``python -m segloss <command> --help`` for their options):

- ``checkpoint``: train the tiny U-Net with a registry loss and save a weights-only checkpoint.
  The shipped ``sample_data/tinyunet_street_ce.pt`` is exactly::

      python -m segloss checkpoint --dataset street --loss ce --steps 1000 --batch-size 8 \\
          --image-size 64 --lr 0.003 --seed 0 --out sample_data/tinyunet_street_ce.pt

  (same torch build and thread count => the same weights; training is deterministic on CPU).
- ``samples``: (re)write ``sample_data/``'s image/mask pairs and ``datasets.json``.
- ``compare``: train under several losses and seeds and write per-class results; the committed
  ``sample_data/compare_street`` is exactly ``python -m segloss compare --out sample_data/compare_street``
  (defaults: street, ce,weighted_ce,focal,dual_focal,recall,dice,dice_ce,lovasz, 400 steps, 3 seeds).

A command is a function ``add_<name>(subparsers)`` that registers its parser and sets
``func``; add one to :data:`COMMANDS` to extend the CLI.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence

from segloss.train.data import DATASETS
from segloss.train.run_files import to_json
from segloss.losses.registry import LOSSES


def _loss_param(text: str) -> tuple[str, object]:
    """``name=value`` -> (name, float or str); ``a+b`` -> a tuple of names (multichoice)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        return name, float(value)
    except ValueError:
        return name, tuple(v for v in value.split("+") if v) if "+" in value else value


def _run_checkpoint(args: argparse.Namespace) -> int:
    from segloss.train.export import check_checkpoint_path, save_checkpoint, summary_line
    from segloss.train.trainer import Trainer

    check_checkpoint_path(args.out)  # a bad name or folder is refused before the training, not after
    names = [name for name, _ in args.param or []]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"--param {', '.join(twice)} given more than once")
    params = dict(args.param or [])
    spec = LOSSES[args.loss]
    for param in spec.params:  # a single name for a multichoice parameter is still a tuple
        if param.kind == "multichoice" and isinstance(params.get(param.name), str):
            params[param.name] = (params[param.name],)
    trainer = Trainer(dataset=args.dataset, loss=args.loss, loss_params=params, batch_size=args.batch_size,
                      image_size=args.image_size, lr=args.lr, seed=args.seed, device=args.device,
                      val_size=args.val_size)
    start = time.perf_counter()
    # Train in the trainer's worker thread (as the app does) and report from here. The steps are
    # exactly those of a step() loop; on a busy machine OpenMP's spin-waiting makes the main
    # thread's parallel regions far slower than a worker thread's, so this is also faster.
    trainer.start(total_steps=args.steps)
    every = max(1, args.steps // 10)
    next_report = every
    while trainer.is_alive():
        time.sleep(0.2)
        snap = trainer.snapshot()
        if not args.quiet and snap.step >= next_report:
            print(f"step {snap.step:>6}/{args.steps}  loss {snap.history['loss'][-1]:.4f}  "
                  f"{time.perf_counter() - start:6.1f} s", flush=True)
            next_report = (snap.step // every + 1) * every
    if trainer.status != "finished":
        raise RuntimeError(f"training ended {trainer.status} at step {trainer.steps_done}: {trainer.message}")
    command = "python -m segloss " + shlex.join(args.argv)
    meta = save_checkpoint(trainer, args.out, command=command)
    print(f"wrote {args.out} after {time.perf_counter() - start:.1f} s: {summary_line(meta)}")
    if args.json:
        print(to_json({k: meta[k] for k in ("dataset", "loss", "steps", "validation")}))
    return 0


def add_checkpoint(subparsers) -> None:
    """The ``checkpoint`` subcommand: train the tiny U-Net and save a weights-only checkpoint."""
    parser = subparsers.add_parser("checkpoint", help="train the tiny U-Net and save a weights-only checkpoint",
                                   description="Train segloss.train.model.TinyUNet with a registry loss on a sample "
                                   "dataset and save it (torch.load(path, weights_only=True) reads it).")
    parser.add_argument("--dataset", default="street", choices=sorted(DATASETS))
    parser.add_argument("--loss", default="ce", choices=sorted(LOSSES))
    parser.add_argument("--param", action="append", type=_loss_param, metavar="NAME=VALUE",
                        help="a loss parameter, repeatable (e.g. --param gamma=2; learnable=gamma+rho)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-size", type=int, default=32, help="validation images for the recorded metrics")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available)")
    parser.add_argument("--out", required=True, help="output file, .pt or .pth")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--json", action="store_true", help="also print the metadata as JSON")
    parser.set_defaults(func=_run_checkpoint)


def _run_samples(args: argparse.Namespace) -> int:
    from segloss.train.samples import write_samples

    manifest = write_samples(args.out, image_size=args.image_size)
    count = sum(len(entry["samples"]) for entry in manifest.values())
    print(f"wrote {count} image/mask pairs and datasets.json to {args.out}")
    return 0


def add_samples(subparsers) -> None:
    """The ``samples`` subcommand: write the shipped sample scenes and their manifest."""
    from segloss.train.samples import SAMPLE_DIR, SAMPLE_SIZE

    parser = subparsers.add_parser("samples", help="write sample image/mask pairs and datasets.json",
                                   description="Render the shipped sample pairs of every dataset and their "
                                   "manifest (class names, palette, class frequencies).")
    parser.add_argument("--out", default=str(SAMPLE_DIR), help="target folder (default: the repo's sample_data/)")
    parser.add_argument("--image-size", type=int, default=SAMPLE_SIZE)
    parser.set_defaults(func=_run_samples)


def _run_compare(args: argparse.Namespace) -> int:
    from segloss.train.compare import run_comparison, split_losses

    width = 30

    def progress(done: int, total: int, message: str) -> None:
        filled = int(width * done / total)
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {message[:60]:<60}", end="",
              file=sys.stderr, flush=True)

    start = time.perf_counter()
    summary = run_comparison(split_losses(args.losses), dataset=args.dataset, steps=args.steps, seeds=args.seeds,
                             out_dir=args.out, batch_size=args.batch_size, image_size=args.image_size, lr=args.lr,
                             val_size=args.val_size, device=args.device,
                             progress=None if args.quiet else progress)
    if not args.quiet:
        print(file=sys.stderr)
    print(f"{'loss':<34}{'mIoU':>16}{'mean accuracy':>18}{'overall acc.':>16}")
    for label, entry in summary["losses"].items():
        cells = [f"{entry[k]:.3f}" + (f" ± {entry[k + '_std']:.3f}" if args.seeds > 1 else "")  # one seed: no spread
                 for k in ("miou", "mean_accuracy", "overall_accuracy")]
        print(f"{label:<34}{cells[0]:>16}{cells[1]:>18}{cells[2]:>16}")
    print(f"wrote {args.out}/summary.json, summary.csv, per_class.csv in {time.perf_counter() - start:.1f} s")
    return 0


def add_compare(subparsers) -> None:
    """The ``compare`` subcommand: train every (loss, seed) and summarise (see :mod:`segloss.train.compare`)."""
    from segloss.train.compare import DEFAULT_LOSSES

    parser = subparsers.add_parser("compare", help="train under several losses and compare them per class",
                                   description="Each (loss, seed) trains the tiny U-Net from the same initial "
                                   "weights on the same batches; metrics on a fixed held-out batch; mean and "
                                   "spread over seeds. Finished runs in --out are not redone.")
    parser.add_argument("--dataset", default="street", choices=sorted(DATASETS))
    parser.add_argument("--losses", default=",".join(DEFAULT_LOSSES),
                        help="comma-separated registry names, each optionally with parameters: "
                        "ce,focal:gamma=3,alpha=0.5,dual_focal:learnable=gamma+rho (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--val-size", type=int, default=32, help="held-out images")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quiet", action="store_true")
    parser.set_defaults(func=_run_compare)


COMMANDS = [add_checkpoint, add_samples, add_compare]


def build_parser() -> argparse.ArgumentParser:
    """The ``segloss`` argument parser with one subparser per entry of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="python -m segloss",  # the docstring's first line, without its markup
                                     description=__doc__.split("\n")[0].replace("``", ""))
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="command")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the command; returns the exit status.

    Bad arguments exit with status 2 and a usage message (argparse); a ValueError or TypeError
    from the library (e.g. a loss parameter out of range) is printed and returns 2; a run that
    fails (e.g. the loss diverges) returns 1.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        kept = f"; finished runs are kept in {out}/runs and the same command resumes" if args.command == "compare" else ""
        print(f"\ninterrupted{kept}", file=sys.stderr)
        return 130
    except (ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, OSError) as err:  # e.g. training diverged (the loss became NaN), a full disk
        print(f"error: {err}", file=sys.stderr)
        return 1
