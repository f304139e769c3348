"""Settings that travel: a page's view lives in its query string, a crafted link reproduces it,
hostile values are ignored with a notice, and one-click lessons set a page up."""

import re

import numpy as np
from streamlit.testing.v1 import AppTest

from app_support import ROOT, by_label, figures, trace_values

CURVES = "pages/1_Loss_curves.py"
GRADIENTS = "pages/2_Gradients.py"


def plain(query_params) -> dict:
    """AppTest's query parameters (lists of values) as name -> value."""
    return {k: (v[-1] if isinstance(v, list) else v) for k, v in dict(query_params).items()}


def open_with(path: str, query: dict) -> AppTest:
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    app.switch_page(path)
    for name, value in query.items():
        app.query_params[name] = value
    return app.run()


def test_a_crafted_link_shows_the_same_widgets_and_charts():
    query = {"losses": "ce,dual_focal", "gammas": "2", "C": "5", "spread": "confusing", "dual_focal.rho": "1.5"}
    app = open_with(CURVES, query)
    assert not app.exception
    assert by_label(app.multiselect, "Losses").value == ["ce", "dual_focal"]
    assert by_label(app.slider, "Number of classes C").value == 5
    assert by_label(app.radio, "The remaining 1 - p_t goes").value == "confusing"
    names = [t["name"] for t in figures(app)[0]["data"]]
    assert names == ["Cross-entropy", "Dual Focal loss, γ = 2"]
    # the same view built by hand gives the same curve
    by_hand = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90)
    by_hand.switch_page(CURVES)
    by_hand.run()
    by_label(by_hand.multiselect, "Losses").set_value(["ce", "dual_focal"]).run()
    by_label(by_hand.multiselect, "Overlay gamma values").set_value([2.0]).run()
    by_label(by_hand.slider, "Number of classes C").set_value(5).run()
    by_label(by_hand.radio, "The remaining 1 - p_t goes").set_value("confusing").run()
    by_label(by_hand.slider, "rho").set_value(1.5).run()
    ours = trace_values(figures(app)[0]["data"][1])
    theirs = trace_values(figures(by_hand)[0]["data"][1])
    np.testing.assert_array_equal(ours, theirs)  # NaN where the log axis drops a value, in both
    assert plain(by_hand.query_params) == query  # building the view by hand writes the same link


def test_hostile_or_invalid_values_are_ignored_with_a_notice():
    query = {"C": "1e309", "losses": "__import__('os')", "spread": "x" * 5000, "logy": "maybe", "gammas": "2,7"}
    app = open_with(CURVES, query)
    assert not app.exception
    assert by_label(app.slider, "Number of classes C").value == 19  # defaults stand
    assert by_label(app.multiselect, "Losses").value == ["ce", "focal"]
    notice = next(c.value for c in app.caption if "Ignored in the link" in c.value)
    for name in ("C=", "losses=", "spread=", "logy=", "gammas="):
        assert name in notice
    assert len(notice) < 800  # a 5000-character value is not echoed back


def test_changing_a_widget_writes_the_query_string_without_defaults():
    app = open_with(GRADIENTS, {})
    assert not app.exception and plain(app.query_params) == {}
    by_label(app.selectbox, "Loss").set_value("dual_focal").run()
    by_label(app.radio, "Which gradient").set_value("false").run()
    link = plain(app.query_params)
    assert link["loss"] == "dual_focal" and link["component"] == "false" and "C" not in link  # defaults omitted
    again = open_with(GRADIENTS, link)  # the link, opened in a fresh session, shows the same view
    for label in ("Loss", "Parameter on the y axis"):
        assert by_label(again.selectbox, label).value == by_label(app.selectbox, label).value
    assert by_label(again.radio, "Which gradient").value == "false"
    assert figures(again)[0]["data"][0]["z"] == figures(app)[0]["data"][0]["z"]


def test_a_lesson_sets_the_page_up_and_says_what_to_look_at():
    app = open_with(CURVES, {})
    next(b for b in app.button if b.label == "Dice: confident mistakes").click().run()
    assert by_label(app.multiselect, "Losses").value == ["ce", "dice"]
    assert by_label(app.toggle, "log y axis").value is False
    assert any("Soft Dice is bounded by 1" in i.value for i in app.info)
    assert [t["name"] for t in figures(app)[0]["data"]] == ["Cross-entropy", "Soft Dice loss"]


