"""The Saliency page in real Chromium: a deep link as the first request to a fresh server, pick
a method and a class, see the overlay, run the comparison grid of every method."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from engine.saliency import METHODS
from tests.e2e.conftest import LOAD, screenshot, wait_idle as _idle, choose
from ui.sidebar import PAGES


def _wait_for_images(page, count: int):
    """At least ``count`` pictures in the main area, decoded (not just their frames)."""
    page.wait_for_function(
        """n => Array.from(document.querySelectorAll('[data-testid="stMain"] '
            + '[data-testid="stImage"] img')).filter(i => i.complete && i.naturalWidth > 0)
            .length >= n""", arg=count, timeout=LOAD)


def test_pick_method_and_class_then_compare_every_method(page, fresh_server):
    page.goto(fresh_server + "/saliency?images=shape:star,shape:ring")
    expect(page.get_by_role("heading", name="Saliency", exact=True)).to_be_visible(timeout=LOAD)
    _idle(page)
    nav = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    assert nav.count() == len(PAGES)
    # The default: Grad-CAM of each image's top class, overlay and raw map per image.
    expect(page.get_by_text(re.compile(r"map for star"))).to_be_visible(timeout=LOAD)
    _wait_for_images(page, 4)

    choose(page, "Method", "Grad-CAM++", exact=True)
    choose(page, "Explain which class?", "circle (in a top 5)", exact=True)
    expect(page.get_by_text(re.compile(r"map for circle"))).to_have_count(2, timeout=LOAD)
    _wait_for_images(page, 4)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "saliency_overlay")

    page.get_by_role("tab", name="Compare all methods").click()
    page.get_by_role("button", name="Run all methods").click()
    expect(page.get_by_text(f"All {len(METHODS)} methods done.")).to_be_visible(timeout=LOAD)
    _idle(page)
    for name in METHODS:
        title = METHODS[name].title + (" (slow)" if METHODS[name].speed == "slow" else "")
        expect(page.get_by_text(title, exact=True).last).to_be_attached()
    _wait_for_images(page, 4 + len(METHODS))
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "saliency_compare")
