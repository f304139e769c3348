"""Every page, opened by its own URL on a fresh server, renders in headless Chromium."""

import pytest
from playwright.sync_api import TimeoutError, expect

from browser_support import ARTIFACTS
from ui.layout import SIDE_BY_SIDE, available_pages

pytestmark = pytest.mark.browser

PAGES = available_pages()
URL_PATHS = {path: ("" if path == "app.py" else path.split("_", 1)[1].removesuffix(".py")) for path, _, _ in PAGES}
CHARTS = {"app.py": 0, "pages/1_Loss_curves.py": 1, "pages/2_Gradients.py": 3, "pages/5_Compare.py": 2}  # pages not listed: not counted


def open_page(page, app_url, path):
    """Go to a page by URL and wait until the script finished and its charts are drawn."""
    page.goto(f"{app_url}/{URL_PATHS[path]}")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Compute device")).to_be_visible(timeout=60_000)
    charts = page.get_by_test_id("stPlotlyChart")
    if path in CHARTS:
        expect(charts).to_have_count(CHARTS[path], timeout=60_000)
    for i in range(CHARTS.get(path, 0)):
        expect(charts.nth(i).locator("svg.main-svg").first).to_be_visible(timeout=60_000)
    return sidebar


@pytest.mark.parametrize("path, label", [(p, label) for p, label, _ in PAGES])
def test_page_opens_by_direct_url_with_shared_sidebar(app_url, page, path, label):
    sidebar = open_page(page, app_url, path)
    nav = sidebar.get_by_test_id("stPageLink")
    expect(nav).to_have_count(len(PAGES) if len(PAGES) > 1 else 0)
    labels = [text.split("\n")[-1] for text in nav.all_inner_texts()]  # drop the icon's ligature name
    assert labels == ([lbl for _, lbl, _ in PAGES] if len(PAGES) > 1 else [])  # words, never "app" or file names
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"page-{label.replace(' ', '_').lower()}.png"), full_page=True)


@pytest.mark.parametrize("width, height", [(1400, 1000), (1024, 768)])
def test_home_page_links_show_their_whole_labels(browser, app_url, width, height):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(app_url)
    main = page.get_by_test_id("stMain")
    links = main.get_by_test_id("stPageLink")
    expect(links).to_have_count(len(PAGES) - 1, timeout=60_000)
    cut = page.evaluate("() => [...document.querySelectorAll('[data-testid=stMain] [data-testid=stPageLink] p')]"
                        ".filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.innerText)")
    page.screenshot(path=str(ARTIFACTS / f"home-{width}.png"), full_page=True)
    context.close()
    assert cut == []


def test_the_class_frequency_table_shows_every_column(app_url, page):
    page.goto(f"{app_url}/Live_training")
    grid = page.get_by_test_id("stDataFrame").first
    expect(grid).to_be_visible(timeout=60_000)
    scroller = "document.querySelector('[data-testid=stDataFrame] .dvn-scroller')"
    page.wait_for_function(f"() => {scroller} && {scroller}.clientWidth > 0", timeout=30_000)  # the grid drawn
    page.wait_for_timeout(300)  # its columns sized
    overflow = page.evaluate(f"() => {scroller}.scrollWidth - {scroller}.clientWidth")
    assert 0 <= overflow <= 1  # no column hidden behind a horizontal scroll


@pytest.mark.parametrize("width", [1400, 1024])
def test_every_loss_formula_fits_its_card_on_the_home_page(browser, app_url, width):
    """KaTeX draws a display formula on one line: one too long is cut at the card's edge."""
    import segloss

    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(app_url)
    formulas = page.locator("[data-testid=stMain] .katex-display")
    expect(formulas).to_have_count(len(segloss.LOSSES), timeout=60_000)
    page.wait_for_function("() => document.fonts.status === 'loaded'", timeout=30_000)  # KaTeX's fonts set the widths
    page.wait_for_timeout(300)
    cut = page.evaluate("() => [...document.querySelectorAll('[data-testid=stMain] .katex-display')].filter(f =>"
                        " Math.max(...[...f.querySelectorAll('.base')].map(b => b.getBoundingClientRect().right))"
                        " > f.getBoundingClientRect().right + 1).map(f => f.innerText.slice(0, 40))")
    context.close()
    assert cut == []


CUT_TEXT = """() => [...document.querySelectorAll(
    '[data-testid=stMain] [data-testid=stButton] p, [data-testid=stMain] [data-testid=stDownloadButton] p,'
    + ' [data-testid=stMain] [data-testid=stMetricValue] div, [data-testid=stMain] [data-testid=stMetricDelta] div')]
    .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)"""


