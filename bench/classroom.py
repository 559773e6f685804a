"""Load test: a class of N students on one server, each in their own headless browser context.

Every session does what a student does first: open Home (predictions of the default images),
pick one more image in the sidebar, open Saliency (Grad-CAM of each image), open Feature maps,
switch to another block of layers, and open Home again (a reload: a new Streamlit session in a
browser that already holds Streamlit's and Plotly's scripts, as for a student coming back). For
each step it times how long until that page's main figure is on screen (Home: the top-5 bars of
every image; Saliency: every overlay and raw map decoded; Feature maps: the grid of the layer's
maps drawn). The first ``home`` includes the browser loading the app's scripts in a fresh
context (about 1 s for Streamlit's on a two-core machine; Home draws no Plotly chart, so Plotly's
4.7 MB script is loaded only on the next page);
``home_again`` is the same page without that. Errors: a step that timed out or
failed, a Streamlit exception box, a JavaScript error. An image name typed into the picker while
the page was rerunning can be dropped by the browser; it is typed again (counted in
``image_picks_typed_again``, its time included in the step's).

The floors: the same fresh-context load of a one-element Streamlit page (``FLOOR_APP``, its own
server), what no Streamlit app can beat on this machine, and of a page with Home's elements and
none of its work (``FLOOR_HOME_APP``: the sidebar's links and widgets, the title, the images and
their bars), what Home cannot beat without drawing fewer kinds of element;
``home_over_floor`` and ``home_over_home_elements_floor`` are the ratios.

It compares N concurrent sessions with one session alone on the same server (the ratio of the
p50 and p95 times), and the server's peak memory (VmHWM of the server and its children) after
one session with the peak after N sessions; the goal is peak(N) <= 1.5 x peak(1) + 50 MB x N,
which only holds when models and caches are shared, not copied per session.

    python bench/classroom.py                      # 30 sessions, starts its own server
    python bench/classroom.py --sessions 5 --baseline 1
    python bench/classroom.py --sessions 1 --baseline 5     # single-session step times (~2 min)
    python bench/classroom.py --url http://127.0.0.1:8501 --pid 1234   # a running server

Prints JSON. One Chromium, one context per session (Playwright's async API).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.async_api import TimeoutError as PlaywrightTimeout  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from tests.e2e.conftest import ARGS, CHROMIUM, _free_port, run_streamlit  # noqa: E402
from ui.sidebar import PAGES  # noqa: E402

STEPS = ("home", "pick_image", "saliency", "feature_maps", "switch_layer", "home_again")
#: images a session adds (a different one per session, round robin)
EXTRA_IMAGES = ["Shape: circle", "Shape: cross", "Shape: square", "Shape: triangle"]
MAIN = '[data-testid="stMain"]'
SIDEBAR = '[data-testid="stSidebar"]'

#: images on Home whose top-5 bars are drawn (five bars each)
BARS_JS = """() => Math.floor(document.querySelectorAll(
  '[data-testid="stMain"] [data-testid="stProgress"] [role="progressbar"]').length / 5)"""
#: decoded pictures in the main area (Saliency: an overlay and a raw map per image)
PICTURES_JS = """() => Array.from(document.querySelectorAll(
  '[data-testid="stMain"] [data-testid="stImage"] img'))
  .filter(i => i.complete && i.naturalWidth > 0).length"""
#: tiles drawn in a feature-map grid that was not there before ``MARK_GRID_JS``
GRID_JS = """() => {
  const plots = Array.from(
    document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'));
  const grid = plots.find(el => el.data && el.data.length === 2 && el.data[0].type === 'image'
                          && !el.data.__seen);
  return grid ? grid.querySelectorAll('g.points path').length : 0;
}"""
MARK_GRID_JS = """() => document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')
  .forEach(el => { if (el.data) el.data.__seen = true; })"""
#: the floor: a Streamlit page with one element, loaded the same way
FLOOR_APP = 'import streamlit as st\nst.progress(0.5, text="floor")\n'
#: the second floor: Home's frame and elements with none of its work (no model, no
#: TensorFlow): the sidebar's links and widgets, the title, the explainer, the default images
#: with five bars each. Streamlit loads each kind of element's script on its first use.
FLOOR_HOME_APP = f'''import numpy as np
import streamlit as st
from PIL import Image
from skimage import data

st.set_page_config(page_title="floor", layout="wide")
TITLES = {[title for _, title, _ in PAGES]!r}
with st.sidebar:
    st.markdown("### CNN Explorer")
    for title in TITLES:
        st.page_link("https://example.org/" + title.split()[0], label=title,
                     icon=":material/home:")
    st.divider()
    st.selectbox("Model", ["Shapes demo CNN (bundled)", "VGG16"])
    st.caption("Shapes demo CNN · 64x64 input · 6 classes")
    st.divider()
    st.file_uploader("Upload images", accept_multiple_files=True)
    st.multiselect("Images", ["Shape: star", "Shape: ring", "Photo: cat"],
                   default=["Shape: star", "Shape: ring", "Photo: cat"])
    st.divider()
    st.toggle("Presenter mode")
st.title("CNN Explorer")
with st.expander("What am I looking at?"):
    st.markdown("A convolutional neural network...")
st.markdown("Look inside convolutional neural networks.")
for col, title in zip(st.columns(len(TITLES) - 1), TITLES[1:]):
    col.page_link("https://example.org/" + title.split()[0], label=title, icon=":material/home:")
st.subheader("Predictions")
images = [np.asarray(Image.open("{ROOT / "assets" / "images"}/shape_" + n + ".png")
                     .convert("RGB")) for n in ("star", "ring")] + [data.chelsea()]
for col, image in zip(st.columns(3), images):
    with col.container(border=True):
        st.image(image, caption="an image", width="stretch")
        st.markdown("**star** · 97.0%")
        for k in range(5):
            st.progress(0.5 - 0.1 * k, text=f"class {{k}} · {{50 - 10 * k}}.0%")
'''
FLOOR_JS = """() => document.querySelectorAll('[data-testid="stProgress"]').length"""
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
PICK_TRIES, PICK_RETRY_MS = 3, 20_000
#: where a failed step's screenshot goes ($CLASSROOM_SHOTS; none when unset)
SHOTS = Path(os.environ["CLASSROOM_SHOTS"]) if os.environ.get("CLASSROOM_SHOTS") else None


# ---------------------------------------------------------------------------------- memory
def server_pid(port: int) -> int | None:
    """The process started as ``streamlit run ... --server.port <port>``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"streamlit" in b" ".join(args) and b"--server.port" in args \
                and args[args.index(b"--server.port") + 1] == str(port).encode():
            return int(entry.name)
    return None


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def peak_memory_mb(pid: int) -> float:
    """VmHWM (peak resident memory) of ``pid`` plus that of all its descendants, in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        todo.extend(_children(p))
    return total / 1024


# ---------------------------------------------------------------------------------- sessions
async def _idle(page, timeout_ms: int) -> None:
    await page.wait_for_selector(IDLE, timeout=timeout_ms)


async def _at_least(page, js: str, n: int, timeout_ms: int) -> None:
    await page.wait_for_function(f"n => ({js})() >= n", arg=n, timeout=timeout_ms)


async def _nav(page, title: str) -> None:
    await page.locator(f'{SIDEBAR} [data-testid="stPageLink-NavLink"]', has_text=title).click()


async def _open_home(page, url: str, timeout_ms: int) -> tuple[int, float]:
    """Open Home and wait for its bars, then for the end of its run; returns how many images
    have their bars and when the bars were there (``time.perf_counter``), which is the step's
    end, as for the other steps (the wait for the end of the run is not counted)."""
    await page.goto(url + "/", wait_until="commit")
    await _at_least(page, BARS_JS, 1, timeout_ms)
    shown_at = time.perf_counter()
    shown = await page.evaluate(BARS_JS)
    await _idle(page, timeout_ms)
    return shown, shown_at


async def one_session(browser, url: str, index: int, timeout_ms: int) -> dict:
    """A student's first minutes; returns ``{"times": {step: seconds}, "errors": [...]}``."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(timeout_ms)  # navigation and clicks wait as long as figures
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"javascript: {exc}"))
    times: dict[str, float] = {}
    retries = 0
    step = STEPS[0]
    try:
        start = time.perf_counter()
        shown, shown_at = await _open_home(page, url, timeout_ms)
        times[step] = shown_at - start

        step = "pick_image"
        start = time.perf_counter()
        images = shown + 1
        for attempt in range(PICK_TRIES):
            # Typing can land while the page reruns (and be dropped): then type it again.
            await page.locator(f'{SIDEBAR} [data-testid="stMultiSelect"] input').first.click()
            await page.keyboard.type(EXTRA_IMAGES[index % len(EXTRA_IMAGES)])
            await page.keyboard.press("Enter")
            await page.keyboard.press("Escape")
            try:
                await _at_least(page, BARS_JS, images,
                                timeout_ms if attempt == PICK_TRIES - 1 else PICK_RETRY_MS)
                break
            except PlaywrightTimeout:
                retries += 1
        times[step] = time.perf_counter() - start
        await _idle(page, timeout_ms)

        step = "saliency"
        start = time.perf_counter()
        await _nav(page, "Saliency")
        await _at_least(page, PICTURES_JS, 2 * images, timeout_ms)
        times[step] = time.perf_counter() - start
        await _idle(page, timeout_ms)

        step = "feature_maps"
        start = time.perf_counter()
        await _nav(page, "Feature maps")
        await _at_least(page, GRID_JS, 1, timeout_ms)
        times[step] = time.perf_counter() - start
        await _idle(page, timeout_ms)

        step = "switch_layer"
        await page.evaluate(MARK_GRID_JS)
        start = time.perf_counter()
        await page.locator(f'{MAIN} [data-testid="stSelectbox"]').filter(
            has_text="Block").first.click()
        # The deepest block of convolutions: another layer than the default one.
        await page.get_by_role("option", name=re.compile(r"^Block ")).last.click()
        await _at_least(page, GRID_JS, 1, timeout_ms)
        times[step] = time.perf_counter() - start
        await _idle(page, timeout_ms)

        step = "home_again"
        start = time.perf_counter()
        _, shown_at = await _open_home(page, url, timeout_ms)
        times[step] = shown_at - start
    except Exception as exc:  # a failed step is a result, not a crash of the benchmark
        errors.append(f"{step}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        if SHOTS:
            SHOTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(SHOTS / f"session{index}_{step}.png"), full_page=True)
    try:
        boxes = await page.locator('[data-testid="stException"]').count()
        if boxes:
            errors.append(f"{boxes} Streamlit exception box(es) on the last page")
    finally:
        await context.close()
    return {"session": index, "times": times, "errors": errors, "pick_retries": retries}