def test_gradient_lessons_and_links_switch_loss_and_swept_parameter_together():
    app = open_with(GRADIENTS, {"loss": "dual_focal", "sweep": "rho", "component": "true"})
    assert not app.exception and not [c for c in app.caption if "Ignored" in c.value]
    assert by_label(app.selectbox, "Parameter on the y axis").value == "rho"
    next(b for b in app.button if b.label == "Dice: confident mistakes").click().run()
    assert not app.exception
    assert by_label(app.selectbox, "Loss").value == "dice"
    assert by_label(app.selectbox, "Parameter on the y axis").value == "smooth"
    assert not [c for c in app.caption if "Ignored" in c.value]
    assert any("soft Dice's gradient" in i.value for i in app.info)
    by_label(app.selectbox, "Loss").set_value("focal").run()  # smooth is not focal's: its first parameter
    assert by_label(app.selectbox, "Parameter on the y axis").value == "gamma"
    assert not app.info  # the lesson's settings are gone, and so is its text


def test_a_lesson_stays_while_unrelated_widgets_change():
    app = open_with(CURVES, {})
    next(b for b in app.button if b.label == "Dice: confident mistakes").click().run()
    by_label(app.slider, "Number of classes C").set_value(7).run()
    assert any("Soft Dice is bounded by 1" in i.value for i in app.info)
    by_label(app.toggle, "log y axis").set_value(True).run()  # a setting the lesson chose
    assert not any("Soft Dice is bounded by 1" in i.value for i in app.info)


def test_links_set_up_the_live_training_conventions_and_compare_pages():
    live = open_with("pages/3_Live_training.py", {"loss": "dual_focal", "dual_focal.gamma": "2", "batch": "4",
                                                   "steps": "120", "lr": "0.01"})
    assert not live.exception and "live_trainer" not in live.session_state  # set up, not started
    assert by_label(live.selectbox, "Loss").value == "dual_focal"
    assert by_label(live.select_slider, "Batch size").value == 4
    assert by_label(live.number_input, "Steps to train").value == 120
    assert by_label(live.slider, "gamma").value == 2.0
    conventions = open_with("pages/6_Conventions.py", {"input": "random", "C": "7", "gamma": "1", "input2": "x"})
    assert not conventions.exception
    assert by_label(conventions.slider, "Classes C").value == 7 and by_label(conventions.slider, "gamma (γ)").value == 1.0
    assert "C = 7" in next(c.value for c in conventions.caption if c.value.startswith("Input:"))
    upload_only = open_with("pages/6_Conventions.py", {"input": "upload"})  # nothing uploaded in this session
    assert not upload_only.exception and by_label(upload_only.radio, "Input").value == "sample"
    comparison = open_with("pages/5_Compare.py", {"metric": "recall"})
    assert not comparison.exception and by_label(comparison.radio, "Per-class metric").value == "recall"


def test_a_link_to_an_upload_view_opens_on_the_sample_with_its_knobs():
    app = open_with("pages/4_Upload.py", {"sample": "1", "classes": "lesion", "confidence": "0.5",
                                          "losses": "ce,dice", "kind": "gradient", "missed": "77"})
    assert not app.exception and not app.error
    assert app.session_state["upload_mode"] == "sample" and app.session_state["sample_index"] == 1
    assert any(c.value.startswith("Sample **lesion_") and "Ultrasound lesion" in c.value for c in app.caption)
    assert by_label(app.slider, "Confidence (true-class p away from edges)").value == 0.5
    assert by_label(app.selectbox, "The model misses this class").value == -1  # 77: not a class of this scene
    assert any("missed class 77 is not one of this scene's 3 classes" in c.value for c in app.caption)  # said
    assert by_label(app.multiselect, "Losses").value == ["ce", "dice"]
    assert any("who gets the push" in h.value for h in app.subheader)  # gradient maps
    link = plain(app.query_params)
    assert link["sample"] == "1" and link["kind"] == "gradient" and "missed" not in link


def test_a_conventions_lesson_sets_its_input():
    app = open_with("pages/6_Conventions.py", {})
    next(b for b in app.button if b.label == "Ignored pixels and 'mean'").click().run()
    assert not app.exception
    assert by_label(app.radio, "Input").value == "random"
    assert by_label(app.slider, "Share of pixels labelled ignore (255)").value == 0.5
    assert any("Half the pixels are labelled ignore" in i.value for i in app.info)


