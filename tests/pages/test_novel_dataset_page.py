"""AppTest for the Data set page's "New shapes (small)" tab."""

from __future__ import annotations

from engine.data import (
    NOVEL_CLASS_NAMES,
    NOVEL_SMALL_TEST_PER_CLASS,
    NOVEL_SMALL_TRAIN_PER_CLASS,
    NOVEL_SMALL_VALIDATION_PER_CLASS,
    list_datasets,
)
from tests.pages.checks import assert_clean
from ui.jobs import job_queue

PAGE = "pages/dataset.py"


def test_new_shapes_button_creates_the_small_set_and_its_report(app, app_home):
    at = app().run()
    at.switch_page(PAGE)
    at = at.run()
    assert at.number_input(key="dataset_novel_train").value == NOVEL_SMALL_TRAIN_PER_CLASS
    at.number_input(key="dataset_novel_train").set_value(2)
    at.select_slider(key="dataset_novel_side").set_value(32)
    at = at.button(key="dataset_novel_go").click().run()
    assert job_queue().wait_idle(120)  # the report is a job of the server's queue
    at = at.run()
    assert_clean(at)
    [stored] = list_datasets(app_home / "datasets")
    assert stored.class_names == NOVEL_CLASS_NAMES and stored.name.startswith("New shapes")
    n_images = 6 * (2 + NOVEL_SMALL_VALIDATION_PER_CLASS + NOVEL_SMALL_TEST_PER_CLASS)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == f"{n_images:,}" and metrics["Classes"] == "6"
    assert (f"train 12 · validation {6 * NOVEL_SMALL_VALIDATION_PER_CLASS} · "
            f"test {6 * NOVEL_SMALL_TEST_PER_CLASS}") in " ".join(c.value for c in at.caption)
