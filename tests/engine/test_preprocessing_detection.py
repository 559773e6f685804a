"""Own model files: the preprocessing a model carries inside is read off its layers, and a
1000-class model gets the ImageNet names.

Every model here goes through a real ``.keras`` file, as a user's would. The reference for the
loaded model's output is the bare network fed what its author fed it in training (0-255 pixels
for a model that rescales itself, pixels / 255 otherwise)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from engine.models import load_model_file
from engine.models.preprocessing import PREPROCESSING_MODES, detect_preprocessing

L = keras.layers


def _head():
    """A conv head with fixed random weights, on 8x8 input."""
    return [L.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
            L.GlobalAveragePooling2D(name="gap"), L.Dense(3, activation="softmax", name="out")]


def _sequential(*layers, size=8):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((size, size, 3)), *layers, *_head()])


def _saved(network, tmp_path):
    path = tmp_path / "mine.keras"
    network.save(path)
    return path


def _images(rng, n=3, size=8):
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_plain_model_is_not_detected_and_gets_pixels_over_255(tmp_path, rng):
    network = _sequential()
    model = load_model_file(_saved(network, tmp_path))
    detected = model.detected_preprocessing
    assert (detected.mode, detected.layer) == (None, None)
    assert "does not start with a Rescaling or Normalization" in detected.reason
    assert model.preprocessing == "unit"
    images = _images(rng)
    expected = network.predict(images.astype("float32") / 255.0, verbose=0)
    np.testing.assert_allclose(model.probabilities(images), expected, rtol=1e-5, atol=1e-6)


def test_leading_rescaling_means_raw_pixels(tmp_path, rng):
    network = _sequential(L.Rescaling(1 / 255, name="rescaling"))
    model = load_model_file(_saved(network, tmp_path))
    detected = model.detected_preprocessing
    assert (detected.mode, detected.layer) == ("raw", "rescaling")
    # 1/255 = 0.0039216: the sentence quotes the layer's own numbers
    assert detected.reason == ("The model starts with a Rescaling layer (x * 0.00392 + 0), so it "
                               "takes 0-255 pixels.")
    assert model.preprocessing == "raw"
    images = _images(rng)
    expected = network.predict(images.astype("float32"), verbose=0)  # the network rescales itself
    np.testing.assert_allclose(model.probabilities(images), expected, rtol=1e-5, atol=1e-6)


def test_rescaling_first_inside_a_nested_base_model_counts(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs)
    base = keras.Model(inputs, L.Conv2D(4, 3, name="conv")(x), name="base")
    network = keras.Sequential([keras.Input((8, 8, 3)), base, L.GlobalAveragePooling2D(),
                                L.Dense(2, activation="softmax")])
    detected = load_model_file(_saved(network, tmp_path)).detected_preprocessing
    assert (detected.mode, detected.layer) == ("raw", "base/scale")
    assert "x * 0.00784 - 1" in detected.reason  # 1/127.5 = 0.0078431


def test_leading_normalization_with_pixel_statistics_means_raw_pixels(tmp_path, rng):
    mean, std = np.array([123.7, 116.3, 103.5]), np.array([58.4, 57.1, 57.4])
    network = _sequential(L.Normalization(mean=mean, variance=std**2, name="norm"))
    model = load_model_file(_saved(network, tmp_path))
    detected = model.detected_preprocessing
    assert (detected.mode, detected.layer) == ("raw", "norm")
    # per-channel: 0 -> -123.7/58.4 = -2.12 (lowest), 255 -> (255-103.5)/57.4 = 2.64 (highest)
    assert "0-255 becomes -2.12 to 2.64" in detected.reason
    images = _images(rng)
    expected = network.predict(images.astype("float32"), verbose=0)
    np.testing.assert_allclose(model.probabilities(images), expected, rtol=1e-5, atol=1e-6)


def test_rescaling_then_normalization_is_one_preprocessing_named_by_its_first_layer(tmp_path):
    network = _sequential(L.Rescaling(1 / 255, name="to_unit"),
                          L.Normalization(mean=[0.5] * 3, variance=[0.25] * 3, name="norm"))
    detected = detect_preprocessing(keras.saving.load_model(_saved(network, tmp_path)))
    assert (detected.mode, detected.layer) == ("raw", "to_unit")
    # (x / 255 - 0.5) / 0.5 = x * 0.00784 - 1
    assert "Rescaling and Normalization layers (x * 0.00784 - 1)" in detected.reason


def test_augmentation_before_the_rescaling_is_looked_through(tmp_path):
    """The Keras tutorials' shape: an augmentation block, then Rescaling, then the network."""
    augment = keras.Sequential([L.RandomFlip("horizontal"), L.RandomRotation(0.1)],
                               name="augment")
    network = _sequential(augment, L.Rescaling(1 / 255, name="rescaling"))
    detected = detect_preprocessing(keras.saving.load_model(_saved(network, tmp_path)))
    assert (detected.mode, detected.layer) == ("raw", "rescaling")


