"""What a scratch run does when the settings leave it to the engine: the image size (the data
set's own), and the warning when the network is not learning."""

from __future__ import annotations

import json
import math

import keras
import numpy as np
import pytest
from PIL import Image

from engine.data import import_folder
from engine.training import read_metrics, run_status, train
from engine.training.build import build_model
from engine.training.callbacks import NOT_LEARNING_TOLERANCE, chance_loss, not_learning
from engine.training.data import SCRATCH_MAX_SIDE, default_image_size
from engine.training.metrics import METRICS_FILE, read_rows
from engine.training.runs import create_run
from tests.engine.training_helpers import tiny_config, tiny_dataset


def _folder_of_sizes(root, sizes: list[tuple[int, int]]):
    """A two-class data set (read in place) of noise images of (width, height) ``sizes``;
    image ``i`` is ``b/<i>.png`` for even ``i``, ``a/<i>.png`` for odd."""
    rng = np.random.default_rng(0)
    for i, (width, height) in enumerate(sizes):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(
            folder / f"{i:02d}.png")
    return import_folder(root)


# ---------------------------------------------------------------------------- image size
@pytest.mark.parametrize("sizes, cap, side", [
    # longer sides 100, 100, 100, 60, 40: median 100, the nearest multiple of 16 is 96
    ([(100, 60), (50, 100), (100, 100), (60, 60), (40, 30)], SCRATCH_MAX_SIDE, 96),
    # median of an even count: (64 + 128) / 2 = 96
    ([(64, 64), (128, 128), (64, 48), (200, 128)], SCRATCH_MAX_SIDE, 96),
    ([(400, 300)] * 3, SCRATCH_MAX_SIDE, SCRATCH_MAX_SIDE),  # large images: the cap
    ([(400, 300)] * 3, 160, 160),
    ([(20, 20), (24, 16)], SCRATCH_MAX_SIDE, 32),  # tiny images: the 32 pixels training needs
])
def test_the_default_size_is_the_median_longer_side_rounded_and_capped(tmp_path, sizes, cap,
                                                                        side):
    assert default_image_size(_folder_of_sizes(tmp_path / "set", sizes), cap) == (side, side)


def test_the_default_size_reads_headers_only_and_a_sample(tmp_path):
    # Images 1, 4 and 7 are 160 pixels, the six others 48.
    sizes = [(160, 160) if i in (1, 4, 7) else (48, 48) for i in range(9)]
    dataset = _folder_of_sizes(tmp_path / "set", sizes)
    # Cut every file in half: Pillow still reads its size from the header, decoding fails.
    for file in dataset.files:
        path = dataset.path_of(file)
        path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
        with pytest.raises(OSError), Image.open(path) as image:
            image.load()
    assert default_image_size(dataset) == (48, 48)  # median of 48 x6, 160 x3
    # A sample of 3 takes every third listed file; listed a/ first (odd images), then b/:
    # 01 03 05 07 00 02 04 06 08, so the sample is images 1, 7 and 4: all 160 pixels.
    assert [f.path for f in dataset.files[::3]] == ["a/01.png", "a/07.png", "b/04.png"]
    assert default_image_size(dataset, 160, sample=3) == (160, 160)
    # Files gone since the import are left out; with none left, the cap.
    for file in dataset.files:
        dataset.path_of(file).unlink()
    assert default_image_size(dataset, 112) == (112, 112)


def test_a_scratch_run_without_a_size_trains_at_the_data_sets_own(tmp_path):
    dataset = tiny_dataset(tmp_path / "data")  # the demo shapes at 32x32
    built = build_model(tiny_config(dataset, image_size=None), 6)
    assert built.input_size == (32, 32)
    assert tuple(built.model.inputs[0].shape[1:3]) == (32, 32)
    # the classifier starts at zero: every class 1/6 whatever the image
    x = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(built.model(x, training=False), 1 / 6, rtol=1e-6)


# ------------------------------------------------------------------------ not learning
def test_chance_loss_is_ln_k_for_balanced_classes_with_or_without_smoothing():
    assert chance_loss([8] * 6) == pytest.approx(math.log(6))
    assert chance_loss([8] * 6, 0.1) == pytest.approx(1.791759, abs=1e-6)
    assert chance_loss([5, 5], 0.3) == pytest.approx(math.log(2))
    # 90 / 10 without smoothing: -(0.9 ln 0.9 + 0.1 ln 0.1) = 0.325083
    assert chance_loss([90, 10]) == pytest.approx(0.325083, abs=1e-6)
    # with 0.2: q = 0.8 * (0.9, 0.1) + 0.1 = (0.82, 0.18)
    assert chance_loss([90, 10], 0.2) == pytest.approx(
        -(0.82 * math.log(0.82) + 0.18 * math.log(0.18)))
    assert chance_loss([4, 0, 4]) == pytest.approx(math.log(2))  # a class without images


