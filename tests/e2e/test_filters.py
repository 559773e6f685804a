"""The Filters page in real Chromium: a deep link on a fresh server, then pick a layer, start,
and watch the grid fill in; click a tile to see it up close."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import LOAD, screenshot, set_steps, wait_idle as _idle
from ui.sidebar import PAGES

# How many tiles the grid chart holds (react-plotly keeps the figure's data on its div).
TILES_JS = """() => Math.max(0, ...Array.from(
  document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'),
  el => (el.data && el.data.length > 1 && el.data[1].hovertext ? el.data[1].hovertext.length
                                                                 : 0)))"""


def test_deep_link_to_filters_is_the_first_request_to_a_fresh_server(page, fresh_server):
    page.goto(fresh_server + "/filters")
    expect(page.get_by_role("heading", name="Filters", exact=True)).to_be_visible(timeout=LOAD)
    expect(page.get_by_text("filters are in the cache")).to_be_visible(timeout=LOAD)
    _idle(page)
    nav = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    assert nav.count() == len(PAGES)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_pick_a_layer_start_and_see_the_grid_fill_in(page, server):
    page.goto(server + "/filters")
    expect(page.get_by_text("filters are in the cache")).to_be_visible(timeout=LOAD)
    _idle(page)
    page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="block2_conv1").click()
    expect(page.get_by_text("0 of 32 filters are in the cache")).to_be_visible(timeout=LOAD)
    _idle(page)
    set_steps(page, 24)

    page.get_by_role("button", name="Start").click()
    page.wait_for_function(f"() => ({TILES_JS})() >= 4", timeout=LOAD)
    expect(page.get_by_text(re.compile(r"Done: 32 of 32 filters"))).to_be_visible(timeout=LOAD)
    page.wait_for_function(f"() => ({TILES_JS})() == 32", timeout=LOAD)
    expect(page.get_by_role("heading", name="One filter up close")).to_be_visible(timeout=LOAD)
    _idle(page)
    screenshot(page, "filters_grid")

    # Click tile 5 (sixth of the first row): it is shown up close.
    plot = page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').first
    plot.scroll_into_view_if_needed()
    box = plot.bounding_box()
    point = page.evaluate("""() => {
      const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
      const xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis;
      const d = el._fullData[1];  // decoded arrays (data[1] may hold base64 typed arrays)
      return [xa.l2p(d.x[5]) + xa._offset, ya.l2p(d.y[5]) + ya._offset];
    }""")
    page.mouse.click(box["x"] + point[0], box["y"] + point[1])
    expect(page.get_by_role("combobox", name="Look closer at")).to_have_value(
        "filter 5", timeout=LOAD)
    expect(page.locator(".gtitle")).to_have_text(["Activation of filter 5"], timeout=LOAD)
    assert page.locator('[data-testid="stException"]').count() == 0
