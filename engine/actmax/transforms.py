"""Transformation robustness: small random jitter, scaling and rotation at every step.

An image that excites a filter only at one exact alignment is a brittle adversarial pattern; one
that still excites it when moved, scaled and turned a little is a picture of what the filter looks
for (Mordvintsev et al., 2015; Olah et al., 2017).

Each transform is a random affine map of the image plane. ``apply`` multiplies the maps of a
list of transforms into one matrix and resamples the batch once (bilinear, edges reflected), so
three transforms cost one resampling. The random draws come from stateless generators keyed on
``(seed, step)``: the same for every image of a batch, and the same whether a filter is
optimised alone or with others.
"""

from __future__ import annotations

import math
from typing import Sequence

import tensorflow as tf


class Transform:
    """A random affine map; ``matrix`` maps output pixel coordinates to input coordinates."""

    description = ""

    def matrix(self, seed: tf.Tensor, height: int, width: int) -> tf.Tensor:
        """(3, 3) float32 for this step's draw; ``seed`` is a (2,) int32 stateless seed."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.description


class Jitter(Transform):
    """Shift by a whole number of pixels in ``[-pixels, pixels]`` along each axis."""

    def __init__(self, pixels: int):
        self.pixels = int(pixels)
        self.description = f"jitter({self.pixels})"

    def matrix(self, seed, height, width):
        d = tf.random.stateless_uniform([2], seed, -self.pixels, self.pixels + 1, tf.int32)
        d = tf.cast(d, tf.float32)
        return _translation(d[0], d[1])


class RandomScale(Transform):
    """Zoom about the centre by a factor in ``[low, high]``."""

    def __init__(self, low: float, high: float):
        self.low, self.high = float(low), float(high)
        self.description = f"scale({self.low!r}, {self.high!r})"

    def matrix(self, seed, height, width):
        s = tf.random.stateless_uniform([], seed, self.low, self.high)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        inv = 1.0 / s
        return tf.stack([[inv, 0.0, cx * (1.0 - inv)],
                         [0.0, inv, cy * (1.0 - inv)],
                         [0.0, 0.0, 1.0]])


class RandomRotate(Transform):
    """Turn about the centre by an angle in ``[-degrees, degrees]``."""

    def __init__(self, degrees: float):
        self.degrees = float(degrees)
        self.description = f"rotate({self.degrees!r})"

    def matrix(self, seed, height, width):
        limit = self.degrees * math.pi / 180.0
        a = tf.random.stateless_uniform([], seed, -limit, limit)
        c, s = tf.cos(a), tf.sin(a)
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        return tf.stack([[c, -s, cx - c * cx + s * cy],
                         [s, c, cy - s * cx - c * cy],
                         [0.0, 0.0, 1.0]])


def _translation(dx, dy) -> tf.Tensor:
    return tf.stack([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def standard_transforms(jitter: int = 4, scale: float = 0.1, rotate: float = 5.0
                        ) -> list[Transform]:
    """Jitter, random scale in ``[1 - scale, 1 + scale]`` and rotation; a zero leaves one out."""
    out: list[Transform] = []
    if jitter:
        out.append(Jitter(jitter))
    if scale:
        out.append(RandomScale(1.0 - scale, 1.0 + scale))
    if rotate:
        out.append(RandomRotate(rotate))
    return out


def apply(images: tf.Tensor, transforms: Sequence[Transform], seed: tf.Tensor) -> tf.Tensor:
    """Apply ``transforms`` in order to a batch, with one resampling.

    Args:
        images: (N, H, W, C) float32.
        transforms: applied first to last.
        seed: (2,) int32 stateless seed of this step.

    Returns:
        (N, H, W, C) float32, differentiable with respect to ``images``.
    """
    if not transforms:
        return images
    height, width = images.shape[1], images.shape[2]
    matrix = tf.eye(3)
    for i, transform in enumerate(transforms):
        # Output pixel p of the last transform samples the original at M_1 M_2 ... M_k p.
        matrix = matrix @ transform.matrix(tf.random.experimental.stateless_fold_in(seed, i),
                                           height, width)
    flat = tf.reshape(matrix / matrix[2, 2], [9])[:8]
    n = tf.shape(images)[0]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=tf.tile(flat[None, :], [n, 1]),
        output_shape=tf.constant([height, width], tf.int32), fill_value=0.0,
        interpolation="BILINEAR", fill_mode="REFLECT")
