"""AppTest for the loss-curve and gradient pages: charts, widget effects, every loss at its bounds."""

import numpy as np
import pytest

import segloss
from segloss.figures import colors, plots
from app_support import by_label, figures, open_page, trace_values

CURVES = "pages/1_Loss_curves.py"
GRADIENTS = "pages/2_Gradients.py"


def test_loss_curves_default_render_shows_ce_and_five_gammas_in_float32():
    app = open_page(CURVES)
    assert not app.exception
    (fig,) = figures(app)
    names = [trace["name"] for trace in fig["data"]]
    assert names[0] == "Cross-entropy" and len(names) == 6
    assert fig["data"][1]["y"]["dtype"] == "f4"
    ce, focal0 = trace_values(fig["data"][0]), trace_values(fig["data"][1])
    np.testing.assert_allclose(focal0, ce)  # gamma = 0 lies on CE
    assert any(shape.get("type") == "rect" for shape in fig["layout"].get("shapes", []))  # well-classified region


def test_changing_classes_and_spread_changes_dual_focal_but_not_focal():
    app = open_page(CURVES)
    by_label(app.multiselect, "Losses").set_value(["focal", "dual_focal"]).run()
    by_label(app.multiselect, "Overlay gamma values").set_value([2.0]).run()
    before = {t["name"]: trace_values(t) for t in figures(app)[0]["data"]}
    by_label(app.radio, "The remaining 1 - p_t goes").set_value("confusing").run()
    after = {t["name"]: trace_values(t) for t in figures(app)[0]["data"]}
    np.testing.assert_array_equal(before["Focal loss, γ = 2"], after["Focal loss, γ = 2"])
    assert not np.allclose(before["Dual Focal loss, γ = 2"], after["Dual Focal loss, γ = 2"])
    by_label(app.slider, "Number of classes C").set_value(3).run()
    fewer = {t["name"]: trace_values(t) for t in figures(app)[0]["data"]}
    assert not np.allclose(after["Dual Focal loss, γ = 2"], fewer["Dual Focal loss, γ = 2"])


def test_dual_focal_terms_and_recall_family_render():
    app = open_page(CURVES)
    by_label(app.multiselect, "Losses").set_value(["dual_focal", "recall"]).run()
    by_label(app.toggle, "Show Dual Focal's three terms separately").set_value(True).run()
    assert not app.exception
    main, terms = figures(app)
    assert [t["name"] for t in terms["data"]] == ["true-class CE", "false-class term", "focal-style term"]
    assert sum(t["name"].startswith("Recall loss, R =") for t in main["data"]) == 5
    assert any("does not depend on this pixel's p_t" in c.value for c in app.caption)


@pytest.mark.parametrize("name", sorted(segloss.LOSSES))
def test_every_loss_renders_at_its_parameter_bounds_on_the_curve_page(name):
    app = open_page(CURVES)
    by_label(app.multiselect, "Overlay gamma values").set_value([]).run()
    by_label(app.multiselect, "Losses").set_value([name]).run()
    spec = segloss.LOSSES[name]
    for bound in ("low", "high"):
        for param in spec.params:
            if param.kind == "float" and not param.schedule_only:  # a schedule has no curve
                by_label(app.slider, param.label).set_value(getattr(param, bound))
        app.run()
        assert not app.exception, (name, bound)
        for trace in figures(app)[0]["data"]:
            values = trace_values(trace)
            assert np.isfinite(values[~np.isnan(values)]).all()


def test_gradient_page_default_has_surface_slices_and_ratios():
    app = open_page(GRADIENTS)
    assert not app.exception
    surface, slices, ratios = figures(app)
    z = surface["data"][0]["z"]
    assert z["dtype"] == "f4" and surface["data"][0]["type"] == "heatmap"
    assert len(slices["data"]) == 6 and slices["data"][-1]["name"] == "cross-entropy"
    assert "entrywidth" not in slices["layout"]["legend"]  # names flow at their own width: none cut at 1024 px
    assert slices["layout"]["margin"]["b"] == 50 + 22 * 6  # half the page wide: one name a row, under the axis title
    by_name = {t["name"]: t["line"].get("color") for t in slices["data"]}
    assert by_name["gamma = 2"] == plots.GAMMA_COLORS[2.0]  # the colour gamma = 2 has on Loss curves too
    assert [t["line"].get("color") for t in ratios["data"]] == [by_name[t["name"]] for t in ratios["data"]]
    gamma0 = trace_values(ratios["data"][0])
    np.testing.assert_allclose(gamma0, 1.0, rtol=1e-5)  # gamma = 0: focal's gradient is CE's


