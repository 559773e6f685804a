"""Training runs on a tiny data set, in this process: the metrics file, checkpoints, timeline,
evaluation, stop and divergence."""

from __future__ import annotations

import json
import math
import shutil
import threading

import keras
import numpy as np
import pytest

from engine.errors import TrainingError
from engine.models.scratch import build_scratch_cnn
from engine.training import (RunConfig, curves, delete_run, list_runs, load_trained, progress,
                             read_metrics, run_status, smooth, stop_run, train, trained_models)
from engine.training.build import build_model
from engine.training.config import load_config, save_config
from engine.training.evaluate import load_evaluation
from engine.training.loop import compile_model
from engine.training.runs import create_run
from engine.training.timeline import read_timeline
from tests.engine.training_helpers import (BATCH, STEPS, split_arrays, tiny_config,
                                           tiny_dataset, wait_for)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def finished(dataset, runs_dir):
    """One scratch run of 2 epochs, trained here."""
    run_dir = create_run(tiny_config(dataset), runs_dir, launch=False)
    status = train(run_dir)
    return run_dir, status, read_metrics(run_dir.name, runs_dir)


def _rows(rows, kind):
    return [r for r in rows if r["kind"] == kind]


# ------------------------------------------------------------------------------- config
def test_config_round_trips_through_json(tmp_path, dataset):
    config = tiny_config(dataset, mode="fine_tuning", weights=None, fine_tune_layers=3)
    save_config(config, tmp_path / "run.json")
    assert load_config(tmp_path / "run.json") == config


@pytest.mark.parametrize("changes, words", [
    (dict(mode="magic"), "mode"), (dict(epochs=0), "epochs"), (dict(learning_rate=-1), "learning"),
    (dict(optimizer="lbfgs"), "optimizer"), (dict(image_size=(16, 16)), "32x32"),
    (dict(mode="continue"), "model to start from"), (dict(validation_split=1.5), "validation"),
    (dict(lr_schedule="step"), "schedule"), (dict(warmup=1.0), "warm-up"),
    (dict(label_smoothing=-0.1), "label smoothing"),
])
def test_bad_settings_are_refused_with_the_setting_named(dataset, changes, words):
    with pytest.raises(TrainingError, match=words):
        tiny_config(dataset, **changes).validate()


def test_the_learning_rate_defaults_by_mode_and_a_given_one_is_kept(tmp_path):
    assert RunConfig(dataset="x").learning_rate == 2e-3  # scratch
    for mode in ("feature_extraction", "fine_tuning", "continue"):
        assert RunConfig(dataset="x", mode=mode).learning_rate == 1e-3
    assert RunConfig(dataset="x", learning_rate=5e-4).learning_rate == 5e-4
    # a config file without one gets the default, and says so once saved
    (tmp_path / "run.json").write_text(json.dumps({"dataset": "x"}))
    config = load_config(tmp_path / "run.json")
    save_config(config, tmp_path / "saved.json")
    assert json.loads((tmp_path / "saved.json").read_text())["learning_rate"] == 2e-3


def test_unknown_keys_in_a_config_file_are_refused(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"dataset": "x", "epochz": 3}))
    with pytest.raises(TrainingError, match="epochz"):
        load_config(tmp_path / "run.json")


# ------------------------------------------------------------------------------ metrics
def test_a_finished_run_writes_one_row_per_batch_and_per_epoch(finished):
    _, status, rows = finished
    assert status.state == "finished" and status.epochs_done == 2
    batches, epochs = _rows(rows, "batch"), _rows(rows, "epoch")
    assert [r["step"] for r in batches] == list(range(1, 2 * STEPS + 1))
    assert [(r["epoch"], r["batch"]) for r in batches] == [(e, b) for e in range(2)
                                                             for b in range(STEPS)]
    assert [r["epoch"] for r in epochs] == [0, 1]
    for row in epochs:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr"} <= set(row)
    # the default schedule: a linear warm-up over the default share of the 2 epochs' steps
    # (rounded), then 2e-3 (from scratch) * (1 + cos(pi * (step - warm-up) / (steps -
    # warm-up))) / 2 down to 0
    steps, warm = 2 * STEPS, round(RunConfig.warmup * 2 * STEPS)
    expected = [2e-3 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))) / 2
                for s in (STEPS, 2 * STEPS)]
    assert warm >= 1
    assert [r["lr"] for r in epochs] == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert [r["event"] for r in _rows(rows, "event")] == ["start", "end"]


