"""Figures of the guided tour: pixels with their numbers, one convolution spelt out, a quick
fit's curves. Plain titles; every number drawn is one the engine computed."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.conv_arithmetic import ConvArithmetic
from engine.render import FONT
from engine.training.metrics import smooth
from engine.training.quick import BatchPoint, EpochPoint

_FONT = dict(FONT, size=14)  # the Tour's figures read a little larger
_PINK = "#ff2d95"
TRAIN, VALIDATION = "#2f6fde", "#f08c2e"
#: trace names (tests read the curves by name)
BATCH_TRACE, VALIDATION_TRACE = "each practice batch", "unseen images"


def _text_colour(rgb: np.ndarray) -> np.ndarray:
    """Black on light pixels, white on dark ones (perceived brightness)."""
    light = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) > 140
    return np.where(light, "black", "white")


def pixels_figure(crop: np.ndarray, top: int, left: int) -> go.Figure:
    """A small (n, n, 3) uint8 crop drawn pixel by pixel, each with its red, green and blue
    values; axes keep the image's own row and column numbers."""
    n_rows, n_cols = crop.shape[:2]
    rows, cols = np.mgrid[0:n_rows, 0:n_cols]
    flat = crop.reshape(-1, 3)
    fig = go.Figure(go.Image(z=crop, x0=left, y0=top, dx=1, dy=1, hoverinfo="skip"))
    fig.add_trace(go.Scatter(
        x=(cols + left).ravel(), y=(rows + top).ravel(), mode="text",
        text=[f"{r}<br>{g}<br>{b}" for r, g, b in flat],
        textfont=dict(size=11, color=_text_colour(flat).tolist()),
        hovertext=[f"row {r + top}, column {c + left}: red {p[0]}, green {p[1]}, blue {p[2]}"
                   for r, c, p in zip(rows.ravel(), cols.ravel(), flat)],
        hoverinfo="text", showlegend=False))
    fig.update_layout(height=460, margin=dict(l=40, r=10, t=40, b=30), font=_FONT,
                      title=dict(text="Each square: red, green, blue (0 to 255)",
                                 font=dict(size=14)),
                      xaxis=dict(title="column", showgrid=False, constrain="domain"),
                      yaxis=dict(title="row", showgrid=False, scaleanchor="x"))
    return fig


def convolution_figure(arith: ConvArithmetic, colours: list[str]) -> go.Figure:
    """One row per input channel: the values under the window, the kernel's weights and their
    products, each cell with its number (cells over the zero border say "pad").

    Args:
        arith: the output value spelt out (``engine.conv_arithmetic``).
        colours: a name per input channel ("red", ...), shown in the row titles.
    """
    kh, kw, c_in = arith.patch.shape
    titles = []
    for ch in range(c_in):
        name = colours[ch] if ch < len(colours) else f"channel {ch}"
        titles += [f"{name}: values under the window", f"{name}: kernel",
                   f"{name}: multiplied · sum {arith.channel_sums[ch]:.3g}"]
    fig = make_subplots(rows=c_in, cols=3, subplot_titles=titles, horizontal_spacing=0.05,
                        vertical_spacing=0.12 if c_in > 1 else 0.1)
    show_numbers = kh * kw <= 25
    for ch in range(c_in):
        for col, (values, scale) in enumerate(((arith.patch[:, :, ch], "Viridis"),
                                               (arith.kernel[:, :, ch], "RdBu_r"),
                                               (arith.products[:, :, ch], "RdBu_r")), start=1):
            padded = ~arith.inside if col != 2 else np.zeros_like(arith.inside)
            span = float(np.abs(values).max()) or 1.0
            zmin, zmax = (-span, span) if scale == "RdBu_r" else (float(values.min()),
                                                                  float(values.max()) or 1.0)
            text = [["pad" if padded[r, c] else f"{values[r, c] + 0.0:.2f}" for c in range(kw)]
                    for r in range(kh)]  # + 0.0 turns -0 into 0
            fig.add_trace(go.Heatmap(z=values, zmin=zmin, zmax=zmax, colorscale=scale,
                                     showscale=False, text=text,
                                     texttemplate="%{text}" if show_numbers else None,
                                     textfont=dict(size=13),
                                     hovertemplate="%{z:.4g}<extra></extra>"),
                          row=ch + 1, col=col)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    for i in range(1, 3 * c_in + 1):
        fig.update_yaxes(scaleanchor=f"x{i if i > 1 else ''}", row=(i - 1) // 3 + 1,
                         col=(i - 1) % 3 + 1)
    fig.update_annotations(font_size=13)
    fig.update_layout(height=60 + 210 * c_in, margin=dict(l=10, r=10, t=40, b=10), font=_FONT)
    return fig


def learning_figure(points: list[BatchPoint], validation: list[EpochPoint], total_steps: int,
                    steps_per_epoch: int) -> go.Figure:
    """Mistakes (loss) and right answers (accuracy) as training goes: each practice batch
    (faint), their moving average, and both on unseen images before training and after each
    epoch. The x axis spans the whole planned run, so the curves grow into it."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "How wrong it is (loss): lower is better", "Share right: higher is better"))
    steps = [p.step / steps_per_epoch for p in points]
    for col, values in ((1, [p.loss for p in points]), (2, [p.accuracy for p in points])):
        values = np.asarray(values, np.float64)
        fig.add_trace(go.Scatter(x=steps, y=values.tolist(), mode="lines", name=BATCH_TRACE,
                                 line=dict(color=TRAIN, width=1), opacity=0.3,
                                 showlegend=col == 1, legendgroup="batch",
                                 hovertemplate="epoch %{x:.2f}: %{y:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.add_trace(go.Scatter(x=steps, y=smooth(values, 0.8).tolist(), mode="lines",
                                 name="practice, smoothed", line=dict(color=TRAIN, width=3),
                                 showlegend=col == 1, legendgroup="smooth",
                                 hovertemplate="epoch %{x:.2f}: %{y:.3f}<extra></extra>"),
                      row=1, col=col)
    for col, values, shown in ((1, [v.loss for v in validation], "%{y:.3f}"),
                               (2, [v.accuracy for v in validation], "%{y:.0%}")):
        fig.add_trace(go.Scatter(x=[v.epoch for v in validation], y=values,
                                 mode="lines+markers", name=VALIDATION_TRACE,
                                 line=dict(color=VALIDATION, width=3), showlegend=col == 1,
                                 legendgroup="unseen", marker=dict(size=11, symbol="diamond"),
                                 hovertemplate=f"after epoch %{{x}}: {shown}<extra>unseen</extra>"),
                      row=1, col=col)
    epochs = total_steps / steps_per_epoch
    fig.update_xaxes(title_text="epochs (passes over the practice images)",
                     range=[0, epochs * 1.02], dtick=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_annotations(font_size=14)
    fig.update_layout(height=380, margin=dict(l=40, r=10, t=40, b=40), font=_FONT,
                      legend=dict(orientation="h", y=-0.28))
    return fig