def test_every_lesson_shows_its_text_and_keeps_it_over_reruns():
    """A lesson's text stays while its settings do: a page that adjusted one of them after the click
    (e.g. a parameter the loss lacks) would hide the text at once."""
    for page in (CURVES, GRADIENTS, "pages/6_Conventions.py"):
        app = open_with(page, {})
        titles = [b.label for b in app.button if b.proto.icon == ":material/school:"]
        assert len(titles) == 3, (page, titles)
        for title in titles:
            next(b for b in app.button if b.label == title).click().run()
            app.run()
            assert not app.exception and any(title in i.value for i in app.info), (page, title)


def test_the_gradient_slices_chosen_are_in_the_link():
    """Every widget that shapes the view is in the link: the slices were not."""
    app = open_with(GRADIENTS, {})
    by_label(app.multiselect, "Slices at gamma =").set_value([0.5, 2.0]).run()
    assert plain(app.query_params)["slices"] == "0.5,2"
    again = open_with(GRADIENTS, plain(app.query_params))
    assert by_label(again.multiselect, "Slices at gamma =").value == [0.5, 2.0]
    assert [t["name"] for t in figures(again)[1]["data"]] == ["gamma = 0.5", "gamma = 2", "cross-entropy"]


def test_the_link_is_read_once_so_one_losss_slices_never_reach_another():
    """The page writes its own view into the link; a field bound later under a new key (slices, one
    key per loss and parameter) read that value as if it were a link: a notice nobody asked for, or
    gamma's slices offered for alpha."""
    app = open_with(GRADIENTS, {})
    by_label(app.multiselect, "Slices at gamma =").set_value([5.0]).run()
    by_label(app.selectbox, "Parameter on the y axis").set_value("alpha").run()
    alpha = by_label(app.multiselect, "Slices at alpha =")
    assert len(alpha.value) == len(alpha.options) > 1  # this parameter's own defaults
    by_label(app.selectbox, "Loss").set_value("dice").run()
    assert not app.exception and not [c for c in app.caption if "Ignored in the link" in c.value]


def test_a_value_repeated_in_a_link_counts_once():
    app = open_with(CURVES, {"losses": "focal,focal,ce", "gammas": "2,2"})
    assert not app.exception  # two widgets with one key crashed the page
    assert by_label(app.multiselect, "Losses").value == ["focal", "ce"]
    assert by_label(app.multiselect, "Overlay gamma values").value == [2.0]


def test_the_gamma_caption_names_only_the_losses_drawn_once_per_gamma():
    """No "Colour: gamma" legend for losses without a gamma (it showed for boundary + CE)."""
    def caption(query):
        app = open_with(CURVES, query)
        assert not app.exception
        return [c.value for c in app.caption if c.value.startswith("Colour: gamma")]

    assert caption({"losses": "boundary,ce"}) == []
    (both,) = caption({"losses": "focal,dual_focal,ce"})
    assert "solid Focal loss, dotted Dual Focal loss" in both and "lies exactly on CE" in both
    (alone,) = caption({"losses": "dual_focal"})
    assert "Focal loss," not in alone and "lies exactly on CE" not in alone
    for scaled in ({"focal.alpha": "0.25"}, {"focal.label_smoothing": "0.1"}):  # then γ = 0 is not CE's curve
        (changed,) = caption({"losses": "focal,ce", **scaled})
        assert "lies exactly on CE" not in changed


def test_the_boundary_caption_says_when_its_loss_turns_negative():
    """Not "negative where the pixel is mostly right": at C = 19 with the even spread it is negative from
    p_t = 0.08 (depth 2); at C = 2 the confusing class is the unscored background: negative everywhere."""
    def text(query):
        app = open_with(CURVES, {"losses": "boundary", **query})
        (caption,) = [c.value for c in app.caption if c.value.startswith("Boundary loss:")]
        return caption

    assert "exceeds (d + 1)/d times the confusing class's probability" in text({})
    # where, read off the curve drawn: early with the even spread, past the middle with one confusing class
    def crossing(query):
        return float(re.search(r"here \(C = \d+, d = \d+, this spread\) from p_t = ([0-9.]+)", text(query)).group(1))

    assert 0.07 < crossing({}) < 0.09 and 0.5 < crossing({"spread": "confusing"}) < 0.65
    assert "negative at every p_t" in text({"C": "2"})
    curve = trace_values(figures(open_with(CURVES, {"losses": "boundary", "C": "2", "logy": "0"}))[0]["data"][0])
    assert (curve < 0).all()  # what the caption says, on the chart
    # scoring every class, C = 2 scores the background too: positive below p_t = 0.6 at depth 2
    assert "exceeds (d + 1)/d times" in text({"C": "2", "boundary.classes": "all"})
    curve = trace_values(figures(open_with(CURVES, {"losses": "boundary", "C": "2", "logy": "0",
                                                    "boundary.classes": "all"}))[0]["data"][0])
    assert curve[0] > 0 > curve[-1]


