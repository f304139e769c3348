"""The Compare page in headless Chromium: every loss of the shipped comparison is named in both charts'
legends at a laptop's window size (the last ones were cut off below the bar chart)."""

import pytest
from playwright.sync_api import expect

from browser_support import legend_entries_cut_off

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width, height", [(1280, 800), (1024, 768), (800, 900)])
def test_every_loss_is_in_the_legends_of_both_charts(browser, app_url, width, height):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        page.goto(f"{app_url}/Compare")
        charts = page.get_by_test_id("stPlotlyChart")
        expect(charts).to_have_count(2, timeout=60_000)
        for i in range(2):
            chart = charts.nth(i)
            chart.scroll_into_view_if_needed()
            expect(chart.locator("g.legend g.traces")).to_have_count(14, timeout=60_000)  # the shipped 14 losses
            assert legend_entries_cut_off(chart) == 0, (i, width)
        expect(page.get_by_test_id("stException")).to_have_count(0)
    finally:
        context.close()
