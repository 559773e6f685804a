"""Pictures as arrays: colour maps, maps laid over images, grids of tiles, enlarging, PNG files
and ``data:`` URIs, and the one typeface of every figure.

The figures of the pages (``ui/*figures.py``) and the HTML report (``engine.report``) draw with
these, so a colour map, an overlay or a grid looks the same wherever it is shown. NumPy and
Pillow only: a Plotly figure takes ``FONT`` and ``colour_stops(name)`` as they are.

    >>> picture = overlay(image, saliency, opacity=0.5, colormap="jet")   # (H, W, 3) uint8
    >>> grid = tile_grid([magnify(t, 48) for t in tiles], columns=8, labels=names)
    >>> html_src = image_uri(grid.image)
"""

from __future__ import annotations

import base64
import functools
import io
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: the typeface and size of every figure and of the report; the first family the browser has
#: is used, nothing is downloaded
FONT = {"family": "Inter, system-ui, sans-serif", "size": 13}

# Plotly's colour scales of the same names (Jet, Turbo, Viridis, Magma, Inferno, Cividis, Hot,
# Greys reversed, RdBu reversed): evenly spaced colours, linear in between.
_SCALES = {
    "jet": "000083 003caa 05ffff ffff00 fa0000 800000",
    "turbo": "30123b 4145ab 4675ed 39a2fc 1bcfd4 24eca6 61fc6c a4fc3b d1e834 f3c63a fe9b2d "
             "f36315 d93806 b11901 7a0402",
    "viridis": "440154 482878 3e4989 31688e 26828e 1f9e89 35b779 6ece58 b5de2b fde725",
    "magma": "000004 180f3d 440f76 721f81 9e2f7f cd4071 f1605d fd9668 feca8d fcfdbf",
    "inferno": "000004 1b0c41 4a0c6b 781c6d a52c60 cf4446 ed6925 fb9b06 f7d13d fcffa4",
    "cividis": "00224e 123570 3b496c 575d6d 707173 8a8678 a59c74 c3b369 e1cc55 fee838",
    "hot": "000000 e60000 ffd200 ffffff",
    "gray": "000000 252525 525252 737373 969696 bdbdbd d9d9d9 f0f0f0 ffffff",
    "blue-white-red (signed)": "053061 2166ac 4393c3 92c5de d1e5f0 f7f7f7 fddbc7 f4a582 d6604d "
                               "b2182b 67001f",
}
#: colour maps by the names people pick them by, lowest value first
COLORMAPS = tuple(_SCALES)
#: colour maps whose middle colour means zero: show them on a range centred on zero
DIVERGING = frozenset({"blue-white-red (signed)"})


def is_diverging(colormap: str) -> bool:
    """Whether ``colormap`` wants a range centred on zero."""
    return colormap in DIVERGING


def _hex_colours(colormap: str) -> list[str]:
    if colormap not in _SCALES:
        raise KeyError(f"Unknown colour map {colormap!r}; choose from {list(COLORMAPS)}.")
    return ["#" + code for code in _SCALES[colormap].split()]


def colour_stops(colormap: str) -> list[list]:
    """``[[position, "#rrggbb"], ...]`` from 0 to 1: the colour map as a Plotly colour scale,
    so that a heatmap shows the colours of ``colorize``."""
    colours = _hex_colours(colormap)
    return [[i / (len(colours) - 1), c] for i, c in enumerate(colours)]


@functools.lru_cache(maxsize=None)
def colormap_lut(colormap: str) -> np.ndarray:
    """(256, 3) uint8: the colours of 0, 1/255, ..., 1 on ``colormap`` (read-only).

    Raises:
        KeyError: ``colormap`` is not one of ``COLORMAPS``.
    """
    colours = np.array([[int(c[k:k + 2], 16) for k in (1, 3, 5)]
                        for c in _hex_colours(colormap)], np.float64)
    x, stops = np.linspace(0.0, 1.0, 256), np.linspace(0.0, 1.0, len(colours))
    lut = np.stack([np.interp(x, stops, colours[:, k]) for k in range(3)], axis=1)
    lut = np.round(lut).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def colorize(values: np.ndarray, colormap: str = "jet", low=0.0, high=1.0) -> np.ndarray:
    """Values as colours: ``low`` gets the first colour of ``colormap``, ``high`` the last,
    values outside are clipped and NaN counts as ``low``.

    Args:
        values: (...) float.
        colormap: one of ``COLORMAPS``.
        low, high: numbers or arrays broadcasting against ``values``.

    Returns:
        (..., 3) uint8 RGB.
    """
    span = np.maximum(np.asarray(high, np.float32) - low, 1e-12)
    t = np.nan_to_num((np.asarray(values, np.float32) - low) / span)
    index = np.floor(np.clip(t * 255.0 + 0.5, 0, 255)).astype(np.uint8)
    return colormap_lut(colormap)[index]