@contextlib.contextmanager
def floor_server(home: Path, source: str = FLOOR_APP):
    """A Streamlit server of ``source`` (``FLOOR_APP``) on a free loopback port; yields its
    URL."""
    (home / "floor").mkdir(parents=True, exist_ok=True)
    (home / "floor" / "app.py").write_text(source)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false"],
        cwd=home / "floor", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def floor_times(browser, url: str, n: int, timeout_ms: int,
                      shown_js: str = FLOOR_JS) -> list[float]:
    """Seconds until ``shown_js`` counts one element of a floor app (``FLOOR_APP``'s one
    element), in ``n`` fresh contexts."""
    times = []
    for _ in range(n):
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        start = time.perf_counter()
        await page.goto(url + "/", wait_until="commit")
        await _at_least(page, shown_js, 1, timeout_ms)
        times.append(time.perf_counter() - start)
        await context.close()
    return times


async def run_sessions(browser, url: str, n: int, timeout_ms: int, first: int = 0) -> list:
    """``n`` sessions at once."""
    return await asyncio.gather(*(one_session(browser, url, first + i, timeout_ms)
                                  for i in range(n)))


# ---------------------------------------------------------------------------------- report
def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def summarise(results: list[dict]) -> dict:
    """Errors, complete sessions, and p50/p95 seconds per step."""
    steps = {}
    for step in STEPS:
        values = [r["times"][step] for r in results if step in r["times"]]
        steps[step] = {"n": len(values),
                       "p50_s": _round(_quantile(values, 0.5)),
                       "p95_s": _round(_quantile(values, 0.95))}
    return {"sessions": len(results),
            "errors": sum(len(r["errors"]) for r in results),
            "error_messages": sorted({e for r in results for e in r["errors"]})[:10],
            "complete_sessions": sum(all(s in r["times"] for s in STEPS) for r in results),
            "image_picks_typed_again": sum(r.get("pick_retries", 0) for r in results),
            "steps": steps}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(seconds: float | None, floor: list[float]) -> float | None:
    return _round(seconds / _quantile(floor, 0.5), 2) if seconds else None


