"""Shareable links in real Chromium: a link opened in another browser (a new context, no
cookies) shows the same view; an upload survives a reload but never travels in the link."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.conftest import LOAD, choose, choose_scratch_model, screenshot, wait_idle
from ui.state import COOKIE


def _channel(page):
    return page.locator('[data-testid="stMain"] [data-testid="stNumberInput"]').filter(
        has_text="Channel").first.locator("input")


def _chosen(page, label: str):
    """The main-area selectbox labelled ``label`` (its value is the chosen option's text)."""
    return page.locator('[data-testid="stMain"]').get_by_role("combobox", name=label, exact=True)


def _images_picker(page):
    return page.locator('[data-testid="stSidebar"] [data-testid="stMultiSelect"]')


def _no_traceback(page):
    assert page.locator('[data-testid="stException"]').count() == 0


def _feature_maps_view(page):
    expect(page.get_by_role("heading", name="Feature maps")).to_be_visible(timeout=LOAD)
    expect(page.get_by_role("heading", name="Channel 7")).to_be_visible(timeout=LOAD)
    wait_idle(page)
    expect(page.get_by_text(re.compile(r"Scratch CNN \(untrained\) · 128x128"))).to_be_visible()
    expect(_chosen(page, "Image")).to_have_value("Photo: Cat (Chelsea)")
    expect(_chosen(page, "Layer")).to_have_value(re.compile(r"^block3_conv · "))
    expect(_channel(page)).to_have_value("7")
    _no_traceback(page)


def _saliency_view(page):
    expect(page.get_by_role("heading", name="Saliency", exact=True)).to_be_visible(timeout=LOAD)
    expect(page.get_by_text(re.compile(r"map for circle")).first).to_be_visible(timeout=LOAD)
    wait_idle(page)
    expect(_chosen(page, "Method")).to_have_value("Grad-CAM++")
    expect(_chosen(page, "Explain which class?")).to_have_value(re.compile(r"^circle"))
    _no_traceback(page)


def test_a_link_opened_in_another_browser_shows_the_same_view(page, browser, server):
    page.goto(server + "/feature_maps")
    expect(page.get_by_role("heading", name="Feature maps")).to_be_visible(timeout=LOAD)
    wait_idle(page)
    choose_scratch_model(page)
    choose(page, "Image", "Photo: Cat (Chelsea)")
    choose(page, "Block", "Block 3 · 32×32")
    channel = _channel(page)
    channel.fill("7")
    channel.press("Enter")
    expect(page.get_by_role("heading", name="Channel 7")).to_be_visible(timeout=LOAD)
    page.wait_for_url(re.compile(r"channel=7"), timeout=LOAD)
    wait_idle(page)
    feature_maps_link = page.url
    assert "model=scratch" in feature_maps_link and "layer=block3_conv" in feature_maps_link
    screenshot(page, "share_feature_maps_sender")

    page.locator('[data-testid="stSidebar"] a[data-testid="stPageLink-NavLink"]'
                 ':is([href="saliency"], [href^="saliency?"])').click()
    expect(page.get_by_role("heading", name="Saliency", exact=True)).to_be_visible(timeout=LOAD)
    wait_idle(page)
    choose(page, "Method", "Grad-CAM++", exact=True)
    choose(page, "Explain which class?", "circle")
    _saliency_view(page)
    page.wait_for_url(re.compile(r"method=gradcam_plus_plus.*class=\d|class=\d.*"
                                 r"method=gradcam_plus_plus"), timeout=LOAD)
    saliency_link = page.url
    screenshot(page, "share_saliency_sender")

    other = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        friend = other.new_page()
        friend.goto(feature_maps_link)
        _feature_maps_view(friend)
        screenshot(friend, "share_feature_maps_receiver")
        friend.goto(saliency_link)
        _saliency_view(friend)
        screenshot(friend, "share_saliency_receiver")
    finally:
        other.close()


def test_an_upload_survives_a_reload_but_not_the_link(page, browser, server, tmp_path):
    page.goto(server + "/")
    expect(page.get_by_text("Predictions", exact=True)).to_be_visible(timeout=LOAD)
    wait_idle(page)
    picture = tmp_path / "my holiday.png"
    Image.fromarray(np.full((40, 60, 3), (30, 160, 40), np.uint8)).save(picture)
    page.locator('[data-testid="stSidebar"] input[type="file"]').last.set_input_files(
        str(picture))
    expect(_images_picker(page)).to_contain_text("my holiday.png", timeout=LOAD)
    wait_idle(page)
    page.wait_for_url(re.compile(r"images="), timeout=LOAD)
    token = next(c["value"] for c in page.context.cookies() if c["name"] == COOKIE)
    assert "upload" not in page.url and "holiday" not in page.url and token not in page.url
    screenshot(page, "share_upload_before_reload")

    page.reload()
    expect(page.get_by_text("Predictions", exact=True)).to_be_visible(timeout=LOAD)
    wait_idle(page)
    expect(_images_picker(page)).to_contain_text("my holiday.png", timeout=LOAD)
    expect(page.get_by_text("my holiday.png").first).to_be_visible()
    assert "upload" not in page.url and token not in page.url
    screenshot(page, "share_upload_after_reload")

    link = page.url
    other = browser.new_context(viewport={"width": 1400, "height": 1600})  # room for the list
    try:
        friend = other.new_page()
        friend.goto(link)
        expect(friend.get_by_text("Predictions", exact=True)).to_be_visible(timeout=LOAD)
        wait_idle(friend)
        expect(_images_picker(friend)).to_contain_text("Shape: star")
        assert "holiday" not in friend.locator("body").inner_text()
        _images_picker(friend).click()  # not even among the options
        expect(friend.get_by_role("option").first).to_be_attached()
        expect(friend.get_by_role("option", name=re.compile("holiday"))).to_have_count(0)
        friend.keyboard.press("Escape")
        friend_token = next(c["value"] for c in other.cookies() if c["name"] == COOKIE)
        assert friend_token != token
        screenshot(friend, "share_upload_other_browser")
    finally:
        other.close()