def overlay(image: np.ndarray, values: np.ndarray, opacity: float = 0.5, colormap: str = "jet",
            low=0.0, high=1.0) -> np.ndarray:
    """A map coloured and blended over an image: each pixel is
    ``(1 - opacity) * image + opacity * colorize(values)``, rounded half up.

    Args:
        image: (H, W, 3) uint8 RGB.
        values: (h, w) float; smoothly resized to (H, W) when it differs
            (``resize_for_display(..., smooth=True)``).
        opacity: 0 shows the image only, 1 the map only.
        colormap, low, high: as ``colorize``.

    Returns:
        (H, W, 3) uint8.
    """
    height, width = image.shape[:2]
    values = resize_for_display(values, height, width, smooth=True)
    colours = colorize(values, colormap, low, high).astype(np.float32)
    blend = (1.0 - opacity) * image.astype(np.float32) + opacity * colours
    return np.clip(np.floor(blend + 0.5), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ sizes
def resize_for_display(values: np.ndarray, height: int, width: int, smooth: bool = False
                       ) -> np.ndarray:
    """One 2-D map resized for drawing: area average when shrinking (every value counts),
    nearest values when enlarging (the map's real grid stays visible) unless ``smooth``
    (bilinear). (``engine.saliency.base.resize_map`` is the saliency maps' own resize.)

    Returns:
        (height, width) float32.
    """
    h, w = values.shape
    if (h, w) == (height, width):
        return np.asarray(values, np.float32)
    shrinking = height < h or width < w
    method = Image.BOX if shrinking else (Image.BILINEAR if smooth else Image.NEAREST)
    picture = Image.fromarray(np.ascontiguousarray(values, np.float32), mode="F")
    return np.asarray(picture.resize((width, height), method), np.float32)


def magnify(image: np.ndarray, side: int) -> np.ndarray:
    """A small image scaled up by a whole factor (each pixel repeated, so it stays a sharp
    square) until its longer side is at most ``side``; never shrunk (``fit_to_side`` gives an
    exact size)."""
    factor = max(1, side // max(image.shape[:2]))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1) if factor > 1 else image


def fit_to_side(image: np.ndarray, side: int, *, enlarge: bool = True) -> np.ndarray:
    """An (h, w, 3) uint8 image resized so that its longer side is ``side``: nearest pixels
    when enlarging by a whole factor (pixels stay square), bilinear otherwise (Pillow's
    bilinear is antialiased when shrinking). ``enlarge=False`` leaves smaller images as they
    are."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale > 1 and not enlarge:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return image
    method = Image.NEAREST if scale >= 1 and float(scale).is_integer() else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize(size, method))


def tile_size(h: int, w: int, side: int) -> tuple[int, int]:
    """The (height, width) an (h, w) map is drawn at in a tile of at most ``side`` pixels:
    enlarged by a whole factor when it fits (each value a square block), else shrunk to
    ``side`` on its longer side."""
    longest = max(h, w)
    if longest <= side:
        factor = side // longest
        return h * factor, w * factor
    scale = side / longest
    return max(1, round(h * scale)), max(1, round(w * scale))


# ------------------------------------------------------------------------------ files
def png_bytes(image: np.ndarray, *, optimize: bool = False) -> bytes:
    """An image as the content of a PNG file. Quick to write (zlib level 1: figures are redrawn
    on every click) unless ``optimize`` (the smallest file, several times slower).

    Args:
        image: (H, W), (H, W, 3) or (H, W, 4) uint8.

    Raises:
        ValueError: ``image`` is not a uint8 image of those shapes.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3
                                                          and image.shape[2] in (3, 4))):
        raise ValueError(f"expected a uint8 image of shape (H, W), (H, W, 3) or (H, W, 4), "
                         f"got {image.dtype} {image.shape}.")
    buffer = io.BytesIO()
    options = {"optimize": True} if optimize else {"compress_level": 1}
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """A file's content as a ``data:`` URI (base64)."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_uri(image: np.ndarray, *, jpeg_quality: int | None = None) -> str:
    """An (H, W, 3) uint8 image as a ``data:`` URI: PNG, or with ``jpeg_quality`` whichever of
    the smallest PNG and a JPEG of that quality is smaller (photos are much smaller as JPEG,
    flat pictures as PNG)."""
    if jpeg_quality is None:
        return data_uri(png_bytes(image))
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="JPEG",
                                                       quality=jpeg_quality)
    png = png_bytes(image, optimize=True)
    if len(buffer.getvalue()) < len(png):
        return data_uri(buffer.getvalue(), "image/jpeg")
    return data_uri(png)


# ------------------------------------------------------------------------------ grids
_LABEL_COLOUR = (60, 60, 60)  # dark grey: tile labels


@functools.lru_cache(maxsize=4)
def label_font(size: int):
    """Pillow's own font at ``size`` pixels (the bitmap font where Pillow lacks FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def fit_text(text: str, width: int, font, draw: ImageDraw.ImageDraw) -> str:
    """``text`` shortened, with an ellipsis, until it is at most ``width`` pixels wide."""
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 1 and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…" if draw.textlength(text + "…", font=font) <= width else ""


