"""The report in real Chromium: build it on the Home page, download it, open the saved file
from disk with the network cut off, and see every section and every picture."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.conftest import LOAD, screenshot, wait_idle

SECTIONS = ["prediction", "feature-maps", "saliency", "filters", "model-summary", "settings"]


def test_export_the_report_and_open_it_offline(page, browser, fresh_server, tmp_path):
    page.goto(fresh_server + "/?images=shape:star")
    expect(page.get_by_role("heading", name="Predictions")).to_be_visible(timeout=LOAD)
    wait_idle(page)
    page.get_by_role("button", name="Build the report").click()
    name = "cnn_explorer_report_Shape_star.html"
    download_button = page.get_by_role("button", name=f"Download {name}")
    expect(download_button).to_be_visible(timeout=LOAD)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "report_home")
    with page.expect_download(timeout=LOAD) as info:
        download_button.click()
    download = info.value
    assert download.suggested_filename == name
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.stat().st_size > 10_000

    # A fresh browser context, offline, that lets nothing but the file itself load.
    context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
    blocked = []

    def only_files(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    report = context.new_page()
    try:
        report.goto(saved.as_uri(), wait_until="load")
        expect(report.get_by_role("heading", name="CNN Explorer report")).to_be_visible()
        for section in SECTIONS:
            expect(report.locator(f"section#{section}")).to_be_visible()
        pictures = report.evaluate("""() => Array.from(document.images).map(
            i => [i.complete, i.naturalWidth, i.alt])""")
        assert len(pictures) >= 1 + 1 + 5 + 1  # image, a feature grid, 5 maps, a filter
        assert all(complete and width > 0 for complete, width, _ in pictures), pictures
        expect(report.locator("#prediction td.class").first).to_have_text("star")
        expect(report.locator("#saliency tr[data-method]")).to_have_count(5)
        assert blocked == []
        path = screenshot(report, "report_file")
        assert path.stat().st_size > 0
    finally:
        context.close()