def test_gradient_page_component_switch_changes_the_surface():
    app = open_page(GRADIENTS)
    by_label(app.selectbox, "Loss").set_value("dual_focal").run()
    norm = figures(app)[0]["data"][0]["z"]["bdata"]
    by_label(app.radio, "Which gradient").set_value("false").run()
    assert not app.exception
    assert figures(app)[0]["data"][0]["z"]["bdata"] != norm


@pytest.mark.parametrize("name", [n for n in segloss.LOSSES if n not in ("ce", "weighted_ce")])
def test_gradient_page_every_loss_and_sweep_renders(name):
    app = open_page(GRADIENTS)
    by_label(app.selectbox, "Loss").set_value(name).run()
    assert not app.exception, name
    sweeps = [s for s in app.selectbox if s.label == "Parameter on the y axis"]
    if not sweeps:  # nothing to sweep (Lovász): gradient and ratio curves against p_t
        curves, ratios = figures(app)
        assert [t["name"] for t in curves["data"]] == [segloss.LOSSES[name].title, "cross-entropy"]
        assert np.isfinite(trace_values(ratios["data"][0])).all()
        return
    for sweep in sweeps[0].options:
        by_label(app.selectbox, "Parameter on the y axis").set_value(sweep).run()
        assert not app.exception, (name, sweep)
        assert np.isfinite(trace_values(figures(app)[0]["data"][0], "z")).all()
        if sweep in segloss.LOSSES[name].defaults:  # swept within the parameter's range in the app
            low, high = segloss.LOSSES[name].param(sweep).slider_range
            y = trace_values(figures(app)[0]["data"][0], "y")
            assert low <= y.min() and y.max() <= high


def test_region_losses_explain_their_curves_and_vanishing_gradients():
    app = open_page(CURVES)
    by_label(app.multiselect, "Losses").set_value(["ce", "dice", "jaccard"]).run()
    assert not app.exception
    curves = {t["name"]: trace_values(t) for t in figures(app)[0]["data"]}
    p_t = trace_values(figures(app)[0]["data"][0], "x")
    np.testing.assert_allclose(curves["Soft Jaccard (IoU) loss"], 1 - p_t, rtol=0.02, atol=0.01)  # smoothing 1
    assert any("no loss per pixel" in c.value for c in app.caption)
    app = open_page(GRADIENTS)
    by_label(app.selectbox, "Loss").set_value("dice").run()
    assert any("scores regions, not pixels" in c.value for c in app.caption)
    ratio = trace_values(figures(app)[2]["data"][0])  # first slice / CE gradient
    assert ratio[0] < 0.01 and ratio[-1] < 1  # a confident mistake barely moves soft Dice


def test_log_x_axis_ends_at_p_t_one_and_shades_from_one_half():
    for log in (False, True):
        app = open_page(CURVES)
        by_label(app.toggle, "log x axis").set_value(log).run()
        layout = figures(app)[0]["layout"]
        rect = next(s for s in layout["shapes"] if s.get("type") == "rect")
        if log:  # plotly places shapes on a log axis in log10 units
            assert layout["xaxis"]["type"] == "log"
            low, high = layout["xaxis"]["range"]
            assert high <= 0.0 and low >= -3.01  # p_t in [1e-3, 1), not up to 10
            assert rect["x0"] == pytest.approx(np.log10(0.5)) and rect["x1"] <= 0.0
        else:
            assert rect["x0"] == pytest.approx(0.5)


def test_axes_print_plain_numbers_or_powers_never_si_prefixes():
    app = open_page(CURVES)
    for fig in figures(app):
        for axis in ("xaxis", "yaxis"):
            assert fig["layout"][axis]["exponentformat"] == "power"


