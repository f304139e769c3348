"""Train the tiny model under several losses on the same data and compare them per class.

Each (loss, seed) run is a :class:`segloss.train.trainer.Trainer` with that seed: the same seed gives
every loss the same initial weights and the same batches in the same order. Runs are
evaluated on the trainer's fixed held-out batch (its own seed, never trained on) and each is
written to ``DIR/runs/<label>__seed<k>.json`` as it finishes, so an interrupted comparison
resumes where it stopped (files are written atomically and validated when read back, see
:mod:`segloss.train.run_files`). The summary gives, per loss, the mean and the standard deviation
over seeds of per-class IoU / recall / precision, mIoU, mean accuracy (mean per-class recall)
and overall accuracy, plus each class's pixel share, as ``summary.json``, ``summary.csv`` (one
row per loss) and ``per_class.csv`` (one row per loss and class).

Loss arguments use ``name`` or ``name:param=value,param=value`` (a multichoice parameter takes
names joined by ``+``, e.g. ``dual_focal:learnable=gamma+rho``).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from segloss.losses.registry import LOSSES
from segloss.train.run_files import RunFileError, check_writable, read_run, read_summary, to_json, write_atomic
from segloss.train.trainer import Trainer

DEFAULT_LOSSES = ("ce", "weighted_ce", "focal", "dual_focal", "recall", "dice", "dice_ce", "lovasz")
PER_CLASS = ("iou", "recall", "precision")
SUMMARY = ("miou", "mean_accuracy", "overall_accuracy")


@dataclass(frozen=True)
class LossChoice:
    """One loss of a comparison: registry name, parameters, and the label used in outputs."""

    name: str
    params: dict
    label: str


def parse_loss(text: str) -> LossChoice:
    """``"focal:gamma=3,alpha=0.5"`` -> ``LossChoice("focal", {"gamma": 3.0, "alpha": 0.5}, text)``.

    Raises:
        ValueError: unknown loss or parameter, or a value that does not parse.
    """
    name, _, rest = text.strip().partition(":")
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r} in {text!r}; choose from {sorted(LOSSES)}")
    spec, params = LOSSES[name], {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not spec.defaults:
            raise ValueError(f"{text!r}: {name} takes no parameters, got {item!r}")
        if not sep or key not in spec.defaults:
            raise ValueError(f"{text!r}: expected param=value with param in {sorted(spec.defaults)}, got {item!r}")
        if key in params:
            raise ValueError(f"{text!r}: {key} is given twice")
        kind = spec.param(key).kind
        if kind == "float":
            try:
                params[key] = float(value)
            except ValueError as err:
                raise ValueError(f"{text!r}: {key} must be a number, got {value!r}") from err
        else:
            params[key] = tuple(filter(None, value.split("+"))) if kind == "multichoice" else value
    return LossChoice(name, params, text.strip())


def split_losses(text: str) -> list[str]:
    """``"ce,focal:gamma=3,alpha=0.5,recall"`` -> ``["ce", "focal:gamma=3,alpha=0.5", "recall"]``.

    A comma-separated item with ``=`` but no ``:`` continues the parameters of the loss before it.
    """
    items: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" in part and ":" not in part and items:
            items[-1] += "," + part
        else:
            items.append(part)
    return items


def _safe_name(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in label)


def _file_stems(labels: Sequence[str]) -> dict[str, str]:
    """Each label's run-file stem: the label with characters a file name cannot hold replaced
    (``focal:gamma=3`` -> ``focal_gamma=3``), and, only where two labels of the comparison would
    share a stem (``focal/g0`` and ``focal_g0``), a hash of the label appended to theirs, so that
    existing folders keep their file names."""
    stems = {label: _safe_name(label) for label in labels}
    shared = {stem for stem in stems.values() if list(stems.values()).count(stem) > 1}
    return {label: stem + "-" + hashlib.sha1(label.encode()).hexdigest()[:8] if stem in shared else stem
            for label, stem in stems.items()}


def _run_file(out_dir: Path, stem: str, seed: int) -> Path:
    return out_dir / "runs" / f"{stem}__seed{seed}.json"


def _params_json(params: dict) -> dict:
    """A loss's parameters as a run file stores them (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _check_is_the_run(path: Path, stored: dict, choice: LossChoice, seed: int) -> None:
    """A stored run is reused only for the loss, parameters and seed asked for (a file copied,
    renamed or edited by hand could hold another's: it was credited to the wrong loss).

    Raises:
        RunFileError: it holds another run.
    """
    asked = {"loss": choice.label, "name": choice.name, "params": _params_json(choice.params), "seed": seed}
    differs = {k: stored.get(k) for k, v in asked.items() if stored.get(k) != v}
    if differs:
        raise RunFileError(f"{path} holds another run ({differs}) than {asked['loss']!r} seed {seed} "
                           f"({ {k: asked[k] for k in differs} }); delete or move it and run the command again")


