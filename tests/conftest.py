"""Shared fixtures: tiny models and images so the engine tests run in milliseconds."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: Test-only real ImageNet weights next to the repository (never copied into it);
#: SHARED_WEIGHTS_DIR points the tests elsewhere (a missing folder: as on a machine without them).
SHARED_WEIGHTS = Path(os.environ.get("SHARED_WEIGHTS_DIR") or ROOT.parent / "shared" / "weights")
MOBILENET_WEIGHTS = SHARED_WEIGHTS / "mobilenet_v1_0.25_224.h5"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: heavier tests (real networks); run with -m slow")


@pytest.fixture(scope="session")
def tiny_cnn():
    """An 8x8 RGB conv net with 3 classes and fixed random weights."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    """The shared MobileNet v1 0.25 ImageNet weights file (Keras 2 HDF5, with its top).

    Without it the test is skipped; with REQUIRE_WEIGHTS=1 (``make test``) it fails instead, so
    a run that should cover the real network cannot pass without it.
    """
    if not MOBILENET_WEIGHTS.is_file():
        message = f"no shared MobileNet weights file at {MOBILENET_WEIGHTS}"
        if os.environ.get("REQUIRE_WEIGHTS") == "1":
            pytest.fail("REQUIRE_WEIGHTS=1: " + message, pytrace=False)
        pytest.skip(message)
    return MOBILENET_WEIGHTS


@pytest.fixture
def rng():
    return np.random.default_rng(0)
