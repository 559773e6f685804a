"""DeepDream: change a given image so that a layer responds to it more and more strongly.

Mordvintsev, Olah and Tyka, "Inceptionism" (2015), as in TensorFlow's DeepDream tutorial:
gradient ascent on the pixels of the image itself, on the mean activation of a layer, with the
gradient normalised at every step. **Octaves**: the image is processed small first, then at
successively larger sizes (each ``octave_scale`` times the last, up to the original size), so
the patterns the layer likes appear at several scales. A random shift at every step (undone
after it) avoids tiling artefacts at the image border.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import tensorflow as tf

from engine.actmax.network import LayerTaps
from engine.cache import BoundedCache
from engine.errors import InvalidImageError, InvalidModelError
from engine.models.explorable import ExplorableModel
from engine.progress import Progress, report, stop_requested


@dataclass(frozen=True)
class DreamSettings:
    """How a dream is made.

    Attributes:
        octaves: number of image sizes, the last one the original size.
        octave_scale: ratio between successive sizes (> 1).
        steps: gradient steps per octave.
        step_size: size of a step in [0, 1] pixel units (the gradient is normalised).
        jitter: largest random shift in pixels at every step.
        max_side: images are processed at most this large on their longer side.
        seed: seed of the random shifts.
    """

    octaves: int = 3
    octave_scale: float = 1.4
    steps: int = 20
    step_size: float = 0.02
    jitter: int = 16
    max_side: int = 512
    seed: int = 0

    def __post_init__(self):
        if self.octaves < 1 or self.octave_scale <= 1 or self.steps < 0 or self.step_size <= 0:
            raise ValueError("A dream needs octaves >= 1, octave_scale > 1, steps >= 0 and a "
                             "positive step size.")

    def sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The image size of each octave, smallest first, the last ``(height, width)``."""
        return [(max(8, int(round(height / self.octave_scale ** k))),
                 max(8, int(round(width / self.octave_scale ** k))))
                for k in range(self.octaves - 1, -1, -1)]


class _Dreamer:
    """The traced gradient step for one (model, layer, channels)."""

    def __init__(self, model: ExplorableModel, layer: str, channels: Sequence[int] | None):
        self.taps = LayerTaps(model, [layer])
        self.layer = layer
        if self.taps.output_rank(layer) != 4:
            raise InvalidModelError(
                f"DeepDream needs a layer with a feature map (a convolution or pooling layer); "
                f"'{layer}' has none. Pick an earlier layer.")
        self.channels = None if channels is None else tf.constant(list(channels), tf.int32)
        self.step = tf.function(self._step, input_signature=[
            tf.TensorSpec((1, None, None, 3), tf.float32), tf.TensorSpec((), tf.float32),
            tf.TensorSpec((2,), tf.int32)])

    def _score(self, image: tf.Tensor) -> tf.Tensor:
        values = self.taps(image * 255.0)[self.layer].out
        if self.channels is not None:
            values = tf.gather(values, self.channels, axis=-1)
        return tf.reduce_mean(values)

    def _step(self, image, step_size, shift):
        moved = tf.roll(image, shift, axis=[1, 2])
        with tf.GradientTape() as tape:
            tape.watch(moved)
            score = self._score(moved)
        grad = tf.roll(tape.gradient(score, moved), -shift, axis=[1, 2])
        grad = grad / (tf.math.reduce_std(grad) + 1e-8)
        return tf.clip_by_value(image + step_size * grad, 0.0, 1.0), score


_dreamers: "BoundedCache[_Dreamer]" = BoundedCache(4)


def _dreamer(model: ExplorableModel, layer: str, channels: Sequence[int] | None) -> _Dreamer:
    """A cached ``_Dreamer``, so a second dream on the same layer does not trace again (the
    key's ``id(model)`` is safe: the dreamer holds the model)."""
    key = (id(model), layer, None if channels is None else tuple(int(c) for c in channels))
    return _dreamers.get_or_build(key, lambda: _Dreamer(model, layer, channels))


def deep_dream(model: ExplorableModel, image: np.ndarray, layer: str, *,
               octaves: int = 3, steps: int = 20, octave_scale: float = 1.4,
               step_size: float = 0.02, channels: Sequence[int] | None = None,
               max_side: int = 512, seed: int = 0,
               callback: Progress | None = None) -> np.ndarray:
    """Amplify what ``layer`` sees in ``image``.

    Args:
        model: the explored model (never mutated).
        image: (H, W, 3) uint8 RGB.
        layer: a layer with a feature map.
        octaves, steps, octave_scale, step_size, max_side, seed: see ``DreamSettings``.
        channels: amplify only these channels of the layer (default: all).
        callback: ``callback(done, total, stage)`` after every step (``engine.progress``):
            ``done`` in octaves (fractional within one) of ``octaves``; its
            ``stop_requested`` stops early and returns the image so far.

    Returns:
        (H', W', 3) uint8: the dreamed image, at the original size unless it was larger than
        ``max_side``.

    Raises:
        InvalidImageError: not an (H, W, 3) image.
        InvalidModelError: a layer without a feature map, or not in the model.
        ValueError: invalid settings.
    """
    settings = DreamSettings(octaves, octave_scale, steps, step_size, max_side=max_side,
                             seed=seed)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or min(image.shape[:2]) < 8:
        raise InvalidImageError(f"DeepDream needs an RGB image of at least 8x8 pixels, not an "
                                f"array of shape {image.shape}.")
    dreamer = _dreamer(model, layer, channels)
    h, w = image.shape[:2]
    factor = min(1.0, settings.max_side / max(h, w))
    h, w = int(round(h * factor)), int(round(w * factor))
    x = tf.constant(image[None].astype(np.float32) / 255.0)
    rng = np.random.default_rng(settings.seed)
    stopped = False
    for octave, size in enumerate(settings.sizes(h, w)):
        x = tf.image.resize(x, size, antialias=True)
        for step in range(settings.steps):
            shift = rng.integers(-settings.jitter, settings.jitter + 1, 2).astype(np.int32)
            x, _ = dreamer.step(x, tf.constant(settings.step_size), tf.constant(shift))
            report(callback, octave + (step + 1) / settings.steps, settings.octaves,
                   f"Octave {octave + 1} of {settings.octaves}, step {step + 1}")
            if stop_requested(callback):
                stopped = True
                break
        if stopped:
            break
    x = tf.image.resize(x, (h, w), antialias=True)
    return np.clip(np.round(x[0].numpy() * 255.0), 0, 255).astype(np.uint8)
