"""Feature maps, channel statistics, colour scales, first-layer filters and the conv arithmetic.

The reference for every map is Keras itself: a separate ``keras.Model(inputs, layer.output)``
(for a layer of a nested model, ``keras.Model(base.inputs, layer.output)`` fed the base's own
input), never this module's earlier output.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from engine import features
from engine.conv_arithmetic import conv_arithmetic, explainable, output_size
from engine.errors import InvalidModelError
from engine.models import load_model
from engine.models.catalogue import DEMO_MODEL_PATH
from engine.models.explorable import ExplorableModel
from engine.models.layers import find_layer, iter_layers

L = keras.layers
TOL = dict(rtol=1e-4, atol=1e-4)


def _reference(network: keras.Model, path: str, x: np.ndarray) -> np.ndarray:
    """The layer's output from a separate Keras model over the top-level graph."""
    return keras.Model(network.inputs, find_layer(network, path).output).predict(x, verbose=0)


def _network_input(model: ExplorableModel, images) -> np.ndarray:
    return model.preprocess(model.prepare(images)).numpy()


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (90, 120, 3), dtype=np.uint8),
            rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]


@pytest.fixture(scope="module")
def scratch():
    return load_model("scratch")


@pytest.fixture(scope="module")
def nested():
    """A transfer model: Rescaling, then a whole VGG16 (weights=None) as one layer, a head."""
    keras.utils.set_random_seed(5)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(48, 48, 3))
    inputs = keras.Input((48, 48, 3))
    x = L.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs)
    x = base(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(4, activation="softmax", name="head")(x)
    network = keras.Model(inputs, outputs, name="transfer")
    return ExplorableModel(network, name="transfer", class_names=list("abcd"),
                           preprocessing="raw", input_size=(48, 48))


# ----------------------------------------------------------------------------- equal to Keras
def test_every_layer_of_a_plain_functional_model_equals_keras(tiny_cnn, rng):
    x = rng.normal(size=(3, 8, 8, 3)).astype(np.float32)
    maps = features.feature_maps(tiny_cnn, x, ["conv1", "pool1", "conv2", "gap", "predictions"])
    for path, value in maps.items():
        np.testing.assert_allclose(value, _reference(tiny_cnn, path, x), **TOL, err_msg=path)
    assert maps["conv1"].shape == (3, 8, 8, 4) and maps["gap"].shape == (3, 6)
    assert all(v.dtype == np.float32 for v in maps.values())


def test_scratch_model_from_rgb_images_of_any_size_equals_keras(scratch, photos):
    maps = features.feature_maps(scratch, photos)  # every map layer, one pass
    x = _network_input(scratch, photos)
    assert list(maps) == [layer.path for layer in features.map_layers(scratch)]
    for path in ("block1_conv", "block2_pool", "block3_conv", "dense", "predictions"):
        np.testing.assert_allclose(maps[path], _reference(scratch.keras_model, path, x), **TOL,
                                   err_msg=path)


def test_keras_application_with_random_weights_equals_keras(photos):
    model = load_model("mobilenet_0.25", weights=None)
    # Keras numbers auto-named layers per process ("global_average_pooling2d_3"): find it by type.
    gap = next(layer.name for layer in model.keras_model.layers
               if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    layers = ["conv1", "conv1_relu", "conv_dw_5", "conv_pw_13_relu", gap, "predictions"]
    maps = features.feature_maps(model, photos[:1], layers)
    x = _network_input(model, photos[:1])
    for path in layers:
        np.testing.assert_allclose(maps[path], _reference(model.keras_model, path, x), **TOL,
                                   err_msg=path)


def test_layers_inside_a_nested_model_equal_the_nested_models_own_keras_model(nested, photos):
    base = nested.keras_model.get_layer("vgg16")
    layers = ["scale", "vgg16/block1_conv1", "vgg16/block3_pool", "vgg16/block5_conv3", "vgg16",
              "gap", "head"]
    maps = features.feature_maps(nested, photos, layers)
    x = _network_input(nested, photos)
    base_input = _reference(nested.keras_model, "scale", x)
    for path in ("vgg16/block1_conv1", "vgg16/block3_pool", "vgg16/block5_conv3"):
        inner = path.split("/")[1]
        expected = keras.Model(base.inputs, base.get_layer(inner).output).predict(base_input,
                                                                                   verbose=0)
        np.testing.assert_allclose(maps[path], expected, **TOL, err_msg=path)
    # The nested model's own row is its output (its .output belongs to its inner graph).
    np.testing.assert_allclose(maps["vgg16"], base.predict(base_input, verbose=0), **TOL)
    for path in ("scale", "gap", "head"):
        np.testing.assert_allclose(maps[path], _reference(nested.keras_model, path, x), **TOL,
                                   err_msg=path)


def test_nested_sequential_inside_a_functional_model(rng):
    inner = keras.Sequential([L.Conv2D(3, 3, padding="same", name="c"), L.ReLU(name="r")],
                             name="inner")
    inputs = keras.Input((10, 10, 3))
    outputs = L.Dense(2, name="out")(L.Flatten()(inner(L.Rescaling(0.5, name="half")(inputs))))
    network = keras.Model(inputs, outputs)
    x = rng.normal(size=(2, 10, 10, 3)).astype(np.float32)
    maps = features.feature_maps(network, x, ["inner/c", "inner/r", "out"])
    half = _reference(network, "half", x)
    expected = keras.Model(inner.inputs, inner.get_layer("c").output).predict(half, verbose=0)
    np.testing.assert_allclose(maps["inner/c"], expected, **TOL)
    np.testing.assert_allclose(maps["inner/r"], np.maximum(maps["inner/c"], 0), **TOL)
    np.testing.assert_allclose(maps["out"], network.predict(x, verbose=0), **TOL)


def test_sequential_model_that_was_never_called(rng):
    keras.utils.set_random_seed(2)
    network = keras.Sequential([L.Conv2D(4, 3, activation="relu", name="c1"),
                                L.MaxPooling2D(name="p1"), L.Flatten(name="f"),
                                L.Dense(3, name="d")])
    assert not network.built
    x = rng.normal(size=(2, 12, 12, 3)).astype(np.float32)
    maps = features.feature_maps(network, x, ["c1", "p1", "d"])
    for path in ("c1", "p1", "d"):  # built for the images' shape, as predict() would
        np.testing.assert_allclose(maps[path], _reference(network, path, x), **TOL, err_msg=path)


def test_sequential_with_an_input_but_no_output_yet(rng):
    network = keras.Sequential([keras.Input((9, 9, 3)), L.Conv2D(2, 3, name="c"),
                                L.GlobalMaxPooling2D(name="g")])
    with pytest.raises(AttributeError):
        network.output  # noqa: B018 (what makes this case worth testing)
    x = rng.normal(size=(1, 9, 9, 3)).astype(np.float32)
    maps = features.feature_maps(network, x, ["c", "g"])
    np.testing.assert_allclose(maps["g"], network.predict(x, verbose=0), **TOL)
    np.testing.assert_allclose(maps["c"], _reference(network, "c", x), **TOL)


@pytest.mark.skipif(not DEMO_MODEL_PATH.is_file(), reason="the demo model is not trained yet")
def test_demo_model_maps_equal_keras(photos):
    model = load_model("demo")
    layers = [layer.path for layer in features.map_layers(model)]
    maps = features.feature_maps(model, photos)
    x = _network_input(model, photos)
    for path in layers[:: max(1, len(layers) // 5)]:
        np.testing.assert_allclose(maps[path], _reference(model.keras_model, path, x), **TOL,
                                   err_msg=path)


@pytest.mark.slow
def test_vgg16_every_conv_and_pool_layer_equals_keras(photos):
    model = load_model("vgg16", weights=None)
    layers = [m.path for m in features.map_layers(model) if m.kind in ("conv", "pool")]
    maps = features.feature_maps(model, photos[:1], layers)
    x = _network_input(model, photos[:1])
    for path in layers:
        np.testing.assert_allclose(maps[path], _reference(model.keras_model, path, x),
                                   rtol=1e-3, atol=1e-3, err_msg=path)


# ----------------------------------------------------------------------------- one pass, cached
class _CountingIdentity(L.Layer):
    """Passes its input through and counts how often the graph really runs it."""

    def build(self, input_shape):
        self.runs = self.add_weight(shape=(), initializer="zeros", trainable=False, name="runs")

    def call(self, x):
        self.runs.assign_add(1.0)
        return x


def test_many_layers_come_from_one_forward_pass_and_one_trace(rng):
    inputs = keras.Input((8, 8, 3))
    counter = _CountingIdentity(name="counter")
    x = L.Conv2D(4, 3, padding="same", name="a")(counter(inputs))
    x = L.Conv2D(4, 3, padding="same", name="b")(x)
    x = L.MaxPooling2D(name="p")(x)
    outputs = L.Dense(2, name="d")(L.Flatten()(x))
    network = keras.Model(inputs, outputs)
    images = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
    features.feature_maps(network, images, ["a", "b", "p", "d"])
    assert float(counter.runs.numpy()) == 1.0
    features.feature_maps(network, images, ["a", "b", "p", "d"])
    assert float(counter.runs.numpy()) == 2.0
    (extractor,) = features._extractors.of(network).values()
    assert extractor.function.experimental_get_tracing_count() == 1


def test_the_shared_model_is_not_changed(nested, photos):
    network = nested.keras_model
    nodes = {ref.path: len(ref.layer._inbound_nodes) for ref in iter_layers(network)}
    weights = [w.numpy().copy() for w in network.weights]
    features.feature_maps(nested, photos, ["vgg16/block2_conv1", "head"])
    assert {ref.path: len(ref.layer._inbound_nodes) for ref in iter_layers(network)} == nodes
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, network.weights))


def test_layer_inputs_come_from_the_same_pass(scratch, photos):
    maps = features.feature_maps(scratch, photos, ["block1_pool", "block2_conv"],
                                 inputs_of=["block1_conv", "block2_conv"])
    np.testing.assert_allclose(maps[features.input_key("block1_conv")],
                               _network_input(scratch, photos), **TOL)
    # A layer's input that is also an asked-for output is that very array, not a copy.
    assert maps[features.input_key("block2_conv")] is maps["block1_pool"]


def test_unknown_layer_is_refused_with_its_name(scratch, photos):
    with pytest.raises(KeyError, match="block9_conv"):
        features.feature_maps(scratch, photos, ["block9_conv"])


def test_batches_give_the_same_maps_as_one_pass(scratch, photos):
    whole = features.feature_maps(scratch, photos * 3, ["block2_conv"])
    parts = features.feature_maps(scratch, photos * 3, ["block2_conv"], batch_size=4)
    np.testing.assert_allclose(parts["block2_conv"], whole["block2_conv"], **TOL)


# ----------------------------------------------------------------------------- which layers
def test_map_layers_lists_conv_pool_activation_dense_and_nested_layers(nested):
    rows = {m.path: m for m in features.map_layers(nested)}
    assert rows["vgg16/block1_conv1"].kind == "conv"
    assert rows["vgg16/block1_pool"].kind == "pool"
    assert rows["head"].kind == "dense" and rows["head"].output_shape == (4,)
    assert rows["vgg16/block3_conv2"].output_shape == (12, 12, 256)
    assert "scale" not in rows and "vgg16" not in rows  # Rescaling; the nested model itself


def test_blocks_end_where_the_maps_shrink_like_vggs_own_blocks(nested):
    rows = features.map_layers(nested)
    for m in rows:
        if m.path.startswith("vgg16/block"):
            number = int(m.path[len("vgg16/block")])
            assert m.block.startswith(f"Block {number} ·"), m
    assert rows[0].block == "Block 1 · 48×48"
    assert features.default_layer(rows) == "vgg16/block3_conv3"  # 7th of 13 convolutions


def test_default_layer_is_a_middle_convolution(scratch):
    # the third of four convolutions (index 4 // 2)
    assert features.default_layer(features.map_layers(scratch)) == "block3_conv"


# ----------------------------------------------------------------------------- statistics
def test_channel_stats_by_hand():
    maps = np.zeros((2, 2, 3), np.float32)
    maps[..., 0] = [[1, 2], [3, 0]]
    maps[..., 2] = [[-1, 0], [0, 0]]
    stats = features.channel_stats(maps)
    np.testing.assert_allclose(stats.mean, [1.5, 0, -0.25])
    np.testing.assert_allclose(stats.max, [3, 0, 0])
    np.testing.assert_allclose(stats.min, [0, 0, -1])
    np.testing.assert_allclose(stats.zero_fraction, [0.25, 1.0, 0.75])
    assert stats.dead.tolist() == [False, True, False]
    assert stats.order("mean").tolist() == [0, 1, 2]
    assert stats.order("index").tolist() == [0, 1, 2]


def test_color_scales_local_module_global():
    a = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 4.0)], -1).astype(np.float32)
    a[0, 0, 0] = -1.0
    b = np.full((3, 3, 1), 10.0, np.float32)
    b[0, 0, 0] = 2.0
    maps = {"a": a, "b": b, "b" + features.INPUT_SUFFIX: np.full((1, 1, 1), 99.0, np.float32)}
    low, high = features.color_limits(maps, "a", "local")
    assert low.tolist() == [-1, 4] and high.tolist() == [1, 5]  # constant map: one colour
    low, high = features.color_limits(maps, "a", "module")
    assert low.tolist() == [-1, -1] and high.tolist() == [4, 4]
    low, high = features.color_limits(maps, "a", "global")  # layer inputs do not count
    assert low.tolist() == [-1, -1] and high.tolist() == [10, 10]
    low, high = features.color_limits(maps, "a", "module", symmetric=True)
    assert low.tolist() == [-4, -4] and high.tolist() == [4, 4]
    low, high = features.color_limits([maps, {"a": a * 3, "b": b}], "a", "local")
    assert low.tolist() == [-3, 4] and high.tolist() == [3, 12]
    with pytest.raises(ValueError):
        features.color_limits(maps, "a", "loud")


