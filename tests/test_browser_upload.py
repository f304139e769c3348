"""The Upload page in headless Chromium: opened by its URL on a fresh server, real files through
the real ``<input type=file>`` elements, heatmaps drawn, hover filled, a bad file shown as an error."""

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from browser_support import ARTIFACTS
from upload_files import good_files

pytestmark = pytest.mark.browser


def wait_for_charts(page, count):
    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(count, timeout=90_000)
    for i in range(count):
        expect(charts.nth(i).locator("svg.main-svg").first).to_be_visible(timeout=60_000)
    return charts


def test_upload_page_draws_heatmaps_from_real_file_inputs_and_reports_a_bad_file(app_url, page, tmp_path):
    files = good_files()
    for name in ("image", "mask"):
        (tmp_path / f"{name}.png").write_bytes(files[name])
    (tmp_path / "mask_text.png").write_bytes(b"this is text, not a PNG")

    page.goto(f"{app_url}/Upload")
    expect(page.get_by_test_id("stSidebar").get_by_text("Compute device")).to_be_visible(timeout=60_000)
    inputs = page.locator("input[type=file]")
    expect(inputs).to_have_count(2, timeout=30_000)  # image and mask; the logits one only when chosen
    # One file, then the other, as a person does: the app acknowledges the image first. (Two uploads
    # milliseconds apart, while the first one's rerun is starting, can lose the second in Streamlit's
    # frontend: its uploader then shows no file, and the page still asks for the mask.)
    inputs.nth(0).set_input_files(str(tmp_path / "image.png"))
    expect(page.get_by_text("is here; now upload its mask")).to_be_visible(timeout=60_000)
    inputs.nth(1).set_input_files(str(tmp_path / "mask.png"))
    charts = wait_for_charts(page, 2)
    expect(charts.first.locator("g.heatmaplayer")).to_have_count(4)  # one loss per panel
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stDataFrame")).to_have_count(1)

    box = charts.first.locator("g.heatmaplayer").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.8)
    hover = charts.first.locator("g.hovertext")
    expect(hover).to_have_count(1, timeout=10_000)
    text = hover.text_content()  # SVG: no innerText
    assert "label:" in text and "top-3:" in text and "Dual Focal loss" in text, text
    assert re.search(r"p\(top-3\): 0\.\d{3}, 0\.\d{3}, 0\.\d{3}", text), text  # 3-D customdata decoded
    page.screenshot(path=str(ARTIFACTS / "upload-heatmaps.png"), full_page=True)
    table = page.get_by_test_id("stDataFrame")
    table.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    table.screenshot(path=str(ARTIFACTS / "upload-table.png"))

    # the gradient map: same panels, now |dL/dz|, in the real segmented control
    page.get_by_test_id("stButtonGroup").get_by_text("gradient map").click()
    expect(page.get_by_text("where each loss pushes")).to_be_visible(timeout=60_000)
    charts = wait_for_charts(page, 2)
    expect(charts.first.locator("g.heatmaplayer")).to_have_count(4)
    expect(charts.first.get_by_text("|dL/dz|").first).to_be_attached()  # the colour bar's title
    expect(page.get_by_test_id("stException")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "upload-gradient-maps.png"), full_page=True)

    inputs.nth(1).set_input_files(str(tmp_path / "mask_text.png"))
    alert = page.get_by_test_id("stAlert").filter(has_text="not a recognised image")
    expect(alert).to_be_visible(timeout=60_000)
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(0)
    page.screenshot(path=str(ARTIFACTS / "upload-bad-mask.png"), full_page=True)

    # a JPEG mask, the commonest mistake: the page says why masks must be lossless (the uploader's own
    # extension filter showed only a red mark on the file, and the page kept asking for a mask)
    Image.open(io.BytesIO(files["mask"])).convert("L").save(tmp_path / "mask.jpg", "JPEG")
    inputs.nth(1).set_input_files(str(tmp_path / "mask.jpg"))
    alert = page.get_by_test_id("stAlert").filter(has_text="JPEG-compressed")
    expect(alert).to_be_visible(timeout=60_000)
    expect(alert).to_contain_text("lossless PNG")
    expect(page.get_by_test_id("stException")).to_have_count(0)
