"""AppTest of the Live training page: start, advance by reruns, pause/resume/stop, every loss."""

import time

import pytest

import segloss
from app_support import by_label, figures, open_page

PAGE = "pages/3_Live_training.py"
KEY = "live_trainer"


@pytest.fixture
def app():
    app = open_page(PAGE)
    yield app
    if KEY in app.session_state:
        app.session_state[KEY].stop()  # never leave a training thread behind


def small_and_fast(app, loss="ce"):
    by_label(app.select_slider, "Image size (px)").set_value(32)
    by_label(app.select_slider, "Batch size").set_value(2)
    by_label(app.selectbox, "Loss").set_value(loss)
    return app.run()


def wait_for_steps(app, steps, timeout=60.0):
    trainer = app.session_state[KEY]
    deadline = time.monotonic() + timeout
    while trainer.steps_done < steps and trainer.status == "running":
        if time.monotonic() > deadline:
            raise TimeoutError(f"trainer at step {trainer.steps_done} after {timeout} s")
        time.sleep(0.05)
    return app.run()


def wait_until_done(app, timeout=60.0):
    trainer = app.session_state[KEY]
    deadline = time.monotonic() + timeout
    while trainer.is_alive():
        if time.monotonic() > deadline:
            raise TimeoutError(f"trainer still {trainer.status} at step {trainer.steps_done}")
        time.sleep(0.05)
    return app.run()


def step_metric(app) -> int:
    return int(by_label(app.metric, "Step").value.split("/")[0])


def test_opens_idle_with_the_class_frequency_table():
    app = open_page(PAGE)
    assert not app.exception and KEY not in app.session_state
    assert any("press **Start**" in info.value for info in app.info)
    assert not by_label(app.button, "Start").disabled and by_label(app.button, "Pause").disabled
    (table,) = app.dataframe
    assert list(table.value["class"])[:3] == ["sky", "road", "sidewalk"]
    assert table.value["pixel share"].sum() == pytest.approx(1.0)


def test_start_advance_pause_resume_stop(app):
    small_and_fast(app)
    by_label(app.button, "Start").click().run()
    trainer = app.session_state[KEY]
    assert trainer.status == "running" and by_label(app.button, "Start").disabled
    wait_for_steps(app, 12)
    first = step_metric(app)
    assert first >= 12 and not app.exception
    assert len(app.get("image")) == 5 and len(figures(app)) == 4  # CE: four panels and the colour bar
    wait_for_steps(app, first + 5)
    assert step_metric(app) > first  # a rerun shows the thread's progress

    by_label(app.button, "Pause").click().run()
    assert trainer.status == "paused" and not by_label(app.button, "Resume").disabled
    by_label(app.button, "Resume").click().run()
    assert trainer.status == "running"
    by_label(app.button, "Stop").click().run()
    assert trainer.status == "stopped" and not trainer.is_alive()
    assert app.get("progress")[0].proto.text.startswith("Stopped")
    by_label(app.button, "Reset").click().run()
    assert KEY not in app.session_state and not app.exception


def test_changed_settings_start_a_new_run_and_same_settings_continue(app):
    small_and_fast(app)
    by_label(app.number_input, "Steps to train").set_value(10).run()
    by_label(app.button, "Start").click().run()
    first = app.session_state[KEY]
    wait_until_done(app)
    assert first.status == "finished" and by_label(app.metric, "Step").value == "10 / 10"
    by_label(app.number_input, "Steps to train").set_value(20).run()
    by_label(app.button, "Start").click().run()
    assert app.session_state[KEY] is first  # same settings: the run continues to 20
    wait_until_done(app)
    assert first.steps_done == 20
    by_label(app.number_input, "Seed").set_value(3).run()
    assert any("differ from this run" in c.value for c in app.caption)
    by_label(app.button, "Start").click().run()
    assert app.session_state[KEY] is not first and app.session_state[KEY].config.seed == 3


def test_step_never_discards_a_run_and_stepping_past_the_goal_says_so(app):
    """A finished (or paused) run with changed settings: Step continues it (it started a new run, the old
    one gone without a word), and says that the settings take effect with Stop, then Start; past the
    goal the progress reads "step 11, past the goal of 10", not "step 11 of 10" (nor a split into trained and
    stepped steps, which a Stop before the goal would make false)."""
    small_and_fast(app)
    by_label(app.number_input, "Steps to train").set_value(10).run()
    by_label(app.button, "Start").click().run()
    first = app.session_state[KEY]
    wait_until_done(app)
    by_label(app.number_input, "Seed").set_value(3).run()
    by_label(app.button, "Step").click().run()
    assert app.session_state[KEY] is first and first.steps_done == 11 and first.config.seed != 3
    assert any("take effect with Stop, then Start" in w.value for w in app.warning)
    assert app.get("progress")[0].proto.text == "Finished: step 11, past the goal of 10 (stepped by hand)"
    assert by_label(app.metric, "Step").value == "11"
    assert any("Step continues this run" in c.value for c in app.caption)


