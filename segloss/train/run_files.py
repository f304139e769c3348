"""The comparison's files on disk: written atomically, read back validated.

A run file (``DIR/runs/<label>__seed<k>.json``) or ``summary.json`` is written to a temporary
file in the same folder, flushed to disk and renamed over the old one, so a full disk or an
interrupt leaves either the old file or the new one, never a truncated one. Reading checks
that the JSON parses and holds what a finished run (or a summary) holds, and a bad file is named
in the error with what to do about it.

The files are strict JSON, as any parser (a browser's, ``jq``) reads it: a metric that has no
value (the precision of a class never predicted) is written ``null`` and read back as NaN.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
from pathlib import Path

RUN_KEYS = ("loss", "name", "params", "seed", "steps", "config", "pixel_share", "iou", "recall", "precision",
            "miou", "mean_accuracy", "overall_accuracy")
SUMMARY_KEYS = ("dataset", "class_names", "pixel_share", "losses")
ENTRY_NUMBERS = ("miou", "mean_accuracy", "overall_accuracy")  # each with its "_std", in every loss's entry


class RunFileError(ValueError):
    """A comparison file that cannot be used; the message names the file and the fix."""


def to_json(value, indent: int | None = None) -> str:
    """Strict JSON text of ``value``: NaN and infinities (metrics without a value) become ``null``."""
    return json.dumps(_nan_to_null(value), indent=indent, allow_nan=False)


def _nan_to_null(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _nan_to_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_null(item) for item in value]
    return value


SETTINGS_KEYS = ("params", "config")  # a loss's parameters and the run's settings: a null there is None


def _null_to_nan(value):
    """Back from :func:`to_json`: a ``null`` metric (in a list, or a value such as ``miou``) is NaN;
    under ``SETTINGS_KEYS`` a null stays None (``alpha=None``). Files written with ``NaN``
    (Python's default, the earlier format) read the same."""
    if isinstance(value, dict):
        return {key: item if key in SETTINGS_KEYS else math.nan if item is None else _null_to_nan(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [math.nan if item is None else _null_to_nan(item) for item in value]
    return value


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` all at once (temporary file + fsync + rename), with the
    permissions a plain ``open(path, "w")`` would give: an existing file's mode is kept, a new one
    gets ``0o666`` less the umask (``mkstemp`` would make it private).

    Raises:
        OSError: the folder cannot be written (no space, no permission); ``path`` is unchanged.
    """
    path = Path(path)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = None  # a new file: the kernel applies the umask to 0o666
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        if mode is not None:
            os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def probe_write(folder: Path) -> None:
    """Create ``folder`` if needed and write and remove a file there.

    Raises:
        OSError: it cannot be created or written.
    """
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test-{secrets.token_hex(4)}"
    probe.write_bytes(b"")
    probe.unlink()


def check_writable(folder: str | Path) -> Path:
    """Create ``folder`` if needed and prove a file can be written there (before any training).

    Raises:
        RunFileError: an empty name, or a folder that cannot be created or written.
    """
    if not str(folder).strip():
        raise RunFileError("--out is empty: give the folder to write the runs and the summary into")
    folder = Path(folder)
    try:
        probe_write(folder / "runs")
    except OSError as err:
        raise RunFileError(f"cannot write into {folder} ({type(err).__name__}: {err.strerror or err}); "
                           "pick a folder you can write to") from err
    return folder


def _load_json(path: Path, what: str, fix: str):
    try:
        return _null_to_nan(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunFileError(f"{path} is not a readable {what} ({type(err).__name__}: {err}); {fix}") from err


def read_run(path: Path, num_classes: int | None = None) -> dict:
    """A finished run from its file, checked.

    Raises:
        RunFileError: unreadable JSON, not an object, missing keys or per-class lists of the wrong length.
    """
    fix = "delete it and run the same command again to redo that run"
    run = _load_json(path, "run file", fix)
    if not isinstance(run, dict):
        raise RunFileError(f"{path} holds a {type(run).__name__}, not a run (a JSON object); {fix}")
    missing = [key for key in RUN_KEYS if key not in run]
    if missing:
        raise RunFileError(f"{path} lacks {missing}: not a finished run; {fix}")
    lengths = {len(run[key]) if isinstance(run[key], list) else -1 for key in ("pixel_share", "iou", "recall",
                                                                                 "precision")}
    if len(lengths) != 1 or -1 in lengths or (num_classes is not None and lengths != {num_classes}):
        raise RunFileError(f"{path} has per-class lists of lengths {sorted(lengths)}, expected "
                           f"{num_classes if num_classes is not None else 'equal ones'}; {fix}")
    not_numbers = [key for key in ("pixel_share", "iou", "recall", "precision")
                   if not all(_is_number(v) for v in run[key])]
    not_numbers += [key for key in ENTRY_NUMBERS if not _is_number(run[key])]
    if not_numbers or not isinstance(run["seed"], int) or not isinstance(run["params"], dict):
        raise RunFileError(f"{path} holds values that are not numbers in {not_numbers or ['seed', 'params']}; {fix}")
    return run


def read_summary(path: Path) -> dict:
    """A ``summary.json``, checked.

    Raises:
        RunFileError: unreadable JSON or not a segloss comparison summary.
    """
    fix = "run `python -m segloss compare` again with the same --out to rewrite it from the run files"
    summary = _load_json(path, "comparison summary", fix)
    if not isinstance(summary, dict) or not set(SUMMARY_KEYS) <= set(summary):
        raise RunFileError(f"{path} is not a segloss comparison summary (needs {list(SUMMARY_KEYS)}); {fix}")
    if not isinstance(summary["losses"], dict) or not summary["losses"]:
        raise RunFileError(f"{path} holds no losses; {fix}")
    names = summary["class_names"]
    for label, entry in summary["losses"].items():
        if not isinstance(entry, dict) or not all(
                isinstance(entry.get(k), list) and len(entry[k]) == len(names) for k in ("iou", "recall", "precision")):
            raise RunFileError(f"{path}: the entry of loss {label!r} is incomplete; {fix}")
        numbers = [k for k in ENTRY_NUMBERS for k in (k, k + "_std")]
        bad = [k for k in numbers if k not in entry or not _is_number(entry[k])]
        if bad or not isinstance(entry.get("seeds"), list) or not entry["seeds"]:
            raise RunFileError(f"{path}: the entry of loss {label!r} lacks {bad or ['seeds']} (numbers, a list of "
                               f"seeds); {fix}")
    return summary


def _is_number(value) -> bool:
    """A JSON number, or null (a metric without a value, as the summary writes NaN)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
