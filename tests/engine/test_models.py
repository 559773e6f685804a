"""engine.models: catalogue, preprocessing, the wrapper, ImageNet weights and users' files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.errors import InvalidModelError, WeightsUnavailableError
from engine.models import list_models, load_model, load_model_file, predict
from engine.models import loading
from engine.models.catalogue import CATALOGUE
from engine.models.preprocessing import preprocess
from tests.conftest import ROOT
from tests.engine.training_helpers import random_batch_norm_statistics

APPLICATIONS = ["vgg16", "vgg19", "resnet50", "mobilenet_1.0", "mobilenet_0.25", "mobilenet_v2",
                "efficientnet_b0", "inception_v3", "densenet121", "xception"]


# ------------------------------------------------------------------------------- catalogue
def test_catalogue_lists_demo_first_and_every_required_application():
    names = [spec.name for spec in list_models()]
    assert names[0] == "demo"
    assert {"scratch", *APPLICATIONS, "mobilenet_0.5", "mobilenet_0.75"} <= set(names)


@pytest.mark.parametrize("name", ["vgg16", "mobilenet_0.25", "mobilenet_v2", "efficientnet_b0",
                                  "densenet121", "resnet50"])
def test_weights_file_is_the_one_keras_itself_asks_for(name, monkeypatch):
    """Independent reference: intercept Keras' own download call and read the file name."""
    asked = []

    def fake_get_file(fname=None, origin=None, **kwargs):
        asked.append(fname)
        raise RuntimeError("stop")

    monkeypatch.setattr("keras.src.utils.file_utils.get_file", fake_get_file)
    spec = CATALOGUE[name]
    h, w = spec.input_size
    with pytest.raises(RuntimeError, match="stop"):
        spec.builder(weights="imagenet", input_shape=(h, w, 3))
    assert asked == [spec.weights_file]


@pytest.mark.parametrize("mode, reference", [
    ("caffe", "vgg16"), ("tf", "mobilenet"), ("torch", "densenet"), ("raw", "efficientnet")])
