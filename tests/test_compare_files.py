"""The comparison never loses work: atomic files, validated reads that name the bad file, output
checked before training, clean Ctrl-C (issue: "The comparison CLI loses work")."""

import errno
import json
from pathlib import Path
import os

import pytest

from segloss import cli
from segloss.train import compare, run_files

TINY = dict(dataset="lesion", steps=2, seeds=1, image_size=32, val_size=2, batch_size=2)


@pytest.fixture
def finished(tmp_path):
    """A comparison folder with one finished run of "ce"."""
    compare.run_comparison(["ce"], out_dir=tmp_path, **TINY)
    return tmp_path, next((tmp_path / "runs").glob("*.json"))


@pytest.mark.parametrize("content, problem", [
    ('{"loss": "ce", "name": "ce", "params": {}, "seed": 0, "ste', "not a readable run file"),
    ("[1, 2, 3]", "holds a list, not a run"),
    ('{"loss": "ce", "seed": 0}', "lacks"),
])
def test_a_damaged_run_file_is_named_with_the_fix(finished, content, problem):
    folder, run = finished
    run.write_text(content)
    with pytest.raises(ValueError, match=f"{run.name}.*{problem}.*delete it and run the same command again"):
        compare.run_comparison(["ce"], out_dir=folder, **TINY)
    assert cli.main(["compare", "--losses", "ce", "--out", str(folder), "--dataset", "lesion", "--steps", "2",
                     "--seeds", "1", "--image-size", "32", "--batch-size", "2", "--val-size", "2", "--quiet"]) == 2


@pytest.mark.parametrize("change, problem", [
    (lambda run: {**run, "iou": run["iou"][:1]}, "per-class lists of lengths"),  # one class of three
    (lambda run: {**run, "miou": "x"}, r"not numbers in \['miou'\]"),
    (lambda run: {**run, "recall": ["a"] * len(run["recall"])}, r"not numbers in \['recall'\]"),
])
def test_a_run_file_with_wrong_values_is_named_not_a_numpy_error(finished, change, problem):
    """Lists cut short or strings in place of numbers passed the check, then failed in numpy
    ("inhomogeneous shape", "could not convert string to float") naming no file."""
    folder, run = finished
    run.write_text(json.dumps(change(json.loads(run.read_text()))))
    with pytest.raises(run_files.RunFileError, match=f"{run.name}.*{problem}"):
        compare.run_comparison(["ce"], out_dir=folder, **TINY)


def test_a_stored_run_of_another_loss_or_seed_is_never_credited(finished):
    """A file renamed, copied or edited by hand into another run's name was summarised as that run."""
    folder, run = finished
    stored = json.loads(run.read_text())
    focal = folder / "runs" / "focal__seed0.json"
    focal.write_text(json.dumps(stored))  # ce's run under focal's name
    with pytest.raises(run_files.RunFileError, match=r"focal__seed0.json holds another run .*'loss': 'ce'"):
        compare.run_comparison(["focal"], out_dir=folder, **TINY)
    focal.write_text(json.dumps({**stored, "loss": "focal", "name": "focal", "params": {"gamma": 5.0}}))
    with pytest.raises(run_files.RunFileError, match="holds another run .*'params'"):
        compare.run_comparison(["focal"], out_dir=folder, **TINY)


def test_labels_that_differ_only_in_unsafe_characters_get_files_of_their_own(tmp_path):
    """``focal/g0`` and ``focal_g0`` shared ``focal_g0__seed0.json``: one was never trained."""
    choices = [compare.LossChoice("focal", {"gamma": 0.0}, "focal/g0"), compare.LossChoice("focal", {"gamma": 5.0}, "focal_g0")]
    summary = compare.run_comparison(choices, out_dir=tmp_path, **TINY)
    assert set(summary["losses"]) == {"focal/g0", "focal_g0"}
    assert all(entry["seeds"] == [0] for entry in summary["losses"].values())
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2
    compare.run_comparison(["focal:gamma=3"], out_dir=tmp_path, **TINY)  # no clash: the name earlier folders have
    assert (tmp_path / "runs" / "focal_gamma=3__seed0.json").exists()


def test_a_failed_write_leaves_the_old_file_whole(finished, monkeypatch):
    folder, _ = finished
    summary = folder / "summary.json"
    before = summary.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run_files.write_atomic(summary, json.dumps({"half": "written"}))
    assert summary.read_bytes() == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind
    assert compare.load_summary(summary)["dataset"] == "lesion"