# ----------------------------------------------------------------------------- filters
def test_first_layer_filters_keep_zero_at_grey_and_swap_bgr_for_caffe(scratch):
    filters = features.first_layer_filters(scratch)
    kernel = scratch.keras_model.get_layer("block1_conv").kernel.numpy()
    assert filters.layer == "block1_conv" and filters.images.shape == (32, 3, 3, 3)
    np.testing.assert_allclose(filters.images[5], kernel[..., 5] / (2 * np.abs(kernel).max()) + 0.5,
                               atol=1e-6)
    caffe = ExplorableModel(scratch.keras_model, "bgr", scratch.class_names, "caffe", (128, 128))
    np.testing.assert_allclose(features.first_layer_filters(caffe).images[5],
                               filters.images[5][:, :, ::-1], atol=1e-6)


def test_first_layer_filters_refuse_a_depthwise_first_layer():
    inputs = keras.Input((8, 8, 3))
    outputs = L.Dense(2)(L.Flatten()(L.DepthwiseConv2D(3)(inputs)))
    model = ExplorableModel(keras.Model(inputs, outputs), "dw", ["a", "b"], "unit", (8, 8))
    with pytest.raises(InvalidModelError, match="not a plain Conv2D"):
        features.first_layer_filters(model)


# ----------------------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("padding, strides, dilation", [
    ("same", 1, 1), ("same", 2, 1), ("valid", 2, 1), ("same", 1, 2), ("valid", 1, 1)])
