"""Figures of the Train page: live curves, run comparison, confusion matrix, precision and
recall, and the pictures of the learning timeline (filters, Grad-CAM overlays)."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.render import FONT, magnify, tile_grid
from engine.training.evaluate import Evaluation
from engine.training.metrics import Curves, smooth

TRAIN, VALIDATION = "#2f6fde", "#e8710a"
_PALETTE = ["#2f6fde", "#e8710a", "#1e8e3e", "#d93025", "#9334e6", "#12b5cb", "#f9ab00",
            "#5f6368"]
MAX_BATCH_POINTS = 3000

#: trace names (the browser tests find the epoch curve by its name)
EPOCH_TRACE = "train · per epoch"


def curves_figure(c: Curves, smoothing: float = 0.9) -> go.Figure:
    """Loss and accuracy side by side: each training batch (faint), their moving average,
    and one point per epoch for training and validation; a dashed line where fine-tuning's
    second stage begins.

    Args:
        c: the run's curves.
        smoothing: weight of the moving average over batches, in [0, 1).
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"),
                        horizontal_spacing=0.08)
    stride = max(1, math.ceil(len(c.batch_x) / MAX_BATCH_POINTS))
    for col, (batch, epoch, val) in enumerate(
            ((c.batch_loss, c.loss, c.val_loss),
             (c.batch_accuracy, c.accuracy, c.val_accuracy)), start=1):
        first = col == 1
        fig.add_trace(go.Scattergl(
            x=c.batch_x[::stride], y=batch[::stride], mode="lines", name="train · each batch",
            line=dict(color=TRAIN, width=1), opacity=0.25, legendgroup="batch",
            showlegend=first, hovertemplate="epoch %{x:.2f}: %{y:.4f}<extra>batch</extra>"),
            row=1, col=col)
        fig.add_trace(go.Scatter(
            x=c.batch_x[::stride], y=smooth(batch, smoothing)[::stride], mode="lines",
            name="train · smoothed", line=dict(color=TRAIN, width=2), legendgroup="smooth",
            showlegend=first, hovertemplate="epoch %{x:.2f}: %{y:.4f}<extra>smoothed</extra>"),
            row=1, col=col)
        fig.add_trace(go.Scatter(
            x=c.epoch_x.tolist(), y=epoch.tolist(), mode="lines+markers", name=EPOCH_TRACE,
            line=dict(color=TRAIN, width=2, dash="dot"), marker=dict(size=7, symbol="circle"),
            legendgroup="epoch", showlegend=first,
            hovertemplate="after epoch %{x:.0f}: %{y:.4f}<extra>train</extra>"),
            row=1, col=col)
        if c.has_validation:
            fig.add_trace(go.Scatter(
                x=c.epoch_x.tolist(), y=val.tolist(), mode="lines+markers",
                name="validation · per epoch",
                line=dict(color=VALIDATION, width=2), marker=dict(size=7, symbol="diamond"),
                legendgroup="val", showlegend=first,
                hovertemplate="after epoch %{x:.0f}: %{y:.4f}<extra>validation</extra>"),
                row=1, col=col)
    for x in c.stage_starts:
        for col in (1, 2):
            fig.add_vline(x=x, line=dict(color="#5f6368", dash="dash", width=1), row=1, col=col)
        fig.add_annotation(x=x, y=0.98, yref="paper", xref="x", text=" stage 2: fine-tuning",
                           showarrow=False, xanchor="left", yanchor="top",
                           font=dict(size=11, color="#5f6368"))
    fig.update_xaxes(title_text="epoch", rangemode="tozero")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=360, margin=dict(l=40, r=10, t=40, b=40), font=FONT,
                      legend=dict(orientation="h", y=-0.22), hovermode="closest")
    return fig