def test_recall_curves_take_their_own_colours_and_the_legend_goes_under_the_chart():
    app = open_page(CURVES)
    by_label(app.multiselect, "Losses").set_value(["ce", "focal", "dual_focal", "recall"]).run()
    fig = figures(app)[0]
    colours = {t["name"]: t["line"].get("color") for t in fig["data"]}
    recall = [c for n, c in colours.items() if n.startswith("Recall loss")]
    gamma = {c for n, c in colours.items() if "γ =" in n}
    assert len(recall) == 5 and len(set(recall)) == 5 and not set(recall) & gamma
    assert len(fig["data"]) == 16
    legend, layout = fig["layout"]["legend"], fig["layout"]  # under the plot, below its x axis' title
    assert (legend["yref"], legend["yanchor"]) == ("container", "top")
    assert 0 < legend["y"] * layout["height"] <= layout["margin"]["b"] - 40
    assert fig["layout"]["height"] > 460  # grown by the legend's rows, not squeezed


def test_every_curve_has_its_own_style_and_is_legible_on_both_themes_with_every_loss_chosen():
    """All 18 losses (recall's five R, the focal family's gammas): no two traces share a colour and a
    dash, and every line colour reaches 3:1 contrast on the dark theme's background (CE was drawn in
    the light theme's text grey, recall's darkest browns vanished there; colours repeated past seven
    losses)."""
    app = open_page(CURVES)
    by_label(app.multiselect, "Losses").set_value(list(segloss.LOSSES)).run()
    fig = figures(app)[0]
    styles = [(t["line"]["color"].lower(), t["line"].get("dash", "solid")) for t in fig["data"]]
    assert len(styles) > 25 and len(set(styles)) == len(styles)
    for trace in fig["data"]:
        assert colors.contrast(trace["line"]["color"], colors.DARK_BACKGROUND) >= 3.0, trace["name"]
        assert colors.contrast(trace["line"]["color"], colors.LIGHT_BACKGROUND) >= 1.9, trace["name"]


def test_gradient_slices_sit_at_round_values_and_the_caption_names_the_loss():
    app = open_page(GRADIENTS)
    slices = figures(app)[1]
    names = [t["name"] for t in slices["data"]]
    assert names == ["gamma = 0", "gamma = 0.5", "gamma = 1", "gamma = 2", "gamma = 5", "cross-entropy"]
    by_label(app.selectbox, "Loss").set_value("dual_focal").run()
    caption = next(c.value for c in app.caption if c.value.startswith("Left:"))
    assert "Dual Focal" in caption and "focal loss at gamma" not in caption
    assert "at each chosen gamma" in caption and "Right: how strongly" in caption  # both charts explained
    left, right = figures(app)[1:3]  # the ratios beside the slices: the same legend, so level plot areas
    assert [t["name"] for t in left["data"]] == [t["name"] for t in right["data"]]
    assert (left["layout"]["height"], left["layout"]["margin"]) == (right["layout"]["height"], right["layout"]["margin"])
    np.testing.assert_allclose(trace_values(right["data"][-1]), 1.0)  # CE's own ratio: the reference line at 1
    assert right["layout"]["yaxis"].get("dtick") == "D2"  # 1, 2, 5 per decade: not every digit stacked below 1


def test_gradient_ratio_axis_follows_the_data_and_dice_has_no_empty_expander():
    app = open_page(GRADIENTS)
    by_label(app.selectbox, "Loss").set_value("recall").run()
    ratios = figures(app)[2]
    low, _ = ratios["layout"]["yaxis"]["range"]
    assert low > -3  # recall's ratios are 1 - R >= 0.01: no axis down to 1e-7
    by_label(app.selectbox, "Loss").set_value("dice").run()
    assert not app.exception and not [e for e in app.expander if e.label == "Other parameters"]


