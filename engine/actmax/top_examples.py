"""The real images that excite a filter most, and the patch under its receptive field.

A synthetic picture of what a filter "wants" is easier to read beside the real images that make
it fire (OpenAI Microscope shows both). ``layer_responses`` runs a set of images through the
network once and keeps, for every filter, its strongest response in each image and where on the
feature map it was; ``top_examples`` then picks any filter's best images without running the
network again.

The patch of an example is the unit's receptive field (``engine.models.architecture``: the
square of input pixels one position of the layer can see) centred on the strongest position.
Its centre is placed on the grid of unit centres spread evenly over the image with the
layer's effective stride, which is exact for "same" padding and within a pixel or two for
"valid" padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from engine.actmax.network import LayerTaps
from engine.errors import InvalidImageError
from engine.models.architecture import layer_table
from engine.models.explorable import ExplorableModel


@dataclass(frozen=True)
class Responses:
    """Every filter's strongest response to each image.

    Attributes:
        layer: layer path.
        peaks: (N, C) float32, the largest value of each filter's map on each image (the
            value itself for a layer without spatial axes).
        where: (N, C, 2) int64, (row, column) of that value on the map.
        grid: (rows, columns) of the layer's map; (1, 1) without spatial axes.
        input_size: (height, width) the images were resized to (the model's input).
        rf_size: receptive field side in input pixels, ``None`` when the whole image counts.
        rf_stride: distance in input pixels between neighbouring positions of the map.
    """

    layer: str
    peaks: np.ndarray
    where: np.ndarray
    grid: tuple[int, int]
    input_size: tuple[int, int]
    rf_size: int | None
    rf_stride: int | None

    def box(self, image: int, unit: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the receptive field of ``unit``'s peak in ``image``, clipped to
        the image (``image[y0:y1, x0:x1]``)."""
        h, w = self.input_size
        if self.rf_size is None or self.rf_stride is None:
            return 0, 0, w, h
        row, col = (int(v) for v in self.where[image, unit])
        bounds = []
        for pos, n, side in ((col, self.grid[1], w), (row, self.grid[0], h)):
            first = (side - 1 - (n - 1) * self.rf_stride) / 2.0
            centre = first + pos * self.rf_stride
            lo = int(np.floor(centre - (self.rf_size - 1) / 2.0))
            bounds.append((max(0, lo), min(side, lo + self.rf_size)))
        (x0, x1), (y0, y1) = bounds
        return x0, y0, x1, y1


@dataclass(frozen=True)
class TopExample:
    """One of the images that excite a filter most.

    Attributes:
        index: position of the image in the set given to ``layer_responses``.
        activation: the filter's strongest response to it.
        box: (x0, y0, x1, y1) of the receptive field around that response, in the image
            resized to the model's input.
        patch: (h, w, 3) uint8, that part of the resized image.
    """

    index: int
    activation: float
    box: tuple[int, int, int, int]
    patch: np.ndarray


def layer_responses(model: ExplorableModel, layer: str, images, batch_size: int = 32
                    ) -> Responses:
    """Run ``images`` through ``model`` up to ``layer``, once, for every filter.

    Args:
        model: the explored model.
        layer: layer path.
        images: (N, H, W, 3) uint8 or a list of (H, W, 3) uint8 images of any size.
        batch_size: images per forward pass.

    Returns:
        ``Responses``.

    Raises:
        InvalidImageError: no image, or one that is not RGB.
        InvalidModelError: the layer is not in the model.
    """
    x = model.prepare(images)
    if not len(x):
        raise InvalidImageError("No images were given: choose images or a data set.")
    taps = LayerTaps(model, [layer])
    forward = tf.function(lambda batch: taps(batch)[layer].out, input_signature=[
        tf.TensorSpec((None, *x.shape[1:]), tf.float32)])
    peaks, where = [], []
    grid = (1, 1)
    for start in range(0, len(x), batch_size):
        out = forward(tf.constant(x[start:start + batch_size])).numpy()
        if out.ndim == 4:
            n, rows, cols, channels = out.shape
            grid = (rows, cols)
            flat = out.reshape(n, rows * cols, channels)
            best = flat.argmax(axis=1)  # (n, C)
            peaks.append(np.take_along_axis(flat, best[:, None, :], axis=1)[:, 0])
            where.append(np.stack(np.divmod(best, cols), axis=-1))
        else:
            flat = out.reshape(len(out), -1)
            peaks.append(flat)
            where.append(np.zeros((*flat.shape, 2), np.int64))
    rf_size = rf_stride = None
    if grid != (1, 1):
        row = next((r for r in layer_table(model.keras_model) if r.path == layer), None)
        if row is not None:
            rf_size, rf_stride = row.rf_size, row.rf_stride
    return Responses(layer, np.concatenate(peaks).astype(np.float32),
                     np.concatenate(where).astype(np.int64), grid, tuple(model.input_size),
                     rf_size, rf_stride)


def top_examples(model: ExplorableModel, responses: Responses, images, unit: int, k: int = 6
                 ) -> list[TopExample]:
    """The ``k`` images on which ``unit`` responds most, strongest first.

    Args:
        model: the model ``responses`` came from (to resize the images the same way).
        responses: from ``layer_responses`` on the same ``images``.
        images: the same images, in the same order.
        unit: the filter.
        k: how many.

    Returns:
        Up to ``k`` ``TopExample``, strongest first (ties: the earlier image first).
    """
    order = np.argsort(-responses.peaks[:, unit], kind="stable")[:k]
    prepared = model.prepare([images[i] for i in order])
    out = []
    for image, i in zip(prepared, order):
        x0, y0, x1, y1 = responses.box(int(i), unit)
        out.append(TopExample(int(i), float(responses.peaks[i, unit]), (x0, y0, x1, y1),
                              np.clip(np.round(image[y0:y1, x0:x1]), 0, 255).astype(np.uint8)))
    return out
