"""The Feature maps page in real Chromium: a deep link as the first request to a fresh server,
choose a layer, see the grid image, click a tile to open that channel."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import LOAD, screenshot, wait_idle as _idle, choose as _choose
from ui.sidebar import PAGES

GRID_JS = """() => {
  const plots = Array.from(
    document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'));
  const grid = plots.find(el => el.data && el.data.length === 2 && el.data[0].type === 'image');
  return grid ? grid.querySelectorAll('g.points path').length : 0;  // markers drawn
}"""


def test_open_a_layer_and_a_channel_from_a_deep_link(page, fresh_server):
    page.goto(fresh_server + "/feature_maps?model=scratch&images=photo:chelsea,photo:coffee")
    expect(page.get_by_role("heading", name="Feature maps")).to_be_visible(timeout=LOAD)
    _idle(page)
    nav = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    assert nav.count() == len(PAGES)
    # The default layer, block3_conv (the middle of four), has 128 channels: one grid image,
    # one marker per tile.
    page.wait_for_function(f"() => ({GRID_JS})() === 128", timeout=LOAD)

    _choose(page, "Block", "Block 2 · 64×64")
    expect(page.get_by_text(re.compile(r"block2_conv · Conv2D · output 64 × 64 × 64"))
           ).to_be_visible(timeout=LOAD)
    page.wait_for_function(f"() => ({GRID_JS})() === 64", timeout=LOAD)

    # Click the tile of channel 7 (tiles are in channel order): it opens large below.
    grid = page.locator('[data-testid="stPlotlyChart"]').first
    tile = grid.locator("g.points path").nth(7).bounding_box()
    page.mouse.click(tile["x"] + tile["width"] / 2, tile["y"] + tile["height"] / 2)
    expect(page.get_by_role("heading", name="Channel 7")).to_be_visible(timeout=LOAD)
    _idle(page)
    assert page.locator('[data-testid="stImage"]').count() >= 1  # the overlay on the image
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "feature_maps_channel")
