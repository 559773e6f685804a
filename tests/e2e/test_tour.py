"""The guided tour in real Chromium: open /tour as the first request to a fresh server (demo
model, demo image), follow all seven steps with Next, start the short training run and watch
its curve grow to the end. A screenshot per step goes to ``$E2E_SCREENSHOTS``."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import LOAD, screenshot, wait_idle

# Points of the live training curve (react-plotly keeps the figure's data on its div); the
# largest over every chart, since a rerun can briefly show the old and the new chart.
POINTS_JS = """() => Math.max(0, ...Array.from(
  document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'),
  el => (el.data && el.data.length ? el.data[0].x.length : 0)))"""


# Every image of the main area has arrived (st.image files load after the script ends).
IMAGES_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMain"] img'))
  .every(img => img.complete && img.naturalWidth > 0)"""


def _shot(page, name: str) -> None:
    wait_idle(page)
    page.wait_for_function(IMAGES_JS, timeout=LOAD)
    screenshot(page, name)


def _step(page, number: int, title: str) -> None:
    expect(page.get_by_role("heading", name=f"{number}. {title}")).to_be_visible(timeout=LOAD)


def _next(page) -> None:
    page.locator(".st-key-tour_next_top button").click()


def test_follow_the_tour_to_the_end(page, fresh_server):
    page.set_viewport_size({"width": 1400, "height": 2000})  # each step whole on its screenshot
    page.goto(fresh_server + "/tour")
    expect(page.get_by_role("heading", name="Tour", exact=True)).to_be_visible(timeout=LOAD)
    _step(page, 1, "An image is numbers")
    expect(page.get_by_text(re.compile(r"your image is 12,288 numbers"))).to_be_visible(
        timeout=LOAD)
    _shot(page, "tour_1_numbers")
    assert page.locator('[data-testid="stException"]').count() == 0

    # Each step's own content: computed on the star image by the demo model.
    shown = [("One convolution", "tour_2_convolution", page.get_by_text("Output at this position")),
             ("Feature maps: what the layers see", "tour_3_feature_maps",
              page.get_by_text(re.compile(r"Late: layer \d+ of \d+"))),
             ("The prediction", "tour_4_prediction",
              page.get_by_text(re.compile(r"it says star, \d+% sure"))),
             ("Where it looks", "tour_5_where", page.get_by_text("Where it looked to say 'star'")),
             ("What its filters like", "tour_6_filters",
              page.get_by_text(re.compile(r"kernel \d+ likes")).nth(5))]
    for number, (title, name, content) in enumerate(shown, start=2):
        _next(page)
        _step(page, number, title)
        expect(content).to_be_visible(timeout=LOAD)
        _shot(page, name)
    expect(page.get_by_text(re.compile(r"kernel \d+ likes"))).to_have_count(6)

    _next(page)
    _step(page, 7, "How it learns")
    wait_idle(page)
    page.locator(".st-key-tour_fit_start button").click()
    page.wait_for_function(f"() => ({POINTS_JS})() >= 10", timeout=LOAD)
    _shot(page, "tour_7_learning_live")
    # 120 batches: about 10 s on 2 cores; allow for a machine that is busy with more.
    expect(page.get_by_text(re.compile(r"Before training: \d+%"))).to_be_visible(
        timeout=2 * LOAD)
    _shot(page, "tour_7_learning_done")
    assert page.evaluate(POINTS_JS) == 120  # every batch of 2 epochs of 480 images, 8 at a time
    assert page.locator('[data-testid="stException"]').count() == 0
    expect(page.locator(".st-key-tour_next_top button")).to_be_disabled()

    page.locator(".st-key-tour_prev_top button").click()
    _step(page, 6, "What its filters like")


FONT_JS = """() => parseFloat(getComputedStyle(document.querySelector(
  '[data-testid="stMain"] [data-testid="stMarkdownContainer"] p')).fontSize)"""


def test_presenter_mode_enlarges_text_and_hides_expert_settings(page, server):
    page.goto(server + "/filters")
    expect(page.get_by_text("filters are in the cache")).to_be_visible(timeout=LOAD)
    wait_idle(page)
    settings = page.locator('[data-testid="stExpander"] summary', has_text="Settings")
    expect(settings).to_have_count(1)
    before = page.evaluate(FONT_JS)

    page.locator('[data-testid="stSidebar"] label', has_text="Presenter mode").click()
    expect(settings).to_have_count(0, timeout=LOAD)
    wait_idle(page)
    assert page.evaluate(FONT_JS) >= 1.4 * before
    screenshot(page, "presenter_filters")

    # It holds on another page, and its hidden settings still work there: the page renders.
    page.locator('[data-testid="stSidebar"] a', has_text="Feature maps").click()
    expect(page.get_by_role("heading", name="Feature maps", exact=True)).to_be_visible(
        timeout=LOAD)
    wait_idle(page)
    expect(page.locator('[data-testid="stSidebar"] [data-testid="stCheckbox"] input')
           ).to_be_checked()
    expect(page.get_by_text("Colormap", exact=True)).to_have_count(0)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.evaluate(FONT_JS) >= 1.4 * before
    screenshot(page, "presenter_feature_maps")
