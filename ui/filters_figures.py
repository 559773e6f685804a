"""Pictures for the Filters page: the grid of activation-maximised images (one image, with a
transparent marker per tile for hover and click), the activation curve of one filter, and real
examples with their receptive-field box. Nothing here imports Streamlit."""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageFont

from ui.feature_figures import png_bytes

_FONT = dict(family="Inter, system-ui, sans-serif", size=13)
_GAP = 4
_LABEL_H = 14
_HIGHLIGHT = "#ff2d95"
BOX_COLOUR = (255, 45, 149)
GRID_WIDTH = 900  # fits the main column of a wide page on a 1400-pixel screen

__all__ = ["ImageGrid", "example_with_box", "fit_to_side", "grid_figure", "history_figure",
           "image_grid", "png_bytes"]


@functools.lru_cache(maxsize=2)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


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


def fit_to_side(image: np.ndarray, side: int) -> np.ndarray:
    """Resize an (h, w, 3) uint8 image so its longer side is ``side`` (nearest neighbour when
    enlarging by a whole factor keeps pixels square; bilinear otherwise)."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return image
    method = Image.NEAREST if scale >= 1 and float(scale).is_integer() else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize(size, method))


def image_grid(images: np.ndarray, labels: list[str], *, width: int = GRID_WIDTH,
               tile: int = 96) -> ImageGrid:
    """Tile (n, h, w, 3) uint8 images into rows of ``width`` pixels, under a label each; every
    image is resized to ``tile`` pixels on its longer side."""
    n = len(images)
    cols = max(1, min(n, (width - _GAP) // (tile + _GAP)))
    rows = max(1, math.ceil(n / cols))
    cell_w, cell_h = tile + _GAP, tile + _LABEL_H + _GAP
    canvas = np.full((rows * cell_h + _GAP, cols * cell_w + _GAP, 3), 255, np.uint8)
    boxes = np.zeros((n, 4), int)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        x0, y0 = _GAP + c * cell_w, r * cell_h + _LABEL_H
        big = fit_to_side(image, tile)
        canvas[y0:y0 + big.shape[0], x0:x0 + big.shape[1]] = big
        boxes[i] = (x0, y0, x0 + big.shape[1], y0 + big.shape[0])
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font = _font(11)
    for (x0, y0, x1, _), label in zip(boxes, labels):
        text = label
        while text and draw.textlength(text, font=font) > x1 - x0:
            text = text[:-1]
        draw.text((x0, y0 - _LABEL_H + 1), text, fill=(60, 60, 60), font=font)
    return ImageGrid(np.asarray(picture), boxes, tile)


def grid_figure(grid: ImageGrid, hover: list[str], selected: int | None = None,
                display_width: int = GRID_WIDTH, png: bytes | None = None) -> go.Figure:
    """The grid with one transparent marker per tile: hover shows ``hover[i]``, a click selects
    the tile (its index is the point's ``customdata``). Tile ``selected`` gets a frame.
    ``png``: the grid image already encoded, if at hand."""
    height, width = grid.image.shape[:2]
    zoom = min(1.0, display_width / width)
    png = png_bytes(grid.image) if png is None else png
    source = "data:image/png;base64," + base64.b64encode(png).decode()
    fig = go.Figure(go.Image(source=source, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=(grid.boxes[:, 0] + grid.boxes[:, 2]) / 2, y=(grid.boxes[:, 1] + grid.boxes[:, 3]) / 2,
        mode="markers", customdata=np.arange(len(grid.boxes)), hovertext=hover,
        hoverinfo="text", showlegend=False, name="filters",
        marker=dict(symbol="square", size=max(8, int(grid.tile * zoom)),
                    color="rgba(0,0,0,0)"),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1))))
    if selected is not None and 0 <= selected < len(grid.boxes):
        x0, y0, x1, y1 = grid.boxes[selected]
        fig.add_shape(type="rect", x0=x0 - 2, y0=y0 - 2, x1=x1 + 1, y1=y1 + 1,
                      line=dict(color=_HIGHLIGHT, width=3))
    fig.update_layout(
        width=int(width * zoom), height=int(height * zoom), margin=dict(l=0, r=0, t=0, b=0),
        xaxis=dict(visible=False, range=[0, width]), font=_FONT, dragmode=False,
        yaxis=dict(visible=False, range=[height, 0], scaleanchor="x"), clickmode="event+select",
        hovermode="closest", plot_bgcolor="white")
    return fig


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
                      xaxis_title="step", yaxis_title=quantity, font=_FONT,
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
