"""The small-data lesson in real Chromium: started from the Train page on a fresh home, its four
runs' curves grow in one chart, a reload mid-run finds them again, and the comparison table
fills in when they end."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from engine.training import list_runs, stop_run
from engine.training.lesson import STEPS
from tests.e2e.conftest import LOAD, screenshot, wait_idle

#: how many of the experiment's runs have training-curve points in the overlaid chart (its
#: training traces are named "<step> · train"; numpy x values reach Plotly as typed arrays)
RUNS_DRAWN = """() => { const names = new Set();
    document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot').forEach(el => {
        (el.data || []).forEach(t => {
            const n = !t.x ? 0 : (t.x.length !== undefined ? t.x.length :
                                  (t.x.bdata ? t.x.bdata.length : 0));
            if (n && t.name && t.name.endsWith(" · train")) names.add(t.legendgroup); }); });
    return names.size; }"""
#: ms for the four runs of 2 epochs each (a process start, 300 images, evaluation) on 2 cores
EXPERIMENT = 600_000


@pytest.fixture
def runs_dir(tmp_path):
    folder = tmp_path / "app_home" / "runs"  # the server's home (tests/e2e/conftest.py)
    yield folder
    for status in list_runs(folder) if folder.is_dir() else []:
        if status.active:  # runs outlive the server by design: end them here
            stop_run(status.run_id, folder, force=True)


def _drawn(page, more_than: int, timeout: int = EXPERIMENT) -> int:
    page.wait_for_function(f"({RUNS_DRAWN})() > {more_than}", timeout=timeout)
    return page.evaluate(RUNS_DRAWN)


def test_the_small_data_experiment_from_a_fresh_home(page, fresh_server, runs_dir):
    page.goto(fresh_server + "/train")
    expect(page.get_by_role("heading", name=re.compile("^Small data"))).to_be_visible(
        timeout=LOAD)
    wait_idle(page)
    epochs = page.get_by_label("Epochs of each run", exact=True)
    epochs.fill("2")
    epochs.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Run the small-data experiment").click()

    # The first run's curves appear; the others join as they start.
    before = _drawn(page, 0, timeout=LOAD * 2)
    expect(page.get_by_text(re.compile(r"run [1-4] of 4"))).to_be_visible(timeout=LOAD)
    assert not page.get_by_text("4 of 4 runs ended").is_visible()  # still going
    screenshot(page, "lesson_running")

    # A reload (mid-run: four runs take over a minute) is a new session: the experiment is
    # found on disk and its curves are drawn again, as many as before or more.
    page.reload()
    expect(page.get_by_role("heading", name=re.compile("^Small data"))).to_be_visible(
        timeout=LOAD)
    assert _drawn(page, before - 1, timeout=LOAD) >= before

    # When all four have ended, the table compares them.
    expect(page.get_by_text("4 of 4 runs ended")).to_be_visible(timeout=EXPERIMENT)
    wait_idle(page)
    assert _drawn(page, 3, timeout=LOAD) == 4
    # The live view reruns every second until the job has ended and the page has redrawn
    # itself, so the table may be replaced under a held handle: wait for the end, and scroll
    # with one query made at the moment of scrolling.
    expect(page.get_by_role("button", name="Stop the experiment")).to_have_count(0, timeout=LOAD)
    wait_idle(page)
    expect(page.locator('[data-testid="stDataFrame"]').first).to_be_visible(timeout=LOAD)
    screenshot(page, "lesson_done")
    page.evaluate("document.querySelector('[data-testid=\"stDataFrame\"]')"
                  ".scrollIntoView({block: 'center'})")
    screenshot(page, "lesson_table")
    statuses = list_runs(runs_dir)
    assert sorted(s.name for s in statuses) == sorted(label for label, _, _ in STEPS)
    assert all(s.state == "finished" and s.has_model for s in statuses)
    assert page.locator('[data-testid="stException"]').count() == 0
