"""Live training in headless Chromium, opened by its own URL: Start, and the step counter and the
per-pixel loss map move on their own (the fragment refreshes every 2 s, or once per validation when that is slower)."""

import re

import pytest
from playwright.sync_api import expect

from browser_support import ARTIFACTS, legend_entries_cut_off

pytestmark = pytest.mark.browser


def step_counter(page) -> int:
    """The number in the 'Step' metric ("123 / 500" -> 123)."""
    label = page.get_by_test_id("stMetricLabel").get_by_text("Step", exact=True)
    value = page.get_by_test_id("stMetric").filter(has=label).get_by_test_id("stMetricValue")
    return int(value.inner_text().split("/")[0])


def test_start_shows_the_step_counter_and_the_loss_map_changing(app_url, page):
    page.set_viewport_size({"width": 1280, "height": 2000})  # a laptop: each chart a third of the window wide
    page.goto(f"{app_url}/Live_training")
    expect(page.get_by_test_id("stSidebar").get_by_text("Compute device")).to_be_visible(timeout=60_000)
    page.get_by_role("button", name="Start").click()
    images = page.locator(".st-key-live-images").get_by_test_id("stImage")
    expect(images).to_have_count(5, timeout=60_000)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(4, timeout=60_000)
    loss_map = images.nth(3).locator("img")
    expect(loss_map).to_be_visible()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
                           ".some(e => /^[1-9][0-9]* \\//.test(e.innerText))", timeout=60_000)
    first_step, first_src, first_pixels = step_counter(page), loss_map.get_attribute("src"), loss_map.screenshot()
    page.screenshot(path=str(ARTIFACTS / "live-training-1.png"), full_page=True)

    # The validation view is recomputed every 10 steps; wait for a new one to reach the page.
    page.wait_for_function("(src) => { const i = document.querySelectorAll('.st-key-live-images img')[3];"
                           " return i && i.src !== src; }", arg=first_src, timeout=60_000)
    second_pixels = loss_map.screenshot()
    for _ in range(40):  # the new image may take a refresh (2 s) to be painted
        if second_pixels != first_pixels:
            break
        page.wait_for_timeout(500)
        second_pixels = loss_map.screenshot()
    # the rerun that painted the new map may not have updated the counter yet (its deltas arrive one by one)
    page.wait_for_function("(first) => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
                           ".some(e => { const m = /^([0-9]+) \\//.exec(e.innerText); return m && +m[1] > first; })",
                           arg=first_step, timeout=30_000)
    second_step = step_counter(page)
    charts = page.get_by_test_id("stPlotlyChart")
    for i in range(4):  # every class in the recall chart's legend (its rare ones were cut off at 1280 px)
        assert legend_entries_cut_off(charts.nth(i)) == 0, i
    page.screenshot(path=str(ARTIFACTS / "live-training-2.png"), full_page=True)
    assert second_step > first_step
    assert second_pixels != first_pixels
    expect(page.get_by_test_id("stException")).to_have_count(0)

    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_test_id("stProgress").get_by_text(re.compile("^Stopped"))).to_be_visible(timeout=30_000)
