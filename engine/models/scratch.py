"""The classic small CNN trained from scratch (Chollet, Deep Learning with Python, ch. 5)."""

from __future__ import annotations

import keras


def build_scratch_cnn(input_size: tuple[int, int] = (128, 128), n_classes: int = 2,
                      *, seed: int | None = 0) -> keras.Model:
    """Conv2D 32/64/128 blocks with max pooling, then Flatten, Dense 128 and a softmax.

    Args:
        input_size: (height, width) of the RGB input, at least 32x32.
        n_classes: number of output classes, at least 2.
        seed: seed of the random initialisation (None: a fresh one each call).

    Returns:
        An untrained functional model taking (N, h, w, 3) float32 in [0, 1].

    Raises:
        ValueError: input smaller than 32x32 or fewer than 2 classes.
    """
    h, w = input_size
    if min(h, w) < 32:
        raise ValueError(f"The scratch CNN needs an input of at least 32x32 pixels, not {h}x{w}.")
    if n_classes < 2:
        raise ValueError(f"A classifier needs at least 2 classes, not {n_classes}.")
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((h, w, 3), name="image")
    x = inputs
    for block, filters in enumerate((32, 64, 128), start=1):
        x = keras.layers.Conv2D(filters, 3, activation="relu", kernel_initializer=init,
                                name=f"block{block}_conv")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", kernel_initializer=init, name="dense")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", kernel_initializer=init,
                                 name="predictions")(x)
    return keras.Model(inputs, outputs, name="scratch_cnn")
