"""Real headless Chromium (Playwright; ``CHROMIUM_PATH``, else the ``chromium`` on the PATH)
against a real Streamlit server that each test starts on a free loopback port with its own
app home."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(os.environ.get("E2E_SCREENSHOTS", "/tmp/cnn_explorer_screens"))


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM}"
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1: " + message, pytrace=False)
        pytest.skip(message)
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": ARGS}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def run_streamlit(home: Path):
    """A fresh Streamlit server on a free loopback port whose app home (data sets, runs,
    uploads, caches) is ``home / "app_home"``; yields its URL."""
    port = _free_port()
    home.mkdir(parents=True, exist_ok=True)
    log_path = home / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "CNN_EXPLORER_RUNS"}  # runs: in the home
    env["CNN_EXPLORER_HOME"] = str(home / "app_home")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError("streamlit exited:\n" + log_path.read_text())
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("streamlit did not start:\n" + log_path.read_text())
                time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def server(tmp_path):
    """This test's own server, with its own app home ``tmp_path / "app_home"``: no test sees
    another's data sets, runs, uploads or caches, whatever the order the tests run in (a
    shared server let one test's data set fold another's import section)."""
    with run_streamlit(tmp_path) as url:
        yield url


@pytest.fixture
def fresh_server(server):
    """The same server, named for the tests whose first request must be the server's first
    (deep links): nobody has visited it yet."""
    return server


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


#: ms: TensorFlow's first import plus the first model load on a 2-core machine
LOAD = 90_000


def wait_idle(page) -> None:
    """Wait until the Streamlit script has finished its run."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]',
                           timeout=LOAD)


def choose(page, label: str, option: str, *, exact: bool = False) -> None:
    """Pick ``option`` in the main area's selectbox labelled ``label``, then wait for the rerun."""
    page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').filter(
        has_text=label).first.click()
    page.get_by_role("option", name=option, exact=exact).click()
    wait_idle(page)


def choose_scratch_model(page) -> None:
    """Pick the untrained scratch CNN in the sidebar's model picker and wait until it is loaded."""
    page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.click()
    page.get_by_role("option", name="Scratch CNN (untrained)").click()
    expect(page.get_by_text(re.compile(r"Scratch CNN \(untrained\) · 128x128"))).to_be_visible(
        timeout=LOAD)
    wait_idle(page)


def set_steps(page, steps: int) -> None:
    """Filters page: type the optimisation steps into its Settings, then wait for the rerun."""
    page.locator('[data-testid="stExpander"] summary', has_text="Settings").click()
    field = page.get_by_role("spinbutton", name="Steps")
    field.fill(str(steps))
    field.press("Enter")
    wait_idle(page)
