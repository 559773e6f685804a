"""A tiny data set and settings for the training tests: 2 epochs of 48 images of 32x32 pixels
train in a few seconds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from engine.training import RunConfig

N_TRAIN, N_VALIDATION, N_TEST, BATCH = 48, 12, 12, 8
STEPS = N_TRAIN // BATCH


def random_batch_norm_statistics(model, seed: int) -> np.random.Generator:
    """Give every BatchNormalization layer of ``model`` non-trivial gamma, beta, mean and
    variance (fresh layers hold 1, 0, 0, 1, where folding them would be the identity and prove
    nothing). Returns the generator, for drawing test inputs from it."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(0, 0.5, c),
                               rng.normal(0, 0.5, c), rng.uniform(0.2, 3, c)])
    return rng


def tiny_dataset(dest: Path):
    """The demo shapes at 32x32: 8 training, 2 validation and 2 test images per class."""
    from engine.data import export_demo

    return export_demo(dest, n=72, size=32, seed=0)


def tiny_config(dataset, **changes) -> RunConfig:
    settings = dict(dataset=str(dataset.folder), epochs=2, batch_size=BATCH, image_size=(32, 32),
                    probe_images=6)
    settings.update(changes)
    return RunConfig(**settings)


def split_arrays(dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The images of a split read with Pillow (not with the pipeline under test), and labels."""
    files = dataset.files_in(split)
    images = np.stack([np.asarray(Image.open(dataset.path_of(f)).convert("RGB")) for f in files])
    return images, np.array([f.label for f in files])


def wait_for(predicate, timeout: float = 120.0, every: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(every)
