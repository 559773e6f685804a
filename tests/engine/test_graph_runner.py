"""The one graph runner (``engine.models.graph``): outputs, captured layers, replaced ops and
bfloat16 runs, against Keras itself and hand computations.

References are independent of the runner: ``model(x)``, a separate
``keras.Model(inputs, layer.output)`` over the graph the layer belongs to, or the layer's
arithmetic written out with the weights (``x @ W + b``, ``tf.nn.conv2d``).
"""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.models.graph import bfloat16_layer, layer_copy, output_op, run_graph

L = keras.layers
TOL = dict(rtol=1e-5, atol=1e-5)


def _randomise_batch_norm(model: keras.Model, seed: int) -> None:
    """Moving statistics away from 0 and 1, so inference-mode batch norm really acts."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(0, 0.5, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 2, var.shape).astype(np.float32)])


def _plain() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(3, activation="softmax", name="predictions")(x),
                       name="plain")


def _residual() -> keras.Model:
    """Two branches met by an Add, as in a ResNet block."""
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="b")(a)
    b = L.BatchNormalization(name="bn")(b)
    x = L.ReLU(name="relu")(L.Add(name="add")([a, b]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, L.Dense(3, activation="softmax", name="predictions")(x),
                        name="residual")
    _randomise_batch_norm(model, 1)
    return model


def _base() -> keras.Model:
    """An ImageNet-like base that scales its own 0-255 input (Rescaling inside it)."""
    inputs = keras.Input((8, 8, 3))
    x = L.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
    x = L.Conv2D(4, 3, padding="same", name="conv")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU(name="conv_relu")(x)
    base = keras.Model(inputs, x, name="base")
    _randomise_batch_norm(base, 2)
    return base


def _nested() -> keras.Model:
    """A transfer model: the whole base as one layer, then a nested Sequential and a head."""
    base = _base()
    inputs = keras.Input((8, 8, 3))
    x = base(inputs)
    x = keras.Sequential([keras.Input((8, 8, 4)), L.Conv2D(5, 1, name="inner"),
                          L.Activation("tanh", name="inner_tanh")], name="seq")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(3, activation="softmax", name="predictions")(x),
                       name="transfer")


def _augmented() -> keras.Model:
    """A user's model with its augmentation and an adapted normalisation inside (as in the
    Keras tutorials): augmentation acts only while training, the statistics always."""
    norm = L.Normalization(name="norm")
    norm.adapt(np.random.default_rng(3).normal(120, 60, (32, 8, 8, 3)).astype(np.float32))
    inputs = keras.Input((8, 8, 3))
    x = norm(L.RandomRotation(0.2, name="rotate")(inputs))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(3, activation="softmax", name="predictions")(x),
                       name="augmented")


MODELS = {"plain": _plain, "residual": _residual, "nested": _nested, "augmented": _augmented}


def _images(seed: int = 0, n: int = 2) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, 8, 8, 3)).astype(np.float32)


def _fresh(name: str) -> keras.Model:
    keras.utils.set_random_seed(7)
    return MODELS[name]()


# ------------------------------------------------------------------------------ outputs
@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_equal_calling_the_model(name):
    model, x = _fresh(name), _images()
    run = run_graph(model, [tf.constant(x)])
    np.testing.assert_allclose(run.outputs[0].numpy(), model(x, training=False).numpy(), **TOL)


@pytest.mark.parametrize("name, path", [
    ("plain", "conv1"), ("plain", "pool"), ("plain", "conv2"),
    ("residual", "a"), ("residual", "b"), ("residual", "add"), ("residual", "relu"),
])
def test_captured_layers_equal_a_keras_model_cut_at_them(name, path):
    model, x = _fresh(name), _images()
    reference = keras.Model(model.input, model.get_layer(path).output)(x, training=False)
    run = run_graph(model, [tf.constant(x)], capture=[path])
    np.testing.assert_allclose(run.outputs_of[path].numpy(), reference.numpy(), **TOL)


def test_layers_inside_nested_models_equal_their_own_keras_models():
    model, x = _fresh("nested"), _images()
    base, seq = model.get_layer("base"), model.get_layer("seq")
    paths = ["base/rescale", "base/bn", "seq/inner", "seq/inner_tanh", "base"]
    run = run_graph(model, [tf.constant(x)], capture=paths, capture_inputs=["seq/inner"])
    base_out = base(x, training=False)  # the base is called on the outer input directly
    for inner in ("rescale", "bn"):
        reference = keras.Model(base.inputs[0], base.get_layer(inner).output)(x, training=False)
        np.testing.assert_allclose(run.outputs_of[f"base/{inner}"].numpy(), reference.numpy(),
                                   **TOL)
    for inner in ("inner", "inner_tanh"):
        reference = keras.Model(seq.inputs[0], seq.get_layer(inner).output)(base_out)
        np.testing.assert_allclose(run.outputs_of[f"seq/{inner}"].numpy(), reference.numpy(),
                                   **TOL)
    np.testing.assert_allclose(run.inputs_of["seq/inner"].numpy(), base_out.numpy(), **TOL)
    np.testing.assert_allclose(run.outputs_of["base"].numpy(), base_out.numpy(), **TOL)


class _Counter(L.Layer):
    """Identity that counts its calls."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, x):
        self.calls += 1
        return x


def test_the_walk_stops_once_everything_asked_for_is_captured():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(2, 3, name="conv")(inputs)
    after = _Counter(name="after")
    model = keras.Model(inputs, L.Flatten()(after(x)))
    built = after.calls  # the symbolic call that made the graph
    run = run_graph(model, [tf.constant(_images())], capture=["conv"], stop_when_captured=True)
    assert run.outputs is None and "conv" in run.outputs_of
    assert after.calls == built
    run_graph(model, [tf.constant(_images())], capture=["conv"])
    assert after.calls == built + 1


