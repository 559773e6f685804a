"""Plotly figures. The engine returns numbers; figures are built here: the charts of the Model
page and Home, and the clickable grid of tiles that the Feature maps and Filters pages share."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from engine.models.architecture import LayerInfo
from engine.render import FONT, data_uri, png_bytes

#: the frame around the chosen tile or cell
HIGHLIGHT = "#ff2d95"


_DRAWN = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "MaxPooling2D",
          "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dense")


def _drawn(rows: list[LayerInfo]) -> list[LayerInfo]:
    """The layers a stack diagram shows: the ones that change the shape or learn filters
    (normalisation, activation and padding rows would drown them in deep networks)."""
    return [r for r in rows if r.type in _DRAWN and r.output_shape is not None]


def top_k_bars(pairs: list[tuple[str, float]]) -> go.Figure:
    """Horizontal bars of (class name, probability), the most likely on top."""
    names = [name for name, _ in pairs][::-1]
    probs = [p for _, p in pairs][::-1]
    fig = go.Figure(go.Bar(x=probs, y=names, orientation="h", text=[f"{p:.1%}" for p in probs],
                           textposition="auto", marker_color="#2f6fde",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_layout(height=40 + 34 * len(pairs), margin=dict(l=0, r=10, t=10, b=10),
                      xaxis=dict(range=[0, 1], tickformat=".0%"), font=FONT,
                      yaxis=dict(automargin=True))
    return fig


def layer_stack(rows: list[LayerInfo]) -> go.Figure:
    """The classic layer-stack diagram: one box per spatial layer, its height the spatial size
    (shrinking with depth) and its width the number of channels (growing), log-scaled."""
    spatial = [r for r in _drawn(rows) if len(r.output_shape) == 3]
    flat = [r for r in _drawn(rows) if len(r.output_shape) == 1]
    fig = go.Figure()
    if not spatial:
        return fig
    max_side = max(max(r.output_shape[0] or 1, 1) for r in spatial)
    x = 0.0
    xs, hover, colors = [], [], []
    for r in spatial + flat:
        if len(r.output_shape) == 3:
            h, _, c = (v or 1 for v in r.output_shape)
            height = 0.15 + 0.85 * math.sqrt(h / max_side)
        else:
            c = r.output_shape[0] or 1
            height = 0.08
        width = 0.25 + 0.35 * math.log2(max(c, 1))
        color = {"Conv2D": "#2f6fde", "DepthwiseConv2D": "#5b8def", "SeparableConv2D": "#5b8def",
                 "MaxPooling2D": "#f08c2e", "AveragePooling2D": "#f08c2e",
                 "Dense": "#2e9e5b"}.get(r.type, "#9aa5b1")
        fig.add_shape(type="rect", x0=x, x1=x + width, y0=-height / 2, y1=height / 2,
                      fillcolor=color, opacity=0.85, line=dict(color="white", width=0.5))
        xs.append(x + width / 2)
        shape = "x".join(str(v) for v in r.output_shape)
        if len(spatial) + len(flat) <= 40:  # readable labels only where they fit
            fig.add_annotation(x=x + width / 2, y=-0.5, text=shape, showarrow=False,
                               textangle=-90, yanchor="top", font=dict(size=10))
        hover.append(f"{r.path}<br>{r.type}<br>output {shape}")
        colors.append(color)
        x += width + 0.15
    fig.add_trace(go.Scatter(x=xs, y=[0] * len(xs), mode="markers", hovertext=hover,
                             hoverinfo="text", marker=dict(size=12, color=colors, opacity=0)))
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=30, b=10), font=FONT,
                      showlegend=False, xaxis=dict(visible=False),
                      yaxis=dict(visible=False, range=[-1.0, 0.55]),
                      title=dict(text="Box height = spatial size, box width = channels (log). "
                                      "Blue: convolution, orange: pooling, green: dense, "
                                      "grey: flatten / global pooling",
                                 font=dict(size=12)))
    return fig


def shape_profile(rows: list[LayerInfo]) -> go.Figure:
    """Spatial side and channel count along the depth of the network (two y axes)."""
    spatial = [r for r in _drawn(rows) if len(r.output_shape) == 3]
    names = [r.path for r in spatial]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=list(range(len(spatial))), y=[r.output_shape[0] for r in spatial],
                             name="spatial size (height)", mode="lines+markers", hovertext=names,
                             line=dict(color="#f08c2e")))
    fig.add_trace(go.Scatter(x=list(range(len(spatial))), y=[r.output_shape[2] for r in spatial],
                             name="channels", mode="lines+markers", hovertext=names, yaxis="y2",
                             line=dict(color="#2f6fde")))
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=10, b=10), font=FONT,
                      xaxis=dict(title="layer (input to output)"),
                      yaxis=dict(title="height of the feature maps", rangemode="tozero"),
                      yaxis2=dict(title="channels", overlaying="y", side="right",
                                  rangemode="tozero"),
                      legend=dict(orientation="h", y=1.1))
    return fig


def tile_grid_figure(picture: np.ndarray, boxes: np.ndarray, hover: Sequence[str], *,
                     customdata: Sequence[int], name: str, selected: int | None = None,
                     display_width: int = 1100, png: bytes | None = None) -> go.Figure:
    """A grid of tiles drawn as ONE image (``engine.render.tile_grid``), with one transparent
    marker per tile: hover shows ``hover[i]``, a click selects tile i (the point's customdata
    is ``customdata[i]``). Hundreds of tiles stay one image and one trace.

    Args:
        picture: (H, W, 3) uint8, the grid.
        boxes: (n, 4) x0, y0, x1, y1 of each tile in ``picture``.
        customdata: what a click on tile i reports (a channel, a filter index).
        name: the trace's name.
        selected: index of the tile framed in ``HIGHLIGHT``, if any.
        display_width: the figure is shrunk to at most this many pixels wide.
        png: ``picture`` already encoded (``png_bytes``), if at hand.
    """
    height, width = picture.shape[:2]
    zoom = min(1.0, display_width / width)
    png = png_bytes(picture) if png is None else png
    side = int(np.min(boxes[:, 2:] - boxes[:, :2])) if len(boxes) else 0
    fig = go.Figure(go.Image(source=data_uri(png), hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=(boxes[:, 0] + boxes[:, 2]) / 2, y=(boxes[:, 1] + boxes[:, 3]) / 2, mode="markers",
        customdata=np.asarray(customdata), hovertext=list(hover), hoverinfo="text", name=name,
        showlegend=False, marker=dict(symbol="square", size=max(6, int(side * zoom)),
                                      color="rgba(0,0,0,0)"),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1))))
    if selected is not None and 0 <= selected < len(boxes):
        x0, y0, x1, y1 = boxes[selected]
        fig.add_shape(type="rect", x0=x0 - 2, y0=y0 - 2, x1=x1 + 1, y1=y1 + 1,
                      line=dict(color=HIGHLIGHT, width=3))
    fig.update_layout(
        width=int(width * zoom), height=int(height * zoom), margin=dict(l=0, r=0, t=0, b=0),
        xaxis=dict(visible=False, range=[0, width]), font=FONT, dragmode=False,
        yaxis=dict(visible=False, range=[height, 0], scaleanchor="x"), clickmode="event+select",
        hovermode="closest", plot_bgcolor="white")
    return fig
