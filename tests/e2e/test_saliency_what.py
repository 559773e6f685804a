"""The Saliency page's "what" in real Chromium: from a saliency overlay open "What drove this?",
click a channel and land on that channel's feature map; rank the methods on a small demo set
and see the trust table."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import LOAD, screenshot, wait_idle

START = "/saliency?images=shape:star,shape:ring"


def _no_traceback(page):
    assert page.locator('[data-testid="stException"]').count() == 0


def _main(page):
    return page.locator('[data-testid="stMain"]')


def test_a_channel_that_drove_the_score_opens_on_the_feature_maps_page(page, server):
    page.goto(server + START)
    expect(page.get_by_text(re.compile(r"map for star"))).to_be_visible(timeout=LOAD)
    wait_idle(page)
    page.get_by_text("A rather than B", exact=True).click()
    expect(page.get_by_text(re.compile(r"map for star rather than \w+"))).to_be_visible(
        timeout=LOAD)
    wait_idle(page)
    screenshot(page, "saliency_rather_than")

    page.get_by_role("button", name="What drove this?").click()
    first = _main(page).get_by_text(re.compile(r"^Channel \d+ · for: \+")).first
    expect(first).to_be_visible(timeout=LOAD)
    expect(_main(page).get_by_text(re.compile(r"^Channel \d+ · against: -")).first) \
        .to_be_visible()
    wait_idle(page)
    channel = re.match(r"Channel (\d+)", first.inner_text()).group(1)
    first.scroll_into_view_if_needed()
    screenshot(page, "saliency_what_drove_this")
    _no_traceback(page)

    page.get_by_role("button", name="Find the concepts").click()
    parts = page.get_by_text(re.compile(r"This image is recognised from these 6 parts"))
    expect(parts).to_be_visible(timeout=LOAD)
    wait_idle(page)
    parts.scroll_into_view_if_needed()
    _no_traceback(page)
    screenshot(page, "saliency_concepts")

    page.get_by_role("button", name="Feature map").first.click()
    expect(page.get_by_role("heading", name="Feature maps")).to_be_visible(timeout=LOAD)
    expect(page.get_by_role("heading", name=f"Channel {channel}")).to_be_visible(timeout=LOAD)
    wait_idle(page)
    expect(_main(page).get_by_role("combobox", name="Layer", exact=True)).to_have_value(
        re.compile(r"^block4_conv2 · "))
    expect(_main(page).locator('[data-testid="stNumberInput"]').filter(
        has_text="Channel").first.locator("input")).to_have_value(channel)
    assert f"channel={channel}" in page.url and "layer=block4_conv2" in page.url
    _no_traceback(page)
    screenshot(page, "saliency_channel_on_feature_maps")


def test_the_trust_table_ranks_methods_on_a_small_demo_set(page, server):
    page.goto(server + START)
    expect(page.get_by_text(re.compile(r"map for star"))).to_be_visible(timeout=LOAD)
    wait_idle(page)
    page.get_by_role("tab", name="Data set").click()
    slider = _main(page).locator('[data-testid="stSlider"]').filter(
        has_text="How many images").get_by_role("slider")
    slider.focus()
    slider.press("Home")  # the fewest images
    wait_idle(page)
    methods = _main(page).locator('[data-testid="stMultiSelect"]').filter(has_text="Methods")
    methods.get_by_role("button", name=re.compile("Clear all")).click()
    wait_idle(page)
    methods.click()
    page.get_by_role("option", name="Grad-CAM", exact=True).click()
    page.keyboard.press("Escape")
    wait_idle(page)
    page.get_by_role("button", name="Rank the methods").click()
    expect(page.get_by_text(re.compile(r"1 method on 6 images"))).to_be_visible(timeout=LOAD)
    expect(page.get_by_text(re.compile(r"Grad-CAM changes when the labels are shuffled|"
                                       r"Grad-CAM stays the same"))).to_be_visible()
    expect(_main(page).locator('[data-testid="stDataFrame"]')).to_be_visible()
    expect(page.get_by_role("button", name="Table (CSV)")).to_be_visible()
    wait_idle(page)
    _no_traceback(page)
    page.get_by_role("button", name="Table (CSV)").scroll_into_view_if_needed()
    screenshot(page, "saliency_trust_table")