def _ratios(many: dict, one: dict) -> dict:
    out = {}
    for step in STEPS:
        m, o = many["steps"][step], one["steps"][step]
        out[step] = {q: _round(m[q] / o[q], 2) if m[q] and o[q] else None
                     for q in ("p50_s", "p95_s")}
    return out


async def classroom(url: str, pid: int, sessions: int = 30, baseline: int = 3,
                    timeout_s: float = 600.0) -> dict:
    """The whole measurement against a running server (``pid`` for its memory).

    A first session warms the server up (TensorFlow, the model, the pages' caches); the peak
    memory after it is the one-session figure. ``baseline`` sessions then run one after the
    other (the single-session times), then ``sessions`` at once.
    """
    timeout_ms = int(timeout_s * 1000)
    load_before = os.getloadavg()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            warm = await run_sessions(browser, url, 1, timeout_ms)
            memory_one = peak_memory_mb(pid)
            floors = {}
            for name, source, shown_js in (("one_element", FLOOR_APP, FLOOR_JS),
                                           ("home_elements", FLOOR_HOME_APP, BARS_JS)):
                with tempfile.TemporaryDirectory(prefix="floor-") as home, \
                        floor_server(Path(home), source) as floor_url:
                    await floor_times(browser, floor_url, 1, timeout_ms, shown_js)  # warm-up
                    floors[name] = await floor_times(browser, floor_url, max(baseline, 3),
                                                     timeout_ms, shown_js)
            single = []
            for i in range(baseline):
                single += await run_sessions(browser, url, 1, timeout_ms, first=1 + i)
            start = time.perf_counter()
            many = await run_sessions(browser, url, sessions, timeout_ms, first=1 + baseline)
            wall = time.perf_counter() - start
            memory_many = peak_memory_mb(pid)
        finally:
            await browser.close()
    one, concurrent = summarise(single or warm), summarise(many)
    goal_mb = 1.5 * memory_one + 50 * sessions
    return {
        "benchmark": "classroom",
        "sessions": sessions,
        "errors": summarise(warm + single)["errors"] + concurrent["errors"],
        "goal_errors": 0,
        "single_session": one,
        "streamlit_floor": {"p50_s": _round(_quantile(floors["one_element"], 0.5)),
                            "what": "a one-element Streamlit page in a fresh browser context"},
        "home_elements_floor": {
            "p50_s": _round(_quantile(floors["home_elements"], 0.5)),
            "what": "Home's sidebar, title, images and bars with none of its work, loaded "
                    "the same way (until the bars show)"},
        "home_over_floor_p50": _ratio(one["steps"]["home"]["p50_s"], floors["one_element"]),
        "home_over_home_elements_floor_p50": _ratio(one["steps"]["home"]["p50_s"],
                                                    floors["home_elements"]),
        "warm_up_session": summarise(warm),
        "concurrent": concurrent,
        "concurrent_wall_s": round(wall, 1),
        "ratio_concurrent_over_single": _ratios(concurrent, one),
        "server_peak_rss_mb": {"one_session": round(memory_one, 1),
                               f"{sessions}_sessions": round(memory_many, 1),
                               "ratio": round(memory_many / memory_one, 2),
                               "per_extra_session_mb": round(
                                   (memory_many - memory_one) / max(sessions - 1, 1), 1),
                               "goal_mb": round(goal_mb, 1),
                               "goal": "<= 1.5 x one session + 50 MB per session",
                               "goal_met": memory_many <= goal_mb},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--baseline", type=int, default=3,
                        help="single sessions, one after the other, for the baseline times")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per step")
    parser.add_argument("--url", help="a running server (default: start one on loopback)")
    parser.add_argument("--pid", type=int, help="the running server's process id")
    args = parser.parse_args()
    if args.url:
        pid = args.pid or server_pid(int(args.url.rsplit(":", 1)[1].split("/")[0]))
        if pid is None:
            parser.error("could not find the server's process: pass --pid")
        report = asyncio.run(classroom(args.url, pid, args.sessions, args.baseline,
                                       args.timeout))
    else:
        with tempfile.TemporaryDirectory(prefix="classroom-") as home, \
                run_streamlit(Path(home)) as url:
            pid = server_pid(int(url.rsplit(":", 1)[1]))
            report = asyncio.run(classroom(url, pid, args.sessions, args.baseline,
                                           args.timeout))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
