"""Any trained network as a transfer base: the demo model, a run's model, a user's file and a
catalogue ImageNet network; where it is cut; its preprocessing and input size travel with it.

The reference for "the base computes what the original network computes up to the cut" is the
original network's layers applied one after another by hand (a plain loop, not the cutting code)."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest

from engine.errors import TrainingError
from engine.models import loading
from engine.models.catalogue import DEMO_MODEL_PATH
from engine.training import RunConfig
from engine.training.bases import base_choices, base_kind, resolve_base
from engine.training.build import build_model, unfreeze_top
from engine.training.run import train
from engine.training.runs import create_run
from tests.engine.training_helpers import tiny_config, tiny_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def demo():
    return keras.saving.load_model(DEMO_MODEL_PATH, compile=False)


def _by_hand(model, x, last):
    """Apply ``model``'s layers in order (a plain chain) up to and including ``last``."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        x = layer(x)
        if layer.name == last:
            return np.asarray(x)
    raise AssertionError(f"no layer {last}")


def _images(size, n=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, size, size, 3)).astype("float32")


def _base_of(built):
    return built.model.get_layer(built.base)


def test_the_demo_base_is_its_last_conv_block_frozen_under_the_new_head(dataset, demo):
    built = build_model(tiny_config(dataset, mode="feature_extraction", image_size=None), 6)
    assert built.input_size == (64, 64) and built.preprocessing == "unit"
    assert "block4_conv2" in built.source and "demo" in built.source
    base = _base_of(built)
    x = _images(64)
    np.testing.assert_allclose(base(x), _by_hand(demo, x, "block4_conv2"), rtol=1e-4, atol=1e-5)
    head = [w for n in ("fc", "predictions") for w in built.model.get_layer(n).weights]
    assert sorted(w.path for w in built.model.trainable_weights) == sorted(w.path for w in head)
    assert [type(layer).__name__ for layer in built.model.layers[2:]] == [
        "GlobalAveragePooling2D", "Dense", "Dropout", "Dense"]


def test_a_base_takes_the_data_sets_image_size_when_it_differs_from_its_own(dataset, demo):
    built = build_model(tiny_config(dataset, mode="feature_extraction"), 6)  # 32 px images
    assert built.input_size == (32, 32)
    assert tuple(built.model.inputs[0].shape[1:3]) == (32, 32)
    x = _images(32)
    np.testing.assert_allclose(_base_of(built)(x), _by_hand(demo, x, "block4_conv2"),
                               rtol=1e-4, atol=1e-5)
    assert built.model.predict(x, verbose=0).shape == (3, 6)


def test_base_layer_cuts_where_asked_and_refuses_missing_or_flat_layers(dataset, demo):
    built = build_model(tiny_config(dataset, mode="feature_extraction",
                                    base_layer="block3_conv2"), 6)
    x = _images(32)
    np.testing.assert_allclose(_base_of(built)(x), _by_hand(demo, x, "block3_conv2"),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(TrainingError, match="no layer 'block9'.*block4_conv2"):
        build_model(tiny_config(dataset, mode="feature_extraction", base_layer="block9"), 6)
    with pytest.raises(TrainingError, match="not a grid.*convolution block"):
        build_model(tiny_config(dataset, mode="feature_extraction", base_layer="global_pool"), 6)


def test_fine_tuning_unfreezes_the_top_layers_with_weights_of_the_demo_base(dataset):
    built = build_model(tiny_config(dataset, mode="fine_tuning"), 6)
    unfrozen = unfreeze_top(built.model, built.base, 2)
    assert unfrozen == ["block4_conv1", "block4_conv2"]
    base = _base_of(built)
    expected = {w.path for n in unfrozen for w in base.get_layer(n).weights}
    expected |= {w.path for n in ("fc", "predictions") for w in built.model.get_layer(n).weights}
    assert {w.path for w in built.model.trainable_weights} == expected


def _file_model(rescale: bool, nested: bool):
    """A small classifier; with ``rescale`` it divides 0-255 by 255 itself (a leading
    Rescaling layer, inside a nested base with ``nested``)."""
    rng = np.random.default_rng(3)
    inner_in = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(inner_in)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="c2")(x)
    core = keras.Model(inner_in, x, name="core")
    for w in core.weights:
        w.assign(rng.normal(0, 0.3, w.shape).astype("float32"))
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inputs) if rescale else inputs
    x = core(x) if nested else keras.Sequential(core.layers[1:], name="seq")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(inputs, outputs), core


