"""Screenshots of every page for the README: ``docs/<page>.png``, taken from the running app.

Starts the app as ``tests/e2e`` does (``streamlit run app.py`` headless on a free loopback port,
a temporary ``CNN_EXPLORER_HOME``) with ``CNN_EXPLORER_OFFLINE=1`` and one demo shapes data set
made beforehand (as the Data set page's button makes it), then drives headless Chromium with
Playwright's sync API through every page of ``ui.sidebar.PAGES`` on the bundled demo model and
the default images. On each page it waits for the page's content (charts drawn, pictures
decoded; on Filters it presses Start and waits for the grid), checks that the page shows no
error box, no exception and no JavaScript error, and saves the 1400x900 viewport. A PNG over
``MAX_BYTES`` is saved with 256 colours instead. Any page that fails stops the script with a
non-zero exit status, and no PNG is written for it.

    python bench/screenshots.py                       # every page into docs/ (make screenshots)
    python bench/screenshots.py --only model,saliency --out /tmp/shots
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from bench.classroom import BARS_JS, IDLE, PICTURES_JS  # noqa: E402
from tests.e2e.conftest import ARGS, CHROMIUM, run_streamlit  # noqa: E402

VIEWPORT = {"width": 1400, "height": 900}
MAX_BYTES = 400_000
#: seconds a page may take to show its content (the first model load, a job on 2 busy cores)
TIMEOUT_S = 600
#: the side of the demo data set made before the server starts (its size is the Data set page's
#: default, ``engine.data.DEMO_SET_SIZE``)
DEMO_SIDE = 64

#: Plotly charts drawn in the main area
CHARTS_JS = """() => Array.from(document.querySelectorAll(
  '[data-testid="stMain"] [data-testid="stPlotlyChart"] .js-plotly-plot'))
  .filter(el => el.data && el.data.length && el.querySelector('.main-svg')).length"""
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def page_name(script: str) -> str:
    """``app.py`` -> ``home``; ``pages/feature_maps.py`` -> ``feature_maps`` (also its URL)."""
    return "home" if script == "app.py" else Path(script).stem


def _at_least(page, js: str, n: int) -> None:
    page.wait_for_function(f"n => ({js})() >= n", arg=n, timeout=TIMEOUT_S * 1000)


def _idle(page) -> None:
    page.wait_for_selector(IDLE, timeout=TIMEOUT_S * 1000)


def _text(page, text: str) -> None:
    expect(page.get_by_text(text).first).to_be_visible(timeout=TIMEOUT_S * 1000)


def _filters(page) -> None:
    """Compute the default layer's filters (the grid is empty until Start is pressed)."""
    _text(page, "filters are in the cache")
    _idle(page)
    page.get_by_role("button", name="Start").click()
    _text(page, "Done: ")
    _text(page, "One filter up close")


def _ready(page, name: str, n_images: int) -> None:
    """Wait until the page ``name`` shows its content."""
    if name == "home":
        _at_least(page, BARS_JS, n_images)
    elif name == "tour":
        _at_least(page, CHARTS_JS, 1)
    elif name == "model":
        _at_least(page, CHARTS_JS, 2)
    elif name == "feature_maps":
        _at_least(page, CHARTS_JS, 1)
        _at_least(page, PICTURES_JS, 1)
    elif name == "dataset":
        _text(page, "Classes and splits")
        _at_least(page, CHARTS_JS, 1)
        _text(page, "What the model sees")  # the model report's section, before its button
    elif name == "saliency":
        _at_least(page, PICTURES_JS, 2 * n_images)
    elif name == "filters":
        _filters(page)
    else:  # a page added to PAGES without a check of its own: the heading, then idle
        expect(page.get_by_role("heading").first).to_be_visible(timeout=TIMEOUT_S * 1000)
    _idle(page)


def save_png(png: bytes, path: Path, max_bytes: int = MAX_BYTES) -> int:
    """Write ``png`` to ``path``, with 256 colours when it is over ``max_bytes``; the size."""
    if len(png) > max_bytes:
        out = io.BytesIO()
        Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(out, "PNG", optimize=True)
        png = out.getvalue()
    path.write_bytes(png)
    return len(png)


def shoot(url: str, names: list[str], out: Path, n_images: int) -> dict[str, dict]:
    """Visit each page and save ``out/<name>.png``; raises on a page that shows a problem."""
    results = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        js_errors: list[str] = []
        page.on("pageerror", lambda exc: js_errors.append(str(exc)))
        for name in names:
            start = time.perf_counter()
            page.goto(f"{url}/{'' if name == 'home' else name}")
            _ready(page, name, n_images)
            page.wait_for_timeout(1000)  # let charts finish their transitions
            problems = [t.strip()[:300] for t in page.locator(ERRORS).all_inner_texts()]
            problems += [f"javascript: {e}" for e in js_errors]
            if problems:
                raise RuntimeError(f"the {name} page shows problems:\n" + "\n".join(problems))
            size = save_png(page.screenshot(), out / f"{name}.png")
            results[name] = {"bytes": size, "seconds": round(time.perf_counter() - start, 1)}
            print(f"{name}: {size:,} bytes, {results[name]['seconds']} s", flush=True)
        browser.close()
    return results


def main() -> None:
    from engine.data import DEMO_SET_SIZE, export_demo
    from ui.images import DEFAULT_IMAGES
    from ui.sidebar import PAGES

    names = [page_name(script) for script, _, _ in PAGES]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--only", help=f"comma-separated pages among {', '.join(names)}")
    args = parser.parse_args()
    if args.only:
        unknown = set(args.only.split(",")) - set(names)
        if unknown:
            parser.error(f"unknown pages {sorted(unknown)}; the pages are {', '.join(names)}")
        names = [n for n in names if n in args.only.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["CNN_EXPLORER_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory(prefix="cnn_explorer_shots_") as tmp:
        home = Path(tmp)
        if "dataset" in names:
            export_demo(home / "app_home" / "datasets", DEMO_SET_SIZE, size=DEMO_SIDE, mirrors=True)
        with run_streamlit(home) as url:
            shoot(url, names, args.out, len(DEFAULT_IMAGES))


if __name__ == "__main__":
    main()
