"""AppTest for the conventions page: the table and both charts render; every input changes the values."""

import numpy as np
import torch

from app_support import by_label, figures, open_page, trace_values

PAGE = "pages/6_Conventions.py"


def table_values(app) -> dict[str, str]:
    """convention -> value, as the page's table shows them."""
    (table,) = app.table
    frame = table.value
    return dict(zip(frame["convention — what it mirrors"], frame["value"]))


def test_page_renders_table_ratio_bars_and_dual_focal_curves_in_float32():
    app = open_page(PAGE)
    assert not app.exception
    values = table_values(app)
    assert len(values) == 22  # nothing ignored by default: MONAI without ignore_index is shown too
    assert "left out" not in next(c.value for c in app.caption if c.value.startswith("Input:"))
    assert any(name.startswith("kornia focal_loss, α=None — kornia 0.9.0") for name in values)
    bars, curves = figures(app)
    assert {trace["name"] for trace in bars["data"]} == {"focal", "weighted CE", "dual focal", "dice"}
    assert [trace["name"] for trace in curves["data"]] == [
        "Hossain et al. 2021 (segloss, α=β=γ=ρ=1)", "Tao et al. 2023 (γ=2)", "2019 port: -Σ log(1-(p-y)²)",
        "cross-entropy"]
    assert curves["data"][0]["y"]["dtype"] == "f4"
    assert all(np.isfinite(trace_values(trace)).all() for trace in curves["data"])
    assert any(button.label == "Download the table (CSV)" for button in app.get("download_button"))


def test_changing_the_input_changes_the_values():
    app = open_page(PAGE)
    before = table_values(app)
    by_label(app.number_input, "Seed").set_value(3).run()
    after_seed = table_values(app)
    assert not app.exception and after_seed != before
    by_label(app.radio, "Input").set_value("random").run()
    random_values = table_values(app)
    by_label(app.slider, "Classes C").set_value(7).run()
    assert not app.exception and table_values(app) != random_values != after_seed


def test_ignored_pixels_and_gamma_change_values_and_drop_the_monai_row_without_ignore_index():
    app = open_page(PAGE)
    before = table_values(app)
    by_label(app.slider, "Share of pixels labelled ignore (255)").set_value(0.3).run()
    ignored = table_values(app)
    assert not app.exception and len(ignored) == 21 and ignored != before
    caption = next(c.value for c in app.caption if c.value.startswith("Input:"))
    assert "ignored" in caption and "ignore_index=None is left out" in caption  # says why a row went
    by_label(app.slider, "gamma (γ)").set_value(0.0).run()
    assert table_values(app) != ignored


def test_upload_inputs_in_the_session_are_offered_and_used():
    app = open_page(PAGE)
    assert "Your image from the Upload page" not in by_label(app.radio, "Input").options
    generator = torch.Generator().manual_seed(0)
    app.session_state["upload_inputs"] = {"logits": torch.randn(4, 12, 10, generator=generator),
                                          "labels": torch.randint(0, 4, (12, 10), generator=generator)}
    app.run()
    radio = by_label(app.radio, "Input")
    assert radio.options[-1] == "Your image from the Upload page"
    radio.set_value("upload").run()
    assert not app.exception
    assert "N = 1, C = 4, 120 pixels" in next(c.value for c in app.caption if c.value.startswith("Input:"))
    assert len(table_values(app)) == 22


def test_unusable_upload_inputs_show_an_error_not_an_exception():
    app = open_page(PAGE)
    app.session_state["upload_inputs"] = {"image": np.zeros((4, 4, 3))}
    app.run()
    by_label(app.radio, "Input").set_value("upload").run()
    assert not app.exception
    assert any("cannot be used here" in error.value for error in app.error)


def test_the_upload_page_offers_its_image_to_this_page_in_the_same_session():
    app = open_page("pages/4_Upload.py")
    app.button[0].click().run()  # "Try a sample": a street scene with a simulated prediction
    assert not app.exception
    stored = app.session_state["upload_inputs"]
    assert stored["logits"].shape[1:] == stored["labels"].shape
    app.switch_page(PAGE).run()
    radio = by_label(app.radio, "Input")
    assert radio.options[-1] == "Your image from the Upload page"
    radio.set_value("upload").run()
    assert not app.exception
    assert "C = 9" in next(c.value for c in app.caption if c.value.startswith("Input:"))


def test_the_newer_losses_other_definitions_are_named():
    app = open_page(PAGE)
    text = " ".join(m.value for m in app.markdown)
    for name in ("OHEMPixelSampler", "GeneralizedDiceLoss", "AsymmetricUnifiedFocalLoss", "pytorch#73205"):
        assert name in text


def test_the_absent_classes_lesson_sets_the_seed_its_text_describes():
    app = open_page(PAGE)
    by_label(app.number_input, "Seed").set_value(3).run()
    next(b for b in app.button if b.label == "Absent classes split Dice").click().run()
    assert not app.exception
    assert by_label(app.number_input, "Seed").value == 0
    assert any("one class is absent from both images" in m.value for m in app.info)
