"""What the guided tour picks (engine.tour) and the quick training run (engine.training.quick)."""

from __future__ import annotations

import numpy as np
import pytest

from engine import features
from engine.data.shapes import make_shapes
from engine.models.explorable import ExplorableModel
from engine.tour import busiest_window, first_conv, strongest_position, tour_layers
from engine.training.quick import (BatchPoint, EpochPoint, QuickFitConfig, QuickFitResult,
                                   _Recorder, demo_data, quick_fit)


# ------------------------------------------------------------------------------ choices
def test_busiest_window_holds_the_only_edge_nearest_the_centre():
    image = np.zeros((32, 32, 3), np.uint8)
    image[10:14, 20:24] = 255  # a 4x4 white square
    # Every 8x8 window holding the whole square has the same (largest) variance: rows 6..10,
    # columns 16..20; the one nearest the centre window (12, 12) is (10, 16).
    assert busiest_window(image, 8) == (10, 16)


def test_busiest_window_of_a_flat_image_is_the_centre():
    assert busiest_window(np.full((20, 30, 3), 7, np.uint8), 8) == (6, 11)


def test_strongest_position_leaves_out_the_border():
    values = np.zeros((10, 10), np.float32)
    values[0, 4] = 9.0  # on the border: a kernel hanging over the zero padding
    values[6, 3] = 5.0
    assert strongest_position(values) == (0, 4)
    assert strongest_position(values, margin=1) == (6, 3)
    assert strongest_position(np.eye(2, dtype=np.float32)[::-1], margin=1) == (0, 1)  # too small


def _explorable(keras_model, size=8):
    n = int(keras_model.outputs[0].shape[-1])
    return ExplorableModel(keras_model, name=keras_model.name,
                           class_names=[f"c{i}" for i in range(n)], preprocessing="unit",
                           input_size=(size, size))


def test_tour_layers_of_a_small_cnn(tiny_cnn):
    model = _explorable(tiny_cnn)
    layers = features.map_layers(model)
    chosen = tour_layers(layers)
    assert (chosen.early, chosen.late, chosen.filters) == ("conv1", "conv2", "conv2")
    assert first_conv(model, layers) == "conv1"


def test_first_conv_skips_a_depthwise_convolution():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="plain")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = _explorable(keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)))
    assert first_conv(model, features.map_layers(model)) == "plain"


def test_a_model_without_maps_has_no_tour_layers():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Flatten()(inputs)
    model = _explorable(keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)))
    layers = features.map_layers(model)
    assert tour_layers(layers) is None
    assert first_conv(model, layers) is None


# ------------------------------------------------------------------------------ quick fit
def test_the_recorder_turns_running_means_back_into_batch_values():
    config = QuickFitConfig(n_train=20, batch_size=8, epochs=1)
    result = QuickFitResult(model=None)
    seen = _Collect()
    recorder = _Recorder(config, result, seen)
    recorder.on_epoch_begin(0)
    # Batches of 8, 8 and 4 images with losses 1, 2, 4 and accuracies 0.5, 1, 0: Keras reports
    # the means weighted by images since the epoch began.
    for batch, (loss, accuracy) in enumerate([(1.0, 0.5), (1.5, 0.75), (2.0, 0.6)]):
        recorder.on_train_batch_end(batch, {"loss": loss, "accuracy": accuracy})
    assert [p.step for p in seen] == [1, 2, 3]
    np.testing.assert_allclose([p.loss for p in seen], [1.0, 2.0, 4.0])
    np.testing.assert_allclose([p.accuracy for p in seen], [0.5, 1.0, 0.0], atol=1e-12)
    assert result.points == seen


def test_silhouettes_are_the_objects_of_the_demo_images():
    config = QuickFitConfig(n_train=12, size=32, seed=3)
    images, labels = demo_data(config)
    full = make_shapes(12, size=32, seed=3)
    np.testing.assert_array_equal(labels, full.labels)
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    for silhouette, (x0, y0, x1, y1) in zip(images, full.boxes):
        ys, xs = np.nonzero(silhouette[..., 0])
        # The object's box in the full picture is the tightest box around its silhouette.
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    val_images, _ = demo_data(config, validation=True)
    assert not any(np.array_equal(a, b) for a in images for b in val_images)


class _Collect(list):
    """A progress callback that keeps every published point and every report, and asks to stop
    after ``stop_after`` batches."""

    def __init__(self, stop_after=None):
        super().__init__()
        self.stop_after = stop_after
        self.reports = []

    @property
    def stop_requested(self):
        batches = sum(isinstance(p, BatchPoint) for p in self)
        return self.stop_after is not None and batches >= self.stop_after

    def __call__(self, done, total, stage):
        self.reports.append((done, total, stage))

    def publish(self, point):
        self.append(point)


SMALL = QuickFitConfig(n_train=24, n_validation=12, epochs=2, batch_size=8)


def test_quick_fit_reports_every_batch_and_every_epoch_the_same_way_every_time():
    seen = _Collect()
    result = quick_fit(SMALL, callback=seen)
    batches = [p for p in seen if isinstance(p, BatchPoint)]
    epochs = [p for p in seen if isinstance(p, EpochPoint)]
    assert [p.step for p in batches] == [1, 2, 3, 4, 5, 6]
    assert [p.epoch for p in batches] == [1, 1, 1, 2, 2, 2]
    assert [p.epoch for p in epochs] == [0, 1, 2]
    # 24 images in batches of 8, 2 epochs: 6 weight updates, each told in words.
    assert seen.reports[:2] == [(0, 6, "tested on the unseen shapes before training"),
                                (1, 6, "practice batch 1 of 6 (epoch 1)")]
    assert seen.reports[-1] == (6, 6, "tested on the unseen shapes after epoch 2")
    assert len(seen.reports) == len(seen)  # one report per point
    assert result.points == batches and result.validation == epochs and not result.stopped
    assert all(np.isfinite(p.loss) and 0 <= p.accuracy <= 1 for p in batches)
    probabilities = result.predict(demo_data(SMALL, validation=True)[0][:3])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    again = quick_fit(SMALL)  # the same configuration learns the same way every time
    np.testing.assert_allclose([p.loss for p in again.points], [p.loss for p in batches],
                               rtol=1e-4)


def test_quick_fit_stops_when_asked_and_keeps_what_it_learned():
    seen = _Collect(stop_after=2)
    result = quick_fit(SMALL, callback=seen)
    assert [p.step for p in result.points] == [1, 2]
    assert [p.epoch for p in result.validation] == [0]  # the cut epoch is not "after an epoch"
    assert result.stopped and result.model is not None


@pytest.mark.slow
def test_the_tour_configuration_learns_beyond_guessing():
    result = quick_fit(QuickFitConfig())
    before, after = result.validation[0].accuracy, result.validation[-1].accuracy
    assert before < 0.25 and after > 0.5  # measured: 17 % -> 72 %