def test_boundary_loss_on_the_curve_page_has_a_depth_and_a_shifted_boundary_chart():
    app = open_page(CURVES)
    by_label(app.multiselect, "Overlay gamma values").set_value([]).run()
    by_label(app.multiselect, "Losses").set_value(["ce", "boundary"]).run()
    by_label(app.toggle, "log y axis").set_value(False).run()
    main, others, boundary = figures(app)
    title = segloss.LOSSES["boundary"].title
    shallow = trace_values(next(t for t in main["data"] if t["name"] == title))
    by_label(app.slider, "Boundary loss: pixels between the pixel and its region's edge").set_value(8).run()
    assert not app.exception
    main, others, boundary = figures(app)  # the shifted boundary: a panel each, its own scale
    assert [t["name"] for t in others["data"]] == ["Cross-entropy"] and [t["name"] for t in boundary["data"]] == [title]
    deep = trace_values(next(t for t in main["data"] if t["name"] == title))
    assert deep[-1] < shallow[-1] < 0  # a right pixel deeper inside its region earns more (more negative)
    assert deep[0] > shallow[0] > 0  # a wrong one costs more
    shifts = trace_values(others["data"][0], "x")
    for trace in others["data"] + boundary["data"]:
        values = trace_values(trace)
        # every loss is lowest at the true boundary (the boundary loss ties with a one-pixel shrink: in the
        # authors' convention a region's edge pixels have distance 0)
        assert values[shifts == 0][0] <= values.min() + 1e-6, trace["name"]
    (shift_caption,) = [c.value for c in app.caption if "too big or too small" in c.value]
    assert "about as k squared" in shift_caption and "pixel-wise losses grow" in shift_caption
    # the caption speaks of the losses drawn only (it named Dice and GDL + boundary whatever was chosen)
    assert "Generalized Dice" not in shift_caption and "region losses" not in shift_caption
    by_label(app.multiselect, "Losses").set_value(["ohem", "dice", "boundary"]).run()
    (shift_caption,) = [c.value for c in app.caption if "too big or too small" in c.value]
    assert "pixel-wise losses and region losses grow" in shift_caption and "OHEM averages over" in shift_caption


def test_ohem_slices_say_where_the_gradient_is_exactly_zero():
    """A log axis cannot draw OHEM's dropped pixels (gradient 0): the caption names where each slice stops."""
    app = open_page(GRADIENTS)
    by_label(app.selectbox, "Loss").set_value("ohem").run()
    assert not app.exception and by_label(app.selectbox, "Parameter on the y axis").value == "threshold"
    note = next(c.value for c in app.caption if c.value.startswith("Zero, so not drawn"))
    assert "threshold = 0.5 (from p_t = 0.507 on)" in note  # the first grid point above it
    by_label(app.selectbox, "Loss").set_value("focal").run()
    assert not any(c.value.startswith("Zero, so not drawn") for c in app.caption)


def test_weighted_ce_names_the_weight_its_pixel_curve_carries():
    from segloss.explain import analysis
    from segloss.losses.weights import class_weights
    from segloss.train import data

    app = open_page(CURVES)
    by_label(app.multiselect, "Losses").set_value(["weighted_ce"]).run()
    assert not app.exception
    w = float(class_weights("median", data.class_pixel_counts("street"))[6])  # the default pixel: a pedestrian
    assert any(f"w = {w:.3g}" in c.value and "pedestrian" in c.value for c in app.caption)
    curve = trace_values(figures(app)[0]["data"][0])
    ce = analysis.loss_curve(analysis.pixel_loss("ce"), analysis.probability_grid(400), 9, "even", 6)
    np.testing.assert_allclose(curve / ce, w, rtol=1e-4)  # the curve is w times CE's


def test_dual_focals_terms_take_the_one_overlaid_gamma_and_add_up_to_its_curve():
    """With one gamma overlaid the terms chart used a slider starting at 1, so its terms did not add
    up to the curve shown above them."""
    app = open_page(CURVES)
    by_label(app.multiselect, "Losses").set_value(["dual_focal"]).run()
    by_label(app.multiselect, "Overlay gamma values").set_value([2.0]).run()
    by_label(app.toggle, "log y axis").set_value(False).run()
    by_label(app.toggle, "Show Dual Focal's three terms separately").set_value(True).run()
    assert not app.exception and not [s for s in app.select_slider if s.label == "gamma for the terms"]
    main, terms = figures(app)[:2]
    total = sum(trace_values(t) for t in terms["data"])
    np.testing.assert_allclose(total, trace_values(main["data"][0]), rtol=1e-4, atol=1e-5)
    assert any("The three terms at γ = 2 add up" in c.value for c in app.caption)
    by_label(app.multiselect, "Overlay gamma values").set_value([1.0, 2.0]).run()  # two: a slider chooses
    assert [s for s in app.select_slider if s.label == "gamma for the terms"]


