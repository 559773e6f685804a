"""The classic small CNN trained from scratch (Chollet, Deep Learning with Python, ch. 5)."""

from __future__ import annotations

import keras

from engine.models import folding

#: filters of the four Conv2D + MaxPooling blocks, and the head: Dropout, then Dense
BLOCK_FILTERS = (32, 64, 128, 128)
DENSE_UNITS = 512
DROPOUT = 0.5
#: moving-average momentum of the batch norms while training. Keras' 0.99 needs hundreds of
#: steps before the statistics inference uses are right: a small data set (120 demo images,
#: 3 batches an epoch) then showed chance validation accuracy for 20 epochs, 0.5 with 0.9.
BN_MOMENTUM = 0.9
#: the name of the network (``folding.fold_batch_norm`` finds its plain twin by it)
MODEL_NAME = "scratch_cnn"


def build_scratch_cnn(input_size: tuple[int, int] = (128, 128), n_classes: int = 2,
                      *, seed: int | None = 0, batch_norm: bool = False,
                      zero_head: bool = False) -> keras.Model:
    """Four blocks of a 3x3 Conv2D (32, 64, 128, 128 filters, ReLU) and 2x2 max pooling, then
    Flatten, Dropout 0.5, Dense 512 and a softmax: Chollet's classic small CNN.

    The convolutions are zero-padded ("same"), where Chollet's are not: an unpadded 3x3
    convolution sees the image's outermost pixels through one kernel tap, and at 64 pixels the
    second pooling (29 -> 14) drops the last row and column, so the bottom two rows and right
    two columns of the image reached no output at all. Objects touching the border were what
    it got wrong. On the 18,000-image demo shapes set at 64 pixels (6 epochs, batch norm, 5 %
    warm-up, learning rate 2e-3, flips and the diagonal mirror) the padded network made 7
    errors in 9,000 held-out images, the unpadded one 13; both at Adam's 1e-3 without
    warm-up, 13 and 22. The fourth block and the dropout matter: three blocks and a Dense 128
    head without dropout reached 0.957 held-out accuracy after 6 epochs, this network 0.982
    (no batch norm, no augmentation). Trained as runs train it by default (batch norm and no
    dropout, label smoothing, warm-up), ``bench/training.py --accuracy`` measures it.

    Args:
        input_size: (height, width) of the RGB input, at least 32x32.
        n_classes: number of output classes, at least 2.
        seed: seed of the random initialisation and the dropout (None: a fresh one each call).
        batch_norm: the network as training runs build it: each convolution and the Dense
            512 without a bias, followed by ``<name>_bn`` (BatchNormalization) and
            ``block<n>_relu`` / ``dense_relu``, no dropout (batch norm regularises; Ioffe &
            Szegedy 2015 drop it too), and He initialisation (He et al. 2015; torchvision's
            for its batch-normalised networks). It learns in far fewer epochs;
            ``folding.fold_batch_norm`` turns it back into the classic network (whose
            dropout does nothing at inference), computing the same. The Dense 512's batch norm keeps
            its units alive: its 2,048 (at 64 pixels) to 8,192 (at 128) inputs are all positive
            (pooled ReLUs), so each Adam step, about the learning rate on every weight, moved a
            unit's input by up to lr x 8,192, and one step down left it dead for good. On the
            3,000-image demo set, 97 % of the units were dead after one epoch at 64 pixels (0.33
            validation accuracy after 4 epochs) and all of them within 11 steps at 128 (chance for
            10 epochs); with it, none. He's larger starting weights (a batch norm makes a kernel's
            scale matter only to how far each step turns it) took 128 pixels from 0.35 to 0.57 after
            4 epochs.
        zero_head: start the classifier (``predictions``) at zero weights, as Fixup (Zhang et
            al. 2019) does: every class 1/k, the loss ln k, whatever the image, and no random
            classifier's confident mistakes to unlearn first. With batch norm, 4 epochs on
            the 3,000-image demo set at 64 pixels reached 0.86 validation accuracy with it,
            0.50 without.

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
    init = (keras.initializers.HeNormal(seed=seed) if batch_norm
            else keras.initializers.GlorotUniform(seed=seed))
    inputs = keras.Input((h, w, 3), name="image")
    x = inputs
    for block, filters in enumerate(BLOCK_FILTERS, start=1):
        name = f"block{block}_conv"
        if batch_norm:
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                    kernel_initializer=init, name=name)(x)
            x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM,
                                                name=name + folding.BN_SUFFIX)(x)
            x = keras.layers.ReLU(name=f"block{block}_relu")(x)
        else:
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                    kernel_initializer=init, name=name)(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    if batch_norm:
        x = keras.layers.Dense(DENSE_UNITS, use_bias=False, kernel_initializer=init,
                               name="dense")(x)
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM,
                                            name="dense" + folding.BN_SUFFIX)(x)
        x = keras.layers.ReLU(name="dense_relu")(x)
    else:
        x = keras.layers.Dropout(DROPOUT, seed=seed, name="dropout")(x)
        x = keras.layers.Dense(DENSE_UNITS, activation="relu", kernel_initializer=init,
                               name="dense")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax",
                                 kernel_initializer="zeros" if zero_head else init,
                                 name="predictions")(x)
    return keras.Model(inputs, outputs, name=MODEL_NAME)
