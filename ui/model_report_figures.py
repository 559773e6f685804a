"""Plotly figures of the model report (``engine.data.model_report``): the embedding map and
the confusion matrix. File and class names come from users: Plotly renders a few HTML tags in
hover texts and tick labels, so every such text is HTML-escaped here."""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from engine.render import FONT, colour_stops

#: what the map's points can be coloured by (the radio's options)
COLOURINGS = ("label", "prediction", "correct / wrong")
#: a colour per class, in class order (Plotly's "D3" set, then again)
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")
_VERDICT = {"correct": "#2e9e5b", "wrong": "#e5484d"}


def _text(value) -> str:
    return html.escape(str(value), quote=False)


def hover_texts(files: Sequence[str], labels: Sequence[str], predictions: Sequence[str]
                ) -> list[str]:
    """One hover text per point: the file name, the given label, the prediction (escaped)."""
    return [f"{_text(f)}<br>label: {_text(g)}<br>prediction: {_text(p)}"
            for f, g, p in zip(files, labels, predictions)]


def embedding_figure(points: np.ndarray, groups: Sequence[str], order: Sequence[str],
                     hover: Sequence[str], title: str) -> go.Figure:
    """The 2-D map of every image, one trace per group (a class, or correct / wrong).

    Args:
        points: (N, 2) coordinates.
        groups: (N,) the group of each point (a class name or "correct" / "wrong").
        order: the groups in legend order.
        hover: (N,) hover texts, already escaped (``hover_texts``).
        title: the map's name ("UMAP", "PCA").

    Every point's ``customdata`` is its index in the report, so a box or lasso selection
    names the images whatever trace they are in.
    """
    groups = np.asarray(groups, dtype=object)
    fig = go.Figure()
    for rank, group in enumerate(order):
        index = np.flatnonzero(groups == group)
        if not len(index):
            continue
        colour = _VERDICT.get(group) or _PALETTE[rank % len(_PALETTE)]
        fig.add_trace(go.Scattergl(
            x=points[index, 0], y=points[index, 1], mode="markers", name=_text(group),
            customdata=index, hovertext=[hover[i] for i in index], hoverinfo="text",
            marker=dict(size=7, opacity=0.8, color=colour, line=dict(width=0))))
    fig.update_layout(
        height=540, margin=dict(l=10, r=10, t=40, b=40), font=FONT, dragmode="select",
        title=dict(text=f"{title} of the model's features", font=dict(size=13)),
        xaxis=dict(showticklabels=False, zeroline=False, title=None),
        yaxis=dict(showticklabels=False, zeroline=False, title=None),
        # under the plot: above it the legend ran into the tool bar (box, lasso)
        legend=dict(orientation="h", x=0, xanchor="left", y=-0.02, yanchor="top"),
        hovermode="closest", plot_bgcolor="white")
    return fig


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str]) -> go.Figure:
    """Counts of given label (rows) against prediction (columns); a click on a cell selects it
    (its point's ``customdata`` is ``[given, predicted]``)."""
    counts = np.asarray(confusion)
    k = counts.shape[0]
    names = [_text(c) for c in class_names]
    given, predicted = np.divmod(np.arange(k * k), k)
    fig = go.Figure(go.Heatmap(
        z=counts, x=list(range(k)), y=list(range(k)), colorscale=colour_stops("viridis"),
        texttemplate="%{z}", hoverinfo="skip", showscale=False))
    fig.add_trace(go.Scatter(
        # a list, not an array: each point's customdata then comes back as [given, predicted]
        x=predicted, y=given, mode="markers", customdata=[[int(g), int(p)] for g, p in zip(
            given, predicted)],
        hovertext=[f"given {names[g]}, predicted {names[p]}: {counts[g, p]} images"
                   for g, p in zip(given, predicted)],
        hoverinfo="text", showlegend=False,
        marker=dict(symbol="square", size=max(12, 360 // k), color="rgba(0,0,0,0)"),
        selected=dict(marker=dict(opacity=1)), unselected=dict(marker=dict(opacity=1))))
    ticks = dict(tickmode="array", tickvals=list(range(k)), ticktext=names, showgrid=False,
                 zeroline=False)
    side = min(720, 140 + 60 * k)
    fig.update_layout(
        height=side, margin=dict(l=10, r=10, t=30, b=10), font=FONT, dragmode=False,
        xaxis=dict(title="predicted", side="top", **ticks),
        yaxis=dict(title="given label", autorange="reversed", scaleanchor="x", **ticks),
        clickmode="event+select", hovermode="closest", plot_bgcolor="white")
    return fig
