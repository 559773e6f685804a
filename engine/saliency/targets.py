"""What to explain: small callables that pick a class score from the model's output.

``ClassTarget(281)`` explains class 281; ``TopClass()`` the class the model finds most likely
for each image; ``ClassDifference(a, b)`` why the model says ``a`` rather than ``b`` (the score of
``a`` minus that of ``b``). ``explain`` also takes a class index, a class name, ``None`` (the top
class) or a list with one of those per image; ``resolve_classes`` turns any of them into one
class code per image, the form every method's graph takes.

**Class codes.** The graphs take one int32 per image (a fixed ``tf.function`` signature): a class
index ``>= 0``, ``-1`` for the row's top class, or a pair ``(a, b)`` of a ``ClassDifference``
written as ``-2 - (a * n_classes + b)``. ``class_scores`` is the one rule that reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from engine.errors import InvalidModelError

TOP = -1  # the class code of "each row's top class"


def class_scores(outputs, classes):
    """(N,) score of each row's class code in an (N, n_classes) output: the class's own
    output, the row's top output for -1, ``outputs[a] - outputs[b]`` for a pair's code (see
    the module docstring). The one scoring rule of every method (inside their graphs too)."""
    outputs = tf.convert_to_tensor(outputs)
    classes = tf.cast(classes, tf.int32)
    n = tf.shape(outputs)[-1]
    top = tf.argmax(outputs, axis=-1, output_type=tf.int32)
    pair = classes <= -2
    code = tf.maximum(-2 - classes, 0)
    first = tf.where(pair, code // n, tf.where(classes == TOP, top, classes))
    second = tf.where(pair, code % n, first)
    minus = tf.gather(outputs, second, batch_dims=1)
    return tf.gather(outputs, first, batch_dims=1) - tf.where(pair, minus, tf.zeros_like(minus))


def row_scores(outputs: np.ndarray, code: int) -> np.ndarray:
    """``class_scores`` of every row of a NumPy ``(M, n_classes)`` output for one class code:
    ``(M,)`` float32 (a method scoring several passes of one image)."""
    outputs = np.asarray(outputs, np.float32)
    codes = np.full(len(outputs), int(code), np.int32)
    return np.asarray(class_scores(outputs, codes), np.float32)


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
        return class_scores(outputs, tf.fill(tf.shape(outputs)[:1], TOP))


@dataclass(frozen=True)
class ClassDifference:
    """Why ``a`` rather than ``b``: the score of class ``a`` minus the score of class ``b``.

    The gradient and CAM methods differentiate it before the softmax (the logit of ``a`` minus
    that of ``b``, the log-odds of ``a`` against ``b``), so a map shows what speaks for ``a``
    *and* against ``b``; the methods that read probabilities (Score-CAM, occlusion) take
    ``p(a) - p(b)``. The input gradients of the difference are those of ``a`` minus those of
    ``b`` (before the absolute value a map takes).

    Attributes:
        a, b: class indices or class names (different classes); called on an output
            directly (``ClassDifference(3, 5)(outputs)`` is ``outputs[:, 3] - outputs[:, 5]``),
            indices.
    """

    a: int | str
    b: int | str

    def __call__(self, outputs):
        outputs = tf.convert_to_tensor(outputs)
        return outputs[:, int(self.a)] - outputs[:, int(self.b)]

    def code(self, class_names: Sequence[str]) -> int:
        """The class code of the pair for a model with ``class_names``.

        Raises:
            InvalidModelError: an unknown class, or ``a`` equal to ``b``.
        """
        a, b = (_index(class_names, c) for c in (self.a, self.b))
        if a == b:
            raise InvalidModelError(f"'A rather than B' needs two different classes, but both "
                                    f"are '{class_names[a]}'; pick another class B.")
        return -2 - (a * len(class_names) + b)


def runner_up(probabilities: np.ndarray):
    """The second most likely class: the default B of "A rather than B".

    Args:
        probabilities: ``(n_classes,)`` of one image or ``(N, n_classes)``.

    Returns:
        An int for one image, else ``(N,)`` int64 (ties: the lower index first, as ``argmax``).

    Raises:
        InvalidModelError: fewer than two classes.
    """
    p = np.asarray(probabilities)
    if p.shape[-1] < 2:
        raise InvalidModelError("The model has a single class, so there is no runner-up to "
                                "compare it with.")
    second = np.argsort(-p, axis=-1, kind="stable")[..., 1]
    return int(second) if p.ndim == 1 else second.astype(np.int64)


def resolve_classes(class_names: Sequence[str], target, probabilities: np.ndarray, *,
                    differences: bool = False) -> np.ndarray:
    """Class index per image (a class code, see the module docstring, where ``differences``).

    Args:
        class_names: the model's class names.
        target: ``None`` or ``TopClass()`` (each image's most likely class), a class index, a
            class name, a ``ClassTarget``, a ``ClassDifference`` (with ``differences``), or a
            list with one of those per image.
        probabilities: ``(N, n_classes)`` probabilities of the images (for the top class).
        differences: the caller scores through ``class_scores`` and so takes the codes of
            ``ClassDifference`` pairs (the saliency methods); others get class indices only.

    Returns:
        ``(N,)`` int32 class indices (or class codes).

    Raises:
        InvalidModelError: an index out of range or a name the model does not know, a list
            whose length differs from the number of images, or a ``ClassDifference`` where
            one class is needed.
    """
    n = len(probabilities)
    if isinstance(target, (list, tuple, np.ndarray)) and not isinstance(target, str):
        if len(target) != n:
            raise InvalidModelError(f"{len(target)} targets were given for {n} images; give one "
                                    "class per image, or one class for all of them.")
        return np.array([_one(class_names, t, probabilities[i:i + 1], differences)[0]
                         for i, t in enumerate(target)], np.int32)
    return _one(class_names, target, probabilities, differences)


def _one(class_names, target, probabilities, differences=False) -> np.ndarray:
    n = len(probabilities)
    if target is None or isinstance(target, TopClass):
        return np.argmax(probabilities, axis=1).astype(np.int32)
    if isinstance(target, ClassDifference):
        if not differences:
            raise InvalidModelError("'A rather than B' is explained by the saliency maps only; "
                                    "pick a single class here.")
        return np.full(n, target.code(class_names), np.int32)
    if isinstance(target, ClassTarget):
        target = target.index
    return np.full(n, _index(class_names, target), np.int32)


def _index(class_names: Sequence[str], target) -> int:
    """A class index or name -> the index, checked against ``class_names``."""
    if isinstance(target, (str, np.str_)):
        names = list(class_names)
        if target not in names:
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            raise InvalidModelError(f"The model has no class named '{target}'. Its classes are: "
                                    f"{shown}")
        return names.index(target)
    index = int(target)
    if not 0 <= index < len(class_names):
        raise InvalidModelError(f"Class {index} does not exist: the model has "
                                f"{len(class_names)} classes (0 to {len(class_names) - 1}).")
    return index