def test_batch_values_are_single_batches_whose_mean_is_the_epoch_loss(finished):
    # Keras reports running means; the rows hold each batch's own value. Averaged over the
    # epoch (equal batches) they give back Keras' epoch loss and accuracy.
    _, _, rows = finished
    for epoch in _rows(rows, "epoch"):
        own = [r for r in _rows(rows, "batch") if r["epoch"] == epoch["epoch"]]
        assert np.mean([r["loss"] for r in own]) == pytest.approx(epoch["loss"], rel=1e-4)
        assert np.mean([r["accuracy"] for r in own]) == pytest.approx(epoch["accuracy"],
                                                                      abs=1e-5)
        # each batch accuracy is a whole number of right answers out of BATCH
        assert all(abs(r["accuracy"] * BATCH - round(r["accuracy"] * BATCH)) < 1e-3 for r in own)


def test_validation_metrics_match_the_saved_model_on_images_read_independently(finished, dataset):
    run_dir, _, rows = finished
    images, labels = split_arrays(dataset, "validation")
    model = keras.saving.load_model(run_dir / "checkpoints" / "last.keras", compile=False)
    probabilities = model.predict(images.astype(np.float32) / 255.0, verbose=0)
    # cross-entropy against smoothed targets: 1 - s + s / K for the true class, s / K others
    smoothing, k = RunConfig(dataset="x").label_smoothing, probabilities.shape[1]
    targets = np.full(probabilities.shape, smoothing / k)
    targets[np.arange(len(labels)), labels] += 1 - smoothing
    loss = -np.mean(np.sum(targets * np.log(probabilities), axis=1))
    accuracy = np.mean(probabilities.argmax(axis=1) == labels)
    last = _rows(rows, "epoch")[-1]
    assert last["val_loss"] == pytest.approx(loss, rel=1e-3)
    assert last["val_accuracy"] == pytest.approx(accuracy, abs=1e-5)


def test_progress_and_curves_read_back_from_the_rows(finished):
    _, status, rows = finished
    done = progress(rows, status.total_epochs, status.steps_per_epoch, BATCH)
    assert (done.epoch, done.fraction, done.stage) == (2, 1.0, 1)
    assert done.eta_seconds == pytest.approx(0.0, abs=1e-6)
    c = curves(rows, status.steps_per_epoch)
    assert c.batch_x.tolist() == [e + (b + 1) / STEPS for e in range(2) for b in range(STEPS)]
    assert c.epoch_x.tolist() == [1.0, 2.0] and c.has_validation


def test_progress_mid_epoch_counts_the_batches_done():
    rows = [{"kind": "event", "event": "start", "epoch": 0, "time": 0.0},
            {"kind": "batch", "epoch": 0, "batch": 0, "time": 1.0, "lr": 0.01},
            {"kind": "batch", "epoch": 0, "batch": 1, "time": 2.0}]
    p = progress(rows, total_epochs=2, steps_per_epoch=4, batch_size=10)
    # 2 of 8 batches in 2 s -> 6 batches left take 6 s
    assert (p.epoch, p.batch, p.fraction) == (0, 2, 0.25)
    assert p.eta_seconds == pytest.approx(6.0)
    assert p.learning_rate == 0.01 and p.images_per_second == pytest.approx(10.0)


def test_smoothing_is_a_debiased_moving_average():
    values = np.array([1.0, 3.0, math.nan, 5.0])
    w = 0.5
    first = (1 - w) * 1.0 / (1 - w)
    second = (w * (1 - w) * 1.0 + (1 - w) * 3.0) / (1 - w ** 2)
    third = (w * (w * (1 - w) * 1.0 + (1 - w) * 3.0) + (1 - w) * 5.0) / (1 - w ** 3)
    assert smooth(values, w) == pytest.approx([first, second, second, third])


