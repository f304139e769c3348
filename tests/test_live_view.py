"""What the live view draws: boundary masks and loss shares (evaluation), heatmaps (render), panels
and figures from a snapshot (live)."""

import numpy as np
import pytest
import torch

from segloss.figures import live
from segloss.figures import render
from segloss.train.evaluation import boundary_mask, class_shares
from segloss.train.trainer import Trainer

SMALL = {"batch_size": 2, "image_size": 32, "lr": 3e-3, "val_size": 3}


def test_boundary_mask_marks_both_sides_of_an_edge_and_not_the_image_border():
    target = torch.zeros(1, 5, 6, dtype=torch.long)
    target[0, :, 3:] = 1
    edges = boundary_mask(target)[0]
    assert edges[:, 2:4].all() and not edges[:, :2].any() and not edges[:, 4:].any()
    target[0, 0, 0] = 255
    assert not boundary_mask(target)[0, 0, 0]  # ignored pixels are never boundaries


def test_class_shares_match_a_hand_count():
    values = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    target = torch.tensor([[[0, 0], [2, 255]]])
    np.testing.assert_allclose(class_shares(values, target, 3), [0.5, 0.0, 0.5])
    assert class_shares(torch.zeros(1, 2, 2), target, 3).tolist() == [0.0, 0.0, 0.0]


