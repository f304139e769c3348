"""AppTest for the comparison page: the committed results render at once; a live run works."""

import json

from app_support import by_label, figures, open_page, trace_values

from segloss.figures import compare as compare_figures
from segloss.train import compare
from ui.layout import ROOT

COMMITTED = ROOT / "sample_data" / "compare_street" / "summary.json"


def test_committed_results_render_with_rare_classes_first():
    summary = compare.load_summary(COMMITTED)
    app = open_page("pages/5_Compare.py")
    assert not app.exception
    bars, tradeoff = figures(app)[:2]
    titles = {compare_figures.loss_title(label, e) for label, e in summary["losses"].items()}
    shown = {t["name"].replace("<br>", " ") for t in bars["data"]}  # long ones over two lines in the legend
    assert shown == titles and "Cross-entropy" in titles  # titles, not registry keys
    first_class = bars["data"][0]["x"][0]
    rarest = summary["class_names"][min(range(len(summary["pixel_share"])), key=summary["pixel_share"].__getitem__)]
    assert first_class.startswith(rarest)
    points = {t["name"].replace("<br>", " "): (trace_values(t, "x")[0], trace_values(t, "y")[0]) for t in tradeoff["data"]}
    for label, entry in summary["losses"].items():
        label = compare_figures.loss_title(label, entry)
        assert abs(points[label][0] - entry["miou"]) < 1e-6 and abs(points[label][1] - entry["mean_accuracy"]) < 1e-6


def test_switching_the_metric_changes_the_bars():
    app = open_page("pages/5_Compare.py")
    before = json.dumps(figures(app)[0]["data"][0]["y"])
    by_label(app.radio, "Per-class metric").set_value("recall").run()
    assert not app.exception and json.dumps(figures(app)[0]["data"][0]["y"]) != before


def test_a_small_live_comparison_runs_and_shows_its_results():
    app = open_page("pages/5_Compare.py")
    waiting = "No comparison run in this session yet"
    assert any(waiting in c.value for c in app.caption)  # the tab says why it has no results (a link opened it)
    by_label(app.multiselect, "Losses (registry defaults)").set_value(["ce", "focal"])
    by_label(app.slider, "Steps per run").set_value(10)
    by_label(app.selectbox, "Dataset").set_value("lesion")
    app.button[0].click().run(timeout=180)
    assert not app.exception
    live = app.session_state["live_comparison"]
    assert set(live["losses"]) == {"ce", "focal"} and live["dataset"] == "lesion"
    assert len(figures(app)) == 4  # committed (2) + live (2)
    assert not any(waiting in c.value for c in app.caption)
    metric = lambda: [r for r in app.radio if r.label == "Per-class metric"][1]  # noqa: E731 (the live results')
    metric().set_value("recall").run()
    app.switch_page("pages/1_Loss_curves.py").run()
    app.switch_page("pages/5_Compare.py").run()  # the form and the live results' choices are kept
    assert not app.exception and len(figures(app)) == 4
    assert by_label(app.multiselect, "Losses (registry defaults)").value == ["ce", "focal"]
    assert by_label(app.slider, "Steps per run").value == 10 and by_label(app.selectbox, "Dataset").value == "lesion"
    assert metric().value == "recall"


def test_an_empty_live_selection_is_an_error_not_a_traceback():
    app = open_page("pages/5_Compare.py")
    by_label(app.multiselect, "Losses (registry defaults)").set_value([])
    app.button[0].click().run()
    assert not app.exception and any("Pick at least one loss" in e.value for e in app.error)


def test_a_corrupt_committed_summary_gives_an_error_not_a_traceback(monkeypatch):
    import streamlit as st

    from segloss.train import run_files

    def corrupt(path):
        raise run_files.RunFileError(f"{path} is not a readable comparison summary (JSONDecodeError); run it again")

    monkeypatch.setattr(compare, "read_summary", corrupt)
    st.cache_data.clear()  # the page caches the summary by path and mtime
    try:
        app = open_page("pages/5_Compare.py")
        assert not app.exception
        assert any("cannot be shown" in e.value and "summary.json" in e.value for e in app.error)
    finally:
        st.cache_data.clear()


def test_a_one_seed_run_shows_no_spread_and_tables_use_titles():
    app = open_page("pages/5_Compare.py")
    by_label(app.multiselect, "Losses (registry defaults)").set_value(["ce", "dual_focal"])
    by_label(app.slider, "Steps per run").set_value(10)
    app.button[0].click().run(timeout=180)
    assert not app.exception
    live_table = app.dataframe[-1].value
    assert list(live_table["loss"]) == ["Cross-entropy", "Dual Focal loss"]
    assert "mIoU" in live_table.columns and not any("±" in str(v) for v in live_table["mIoU"])
    assert any("One seed: no spread" in c.value for c in app.caption)
    bars = figures(app)[2]
    assert not any(t["error_y"]["visible"] for t in bars["data"])
    committed = app.dataframe[0].value
    assert "mIoU (mean ± std)" in committed.columns and "miou (mean ± std)" not in committed.columns


def test_loss_titles_name_the_parameters_that_were_set():
    assert compare_figures.loss_title("focal:gamma=3", {"name": "focal", "params": {"gamma": 3.0}}) == "Focal loss (γ = 3)"
    assert compare_figures.loss_title("ce", {"name": "ce", "params": {}}) == "Cross-entropy"


def test_losses_shown_can_be_narrowed_and_keep_their_colours():
    app = open_page("pages/5_Compare.py")
    assert not app.exception
    bars, tradeoff = figures(app)[:2]
    everything = {t["name"]: t["marker"]["color"] for t in bars["data"]}
    markers = {t["name"]: t["marker"]["symbol"] for t in tradeoff["data"]}
    colour_names = {colour: name for name, colour in everything.items()}
    for k in range(10, min(15, len(everything))):  # the darker shades of the first five colours: another shape
        dark, light = tradeoff["data"][k]["name"], tradeoff["data"][k - 10]["name"]
        assert markers[dark] != markers[light], (dark, light, colour_names)
    assert len(everything) >= 14 and len(set(everything.values())) == len(everything)  # a colour per loss
    legend, layout = bars["layout"]["legend"], bars["layout"]  # under the plot, below its x axis' title
    assert (legend["yref"], legend["yanchor"]) == ("container", "top")
    assert 0 < legend["y"] * layout["height"] <= layout["margin"]["b"] - 40
    shown = next(m for m in app.multiselect if m.label == "Losses shown")
    shown.set_value(["ce", "boundary"]).run()
    assert not app.exception
    bars, tradeoff = figures(app)[:2]
    assert {t["name"]: t["marker"]["color"] for t in bars["data"]} == {
        name: everything[name] for name in ("Cross-entropy", "Boundary loss")}
    assert [t["marker"]["color"] for t in tradeoff["data"]] == [everything["Cross-entropy"], everything["Boundary loss"]]
    assert [t["marker"]["symbol"] for t in tradeoff["data"]] == [markers["Cross-entropy"], markers["Boundary loss"]]
    link = {k: (v[-1] if isinstance(v, list) else v) for k, v in dict(app.query_params).items()}
    assert link.get("shown") == "ce,boundary"  # the choice lives in the page's link
    assert compare_figures.only({"losses": {"a": 1, "b": 2}}, ["b"]) == {"losses": {"b": 2}}
