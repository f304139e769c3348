"""Trainer: it learns, it is reproducible, its thread obeys pause/resume/stop/reset/keep_running,
snapshots are consistent while it runs, memory stays bounded, and the shipped checkpoint works."""

import math
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import segloss
from segloss.explain import analysis
from segloss.losses import functional as SF
from segloss.train.data import make_batch
from segloss.train.metrics import confusion_matrix, metrics_from_confusion
from segloss.train.model import TinyUNet
from segloss.figures import live
from segloss.train.trainer import Trainer

CHECKPOINT = Path(__file__).resolve().parents[1] / "sample_data" / "tinyunet_street_ce.pt"
SMALL = {"batch_size": 2, "image_size": 32, "lr": 3e-3, "val_size": 2}  # fast settings for thread tests


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


def settled_steps(trainer, quiet=0.3):
    """Steps done once no step has finished for ``quiet`` seconds."""
    steps = trainer.steps_done
    while True:
        time.sleep(quiet)
        if trainer.steps_done == steps:
            return steps
        steps = trainer.steps_done


def test_loss_falls_and_miou_rises_on_street_within_150_steps():
    trainer = Trainer("street", "ce", batch_size=4, image_size=32, lr=3e-3, seed=0, val_size=8, eval_every=50)
    trainer.start(total_steps=150)  # the app's path (a worker thread); step() is the same code
    wait_for(lambda: not trainer.is_alive(), timeout=120)
    snap = trainer.snapshot()
    losses, evals = snap.history["loss"], snap.evaluations
    assert snap.status == "finished" and len(losses) == 150
    assert np.mean(losses[-15:]) < 0.5 * np.mean(losses[:15])
    assert evals["step"].tolist() == [0, 50, 100, 150]
    assert evals["miou"][-1] > evals["miou"][0] + 0.2 and evals["overall_accuracy"][-1] > 0.75


def test_same_seed_gives_same_weights_batches_and_first_losses():
    a, b, c = (Trainer("street", "focal", seed=s, **SMALL) for s in (7, 7, 8))
    for name, tensor in a.model.state_dict().items():
        assert torch.equal(tensor, b.model.state_dict()[name]), name
    assert all(torch.equal(x, y) for x, y in zip(a.batch(3), b.batch(3)))
    first = [[t.step()["loss"] for _ in range(3)] for t in (a, b, c)]
    assert first[0] == first[1]
    assert first[0] != first[2]


def test_step_returns_step_and_loss_and_validation_metrics_match_an_independent_count():
    trainer = Trainer("lesion", "recall", **SMALL)
    out = trainer.step()
    assert out["step"] == 1 and np.isfinite(out["loss"]) and out["seconds"] > 0
    metrics = trainer.evaluate()
    trainer.model.eval()
    with torch.no_grad():
        pred = trainer.model(trainer.val_images).argmax(1)
    expected = metrics_from_confusion(confusion_matrix(pred, trainer.val_masks, 3))
    np.testing.assert_allclose(metrics["iou"], expected["iou"].numpy())
    assert metrics["miou"] == pytest.approx(expected["miou"])
    assert metrics["mean_accuracy"] == pytest.approx(expected["mean_accuracy"])


def test_loss_map_is_the_registry_loss_with_reduction_none_and_ce_map_is_torch_ce():
    trainer = Trainer("street", "focal", loss_params={"gamma": 3.0}, **SMALL)
    trainer.step()
    view = trainer.validate()
    with torch.no_grad():
        logits = trainer.model.eval()(trainer.val_images)
    expected = SF.focal_loss(logits, trainer.val_masks, gamma=3.0, reduction="none")
    np.testing.assert_allclose(view.map("loss").values, expected.numpy(), rtol=1e-5, atol=1e-7)
    ce = torch.nn.functional.cross_entropy(logits, trainer.val_masks, reduction="none")
    np.testing.assert_allclose(view.map("loss", "ce").values, ce.numpy(), rtol=1e-5, atol=1e-6)
    assert not view.map("loss").values.flags.writeable
    # gradient maps: |dl/dz| of each pixel; for CE that is |softmax - onehot|
    onehot = torch.nn.functional.one_hot(trainer.val_masks, logits.shape[1]).movedim(-1, 1)
    ce_grad = (logits.softmax(1) - onehot).norm(dim=1)
    np.testing.assert_allclose(view.map("gradient", "ce").values, ce_grad.numpy(), rtol=1e-4, atol=1e-6)
    focal_grad = analysis.gradient_map(segloss.create_loss("focal", gamma=3.0, reduction="sum"), logits,
                                       trainer.val_masks)
    np.testing.assert_allclose(view.map("gradient").values, focal_grad.numpy(), rtol=1e-4, atol=1e-7)
    for key, pixel_map in view.maps.items():
        assert pixel_map.class_share.sum() == pytest.approx(1.0) and 0 <= pixel_map.boundary_share <= 1, key


