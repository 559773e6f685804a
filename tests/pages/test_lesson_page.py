"""AppTest for the small-data lesson on the Train page: the button, an experiment's overlaid
curves and comparison table read back from its runs, and the Tour's last step linking to it."""

from __future__ import annotations


from engine.data import export_demo
from engine.training import list_runs, train
from engine.training.lesson import STEPS, LessonConfig, lesson_work, list_lessons, start_lesson
from engine.training.runs import create_run
from tests.pages.checks import assert_clean

PAGE = "pages/train.py"


def _page(app):
    at = app().run()
    at.switch_page(PAGE).run()
    assert_clean(at)
    return at


def test_the_train_page_offers_the_experiment_with_the_engines_default_epochs(app, runs):
    at = _page(app)
    assert "Run the small-data experiment" in [b.label for b in at.button]
    assert at.number_input(key="lesson_epochs").value == LessonConfig.epochs
    assert not list_lessons(runs)


def test_a_finished_experiment_shows_its_curves_and_the_table_of_its_four_runs(app, runs,
                                                                           app_home):
    data = export_demo(app_home / "datasets", n=72, size=32, seed=0)
    lesson = start_lesson(LessonConfig(dataset=str(data.folder), epochs=1), runs)

    def start(config):
        config.probe_images = 0
        return train(create_run(config, runs, launch=False)).run_id

    lesson_work(lesson.lesson_id, runs, 1, start=start, poll_s=0.01)
    at = _page(app)
    frames = at.dataframe
    assert frames, "no comparison table"
    table = frames[0].value
    assert list(table["Run"]) == [label for label, _, _ in STEPS]
    assert list(table["State"]) == ["finished"] * 4
    assert table["Test accuracy"].between(0, 1).all()
    charts = at.get("plotly_chart")
    assert charts, "no overlaid curves"
    assert "4 of 4 runs ended" in " ".join(p.proto.text for p in at.get("progress"))


def test_offline_the_base_picker_offers_the_demo_model_first_and_says_why(app, runs, app_home):
    from tests.engine.training_helpers import wait_for

    data = export_demo(app_home / "datasets", n=72, size=32, seed=0)
    at = _page(app)
    at.radio(key="_w_train_mode").set_value("feature_extraction").run()
    assert_clean(at)
    picker = at.selectbox(key="_w_train_base")
    assert picker.value == "demo" and picker.options[0].startswith("Shapes demo CNN")
    assert any(o.endswith("(ImageNet)") for o in picker.options)
    captions = " ".join(c.value for c in at.caption)
    assert "no ImageNet weights are on this computer" in captions
    at.number_input(key="_w_train_epochs").set_value(1)
    at.button(key="train_start").click().run()
    assert_clean(at)
    (status,) = wait_for(lambda: list_runs(runs), timeout=60)
    config = (status.run_dir / "config.json").read_text()
    assert '"base_model": "demo"' in config and '"image_size": null' in config
    assert str(data.folder) in config


def test_the_train_page_creates_the_small_new_shapes_set(app, app_home):
    from engine.data import NOVEL_CLASS_NAMES, list_datasets

    at = _page(app)
    at.button(key="train_demo_novel").click().run()
    assert_clean(at)
    (made,) = list_datasets(app_home / "datasets")
    assert list(made.class_names) == list(NOVEL_CLASS_NAMES)
    assert {c: sum(v.values()) for c, v in made.counts().items()} == {
        "train": 300, "validation": 90, "test": 600}
    assert at.selectbox(key="_w_dataset").value == made.id