@pytest.mark.parametrize("counts, smoothing", [([8] * 6, 0.1), ([90, 10], 0.2), ([3, 1, 6], 0.0)])
def test_chance_loss_is_keras_loss_of_the_best_input_blind_prediction(counts, smoothing):
    # Keras' own label-smoothed cross-entropy over every training label, for constant
    # predictions: the mean smoothed target scores chance_loss, any other constant scores more.
    k = len(counts)
    labels = np.repeat(np.arange(k), counts)
    targets = keras.utils.to_categorical(labels, k)
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    shares = np.asarray(counts) / sum(counts)
    best = (1 - smoothing) * shares + smoothing / k

    def constant(p):
        return float(loss(targets, np.tile(p, (len(labels), 1)).astype(np.float32)))

    assert constant(best) == pytest.approx(chance_loss(counts, smoothing), rel=1e-5)
    assert constant(np.full(k, 1 / k)) >= constant(best) - 1e-6
    other = best + np.random.default_rng(0).uniform(0, 0.1, k)
    assert constant(other / other.sum()) > constant(best)


def test_not_learning_after_two_epochs_within_one_percent_of_chance():
    ln6 = math.log(6)
    assert not_learning(ln6, ln6, 2)
    assert not_learning(2.4, ln6, 3)  # above chance: worse than guessing
    assert not_learning(ln6 * (1 - NOT_LEARNING_TOLERANCE) + 1e-9, ln6, 2)
    assert not not_learning(ln6 * (1 - NOT_LEARNING_TOLERANCE) - 1e-6, ln6, 2)
    assert not not_learning(1.7625, ln6, 2)  # 1.6 % below: a run that learns, slowly
    assert not not_learning(ln6, ln6, 1)  # one epoch is too early to tell
    assert not not_learning(math.nan, ln6, 4)  # divergence is reported on its own


def test_a_run_that_cannot_learn_ends_with_the_warning(tmp_path):
    # A learning rate of 1e-9 leaves the zero classifier where it starts: every class 1/6, the
    # training loss ln 6 on the balanced tiny set.
    dataset = tiny_dataset(tmp_path / "data")
    config = tiny_config(dataset, epochs=3, learning_rate=1e-9, probe_images=0, evaluate=False)
    run_dir = create_run(config, tmp_path / "runs", launch=False)
    train(run_dir)
    status = run_status(run_dir.name, tmp_path / "runs")
    assert status.state == "finished"
    assert "not learning" in status.warning and "learning rate" in status.warning
    assert json.loads((run_dir / "status.json").read_text())["warning"] == status.warning
    rows = read_metrics(run_dir.name, tmp_path / "runs")
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [r["loss"] for r in epochs] == pytest.approx([math.log(6)] * 3, abs=1e-3)
    events = [r for r in rows if r.get("event") == "not_learning"]
    assert len(events) == 1 and events[0]["epoch"] == 1  # once, at the end of epoch 2
    # the event says when it was first seen; the status, how it stands at the end
    assert "after 2 epochs" in events[0]["message"] and "after 3 epochs" in status.warning


def test_the_warning_is_cleared_once_the_loss_drops(tmp_path):
    from engine.training import runs
    from engine.training.callbacks import RunMonitor

    runs.write_status(tmp_path, state="running")
    inputs = keras.Input((32, 40, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    monitor = RunMonitor(tmp_path, stage=1, steps_per_epoch=1, n_train=4, batch_size=4,
                         save_checkpoints=False, chance_loss=math.log(2))
    monitor.set_model(model)
    monitor.on_train_begin()
    seen = []
    for epoch, loss in enumerate([0.70, 0.69, 0.6931, 0.60, 0.69]):
        monitor.on_epoch_begin(epoch)
        monitor.on_epoch_end(epoch, {"loss": loss})
        seen.append(runs.read_status(tmp_path).warning)
    monitor.on_train_end()
    # epoch 1 is too early; 0.69 and 0.6931 are within 1 % of ln 2 = 0.6931; 0.60 is not
    assert [bool(w) for w in seen] == [False, True, True, False, True]
    assert "32x40 pixels" in seen[1]
    events = [r for r in read_rows(tmp_path / METRICS_FILE) if r.get("event") == "not_learning"]
    assert [e["epoch"] for e in events] == [1, 4]  # each time it stops learning
