"""Main journeys of the foundation in real Chromium: predict, model page, deep links, reload."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import LOAD, choose_scratch_model, screenshot, wait_idle as _idle
from ui.sidebar import PAGES


def _png(path, color):
    Image.fromarray(np.full((40, 60, 3), color, np.uint8)).save(path)
    return path


def _uploaded_names(page):
    return page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]').inner_text()


def test_upload_predict_then_model_page(page, server, tmp_path):
    page.goto(server)
    expect(page.get_by_role("heading", name="CNN Explorer", exact=True)).to_be_visible(timeout=LOAD)
    expect(page.get_by_text("Predictions", exact=True)).to_be_visible(timeout=LOAD)
    _idle(page)
    good = _png(tmp_path / "red <b>square<i>.png", (220, 30, 30))
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    page.locator('[data-testid="stSidebar"] input[type="file"]').last.set_input_files(
        [str(good), str(bad)])
    # The bad file is listed with its reason; the good one is used (its name shown as text).
    expect(page.get_by_text(re.compile(r"broken\.png"))).to_be_visible(timeout=LOAD)
    expect(page.get_by_text("red <b>square<i>.png").first).to_be_visible(timeout=LOAD)
    assert page.locator("[data-testid=stMain] b").count() == 0
    _idle(page)
    # Three default images plus the upload, each with its top-5 bars.
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=\"stMain\"] [data-testid=\"stProgress\"]')"
        ".length >= 4 * 5", timeout=LOAD)
    screenshot(page, "home_predict")

    # By address, not text: the link text holds icon names ("model_training" contains "Model").
    page.locator('[data-testid="stSidebar"] a[data-testid="stPageLink-NavLink"]'
                 ':is([href="model"], [href^="model?"])'
                 ).click()
    expect(page.get_by_role("heading", name="Every layer")).to_be_visible(timeout=LOAD)
    expect(page.locator('[data-testid="stDataFrame"]')).to_be_visible(timeout=LOAD)
    _idle(page)
    # The images chosen on the first page are still chosen here.
    assert "red <b>square<i>.png" in _uploaded_names(page)
    screenshot(page, "model_page")


@pytest.mark.parametrize("path, heading", [("/", "Predictions"), ("/model", "Every layer")])
def test_deep_link_is_the_first_request_to_a_fresh_server(page, fresh_server, path, heading):
    page.goto(fresh_server + path)
    expect(page.get_by_role("heading", name=heading)).to_be_visible(timeout=LOAD)
    _idle(page)
    nav = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    assert nav.count() == len(PAGES)  # our own navigation only, no legacy page list
    assert page.locator('[data-testid="stException"]').count() == 0


def test_reload_keeps_model_and_images(page, server):
    page.goto(server + "/model")
    expect(page.get_by_role("heading", name="Every layer")).to_be_visible(timeout=LOAD)
    _idle(page)
    choose_scratch_model(page)
    # Drop one image from the selection.
    page.get_by_role("button", name="Remove Shape: star").click()
    expect(page.get_by_role("button", name="Remove Shape: star")).to_have_count(0)
    _idle(page)
    # The rerun that writes the new choice into the URL may start after the app looked idle.
    page.wait_for_url(re.compile(r"images=shape%3Aring"), timeout=LOAD)
    before = _uploaded_names(page)
    assert "Shape: ring" in before and "Shape: star" not in before
    page.reload()
    expect(page.get_by_role("heading", name="Every layer")).to_be_visible(timeout=LOAD)
    _idle(page)
    expect(page.get_by_text(re.compile(r"Scratch CNN \(untrained\) · 128x128"))).to_be_visible(
        timeout=LOAD)
    assert _uploaded_names(page) == before
    screenshot(page, "after_reload")
