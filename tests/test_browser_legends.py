"""Legends in headless Chromium: no entry cut off below a chart at a projector's 1024 px or a wide
window (plotly wraps a legend at its plot's width; the room under the chart is made in Python)."""

import pytest
from playwright.sync_api import expect

from browser_support import legend_entries_cut_off

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width, height", [(1024, 1400), (1920, 1200)])
@pytest.mark.parametrize("path", ["Loss_curves", "Gradients"])
def test_no_legend_entry_is_cut_off_below_its_chart(browser, app_url, path, width, height):
    """At 1024 px the Loss curves chart fit one gamma a row where two were made room for: the last
    two of six entries (gamma = 2 and 5, the ones the page is about) were cut off."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        page.goto(f"{app_url}/{path}")
        charts = page.get_by_test_id("stPlotlyChart")
        expect(charts.first.locator("svg.main-svg").first).to_be_visible(timeout=60_000)
        page.wait_for_timeout(1000)  # every chart of the page drawn
        for i in range(charts.count()):
            chart = charts.nth(i)
            chart.scroll_into_view_if_needed()
            expect(chart.locator("svg.main-svg").first).to_be_visible(timeout=60_000)
            assert legend_entries_cut_off(chart) == 0, (path, i, width)
        expect(page.get_by_test_id("stException")).to_have_count(0)
    finally:
        context.close()