def test_rescaling_deep_inside_the_network_is_not_preprocessing(tmp_path):
    keras.utils.set_random_seed(0)
    network = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(3, 1, name="first"),
                                L.Rescaling(1 / 255, name="deep"), *_head()])
    model = load_model_file(_saved(network, tmp_path))
    assert model.detected_preprocessing.mode is None
    assert model.preprocessing == "unit"


def test_input_that_also_skips_past_the_rescaling_is_not_preprocessing(tmp_path):
    """The input feeds a Rescaling and, by a shortcut, a convolution: it is not scaled first."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = L.Add()([L.Rescaling(1 / 255)(inputs), L.Conv2D(3, 1)(inputs)])
    network = keras.Model(inputs, L.Dense(2)(L.GlobalAveragePooling2D()(L.Conv2D(2, 3)(x))))
    assert detect_preprocessing(keras.saving.load_model(_saved(network, tmp_path))).mode is None


def test_rescaling_made_for_unit_pixels_asks_for_unit_pixels(tmp_path):
    """Rescaling(2, offset=-1) maps [0, 1] to [-1, 1]; fed 0-255 it would give up to 509."""
    network = _sequential(L.Rescaling(2.0, offset=-1.0, name="to_pm1"))
    model = load_model_file(_saved(network, tmp_path))
    assert model.detected_preprocessing.mode == "unit"
    assert model.preprocessing == "unit"
    assert "up to 509" in model.detected_preprocessing.reason


@pytest.mark.parametrize("mode", ["unit", "tf"])
def test_explicit_preprocessing_wins_over_the_detected_one(tmp_path, mode):
    path = _saved(_sequential(L.Rescaling(1 / 255)), tmp_path)
    model = load_model_file(path, preprocessing=mode)
    assert model.preprocessing == mode
    assert model.detected_preprocessing.mode == "raw"  # still said, for the UI


def test_the_same_file_with_other_preprocessing_has_another_cache_key(tmp_path):
    path = _saved(_sequential(L.Rescaling(1 / 255)), tmp_path)
    keys = {load_model_file(path, preprocessing=mode).key for mode in PREPROCESSING_MODES}
    assert len(keys) == len(PREPROCESSING_MODES)


def test_a_1000_class_model_gets_the_imagenet_names_unless_names_are_given(tmp_path):
    keras.utils.set_random_seed(0)
    network = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(2, 3),
                                L.GlobalAveragePooling2D(), L.Dense(1000, activation="softmax")])
    path = _saved(network, tmp_path)
    names = load_model_file(path).class_names
    assert len(names) == 1000
    assert (names[0], names[281], names[967]) == ("tench", "tabby cat", "espresso")
    given = [f"mine {i}" for i in range(1000)]
    assert load_model_file(path, class_names=given).class_names == given


def test_transfer_mobilenet_with_its_rescaling_inside_sees_the_cat(tmp_path, mobilenet_weights):
    """The real case: a saved Sequential of Rescaling(1/127.5, -1) and the ImageNet MobileNet,
    loaded with the defaults, predicts a cat class for skimage's chelsea (the shared weights'
    README: squashed to 224 its top-1 is 285 Egyptian cat, 0.355)."""
    import skimage.data

    mobilenet = keras.applications.MobileNet(alpha=0.25, input_shape=(224, 224, 3),
                                             weights=str(mobilenet_weights))
    network = keras.Sequential([keras.Input((224, 224, 3)),
                                L.Rescaling(1 / 127.5, offset=-1, name="to_pm1"), mobilenet])
    model = load_model_file(_saved(network, tmp_path))
    assert model.preprocessing == "raw"
    assert model.detected_preprocessing.layer == "to_pm1"
    probs = model.probabilities(skimage.data.chelsea())[0]  # prepare() squashes it to 224
    top = int(probs.argmax())
    assert 281 <= top <= 285, (top, probs[top])  # ImageNet's domestic cats
    assert model.class_names[top] in {"tabby cat", "a cat having a striped coat", "Persian cat",
                                      "Siamese cat", "Egyptian Mau"}
