"""AppTest for the Upload page: files go through the real ``st.file_uploader`` widgets
(``AppTest.file_uploader[i].set_value((name, bytes, mime))``, streamlit >= 1.5x), samples load with
one click, every bad file gives an ``st.error`` and never an exception, and the page keeps working."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from app_support import by_label, figures, open_page, trace_values
from segloss.losses import functional as SF
from segloss.train.model import TinyUNet
from segloss.uploads.simulate import simulate_logits
from ui import upload_view
from upload_files import NUM_CLASSES, SIZE, bad_files, good_files, street_pair

PAGE = "pages/4_Upload.py"
SLOTS = {"image": "Image", "mask": "Mask", "logits": "Logits"}
MIME = {"png": "image/png", "npy": "application/octet-stream"}


def uploader(app, slot):
    (found,) = [u for u in app.file_uploader if u.label.startswith(SLOTS[slot])]
    return found


def upload(app, slot, name, content):
    uploader(app, slot).set_value((name, content, MIME[name.rsplit(".", 1)[1]]))
    return app.run()


def choose(app, label, value):
    (widget,) = [w for w in (*app.radio, *app.selectbox) if w.label == label]
    widget.set_value(value)
    return app.run()


def heatmaps(fig):
    return [t for t in fig["data"] if t["type"] == "heatmap"]


def decoded(trace, key):
    """A (possibly multi-dimensional) plotly typed array as numpy."""
    value, flat = trace[key], trace_values(trace, key)
    if isinstance(value, dict) and "shape" in value:
        return flat.reshape([int(n) for n in value["shape"].split(",")])
    return flat


def open_with(files=None, **choices):
    app = open_page(PAGE)
    files = files or good_files()
    upload(app, "image", "scene.png", files["image"])
    upload(app, "mask", "scene_mask.png", files["mask"])
    for label, value in choices.items():
        choose(app, label, value)
    return app


def assert_working(app, charts=2):
    assert not app.exception, app.exception
    assert not app.error, [e.value for e in app.error]
    assert len(figures(app)) == charts


def test_page_opens_with_instructions_and_no_charts():
    app = open_page(PAGE)
    assert not app.exception and not figures(app)
    assert any("Try a sample" in i.value for i in app.info)
    options = [s.split(" (")[0] for s in app.radio[0].options]
    # the shipped sample_data/ checkpoint is offered; the live-trained model only once this session trained one
    assert options == [upload_view.SOURCES[k].split(" (")[0] for k in ("simulate", "logits", "fit", "checkpoint")]
    captions = " ".join(c.value for c in app.caption)
    assert "Live training" in captions  # why the live-model option is hidden


def test_try_a_sample_shows_four_heatmaps_with_full_hover_and_the_table():
    app = open_page(PAGE)
    app.button[0].click().run()
    assert_working(app)
    panels, comparison = figures(app)
    traces = heatmaps(panels)
    titles = ["Cross-entropy", "Focal loss", "Dual Focal loss", "Recall loss"]
    assert [t["name"] for t in traces] == titles and len(heatmaps(comparison)) == 1
    custom = decoded(traces[0], "customdata")
    assert custom.shape[-1] == 3 + 4 and max(custom.shape[:2]) <= 512
    template = traces[0]["hovertemplate"]
    assert "top-3" in template and all(t in template for t in titles)
    assert traces[0]["z"]["dtype"] == "f4"
    table = app.dataframe[0].value
    assert len(table) == NUM_CLASSES and "Focal loss: share of loss" in table.columns
    np.testing.assert_allclose(table["pixel share"].sum(), 1.0)
    labels = [b.proto.label for b in app.get("download_button")]
    assert any("PNG" in label for label in labels) and any("CSV" in label for label in labels)
    app.button[0].click().run()  # the next sample
    assert_working(app)


def test_uploaded_pair_gives_maps_equal_to_the_loss_of_the_simulated_prediction():
    app = open_with(**{"Classes": "street"})
    assert_working(app)
    _, labels = street_pair()
    logits = simulate_logits(labels, NUM_CLASSES, confidence=0.85, boundary_width=4.0, noise=0.5, noise_scale=4.0)
    expected = SF.cross_entropy(logits[None], torch.from_numpy(labels)[None], reduction="none")[0]
    ce = heatmaps(figures(app)[0])[0]
    shown = decoded(ce, "z").reshape(SIZE, SIZE)  # 96 px: drawn one to one, linear colour
    np.testing.assert_allclose(shown, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_uploaded_logits_drive_the_maps():
    files = good_files()
    app = open_with(files, **{"Classes": "street", "Prediction": "logits"})
    assert not app.error and not figures(app)  # waiting for the logits file
    upload(app, "logits", "logits.npy", files["logits"])
    assert_working(app)
    _, labels = street_pair()
    logits = torch.from_numpy(np.load(__import__("io").BytesIO(files["logits"])))
    expected = SF.focal_loss(logits[None], torch.from_numpy(labels)[None], gamma=2.0, reduction="none")[0]
    focal = heatmaps(figures(app)[0])[1]
    np.testing.assert_allclose(decoded(focal, "z").reshape(SIZE, SIZE), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_gradient_maps_show_every_loss_and_region_losses_wait_for_them():
    from segloss import create_loss
    from segloss.explain import analysis

    app = open_with(**{"Classes": "street"})
    by_label(app.multiselect, "Losses").set_value(["focal", "dice", "lovasz"]).run()
    assert_working(app, charts=1)  # one loss map: nothing to compare it with
    assert [t["name"] for t in heatmaps(figures(app)[0])] == ["Focal loss"]  # loss maps: pixel-wise only
    assert any("Soft Dice loss, Lovász-Softmax loss: no loss per pixel" in i.value for i in app.info)
    by_label(app.button_group, "Show").set_value("gradient").run()
    assert_working(app)
    traces = heatmaps(figures(app)[0])
    assert [t["name"] for t in traces] == ["Focal loss", "Soft Dice loss", "Lovász-Softmax loss"]
    assert traces[0]["colorbar"]["title"]["text"] == "|dL/dz|"
    _, labels = street_pair()
    logits = simulate_logits(labels, NUM_CLASSES, confidence=0.85, boundary_width=4.0, noise=0.5, noise_scale=4.0)
    expected = analysis.gradient_map(create_loss("dice"), logits[None], torch.from_numpy(labels)[None].long())[0]
    np.testing.assert_allclose(decoded(traces[1], "z").reshape(SIZE, SIZE), expected.numpy(), rtol=1e-4, atol=1e-7)
    table = app.dataframe[0].value
    assert "Soft Dice loss: share of gradient" in table.columns
    assert any("who gets the push" in h.value for h in app.subheader)


@pytest.fixture(scope="module")
def session():
    """One app session for the whole bad-file corpus: street classes, prediction from uploaded logits."""
    files = good_files()
    app = open_with(files, **{"Classes": "street", "Prediction": "logits"})
    upload(app, "logits", "logits.npy", files["logits"])
    assert_working(app)
    return app


@pytest.mark.parametrize("case, slot, name, content, words", bad_files(), ids=[c[0] for c in bad_files()])
def test_bad_upload_shows_an_error_then_a_good_upload_works(session, case, slot, name, content, words):
    upload(session, slot, name, content)
    assert not session.exception, session.exception
    assert len(session.error) == 1 and words in session.error[0].value, [e.value for e in session.error]
    assert not figures(session)
    good_name = {"image": "scene.png", "mask": "scene_mask.png", "logits": "logits.npy"}[slot]
    upload(session, slot, good_name, good_files()[slot])  # the same session keeps working
    assert_working(session)


@pytest.mark.parametrize("case, label", [("size-mismatch", "Resize the mask"), ("out-of-range-mask", "Treat labels")])
def test_offered_fix_makes_the_upload_usable(case, label):
    (_, slot, name, content, _) = [c for c in bad_files() if c[0] == case][0]
    app = open_with(**{"Classes": "street"})
    upload(app, slot, name, content)
    assert len(app.error) == 1
    (fix,) = [c for c in app.checkbox if c.label.startswith(label)]
    fix.check().run()
    assert_working(app)
    assert any("resized" in i.value for i in app.info) if case == "size-mismatch" else True


def test_missed_class_has_zero_recall_and_the_knob_survives_a_bad_upload():
    app = open_with(**{"Classes": "street"})
    choose(app, "The model misses this class", 1)  # road
    assert_working(app)
    table = app.dataframe[0].value
    assert table.loc[table["class"] == "road", "prediction recall"].item() == 0.0
    upload(app, "mask", "mask.png", b"not a png")  # the knobs are not drawn in this run...
    assert len(app.error) == 1
    upload(app, "mask", "scene_mask.png", good_files()["mask"])  # ...and come back as they were
    assert_working(app)
    table = app.dataframe[0].value
    assert table.loc[table["class"] == "road", "prediction recall"].item() == 0.0


def test_live_and_checkpoint_models_appear_when_available(tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = TinyUNet(3, NUM_CLASSES, width=4).state_dict()
    torch.save({"state_dict": state, "dataset": "street"}, tmp_path / "tiny.pt")
    monkeypatch.setattr(upload_view, "SAMPLE_DIR", tmp_path)
    app = open_page(PAGE)
    trainer = SimpleNamespace(model=TinyUNet(3, NUM_CLASSES, width=4).train(), steps_done=7,
                              config=SimpleNamespace(dataset="street"))
    app.session_state["live_trainer"] = trainer
    app.run()
    assert len(app.radio[0].options) == 5  # simulated, logits, fitted, checkpoint, live
    upload(app, "image", "scene.png", good_files()["image"])
    upload(app, "mask", "scene_mask.png", good_files()["mask"])
    choose(app, "Classes", "street")
    choose(app, "Prediction", "checkpoint")
    assert_working(app)
    choose(app, "Prediction", "live")
    assert_working(app)
    assert trainer.model.training  # predicted on a frozen copy; the trainer's model is untouched
    app.session_state["live_trainer"] = SimpleNamespace(model=TinyUNet(3, 3, width=4), steps_done=1,
                                                        config=SimpleNamespace(dataset="lesion"))
    app.run()  # a 3-class model against a 9-class mask: refused, with the reason
    assert not app.exception and "3 classes (lesion)" in app.error[0].value and not figures(app)


def test_fitting_the_tiny_model_to_the_upload_on_request(monkeypatch):
    from segloss.train import fitting

    real = fitting.fit_to_image
    monkeypatch.setattr(fitting, "fit_to_image", lambda *a, **k: real(*a, **{**k, "seconds": 1.0, "max_steps": 10}))
    app = open_page(PAGE)
    upload(app, "image", "scene.png", good_files()["image"])
    upload(app, "mask", "scene_mask.png", good_files()["mask"])
    choose(app, "Classes", "street")
    choose(app, "Prediction", "fit")
    assert not app.exception and not figures(app)  # nothing is trained until asked
    [b for b in app.button if b.label == "Fit the tiny model to this image"][0].click().run()
    assert_working(app)
    assert app.session_state["fitted_model"][2]["steps"] <= 10
    app.run()  # kept for this image: no refit on the next rerun
    assert_working(app)


def test_classes_inferred_from_a_colour_mask_and_single_class_masks_refused():
    from upload_files import png
    from segloss.train.data import DATASETS, colorize

    image, labels = street_pair()
    colour = colorize(labels, DATASETS["street"].palette)
    app = open_with({"image": png(image), "mask": png(colour)}, **{"Classes": "mask"})
    assert_working(app)
    table = app.dataframe[0].value
    assert len(table) == len(np.unique(labels)) and table["class"].iloc[0] == "class 0"
    upload(app, "mask", "flat.png", png(np.zeros((SIZE, SIZE), np.uint8)))
    assert not app.exception and "single class" in app.error[0].value


def test_sample_then_back_to_the_uploaded_files():
    app = open_with(**{"Classes": "street"})
    (sample,) = [b for b in app.button if b.label == "Try a sample"]
    sample.click().run()
    assert_working(app)
    assert app.dataframe[0].value["pixels"].sum() > SIZE * SIZE  # the 256 px sample (shipped or rendered)
    (back,) = [b for b in app.button if b.label == "Back to my files"]
    back.click().run()
    assert_working(app)
    assert app.dataframe[0].value["pixels"].sum() == SIZE * SIZE


def test_the_table_shows_one_column_per_loss_and_switches_between_share_and_mean():
    app = open_with(**{"Classes": "street"})
    assert_working(app)
    columns = list(app.dataframe[0].value.columns)
    assert sum(c.endswith(": share of loss") for c in columns) == 4 and not any(c.endswith(": mean loss") for c in columns)
    by_label_radio = next(r for r in app.radio if r.label == "Per loss, show")
    by_label_radio.set_value("mean loss").run()
    columns = list(app.dataframe[0].value.columns)
    assert sum(c.endswith(": mean loss") for c in columns) == 4 and not any(c.endswith(": share of loss") for c in columns)
    assert len(columns) == 3 + 4 + 2  # class, pixels, pixel share; four losses; recall and IoU


def test_every_registry_loss_draws_on_an_upload_in_both_modes():
    import segloss

    app = open_with(**{"Classes": "street"})
    names = [n for n in segloss.LOSSES if not segloss.LOSSES[n].needs_class_counts]
    by_label(app.multiselect, "Losses").set_value(names).run()
    assert not app.exception and not app.error
    pixelwise = [segloss.LOSSES[n].title for n in names if segloss.LOSSES[n].pixelwise]
    assert [t["name"] for t in heatmaps(figures(app)[0])] == pixelwise  # the boundary loss has a map
    by_label(app.button_group, "Show").set_value("gradient").run()
    assert not app.exception and not app.error
    traces = heatmaps(figures(app)[0])
    assert [t["name"] for t in traces] == [segloss.LOSSES[n].title for n in names]
    for trace in traces:
        values = decoded(trace, "z")
        assert np.isfinite(values).all() and values.max() > 0, trace["name"]


def test_a_lone_bad_file_is_named_before_its_partner_is_uploaded():
    """With one file there, its header is checked at once (a text file as mask waited, silently,
    for a valid image); a good lone file is acknowledged and its partner asked for."""
    cases = {c[0]: c for c in bad_files()}
    for case in ("text-as-png-mask", "jpeg-mask", "empty-image", "bomb-image"):
        _, slot, name, content, words = cases[case]
        app = open_page(PAGE)
        upload(app, slot, name, content)
        assert not app.exception, app.exception
        assert len(app.error) == 1 and words in app.error[0].value, (case, [e.value for e in app.error])
        assert any("Try a sample" in i.value for i in app.info) and not figures(app)
    for slot, other, name, shown in (("image", "mask", "scene.png", r"scene\.png"),
                                     ("mask", "image", "*a* [b](c) $d$.png", r"\*a\* \[b\]\(c\) \$d\$\.png")):
        app = open_page(PAGE)
        upload(app, slot, name, good_files()[slot])  # the name's markdown shows as typed, not as formatting
        assert not app.error and not app.exception and not figures(app)
        assert [i.value for i in app.info] == [f"The {slot} **{shown}** is here; now upload its {other}."]


def test_an_upload_is_still_shown_after_a_visit_to_another_page():
    """Streamlit empties the file boxes when their page is left: the results vanished without a word
    (while Library conventions still offered "Your image from the Upload page")."""
    app = open_with(**{"Classes": "street"})
    by_label(app.slider, "Confidence (true-class p away from edges)").set_value(0.6).run()
    app.switch_page("pages/6_Conventions.py").run()
    app.switch_page(PAGE).run()
    assert_working(app)
    assert by_label(app.slider, "Confidence (true-class p away from edges)").value == 0.6
    assert app.dataframe[0].value["pixels"].sum() == SIZE * SIZE  # the uploaded 96 px pair, not a sample
    assert any(r"Showing your upload **scene\.png** and **scene\_mask\.png**" in c.value for c in app.caption)
    choose(app, "Classes", "lesion")  # the kept files are decoded under the classes chosen now, not the old ones
    assert any("outside" in e.value for e in app.error) and not figures(app)
    app.switch_page("pages/1_Loss_curves.py").run()
    app.switch_page(PAGE).run()
    assert any("outside" in e.value for e in app.error) and not figures(app)  # not the street scene kept before
    choose(app, "Classes", "street")
    assert_working(app)
    (sample,) = [b for b in app.button if b.label == "Try a sample"]
    sample.click().run()
    app.switch_page("pages/1_Loss_curves.py").run()
    app.switch_page(PAGE).run()
    (back,) = [b for b in app.button if b.label == "Back to my files"]  # the boxes are empty, the files kept
    back.click().run()
    assert_working(app)
    assert app.dataframe[0].value["pixels"].sum() == SIZE * SIZE
    upload(app, "mask", "scene_mask.png", good_files()["mask"])  # a file chosen by hand: the boxes lead again
    assert not any("Showing your upload" in c.value for c in app.caption)
    assert any("now upload its image" in i.value for i in app.info)