def test_the_upload_page_asks_for_a_loss_once_and_its_link_says_files_stay_behind():
    """No loss chosen: one note asking for one (it said "with a per-pixel loss, or switch to the gradient
    map", which shows nothing either); region losses alone on the loss map: their own note, not twice.
    The link's caption says an uploaded image and mask are not in it (it promised the charts)."""
    app = open_with("pages/4_Upload.py", {"sample": "0", "losses": ""})
    notes = [i.value for i in app.info]
    assert sum("Choose at least one loss" in n for n in notes) == 1 and not any("switch to" in n for n in notes)
    assert not app.exception and not app.get("plotly_chart")
    app = open_with("pages/4_Upload.py", {"sample": "0", "losses": "dice,lovasz", "kind": "loss"})
    notes = [i.value for i in app.info]
    assert sum("no loss per pixel" in n for n in notes) == 1 and not any("Choose at least" in n for n in notes)
    assert any("not in a link: upload them again" in c.value for c in app.caption)
    live = open_with("pages/3_Live_training.py", {})
    assert any("a run is not in a link: press Start there" in c.value for c in live.caption)


def test_settings_survive_a_visit_to_another_page():
    """Streamlit forgets a widget's value once a run does not draw it: the Gradients page came back at
    its defaults, and the Live training page's unsaved loss choice silently became the running one's."""
    app = open_with(GRADIENTS, {})
    by_label(app.selectbox, "Loss").set_value("dice").run()
    by_label(app.slider, "Number of classes C").set_value(7).run()
    live = "pages/3_Live_training.py"
    app.switch_page(live).run()
    by_label(app.selectbox, "Loss").set_value("dual_focal").run()
    for page in (CURVES, GRADIENTS):
        app.switch_page(page).run()
    assert by_label(app.selectbox, "Loss").value == "dice" and by_label(app.slider, "Number of classes C").value == 7
    assert plain(app.query_params) == {"loss": "dice", "C": "7"}  # the link says so too
    app.switch_page(live).run()
    assert not app.exception
    assert by_label(app.selectbox, "Loss").value == "dual_focal"


def test_the_gradients_caption_says_when_an_easy_pixel_gets_more_push_than_under_ce():
    """Dual Focal at p_t = 0.9 pushes 2.8x CE's at beta = 0: the caption said it "keeps 279.94%" of it."""
    def caption(query):
        app = open_with(GRADIENTS, query)
        (text,) = [c.value for c in app.caption if "An easy pixel (p_t = 0.9)" in c.value]
        return text

    dual = caption({"loss": "dual_focal", "sweep": "beta"})
    assert "gets this share of CE's push" in dual and "(more than CE)" in dual
    assert "(more than CE)" not in caption({"loss": "focal", "sweep": "gamma"})


def test_the_region_caption_gives_generalized_dices_curve_as_drawn():
    """Generalized Dice's one-class-image curve is 1 - p_t (not Dice's (1 - p_t)/(1 + p_t)): the caption
    listed every region loss's curve but this one."""
    app = open_with(CURVES, {"losses": "generalized_dice", "logy": "0"})
    (caption,) = [c.value for c in app.caption if "region losses have no loss per pixel" in c.value]
    assert "Generalized Dice: 1 - p_t" in caption
    trace = figures(app)[0]["data"][0]
    np.testing.assert_allclose(trace_values(trace), 1 - trace_values(trace, "x"), atol=1e-3)


def test_ohem_pages_say_that_min_kept_counts_the_charts_grid():
    """OHEM's curve stops on a log axis (exactly 0 from its threshold on) and its min_kept acts on the
    chart's p_t values as a batch: the Loss curves page said neither."""
    app = open_with(CURVES, {"losses": "ohem", "ohem.threshold": "0.05", "ohem.min_kept": "0.5"})
    (note,) = [c.value for c in app.caption if c.value.startswith("OHEM's min_kept")]
    assert "Zero, so not drawn on the log axis" in note and "from p_t = 0.5" in note
    app = open_with(GRADIENTS, {"loss": "ohem"})
    assert any(c.value.startswith("OHEM's min_kept") for c in app.caption)