@pytest.mark.parametrize("width, height", [(1400, 1000), (1024, 768)])
def test_buttons_and_live_numbers_show_their_whole_text(browser, app_url, width, height):
    """A lecturer's projector at 1024 x 768: no button label ("S…") or metric ("11…") is cut."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(f"{app_url}/Loss_curves")
    expect(page.get_by_role("button", name="Recall: batch recall")).to_be_visible(timeout=60_000)
    cut = page.evaluate(CUT_TEXT)
    page.goto(f"{app_url}/Live_training")
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stMetricValue]')]"
                           ".some(e => /^[1-9][0-9]* \\//.test(e.innerText))", timeout=60_000)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stMetricDelta]').length >= 2",
                           timeout=60_000)
    cut += page.evaluate(CUT_TEXT)
    page.screenshot(path=str(ARTIFACTS / f"live-training-{width}.png"), full_page=True)
    page.get_by_role("button", name="Stop").click()
    context.close()
    assert cut == []


def own_columns(key: str) -> str:
    """The selector of a layout's own two columns (not the columns nested in them)."""
    return f".st-key-{key}-layout [data-testid=stColumn]:not(.st-key-{key}-layout [data-testid=stColumn] *)"


LAYOUTS = [("Loss_curves", "curves"), ("Gradients", "gradients"), ("Upload", "upload"), ("Live_training", "live")]


@pytest.mark.parametrize("width", [800, 1024])
@pytest.mark.parametrize("path, key", LAYOUTS)
def test_controls_stack_above_the_charts_when_the_content_is_narrow(browser, app_url, path, key, width):
    """Side by side with the sidebar open, the controls were 100 px wide at 800 px (chosen losses
    showed as bare × chips) and 156 px at 1024 px ("Cross…"): below 720 px of content the two
    columns stack, each the content's width."""
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{app_url}/{path}")
        columns = page.locator(own_columns(key))
        expect(columns.nth(1)).to_be_visible(timeout=60_000)
        try:  # the page's style arrives with its elements, a moment after the first ones are drawn
            page.wait_for_function("(sel) => { const c = document.querySelectorAll(sel); return c.length > 1 && "
                                   "c[0].getBoundingClientRect().width === c[1].getBoundingClientRect().width; }",
                                   arg=own_columns(key), timeout=20_000)
        except TimeoutError:
            pass  # the assertion below says what was there
        first, second = columns.nth(0).bounding_box(), columns.nth(1).bounding_box()
        assert first["width"] == second["width"] > 400 and second["y"] > first["y"], (first, second)
    finally:
        context.close()


@pytest.mark.parametrize("path, key", LAYOUTS)
def test_controls_sit_beside_the_charts_in_a_wide_window_and_keep_their_chips_whole(browser, app_url, path, key):
    """At 1280 px with the sidebar open the controls were 241 px: "Generalized Dice + boundary (sch"
    in the Gradients page's loss box. They take at least CONTROLS_PX now, and no chosen value is cut."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{app_url}/{path}" + ("?loss=dice_boundary" if path == "Gradients" else ""))
        columns = page.locator(own_columns(key))
        expect(columns.nth(1)).to_be_visible(timeout=60_000)
        try:  # the page's style arrives with its elements
            page.wait_for_function("([sel, px]) => { const c = document.querySelector(sel); "
                                   "return c && c.getBoundingClientRect().width >= px; }",
                                   arg=[own_columns(key), SIDE_BY_SIDE[key][1] or 0], timeout=20_000)
        except TimeoutError:
            pass  # the assertion below says what was there
        first, second = columns.nth(0).bounding_box(), columns.nth(1).bounding_box()
        assert first["y"] == second["y"] and first["width"] >= (SIDE_BY_SIDE[key][1] or 150) - 1, (first, second)
        boxes = page.locator(own_columns(key)).first.locator("input[role=combobox]")
        expect(boxes.first).to_be_visible()
        cut_values = boxes.evaluate_all(  # an input's text overflows silently: measure it in its own font
            """inputs => { const ctx = document.createElement('canvas').getContext('2d');
                return inputs.filter(i => { const s = getComputedStyle(i); ctx.font = s.font;
                    const room = i.clientWidth - parseFloat(s.paddingLeft) - parseFloat(s.paddingRight);
                    return ctx.measureText(i.value).width > room + 1; }).map(i => i.value); }""")
        assert cut_values == []
        chips = page.locator(f".st-key-{key}-layout [data-testid=stMultiSelect] [data-tag] > span[title]")
        if path == "Loss_curves":  # its defaults choose two losses
            expect(chips.nth(1)).to_be_visible()
        cut = chips.evaluate_all("spans => spans.filter(s => s.scrollWidth > s.clientWidth + 1)"
                                 ".map(s => s.getAttribute('title'))")
        assert cut == []
    finally:
        context.close()


def test_the_layouts_width_rules_leave_a_widget_groups_own_columns_alone(browser, app_url):
    """The Upload page's simulation knobs sit in two columns inside the layout's chart column: the
    layout's rules for its controls column (at least 300 px, never shrinking) reached them too, and
    squeezed the second to a sliver."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{app_url}/Upload?sample=0")
        inner = page.locator(".st-key-upload-layout [data-testid=stColumn] [data-testid=stColumn]")
        expect(inner.nth(1)).to_be_visible(timeout=60_000)
        page.wait_for_timeout(1000)  # the page's style, as above
        first, second = inner.nth(0).bounding_box(), inner.nth(1).bounding_box()
        assert 0.8 < first["width"] / second["width"] < 1.25, (first, second)
    finally:
        context.close()
