"""The conventions page, opened by its own URL on a fresh server, renders in headless Chromium; it and the
Gradients page keep their charts readable at a projector's 1024 px."""

import pytest
from playwright.sync_api import expect

from browser_support import ARTIFACTS

pytestmark = pytest.mark.browser


def test_conventions_page_by_direct_url_shows_table_and_charts(app_url, page):
    page.set_viewport_size({"width": 1400, "height": 4200})  # the whole page in one screenshot
    page.goto(f"{app_url}/Conventions")
    expect(page.get_by_test_id("stSidebar").get_by_text("Compute device")).to_be_visible(timeout=60_000)
    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(2, timeout=60_000)
    for i in range(2):
        expect(charts.nth(i).locator("svg.main-svg").first).to_be_visible(timeout=60_000)
    expect(charts.nth(1).locator("g.trace")).to_have_count(4)  # three "Dual Focal" formulas and CE
    table = page.get_by_test_id("stTable")
    expect(table).to_have_count(1)
    expect(table.locator("tbody tr")).to_have_count(22)  # no pixel ignored: MONAI without ignore_index too
    expect(table.get_by_text("kornia focal_loss, α=None", exact=False)).to_be_visible()
    expect(page.get_by_text("Same input, different “focal loss”")).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "page-conventions.png"), full_page=True)


def _plot_area_width(page, chart) -> tuple[float, float]:
    """``(plot area px, chart px)`` of a plotly chart (its drag rectangle covers the plot area exactly)."""
    expect(chart.locator("svg.main-svg").first).to_be_visible(timeout=60_000)
    plot_area = chart.locator("rect.nsewdrag").first
    expect(plot_area).to_be_attached()
    return float(plot_area.get_attribute("width")), chart.bounding_box()["width"]


def test_the_ratio_bars_keep_room_beside_their_long_labels_on_a_projector(app_url, page):
    """At 1024 x 768 (sidebar open) the bars' plot area takes at least a third of the chart: beside the
    controls it was about 60 px of a 370 px chart, the bars squeezed to slivers."""
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(f"{app_url}/Conventions")
    bars_width, chart_width = _plot_area_width(page, page.get_by_test_id("stPlotlyChart").first)
    assert bars_width >= chart_width / 3 and bars_width >= 180, (bars_width, chart_width)


def test_the_gradient_slices_keep_a_readable_plot_on_a_projector(app_url, page):
    """Gradients at 1024 x 768: the slices and their ratio to CE, side by side under the heatmap, keep
    at least 140 px of plot each (186 here; in half of the chart column they had 87)."""
    page.set_viewport_size({"width": 1024, "height": 768})
    page.goto(f"{app_url}/Gradients")
    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(3, timeout=60_000)  # the heatmap, the slices, their ratios
    for i in (1, 2):
        width, _ = _plot_area_width(page, charts.nth(i))
        assert width >= 140, (i, width)


def test_the_table_fits_the_page_at_a_laptops_width(browser, app_url):
    """Unbroken words (N·C·H·W, module paths) made the table wider than the page at 1280 px, whose edge
    hid the exact conversions."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        page.goto(f"{app_url}/Conventions")
        table = page.get_by_test_id("stTableStyledTable")
        expect(table).to_be_visible(timeout=60_000)
        width, room = table.evaluate("(t) => [t.scrollWidth, t.parentElement.clientWidth]")
        assert width <= room, (width, room)
    finally:
        context.close()