def test_an_unusable_output_folder_is_refused_before_any_training(tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "run_one", lambda *a, **k: pytest.fail("trained before checking --out"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write into .*a_file/out.*pick a folder you can write to"):
        compare.run_comparison(["ce"], out_dir=blocker / "out", **TINY)
    with pytest.raises(ValueError, match="--out is empty"):
        compare.run_comparison(["ce"], out_dir="", **TINY)


def test_a_loss_listed_twice_is_refused():
    with pytest.raises(ValueError, match=r"losses listed more than once: \['ce'\]"):
        compare.run_comparison(["ce", "focal", "ce"], out_dir=None, **TINY)


def test_ctrl_c_prints_how_to_resume_without_a_traceback(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_one", interrupted)
    status = cli.main(["compare", "--losses", "ce", "--out", str(tmp_path / "cmp"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 130
    assert "interrupted; finished runs are kept in" in err and "Traceback" not in err


def test_a_corrupt_summary_is_named_and_the_page_says_what_to_do(tmp_path):
    path = tmp_path / "summary.json"
    path.write_bytes(b"\x00" * 1024)  # what a full disk left behind
    with pytest.raises(ValueError, match="summary.json is not a readable comparison summary.*run `python -m segloss"):
        compare.load_summary(path)
    path.write_text(json.dumps({"dataset": "x", "class_names": ["a"], "pixel_share": [1], "losses": {"ce": {}}}))
    with pytest.raises(ValueError, match="the entry of loss 'ce' is incomplete"):
        compare.load_summary(path)
    good = json.loads((Path(__file__).resolve().parents[1] / "sample_data/compare_street/summary.json").read_text())
    for key, value in (("seeds", None), ("miou", None), ("mean_accuracy_std", "0.1"), ("seeds", [])):
        entry = dict(good["losses"]["ce"])
        if value is None:
            del entry[key]
        else:
            entry[key] = value
        path.write_text(json.dumps({**good, "losses": {"ce": entry}}))
        with pytest.raises(ValueError, match=rf"the entry of loss 'ce' lacks \['{key}'\]"):
            compare.load_summary(path)  # the Compare page would have shown a KeyError traceback


def test_atomic_files_get_the_permissions_of_a_plain_write(tmp_path):
    plain, atomic = tmp_path / "plain.json", tmp_path / "atomic.json"
    plain.write_text("{}")
    run_files.write_atomic(atomic, "{}")
    assert (atomic.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777)  # not mkstemp's private 0600
    os.chmod(atomic, 0o600)  # an existing file keeps its mode, as open(path, "w") would
    run_files.write_atomic(atomic, "[]")
    assert (atomic.stat().st_mode & 0o777) == 0o600 and atomic.read_text() == "[]"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def _strict(text):
    """Parse as a browser or jq would: no NaN or Infinity tokens."""
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"not strict JSON: {token}"))


def test_files_and_the_json_line_are_strict_json_with_nan_metrics_as_null(finished, capsys, tmp_path):
    folder, run_path = finished
    run = _strict(run_path.read_text())
    summary = _strict((folder / "summary.json").read_text())
    assert None in run["precision"]  # the lesion scene's rare class is never predicted after 2 steps
    back = run_files.read_run(run_path)
    assert all(isinstance(v, float) for v in back["precision"]) and any(v != v for v in back["precision"])
    assert run_files.read_summary(folder / "summary.json")["losses"].keys() == summary["losses"].keys()
    out = tmp_path / "tiny.pt"
    assert cli.main(["checkpoint", "--dataset", "lesion", "--steps", "2", "--batch-size", "2", "--image-size", "32",
                     "--val-size", "2", "--out", str(out), "--quiet", "--json"]) == 0
    _strict(capsys.readouterr().out.strip().splitlines()[-1])


def test_the_shipped_comparison_is_strict_json():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "sample_data" / "compare_street"
    for path in [root / "summary.json", *(root / "runs").glob("*.json")]:
        _strict(path.read_text())


def test_a_metric_without_a_value_reads_back_as_nan_and_a_null_setting_as_none(tmp_path):
    run = {"loss": "focal", "params": {"alpha": None, "gamma": 2.0}, "config": {"device": None},
           "miou": float("nan"), "iou": [0.5, float("nan")], "losses": {"x": {"miou_std": float("nan")}}}
    path = tmp_path / "r.json"
    path.write_text(run_files.to_json(run))
    back = run_files._load_json(path, "run file", "")
    assert back["params"] == {"alpha": None, "gamma": 2.0} and back["config"] == {"device": None}
    assert back["miou"] != back["miou"] and back["iou"][1] != back["iou"][1] and back["iou"][0] == 0.5
    assert back["losses"]["x"]["miou_std"] != back["losses"]["x"]["miou_std"]


def test_a_bad_loss_parameter_is_refused_before_any_run_trains(tmp_path, monkeypatch):
    """``--losses ce,focal:gamma=-1`` trained every seed of ce before failing on focal."""
    trained = []
    monkeypatch.setattr(compare, "run_one", lambda choice, seed, **kw: trained.append(choice.label))
    with pytest.raises(ValueError, match="loss 'focal:gamma=-1': .*gamma"):
        compare.run_comparison(["ce", "focal:gamma=-1"], out_dir=tmp_path, **TINY)
    assert trained == []
