"""Pictures of feature maps: the channel grid, overlays, the all-layers strip, first-layer
filters, and the figures of the "how was this number computed?" view.

A layer can have 512 channels: the grid is drawn as ONE image (``engine.render``), never as
hundreds of Plotly traces; a single transparent scatter trace over it gives hover and click per
tile (``ui.figures.tile_grid_figure``). Tiles of large maps are downsampled (area average) for
the grid; the chosen channel is shown at full resolution by ``channel_heatmap``. Nothing here
imports Streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from PIL import Image, ImageDraw

from engine import render
from engine.conv_arithmetic import ConvArithmetic
from engine.features import ChannelStats
from engine.render import FONT, colour_stops, fit_to_side, is_diverging, magnify, png_bytes
from ui.figures import HIGHLIGHT, tile_grid_figure

__all__ = ["COLORMAPS", "ChannelGrid", "StripColumn", "arithmetic_figure", "channel_grid",
           "channel_heatmap", "contributions_figure", "grid_figure", "grid_layout",
           "is_diverging", "labelled_filters_image", "layers_strip", "magnify", "overlay",
           "png_bytes", "position_figure", "stats_figure", "units_figure", "window_figure"]

#: the colour maps the Feature maps page offers (names of ``engine.render.COLORMAPS``)
COLORMAPS = ("viridis", "magma", "inferno", "cividis", "gray", "blue-white-red (signed)")
_LABEL_H = 13  # pixels of the band above each tile that holds its channel index
_GAP = 3
_DEAD = (220, 40, 40)


# ------------------------------------------------------------------------------ the grid
@dataclass(frozen=True)
class ChannelGrid:
    """The tiled grid of one layer's channels, drawn as one image.

    Attributes:
        image: (H, W, 3) uint8.
        channels: (n,) the channel index of each tile, in the order drawn.
        boxes: (n, 4) int: x0, y0, x1, y1 of each tile's map area in ``image``.
        tile: (th, tw): tile size in pixels (the map's (h, w) resized).
    """

    image: np.ndarray
    channels: np.ndarray
    boxes: np.ndarray
    tile: tuple[int, int]


def grid_layout(n: int, h: int, w: int, width: int = 1100,
                max_tile: int = 112) -> tuple[int, tuple[int, int]]:
    """Columns and tile size for ``n`` maps of (h, w): about twice as wide as tall, tiles
    at most ``max_tile`` pixels (larger maps are downsampled), small maps enlarged by a
    whole factor so each of their values stays a square block (``render.tile_size``)."""
    cols = max(1, min(n, math.ceil(math.sqrt(2 * n))))
    side = max(12, min(max_tile, width // cols - _GAP))
    return cols, render.tile_size(h, w, side)


def channel_grid(maps: np.ndarray, low: np.ndarray, high: np.ndarray, colormap: str,
                 order: np.ndarray | None = None, dead: np.ndarray | None = None, *,
                 width: int = 1100, max_tile: int = 112) -> ChannelGrid:
    """Every channel of one image's layer output as a labelled tile of one image.

    Args:
        maps: (h, w, C) float32.
        low, high: (C,) colour range of each channel (``engine.features.color_limits``).
        colormap: one of ``COLORMAPS``.
        order: channel indices in drawing order (default 0..C-1).
        dead: (C,) bool: channels to mark (red label and cross).
        width: target width of the grid in pixels.
        max_tile: largest tile side; larger maps are area-averaged down to it.

    Returns:
        ``ChannelGrid``.
    """
    h, w, c = maps.shape
    order = np.arange(c) if order is None else np.asarray(order)
    dead = np.zeros(c, bool) if dead is None else np.asarray(dead, bool)
    cols, (th, tw) = grid_layout(len(order), h, w, width, max_tile)
    grid = render.tile_grid(
        render.map_tiles(maps, order, (th, tw), colormap, low, high), cols, gap=_GAP,
        labels=[f"{ch} dead" if dead[ch] and tw >= 44 else str(ch) for ch in order],
        label_height=_LABEL_H, label_colours=[_DEAD if dead[ch] else None for ch in order])
    image = Image.fromarray(grid.image)
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in grid.boxes[dead[order]]:
        draw.rectangle((x0 - 1, y0 - 1, x1, y1), outline=_DEAD, width=1)
        draw.line((x0, y0, x1 - 1, y1 - 1), fill=_DEAD, width=1)
        draw.line((x0, y1 - 1, x1 - 1, y0), fill=_DEAD, width=1)
    return ChannelGrid(np.asarray(image), order, grid.boxes, (th, tw))


def grid_figure(grid: ChannelGrid, stats: ChannelStats, selected: int | None = None,
                display_width: int = 1100) -> go.Figure:
    """The grid image with one transparent marker per tile: hover shows the channel's
    statistics, a click selects it. The selected channel gets a frame."""
    hover = [f"channel {c}<br>mean {stats.mean[c]:.4g} · max {stats.max[c]:.4g}<br>"
             f"zeros {stats.zero_fraction[c]:.0%}" + (" · dead" if stats.dead[c] else "")
             for c in grid.channels]
    channels = grid.channels.tolist()
    index = channels.index(selected) if selected in channels else None
    return tile_grid_figure(grid.image, grid.boxes, hover, customdata=grid.channels,
                            name="channels", selected=index, display_width=display_width)


# ------------------------------------------------------------------------------ one channel
def overlay(image: np.ndarray, values: np.ndarray, low: float, high: float, colormap: str,
            opacity: float) -> np.ndarray:
    """One channel (h, w), coloured on ``low`` to ``high`` and smoothly enlarged, blended over
    the (H, W, 3) uint8 image the network saw (``engine.render.overlay``)."""
    return render.overlay(image, values, opacity, colormap, low, high)


def channel_heatmap(values: np.ndarray, low: float, high: float, colormap: str, title: str,
                    mark: tuple[int, int] | None = None, height: int = 420) -> go.Figure:
    """One channel at full resolution, a value per cell on hover; ``mark`` frames (row, col)."""
    h, w = values.shape
    fig = go.Figure(go.Heatmap(
        z=values, zmin=low, zmax=high, colorscale=colour_stops(colormap),
        hovertemplate="row %{y}, column %{x}<br>value %{z:.5g}<extra></extra>",
        colorbar=dict(thickness=12, len=0.9)))
    if mark is not None:
        r, c = mark
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=r - 0.5, y1=r + 0.5,
                      line=dict(color=HIGHLIGHT, width=2))
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=36, b=10), font=FONT,
                      title=dict(text=title, font=dict(size=13)),
                      xaxis=dict(constrain="domain", showgrid=False),
                      yaxis=dict(autorange="reversed", scaleanchor="x", showgrid=False))
    return fig


def units_figure(values: np.ndarray, names: list[str] | None = None, title: str = "") -> go.Figure:
    """A dense layer's units as bars (one trace), dead units (exactly 0) in red."""
    values = np.asarray(values, np.float32)
    colors = np.where(values == 0, "#dc2828", "#2f6fde")
    labels = names if names and len(names) == len(values) else [str(i) for i in range(len(values))]
    fig = go.Figure(go.Bar(x=np.arange(len(values)), y=values, marker_color=colors,
                           hovertext=[f"unit {i}: {labels[i]}" for i in range(len(values))],
                           hovertemplate="%{hovertext}<br>%{y:.5g}<extra></extra>"))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=36, b=10), font=FONT,
                      title=dict(text=title, font=dict(size=13)), bargap=0,
                      xaxis=dict(title="unit"), yaxis=dict(title="activation"))
    return fig


