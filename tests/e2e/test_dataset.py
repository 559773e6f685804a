"""Data set page in real Chromium: a deep link on a fresh server, and a zip uploaded through the
file chooser whose report shows the planted train/test leak as an image pair."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import LOAD, screenshot, wait_idle as _idle
from tests.engine.dataset_helpers import make_zip, shape_png
from ui.sidebar import PAGES


def _upload_zip(page, path) -> None:
    """Choose ``path`` in the main area's zip uploader, unfolding the import section first
    when data sets exist already (its expander's summary: other texts may say "Import")."""
    # by its key: the model report's neighbour tab has an image uploader of its own
    uploader = page.locator('[data-testid="stMain"] .st-key-dataset_zip '
                            '[data-testid="stFileUploader"]')
    summary = page.locator('[data-testid="stMain"] [data-testid="stExpander"] summary',
                           has_text="Import a data set")
    for _ in range(3):  # a click that lands while the page reruns can be undone by the rerun
        _idle(page)
        try:
            expect(uploader).to_be_visible(timeout=3_000)
            break
        except AssertionError:
            summary.click()
    expect(uploader).to_be_visible()
    with page.expect_file_chooser() as chooser:
        uploader.locator("[data-testid=stBaseButton-secondary]").click()
    chooser.value.set_files(str(path))


def _leaky_zip(path):
    entries = {f"pets/{split}/{cls}/{k}.png": shape_png(100 * i + 10 * k + (split == "test"))
               for i, cls in enumerate(["cats", "dogs <i>x</i>".replace("/", "")])
               for split in ("train", "test") for k in range(3)}
    entries["pets/test/dogs <i>x<i>/leak.png"] = entries["pets/train/dogs <i>x<i>/0.png"]
    entries["pets/train/cats/notes.txt"] = b"not an image"
    return make_zip(path, entries)


def test_deep_link_to_the_data_set_page_on_a_fresh_server(page, fresh_server):
    page.goto(fresh_server + "/dataset")
    expect(page.get_by_role("heading", name="Data set", exact=True)).to_be_visible(timeout=LOAD)
    expect(page.get_by_text("Import a data set above to see its report.")).to_be_visible(
        timeout=LOAD)
    _idle(page)
    nav = page.locator('[data-testid="stSidebar"] [data-testid="stPageLink-NavLink"]')
    assert nav.count() == len(PAGES)
    assert page.locator('[data-testid="stException"]').count() == 0


def test_upload_a_zip_and_see_the_report_and_the_leak_pair(page, server, tmp_path):
    page.goto(server + "/dataset")
    expect(page.get_by_role("heading", name="Data set", exact=True)).to_be_visible(timeout=LOAD)
    _idle(page)
    _upload_zip(page, _leaky_zip(tmp_path / "pets.zip"))

    leaks = page.locator('[data-testid="stMetric"]', has_text="Leaks across splits")
    expect(leaks).to_contain_text("1", timeout=LOAD)
    expect(page.get_by_text(re.compile(r"different splits"))).to_be_visible(timeout=LOAD)
    # The leak pair, both images and both paths (the odd class name shown as text).
    tab = page.get_by_role("tab", name=re.compile(r"Across splits \(leakage\) · 1"))
    expect(tab).to_be_visible()
    expect(page.get_by_text("test/dogs <i>x<i>/leak.png", exact=True)).to_be_visible()
    expect(page.get_by_text("train/dogs <i>x<i>/0.png", exact=True)).to_be_visible()
    expect(page.get_by_text("Exact copy").first).to_be_visible()
    # The skipped file is listed with its reason; charts and samples are drawn.
    expect(page.locator('[data-testid="stMetric"]', has_text="Files not used")).to_contain_text(
        "1")
    expect(page.locator('[data-testid="stPlotlyChart"]')).to_have_count(5, timeout=LOAD)
    _idle(page)
    assert page.locator("[data-testid=stMain] i").count() == 0  # no HTML from names
    assert page.locator('[data-testid="stException"]').count() == 0
    screenshot(page, "dataset_report")


def test_a_zip_bomb_is_refused_with_a_sentence(page, server, tmp_path):
    bomb = make_zip(tmp_path / "bomb.zip", {"a/x.bmp": b"\x00" * (3 * 2**20), "b/y.png":
                                            shape_png(1)})
    page.goto(server + "/dataset")
    expect(page.get_by_role("heading", name="Data set", exact=True)).to_be_visible(timeout=LOAD)
    _idle(page)
    _upload_zip(page, bomb)
    expect(page.get_by_text(re.compile(r"The zip was not imported: .*zip bomb"))).to_be_visible(
        timeout=LOAD)
    _idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
