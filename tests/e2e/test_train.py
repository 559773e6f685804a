"""The Train page in real Chromium: a deep link on a fresh server, a run started in the
browser whose curve grows live and keeps growing after a reload, Stop, and the trained model
picked in the sidebar, then the run deleted."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from engine.training import list_runs, stop_run
from tests.e2e.conftest import LOAD, screenshot, wait_idle as _idle
from ui.sidebar import PAGES
from ui.train_figures import EPOCH_TRACE

#: the most epoch points of the live curve on the page (several charts may be in flight)
EPOCH_POINTS = f"""() => Math.max(0, ...Array.from(
    document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'), el => {{
        const trace = (el.data || []).find(t => t.name === "{EPOCH_TRACE}");
        return trace && trace.x ? trace.x.length : 0; }}))"""


def _points(page) -> int:
    return page.evaluate(EPOCH_POINTS)


def _wait_points(page, more_than: int, timeout: int = 60_000) -> int:
    page.wait_for_function(f"({EPOCH_POINTS})() > {more_than}", timeout=timeout)
    return _points(page)


@pytest.fixture
def runs_dir(tmp_path):
    folder = tmp_path / "app_home" / "runs"  # the fresh server's home (tests/e2e/conftest.py)
    yield folder
    for status in list_runs(folder) if folder.is_dir() else []:
        if status.active:  # runs outlive the server by design: end them here
            stop_run(status.run_id, folder, force=True)


def _select(page, label: str, option: str):
    page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]',
                 has_text=label).click()
    page.get_by_role("option", name=option, exact=True).click()
    _idle(page)


def test_train_live_reload_stop_and_pick_the_model(page, fresh_server, runs_dir):
    # The first request to this server is a deep link to the page.
    page.goto(fresh_server + "/train")
    expect(page.get_by_role("heading", name="Train", exact=True)).to_be_visible(timeout=LOAD)
    _idle(page)
    nav = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    assert nav.count() == len(PAGES)
    assert page.locator('[data-testid="stException"]').count() == 0

    # A tiny demo data set: 120 images of 32 pixels.
    _select(page, "Images", "120")
    _select(page, "Size (pixels)", "32")
    page.get_by_role("button", name="Create the demo data set").click()
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_visible(timeout=LOAD)
    _idle(page)
    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    epochs.fill("200")
    epochs.press("Enter")
    _idle(page)
    page.get_by_role("button", name="Start", exact=True).click()

    # The curve grows live, epoch after epoch.
    assert _wait_points(page, 2, timeout=LOAD) >= 3
    expect(page.get_by_text(re.compile(r"Running · epoch \d+/200"))).to_be_visible()
    screenshot(page, "train_running")

    # A reload is a new session: the page finds the run on disk and follows it again.
    page.reload()
    expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=LOAD)
    seen = _wait_points(page, 0)
    assert _wait_points(page, seen) > seen

    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_text("Stopped on request; the best and the last model were kept.")
           ).to_be_visible(timeout=LOAD)
    # The live fragment says "Stopped" first, then reruns the whole page for the after-run
    # views, which draws the curves anew: until Plotly has drawn them again, there are no
    # points to count. Wait for that page (its Delete button) and for the redrawn curve.
    expect(page.get_by_role("button", name="Delete this run")).to_be_visible(timeout=LOAD)
    _idle(page)
    stopped = _wait_points(page, 0)
    assert 3 <= stopped < 200
    (status,) = list_runs(runs_dir)
    assert status.state == "stopped" and status.has_model
    screenshot(page, "train_stopped")

    # The trained model is in the sidebar's model picker.
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name=re.compile(r"^Trained: scratch CNN")).click()
    expect(page.locator('[data-testid="stSidebar"]').get_by_text(
        re.compile(r"32x32 input · 6 classes · trained in run"))).to_be_visible(timeout=LOAD)
    _idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "train_model_in_sidebar")

    # Deleting the run, after a confirmation, removes its folder, and its model leaves the
    # sidebar's picker, which falls back to the demo model without an error.
    page.get_by_role("button", name="Delete this run").click()
    expect(page.get_by_role("button", name="Delete for good")).to_be_visible()
    screenshot(page, "train_delete_confirm")
    page.get_by_role("button", name="Delete for good").click()
    expect(page.get_by_role("heading", name="Runs")).to_have_count(0, timeout=LOAD)
    _idle(page)
    assert list_runs(runs_dir) == [] and not status.run_dir.exists()
    expect(page.locator('[data-testid="stSidebar"]').get_by_text(
        re.compile(r"Shapes demo CNN"))).to_be_visible(timeout=LOAD)
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    expect(page.get_by_role("option", name=re.compile(r"^Trained:"))).to_have_count(0)
    page.keyboard.press("Escape")
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "train_deleted")
