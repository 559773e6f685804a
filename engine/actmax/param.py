"""How an image is described by the numbers the optimiser changes.

After Olah, Mordvintsev and Schubert, "Feature Visualization" (Distill, 2017) and Lucid:

* **pixels**: one number per pixel and colour. Gradient ascent on pixels finds high-frequency
  patterns that excite a filter but look like noise to people.
* **fourier**: the image's 2-D Fourier spectrum, each frequency scaled by ``1 / frequency``
  so that every frequency moves equally fast. Gradient steps then change the image in
  "natural-image" proportions: smooth, with fewer high-frequency artefacts.

Both decorrelate colours: the three numbers of a pixel are coordinates along the principal axes
of ImageNet's colour distribution (Lucid's ``color_correlation_svd_sqrt``), turned into RGB by a
fixed linear map, then squashed to [0, 1] by a sigmoid, so every image is a valid image.

A parameterisation is a pair of functions, not a variable: ``initial`` draws the starting
numbers of each image from its own seed ``(seed, unit)``, and ``render`` turns a batch of numbers
into images inside the traced step. The optimiser owns the numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np
import tensorflow as tf

# Square root of ImageNet's colour covariance (Lucid), columns scaled to at most unit norm.
_COLOR_SQRT = np.asarray([[0.26, 0.09, 0.02],
                          [0.27, 0.00, -0.05],
                          [0.27, -0.09, 0.03]], np.float32)
_COLOR_SQRT_NORMALISED = _COLOR_SQRT / np.max(np.linalg.norm(_COLOR_SQRT, axis=0))

PARAMETERISATIONS = ("fourier", "pixels")


class Parameterization(ABC):
    """Numbers <-> images of size ``(height, width)``.

    Args:
        size: (height, width) of the rendered image.
        decorrelate: colour decorrelation (see the module docstring).
        sd: standard deviation of the starting numbers (small: a nearly grey start).
    """

    name = ""

    def __init__(self, size: tuple[int, int], decorrelate: bool = True, sd: float = 0.01):
        self.size = (int(size[0]), int(size[1]))
        self.decorrelate = decorrelate
        self.sd = float(sd)

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """Shape of one image's numbers."""

    def initial(self, units: Sequence[int], seed: int) -> np.ndarray:
        """Starting numbers, ``(N, *shape)`` float32; image i depends only on ``(seed, units[i])``,
        not on the other images of the batch."""
        out = np.empty((len(units), *self.shape), np.float32)
        for i, unit in enumerate(units):
            rng = np.random.default_rng([int(seed), int(unit)])
            out[i] = rng.standard_normal(self.shape) * self.sd
        return out

    @abstractmethod
    def _raw(self, params: tf.Tensor) -> tf.Tensor:
        """(N, *shape) -> (N, h, w, 3) unbounded colour coordinates."""

    def render(self, params: tf.Tensor) -> tf.Tensor:
        """(N, *shape) float32 -> (N, h, w, 3) float32 images in [0, 1] (differentiable)."""
        x = self._raw(params)
        if self.decorrelate:
            x = tf.einsum("nhwc,dc->nhwd", x, tf.constant(_COLOR_SQRT_NORMALISED))
        return tf.sigmoid(x)


class PixelImage(Parameterization):
    """One number per pixel and colour channel."""

    name = "pixels"

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.size, 3)

    def _raw(self, params: tf.Tensor) -> tf.Tensor:
        return params


class FourierImage(Parameterization):
    """The image's real 2-D Fourier spectrum, scaled by ``1 / frequency ** decay``.

    Args:
        decay: spectrum decay power (1: the ``1/f`` amplitude of natural images).
    """

    name = "fourier"

    def __init__(self, size: tuple[int, int], decorrelate: bool = True, sd: float = 0.01,
                 decay: float = 1.0):
        super().__init__(size, decorrelate, sd)
        h, w = self.size
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.rfftfreq(w)[None, :]
        freqs = np.sqrt(fx * fx + fy * fy)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay
        # sqrt(h*w) makes the inverse transform unitary, so learning rates carry over from pixels.
        self._scale = tf.constant((scale * np.sqrt(h * w)).astype(np.float32))

    @property
    def shape(self) -> tuple[int, ...]:
        h, w = self.size
        return (2, 3, h, w // 2 + 1)  # (real, imaginary), colour, frequencies

    def _raw(self, params: tf.Tensor) -> tf.Tensor:
        h, w = self.size
        spectrum = tf.complex(params[:, 0] * self._scale, params[:, 1] * self._scale)
        image = tf.signal.irfft2d(spectrum, fft_length=[h, w])  # (N, 3, h, w)
        return tf.transpose(image, [0, 2, 3, 1]) / 4.0


def make_parameterization(name: str, size: tuple[int, int], decorrelate: bool = True
                          ) -> Parameterization:
    """``"fourier"`` or ``"pixels"`` at ``size``.

    Raises:
        ValueError: an unknown name.
    """
    if name == "fourier":
        return FourierImage(size, decorrelate)
    if name == "pixels":
        return PixelImage(size, decorrelate)
    raise ValueError(f"Unknown parameterisation {name!r}; choose one of "
                     f"{', '.join(PARAMETERISATIONS)}.")
