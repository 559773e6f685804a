"""What the model sees, in real Chromium: a data set with planted label errors (5 % of a small
demo set moved into wrong class folders), the report run from its button, the map, a box
selection dragged around one class's points, the flagged images and their CSV."""

from __future__ import annotations

import csv
import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import LOAD, screenshot, wait_idle
from tests.planted import planted_dataset

#: the bounding box, in page pixels, of the points of the map's first trace (one class)
BOX_JS = """() => {
  const plots = document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot');
  const gd = Array.from(plots).find(
    el => el.layout && String((el.layout.title || {}).text || '').includes("model's features"));
  if (!gd || !gd._fullData || !gd._fullData.length) return null;
  gd.scrollIntoView({block: "center"});
  const full = gd._fullLayout, rect = gd.getBoundingClientRect(), trace = gd._fullData[0];
  const xs = Array.from(trace.x, x => rect.left + full._size.l + full.xaxis.c2p(x));
  const ys = Array.from(trace.y, y => rect.top + full._size.t + full.yaxis.c2p(y));
  if (!xs.length || xs.some(isNaN) || ys.some(isNaN)) return null;
  return [Math.min(...xs) - 6, Math.min(...ys) - 6, Math.max(...xs) + 6, Math.max(...ys) + 6];
}"""

#: the index of an off-diagonal confusion cell with images (its marker's place in the trace)
CELL_JS = """() => {
  const gd = Array.from(document.querySelectorAll('.js-plotly-plot')).find(
    el => el._fullData && el._fullData.length && el._fullData[0].type === 'heatmap');
  const z = gd._fullData[0].z, k = z.length;
  for (let i = 0; i < k * k; i++) {
    const g = Math.floor(i / k), p = i % k;
    if (g !== p && z[g][p] > 0) return i;
  }
  return -1;
}"""


@pytest.fixture
def planted(tmp_path):
    """240 demo images at 32 px in the test server's data folder, 12 of them in a wrong
    class folder."""
    return planted_dataset(tmp_path / "planted", tmp_path / "app_home" / "datasets", 240,
                           size=32)


def _drag_box(page) -> None:
    page.wait_for_function(f"() => ({BOX_JS})() !== null", timeout=LOAD)
    page.get_by_text("Colour by").scroll_into_view_if_needed()
    screenshot(page, "model_report_map")
    x0, y0, x1, y1 = page.evaluate(BOX_JS)
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=5)
    page.mouse.move(x1, y1, steps=5)
    page.mouse.up()


def test_planted_errors_map_selection_and_csv(page, planted, server, tmp_path):
    dataset, flipped = planted
    page.goto(server + "/dataset")
    expect(page.get_by_role("heading", name="What the model sees")).to_be_visible(timeout=LOAD)
    wait_idle(page)
    page.get_by_role("button", name="Compute what the model sees").click()
    expect(page.get_by_text(re.compile(r"looks? mislabelled\."))).to_be_visible(
        timeout=LOAD)
    wait_idle(page)
    _drag_box(page)
    selected = page.get_by_text(re.compile(r"^\d+ images selected"))
    expect(selected).to_be_visible(timeout=LOAD)
    wait_idle(page)
    count = int(re.match(r"\d+", selected.inner_text()).group())
    assert len(dataset.files) // 6 - 12 <= count < len(dataset.files)  # about one class
    map_tab = page.get_by_role("tabpanel", name="Map")
    expect(map_tab.get_by_text("Click an image for its Grad-CAM.")).to_be_visible()
    # The selection grid's first image: its clickable marker.
    tile = map_tab.locator('[data-testid="stPlotlyChart"]').nth(1).locator(
        "g.points path").first.bounding_box()
    page.mouse.click(tile["x"] + tile["width"] / 2, tile["y"] + tile["height"] / 2)
    expect(map_tab.get_by_text(re.compile("Grad-CAM for the model's top class"))).to_be_visible(
        timeout=LOAD)
    wait_idle(page)
    map_tab.get_by_text(re.compile("Grad-CAM for the model's top")).scroll_into_view_if_needed()
    screenshot(page, "model_report_selection")

    # A click on an off-diagonal cell of the confusion matrix shows those images.
    page.get_by_role("tab", name="Confusion").click()
    chart = page.get_by_role("tabpanel", name="Confusion").locator(
        '[data-testid="stPlotlyChart"]')
    cell = page.evaluate(CELL_JS)
    mark = chart.locator("g.points path").nth(cell).bounding_box()
    page.mouse.click(mark["x"] + mark["width"] / 2, mark["y"] + mark["height"] / 2)
    expect(page.get_by_text(re.compile(r"Given \w+, predicted \w+: [1-9]\d* images"))
           ).to_be_visible(timeout=LOAD)
    wait_idle(page)
    screenshot(page, "model_report_confusion")

    page.get_by_role("tab", name=re.compile(r"Likely label errors · \d+")).click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the list (CSV)").click()
    rows = list(csv.DictReader(open(download.value.path(), encoding="utf-8")))
    flagged = {row["file"] for row in rows}
    assert rows and [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    # Most flags are planted errors and most planted errors are flagged.
    assert len(flagged & flipped) >= 0.6 * len(flagged)
    assert len(flagged & flipped) >= 0.6 * len(flipped)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "model_report_label_errors")

    # Explanation by example: an image's nearest images, and the pairs the model sees as one.
    page.get_by_role("tab", name="Nearest neighbours").click()
    panel = page.get_by_role("tabpanel", name="Nearest neighbours")
    expect(panel.get_by_text(re.compile(r"Near-duplicates by features · \d+"))).to_be_visible(
        timeout=LOAD)
    expect(panel.locator('[data-testid="stPlotlyChart"]').first).to_be_visible(timeout=LOAD)
    wait_idle(page)
    screenshot(page, "model_report_neighbours")
