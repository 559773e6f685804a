"""Streaming a data set from disk with ``tf.data``, and the augmentation training uses.

``tf_dataset`` lists the files of a split and lets ``tf.data`` read, decode, resize, batch,
augment and prefetch them: only a few batches are ever in memory. Augmentation is a stack of
Keras 3 preprocessing layers (flip, rotation, shear, zoom, translation, brightness, contrast)
built from an ``Augmentation`` (the settings a person chose on the Data set page, saved with
the data set as ``augment.json``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from engine.data.dataset import Dataset
from engine.errors import InvalidDatasetError
from engine.images import load_image

AUGMENT_FILE = "augment.json"


def _up_to(top: float):
    """A numeric augmentation setting, off (0) by default, whose largest value is ``top``:
    the limit lives with the field; ``AUGMENT_LIMITS`` and the validation read it from there."""
    return field(default=0.0, metadata={"max": top})


@dataclass(frozen=True)
class Augmentation:
    """Classic image augmentation settings (0 / False switches one off).

    Attributes:
        horizontal_flip: mirror left-right half of the time.
        vertical_flip: mirror top-bottom half of the time (for images without an up, such as
            shapes, cells or satellite views).
        transpose: mirror on the main diagonal half of the time; with both flips, every
            quarter turn and mirror of the square. Square images only (training resizes to a
            square); others pass unchanged.
        rotation: largest rotation in degrees, either way, in [0, 180].
        shear: largest shear factor, either way, in [0, 1].
        zoom: largest zoom in or out, as a fraction of the size, in [0, 0.9].
        translation: largest shift, as a fraction of the size, in [0, 1].
        brightness: largest brightness change, as a fraction of the 0-255 range, in [0, 1].
        contrast: largest contrast change, as a fraction, in [0, 1].
    """

    horizontal_flip: bool = False
    vertical_flip: bool = False
    transpose: bool = False
    rotation: float = _up_to(180.0)
    shear: float = _up_to(1.0)
    zoom: float = _up_to(0.9)
    translation: float = _up_to(1.0)
    brightness: float = _up_to(1.0)
    contrast: float = _up_to(1.0)

    def __post_init__(self):
        for name, top in AUGMENT_LIMITS.items():
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value)
                    and 0 <= value <= top):
                raise InvalidDatasetError(
                    f"The augmentation setting '{name}' must be a number in [0, {top:g}], "
                    f"got {value!r}.")

    @property
    def is_identity(self) -> bool:
        """True when every setting is off (the images pass unchanged)."""
        return self == Augmentation()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Augmentation":
        """Settings from a dict; unknown keys are ignored, missing ones are off.

        Raises:
            InvalidDatasetError: a value out of range.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("horizontal_flip", "vertical_flip", "transpose"):
            if name in values:
                values[name] = bool(values[name])
        return cls(**values)


#: the largest value of each numeric augmentation setting (the Data set page's sliders end here)
AUGMENT_LIMITS = {f.name: f.metadata["max"] for f in fields(Augmentation) if "max" in f.metadata}


#: both flips and the diagonal mirror: every quarter turn and mirror of the square, the
#: symmetries that keep a shape's class (the demo data set's augmentation)
MIRRORS = Augmentation(horizontal_flip=True, vertical_flip=True, transpose=True)


def augmentation_layers(augment: Augmentation, seed: int | None = None):
    """The settings as a ``keras.Sequential`` of Keras 3 preprocessing layers.

    The layers expect and return float images in [0, 255] (``(B, H, W, 3)``) and change them
    only when called with ``training=True``. Empty areas left by rotations and shifts are filled
    by reflecting the image.

    Args:
        augment: the settings.
        seed: seed of the random layers (None: a fresh random draw every time).

    Returns:
        ``keras.Sequential`` (empty when ``augment.is_identity``).
    """
    import keras

    def next_seed() -> int | None:
        # Each layer its own seed: one shared seed would tie e.g. the zoom to the rotation.
        return None if seed is None else seed + len(layers)

    layers = []
    if augment.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=next_seed()))
    if augment.vertical_flip:
        layers.append(keras.layers.RandomFlip("vertical", seed=next_seed()))
    if augment.transpose:
        layers.append(_random_transpose(seed=next_seed()))
    if augment.rotation:
        layers.append(keras.layers.RandomRotation(augment.rotation / 360.0, seed=next_seed()))
    if augment.shear:
        layers.append(keras.layers.RandomShear(x_factor=augment.shear, y_factor=augment.shear,
                                               seed=next_seed()))
    if augment.zoom:
        layers.append(keras.layers.RandomZoom(augment.zoom, seed=next_seed()))
    if augment.translation:
        layers.append(keras.layers.RandomTranslation(augment.translation, augment.translation,
                                                     seed=next_seed()))
    if augment.brightness:
        layers.append(keras.layers.RandomBrightness(augment.brightness, value_range=(0, 255),
                                                    seed=next_seed()))
    if augment.contrast:
        layers.append(keras.layers.RandomContrast(augment.contrast, value_range=(0, 255),
                                                  seed=next_seed()))
    return keras.Sequential(layers, name="augmentation")


