"""AppTest of "What the model sees" (the Data set page's model report) and of the "Most similar
training images" expander of the Home and Saliency pages, with the demo model."""

from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
import pytest

import ui.model_report
from engine.data import import_folder
from tests.engine.dataset_helpers import shape_png, write_tree
from tests.pages.checks import assert_clean
from tests.planted import planted_dataset
from ui.jobs import job_queue

PAGE = "pages/dataset.py"
ODD_CLASS = "<b>bold<b>cats"  # a class name that looks like HTML


def _settle(at):
    """Let the queue's jobs (the report, the UMAP map) finish, then redraw."""
    assert job_queue().wait_idle(300)
    return at.run()


def _open(app, **state):
    at = app().run()
    at.switch_page(PAGE)
    for key, value in state.items():
        at.session_state[key] = value
    return _settle(at.run())


def _charts(at) -> dict[str, dict]:
    """The Plotly charts by their title (untitled ones by their position)."""
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {s["layout"].get("title", {}).get("text", str(i)): s for i, s in enumerate(specs)}


def _values(array) -> list:
    """A Plotly array of a chart's spec: a list, or NumPy's bytes as base64 (``bdata``)."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), array["dtype"]).tolist()
    return np.ravel(array).tolist()


def _texts(at, kind) -> str:
    return " ".join(str(e.value) for e in getattr(at, kind))


@pytest.fixture
def pca_only(monkeypatch):
    """The UMAP job waits until UMAP is chosen (its first run compiles for ~45 s; the slow
    test below lets it run)."""
    monkeypatch.setattr(ui.model_report, "AUTO_UMAP", False)


@pytest.fixture
def planted(app_home, tmp_path):
    return planted_dataset(tmp_path / "planted", app_home / "datasets", 96, size=32)


@pytest.fixture
def other_classes(app_home, tmp_path):
    """Two classes the demo model does not know, one with an HTML-looking name."""
    tree = write_tree(tmp_path / "pets", {f"{cls}/{k}.png": shape_png(6 * k + 3 * i, size=32)
                                          for i, cls in enumerate([ODD_CLASS, "dogs"])
                                          for k in range(8)})
    return import_folder(tree, app_home / "datasets")


def test_report_runs_on_a_button_and_shows_map_table_and_confusion(app, planted, pca_only):
    ds, flipped = planted
    at = _open(app, mr_projection="PCA")
    assert_clean(at)
    assert "look mislabelled" not in _texts(at, "info")  # nothing computed before the click
    at = _settle(at.button(key="mr_go").click().run())
    at = _settle(at)
    assert_clean(at)
    assert "look mislabelled" in _texts(at, "info")
    charts = _charts(at)
    assert "PCA of the model's features" in charts
    shown = [i for t in charts["PCA of the model's features"]["data"]
             for i in _values(t["customdata"])]
    assert sorted(shown) == list(range(len(ds.files)))  # every image once
    table = next(d.value for d in at.dataframe if "suggested" in d.value.columns)
    assert len(table) >= 1
    # Each row's given label is the folder the file sits in; the suggestion differs from it.
    assert all(f.split("/")[1] == g for f, g in zip(table["file"], table["given"]))
    assert all(table["given"] != table["suggested"])
    assert all(str(u).startswith("data:image/") for u in table["image"][:5])
    assert [b.label for b in at.get("download_button")].count("Download the list (CSV)") == 1


def test_issues_csv_lists_every_row_in_rank_order():
    rows = [{"file": "train/a,b/1.png", "given": "a", "suggested": "b", "score": 0.1},
            {"file": "train/c/2.png", "given": "c", "suggested": "a", "score": 0.25}]
    read = list(csv.reader(io.StringIO(ui.model_report.issues_csv(rows))))
    assert read == [["rank", "file", "given", "suggested", "score"],
                    ["1", "train/a,b/1.png", "a", "b", "0.100000"],
                    ["2", "train/c/2.png", "c", "a", "0.250000"]]


def test_classes_the_model_does_not_know(app, other_classes, pca_only):
    at = _open(app, mr_projection="PCA")
    at = _settle(at.button(key="mr_go").click().run())
    assert_clean(at)
    assert "not this data set's" in _texts(at, "caption")
    charts = _charts(at)
    names = [t["name"] for t in charts["PCA of the model's features"]["data"]]
    assert names == ["&lt;b&gt;bold&lt;b&gt;cats", "dogs"]
    confusion = next(s for s in charts.values() if s["data"][0]["type"] == "heatmap")
    assert sum(_values(confusion["data"][0]["z"])) == 16
    assert at.selectbox(key="mr_nn_image") is not None


def test_home_expander_computes_nothing_until_opened_and_clicked(app, other_classes):
    at = app().run()
    assert_clean(at)
    assert "Most similar training images" in [e.label for e in at.expander]
    assert not [s for s in at.selectbox if s.key == "home_similar_ds"]  # closed: nothing ran
    at.session_state["home_similar"] = True
    at.run()
    assert at.selectbox(key="home_similar_ds").value == other_classes.id
    assert job_queue().get(ui.model_report._key(other_classes, _demo())) is None
    at = _settle(at.button(key="home_similar_go").click().run())
    assert_clean(at)
    grid = [c for c in at.get("plotly_chart") if "home_similar_grid" in c.proto.id]
    assert len(grid) == 1
    at.switch_page("pages/saliency.py").run()
    assert_clean(at)
    assert "Most similar training images" in [e.label for e in at.expander]


def _demo():
    from ui.models import get_model

    return get_model("demo")


@pytest.mark.slow
def test_pca_first_then_the_umap_map(app, other_classes):
    at = _open(app)
    at.button(key="mr_go").click().run()
    job = job_queue().get(ui.model_report._key(other_classes, _demo()))
    assert job.wait(300)
    at.run()
    assert "UMAP is still being laid out; PCA meanwhile." in _texts(at, "caption")
    assert "PCA of the model's features" in _charts(at)
    at = _settle(at)
    assert_clean(at)
    assert "UMAP of the model's features" in _charts(at)


def test_near_duplicates_by_features_are_listed_with_both_images(app, app_home, tmp_path,
                                                                 pca_only):
    """A copy of one image under another name in another class: the pair is listed by
    features, both files and their labels, beside the report's pixel-hash duplicates."""
    entries = {f"{cls}/{k}.png": shape_png(6 * k + 3 * i, size=32)
               for i, cls in enumerate(["cats", "dogs"]) for k in range(8)}
    entries["dogs/copy_of_cat_2.png"] = entries["cats/2.png"]
    import_folder(write_tree(tmp_path / "pets", entries), app_home / "datasets")
    at = _open(app, mr_projection="PCA")
    at = _settle(at.button(key="mr_go").click().run())
    assert_clean(at)
    pairs = next(d.value for d in at.dataframe if "file a" in d.value.columns)
    found = {frozenset((a.split("/")[-1], b.split("/")[-1]))
             for a, b in zip(pairs["file a"], pairs["file b"])}
    assert frozenset(("2.png", "copy_of_cat_2.png")) in found
    row = pairs[[{"2.png", "copy_of_cat_2.png"} == {a.split("/")[-1], b.split("/")[-1]}
                 for a, b in zip(pairs["file a"], pairs["file b"])]].iloc[0]
    assert {row["label a"], row["label b"]} == {"cats", "dogs"}
    assert row["distance"] == pytest.approx(0.0, abs=1e-4)
    assert "Near-duplicates by features" in _texts(at, "markdown")
