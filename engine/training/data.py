"""The splits a run trains, validates and evaluates on, streamed by the data set pipeline.

Training reads images through ``engine.data.pipeline.tf_dataset`` (RGB 0-255 from disk) and adds
one step: the model's own preprocessing, so the saved network takes the same input as every
other model of the explorer (``ExplorableModel.preprocess`` is applied outside the network).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.data.dataset import ALL, Dataset
from engine.data.pipeline import (Augmentation, augmentation_layers, load_augmentation,
                                  tf_dataset)
from engine.errors import TrainingError

#: from scratch, the longest side images are trained at by default (the data set's own size
#: when smaller): a side of 128 already costs four times the compute of 64
SCRATCH_MAX_SIDE = 128
#: the smallest side a run trains at (``RunConfig.validate`` refuses less)
MIN_SIDE = 32
#: the sides ``default_image_size`` returns are multiples of this: the scratch CNN's four 2x2
#: poolings then drop no row or column
SIDE_STEP = 16


@dataclass(frozen=True)
class TrainingData:
    """A data set with the splits a run uses.

    Attributes:
        dataset: the data set, with a ``validation`` split carved out of the training images
            when it had none (``carved``).
        train: the training split's name.
        validation: the validation split's name.
        evaluation: the split the finished model is evaluated on: ``test`` when there is one,
            else ``validation``.
        carved: whether ``validation`` was made here from ``validation_split``.
    """

    dataset: Dataset
    train: str
    validation: str
    evaluation: str
    carved: bool

    @property
    def class_names(self) -> list[str]:
        return list(self.dataset.class_names)

    def count(self, split: str) -> int:
        return len(self.dataset.files_in(split))


def training_splits(dataset: Dataset, validation_split: float = 0.2,
                    seed: int = 0) -> TrainingData:
    """Pick (or make) the train, validation and evaluation splits of ``dataset``.

    Without a validation split, ``validation_split`` of each class's training images (at least
    one per class that has two or more) become the validation split; the choice depends only
    on the files and ``seed``.

    Raises:
        TrainingError: no training images, or fewer than two classes in them.
    """
    splits = dataset.splits
    if "train" in splits:
        source = "train"
    elif splits == [ALL]:
        source = ALL
    else:
        raise TrainingError(
            f"The data set '{dataset.name}' has no training images (its splits are "
            f"{', '.join(splits)}); add a 'train' folder, or use class folders without splits.")
    carved = "validation" not in splits
    if carved:
        dataset = _carve_validation(dataset, source, validation_split, seed)
    train_labels = {f.label for f in dataset.files_in("train")}
    if len(train_labels) < 2:
        raise TrainingError(f"The training images of '{dataset.name}' hold {len(train_labels)} "
                            "class; a classifier needs images of at least two classes.")
    evaluation = "test" if "test" in dataset.splits else "validation"
    return TrainingData(dataset, "train", "validation", evaluation, carved)


def _carve_validation(dataset: Dataset, source: str, share: float, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    files = list(dataset.files)
    by_class: dict[int, list[int]] = {}
    for i, f in enumerate(files):
        if f.split == source:
            by_class.setdefault(f.label, []).append(i)
    held_out = set()
    for label in sorted(by_class):
        members = by_class[label]
        n = len(members)
        k = min(n - 1, max(1, round(n * share))) if n >= 2 else 0
        held_out.update(members[j] for j in rng.permutation(n)[:k])
    out = []
    for i, f in enumerate(files):
        if f.split == source:
            f = dataclasses.replace(f, split="validation" if i in held_out else "train")
        out.append(f)
    if not held_out:
        raise TrainingError(f"The data set '{dataset.name}' is too small to hold out "
                            "validation images; add more images.")
    return dataclasses.replace(dataset, files=tuple(out))


def input_pipeline(data: TrainingData, split: str, image_size: tuple[int, int],
                   batch_size: int, preprocessing: str, *, channels: int = 3,
                   augment: Augmentation | None = None, shuffle: bool | None = None,
                   seed: int | None = 0):
    """Batches of one split, ready for the network.

    Args:
        data: the splits.
        split: ``data.train``, ``data.validation`` or ``data.evaluation``.
        image_size: (height, width).
        batch_size: images per batch.
        preprocessing: a mode of ``engine.models.preprocessing.PREPROCESSING_MODES``.
        channels: 1 for a grayscale network (fed the luminance), else 3.
        augment: augmentation settings, or None.
        shuffle: shuffle each epoch (default: for the training split only).
        seed: shuffle and augmentation seed.

    Returns:
        ``tf.data.Dataset`` of ``(x, labels)``: ``x`` ``(B, h, w, channels)`` float32, what the
        network's first layer expects; ``labels`` ``(B,)`` int32.
    """
    ds = tf_dataset(data.dataset, split, image_size, batch_size, augment=augment,
                    shuffle=shuffle, seed=seed)
    return _ready(ds, preprocessing, channels)


def array_pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int,
                   preprocessing: str = "unit", *, augment: Augmentation | None = None,
                   shuffle: bool = True, seed: int = 0):
    """Batches of images held in memory, made as ``input_pipeline`` makes a split's: in a new
    order each epoch, batched, augmented by the same layers
    (``engine.data.pipeline.augmentation_layers``), preprocessed.

    The orders are drawn from a NumPy generator seeded with ``seed`` (``epoch_orders``), so a
    configuration sees its images in the same orders every time, whatever TensorFlow's global
    seed (which other work of the same process may set).

    Args:
        images: ``(N, h, w, 3)`` uint8 RGB.
        labels: ``(N,)`` integer class indices.
        batch_size: images per batch (the last one may be smaller).
        preprocessing: a mode of ``engine.models.preprocessing.PREPROCESSING_MODES``.
        augment: augmentation settings, or None.
        shuffle: a new order each epoch (else the given order).
        seed: order and augmentation seed.

    Returns:
        ``tf.data.Dataset`` of ``(x, labels)``: ``x`` ``(B, h, w, 3)`` float32,
        preprocessed; ``labels`` ``(B,)`` int32.
    """
    import tensorflow as tf

    x, y = tf.constant(images), tf.constant(np.asarray(labels, np.int32))
    order = epoch_orders(len(images), seed) if shuffle else tf.data.Dataset.range(len(images))
    ds = order.batch(batch_size).map(lambda i: (tf.gather(x, i), tf.gather(y, i)))
    if augment is not None and not augment.is_identity:
        layers = augmentation_layers(augment, seed=seed)  # they take floats in [0, 255]
        ds = ds.map(lambda x, y: (layers(tf.cast(x, tf.float32), training=True), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return _ready(ds, preprocessing, channels=3)


def epoch_orders(n: int, seed: int):
    """The indices ``0 .. n - 1`` as a ``tf.data.Dataset``, in a new order each time it is
    read (each epoch): ``numpy.random.default_rng(seed).permutation(n)``, then the
    generator's next permutation, and so on."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def draw(_):
        order = tf.numpy_function(lambda: rng.permutation(n).astype(np.int64), [], tf.int64)
        return tf.ensure_shape(order, (n,))

    return (tf.data.Dataset.from_tensors(0).map(draw).unbatch()
            .apply(tf.data.experimental.assert_cardinality(n)))