def stats_figure(stats: ChannelStats, order: np.ndarray) -> go.Figure:
    """Per-channel mean (bars) and max (dots) in the grid's order; dead channels in red."""
    labels = [str(c) for c in order]
    colors = np.where(stats.dead[order], "#dc2828", "#2f6fde")
    fig = go.Figure([
        go.Bar(x=labels, y=stats.mean[order], name="mean (red: dead)", marker_color=colors,
               customdata=stats.zero_fraction[order],
               hovertemplate="channel %{x}<br>mean %{y:.4g}<br>zeros %{customdata:.0%}"
                             "<extra></extra>"),
        go.Scatter(x=labels, y=stats.max[order], name="max", mode="markers",
                   marker=dict(color="#f08c2e", size=5),
                   hovertemplate="channel %{x}<br>max %{y:.4g}<extra></extra>")])
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), font=FONT, bargap=0.1,
                      xaxis=dict(type="category", title="channel", showticklabels=len(order) <= 64),
                      yaxis=dict(title="activation"), legend=dict(orientation="h", y=1.12))
    return fig


# ------------------------------------------------------------------------------ overview
@dataclass(frozen=True)
class StripColumn:
    """One column of the all-layers strip: a title, a subtitle and its tiles.

    ``tiles`` are (h, w, 3) uint8 images (already coloured) or (h, w) float maps, coloured
    with ``low``/``high`` (one pair per tile).
    """

    title: str
    subtitle: str
    tiles: list
    lows: list | None = None
    highs: list | None = None


