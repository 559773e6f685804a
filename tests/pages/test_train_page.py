"""AppTest for the Train page: starting a run, following it, the after-run views, a diverged
run, reattaching, and the trained model in the sidebar."""

from __future__ import annotations

import json
import time

import pytest

from engine.data import Augmentation, export_demo, list_datasets, load_augmentation
from engine.training import RunConfig, list_runs, run_status, train
from engine.training.runs import create_run
from tests.engine.training_helpers import tiny_config, wait_for
from tests.pages.checks import assert_clean

PAGE = "pages/train.py"


@pytest.fixture
def demo_set(app_home):
    return export_demo(app_home / "datasets", n=72, size=32, seed=0)


def _train_page(app, errors_expected=False, **query):
    at = app(**query).run()
    at.switch_page(PAGE).run()
    if errors_expected:
        assert not at.exception
    else:
        assert_clean(at)
    return at


def _texts(at, kind):
    return " ".join(str(e.value) for e in getattr(at, kind))


def _popovers(at):
    return [p.proto.popover.label for p in at.get("popover")]


def _finished_run(demo_set, runs, **changes):
    return train(create_run(tiny_config(demo_set, **changes), runs, launch=False))


def test_without_a_data_set_the_page_offers_the_demo_set(app):
    at = _train_page(app)
    assert "What am I looking at?" in [e.label for e in at.expander]
    assert "Create the demo data set" in [b.label for b in at.button]
    # 3,000 images, not 600: from scratch, 600 stay near chance after 10 epochs.
    assert next(s for s in at.selectbox if s.label == "Images").value == 3000
    assert not at.get("plotly_chart")


def test_the_demo_set_made_here_is_augmented_with_its_mirrors(app, app_home):
    at = _train_page(app)
    at.selectbox(key="train_demo_n").select(120)
    at.selectbox(key="train_demo_side").select(32)
    next(b for b in at.button if b.label == "Create the demo data set").click().run()
    assert_clean(at)
    (made,) = list_datasets(app_home / "datasets")
    assert len(made.files) == 120
    assert load_augmentation(made) == Augmentation(horizontal_flip=True, vertical_flip=True,
                                                   transpose=True)
    assert "Batch normalisation while training" in [t.label for t in at.toggle]


def test_start_launches_a_background_run_with_the_chosen_settings(app, demo_set, runs):
    at = _train_page(app)
    at.number_input(key="_w_train_epochs").set_value(2)
    at.selectbox(key="_w_train_batch").select(8)
    at.button(key="train_start").click().run()
    assert_clean(at)
    # The run is admitted by a job of the server's queue, then trains in its own process.
    (status,) = wait_for(lambda: list_runs(runs), timeout=60)
    config = json.loads((status.run_dir / "config.json").read_text())
    assert (config["epochs"], config["batch_size"], config["mode"]) == (2, 8, "scratch")
    assert config["lr_schedule"] == "cosine"  # the default
    assert config["batch_norm"] is True  # the default: trained with it, saved folded
    assert (config["warmup"], config["label_smoothing"]) == (  # the defaults
        RunConfig.warmup, RunConfig.label_smoothing)
    assert config["image_size"] == [32, 32]  # suggested from the data set's images
    assert config["dataset"] == str(demo_set.folder)
    # The run goes on in its own process; the page follows it.
    wait_for(lambda: not run_status(status.run_id, runs).active, timeout=240)
    at.run()
    assert_clean(at)
    assert run_status(status.run_id, runs).state == "finished"
    assert "Finished after 2/2 epochs" in " ".join(p.proto.text for p in at.get("progress"))
    assert {"Evaluation", "Learning timeline", "Compare runs",
            "Model and log"} <= {t.label for t in at.tabs}


