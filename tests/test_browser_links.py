"""A link to a view, opened in a fresh browser, shows that view; changing a widget changes the address."""

import re

import pytest
from playwright.sync_api import expect

from browser_support import ARTIFACTS

pytestmark = pytest.mark.browser


def chart_traces(page) -> list[dict]:
    """Names and first values of the first plotly chart's traces, read from the drawn chart itself."""
    return page.evaluate("() => document.querySelector('.js-plotly-plot').data"
                         ".map(t => ({name: t.name, first: Array.from(t.y).slice(0, 3)}))")


def test_a_crafted_link_opens_the_same_view_in_a_fresh_browser(app_url, page):
    page.goto(f"{app_url}/Loss_curves?losses=ce,dice&gammas=&C=5&logy=0")
    expect(page.get_by_test_id("stPlotlyChart").locator("svg.main-svg").first).to_be_visible(timeout=60_000)
    page.wait_for_function("() => { const d = document.querySelector('.js-plotly-plot');"
                           " return d && d.data && d.data.length === 2; }", timeout=60_000)
    traces = chart_traces(page)
    assert [t["name"] for t in traces] == ["Cross-entropy", "Soft Dice loss"]
    expect(page.get_by_test_id("stMultiSelect").first.get_by_text("Soft Dice loss")).to_be_visible()
    expect(page.get_by_test_id("stSlider").first.get_by_text("5", exact=True)).to_be_visible()
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "link-loss-curves.png"), full_page=True)


def test_changing_a_widget_updates_the_address_and_a_bad_value_gets_a_notice(app_url, page):
    page.goto(f"{app_url}/Gradients?C=banana")
    notice = page.get_by_text(re.compile("Ignored in the link: C='banana'"))
    expect(notice).to_be_visible(timeout=60_000)
    chart = page.get_by_test_id("stPlotlyChart").first
    expect(chart).to_be_visible(timeout=60_000)
    assert notice.bounding_box()["y"] < chart.bounding_box()["y"]  # seen where the page starts, not at its foot
    page.get_by_text("|dL/dz_t| (true class)").click()
    page.wait_for_url(re.compile(r"component=true"), timeout=30_000)
    assert "C=" not in page.url  # the ignored value is gone, defaults are not written
    expect(page.get_by_test_id("stException")).to_have_count(0)


def test_the_compare_pages_tab_is_in_the_link(app_url, page):
    page.goto(f"{app_url}/Compare")
    tabs = page.get_by_role("tab")
    expect(tabs).to_have_count(2, timeout=60_000)
    expect(tabs.nth(0)).to_have_attribute("aria-selected", "true")
    tabs.nth(1).click()
    page.wait_for_url(re.compile(r"tab=Run"), timeout=30_000)
    link = page.url
    expect(page.get_by_text("Steps per run")).to_be_visible(timeout=30_000)

    fresh = page.context.new_page()
    fresh.goto(link)
    tabs = fresh.get_by_role("tab")
    expect(tabs).to_have_count(2, timeout=60_000)
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true", timeout=30_000)
    expect(fresh.get_by_text("Steps per run")).to_be_visible(timeout=30_000)
    expect(fresh.get_by_test_id("stException")).to_have_count(0)
    fresh.get_by_role("tab").nth(0).click()  # back to the default: the tab leaves the link
    fresh.wait_for_url(lambda url: "tab=" not in url, timeout=30_000)
    expect(fresh.get_by_test_id("stPlotlyChart").first).to_be_visible(timeout=60_000)