# -------------------------------------------------------------------------- checkpoints
def test_best_last_and_final_model_with_its_card(finished, dataset):
    run_dir, status, rows = finished
    assert (run_dir / "checkpoints" / "last.keras").is_file()
    assert (run_dir / "checkpoints" / "best.keras").is_file()
    best_epoch = min(_rows(rows, "epoch"), key=lambda r: r["val_loss"])["epoch"]
    best = keras.saving.load_model(run_dir / "checkpoints" / "best.keras", compile=False)
    final = keras.saving.load_model(run_dir / "model.keras", compile=False)
    # Trained with batch norm (the default), saved with it folded in: the classic network's
    # layers, the best checkpoint's function.
    assert "block1_conv_bn" in [layer.name for layer in best.layers]
    assert [layer.name for layer in final.layers] == [
        layer.name for layer in build_scratch_cnn((32, 32), 6).layers]
    images, _ = split_arrays(dataset, "test")
    x = images.astype(np.float32) / 255.0
    np.testing.assert_allclose(final.predict(x, verbose=0), best.predict(x, verbose=0),
                               atol=1e-5)
    assert best_epoch in (0, 1)
    card = json.loads((run_dir / "model.json").read_text())
    assert card["classes"] == list(dataset.class_names)
    assert card["preprocessing"] == "unit" and card["input_size"] == [32, 32]


def test_trained_model_loads_as_an_explorable_model(finished, dataset):
    run_dir, _, _ = finished
    model = load_trained(run_dir)
    images, _ = split_arrays(dataset, "test")
    assert model.class_names == list(dataset.class_names)
    assert model.input_size == (32, 32)
    plain = model.keras_model.predict(images.astype(np.float32) / 255.0, verbose=0)
    np.testing.assert_allclose(model.probabilities(images), plain, atol=1e-5)


def test_timeline_has_every_epoch_and_the_filters_of_that_epoch(finished):
    run_dir, _, _ = finished
    timeline = read_timeline(run_dir)
    assert timeline.epochs == [0, 1, 2]
    assert timeline.images.shape == (6, 32, 32, 3) and timeline.images.dtype == np.uint8
    assert sorted(set(timeline.labels.tolist())) == list(range(6))  # one probe per class
    start, end = timeline.at(0), timeline.at(2)
    assert start["cams"].shape == (6, 32, 32)
    assert 0.0 <= end["cams"].min() and end["cams"].max() <= 1.0
    np.testing.assert_allclose(end["probs"].sum(axis=1), 1.0, atol=1e-5)
    # The filters the saved model has: the checkpoint's kernel with its batch norm folded in,
    # by hand: each filter times gamma / sqrt(moving variance + epsilon).
    last = keras.saving.load_model(run_dir / "checkpoints" / "last.keras", compile=False)
    (kernel,) = last.get_layer("block1_conv").get_weights()
    bn = last.get_layer("block1_conv_bn")
    gamma, _, _, variance = bn.get_weights()
    np.testing.assert_allclose(end["filters"], kernel * gamma / np.sqrt(variance + bn.epsilon),
                               rtol=1e-5, atol=1e-7)
    assert not np.array_equal(start["filters"], end["filters"])  # training changed them


