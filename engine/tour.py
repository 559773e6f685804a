"""What the guided tour shows of a model and an image: the choices, not the computing.

The tour computes with the real engine (``features``, ``conv_arithmetic``, ``saliency``,
``actmax``, ``training.quick``); these functions only pick *what* to show so that every step
has something to see on any model and image: the busiest corner of the image, the first
convolution the arithmetic can spell out, an early and a late layer, and the filters that
respond most to the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.conv_arithmetic import explainable
from engine.features import MapLayer
from engine.models.explorable import ExplorableModel
from engine.models.layers import find_layer


def busiest_window(image: np.ndarray, size: int = 8) -> tuple[int, int]:
    """Top-left (row, col) of the ``size`` x ``size`` window whose brightness varies most: an
    edge, where the numbers of the zoomed crop differ visibly (a flat corner is all alike).

    Args:
        image: (H, W, 3) or (H, W) with H, W >= ``size``.

    Returns:
        (row, col) of the window's top-left pixel; the centre window on a flat image.
    """
    grey = np.asarray(image, np.float64)
    grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
    h, w = grey.shape
    size = min(size, h, w)
    # Sums over every window from integral images: variance = E[x^2] - E[x]^2.
    s1 = np.pad(grey, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    s2 = np.pad(grey ** 2, ((1, 0), (1, 0))).cumsum(0).cumsum(1)

    def window_sums(s):
        return s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]

    n = size * size
    variance = window_sums(s2) / n - (window_sums(s1) / n) ** 2
    if float(variance.max()) <= 1e-9:
        return (h - size) // 2, (w - size) // 2
    # Ties (e.g. a sharp vertical edge) go to the window nearest the centre.
    rows, cols = np.nonzero(variance >= variance.max() - 1e-9)
    centre = np.array([(h - size) / 2, (w - size) / 2])
    best = np.argmin((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2)
    return int(rows[best]), int(cols[best])


def first_conv(model: ExplorableModel, layers: Sequence[MapLayer]) -> str | None:
    """The first convolution whose arithmetic can be spelt out (a plain Conv2D), or None."""
    for layer in layers:
        if layer.kind == "conv" and layer.is_spatial and explainable(
                find_layer(model.keras_model, layer.path)):
            return layer.path
    return None


@dataclass(frozen=True)
class TourLayers:
    """The layers the tour shows (paths).

    Attributes:
        early: the first layer with feature maps (a convolution when there is one).
        late: the last one, where the maps are smallest and most abstract.
        filters: a convolution halfway down, whose filters' favourite patterns are drawn.
    """

    early: str
    late: str
    filters: str | None


def tour_layers(layers: Sequence[MapLayer]) -> TourLayers | None:
    """Early, late and filter layers of ``map_layers(model)``; None without any map layer."""
    spatial = [m for m in layers if m.is_spatial]
    convs = [m for m in spatial if m.kind == "conv"]
    picks = convs or spatial
    if not picks:
        return None
    return TourLayers(early=picks[0].path, late=picks[-1].path,
                      filters=convs[len(convs) // 2].path if convs else None)


def strongest_position(values: np.ndarray, margin: int = 0) -> tuple[int, int]:
    """(row, col) of the largest value of one (h, w) map, at least ``margin`` positions from
    its border when the map is large enough (a kernel hanging over the zero border often
    responds to the border itself, not to the image).

    Args:
        values: (h, w) map.
        margin: positions to leave out along each border.
    """
    h, w = values.shape
    inner = values
    if margin > 0 and h > 2 * margin and w > 2 * margin:
        inner = values[margin:h - margin, margin:w - margin]
    else:
        margin = 0
    row, col = np.unravel_index(int(np.argmax(inner)), inner.shape)
    return int(row) + margin, int(col) + margin