def comparison_figure(named: list[tuple[str, Curves]]) -> go.Figure:
    """Several runs' per-epoch loss and accuracy overlaid: validation solid, training dotted,
    one colour per run."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"),
                        horizontal_spacing=0.08)
    for i, (name, c) in enumerate(named):
        color = _PALETTE[i % len(_PALETTE)]
        for col, (train, val) in enumerate(((c.loss, c.val_loss), (c.accuracy, c.val_accuracy)),
                                           start=1):
            fig.add_trace(go.Scatter(x=c.epoch_x, y=train, mode="lines", name=f"{name} · train",
                                     line=dict(color=color, dash="dot"), legendgroup=name,
                                     showlegend=False), row=1, col=col)
            if c.has_validation:
                fig.add_trace(go.Scatter(x=c.epoch_x, y=val, mode="lines+markers", name=name,
                                         line=dict(color=color), legendgroup=name,
                                         showlegend=col == 1), row=1, col=col)
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(range=[0, 1.02], row=1, col=2)
    fig.update_layout(height=360, margin=dict(l=40, r=10, t=40, b=40), font=FONT,
                      legend=dict(orientation="h", y=-0.22))
    return fig


def confusion_figure(report: Evaluation) -> go.Figure:
    """Rows: true class; columns: predicted class; colour: share of the row, text: count."""
    counts = report.confusion
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, np.float64), where=rows > 0)
    names = [str(n) for n in report.class_names]
    fig = go.Figure(go.Heatmap(
        z=share, x=names, y=names, text=counts, texttemplate="%{text}", zmin=0, zmax=1,
        colorscale="Blues", colorbar=dict(title="share of row"),
        hovertemplate="true %{y}, predicted %{x}: %{text} images<extra></extra>"))
    side = 160 + 44 * len(names)
    fig.update_layout(height=min(900, side), margin=dict(l=10, r=10, t=30, b=10), font=FONT,
                      xaxis=dict(title="predicted", side="top"),
                      yaxis=dict(title="true", autorange="reversed"))
    return fig


def precision_recall_figure(report: Evaluation) -> go.Figure:
    names = [str(n) for n in report.class_names]
    fig = go.Figure([
        go.Bar(x=names, y=np.nan_to_num(report.precision), name="precision",
               marker_color=TRAIN, hovertemplate="%{x}: precision %{y:.1%}<extra></extra>"),
        go.Bar(x=names, y=np.nan_to_num(report.recall), name="recall",
               marker_color=VALIDATION, hovertemplate="%{x}: recall %{y:.1%}<extra></extra>"),
    ])
    fig.update_layout(barmode="group", height=320, margin=dict(l=40, r=10, t=30, b=40),
                      font=FONT, yaxis=dict(range=[0, 1.02], tickformat=".0%"),
                      legend=dict(orientation="h", y=1.12))
    return fig


def kernel_image(kernel: np.ndarray, cell: int = 36, columns: int = 16) -> np.ndarray:
    """A first-layer kernel as one picture: each filter enlarged by a whole factor to at most
    ``cell`` pixels (``engine.render.magnify``), RGB for 3-channel input (grey otherwise, the
    mean over channels), all on one scale so that growing weights show.

    Args:
        kernel: (kh, kw, c_in, n) weights as the layer holds them (the training timeline's
            ``"filters"``); ``ui.feature_figures.labelled_filters_image`` draws the already
            scaled pictures of ``engine.features.first_layer_filters`` instead.

    Returns:
        (H, W, 3) uint8.
    """
    *_, c_in, n = kernel.shape
    pictures = kernel if c_in == 3 else np.repeat(kernel.mean(axis=2, keepdims=True), 3, axis=2)
    bound = float(np.abs(pictures).max()) or 1.0
    pictures = np.clip(np.round((pictures / bound + 1.0) * 127.5), 0, 255).astype(np.uint8)
    tiles = [magnify(pictures[:, :, :, i], cell) for i in range(n)]
    return tile_grid(tiles, columns, gap=2).image
