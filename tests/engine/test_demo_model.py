"""The bundled demo model: loads safely, localises, and is as accurate as its card says."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from engine.data.shapes import CLASS_NAMES, make_shapes
from engine.models.demo import _build, build_demo_model
from engine.models.folding import fold_batch_norm
from tests.conftest import ROOT
from tests.engine.training_helpers import random_batch_norm_statistics

ASSETS = ROOT / "assets"
# Neither the training seed (0) nor the held-out seed (1000) of the card: a fresh measurement.
TEST_SEED = 777


@pytest.fixture(scope="module")
def card():
    return json.loads((ASSETS / "demo_model.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def model():
    return keras.saving.load_model(ASSETS / "demo_model.keras", safe_mode=True)


def test_card_matches_the_model(card, model):
    assert card["classes"] == list(CLASS_NAMES)
    assert card["preprocessing"] == "unit"
    assert tuple(model.inputs[0].shape[1:]) == (*card["input_size"], 3)
    assert card["params"] == model.count_params()
    assert TEST_SEED not in (card["train_seed"], card["heldout_seed"])
    assert np.sum(card["confusion_matrix"]) == card["heldout_images"]


def test_file_is_at_most_5_mb():
    assert (ASSETS / "demo_model.keras").stat().st_size <= 5 * 2**20


def test_last_conv_layer_is_at_least_8x8_and_feeds_global_pooling(card, model):
    last_conv = model.get_layer(card["last_conv_layer"])
    assert isinstance(last_conv, keras.layers.Conv2D)
    assert min(last_conv.output.shape[1:3]) >= 8
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs[-1] is last_conv
    assert isinstance(model.layers[-2], keras.layers.GlobalAveragePooling2D)
    assert model.get_layer("predictions").activation is keras.activations.softmax


def test_accuracy_on_fresh_images_is_at_least_95_percent(card, model):
    batch = make_shapes(300, size=card["input_size"][0], seed=TEST_SEED)
    probs = model.predict(batch.images.astype(np.float32) / 255.0, verbose=0)
    assert (probs.argmax(axis=1) == batch.labels).mean() >= 0.95


@pytest.mark.parametrize("label, name", list(enumerate(CLASS_NAMES)))
def test_bundled_sample_image_is_recognised(card, model, label, name):
    image = Image.open(ASSETS / "images" / f"shape_{name}.png").convert("RGB")
    x = np.asarray(image.resize(tuple(card["input_size"][::-1]), Image.BILINEAR), np.float32)
    assert model.predict(x[None] / 255.0, verbose=0)[0].argmax() == label


def test_build_demo_model_names_the_blocks():
    model = build_demo_model((64, 64), 6)
    names = [layer.name for layer in model.layers]
    assert names[1:4] == ["block1_conv1", "block1_pool", "block2_conv1"]
    assert names[-1] == "predictions" and model.outputs[0].shape[-1] == 6


@pytest.mark.parametrize("input_size", [(60, 64), (32, 32)])
def test_build_demo_model_rejects_sizes_that_leave_the_last_conv_under_8x8(input_size):
    with pytest.raises(ValueError):
        build_demo_model(input_size)


def test_folding_batch_norm_keeps_the_function():
    keras.utils.set_random_seed(3)
    trained = _build((64, 64), 6, batch_norm=True)
    rng = random_batch_norm_statistics(trained, 3)
    x = rng.uniform(0, 1, (4, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(fold_batch_norm(trained)(x), trained(x, training=False),
                               atol=1e-5)