def run_one(choice: LossChoice, seed: int, *, dataset: str, steps: int, batch_size: int, image_size: int,
            lr: float, val_size: int, device=None) -> dict:
    """Train one (loss, seed) for ``steps`` steps and evaluate on the held-out batch."""
    trainer = Trainer(dataset=dataset, loss=choice.name, loss_params=choice.params, batch_size=batch_size,
                      image_size=image_size, lr=lr, seed=seed, device=device, val_size=val_size)
    try:
        for _ in range(steps):
            trainer.step()
        metrics = trainer.evaluate()
        view = trainer.validate()
    finally:
        trainer.close()  # the prefetching processes of a GPU run
    return {"loss": choice.label, "name": choice.name, "params": _params_json(choice.params),
            "seed": seed, "steps": steps, **{k: np.asarray(metrics[k]).tolist() for k in PER_CLASS},
            **{k: float(metrics[k]) for k in SUMMARY}, "pixel_share": np.asarray(view.pixel_share).tolist()}


def run_comparison(losses: Sequence[str | LossChoice], *, dataset: str = "street", steps: int = 400,
                   seeds: int = 3, out_dir: str | Path | None = None, batch_size: int = 8, image_size: int = 64,
                   lr: float = 3e-3, val_size: int = 32, device=None,
                   progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run every (loss, seed) not already on disk, then summarise all of them.

    Args:
        losses: loss arguments (see module docstring) or parsed choices.
        dataset, steps, batch_size, image_size, lr, val_size, device: passed to each Trainer.
        seeds: number of seeds, ``0 .. seeds-1``.
        out_dir: where runs and summaries are written; None keeps everything in memory.
        progress: called as ``progress(done, total, message)`` before and after each run.

    Returns:
        The summary (see :func:`summarise`).
    """
    choices = [c if isinstance(c, LossChoice) else parse_loss(c) for c in losses]
    if not choices or seeds < 1 or steps < 1:
        raise ValueError(f"need at least one loss, seeds >= 1 and steps >= 1, got {len(choices)}, {seeds}, {steps}")
    repeated = sorted({c.label for c in choices if [d.label for d in choices].count(c.label) > 1})
    if repeated:
        raise ValueError(f"losses listed more than once: {repeated}; list each loss once")
    out = None if out_dir is None else check_writable(out_dir)  # before anything trains
    config = {"dataset": dataset, "steps": steps, "batch_size": batch_size, "image_size": image_size, "lr": lr,
              "val_size": val_size}
    from segloss.losses.registry import create_loss
    from segloss.train.data import get_dataset

    num_classes = len(get_dataset(dataset).class_names)
    for choice in choices:  # every loss's parameters before anything trains (a bad one came after the others' runs)
        try:
            create_loss(choice.name, class_counts=torch.ones(num_classes), **choice.params)
        except (ValueError, TypeError) as err:
            raise ValueError(f"loss {choice.label!r}: {err}") from err
    stems = _file_stems([c.label for c in choices])
    runs, total = [], len(choices) * seeds
    for index, (choice, seed) in enumerate((c, s) for c in choices for s in range(seeds)):
        path = None if out is None else _run_file(out, stems[choice.label], seed)
        again = ""
        if path is not None and path.exists():
            stored = read_run(path, num_classes)
            _check_is_the_run(path, stored, choice, seed)
            if stored.get("config") == config:
                runs.append(stored)
                if progress:
                    progress(index + 1, total, f"{choice.label} seed {seed}: already done")
                continue
            again = " again (its stored run had other settings)"
        if progress:
            progress(index, total, f"training {choice.label} seed {seed}{again}")
        result = {**run_one(choice, seed, device=device, **config), "config": config}
        if path is not None:
            write_atomic(path, to_json(result))
        runs.append(result)
        if progress:
            progress(index + 1, total, f"{choice.label} seed {seed}: mIoU {result['miou']:.3f}")
    summary = summarise(runs, dataset)
    if out is not None:
        write_summary(summary, out)
    return summary


def _mean_std(values: list) -> tuple[list | float, list | float]:
    array = np.asarray(values, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (a class never predicted) stay NaN
        mean = np.nanmean(array, axis=0) if np.isfinite(array).any() else np.full(array.shape[1:], np.nan)
        # one seed: no spread (0), but none either where the mean has no value (a class never predicted)
        std = np.nanstd(array, axis=0, ddof=1) if array.shape[0] > 1 else np.where(np.isnan(mean), np.nan, 0.0)
    return (mean.tolist(), std.tolist()) if array.ndim > 1 else (float(mean), float(std))


def summarise(runs: Sequence[dict], dataset: str) -> dict:
    """Mean and spread (sample std over seeds; 0 for one seed, NaN where the mean is) per loss, in first-seen order."""
    from segloss.train.data import get_dataset

    labels = list(dict.fromkeys(run["loss"] for run in runs))
    losses = {}
    for label in labels:
        mine = [run for run in runs if run["loss"] == label]
        entry = {"name": mine[0]["name"], "params": mine[0]["params"], "seeds": [run["seed"] for run in mine]}
        for key in (*PER_CLASS, *SUMMARY):
            entry[key], entry[f"{key}_std"] = _mean_std([run[key] for run in mine])
        losses[label] = entry
    share = np.mean([run["pixel_share"] for run in runs], axis=0).tolist()
    return {"dataset": dataset, "class_names": list(get_dataset(dataset).class_names), "pixel_share": share,
            "config": runs[0].get("config", {}), "losses": losses}


def _number(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def summary_tables(summary: dict) -> tuple[str, str]:
    """``(summary.csv, per_class.csv)`` texts of a summary."""
    head = ["loss"] + [f"{k}_{s}" for k in SUMMARY for s in ("mean", "std")]
    rows = [",".join(head)]
    for label, entry in summary["losses"].items():
        rows.append(",".join([f'"{label}"'] + [_number(entry[k if s == "mean" else f"{k}_std"])
                                               for k in SUMMARY for s in ("mean", "std")]))
    per_head = ["loss", "class", "pixel_share"] + [f"{k}_{s}" for k in PER_CLASS for s in ("mean", "std")]
    per_rows = [",".join(per_head)]
    for label, entry in summary["losses"].items():
        for c, name in enumerate(summary["class_names"]):
            values = [_number(entry[k if s == "mean" else f"{k}_std"][c]) for k in PER_CLASS for s in ("mean", "std")]
            per_rows.append(",".join([f'"{label}"', name, _number(summary["pixel_share"][c])] + values))
    return "\n".join(rows) + "\n", "\n".join(per_rows) + "\n"


def write_summary(summary: dict, out_dir: Path) -> None:
    """Write ``summary.json``, ``summary.csv`` and ``per_class.csv`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "summary.json", to_json(summary, indent=1))
    overall, per_class = summary_tables(summary)
    write_atomic(out_dir / "summary.csv", overall)
    write_atomic(out_dir / "per_class.csv", per_class)


def load_summary(path: str | Path) -> dict:
    """Read a ``summary.json`` written by :func:`run_comparison`.

    Raises:
        ValueError (:class:`~segloss.train.run_files.RunFileError`): the file is unreadable or not
            such a summary; the message names it and how to rewrite it.
    """
    return read_summary(Path(path))