def test_the_shifted_boundary_chart_repeats_the_main_charts_curves_gammas_and_colours():
    app = open_page(CURVES)
    by_label(app.multiselect, "Losses").set_value(["ce", "focal", "boundary"]).run()
    by_label(app.multiselect, "Overlay gamma values").set_value([0.5, 2.0]).run()
    main, others, boundary = figures(app)
    colours = {t["name"]: t["line"].get("color") for t in main["data"]}
    shifted = {t["name"]: t["line"].get("color") for t in others["data"] + boundary["data"]}
    assert set(shifted) == set(colours) == {"Cross-entropy", "Focal loss, γ = 0.5", "Focal loss, γ = 2", "Boundary loss"}
    assert shifted == colours and colours["Focal loss, γ = 2"] == plots.GAMMA_COLORS[2.0]
    focal = {t["name"]: trace_values(t) for t in others["data"]}
    assert focal["Focal loss, γ = 2"].max() < focal["Focal loss, γ = 0.5"].max()  # each at its own gamma


def test_cross_entropy_is_the_dashed_reference_drawn_in_front_in_its_own_colour():
    app = open_page(CURVES)
    (fig,) = figures(app)
    ce = fig["data"][0]
    assert ce["name"] == "Cross-entropy" and ce["line"]["dash"] == "dash" and ce.get("zorder") == 1
    assert ce["line"]["color"] == plots.REFERENCE_COLOR not in plots.GAMMA_COLORS.values()
    assert all(t.get("zorder", 0) == 0 for t in fig["data"][1:])  # focal at gamma = 0 lies under it



def test_ohems_slices_that_stop_first_are_drawn_in_front_so_every_stop_shows():
    """OHEM's slices equal CE's gradient up to their cut: drawn in the given order, the last (threshold
    1, never cut) covered the others and no stop could be seen."""
    app = open_page(GRADIENTS)
    by_label(app.selectbox, "Loss").set_value("ohem").run()
    slices, ratios = figures(app)[1:3]
    layers = {t["name"]: t.get("zorder", 0) for t in slices["data"]}
    thresholds = sorted((n for n in layers if n.startswith("threshold = ")), key=lambda n: float(n.split("= ")[1]))
    assert len(thresholds) >= 3
    assert [layers[n] for n in thresholds] == sorted((layers[n] for n in thresholds), reverse=True)  # first cut: front
    assert layers["cross-entropy"] > max(layers[n] for n in thresholds)
    assert [t.get("zorder", 0) for t in ratios["data"]] == [layers[t["name"]] for t in ratios["data"]]
    by_label(app.selectbox, "Loss").set_value("focal").run()  # nothing stops: the given order
    assert {t.get("zorder", 0) for t in figures(app)[1]["data"] if t["name"] != "cross-entropy"} == {0}


def test_tversky_offers_no_sweep_that_changes_nothing_and_a_rounding_zero_is_zero():
    """Tversky's alpha weighs false positives, which the one-class test image has none of: its surface
    had identical rows ("alpha = 0: 96.03%; alpha = 0.5: 96.03%; ..."). And Focal Tversky at beta = 0,
    zero to rounding (1e-12) everywhere, was said to be zero "at 60% of p_t"."""
    app = open_page(GRADIENTS)
    for name in ("tversky", "focal_tversky"):
        by_label(app.selectbox, "Loss").set_value(name).run()
        assert not app.exception
        sweeps = by_label(app.selectbox, "Parameter on the y axis").options
        assert "alpha" not in sweeps and "beta" in sweeps
        assert any("alpha (the weight of false positives) is not offered" in c.value for c in app.caption)
    by_label(app.selectbox, "Parameter on the y axis").set_value("beta").run()
    note = next(c.value for c in app.caption if c.value.startswith("Zero, so not drawn"))
    assert "beta = 0 (at every p_t)" in note
