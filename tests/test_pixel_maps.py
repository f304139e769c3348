"""segloss.uploads.pixel_maps (+ the Upload page's scene, checkpoint and PNG helpers): maps equal the
functional losses, table columns add up, downsampling keeps shapes and means."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import random_batch
from segloss.losses import functional as SF
from segloss.uploads import pixel_maps
from segloss.figures import plots
from segloss.train.checkpoints import CheckpointError, find_checkpoints, load_checkpoint, predict_logits
from segloss.train.model import TinyUNet
from segloss.uploads.scene import find_sample_pairs, sample_scene
from segloss.losses.weights import class_weights, pixel_counts


@pytest.fixture
def image_case():
    logits, target = random_batch(1, 4, (12, 10), ignore_frac=0.15, seed=2)
    return logits[0], target[0]


def test_maps_equal_the_functional_losses(image_case):
    logits, labels = image_case
    maps = pixel_maps.loss_maps(logits, labels, {"ce": {}, "weighted_ce": {"scheme": "inverse"},
                                                 "focal": {"gamma": 3.0}, "dual_focal": {}, "recall": {}})
    x, t = logits[None], labels[None]
    weight = class_weights("inverse", pixel_counts(labels, 4))
    expected = {"ce": SF.cross_entropy(x, t, reduction="none"),
                "weighted_ce": SF.cross_entropy(x, t, weight=weight, reduction="none"),
                "focal": SF.focal_loss(x, t, gamma=3.0, reduction="none"),
                "dual_focal": SF.dual_focal_loss(x, t, reduction="none"),
                "recall": SF.recall_loss(x, t, reduction="none")}
    assert list(maps) == list(expected)
    for name, values in expected.items():
        assert maps[name].shape == (12, 10) and maps[name].dtype == torch.float32
        torch.testing.assert_close(maps[name], values[0].float(), msg=name)
        assert bool((maps[name][labels == 255] == 0).all())


def test_recall_map_is_ce_scaled_by_one_minus_this_images_recall(image_case):
    logits, labels = image_case
    maps = pixel_maps.loss_maps(logits, labels, ["ce", "recall"])
    recall = pixel_maps.prediction_metrics(logits, labels)["recall"]
    for c in range(4):
        where = labels == c
        if where.any():
            torch.testing.assert_close(maps["recall"][where], maps["ce"][where] * float(1 - recall[c]))


def test_table_shares_sum_to_one_and_means_match_a_loop(image_case):
    logits, labels = image_case
    maps = pixel_maps.loss_maps(logits, labels)
    table = pixel_maps.class_table(maps, labels, 4, class_names=list("abcd"), logits=logits)
    assert list(table["class"]) == list("abcd")
    np.testing.assert_allclose(table["pixel share"].sum(), 1.0)
    assert table["pixels"].sum() == int((labels != 255).sum())
    for name in pixel_maps.DEFAULT_LOSSES:
        title = {"ce": "Cross-entropy", "focal": "Focal loss", "dual_focal": "Dual Focal loss",
                 "recall": "Recall loss"}[name]
        shares = table[f"{title}: share of loss"]
        np.testing.assert_allclose(np.nansum(shares), 1.0, rtol=1e-6)
        for c in range(4):
            pixels = maps[name][labels == c]
            if pixels.numel():
                np.testing.assert_allclose(table[f"{title}: mean loss"][c], float(pixels.double().mean()), rtol=1e-6)
    assert set(table) >= {"prediction recall", "prediction IoU"}


def test_table_marks_absent_classes_and_all_zero_maps_as_nan():
    labels = torch.zeros(4, 4, dtype=torch.long)
    table = pixel_maps.class_table({"ce": torch.zeros(4, 4)}, labels, 3)
    assert table["pixels"].tolist() == [16, 0, 0]
    assert np.isnan(table["Cross-entropy: mean loss"][1]) and np.isnan(table["Cross-entropy: share of loss"]).all()
    assert "prediction recall" not in table


def test_compare_maps_difference_and_log_ratio():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.1, 0.0]])
    torch.testing.assert_close(pixel_maps.compare_maps(a, b), torch.tensor([[0.9, 0.0]]))
    ratio = pixel_maps.compare_maps(a, b, "log_ratio")
    np.testing.assert_allclose(ratio.numpy(), [[1.0, 0.0]], atol=1e-4)
    with pytest.raises(ValueError, match="mode"):
        pixel_maps.compare_maps(a, b, "ratio")


@pytest.mark.parametrize("shape, max_side, factor, out", [((1024, 1024), 512, 2, (512, 512)),
                                                          ((1000, 300), 256, 4, (250, 75)),
                                                          ((100, 80), 512, 1, (100, 80)),
                                                          ((7, 5), 2, 4, (2, 2))])
def test_display_view_shapes(shape, max_side, factor, out):
    h, w = shape
    logits, labels = torch.randn(3, h, w), torch.randint(0, 3, (h, w))
    maps = {"ce": torch.rand(h, w)}
    view = pixel_maps.display_view(np.random.rand(h, w, 3).astype(np.float32), labels, logits, maps, max_side=max_side)
    assert view.factor == factor and max(view.image.shape[:2]) <= max_side
    assert view.image.shape == (*out, 3) and view.image.dtype == np.uint8
    assert view.labels.shape == out and view.maps["ce"].shape == out and view.maps["ce"].dtype == np.float32
    assert view.top_classes.shape == (3, *out) and view.top_probs.shape == (3, *out)
    assert bool((np.diff(view.top_probs, axis=0) <= 0).all())


def test_block_mean_over_valid_pixels_with_partial_edge_blocks():
    values = torch.arange(25.0).view(5, 5)
    valid = torch.ones(5, 5, dtype=torch.bool)
    valid[0, 0] = False
    out = pixel_maps.block_mean(values, 2, valid)
    np.testing.assert_allclose(out[0, 0], (1 + 5 + 6) / 3)
    np.testing.assert_allclose(out[2, 2], 24.0)  # the 1x1 corner block
    assert torch.isnan(pixel_maps.block_mean(values, 5, torch.zeros(5, 5, dtype=torch.bool))).all()
    np.testing.assert_array_equal(pixel_maps.block_centres(torch.arange(25).view(5, 5), 2), [[6, 8, 9], [16, 18, 19],
                                                                                           [21, 23, 24]])


def test_bad_arguments_raise_clear_errors(image_case):
    logits, labels = image_case
    with pytest.raises(ValueError, match="losses must name"):
        pixel_maps.loss_maps(logits, labels, ["nope"])
    with pytest.raises(ValueError, match="do not match"):
        pixel_maps.loss_maps(logits, labels[:5])
    with pytest.raises(TypeError, match="integer"):
        pixel_maps.loss_maps(logits, labels.float())
    with pytest.raises(ValueError, match="momentum"):
        pixel_maps.loss_maps(logits, labels, {"recall": {"momentum": 0.5}})


def test_hover_text_and_png_sheet():
    text = plots.pixel_hover_text(np.array([[0, 255]]), np.array([[[1, 0]], [[0, 1]]]), ["a", "b"])
    assert text.tolist() == [["a<br>top-2: b, a", "ignored<br>top-2: a, b"]]
    maps = {"CE": np.random.rand(20, 30).astype(np.float32), "Focal": np.full((20, 30), np.nan, np.float32)}
    sheet = Image.open(io.BytesIO(plots.heatmaps_png(np.random.rand(20, 30, 3), maps, log_color=True)))
    assert sheet.size == (2 * 30 + 8, 20 + 16 + 4) and sheet.mode == "RGB"  # panels, gap, title row
    assert plots.panel_heading("Soft Dice", "|dL/dz|", False, 0.0, 0.0213) == "Soft Dice  (colour: |dL/dz| 0 to 0.0213)"
    assert plots.panel_heading("CE", "loss", True, -3.0, 0.5) == "CE  (colour: log10 loss -3 to 0.5)"


def test_sample_scene_renders_when_no_pairs_are_shipped(tmp_path):
    scene = sample_scene("lesion", 2, folder=tmp_path)
    assert scene.image.shape == (256, 256, 3) and scene.labels.shape == (256, 256)
    assert scene.class_names == ("background", "organ", "lesion") and scene.name == "lesion_2"


def test_sample_pairs_are_found_by_suffix_and_loaded(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "street_a.png")
    Image.fromarray(np.full((8, 8), 3, np.uint8)).save(tmp_path / "street_a_mask.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "lonely_mask.png")  # no image: skipped
    assert find_sample_pairs(tmp_path) == [(tmp_path / "street_a.png", tmp_path / "street_a_mask.png")]
    assert find_sample_pairs(tmp_path, "lesion") == []
    scene = sample_scene("street", 0, folder=tmp_path)
    assert scene.name == "street_a" and (scene.labels == 3).all()


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = TinyUNet(3, 5, width=4)
    torch.save({"state_dict": model.state_dict(), "dataset": "street", "num_classes": 5}, tmp_path / "m.pt")
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["num_classes"] == 5 and meta["width"] == 4 and meta["dataset"] == "street"
    image = np.random.rand(20, 12, 3).astype(np.float32)
    expected = model.eval()(torch.from_numpy(image).permute(2, 0, 1)[None])[0]
    torch.testing.assert_close(predict_logits(loaded, image), expected)
    assert find_checkpoints(tmp_path) == [tmp_path / "m.pt"]
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no TinyUNet weights"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="weights-only"):
        load_checkpoint(tmp_path / "text.pt")
    state = model.state_dict()
    for name, blob, message in (  # each escaped as IndexError, or loaded a model that draws NaN
            ("flat", {"state_dict": {**state, "head.weight": torch.zeros(5)}}, "convolutions' are 4-D"),
            ("width", {"state_dict": state, "meta": {"width": 4.7}}, "not positive integers"),
            ("nan", {"state_dict": {**state, "head.bias": torch.full((5,), float("nan"))}}, "NaN or infinite")):
        torch.save(blob, tmp_path / f"{name}.pt")
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / f"{name}.pt")


def test_checkpoint_runs_at_its_training_scale_and_scores_better_there():
    """The shipped 64 px street checkpoint on a 256 px sample: resized in, logits resized back."""
    from segloss.train import checkpoints
    from segloss.train import data
    from segloss.train import metrics
    from ui.layout import ROOT

    (path,) = checkpoints.find_checkpoints(ROOT / "sample_data")
    model, meta = checkpoints.load_checkpoint(path)
    images, masks = data.make_batch("street", 2, 256, seed=777)
    scores = {}
    for size in (None, int(meta["image_size"])):
        cm = sum(metrics.confusion_matrix(checkpoints.predict_logits(model, img.permute(1, 2, 0).numpy(), size)
                                          .argmax(0), mask, 9) for img, mask in zip(images, masks))
        scores[size] = metrics.metrics_from_confusion(cm)["miou"]
    logits = checkpoints.predict_logits(model, images[0].permute(1, 2, 0).numpy(), 64)
    assert logits.shape == (9, 256, 256)
    assert scores[64] > scores[None] + 0.2 and scores[64] > 0.6


def test_gradient_maps_cover_region_losses_and_equal_the_analysis_gradient(image_case):
    from segloss import create_loss
    from segloss.explain import analysis

    logits, labels = image_case
    names = {"ce": {}, "focal": {"gamma": 2.0}, "dice": {"smooth": 0.5}, "lovasz": {}, "dice_ce": {}}
    maps = pixel_maps.loss_maps(logits, labels, names, kind="gradient")
    assert list(maps) == list(names)
    for name, params in names.items():
        expected = analysis.gradient_map(create_loss(name, **params), logits[None], labels[None])[0]
        torch.testing.assert_close(maps[name], expected, msg=name)
        assert bool((maps[name][labels == 255] == 0).all()) and maps[name].max() > 0
    # a pixel-wise loss's gradient map is each pixel's own |dl/dz|: for CE, |softmax - onehot|
    onehot = torch.nn.functional.one_hot(labels.clamp(max=3), 4).movedim(-1, 0)
    ce = torch.where(labels != 255, (logits.softmax(0) - onehot).norm(dim=0), 0.0)
    torch.testing.assert_close(maps["ce"], ce)
    table = pixel_maps.class_table(maps, labels, 4, kind="gradient")
    assert "Soft Dice loss: share of gradient" in table and "Soft Dice loss: mean |dL/dz|" in table
    np.testing.assert_allclose(np.nansum(table["Lovász-Softmax loss: share of gradient"]), 1.0)


def test_loss_maps_of_region_losses_are_refused_with_the_way_out(image_case):
    logits, labels = image_case
    with pytest.raises(ValueError, match=r"\['dice'\] score whole regions.*kind='gradient'"):
        pixel_maps.loss_maps(logits, labels, ["ce", "dice"])
    with pytest.raises(ValueError, match="kind must be one of"):
        pixel_maps.loss_maps(logits, labels, ["ce"], kind="hessian")


def test_focal_loss_and_gradient_maps_tell_different_stories():
    # relative to CE, focal loss keeps 1% of an easy pixel's loss (p_t = 0.9, gamma = 2) but 2.9% of
    # its gradient: the loss map understates how much easy pixels still push, and more so than on
    # hard pixels (p_t = 0.3: 49% of the loss, ~100% of the gradient)
    labels = torch.zeros(8, 8, dtype=torch.long)
    logits = torch.zeros(3, 8, 8)
    logits[0, :, :4] = np.log(0.9 / 0.05)  # easy: p_t = 0.9
    logits[0, :, 4:] = np.log(0.3 / 0.35)  # hard: p_t = 0.3
    losses = pixel_maps.loss_maps(logits, labels, ["ce", "focal"])
    grads = pixel_maps.loss_maps(logits, labels, ["ce", "focal"], kind="gradient")
    loss_share, grad_share = losses["focal"] / losses["ce"], grads["focal"] / grads["ce"]
    easy, hard = (slice(None), slice(0, 4)), (slice(None), slice(4, 8))
    torch.testing.assert_close(loss_share[easy], torch.full((8, 4), 0.01), rtol=1e-4, atol=0)
    torch.testing.assert_close(grad_share[easy], torch.full((8, 4), 0.01 - 0.18 * np.log(0.9)), rtol=1e-4, atol=0)
    gain = grad_share / loss_share
    assert gain[easy].min() > 1.4 * gain[hard].max()


@pytest.mark.parametrize("count, grid", [(1, (1, 1)), (3, (1, 3)), (4, (2, 2)), (5, (2, 3)), (7, (3, 3))])
def test_loss_panels_go_two_by_two_for_four_and_three_to_a_row_beyond(count, grid):
    """Four panels in a row were under 100 px wide each on a 1024 px projector."""
    image = np.zeros((16, 24, 3), np.uint8)
    panels = {f"loss {i}": np.full((16, 24), float(i), np.float32) for i in range(count)}
    for shared in (True, False):
        fig = plots.loss_panels_figure(image, panels, factor=1, hover_text=np.full((16, 24), "x", dtype=object),
                                       top_probs=np.zeros((1, 16, 24), np.float32), shared_scale=shared)
        heatmaps = [t for t in fig.data if t.type == "heatmap"]
        assert [t.name for t in heatmaps] == list(panels)
        cells = {(fig.layout[t.xaxis.replace("x", "xaxis")].domain, fig.layout[t.yaxis.replace("y", "yaxis")].domain)
                 for t in heatmaps}
        rows = {y for _, y in cells}
        columns = {x for x, _ in cells}
        assert (len(rows), len(columns)) == grid and len(cells) == count
        assert sum(t.showscale for t in heatmaps) == (1 if shared else count)