def _random_transpose(seed: int | None):
    """A layer that swaps rows and columns of each square image half of the time (Keras has
    flips, not this one); non-square batches pass unchanged."""
    import keras
    import tensorflow as tf

    class RandomTranspose(keras.layers.Layer):
        def call(self, images, training=True):
            side, other = images.shape[1], images.shape[2]
            if not training or side is None or side != other:
                return images
            coin = tf.random.uniform(tf.shape(images)[:1], seed=seed) < 0.5
            return tf.where(coin[:, None, None, None],
                            tf.transpose(images, [0, 2, 1, 3]), images)

    return RandomTranspose(name="random_transpose")


def augment_samples(image: np.ndarray, augment: Augmentation, n: int = 8,
                    seed: int = 0) -> np.ndarray:
    """``n`` randomly augmented versions of one image, for a preview grid.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        augment: the settings.
        n: how many versions, >= 1.
        seed: the same seed gives the same versions.

    Returns:
        ``(n, H, W, 3)`` uint8.
    """
    batch = np.repeat(np.asarray(image, np.float32)[None], n, axis=0)
    if augment.is_identity:
        return batch.astype(np.uint8)
    out = augmentation_layers(augment, seed=seed)(batch, training=True)
    return np.clip(np.rint(np.asarray(out)), 0, 255).astype(np.uint8)


def load_augmentation(dataset: Dataset) -> Augmentation:
    """The settings saved with the data set (all off when none were saved or unreadable)."""
    if dataset.folder is None:
        return Augmentation()
    try:
        return Augmentation.from_dict(json.loads((dataset.folder / AUGMENT_FILE).read_text()))
    except (OSError, ValueError, TypeError, InvalidDatasetError):
        return Augmentation()


def save_augmentation(dataset: Dataset, augment: Augmentation) -> None:
    """Save the settings with the data set; ``tf_dataset(..., augment=True)`` uses them.

    Raises:
        InvalidDatasetError: for a folder read in place without a data folder.
    """
    if dataset.folder is None:
        raise InvalidDatasetError(
            f"The data set '{dataset.name}' is not stored in the data folder, so settings "
            "cannot be saved with it; import it first.")
    tmp = dataset.folder / (AUGMENT_FILE + ".tmp")
    tmp.write_text(json.dumps(augment.to_dict()))
    os.replace(tmp, dataset.folder / AUGMENT_FILE)


def tf_dataset(dataset: Dataset, split: str | None, image_size: tuple[int, int],
               batch_size: int, augment: Augmentation | bool | None = None, *,
               shuffle: bool | None = None, seed: int | None = 0,
               drop_remainder: bool = False):
    """Stream one split of a data set from disk as batches.

    Files are listed up front; reading, decoding (TensorFlow's decoders, or ``load_image`` for
    files TensorFlow would read differently), resizing, augmenting and prefetching happen
    inside ``tf.data``.

    Args:
        dataset: the data set.
        split: ``"train"``, ``"validation"``, ``"test"``, or ``None`` / ``"all"`` for every
            file.
        image_size: ``(height, width)`` every image is resized to (bilinear, antialiased; the
            aspect ratio is not kept).
        batch_size: images per batch, >= 1.
        augment: None or False for none; True for the settings saved with the data set
            (``save_augmentation``); or an ``Augmentation``. Applied per batch.
        shuffle: shuffle the files each epoch (default: only for ``"train"``).
        seed: shuffle and augmentation seed (None: different every run).
        drop_remainder: drop the last, smaller batch.

    Returns:
        ``tf.data.Dataset`` of ``(images, labels)``: ``images`` ``(B, height, width, 3)``
        float32 in [0, 255] (the input ``ExplorableModel.preprocess`` expects), ``labels``
        ``(B,)`` int32 indices into ``dataset.class_names``.

    Raises:
        InvalidDatasetError: unknown split, or a split without images.
    """
    import tensorflow as tf

    files = dataset.files_in(split)
    if not files:
        raise InvalidDatasetError(f"The '{split}' split of '{dataset.name}' has no images.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    height, width = (int(v) for v in image_size)
    if isinstance(augment, bool):
        augment = load_augmentation(dataset) if augment else None
    if shuffle is None:
        shuffle = split == "train"

    paths = tf.constant([str(dataset.path_of(f)) for f in files])
    labels = tf.constant([f.label for f in files], tf.int32)
    native = tf.constant([f.native for f in files])

    def decode(path, label, is_native):
        image = tf.cond(is_native, lambda: _tf_decode(path), lambda: _pillow_decode(path))
        image = tf.image.resize(image, (height, width), antialias=True)
        return tf.clip_by_value(image, 0.0, 255.0), label

    ds = tf.data.Dataset.from_tensor_slices((paths, labels, native))
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augment is not None and not augment.is_identity:
        layers = augmentation_layers(augment, seed=seed)
        ds = ds.map(lambda x, y: (layers(x, training=True), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def _tf_decode(path):
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False,
                               dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def _pillow_decode(path):
    import tensorflow as tf

    image = tf.numpy_function(_load, [path], tf.uint8, stateful=False)
    image.set_shape([None, None, 3])
    return image


def _load(path: bytes) -> np.ndarray:
    return load_image(path.decode())