def _ready(batches, preprocessing: str, channels: int):
    """The batches as the network takes them: grayscale for one channel, preprocessed."""
    import tensorflow as tf

    from engine.models.preprocessing import preprocess

    def ready(x, y):
        if channels == 1:
            x = tf.image.rgb_to_grayscale(x)
        return preprocess(x, preprocessing), y

    return batches.map(ready, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def training_augmentation(data: TrainingData, enabled: bool) -> Augmentation | None:
    """The data set's saved augmentation when ``enabled`` and not all off, else None."""
    if not enabled:
        return None
    augment = load_augmentation(data.dataset)
    return None if augment.is_identity else augment


def default_image_size(dataset: Dataset, cap: int = SCRATCH_MAX_SIDE, *,
                       sample: int = 200) -> tuple[int, int]:
    """The square a run trains at when the settings give no size: the data set's own images'
    median longer side, rounded to a multiple of ``SIDE_STEP``, at most ``cap`` and at least
    ``MIN_SIDE``. Upscaling small images adds no detail, only compute, and makes each
    object wider than what the network's last convolutions see: on the 3,000-image demo set
    (64 pixels) the default recipe reached 0.85 validation accuracy after 4 epochs at 64
    pixels (33 s here), 0.68 at 128 (117 s) (``bench/training.py --scratch-sizes``).

    Only image headers are read (Pillow opens a file without decoding its pixels), of at most
    ``sample`` files spread evenly over the data set.

    Args:
        dataset: the data set.
        cap: the largest side returned.
        sample: most files looked at.

    Returns:
        ``(side, side)``; ``(cap, cap)`` when no file can be read.
    """
    files = dataset.files
    picked = files[::max(1, math.ceil(len(files) / sample))] if sample > 0 else ()
    sides = []
    for file in picked:
        try:
            with Image.open(dataset.path_of(file)) as image:
                sides.append(max(image.size))  # an EXIF rotation keeps the longer side
        except (OSError, ValueError, Image.DecompressionBombError):  # changed since the import
            continue
    if not sides:
        return cap, cap
    side = SIDE_STEP * round(statistics.median(sides) / SIDE_STEP)
    side = max(MIN_SIDE, min(cap, side))
    return side, side


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    return max(1, math.ceil(n_images / batch_size))
