"""AppTest for the Data set page: import, report, leaks, errors as sentences, augmentation."""

from __future__ import annotations

import json

import pytest

from engine.data import import_zip, list_datasets, load_augmentation
from tests.engine.dataset_helpers import make_zip, png, shape_png, write_tree
from tests.pages.checks import assert_clean
from ui.jobs import job_queue

PAGE = "pages/dataset.py"
HTML_CLASS = "<b>bold<b>cats"  # no "/" in a folder name


def _open(app):
    at = app().run()
    at.switch_page(PAGE)
    return _settle(at.run())


def _settle(at):
    """The report is computed by a job of the server's queue: let it finish, then redraw."""
    assert job_queue().wait_idle(120)
    return at.run()


def _texts(at, kind):
    return [element.value for element in getattr(at, kind)]


def _metrics(at):
    return {m.label: m.value for m in at.metric}


@pytest.fixture
def leaky(app_home, tmp_path):
    """A stored zip data set with one exact train/test leak and an HTML-looking class name."""
    entries = {f"{split}/{cls}/{k}.png": shape_png(40 * k + 7 * i + (split == "test") * 500)
               for i, cls in enumerate([HTML_CLASS, "dogs"])
               for split in ("train", "test") for k in range(3)}
    entries["test/dogs/leak.png"] = entries["train/dogs/0.png"]
    return import_zip(make_zip(tmp_path / "leaky.zip", entries), app_home / "datasets")


def test_empty_data_folder_asks_for_an_import(app):
    at = _open(app)
    assert_clean(at)
    assert any("Import a data set" in t for t in _texts(at, "info"))
    assert "What am I looking at?" in [e.label for e in at.expander]


def test_demo_button_creates_the_data_set_and_its_report(app, app_home):
    at = _open(app)
    at = _settle(at.button(key="dataset_demo_go").click().run())
    assert_clean(at)
    stored = list_datasets(app_home / "datasets")
    assert len(stored) == 1 and stored[0].source == "demo"
    metrics = _metrics(at)
    assert metrics["Images"] == "3,000" and metrics["Classes"] == "6"
    assert metrics["Splits"] == "3"
    assert "train 2,100 · validation 450 · test 450" in " ".join(_texts(at, "caption"))
    assert metrics["Leaks across splits"] == "0"
    counts = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["name"] for t in counts["data"]] == ["train", "validation", "test"]
    assert sum(sum(t["y"]) for t in counts["data"]) == 3000
    assert (app_home / "datasets" / stored[0].id / "report" / "report.json").is_file()


def test_stored_data_set_shows_its_leak_and_escapes_names(app, leaky):
    at = _open(app)
    assert_clean(at)
    assert at.selectbox(key="_w_dataset").value == leaky.id
    metrics = _metrics(at)
    assert metrics["Leaks across splits"] == "1" and metrics["Images"] == "13"
    warnings = " ".join(_texts(at, "warning"))
    assert "different splits" in warnings
    tabs = [t.label for t in at.tabs]
    assert "Across splits (leakage) · 1" in tabs
    # The leak pair: both file names shown as plain text.
    shown = _texts(at, "text")
    assert "test/dogs/leak.png" in shown and "train/dogs/0.png" in shown
    # The HTML-looking class name is escaped wherever Markdown shows it.
    markdown = " ".join(_texts(at, "markdown"))
    assert "<b>" not in markdown and "\\<b\\>bold\\<b\\>cats" in markdown
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["x"] == ["&lt;b&gt;bold&lt;b&gt;cats", "dogs"]


def test_folder_import_and_a_missing_folder(app, app_home, tmp_path):
    root = write_tree(tmp_path / "pets", {"cats/a.png": png((200, 0, 0)),
                                          "dogs/b.png": png((0, 0, 200))})
    at = _open(app)
    at.text_input(key="dataset_folder_path").input(str(tmp_path / "nope")).run()
    at.button(key="dataset_folder_go").click().run()
    assert not at.exception
    assert any("no folder" in e for e in _texts(at, "error"))
    at.text_input(key="dataset_folder_path").input(str(root)).run()
    at = _settle(at.button(key="dataset_folder_go").click().run())
    assert_clean(at)
    assert [d.source for d in list_datasets(app_home / "datasets")] == ["folder"]
    assert _metrics(at)["Images"] == "2"


def test_one_class_folder_is_refused_with_a_sentence(app, tmp_path):
    root = write_tree(tmp_path / "one", {"cats/a.png": png(), "cats/b.png": png()})
    at = _open(app)
    at.text_input(key="dataset_folder_path").input(str(root)).run()
    at.button(key="dataset_folder_go").click().run()
    assert not at.exception
    assert any("only one class" in e for e in _texts(at, "error"))


def test_augmentation_settings_are_saved_with_the_data_set(app, leaky):
    at = _open(app)
    at.slider(key=f"aug_rotation_{leaky.id}").set_value(30).run()
    at.toggle(key=f"aug_flip_{leaky.id}").set_value(True).run()
    assert_clean(at)
    saved = load_augmentation(leaky)
    assert saved.rotation == 30 and saved.horizontal_flip
    assert any(len(image.value) == 8 for image in at.image)  # the preview grid
    # A new session shows the saved settings.
    again = _open(app)
    assert_clean(again)
    assert again.slider(key=f"aug_rotation_{leaky.id}").value == 30
