"""Models shared by the tests of contrastive maps, channel contributions and concepts."""

from __future__ import annotations

import keras
import pytest

from engine.models.catalogue import DEMO_MODEL_PATH
from engine.models.explorable import ExplorableModel


def demo_model() -> ExplorableModel:
    """The bundled demo model (the test is skipped where it is not built)."""
    if not DEMO_MODEL_PATH.exists():
        pytest.skip("demo model not built")
    from engine.models import load_model

    return load_model("demo")


def tiny_model(size: int, filters: tuple[int, int], class_names: list[str], seed: int,
               pool: bool = True) -> ExplorableModel:
    """Rescale, conv1 (ReLU), [2x2 max pool], conv2 (ReLU), global average pooling, Dense
    softmax "predictions": a GAP head whose first convolution reaches the score non-linearly.
    The wrapper passes 0-255 through ("raw"); fixed random weights."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(filters[0], 3, padding="same", activation="relu", name="conv1")(x)
    if pool:
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(filters[1], 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(len(class_names), activation="softmax", name="predictions")(x)
    return ExplorableModel(keras.Model(inputs, outputs), name="tiny", class_names=class_names,
                           preprocessing="raw", input_size=(size, size))