@pytest.mark.parametrize("name", sorted(segloss.LOSSES))
def test_every_registry_loss_trains_and_renders(app, name):
    small_and_fast(app, name)
    if name == "dual_focal":
        by_label(app.multiselect, "Learn by backpropagation").set_value(["gamma", "rho"]).run()
    by_label(app.button, "Start").click().run()
    wait_for_steps(app, 11)  # past the first validation after step 0
    trainer = app.session_state[KEY]
    assert not app.exception and trainer.status == "running", trainer.snapshot().message
    charts = figures(app)
    assert len(charts) == (5 if name in ("dual_focal", "recall", "dice_boundary") else 4)
    assert len(app.get("image")) == (5 if name == "ce" else 6)  # CE: its map is the reference's, shown once
    if name == "dual_focal":
        assert [t["name"] for t in charts[-1]["data"]] == ["gamma", "rho"]
    if name == "dice_boundary":  # the schedule moved weight once per 10 steps
        assert [t["name"] for t in charts[-1]["data"]] == ["region weight", "boundary weight"]
        assert trainer.criterion.current_weights()["boundary"] > 0.01


def test_loss_map_gradient_map_toggle_and_region_losses_show_gradients(app):
    small_and_fast(app, "focal")
    by_label(app.button, "Start").click().run()
    wait_for_steps(app, 11)
    toggle = by_label(app.button_group, "Per-pixel maps")
    toggle.set_value("gradient").run()
    assert not app.exception
    labels = " ".join(c.value for c in app.caption)
    assert "of the focal loss's gradient" in labels and "cross-entropy's" in labels
    share = figures(app)[3]
    assert [t["name"] for t in share["data"]][1] == "share of gradient of focal loss"
    by_label(app.button, "Stop").click().run()
    by_label(app.button, "Reset").click().run()
    small_and_fast(app, "lovasz")
    by_label(app.button, "Start").click().run()
    wait_for_steps(app, 11)
    assert not app.exception and not [g for g in app.button_group if g.label == "Per-pixel maps"]
    assert any("no loss per pixel" in c.value for c in app.caption)


def test_the_live_view_refreshes_every_two_seconds_or_once_per_validation_whichever_is_later():
    from types import SimpleNamespace

    from ui import live_view

    def snap(rate, status="running"):
        return SimpleNamespace(steps_per_second=rate, status=status)

    assert live_view.refresh_seconds(snap(15.0)) == 2.0  # 10 steps take 0.67 s: every 2 s
    assert live_view.refresh_seconds(snap(2.5)) == 4.0  # one validation every 4 s: no faster
    assert live_view.refresh_seconds(snap(0.1)) == 10.0  # bounded
    assert live_view.refresh_seconds(snap(0.0)) == 2.0  # no rate yet
    assert not live_view.refresh_is_off(2.0, snap(12.0))
    assert live_view.refresh_is_off(2.0, snap(2.0))  # 5 s wanted: set the schedule again
    assert not live_view.refresh_is_off(None, snap(2.0)) and not live_view.refresh_is_off(2.0, snap(2.0, "paused"))


def test_step_button_takes_one_step_and_updates_the_maps_and_the_model_downloads(app):
    import io

    import torch

    small_and_fast(app)
    by_label(app.button, "Step").click().run()
    assert not app.exception
    trainer = app.session_state[KEY]
    assert trainer.steps_done == 1 and trainer.view is not None and trainer.status != "running"
    assert step_metric(app) == 1
    by_label(app.button, "Step").click().run()
    assert trainer.steps_done == 2 and int(trainer.snapshot().evaluations["step"][-1]) == 2  # maps of step 2
    model = trainer.model_copy()
    from segloss.train import export

    blob = torch.load(io.BytesIO(export.checkpoint_bytes(trainer)), weights_only=True)  # what the button serves
    assert blob["meta"]["steps"] == 2
    assert all(torch.equal(blob["model_state"][k], v) for k, v in model.state_dict().items())
    labels = [b.label for b in app.get("download_button")]
    assert "Download the model (.pt)" in labels
    assert sum(label.endswith("(PNG)") for label in labels) == 1  # trained with CE: one map (it is the reference)
    assert not any("of cross-entropy's" in c.value for c in app.caption)