def test_after_a_run_the_curves_evaluation_and_timeline_are_drawn(app, demo_set, runs):
    status = _finished_run(demo_set, runs)
    at = _train_page(app)
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = {t.get("name") for spec in charts for t in spec["data"]}
    assert {"train · per epoch", "validation · per epoch", "precision", "recall"} <= names
    epochs = next(t for spec in charts for t in spec["data"]
                  if t.get("name") == "train · per epoch")
    assert epochs["x"] == [1.0, 2.0]
    assert "Accuracy on 'test'" in [m.label for m in at.metric]
    slider = at.select_slider(key=f"timeline_{status.run_id}")
    assert slider.options == ["0", "1", "2"] and slider.value == 2
    slider.set_value(0).run()
    assert_clean(at)
    assert "after 0 epochs" in _texts(at, "markdown")


def test_a_diverged_run_says_to_lower_the_learning_rate(app, demo_set, runs):
    _finished_run(demo_set, runs, learning_rate=1e5, probe_images=0)
    at = _train_page(app, errors_expected=True)
    errors = _texts(at, "error")
    assert "diverged" in errors and "lower learning rate" in errors


def test_a_new_session_reattaches_to_the_run_still_going(app, demo_set, runs):
    _finished_run(demo_set, runs, probe_images=0)
    time.sleep(1.1)  # run ids sort by the second they were made
    going = create_run(tiny_config(demo_set, name="still going"), runs, launch=False)
    at = _train_page(app)
    assert at.selectbox(key="_w_train_run").value == going.name
    assert "Starting" in " ".join(p.proto.text for p in at.get("progress"))
    assert "Stop" in [b.label for b in at.button]


def test_the_trained_model_is_in_the_sidebar_of_every_page(app, demo_set, runs):
    status = _finished_run(demo_set, runs, probe_images=0)
    option = f"run:{status.run_id}"
    at = app().run()
    picker = at.sidebar.selectbox(key="_w_model")
    assert f"Trained: {status.name} · 2 epochs" in picker.options
    picker.select(option).run()
    assert_clean(at)
    caption = _texts(at.sidebar, "caption")
    assert "32x32 input · 6 classes" in caption
    assert at.query_params["model"] in (option, [option])


def test_deleting_a_run_removes_it_from_the_page_and_the_sidebar(app, demo_set, runs):
    kept = _finished_run(demo_set, runs, probe_images=0, name="kept")
    time.sleep(1.1)  # run ids sort by the second they were made
    doomed = _finished_run(demo_set, runs, probe_images=0, name="doomed")
    at = _train_page(app, model=f"run:{doomed.run_id}")  # the sidebar shows the doomed model
    assert at.sidebar.selectbox(key="_w_model").value == f"run:{doomed.run_id}"
    assert at.selectbox(key="_w_train_run").value == doomed.run_id
    assert "Delete this run" in _popovers(at)
    at.button(key="train_delete").click().run()
    assert_clean(at)
    assert not doomed.run_dir.exists()
    assert [s.run_id for s in list_runs(runs)] == [kept.run_id]
    assert at.selectbox(key="_w_train_run").value == kept.run_id
    picker = at.sidebar.selectbox(key="_w_model")
    assert picker.value == "demo"
    assert "Trained: doomed · 2 epochs" not in picker.options
    assert "Trained: kept · 2 epochs" in picker.options


def test_a_run_still_going_offers_stop_not_delete(app, demo_set, runs):
    create_run(tiny_config(demo_set, name="going"), runs, launch=False)  # "starting"
    at = _train_page(app)
    assert "Stop" in [b.label for b in at.button]
    assert "Delete this run" not in _popovers(at)


def test_a_run_that_does_not_learn_says_so_with_what_to_try(app, demo_set, runs):
    # 1e-9 leaves the zero-initialised classifier where it starts: loss ln 6, chance level
    _finished_run(demo_set, runs, epochs=3, learning_rate=1e-9, probe_images=0)
    at = _train_page(app)
    warnings = _texts(at, "warning")
    assert "not learning" in warnings and "lower learning rate" in warnings
    assert "pretrained base" in warnings