def layers_strip(columns: list[StripColumn], colormap: str, tile: int = 84,
                 per_row: int = 10) -> np.ndarray:
    """The classic "intermediate activations" figure as one image: a column per layer from
    input to output, each with a few channels, titled with the layer's name and shape.
    Tiles shrink with the maps (on a log scale, so deep maps stay visible), so the shrinking
    with depth shows at a glance; the subtitle gives the true shape."""
    if not columns:
        return np.full((10, 10, 3), 255, np.uint8)
    depth = max(len(c.tiles) for c in columns)
    largest = max(max(t.shape[0], t.shape[1]) for c in columns for t in c.tiles)
    head, gap = 30, 6
    n_rows = math.ceil(len(columns) / per_row)
    cols = min(per_row, len(columns))
    cell_w, cell_h = tile + gap, head + depth * (tile + gap)
    canvas = np.full((n_rows * cell_h + gap, cols * cell_w + gap, 3), 255, np.uint8)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = render.label_font(10)
    for i, column in enumerate(columns):
        r, c = divmod(i, per_row)
        x0, y0 = gap + c * cell_w, r * cell_h + gap
        draw.text((x0, y0), render.fit_text(column.title, tile, font, draw), fill=(30, 30, 30),
                  font=font)
        draw.text((x0, y0 + 12), column.subtitle, fill=(110, 110, 110), font=font)
        for j, t in enumerate(column.tiles):
            # Side on a log scale of the map's size: a 7-pixel map is drawn smaller than a
            # 224-pixel one, yet big enough to see what it shows.
            share = math.log(max(t.shape[:2])) / math.log(largest) if largest > 1 else 1.0
            side = max(8, round(tile * (0.35 + 0.65 * share)))
            if t.ndim == 2:
                size = (max(1, round(side * t.shape[0] / max(t.shape[:2]))),
                        max(1, round(side * t.shape[1] / max(t.shape[:2]))))
                t = render.colorize(render.resize_for_display(t, *size), colormap,
                                    column.lows[j], column.highs[j])
            else:
                t = fit_to_side(t, side)
            th, tw = t.shape[:2]
            ty = y0 + head + j * (tile + gap)
            image.paste(Image.fromarray(t), (x0, ty))
            draw.rectangle((x0 - 1, ty - 1, x0 + tw, ty + th), outline=(200, 200, 200))
    return np.asarray(image)


# ------------------------------------------------------------------------------ filters
def labelled_filters_image(filters: np.ndarray, scale: int | None = None, per_row: int = 16
                           ) -> np.ndarray:
    """First-layer filter pictures (C, kh, kw, 3) in [0, 1] (``FirstLayerFilters.images``) as
    one image of small squares, each labelled with its index."""
    n, kh, kw, _ = filters.shape
    scale = scale or max(4, 48 // max(kh, kw))
    pictures = (np.clip(filters, 0, 1) * 255 + 0.5).astype(np.uint8)
    tiles = [magnify(picture, scale * max(kh, kw)) for picture in pictures]
    return render.tile_grid(tiles, per_row, gap=_GAP, labels=[str(i) for i in range(n)],
                            label_height=_LABEL_H).image


# ------------------------------------------------------------------------------ arithmetic
def arithmetic_figure(arith: ConvArithmetic, input_channel: int) -> go.Figure:
    """Patch x kernel = products for one input channel, each cell with its number; cells
    over the zero padding are greyed out."""
    patch = arith.patch[:, :, input_channel]
    kernel = arith.kernel[:, :, input_channel]
    products = arith.products[:, :, input_channel]
    titles = (f"input patch (channel {input_channel})", "kernel weights",
              f"products · sum {arith.channel_sums[input_channel]:.4g}")
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.06)
    kh, kw = patch.shape
    for i, (values, scale) in enumerate(((patch, "Viridis"), (kernel, "RdBu_r"),
                                         (products, "RdBu_r")), start=1):
        padded = ~arith.inside if i != 2 else np.zeros_like(arith.inside)  # weights are real
        span = float(np.abs(values).max()) or 1.0
        zmin, zmax = (-span, span) if scale == "RdBu_r" else (float(values.min()),
                                                              float(values.max()) or 1.0)
        text = [[("pad" if padded[r, c] else f"{values[r, c] + 0.0:.3g}")
                 for c in range(kw)] for r in range(kh)]  # + 0.0 turns -0 into 0
        fig.add_trace(go.Heatmap(z=values, zmin=zmin, zmax=zmax, colorscale=scale,
                                 text=text, texttemplate="%{text}" if kh * kw <= 81 else None,
                                 textfont=dict(size=11), showscale=False,
                                 hovertemplate="row %{y}, column %{x}: %{z:.5g}<extra></extra>"),
                      row=1, col=i)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i if i > 1 else ''}",
                         showticklabels=False, row=1, col=i)
        fig.update_xaxes(showticklabels=False, constrain="domain", row=1, col=i)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), font=FONT)
    return fig


