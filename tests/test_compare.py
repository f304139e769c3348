"""Loss comparisons: argument parsing, resumable runs, summaries and their files."""

import csv
import io
import json

import numpy as np
import pytest
import torch

from segloss.train import compare


def test_parse_loss_reads_parameters_by_their_registry_kind():
    choice = compare.parse_loss("dual_focal:gamma=2,learnable=gamma+rho")
    assert choice.name == "dual_focal" and choice.params == {"gamma": 2.0, "learnable": ("gamma", "rho")}
    assert compare.parse_loss("weighted_ce:scheme=inverse").params == {"scheme": "inverse"}
    assert compare.parse_loss(" ce ").params == {}


def test_split_losses_keeps_parameters_with_their_loss():
    assert compare.split_losses("ce,focal:gamma=3,alpha=0.5,dual_focal:learnable=gamma+rho,recall") == [
        "ce", "focal:gamma=3,alpha=0.5", "dual_focal:learnable=gamma+rho", "recall"]


@pytest.mark.parametrize("text, message", [("dyce", "unknown loss"), ("focal:gama=2", "param=value"),
                                           ("focal:gamma=big", "must be a number"), ("focal:gamma", "param=value"),
                                           ("ce:gamma=2", "ce takes no parameters"),
                                           ("focal:gamma=2,gamma=3", "gamma is given twice")])
def test_parse_loss_rejects_bad_arguments(text, message):
    with pytest.raises(ValueError, match=message):
        compare.parse_loss(text)


def test_summary_means_and_sample_std_over_seeds_hand_computed():
    def run(seed, miou, iou):
        return {"loss": "ce", "name": "ce", "params": {}, "seed": seed, "iou": iou, "recall": iou, "precision": iou,
                "miou": miou, "mean_accuracy": miou, "overall_accuracy": miou, "pixel_share": [0.75, 0.25]}
    summary = compare.summarise([run(0, 0.2, [0.1, float("nan")]), run(1, 0.4, [0.3, 0.5])], "lesion")
    entry = summary["losses"]["ce"]
    assert entry["miou"] == pytest.approx(0.3) and entry["miou_std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert entry["iou"] == pytest.approx([0.2, 0.5])  # NaN (undefined) seeds are left out, not counted as 0
    assert summary["class_names"] == ["background", "organ", "lesion"]


def test_tiny_comparison_writes_well_formed_files_and_resumes(tmp_path):
    messages = []
    kwargs = dict(dataset="lesion", steps=3, seeds=1, out_dir=tmp_path, image_size=32, val_size=2, batch_size=2)
    summary = compare.run_comparison(["ce", "focal:gamma=3"], progress=lambda d, t, m: messages.append(m), **kwargs)
    assert set(summary["losses"]) == {"ce", "focal:gamma=3"}
    assert {p.name for p in tmp_path.iterdir()} == {"runs", "summary.json", "summary.csv", "per_class.csv"}
    assert json.loads((tmp_path / "summary.json").read_text())["dataset"] == "lesion"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "per_class.csv").read_text())))
    assert len(rows) == 2 * 3 and {"loss", "class", "pixel_share", "iou_mean", "recall_std"} <= set(rows[0])
    overall = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert [r["loss"] for r in overall] == ["ce", "focal:gamma=3"]
    assert all(0 <= float(r["mean_accuracy_mean"]) <= 1 for r in overall)
    messages.clear()
    again = compare.run_comparison(["ce", "focal:gamma=3"], progress=lambda d, t, m: messages.append(m), **kwargs)
    assert all("already done" in m for m in messages)  # finished runs are not redone
    assert again["losses"]["ce"]["miou"] == summary["losses"]["ce"]["miou"]


def test_same_seed_gives_every_loss_the_same_start():
    """What makes the comparison fair: for one seed every loss starts from the same weights and sees the
    same batches (a different seed changes both)."""
    from segloss.train.trainer import Trainer

    kwargs = dict(dataset="lesion", batch_size=2, image_size=32, lr=1e-3, val_size=2)
    trainers = [Trainer(loss=name, seed=seed, **kwargs) for name, seed in (("ce", 0), ("dice", 0), ("ce", 1))]
    try:
        (ce, dice, other) = [t.model.state_dict() for t in trainers]
        assert all(torch.equal(ce[k], dice[k]) for k in ce)
        assert not all(torch.equal(ce[k], other[k]) for k in ce)
        for index in (0, 5):
            assert all(torch.equal(a, b) for a, b in zip(trainers[0].batch(index), trainers[1].batch(index)))
        assert not torch.equal(trainers[0].batch(0)[0], trainers[2].batch(0)[0])
    finally:
        for trainer in trainers:
            trainer.close()


def test_load_summary_rejects_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a segloss comparison summary"):
        compare.load_summary(path)


def test_cli_compare_end_to_end_on_a_tiny_budget(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "segloss", "compare", "--dataset", "lesion", "--losses", "ce,focal:gamma=1.5",
           "--steps", "3", "--seeds", "1", "--image-size", "32", "--batch-size", "2", "--val-size", "2",
           "--out", str(tmp_path / "cmp")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "focal:gamma=1.5" in done.stdout and "2/2" in done.stderr  # table and progress bar
    summary = compare.load_summary(tmp_path / "cmp" / "summary.json")
    assert list(summary["losses"]) == ["ce", "focal:gamma=1.5"]
    bad_cmd = [arg if arg != "ce,focal:gamma=1.5" else "ce,dyce" for arg in cmd]
    bad = subprocess.run(bad_cmd, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "unknown loss 'dyce'" in bad.stderr


def test_the_tradeoff_chart_never_zooms_a_small_gap_to_fill_it():
    from segloss.figures.compare import tradeoff_figure

    def entry(miou, acc, std=0.0):
        return {"miou": miou, "mean_accuracy": acc, "miou_std": std, "mean_accuracy_std": std, "seeds": [0]}

    close = tradeoff_figure({"losses": {"ce": entry(0.296, 0.40), "recall": entry(0.306, 0.41)}})
    x_low, x_high = close.layout.xaxis.range
    assert x_high - x_low >= 0.1 and x_low <= 0.296 and x_high >= 0.306
    wide = tradeoff_figure({"losses": {"ce": entry(0.2, 0.5, 0.05), "lovasz": entry(0.8, 0.9, 0.05)}})
    y_low, y_high = wide.layout.yaxis.range
    assert y_low <= 0.45 and 0.95 <= y_high <= 1.0  # the data and its error bars, inside [0, 1]
    assert min(0.45 - y_low, y_high - 0.95) >= 0.03 * (y_high - y_low)  # room for the outermost markers
    edge = tradeoff_figure({"losses": {"a": entry(0.99, 0.005), "b": entry(0.995, 0.01)}})
    assert edge.layout.xaxis.range[1] == 1.0 and edge.layout.yaxis.range[0] == 0.0


def test_one_seed_has_no_spread_but_none_where_the_metric_has_no_value():
    """A class never predicted has no precision: with one seed its spread is missing too, not 0 (with two
    or more seeds ``nanstd`` of an all-NaN column already gave NaN)."""
    from segloss.train.compare import _mean_std

    mean, std = _mean_std([[0.5, float("nan")]])
    assert mean[0] == 0.5 and std[0] == 0.0 and np.isnan(mean[1]) and np.isnan(std[1])
    mean, std = _mean_std([[0.5, float("nan")], [0.7, float("nan")]])
    assert std[0] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and np.isnan(std[1])