@dataclass(frozen=True)
class TileGrid:
    """Tiles laid out in one picture.

    Attributes:
        image: (H, W, 3) uint8.
        boxes: (n, 4) int: x0, y0, x1, y1 of each tile in ``image`` (x1, y1 excluded).
    """

    image: np.ndarray
    boxes: np.ndarray


def tile_grid(tiles: Sequence[np.ndarray], columns: int, *, gap: int = 2,
              labels: Sequence[str] | None = None, label_height: int = 13,
              label_size: int = 10, label_colours: Sequence | None = None) -> TileGrid:
    """Tiles in rows of ``columns`` cells on white, each cell as large as the largest tile.

    Layout: ``gap`` pixels around the grid and between cells; tile i sits at the top left of
    cell (i // columns, i % columns); with ``labels``, a band of ``label_height`` pixels above
    each tile holds its label, shortened to the tile's width.

    Args:
        tiles: (h, w, 3) uint8 images.
        columns: cells per row (fewer when there are fewer tiles).
        label_colours: an RGB colour per tile, ``None`` for the usual dark grey.

    Returns:
        ``TileGrid``.
    """
    n = len(tiles)
    columns = max(1, min(columns, n))
    rows = max(1, math.ceil(n / columns))
    band = label_height if labels is not None else 0
    tile_h = max((t.shape[0] for t in tiles), default=1)
    tile_w = max((t.shape[1] for t in tiles), default=1)
    cell_h, cell_w = band + tile_h + gap, tile_w + gap
    canvas = np.full((gap + rows * cell_h, gap + columns * cell_w, 3), 255, np.uint8)
    boxes = np.zeros((n, 4), int)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        x0, y0 = gap + c * cell_w, gap + r * cell_h + band
        canvas[y0:y0 + tile.shape[0], x0:x0 + tile.shape[1]] = tile
        boxes[i] = (x0, y0, x0 + tile.shape[1], y0 + tile.shape[0])
    if labels is None:
        return TileGrid(canvas, boxes)
    picture = Image.fromarray(canvas)
    draw, font = ImageDraw.Draw(picture), label_font(label_size)
    colours = label_colours or [None] * n
    for (x0, y0, x1, _), label, colour in zip(boxes, labels, colours):
        draw.text((x0, y0 - band + 1), fit_text(str(label), x1 - x0, font, draw),
                  fill=colour or _LABEL_COLOUR, font=font)
    return TileGrid(np.asarray(picture), boxes)


def map_tiles(maps: np.ndarray, channels: Sequence[int], size: tuple[int, int], colormap: str,
              low: np.ndarray, high: np.ndarray) -> list[np.ndarray]:
    """Chosen channels of (h, w, C) maps as coloured (size[0], size[1], 3) uint8 tiles, each
    resized for display and coloured on its own range ``low[c]`` to ``high[c]``."""
    return [colorize(resize_for_display(maps[:, :, c], *size), colormap, low[c], high[c])
            for c in channels]