def contributions_figure(arith: ConvArithmetic, highlight: int | None = None) -> go.Figure:
    """Each input channel's share of the sum (its products added up), one bar each."""
    sums = arith.channel_sums
    colors = np.where(sums >= 0, "#2f6fde", "#f08c2e").astype(object)
    if highlight is not None:
        colors[highlight] = HIGHLIGHT
    fig = go.Figure(go.Bar(x=np.arange(len(sums)), y=sums, marker_color=list(colors),
                           hovertemplate="input channel %{x}: %{y:.5g}<extra></extra>"))
    fig.update_layout(height=260, margin=dict(l=10, r=10, t=36, b=10), font=FONT, bargap=0.1,
                      title=dict(text=f"Sum of products per input channel (total "
                                      f"{arith.total:.5g})", font=dict(size=13)),
                      xaxis=dict(title="input channel"), yaxis=dict(title="contribution"))
    return fig


def window_figure(layer_input: np.ndarray, arith: ConvArithmetic, input_channel: int,
                  title: str) -> go.Figure:
    """One channel of the layer's input with the kernel's window drawn where it sits."""
    values = layer_input[:, :, input_channel]
    fig = go.Figure(go.Heatmap(z=values, colorscale="Viridis", showscale=False,
                               hovertemplate="row %{y}, column %{x}: %{z:.5g}<extra></extra>"))
    r0, r1 = int(arith.input_rows.min()), int(arith.input_rows.max())
    c0, c1 = int(arith.input_cols.min()), int(arith.input_cols.max())
    fig.add_shape(type="rect", x0=c0 - 0.5, x1=c1 + 0.5, y0=r0 - 0.5, y1=r1 + 0.5,
                  line=dict(color=HIGHLIGHT, width=2))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=36, b=10), font=FONT,
                      title=dict(text=title, font=dict(size=13)),
                      xaxis=dict(constrain="domain", showgrid=False),
                      yaxis=dict(autorange="reversed", scaleanchor="x", showgrid=False))
    return fig


def position_figure(values: np.ndarray, row: int, col: int, colormap: str, low: float,
                    high: float, window: int = 24) -> go.Figure:
    """A ``window`` x ``window`` crop of one channel around (row, col), one transparent marker
    per cell so that a click picks a position (Streamlit reports clicks on markers, not on
    heatmap cells). Axes keep the map's own row and column numbers."""
    h, w = values.shape
    r0 = int(np.clip(row - window // 2, 0, max(0, h - window)))
    c0 = int(np.clip(col - window // 2, 0, max(0, w - window)))
    crop = values[r0:r0 + window, c0:c0 + window]
    rows, cols = np.mgrid[r0:r0 + crop.shape[0], c0:c0 + crop.shape[1]]
    fig = go.Figure(go.Heatmap(z=crop, x=np.arange(c0, c0 + crop.shape[1]),
                               y=np.arange(r0, r0 + crop.shape[0]), zmin=low, zmax=high,
                               colorscale=colour_stops(colormap), showscale=False,
                               hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=cols.ravel(), y=rows.ravel(), mode="markers", showlegend=False,
        customdata=np.stack([rows.ravel(), cols.ravel()], axis=1),
        hovertext=[f"row {r}, column {c}: {crop[r - r0, c - c0]:.5g}"
                   for r, c in zip(rows.ravel(), cols.ravel())], hoverinfo="text",
        marker=dict(symbol="square", size=max(6, 300 // max(crop.shape)), color="rgba(0,0,0,0)"),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1))))
    fig.add_shape(type="rect", x0=col - 0.5, x1=col + 0.5, y0=row - 0.5, y1=row + 0.5,
                  line=dict(color=HIGHLIGHT, width=3))
    fig.update_layout(height=340, width=340, margin=dict(l=30, r=10, t=30, b=30), font=FONT,
                      title=dict(text="Click a position", font=dict(size=13)), dragmode=False,
                      clickmode="event+select", hovermode="closest",
                      xaxis=dict(constrain="domain", showgrid=False),
                      yaxis=dict(autorange="reversed", scaleanchor="x", showgrid=False))
    return fig