@pytest.mark.parametrize("loss", ["dice", "lovasz", "dice_focal"])
def test_region_losses_train_and_show_gradient_maps_but_no_loss_map(loss):
    trainer = Trainer("street", loss, **SMALL)
    for _ in range(2):
        assert np.isfinite(trainer.step()["loss"])
    view = trainer.validate()
    assert view.map("loss") is None and view.map("loss", "ce") is not None
    with torch.no_grad():
        logits = trainer.model.eval()(trainer.val_images)
    expected = analysis.gradient_map(segloss.create_loss(loss), logits, trainer.val_masks)
    np.testing.assert_allclose(view.map("gradient").values, expected.numpy(), rtol=1e-4, atol=1e-7)
    assert view.map("gradient").values.max() > 0


def test_learnable_dfl_parameters_are_optimised_and_recorded():
    trainer = Trainer("street", "dual_focal", loss_params={"learnable": ("gamma", "rho")}, **SMALL)
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in optimised for p in trainer.criterion.parameters())
    start = trainer.criterion.current_params()["gamma"]
    for _ in range(5):
        trainer.step()
    history = trainer.snapshot().history
    assert set(history) == {"step", "loss", "dfl_gamma", "dfl_rho"}
    assert history["dfl_gamma"][-1] == pytest.approx(trainer.criterion.current_params()["gamma"], rel=1e-5)
    assert history["dfl_gamma"][-1] != start


def test_recall_class_weights_are_recorded_per_class():
    trainer = Trainer("street", "recall", loss_params={"momentum": 0.5}, **SMALL)
    trainer.step()
    trainer.step()
    weights = trainer.snapshot().history["recall_weights"]
    assert weights.shape == (2, 9)
    np.testing.assert_allclose(weights[-1], trainer.criterion.class_weights.numpy(), rtol=1e-6)


def test_thread_runs_to_total_steps_then_finishes_with_validations():
    trainer = Trainer("street", "ce", eval_every=2, **SMALL)
    trainer.start(total_steps=5)
    wait_for(lambda: not trainer.is_alive())
    snap = trainer.snapshot()
    assert (snap.status, snap.step, trainer.steps_done) == ("finished", 5, 5)
    assert snap.evaluations["step"].tolist() == [0, 2, 4, 5]
    assert snap.view.step == 5 and snap.history["step"].tolist() == [1, 2, 3, 4, 5]


def test_pause_resume_stop_and_reset():
    trainer = Trainer("street", "focal", **SMALL)
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.start()
    wait_for(lambda: trainer.steps_done >= 2)
    with pytest.raises(RuntimeError, match="already running"):
        trainer.start()
    trainer.pause()
    assert trainer.snapshot().status == "paused"
    paused_at = settled_steps(trainer)
    assert trainer.steps_done == paused_at and trainer.is_alive()
    trainer.resume()
    wait_for(lambda: trainer.steps_done > paused_at + 1)
    trainer.stop()
    assert not trainer.is_alive() and trainer.snapshot().status == "stopped"
    stopped_at = trainer.steps_done
    time.sleep(0.2)
    assert trainer.steps_done == stopped_at
    trainer.reset()
    snap = trainer.snapshot()
    assert (snap.step, snap.status, len(snap.history["step"]), snap.view) == (0, "idle", 0, None)
    assert all(torch.equal(v, initial[k]) for k, v in trainer.model.state_dict().items())


def test_model_copy_is_a_frozen_eval_copy_taken_between_steps():
    trainer = Trainer("street", "ce", **SMALL)
    trainer.start(total_steps=20)
    copy = trainer.model_copy()
    assert not copy.training and copy is not trainer.model
    wait_for(lambda: not trainer.is_alive())
    assert any(not torch.equal(a, b) for a, b in zip(copy.state_dict().values(),
                                                     trainer.model.state_dict().values()))


def test_keep_running_false_ends_the_thread_even_while_paused():
    alive = threading.Event()
    alive.set()
    trainer = Trainer("street", "ce", **SMALL)
    trainer.start(keep_running=alive.is_set)
    wait_for(lambda: trainer.steps_done >= 1)
    trainer.pause()
    alive.clear()  # e.g. the browser tab that owns the trainer closed
    wait_for(lambda: not trainer.is_alive(), timeout=5)
    snap = trainer.snapshot()
    assert snap.status == "stopped" and "session" in snap.message