def test_a_users_file_with_a_nested_base_and_its_own_rescaling_is_fed_raw_pixels(tmp_path, dataset):
    model, core = _file_model(rescale=True, nested=True)
    path = tmp_path / "mine.keras"
    model.save(path)
    assert base_kind(str(path)) == "file"
    base = resolve_base(str(path), layer="core/c1")
    assert base.preprocessing == "raw" and base.input_size == (32, 32) and base.kind == "file"
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = np.asarray(core.get_layer("c1")(x / 255.0))
    np.testing.assert_allclose(base.network(x), expected, rtol=1e-4, atol=1e-5)
    default = resolve_base(str(path))  # the last conv block: c2 inside the nested base
    assert default.layer == "core/c2"
    np.testing.assert_allclose(default.network(x), np.asarray(core(x / 255.0)), rtol=1e-4,
                               atol=1e-5)
    built = build_model(tiny_config(dataset, mode="fine_tuning", base_model=str(path)), 6)
    assert built.preprocessing == "raw"
    assert unfreeze_top(built.model, built.base, 1) == ["core_cut/c2"]


def test_a_missing_or_unsafe_file_is_refused_with_a_sentence(tmp_path):
    with pytest.raises(TrainingError, match="No model file"):
        resolve_base(str(tmp_path / "none.keras"))
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(Exception, match="could not be read as a Keras model"):
        resolve_base(str(broken))
    with pytest.raises(TrainingError, match="not a base model.*demo"):
        base_kind("my_favourite_net")
    with pytest.raises(TrainingError, match="not a base model"):
        RunConfig(dataset=str(tmp_path), mode="feature_extraction", base_model="x").validate()


def test_a_runs_model_is_a_base_and_a_transfer_run_from_the_demo_base_finishes(dataset,
                                                                             tmp_path):
    runs_dir = tmp_path / "runs"
    first = train(create_run(tiny_config(dataset, epochs=1, probe_images=0, evaluate=False),
                             runs_dir, launch=False))
    assert first.state == "finished"
    trained = keras.saving.load_model(first.run_dir / "model.keras", compile=False)
    base = resolve_base(f"run:{first.run_id}", runs_dir=runs_dir)
    assert base.kind == "run" and base.preprocessing == "unit" and base.input_size == (32, 32)
    convs = [layer.name for layer in trained.layers if isinstance(layer, keras.layers.Conv2D)]
    x = _images(32)
    np.testing.assert_allclose(base.network(x), _by_hand(trained, x, base.layer.split("/")[-1]),
                               rtol=1e-4, atol=1e-4)
    assert base.layer.split("/")[-1] in [layer.name for layer in trained.layers]
    assert convs  # the scratch CNN has convolutions to cut after
    assert f"run:{first.run_id}" in base_choices(runs_dir)
    # a fine-tuning run from that run's model, through the training function
    config = tiny_config(dataset, mode="fine_tuning", base_model=f"run:{first.run_id}",
                         epochs=1, fine_tune_epochs=1, fine_tune_layers=2, probe_images=0)
    status = train(create_run(config, runs_dir, launch=False))
    assert status.state == "finished", status.message
    assert status.epochs_done == 2 and status.info.get("evaluation_accuracy") is not None


def test_with_no_imagenet_weights_at_hand_the_demo_model_is_offered_first():
    offline = list(base_choices(imagenet_available=False))
    online = list(base_choices(imagenet_available=True))
    assert offline[0] == "demo" and online[0] != "demo" and "mobilenet_0.25" in online[:8]


def test_an_imagenet_base_from_keras_cache(tmp_path, monkeypatch, dataset, mobilenet_weights):
    models = tmp_path / "keras" / "models"
    models.mkdir(parents=True)
    shutil.copyfile(mobilenet_weights, models / "mobilenet_2_5_224_tf.h5")
    # Keras reads KERAS_HOME when imported: point the explorer's view of its cache here
    monkeypatch.setattr(loading, "keras_models_dir", lambda: models)
    built = build_model(tiny_config(dataset, mode="feature_extraction",
                                    base_model="mobilenet_0.25", weights="imagenet",
                                    image_size=(64, 64)), 6)
    assert built.preprocessing == "tf" and "Keras cache" in built.source
    # the whole ImageNet network as the README of the weights loads it, run layer by layer
    full = keras.applications.MobileNet(alpha=0.25, input_shape=(224, 224, 3),
                                        weights=str(mobilenet_weights))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(_base_of(built)(x), _by_hand(full, x, "conv_pw_13_relu"),
                               rtol=1e-3, atol=1e-4)
