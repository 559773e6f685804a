"""What the Feature maps page computes around the grid: every layer's maps from one pass
against Keras sub-models, the all-layers overview's columns by hand, and the arithmetic view's
starting point, input channel names and tolerance."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from engine import features
from engine.feature_views import (OVERVIEW_LAYERS, every_layer_maps, explainable_convs,
                                  first_conv, input_channel_names, layers_overview, matches_map,
                                  peak)
from engine.models.explorable import ExplorableModel

TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def tiny(tiny_cnn):
    return ExplorableModel(tiny_cnn, name="tiny", class_names=["a", "b", "c"],
                           preprocessing="unit", input_size=(8, 8))


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(5).integers(0, 256, (8, 8, 3), dtype=np.uint8)


def _reference(model, name, image):
    x = model.preprocess(model.prepare(image)).numpy()
    net = model.keras_model
    return keras.Model(net.inputs, net.get_layer(name).output).predict(x, verbose=0)[0]


def test_every_layer_and_each_conv_input_from_one_pass(tiny, image):
    maps = every_layer_maps(tiny, image)
    for name in ("conv1", "pool1", "conv2", "gap", "predictions"):
        np.testing.assert_allclose(maps[name], _reference(tiny, name, image), **TOL)
    # conv2 reads pool1's output; conv1 reads the preprocessed image
    np.testing.assert_allclose(maps[features.input_key("conv2")], maps["pool1"], **TOL)
    x = tiny.preprocess(tiny.prepare(image)).numpy()[0]
    np.testing.assert_allclose(maps[features.input_key("conv1")], x, **TOL)


def test_the_overview_of_a_small_network(tiny, image):
    maps = every_layer_maps(tiny, image)
    layers = features.map_layers(tiny)
    overview = layers_overview(tiny, image, maps, layers, "local", symmetric=False)
    assert [c.title for c in overview.columns] == ["input", "conv1", "pool1", "conv2", "gap",
                                                   "predictions"]
    assert [c.subtitle for c in overview.columns] == ["8x8x3", "8x8x4", "4x4x4", "4x4x6",
                                                      "6 units", "3 units"]
    conv2 = overview.columns[3]
    by_mean = np.argsort(-maps["conv2"].mean(axis=(0, 1)), kind="stable")[:4]
    for tile, c in zip(conv2.tiles, by_mean):
        np.testing.assert_array_equal(tile, maps["conv2"][:, :, c])
    # 3 units on a 2x2 square, the fourth cell filled with the smallest unit
    square = overview.columns[-1].tiles[0]
    probabilities = maps["predictions"]
    np.testing.assert_allclose(square.ravel(), list(probabilities) + [probabilities.min()],
                               **TOL)
    assert (overview.spatial_shown, overview.spatial_total) == (3, 3)
    assert "(of" not in overview.caption


def test_a_deep_network_shows_sixteen_layers_spread_evenly():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3))
    x = inputs
    for i in range(20):
        x = keras.layers.Conv2D(2, 3, padding="same", activation="relu", name=f"c{i}")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="out")(
        keras.layers.GlobalAveragePooling2D(name="gap")(x))
    model = ExplorableModel(keras.Model(inputs, outputs), "deep", ["a", "b"], "unit", (4, 4))
    image = np.full((4, 4, 3), 100, np.uint8)
    overview = layers_overview(model, image, every_layer_maps(model, image),
                               features.map_layers(model), "global", symmetric=True)
    # round(19 * k / 15) for k = 0..15
    picked = [0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19]
    assert OVERVIEW_LAYERS == 16
    assert [c.title for c in overview.columns[1:-2]] == [f"c{i}" for i in picked]
    assert overview.caption.count("16 convolution and pooling layers (of 20 with maps)") == 1


def test_the_arithmetic_view_opens_plain_convolutions_from_the_first(tiny):
    layers = features.map_layers(tiny)
    assert explainable_convs(tiny, layers) == ["conv1", "conv2"]
    assert first_conv(layers) == "conv1"


def test_it_starts_at_the_first_peak():
    values = np.array([[0.0, 3.0, 1.0], [3.0, 2.0, 0.0]])
    assert peak(values) == (0, 1)


def test_input_channels_of_the_first_convolution_are_colours(tiny):
    layers = features.map_layers(tiny)
    assert input_channel_names(tiny, "conv1", layers, 3) == [
        "input channel 0 (red)", "input channel 1 (green)", "input channel 2 (blue)"]
    bgr = ExplorableModel(tiny.keras_model, "bgr", tiny.class_names, "caffe", (8, 8))
    assert input_channel_names(bgr, "conv1", layers, 3)[0] == "input channel 0 (blue)"
    assert input_channel_names(tiny, "conv2", layers, 4)[3] == "input channel 3"


def test_the_sum_matches_the_map_up_to_float32_rounding():
    assert matches_map(SimpleNamespace(value=1.0), 1.00005)       # within 1e-5 + 1e-4 * 1
    assert not matches_map(SimpleNamespace(value=1.0), 1.001)
    assert matches_map(SimpleNamespace(value=0.0), 5e-6)           # near zero: absolute 1e-5