def test_an_exception_in_the_thread_is_reported_not_lost():
    trainer = Trainer("street", "ce", **SMALL)

    def broken_step():
        raise FloatingPointError("loss is nan at step 1")

    trainer.step = broken_step
    trainer.start(total_steps=3)
    wait_for(lambda: not trainer.is_alive())
    snap = trainer.snapshot()
    assert snap.status == "failed" and "FloatingPointError: loss is nan" in snap.message


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_a_diverged_step_raises_and_leaves_the_weights_and_the_count_untouched(what, monkeypatch):
    """On CPU (no AMP scaler to skip it) the check came after optimizer.step(): the weights were
    NaN by the time the error was raised, and every later step failed. BatchNorm's running statistics,
    updated by the forward pass, are put back too."""
    trainer = Trainer("street", "dual_focal", loss_params={"learnable": ("gamma",)}, **SMALL)
    trainer.step()
    before = [p.detach().clone() for p in trainer.optimizer.param_groups[0]["params"]]
    buffers = dict(trainer.model.named_buffers())
    buffers_before = {name: b.clone() for name, b in buffers.items()}
    forward = type(trainer.criterion).forward
    if what == "loss":
        monkeypatch.setattr(type(trainer.criterion), "forward", lambda self, z, y: forward(self, z, y) * float("inf"))
    else:  # a finite loss whose gradient is not
        monkeypatch.setattr(type(trainer.criterion), "forward", lambda self, z, y: forward(self, z, y) + _Inf.apply(z))
    with pytest.raises(FloatingPointError, match=f"{'loss' if what == 'loss' else 'the gradient'} is .* at step 2"):
        trainer.step()
    assert trainer.steps_done == 1
    after = trainer.optimizer.param_groups[0]["params"]
    assert all(torch.equal(a, b) for a, b in zip(after, before))
    assert buffers and all(torch.equal(buffers[name], b) for name, b in buffers_before.items())  # BatchNorm's too
    monkeypatch.setattr(type(trainer.criterion), "forward", forward)
    assert math.isfinite(trainer.step()["loss"]) and trainer.steps_done == 2  # the trainer goes on


class _Inf(torch.autograd.Function):
    """0 in value, an infinite gradient on its input."""

    @staticmethod
    def forward(ctx, z):
        ctx.shape = z.shape
        return z.new_zeros(())

    @staticmethod
    def backward(ctx, grad):
        return torch.full(ctx.shape, float("inf"))


def test_snapshots_are_consistent_and_immutable_while_the_thread_trains():
    trainer = Trainer("street", "recall", eval_every=1, history_size=16, **SMALL)
    trainer.start(total_steps=60)
    snaps = []
    while trainer.is_alive():
        snaps.append(trainer.snapshot())
        time.sleep(0.005)
    snaps.append(trainer.snapshot())  # after the thread ended
    copies = [(s.history["loss"].copy(), s.evaluations["miou"].copy()) for s in snaps]
    for snap, (loss, miou) in zip(snaps, copies):
        steps = snap.history["step"]
        assert len(steps) == len(snap.history["loss"]) == len(snap.history["recall_weights"]) <= 16
        assert (np.diff(steps) > 0).all() and (len(steps) == 0 or steps[-1] <= snap.step)
        evals = snap.evaluations
        assert evals["iou"].shape == evals["recall"].shape == (len(evals["step"]), 9)
        assert snap.view is None or snap.view.step <= snap.step
        np.testing.assert_array_equal(snap.history["loss"], loss)  # later training did not alter it
        np.testing.assert_array_equal(snap.evaluations["miou"], miou)
    assert snaps[-1].step == 60 and snaps[-1].status == "finished"


