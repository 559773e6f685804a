"""What to explain: small callables that pick a class score from the model's output.

``ClassTarget(281)`` explains class 281; ``TopClass()`` the class the model finds most likely
for each image. ``explain`` also takes a class index, a class name, ``None`` (the top class) or a
list with one of those per image; ``resolve_classes`` turns any of them into class indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from engine.errors import InvalidModelError


def class_scores(outputs, classes):
    """(N,) score of each row's class in an (N, n_classes) output; class -1 is the row's top
    class. The one scoring rule of every method (inside their graphs too)."""
    outputs = tf.convert_to_tensor(outputs)
    classes = tf.cast(classes, tf.int32)
    top = tf.argmax(outputs, axis=-1, output_type=tf.int32)
    return tf.gather(outputs, tf.where(classes < 0, top, classes), batch_dims=1)


@dataclass(frozen=True)
class ClassTarget:
    """The score of one class: ``ClassTarget(3)(outputs)`` is ``outputs[:, 3]``."""

    index: int

    def __call__(self, outputs):
        return class_scores(outputs, tf.fill(tf.shape(outputs)[:1], self.index))


@dataclass(frozen=True)
class TopClass:
    """The score of each image's most likely class (the default target)."""

    def __call__(self, outputs):
        return class_scores(outputs, tf.fill(tf.shape(outputs)[:1], -1))


def resolve_classes(class_names: Sequence[str], target, probabilities: np.ndarray) -> np.ndarray:
    """Class index per image.

    Args:
        class_names: the model's class names.
        target: ``None`` or ``TopClass()`` (each image's most likely class), a class index, a
            class name, a ``ClassTarget``, or a list with one of those per image.
        probabilities: ``(N, n_classes)`` probabilities of the images (for the top class).

    Returns:
        ``(N,)`` int32 class indices.

    Raises:
        InvalidModelError: an index out of range or a name the model does not know, or a list
            whose length differs from the number of images.
    """
    n = len(probabilities)
    if isinstance(target, (list, tuple, np.ndarray)) and not isinstance(target, str):
        if len(target) != n:
            raise InvalidModelError(f"{len(target)} targets were given for {n} images; give one "
                                    "class per image, or one class for all of them.")
        return np.array([_one(class_names, t, probabilities[i:i + 1])[0]
                         for i, t in enumerate(target)], np.int32)
    return _one(class_names, target, probabilities)


def _one(class_names, target, probabilities) -> np.ndarray:
    n = len(probabilities)
    if target is None or isinstance(target, TopClass):
        return np.argmax(probabilities, axis=1).astype(np.int32)
    if isinstance(target, ClassTarget):
        target = target.index
    if isinstance(target, (str, np.str_)):
        names = list(class_names)
        if target not in names:
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            raise InvalidModelError(f"The model has no class named '{target}'. Its classes are: "
                                    f"{shown}")
        target = names.index(target)
    index = int(target)
    if not 0 <= index < len(class_names):
        raise InvalidModelError(f"Class {index} does not exist: the model has "
                                f"{len(class_names)} classes (0 to {len(class_names) - 1}).")
    return np.full(n, index, np.int32)
