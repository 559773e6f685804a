"""A small class on one server (the CI form of ``bench/classroom.py``): five students open the
app at once, each in their own browser context, and go Home -> pick an image -> Saliency ->
Feature maps -> another block. No step may fail, every session must see every page's main
figure, and the server's peak memory must stay within 1.5x one session plus 50 MB a session.
Then: the job of a browser tab that was closed is cancelled."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from bench.classroom import STEPS, classroom, server_pid
from tests.e2e.conftest import CHROMIUM, LOAD, run_streamlit, screenshot, set_steps, wait_idle

SESSIONS = 5


def test_five_sessions_at_once(fresh_server):
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1: Chromium not found at {CHROMIUM}", pytrace=False)
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    pid = server_pid(int(fresh_server.rsplit(":", 1)[1]))
    assert pid is not None
    # The first session (which also loads TensorFlow and the model) is the one-session figure.
    # Playwright's async API in a thread of its own: pytest-playwright's sync API may hold an
    # event loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        report = pool.submit(asyncio.run, classroom(fresh_server, pid, sessions=SESSIONS,
                                                    baseline=0, timeout_s=120)).result()
    messages = (report["warm_up_session"]["error_messages"]
                + report["concurrent"]["error_messages"])
    assert report["errors"] == 0, messages
    assert report["concurrent"]["complete_sessions"] == SESSIONS
    assert all(report["concurrent"]["steps"][step]["n"] == SESSIONS for step in STEPS)
    memory = report["server_peak_rss_mb"]
    assert memory["goal_met"], memory


def _filters_with_long_steps(page, url):
    page.goto(url + "/filters")
    expect(page.get_by_text("filters are in the cache")).to_be_visible(timeout=LOAD)
    wait_idle(page)
    set_steps(page, 2048)


def test_the_job_of_a_closed_tab_is_cancelled(browser, tmp_path, monkeypatch):
    """Alice starts a whole layer (minutes of work) and closes her tab; the server notices
    that her session is gone and cancels the job, which Bob then sees as stopped."""
    monkeypatch.setenv("CNN_EXPLORER_JOB_GRACE_S", "1")
    with run_streamlit(tmp_path) as url:
        alice = browser.new_context()
        page = alice.new_page()
        _filters_with_long_steps(page, url)
        page.get_by_role("button", name="Start").click()
        expect(page.get_by_text(re.compile(r"Computing: \d+ of 16 filters done"))
               ).to_be_visible(timeout=LOAD)
        alice.close()  # the websocket closes: Streamlit's runtime drops the session

        bob = browser.new_context()
        page = bob.new_page()
        _filters_with_long_steps(page, url)  # the same layer and settings: the same job
        expect(page.get_by_text(re.compile(r"Stopped: \d+ of 16 filters done"))
               ).to_be_visible(timeout=30_000)
        screenshot(page, "classroom_cancelled_job")
        bob.close()