def test_preprocessing_matches_keras_applications(mode, reference, rng):
    x = rng.uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    expected = getattr(keras.applications, reference).preprocess_input(x.copy())
    np.testing.assert_allclose(preprocess(x, mode).numpy(), expected, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------------------------- ImageNet
def test_offline_imagenet_choice_says_which_file_to_put_where(monkeypatch, tmp_path):
    monkeypatch.setattr(loading, "keras_models_dir", lambda: tmp_path / "models")
    monkeypatch.setattr(loading, "is_online", lambda *a, **k: False)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("vgg16")
    message = str(info.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in message
    assert str(tmp_path / "models") in message
    assert time.monotonic() - start < 5


def test_online_probe_is_quick_and_false_for_an_unresolvable_host():
    start = time.monotonic()
    assert loading.is_online("no-such-host.invalid", timeout=1.0) is False
    assert time.monotonic() - start < 3


def test_weights_file_path_loads_exactly_those_weights(tmp_path):
    spec = CATALOGUE["mobilenet_0.25"]
    keras.utils.set_random_seed(3)
    reference = spec.builder(weights=None, input_shape=(224, 224, 3))
    path = tmp_path / "mine.weights.h5"
    reference.save_weights(path)
    model = load_model("mobilenet_0.25", weights=path)
    for a, b in zip(model.keras_model.weights, reference.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert model.class_names[967] == "espresso"


def test_weights_file_that_does_not_fit_is_refused(tmp_path):
    other = keras.applications.MobileNet(alpha=0.5, weights=None)
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(WeightsUnavailableError, match="does not fit MobileNet"):
        load_model("mobilenet_0.25", weights=path)
    with pytest.raises(WeightsUnavailableError, match="No weights file"):
        load_model("mobilenet_0.25", weights=tmp_path / "missing.h5")


def test_real_imagenet_weights_through_the_keras_cache(tmp_path, mobilenet_weights):
    """A temporary KERAS_HOME seeded like an online user's cache: the real weights="imagenet"
    path, in a fresh interpreter because Keras reads KERAS_HOME when it is imported."""
    models = tmp_path / "models"
    models.mkdir()
    os.symlink(mobilenet_weights, models / "mobilenet_2_5_224_tf.h5")
    script = textwrap.dedent("""
        import json, skimage.data
        from engine.models import load_model, predict
        from engine.models import loading
        loading.is_online = lambda *a, **k: False   # prove nothing is downloaded
        model = load_model("mobilenet_0.25")
        probs = model.probabilities([skimage.data.chelsea(), skimage.data.coffee()])
        top = [[int(i) for i in (-p).argsort()[:3]] for p in probs]
        print(json.dumps({"top": top, "names": predict(model, [skimage.data.coffee()], 1)[0],
                          "source": model.source}))
    """)
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cat_top3, coffee_top3 = result["top"]
    assert set(cat_top3) & set(range(281, 286)), cat_top3   # ImageNet's domestic-cat classes
    assert coffee_top3[0] == 967                              # espresso
    assert result["names"][0][0] == "espresso"
    assert "Keras cache" in result["source"]


# ------------------------------------------------------------------------------- users' files
def _save(model, path):
    model.save(path)
    return path


def test_user_model_predicts_like_the_plain_network(tiny_cnn, tmp_path, rng):
    path = _save(tiny_cnn, tmp_path / "tiny.keras")
    model = load_model(path, class_names=["a", "b", "c"])
    images = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    expected = tiny_cnn.predict(images.astype("float32") / 255.0, verbose=0)
    np.testing.assert_allclose(model.probabilities(images), expected, rtol=1e-5, atol=1e-6)
    top = predict(model, images, top=2)
    assert [len(row) for row in top] == [2] * 4
    best = expected.argmax(1)
    assert [row[0][0] for row in top] == [["a", "b", "c"][i] for i in best]
    assert all(row[0][1] >= row[1][1] for row in top)


def test_images_of_any_size_are_resized_inside(tiny_cnn, tmp_path, rng):
    model = load_model(_save(tiny_cnn, tmp_path / "tiny.keras"))
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
              for h, w in [(8, 8), (31, 17), (3, 50)]]
    probs = model.probabilities(images)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


def test_lambda_layer_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    x = keras.layers.Conv2D(2, 3)(x)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    path = _save(keras.Model(inputs, outputs), tmp_path / "lambda.keras")
    with pytest.raises(InvalidModelError, match="Lambda layer"):
        load_model(path)


@pytest.mark.parametrize("build, phrase", [
    (lambda: keras.Sequential([keras.Input((10,)), keras.layers.Dense(2)]), "not an image"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                               keras.layers.Dense(2)]), "no convolution layer"),
    (lambda: keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)]),
     "not one score per class"),
])
def test_models_that_cannot_be_explored_are_refused(build, phrase, tmp_path):
    path = _save(build(), tmp_path / "m.keras")
    with pytest.raises(InvalidModelError, match=phrase):
        load_model(path)


def test_broken_files_are_refused_with_a_sentence(tiny_cnn, tmp_path):
    good = _save(tiny_cnn, tmp_path / "good.keras").read_bytes()
    cases = {"garbage.keras": b"this is not a model" * 10,
             "truncated.keras": good[: len(good) // 2],
             "empty.keras": b"", "garbage.h5": os.urandom(300)}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InvalidModelError) as info:
            load_model(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(InvalidModelError, match="not a Keras model file"):
        load_model(tmp_path / "model.pt")
    with pytest.raises(InvalidModelError, match="No model file"):
        load_model(tmp_path / "missing.keras")


def test_tf_keras_2_h5_that_keras_3_cannot_read_is_refused_not_crashed(mobilenet_weights):
    with pytest.raises(InvalidModelError, match="could not be read"):
        load_model_file(mobilenet_weights)


def test_class_name_count_must_match(tiny_cnn, tmp_path):
    with pytest.raises(InvalidModelError, match="3 output classes but 2"):
        load_model(_save(tiny_cnn, tmp_path / "t.keras"), class_names=["a", "b"])


def test_grayscale_and_sigmoid_models(tmp_path, rng):
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Flatten()(x))
    network = keras.Model(inputs, outputs)
    model = load_model(_save(network, tmp_path / "gray.keras"))
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    p = model.probabilities(image)
    grey = (image.astype("float32") @ np.array([0.2989, 0.587, 0.114], "float32"))[None, ..., None]
    expected = network.predict(grey / 255.0, verbose=0)[0, 0]
    np.testing.assert_allclose(p[0], [1 - expected, expected], atol=2e-3)
    assert model.class_names == ["class 0", "class 1"]