def test_output_op_is_found_inside_a_nested_model():
    base = _plain()
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, base(inputs), name="outer")
    path, op = output_op(outer)
    assert path == "plain/predictions" and op is base.get_layer("predictions")


# ------------------------------------------------------------------------------ replacing ops
def test_softmax_replaced_by_linear_gives_the_logits_by_hand():
    model, x = _fresh("nested"), _images()
    dense = model.get_layer("predictions")
    features = keras.Model(model.input, model.get_layer("gap").output)(x).numpy()
    kernel, bias = dense.get_weights()
    logits = features @ kernel + bias
    path, op = output_op(model)
    linear = layer_copy(op, activation="linear")
    run = run_graph(model, [tf.constant(x)],
                    replace={path: lambda _op, args, kwargs: linear(*args, **kwargs)})
    np.testing.assert_allclose(run.outputs[0].numpy(), logits, rtol=1e-5, atol=1e-5)
    # The model itself still ends in its softmax.
    assert dense.activation is keras.activations.softmax
    np.testing.assert_allclose(model(x).numpy().sum(axis=1), 1.0, rtol=1e-5)


def test_a_relu_replaced_by_a_copy_with_another_activation():
    model, x = _fresh("plain"), _images()
    conv = model.get_layer("conv1")
    kernel, bias = conv.get_weights()
    by_hand = tf.nn.elu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias).numpy()
    elu = layer_copy(conv, activation="elu")
    run = run_graph(model, [tf.constant(x)], capture=["conv1"],
                    replace={"conv1": lambda _op, args, kwargs: elu(*args, **kwargs)})
    np.testing.assert_allclose(run.outputs_of["conv1"].numpy(), by_hand, rtol=1e-5, atol=1e-5)
    assert conv.activation is keras.activations.relu
    assert by_hand.min() < 0  # the ELU really ran: a ReLU gives no negative value


def test_a_copy_of_normalization_keeps_its_adapted_statistics():
    data = np.random.default_rng(4).normal(3.0, 2.0, (64, 5)).astype(np.float32)
    norm = L.Normalization()
    norm.adapt(data)
    copy = layer_copy(norm)
    np.testing.assert_allclose(copy(data).numpy(), ((data - data.mean(0)) / data.std(0)),
                               rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------------------ bfloat16
@pytest.mark.parametrize("name", list(MODELS))
def test_bfloat16_run_is_close_to_float32(name):
    """The pooled features before the head: bfloat16 keeps 8 bits of mantissa, so they stay
    within 2 % of their largest value (measured: under 0.7 %) without being the same."""
    model, x = _fresh(name), _images()
    full = run_graph(model, [tf.constant(x)], capture=["gap"]).outputs_of["gap"].numpy()
    run = run_graph(model, [tf.constant(x)], capture=["gap"], precision="bfloat16")
    assert run.outputs[0].dtype == tf.bfloat16  # the head's copy computed in bfloat16
    low = tf.cast(run.outputs_of["gap"], tf.float32).numpy()
    np.testing.assert_allclose(low, full, rtol=0, atol=0.02 * np.abs(full).max())
    assert not np.array_equal(low, full)


@pytest.mark.parametrize("name", list(MODELS))
def test_bfloat16_input_gradients_point_where_float32_ones_do(name):
    model, x = _fresh(name), tf.constant(_images())

    def gradient(precision):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = run_graph(model, [x], precision=precision).outputs[0]
            score = tf.reduce_sum(tf.cast(out, tf.float32)[:, 0])
        return tape.gradient(score, x).numpy().ravel()

    full, low = gradient("float32"), gradient("bfloat16")
    cosine = full @ low / (np.linalg.norm(full) * np.linalg.norm(low))
    assert cosine > 0.99


def test_bfloat16_copies_round_the_weights_and_keep_preprocessing_float32():
    model, x = _fresh("nested"), _images()
    conv = model.get_layer("base").get_layer("conv")
    copy = bfloat16_layer(conv)
    assert copy is bfloat16_layer(conv)  # made once, shared
    np.testing.assert_array_equal(
        tf.cast(copy.kernel, tf.float32).numpy(),
        tf.cast(tf.cast(conv.kernel, tf.bfloat16), tf.float32).numpy())
    assert conv.kernel.dtype == "float32"  # the model's own layer is untouched
    run = run_graph(model, [tf.constant(x)], capture=["base/rescale", "base/bn"],
                    precision="bfloat16")
    rescaled = run.outputs_of["base/rescale"]
    assert rescaled.dtype == tf.float32  # bfloat16 would be ~0.004 off in [-1, 1]
    np.testing.assert_allclose(rescaled.numpy(), x / 127.5 - 1, rtol=0, atol=1e-6)
    assert run.outputs_of["base/bn"].dtype == tf.bfloat16


def test_bfloat16_runs_from_two_threads_at_once():
    """Two traces of a fresh model at the same moment both ask for every copy."""
    for seed in range(3):  # fresh layers each time: the copies are made during the race
        keras.utils.set_random_seed(seed)
        model, x = _nested(), tf.constant(_images(seed))
        expected = model(x, training=False).numpy()
        start, results, errors = threading.Barrier(2), [None, None], []

        def work(i):
            function = tf.function(
                lambda images: run_graph(model, [images], precision="bfloat16").outputs[0])
            try:
                start.wait()
                results[i] = tf.cast(function(x), tf.float32).numpy()
            except Exception as exc:  # noqa: BLE001 - reported below, with its thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        np.testing.assert_array_equal(results[0], results[1])
        np.testing.assert_allclose(results[0], expected, atol=0.02)