def test_evaluation_counts_match_a_hand_count_on_the_test_split(finished, dataset):
    run_dir, _, _ = finished
    report, images, maps = load_evaluation(run_dir)
    test_images, labels = split_arrays(dataset, "test")
    model = keras.saving.load_model(run_dir / "model.keras", compile=False)
    predicted = model.predict(test_images.astype(np.float32) / 255.0, verbose=0).argmax(axis=1)
    expected = np.zeros((6, 6), int)
    for t, p in zip(labels, predicted):
        expected[t, p] += 1
    assert report.split == "test"
    np.testing.assert_array_equal(report.confusion, expected)
    assert report.accuracy == pytest.approx(np.mean(predicted == labels))
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(report.recall, np.diag(expected) / expected.sum(axis=1))
        np.testing.assert_allclose(report.precision, np.diag(expected) / expected.sum(axis=0))
    wrong = int((predicted != labels).sum())
    assert len(report.misclassified) == wrong and len(images) == len(maps) == min(wrong, 24)
    confidences = [c for *_, c in report.misclassified]
    assert confidences == sorted(confidences, reverse=True)


# ------------------------------------------------------------------------ stop, diverge
def test_stop_ends_the_run_gracefully_keeping_best_and_last(dataset, runs_dir):
    run_dir = create_run(tiny_config(dataset, epochs=200, probe_images=0), runs_dir,
                         launch=False)

    def stop_after_first_epoch():
        wait_for(lambda: any(r["kind"] == "epoch" for r in read_metrics(run_dir.name, runs_dir)))
        stop_run(run_dir.name, runs_dir)

    watcher = threading.Thread(target=stop_after_first_epoch)
    watcher.start()
    status = train(run_dir)
    watcher.join()
    assert status.state == "stopped" and "best and the last" in status.message
    assert 1 <= status.epochs_done < 200
    assert (run_dir / "checkpoints" / "last.keras").is_file()
    assert (run_dir / "model.keras").is_file() and not (run_dir / "STOP").exists()
    events = _rows(read_metrics(run_dir.name, runs_dir), "event")
    assert [r["event"] for r in events][-1] == "stopped"
    assert run_status(run_dir.name, runs_dir).resumable  # it may go on later


@pytest.mark.parametrize("batch_norm, loss_words", [
    (False, ("nan", "inf")),  # the plain network's loss overflows
    (True, ("e+",)),          # batch norm keeps it finite, but absurdly large
])
def test_a_diverging_run_stops_itself_and_says_to_lower_the_learning_rate(
        dataset, runs_dir, batch_norm, loss_words):
    config = tiny_config(dataset, epochs=5, learning_rate=1e5, warmup=0.0, probe_images=0,
                         batch_norm=batch_norm)  # the absurd rate from the first step
    status = train(create_run(config, runs_dir, launch=False))
    assert status.state == "diverged"
    assert "lower learning rate" in status.message
    assert any(words in status.message.lower() for words in loss_words)
    rows = read_metrics(status.run_id, runs_dir)
    assert len(_rows(rows, "epoch")) == 1  # it did not train on after the NaN
    assert "diverged" in [r["event"] for r in _rows(rows, "event")]
    assert not (status.run_dir / "checkpoints" / "last.keras").exists()  # no NaN checkpoint


def test_the_concurrency_limit_counts_runs_still_going(dataset, tmp_path):
    first = create_run(tiny_config(dataset), tmp_path, launch=False)  # "starting" for a while
    assert run_status(first.name, tmp_path).active
    with pytest.raises(TrainingError, match="limit 1"):
        create_run(tiny_config(dataset), tmp_path, max_concurrent=1, launch=False)
    create_run(tiny_config(dataset), tmp_path, max_concurrent=2, launch=False)


@pytest.mark.parametrize("changes, lr_after_5_of_10_steps", [
    (dict(warmup=0.0), 0.5e-3), (dict(lr_schedule="constant"), 1e-3),
    # 2 warm-up steps (20 %), then a cosine over the other 8: 3 of them done at step 5
    (dict(warmup=0.2), 1e-3 * (1 + math.cos(math.pi * 3 / 8)) / 2),
    (dict(reduce_lr=2), 1e-3),  # reduce-LR-on-plateau sets the rate itself: no schedule
])
def test_the_learning_rate_schedule(dataset, changes, lr_after_5_of_10_steps):
    model = build_model(tiny_config(dataset), 6).model
    compile_model(model, tiny_config(dataset, **changes), 1e-3, steps=10)
    model.optimizer.iterations.assign(5)
    assert float(model.optimizer.learning_rate) == pytest.approx(lr_after_5_of_10_steps)
    if changes.get("warmup"):  # halfway through the warm-up: half the learning rate
        model.optimizer.iterations.assign(1)
        assert float(model.optimizer.learning_rate) == pytest.approx(0.5e-3)


