"""The bundled demo model: a small VGG-style CNN that names the shape in an image.

It exists so every page works out of the box, offline, in seconds on a CPU, on a model whose right
answer is known: the class, and where the object is. Build it with ``build_demo_model``; rebuild
the bundled ``assets/demo_model.keras`` and its model card with::

    python -m engine.models.demo --out assets

The model takes float RGB in [0, 1] (``x / 255``, done outside the model by the wrapper) and
ends in global average pooling and one dense softmax layer, so class activation maps of the
last convolution localise the object.

Training uses batch normalisation after every convolution, which makes a few epochs enough; the
saved model has it folded into the convolutions (``engine.models.folding``), so each
``blockN_convM`` layer outputs its rectified feature map directly, like VGG16's, and the
explorer's layer pickers show only convolutions and pools. It trains through the loop every
network of the project trains through (``engine.training.loop.fit``), on the mirrors a demo
data set is saved with (``engine.data.MIRRORS``), by the layers a run augments with.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from engine.data.pipeline import MIRRORS
from engine.data.shapes import CLASS_NAMES, make_shapes, write_sample_images
from engine.models.folding import fold_batch_norm

# Filters per block and convolutions per block. Three 2x2 pools take 64x64 down to 8x8 at the
# last convolution: coarse enough to see whole shapes, fine enough for a useful CAM.
BLOCK_FILTERS = (16, 32, 64, 128)
BLOCK_CONVS = (1, 1, 2, 2)
LAST_CONV_LAYER = f"block{len(BLOCK_FILTERS)}_conv{BLOCK_CONVS[-1]}"

TRAIN_SEED = 0
HELDOUT_SEED = 1000
#: the name of the network (``fold_batch_norm`` finds its plain twin by it)
MODEL_NAME = "demo"
#: the quarter turns and mirrors of the square: every shape keeps its class under them, and
#: they cost almost nothing next to a training step, unlike drawing more images
AUGMENTATION = MIRRORS


@dataclass(frozen=True)
class TrainingConfig:
    """What ``train_demo_model`` does; the defaults make the bundled model.

    Attributes:
        input_size: ``(height, width)`` of the model input; the images are square, so both equal.
        train_images: images generated from ``train_seed`` and trained on.
        heldout_images: fresh images from ``heldout_seed`` that the accuracy is measured on.
        epochs: passes over the training images.
        batch_size: images per step.
        learning_rate: Adam's peak learning rate, reached after a linear warm-up over
            ``warmup`` of the steps, then decayed to 0 along a cosine.
        warmup: the share of the steps the learning rate rises over.
        train_seed: shapes seed of the training images and Keras' random seed.
        heldout_seed: shapes seed of the held-out images, never used for training.
    """

    input_size: tuple[int, int] = (64, 64)
    train_images: int = 18_000
    heldout_images: int = 3_000
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup: float = 0.05
    train_seed: int = TRAIN_SEED
    heldout_seed: int = HELDOUT_SEED


def build_demo_model(input_size: tuple[int, int] = (64, 64), n_classes: int = 6) -> keras.Model:
    """The demo CNN, untrained, as it is saved (no batch normalisation).

    Layers: ``block1_conv1, block1_pool, block2_conv1, block2_pool, block3_conv1, block3_conv2,
    block3_pool, block4_conv1, block4_conv2, global_pool, predictions``. Every convolution is
    3x3, "same" padded, with a bias and a ReLU.

    Args:
        input_size: ``(height, width)`` of the input, each divisible by 8 and >= 64 so that the
            last convolution is at least 8x8.
        n_classes: number of output classes, >= 2.

    Returns:
        A functional ``keras.Model`` named ``"demo"``: ``(batch, h, w, 3)`` float32 RGB in
        [0, 1] -> ``(batch, n_classes)`` softmax probabilities.

    Raises:
        ValueError: an input size that is not a multiple of 8 or is below 64, or fewer than 2
            classes.
    """
    return _build(input_size, n_classes, batch_norm=False)


def _build(input_size: tuple[int, int], n_classes: int, *, batch_norm: bool) -> keras.Model:
    h, w = input_size
    pools = len(BLOCK_FILTERS) - 1
    if h % 2**pools or w % 2**pools or min(h, w) < 8 * 2**pools:
        raise ValueError(
            f"input_size must be multiples of {2**pools} and at least {8 * 2**pools}, got "
            f"{input_size}.")
    if n_classes < 2:
        raise ValueError(f"n_classes must be at least 2, got {n_classes}.")

    inputs = keras.Input((h, w, 3), name="image")
    x = inputs
    for block, (filters, convs) in enumerate(zip(BLOCK_FILTERS, BLOCK_CONVS), start=1):
        for conv in range(1, convs + 1):
            name = f"block{block}_conv{conv}"
            if batch_norm:
                x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
                x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
                x = keras.layers.ReLU(name=f"{name}_relu")(x)
            else:
                x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                        name=name)(x)
        if block <= pools:
            x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=MODEL_NAME)


def train_demo_model(
    out_dir: str | Path = "assets",
    config: TrainingConfig = TrainingConfig(),
    *,
    verbose: int = 2,
) -> dict:
    """Train the demo model from scratch and write it, its model card and the sample images.

    Writes ``<out_dir>/demo_model.keras``, ``<out_dir>/demo_model.json`` (the card) and
    ``<out_dir>/images/shape_<class>.png``.

    Args:
        out_dir: folder to write into; created if missing.
        config: sizes, seeds and schedule.
        verbose: Keras ``fit`` verbosity (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        The model card as written: ``name, title, classes, input_size [h, w], preprocessing``
        (``"unit"``: the model takes ``x / 255``), ``heldout_accuracy`` (in [0, 1]) measured on
        ``heldout_images`` fresh images from ``heldout_seed``, ``train_seed, train_images, epochs,
        batch_size, augmentation``, ``training_seconds`` (the ``fit`` alone), ``total_seconds``
        (data, fit, evaluation and saving), ``last_conv_layer, keras_version, params,
        file_bytes`` and ``confusion_matrix`` (rows: true class, columns: predicted).

    Raises:
        ValueError: a non-square ``config.input_size``.
        RuntimeError: folding batch norm changed the predictions (a bug, not a user error).
    """
    from engine.training.data import array_pipeline
    from engine.training.loop import Recipe, fit

    started = time.perf_counter()
    size = config.input_size[0]
    if config.input_size[1] != size:
        raise ValueError(f"the shapes are square; got input_size {config.input_size}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Seeds Python, NumPy and TensorFlow: initial weights, shuffling and augmentation. Threaded
    # CPU kernels may still sum in another order, so reruns agree closely, not bit for bit.
    keras.utils.set_random_seed(config.train_seed)

    train = make_shapes(config.train_images, size=size, seed=config.train_seed)
    heldout = make_shapes(config.heldout_images, size=size, seed=config.heldout_seed)
    generated = time.perf_counter()

    model = _build(config.input_size, len(CLASS_NAMES), batch_norm=True)
    heldout_x = heldout.images.astype(np.float32) / 255.0
    fit(model, array_pipeline(train.images, train.labels, config.batch_size,
                              augment=AUGMENTATION, seed=config.train_seed),
        recipe=Recipe(warmup=config.warmup, label_smoothing=0.0),
        learning_rate=config.learning_rate, epochs=config.epochs, verbose=verbose)
    trained = time.perf_counter()

    folded = fold_batch_norm(model)
    probs = folded.predict(heldout_x, batch_size=256, verbose=0)
    drift = np.abs(probs - model.predict(heldout_x, batch_size=256, verbose=0)).max()
    if drift > 1e-3:
        raise RuntimeError(f"folding batch norm changed the probabilities by up to {drift:.2g}.")
    predicted = probs.argmax(axis=1)
    confusion = np.zeros((len(CLASS_NAMES),) * 2, dtype=np.int64)
    np.add.at(confusion, (heldout.labels, predicted), 1)

    model_path = out / "demo_model.keras"
    folded.save(model_path)
    write_sample_images(out / "images")
    card = {
        "name": MODEL_NAME,
        "title": "Shapes demo CNN",
        "classes": list(CLASS_NAMES),
        "input_size": list(config.input_size),
        "preprocessing": "unit",
        "heldout_accuracy": round(float((predicted == heldout.labels).mean()), 4),
        "heldout_seed": config.heldout_seed,
        "heldout_images": config.heldout_images,
        "train_seed": config.train_seed,
        "train_images": config.train_images,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "augmentation": "random flips and transposes",  # AUGMENTATION, in words
        "training_seconds": round(trained - generated, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "last_conv_layer": LAST_CONV_LAYER,
        "keras_version": keras.__version__,
        "params": int(folded.count_params()),
        "file_bytes": model_path.stat().st_size,
        "confusion_matrix": confusion.tolist(),
    }
    (out / "demo_model.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="assets", help="folder to write into (default: assets)")
    parser.add_argument("--epochs", type=int, default=TrainingConfig.epochs)
    parser.add_argument("--train-images", type=int, default=TrainingConfig.train_images)
    args = parser.parse_args(argv)
    card = train_demo_model(
        args.out, TrainingConfig(epochs=args.epochs, train_images=args.train_images))
    summary = {k: v for k, v in card.items() if k != "confusion_matrix"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