def test_nested_base_model_conv_layers_are_listed_with_their_path():
    base = keras.applications.MobileNet(alpha=0.25, include_top=False, weights=None,
                                        input_shape=(64, 64, 3))
    model = keras.Sequential([keras.Input((64, 64, 3)), base,
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    explorable = loading.ExplorableModel(model, name="t", class_names=["a", "b"],
                                         preprocessing="tf", input_size=(64, 64))
    assert explorable.conv_layers[0] == f"{base.name}/conv1"
    assert f"{base.name}/conv_pw_13" in explorable.conv_layers


# ------------------------------------------------------------------------------- scratch, demo
def test_scratch_is_the_classic_cnn():
    model = load_model("scratch", n_classes=4, input_size=(64, 64))
    layers = model.keras_model.layers[1:]
    kinds = [(type(layer).__name__, getattr(layer, "filters", getattr(layer, "units", None)))
             for layer in layers]
    assert kinds == [("Conv2D", 32), ("MaxPooling2D", None), ("Conv2D", 64), ("MaxPooling2D", None),
                     ("Conv2D", 128), ("MaxPooling2D", None), ("Conv2D", 128),
                     ("MaxPooling2D", None), ("Flatten", None), ("Dropout", None),
                     ("Dense", 512), ("Dense", 4)]
    assert model.class_names == ["circle", "square", "triangle", "star"]
    assert model.input_size == (64, 64)


@pytest.mark.parametrize("side, last_map", [(64, 4), (32, 2), (128, 8)])
def test_scratch_convolutions_are_padded_so_every_pixel_reaches_the_head(side, last_map):
    model = load_model("scratch", n_classes=4, input_size=(side, side)).keras_model
    assert tuple(model.get_layer("block4_pool").output.shape[1:]) == (last_map, last_map, 128)
    # every input pixel, edges and corners too, moves the flattened features (unpadded
    # convolutions at 64 pixels left the last two rows and columns out altogether)
    x = tf.Variable(np.random.default_rng(0).uniform(0, 1, (1, side, side, 3)), dtype="float32")
    features = keras.Model(model.inputs, model.get_layer("flatten").output)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(features(x) ** 2)
    reach = np.abs(tape.gradient(total, x).numpy()[0]).sum(-1)
    assert reach[[0, -1, 0, -1], [0, 0, -1, -1]].min() > 0
    assert reach.sum(1).min() > 0 and reach.sum(0).min() > 0


@pytest.mark.parametrize("side", [64, 32])
def test_scratch_trained_with_batch_norm_folds_into_the_classic_cnn(side):
    from engine.models.folding import fold_batch_norm
    from engine.models.scratch import build_scratch_cnn

    trained = build_scratch_cnn((side, side), 3, seed=1, batch_norm=True)
    assert [type(layer).__name__ for layer in trained.layers[1:4]] == [
        "Conv2D", "BatchNormalization", "ReLU"]
    rng = random_batch_norm_statistics(trained, 1)
    plain = fold_batch_norm(trained)
    assert [layer.name for layer in plain.layers] == [
        layer.name for layer in build_scratch_cnn((side, side), 3).layers]
    x = rng.uniform(0, 1, (4, side, side, 3)).astype(np.float32)
    np.testing.assert_allclose(plain(x), trained(x, training=False), atol=1e-5)


def test_demo_model_carries_its_own_class_names():
    model = load_model("demo")
    card = json.loads((ROOT / "assets" / "demo_model.json").read_text())
    assert model.class_names == card["classes"]
    assert model.input_size == tuple(card["input_size"])
