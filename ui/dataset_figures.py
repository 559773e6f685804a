"""Plotly figures of a data set report. Class names and paths come from users: Plotly renders
a few HTML tags in labels, so every such text is HTML-escaped here."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from engine.data.report import TINY_SIDE, DatasetReport
from engine.render import FONT

_LEGEND = dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom",
               traceorder="normal")
_SPLIT_COLOURS = {"train": "#2f6fde", "validation": "#f08c2e", "test": "#2e9e5b", "all": "#2f6fde"}


def _text(value: str) -> str:
    return html.escape(str(value), quote=False)


def class_counts(report: DatasetReport) -> go.Figure:
    """Images per class, one bar per split (stacked), classes along x."""
    names = [_text(c) for c in report.class_names]
    fig = go.Figure()
    for split in report.splits:
        counts = [report.counts[split][c] for c in report.class_names]
        fig.add_trace(go.Bar(x=names, y=counts, name=split,
                             marker_color=_SPLIT_COLOURS.get(split, "#9aa5b1"),
                             hovertemplate="%{x}: %{y} images<extra>" + split + "</extra>"))
    fig.update_layout(barmode="stack", height=320, margin=dict(l=10, r=10, t=30, b=10),
                      font=FONT, yaxis=dict(title="images"), legend=_LEGEND,
                      xaxis=dict(type="category", automargin=True))
    return fig


def image_sizes(report: DatasetReport) -> go.Figure:
    """Width against height of every image; the tiny-image zone shaded."""
    widths, heights = np.asarray(report.widths), np.asarray(report.heights)
    fig = go.Figure(go.Scattergl(x=widths, y=heights, mode="markers",
                                 marker=dict(size=6, opacity=0.5, color="#2f6fde"),
                                 hovertemplate="%{x} x %{y} px<extra></extra>"))
    top = max(int(widths.max(initial=1)), int(heights.max(initial=1)), TINY_SIDE) * 1.08
    fig.add_shape(type="rect", x0=0, y0=0, x1=TINY_SIDE, y1=top, fillcolor="#e5484d",
                  opacity=0.08, line_width=0)
    fig.add_shape(type="rect", x0=0, y0=0, x1=top, y1=TINY_SIDE, fillcolor="#e5484d",
                  opacity=0.08, line_width=0)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), font=FONT,
                      title=dict(text="Image sizes (shaded: tiny)", font=dict(size=13)),
                      xaxis=dict(title="width (px)", range=[0, top]),
                      yaxis=dict(title="height (px)", range=[0, top]))
    return fig


def aspect_ratios(report: DatasetReport) -> go.Figure:
    """Histogram of width / height."""
    ratio = np.asarray(report.widths, float) / np.maximum(np.asarray(report.heights, float), 1)
    # Fixed 0.05-wide bins: one common ratio shows as one narrow bar, not the whole axis.
    fig = go.Figure(go.Histogram(x=ratio, xbins=dict(size=0.05), marker_color="#5b8def",
                                 hovertemplate="%{x}: %{y} images<extra></extra>"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), font=FONT,
                      title=dict(text="Aspect ratio (width / height)", font=dict(size=13)),
                      xaxis=dict(title="width / height"), yaxis=dict(title="images"),
                      bargap=0.05)
    return fig


def file_sizes(report: DatasetReport) -> go.Figure:
    """Histogram of file sizes in KB."""
    kb = np.asarray(report.file_bytes, float) / 1024
    fig = go.Figure(go.Histogram(x=kb, nbinsx=40, marker_color="#2e9e5b",
                                 hovertemplate="%{x} KB: %{y} files<extra></extra>"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), font=FONT,
                      title=dict(text="File sizes", font=dict(size=13)),
                      xaxis=dict(title="KB"), yaxis=dict(title="files"), bargap=0.05)
    return fig


def colour_modes(report: DatasetReport) -> go.Figure:
    """Bars of colour modes and of file formats."""
    fig = go.Figure()
    fig.add_trace(go.Bar(x=[_text(m) for m in report.modes], y=list(report.modes.values()),
                         name="colour mode", marker_color="#f08c2e"))
    fig.add_trace(go.Bar(x=[_text(f) for f in report.formats], y=list(report.formats.values()),
                         name="file format", marker_color="#9aa5b1"))
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=30, b=10), font=FONT,
                      title=dict(text="Colour modes and formats", font=dict(size=13)),
                      yaxis=dict(title="images"), legend=_LEGEND,
                      xaxis=dict(type="category"))
    return fig