def test_history_memory_stays_bounded_however_long_it_runs():
    trainer = Trainer("street", "ce", history_size=8, eval_every=1, **SMALL)
    trainer.start(total_steps=80)
    wait_for(lambda: not trainer.is_alive(), timeout=60)
    snap = trainer.snapshot()
    assert 4 <= len(snap.history["step"]) <= 8 and 4 <= len(snap.evaluations["step"]) <= 8
    assert snap.history["step"][-1] > 60 and snap.evaluations["step"][0] <= 16  # still spans the run
    assert trainer.history.stride >= 8 and trainer.history._data["loss"].shape == (8,)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"dataset": "mars"}, ValueError, "unknown dataset"),
    ({"loss": "dyce"}, ValueError, "unknown loss"),
    ({"loss_params": {"gamma": 2000.0}}, ValueError, "gamma must lie in"),
    ({"loss_params": {"delta": 1.0}}, ValueError, "no parameter"),
    ({"loss_params": [("gamma", 2.0)]}, TypeError, "loss_params must be a dict"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": 2.5}, TypeError, "batch_size must be an int"),
    ({"image_size": 16}, ValueError, "image_size"),
    ({"lr": 0.0}, ValueError, "lr must be"),
    ({"seed": -1}, ValueError, "seed"),
    ({"device": "tpu"}, ValueError, "device"),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Trainer(**kwargs)


def test_bad_start_arguments_raise():
    trainer = Trainer(**SMALL)
    with pytest.raises(ValueError, match="total_steps"):
        trainer.start(total_steps=0)
    with pytest.raises(TypeError, match="keep_running"):
        trainer.start(keep_running=True)
    assert not trainer.is_alive()


def test_shipped_checkpoint_loads_weights_only_and_segments_unseen_scenes():
    assert CHECKPOINT.stat().st_size < 2_000_000
    blob = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    meta = blob["meta"]
    assert (meta["dataset"], meta["loss"], meta["num_classes"]) == ("street", "ce", 9)
    assert meta["command"].startswith("python -m segloss checkpoint")
    model = TinyUNet(meta["in_channels"], meta["num_classes"], meta["width"])
    model.load_state_dict(blob["model_state"])
    images, masks = make_batch("street", 16, 64, seed=424242)  # scenes it never saw
    with torch.no_grad():
        pred = model.eval()(images).argmax(1)
    metrics = metrics_from_confusion(confusion_matrix(pred, masks, 9))
    assert metrics["overall_accuracy"] > 0.9 and metrics["miou"] > 0.6
    assert metrics["recall"][:5].min() > 0.8  # the large classes are right


def test_checkpoint_command_writes_a_weights_only_file_and_reports(tmp_path, capsys):
    from segloss.cli import main

    out = tmp_path / "tiny.pt"
    assert main(["checkpoint", "--loss", "focal", "--param", "gamma=1.5", "--steps", "2", "--batch-size", "2",
                 "--image-size", "32", "--val-size", "2", "--out", str(out), "--quiet"]) == 0
    assert "wrote" in capsys.readouterr().out
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["loss_params"] == {"gamma": 1.5} and meta["steps"] == 2
    assert "--param gamma=1.5" in meta["command"]
    assert main(["checkpoint", "--loss", "focal", "--param", "gamma=2000", "--steps", "1", "--out", str(out)]) == 2
    assert "gamma must lie in" in capsys.readouterr().err
    assert main(["checkpoint", "--loss", "focal", "--param", "gamma=1", "--param", "gamma=3", "--out", str(out)]) == 2
    assert "--param gamma given more than once" in capsys.readouterr().err  # the last one won, silently


def test_dice_boundary_trains_and_its_weights_follow_the_schedule_every_epoch_of_steps():
    trainer = Trainer(loss="dice_boundary", loss_params={"boundary_weight": 0.05, "steal": 0.1}, batch_size=2,
                      image_size=32, eval_every=100, schedule_every=3, width=4)
    for _ in range(7):
        trainer.step()
    history = trainer.snapshot().history
    # the weights each step trained with: (1, 0.05) for steps 1-3, (0.9, 0.15) for 4-6, then (0.8, 0.25)
    np.testing.assert_allclose(history["weight_region"], [1, 1, 1, 0.9, 0.9, 0.9, 0.8], atol=1e-6)
    np.testing.assert_allclose(history["weight_boundary"], [0.05] * 3 + [0.15] * 3 + [0.25], atol=1e-6)
    figures = live.figures(trainer.snapshot())
    assert [trace.name for trace in figures["state"].data] == ["region weight", "boundary weight"]
    trainer.reset()
    assert trainer.criterion.current_weights() == {"region": 1.0, "boundary": 0.05}


def test_a_negative_training_loss_is_drawn_on_a_linear_axis():
    trainer = Trainer(loss="boundary", batch_size=2, image_size=32, eval_every=100, width=4)
    for _ in range(2):
        trainer.step()
    assert live.loss_figure(trainer.snapshot()).layout.yaxis.type == "log"  # an untrained net: positive
    trainer.history.append(3, loss=-0.2)  # as when the probabilities sit inside the regions
    assert live.loss_figure(trainer.snapshot()).layout.yaxis.type != "log"


def test_checkpoint_command_refuses_a_bad_out_before_it_trains(tmp_path, capsys, monkeypatch):
    from segloss import cli
    from segloss.train import trainer

    monkeypatch.setattr(trainer.Trainer, "start", lambda *a, **k: pytest.fail("trained before checking --out"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    (tmp_path / "folder.pt").mkdir()
    for out, message in ((tmp_path / "model.txt", "must end in .pt or .pth, got 'model.txt'"),
                         (tmp_path / "folder.pt", "folder.pt is a folder: give the checkpoint file's name"),
                         (blocker / "sub" / "model.pt", "cannot write .*a_file/sub/model.pt.*pick a folder")):
        assert cli.main(["checkpoint", "--steps", "1", "--out", str(out)]) == 2
        assert re.search(message, capsys.readouterr().err)
