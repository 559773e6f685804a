"""Pictures for the Filters page: the grid of activation-maximised images (one image, with a
transparent marker per tile for hover and click), the activation curve of one filter, and real
examples with their receptive-field box. Nothing here imports Streamlit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageColor, ImageDraw

from engine import render
from engine.render import FONT, fit_to_side, png_bytes
from ui.figures import HIGHLIGHT, tile_grid_figure

_GAP = 4
_LABEL_H = 14
BOX_COLOUR = ImageColor.getrgb(HIGHLIGHT)
GRID_WIDTH = 900  # fits the main column of a wide page on a 1400-pixel screen

__all__ = ["ImageGrid", "example_with_box", "fit_to_side", "grid_figure", "history_figure",
           "image_grid", "png_bytes"]


@dataclass(frozen=True)
class ImageGrid:
    """Images tiled into one picture.

    Attributes:
        image: (H, W, 3) uint8.
        boxes: (n, 4) int, x0, y0, x1, y1 of each tile in ``image``.
        tile: tile side in pixels.
    """

    image: np.ndarray
    boxes: np.ndarray
    tile: int


def image_grid(images: np.ndarray, labels: list[str], *, width: int = GRID_WIDTH,
               tile: int = 96) -> ImageGrid:
    """Tile (n, h, w, 3) uint8 images into rows of ``width`` pixels, under a label each; every
    image is resized to ``tile`` pixels on its longer side."""
    columns = max(1, (width - _GAP) // (tile + _GAP))
    grid = render.tile_grid([fit_to_side(image, tile) for image in images], columns, gap=_GAP,
                            labels=labels, label_height=_LABEL_H, label_size=11)
    return ImageGrid(grid.image, grid.boxes, tile)


def grid_figure(grid: ImageGrid, hover: list[str], selected: int | None = None,
                display_width: int = GRID_WIDTH, png: bytes | None = None) -> go.Figure:
    """The grid with one transparent marker per tile: hover shows ``hover[i]``, a click selects
    the tile (its index is the point's ``customdata``). Tile ``selected`` gets a frame.
    ``png``: the grid image already encoded, if at hand."""
    return tile_grid_figure(grid.image, grid.boxes, hover, customdata=np.arange(len(grid.boxes)),
                            name="filters", selected=selected, display_width=display_width,
                            png=png)


def history_figure(history: np.ndarray, title: str, final: float | None = None,
                   initial: float | None = None, quantity: str = "activation") -> go.Figure:
    """The activation (or logit) at every optimisation step, with the start and the final
    value."""
    steps = np.arange(1, len(history) + 1)
    fig = go.Figure(go.Scatter(x=steps, y=history, mode="lines", name="during the steps",
                               line=dict(color="#4c78a8", width=2),
                               hovertemplate="step %{x}: %{y:.4g}<extra></extra>"))
    for value, name, dash in ((initial, "on the starting image", "dot"),
                              (final, "on the final image", "dash")):
        if value is not None:
            fig.add_hline(y=float(value), line=dict(color="#e45756", dash=dash, width=1),
                          annotation_text=f"{name}: {value:.3g}", annotation_position="top left")
    fig.update_layout(title=title, height=280, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="step", yaxis_title=quantity, font=FONT,
                      showlegend=False)
    return fig


def example_with_box(image: np.ndarray, box: tuple[int, int, int, int], side: int = 160
                     ) -> np.ndarray:
    """The image enlarged to ``side`` with the receptive-field ``box`` drawn on it."""
    big = fit_to_side(image, side)
    scale = big.shape[1] / image.shape[1]
    picture = Image.fromarray(big)
    x0, y0, x1, y1 = (round(v * scale) for v in box)
    ImageDraw.Draw(picture).rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)),
                                      outline=BOX_COLOUR, width=2)
    return np.asarray(picture)