def test_conv_arithmetic_gives_the_value_keras_computed(padding, strides, dilation, rng):
    inputs = keras.Input((9, 11, 3))
    conv = L.Conv2D(4, (3, 4), strides=strides, dilation_rate=dilation, padding=padding,
                    activation="relu", bias_initializer="random_normal", name="conv")
    network = keras.Model(inputs, conv(inputs))
    x = rng.normal(size=(1, 9, 11, 3)).astype(np.float32)
    expected = network.predict(x, verbose=0)[0]
    assert expected.shape[:2] == output_size(conv, 9, 11)
    for row in range(expected.shape[0]):  # every position, borders (padding) included
        for col in range(expected.shape[1]):
            arith = conv_arithmetic(conv, x[0], row, col, 2)
            assert arith.value == pytest.approx(float(expected[row, col, 2]), rel=1e-4, abs=1e-5)
            assert arith.total == pytest.approx(arith.products.sum())
            assert arith.pre_activation == pytest.approx(arith.total + arith.bias)


def test_conv_arithmetic_of_a_real_model_matches_its_feature_map(scratch, photos):
    layer = find_layer(scratch.keras_model, "block2_conv")
    maps = features.feature_maps(scratch, photos[:1], ["block2_conv"], inputs_of=["block2_conv"])
    value_map = maps["block2_conv"][0]
    row, col, channel = np.unravel_index(np.argmax(value_map), value_map.shape)
    arith = conv_arithmetic(layer, maps[features.input_key("block2_conv")][0], row, col, channel)
    assert arith.value == pytest.approx(float(value_map[row, col, channel]), rel=1e-4)
    assert arith.patch.shape == (3, 3, 32) and arith.activation == "relu"
    # The patch is the input under the window ("same" padding: rows row-1..row+1 of the input
    # with a ring of zeros around it).
    padded = np.pad(maps[features.input_key("block2_conv")][0], ((1, 1), (1, 1), (0, 0)))
    np.testing.assert_array_equal(arith.patch, padded[row:row + 3, col:col + 3])
    assert arith.inside.all() == (0 < row < value_map.shape[0] - 1
                                  and 0 < col < value_map.shape[1] - 1)


def test_conv_arithmetic_marks_the_zero_padding(rng):
    conv = L.Conv2D(1, 3, padding="same")
    conv.build((None, 4, 4, 2))
    arith = conv_arithmetic(conv, rng.normal(size=(4, 4, 2)).astype(np.float32), 0, 3, 0)
    assert arith.inside.tolist() == [[False, False, False], [True, True, False],
                                     [True, True, False]]
    assert not arith.patch[~arith.inside].any()


def test_conv_arithmetic_refuses_other_layers_and_positions(rng):
    depthwise = L.DepthwiseConv2D(3)
    depthwise.build((None, 5, 5, 2))
    assert not explainable(depthwise)
    with pytest.raises(InvalidModelError, match="DepthwiseConv2D"):
        conv_arithmetic(depthwise, np.zeros((5, 5, 2), np.float32), 0, 0, 0)
    conv = L.Conv2D(2, 3)
    conv.build((None, 5, 5, 2))
    with pytest.raises(ValueError, match="outside"):
        conv_arithmetic(conv, np.zeros((5, 5, 2), np.float32), 3, 0, 0)