def test_heatmap_linear_and_log_scales():
    values = np.array([[0.0, 0.5, 1.0, 7.0]])
    rgb = render.heatmap_rgb(values, vmax=1.0)
    np.testing.assert_array_equal(rgb[0, 0], render.COLORMAP[0])
    np.testing.assert_array_equal(rgb[0, 2], render.COLORMAP[255])
    np.testing.assert_array_equal(rgb[0, 3], rgb[0, 2])  # clipped at vmax
    np.testing.assert_array_equal(rgb[0, 1], render.COLORMAP[128])
    log = render.normalise(np.array([1e-5, 1e-2, 1.0]), vmax=1.0, log=True)
    np.testing.assert_allclose(log, [0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="vmax"):
        render.heatmap_rgb(values, vmax=0.0)
    with pytest.raises(ValueError, match="2-D"):
        render.heatmap_rgb(np.zeros(4))


def test_upscale_is_nearest_neighbour_by_an_integer_factor():
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    big = render.upscale(image, min_side=5)
    assert big.shape == (6, 9) and (big[:3, :3] == 0).all() and (big[3:, 6:] == 5).all()
    assert render.upscale(image, min_side=1) is image
    assert render.robust_max(np.zeros(3)) == 1.0


@pytest.fixture(scope="module")
def trained():
    trainer = Trainer("street", "recall", loss_params={"momentum": 0.5}, eval_every=2, **SMALL)
    trainer.start(total_steps=6)
    trainer._thread.join(60)
    return trainer


def test_image_panels_show_input_truth_prediction_and_both_maps(trained):
    snap = trained.snapshot()
    panels = live.image_panels(snap, 2, loss_title="Recall loss", min_side=64)
    assert [p.title for p in panels] == ["Input", "Ground truth", "Prediction", "Recall loss per pixel",
                                         "Cross-entropy per pixel"]
    assert all(p.rgb.shape == (64, 64, 3) and p.rgb.dtype == np.uint8 for p in panels)
    shared = live.image_panels(snap, 2, loss_title="Recall loss", scale="shared", min_side=1)
    top = max(render.robust_max(snap.view.map("loss").values[2]), render.robust_max(snap.view.map("loss", "ce").values[2]))
    assert f"{top:.3g}" in shared[3].caption and f"{top:.3g}" in shared[4].caption
    with pytest.raises(ValueError, match="index"):
        live.image_panels(snap, 3, loss_title="x")
    with pytest.raises(ValueError, match="scale"):
        live.image_panels(snap, 0, loss_title="x", scale="global")
    gradient = live.image_panels(snap, 2, loss_title="Recall loss", kind="gradient", min_side=1)
    assert [p.title for p in gradient[3:]] == ["Recall loss: gradient |dL/dz|", "Cross-entropy: gradient |dL/dz|"]
    assert live.available_kinds(snap) == ("loss", "gradient")


def test_a_region_loss_has_gradient_panels_and_gradient_shares_only():
    trainer = Trainer("street", "dice", **SMALL)
    snap = trainer.snapshot()
    assert live.available_kinds(snap) == ("gradient",)  # known before the first validation
    trainer.evaluate()
    snap = trainer.snapshot()
    assert live.available_kinds(snap) == ("gradient",)
    with pytest.raises(ValueError, match="no per-pixel loss map"):
        live.image_panels(snap, 0, loss_title="Soft Dice loss")
    panels = live.image_panels(snap, 0, loss_title="Soft Dice loss", kind="gradient", min_side=1)
    assert panels[3].title == "Soft Dice loss: gradient |dL/dz|"
    share = live.figures(snap, "loss")["share"]  # falls back to the gradient
    assert [trace.name for trace in share.data] == ["share of pixels", "share of gradient of soft dice loss",
                                                     "share of gradient of cross-entropy"]


def test_figures_and_table_cover_every_recorded_series(trained):
    snap = trained.snapshot()
    figures = live.figures(snap)
    assert set(figures) == {"loss", "validation", "recall", "share", "state"}
    assert len(figures["recall"].data) == len(figures["state"].data) == 9
    assert figures["loss"].data[0].y.dtype == np.float32
    table = live.evaluation_table(snap)
    assert table["step"].tolist() == [0, 2, 4, 6] and len(table) == 4 + 3 * 9


def test_view_cache_rebuilds_only_for_a_new_validation():
    trainer = Trainer("street", "recall", **SMALL)
    trainer.evaluate()
    cache = live.ViewCache()
    snap = trainer.snapshot()
    first = cache.figures(snap)
    panels = cache.panels(snap, 0, loss_title="Recall loss")
    assert cache.panels(snap, 0, loss_title="Recall loss") is panels
    assert cache.panels(snap, 1, loss_title="Recall loss") is not panels
    assert cache.figures(trainer.snapshot())["recall"] is first["recall"]  # same view: same figure
    assert cache.figures(trainer.snapshot(), "gradient")["recall"] is not first["recall"]  # another kind
    assert cache.panels(snap, 0, loss_title="Recall loss", kind="gradient") is not panels
    trainer.step()
    assert cache.figures(trainer.snapshot())["loss"] is not first["loss"]  # a short loss curve follows each step
    trainer.validate()
    assert cache.figures(trainer.snapshot())["recall"] is not first["recall"]


def test_shares_of_a_signed_map_are_shares_of_its_magnitude():
    """The boundary loss is negative where probability sits inside its region: shares stay in [0, 1]."""
    from segloss.train.evaluation import class_shares

    values = torch.tensor([[[-3.0, 1.0], [0.0, 0.0]]])
    target = torch.tensor([[[0, 1], [1, 255]]])
    np.testing.assert_allclose(class_shares(values, target, 2).numpy(), [0.75, 0.25])
    np.testing.assert_allclose(class_shares(values.abs(), target, 2).numpy(), [0.75, 0.25])


def test_class_shares_compare_ignore_index_as_the_number_and_give_nan_for_a_nan_map():
    from segloss.train.evaluation import class_shares

    target = torch.tensor([[[0, 1], [2, 2]]])
    ones = torch.ones(1, 2, 2)
    assert class_shares(ones, target.to(torch.uint8), 3, 256).tolist() == [0.25, 0.25, 0.5]  # 256: no uint8 label
    nan = torch.tensor([[[float("nan"), 1.0], [1.0, 1.0]]])
    assert torch.isnan(class_shares(nan, target, 3)).all()


def test_training_curves_tick_whole_steps_after_a_step_or_two():
    """After one step plotly ticked 0.5 and 1.5: steps are whole numbers."""
    from segloss.figures import plots

    few = plots.training_curves_figure(np.array([1.0]), {"loss": np.array([0.5])}, y_title="loss")
    assert few.layout.xaxis.dtick == 1
    many = plots.training_curves_figure(np.arange(0, 200, 10.0), {"loss": np.ones(20)}, y_title="loss")
    assert many.layout.xaxis.dtick is None  # plotly's own ticks over a longer run