# ------------------------------------------------------------------------------ delete
def test_deleting_an_ended_run_removes_its_folder_and_its_model(finished, tmp_path):
    run_dir, _, _ = finished
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    assert [m.run_id for m in trained_models(tmp_path)] == [run_dir.name]
    delete_run(run_dir.name, tmp_path)
    assert not copy.exists()
    assert list_runs(tmp_path) == [] and trained_models(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [".lock"]  # no hidden leftovers either


def test_a_run_still_going_is_not_deleted(dataset, tmp_path):
    going = create_run(tiny_config(dataset), tmp_path, launch=False)  # "starting" for a while
    with pytest.raises(TrainingError, match="stop it"):
        delete_run(going.name, tmp_path)
    assert run_status(going.name, tmp_path).active


def test_deleting_a_run_that_is_not_there_says_so(tmp_path):
    with pytest.raises(TrainingError, match="no run 'nothing-here'"):
        delete_run("nothing-here", tmp_path)
    with pytest.raises(TrainingError, match="not a run id"):
        delete_run("../elsewhere", tmp_path)


def test_run_config_defaults_train_the_scratch_model(dataset):
    config = RunConfig(dataset=str(dataset.folder))
    assert (config.mode, config.optimizer, config.total_epochs) == ("scratch", "adam", 10)
    assert config.stages == [(0, 10, 2e-3)]
    tuned = RunConfig(dataset=str(dataset.folder), mode="fine_tuning", epochs=3,
                      fine_tune_epochs=2, fine_tune_learning_rate=1e-5)
    assert tuned.total_epochs == 5 and tuned.stages == [(0, 3, 1e-3), (3, 5, 1e-5)]


def test_without_batch_norm_the_final_model_is_the_best_checkpoint_as_is(dataset, tmp_path):
    run_dir = create_run(tiny_config(dataset, epochs=1, batch_norm=False, probe_images=0,
                                     evaluate=False), tmp_path, launch=False)
    train(run_dir)
    best = keras.saving.load_model(run_dir / "checkpoints" / "best.keras", compile=False)
    final = keras.saving.load_model(run_dir / "model.keras", compile=False)
    assert not any("_bn" in layer.name for layer in best.layers)
    for a, b in zip(best.get_weights(), final.get_weights()):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- continue
def test_continuing_starts_from_the_saved_weights_with_the_preprocessing_of_its_card(
        finished, dataset, tmp_path):
    run_dir, _, _ = finished
    (tmp_path / "model.keras").write_bytes((run_dir / "model.keras").read_bytes())
    (tmp_path / "model.json").write_text(json.dumps({"preprocessing": "tf"}))
    built = build_model(tiny_config(dataset, mode="continue", image_size=None,
                                    init_model=str(tmp_path / "model.keras")), 6)
    saved = keras.saving.load_model(run_dir / "model.keras", compile=False)
    for a, b in zip(built.model.get_weights(), saved.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert (built.preprocessing, built.input_size) == ("tf", (32, 32))


def test_continuing_a_model_with_other_classes_is_refused(finished, dataset):
    run_dir, _, _ = finished
    config = tiny_config(dataset, mode="continue", init_model=str(run_dir / "model.keras"))
    with pytest.raises(TrainingError, match="6 outputs but the data set has 3 classes"):
        build_model(config, 3)


def test_mixed_precision_keeps_the_softmax_in_float32(dataset):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model(tiny_config(dataset), 6, mixed_precision=True).model
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("block1_conv").dtype_policy.compute_dtype == "float16"
    assert model.get_layer("predictions").dtype_policy.compute_dtype == "float32"
    assert model(np.zeros((1, 32, 32, 3), np.float32)).dtype == "float32"
