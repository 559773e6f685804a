"""The Plotly charts of the Saliency page and what it downloads. Colouring a map and laying it
over the image is ``engine.render`` (kept apart from computing the map, as pytorch-grad-cam's
``show_cam_on_image``); the names are here too, as the page and others call them."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go

from engine.render import FONT, colorize, overlay, png_bytes

__all__ = ["COLORMAPS", "box_share_figure", "colorize", "faithfulness_figure", "npy_bytes",
           "overlay", "png_bytes"]

#: the colour maps the Saliency page offers (names of ``engine.render.COLORMAPS``)
COLORMAPS = ("jet", "turbo", "viridis", "inferno", "hot", "gray")
_OURS, _RANDOM = "#2f6fde", "#9aa5b1"


def npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, np.asarray(array, np.float32))
    return out.getvalue()


def faithfulness_figure(curves, title: str = "") -> go.Figure:
    """Deletion and insertion curves side by side, each against its random-order baseline.

    Args:
        curves: an ``engine.saliency.metrics.FaithfulnessCurves``.
        title: e.g. the method and class.
    """
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        f"Deletion: AUC {curves.deletion_auc:.3f} vs random {curves.random_deletion_auc:.3f} "
        "(lower is better)",
        f"Insertion: AUC {curves.insertion_auc:.3f} vs random {curves.random_insertion_auc:.3f} "
        "(higher is better)"))
    x = np.asarray(curves.fractions) * 100
    for col, (ours, rand, name) in enumerate([
            (curves.deletion, curves.random_deletion, "deletion"),
            (curves.insertion, curves.random_insertion, "insertion")], start=1):
        fig.add_trace(go.Scatter(x=x, y=ours, mode="lines", name=f"map order ({name})",
                                 line=dict(color=_OURS, width=3), fill="tozeroy",
                                 fillcolor="rgba(47,111,222,0.12)", showlegend=col == 1,
                                 legendgroup="map",
                                 hovertemplate="%{x:.0f}% of pixels: p = %{y:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.add_trace(go.Scatter(x=x, y=rand, mode="lines", name=f"random order ({name})",
                                 line=dict(color=_RANDOM, width=2, dash="dash"),
                                 showlegend=col == 1, legendgroup="random",
                                 hovertemplate="%{x:.0f}% of pixels: p = %{y:.3f}<extra></extra>"),
                      row=1, col=col)
    fig.for_each_trace(lambda t: t.update(name=t.name.split(" (")[0]))
    fig.update_xaxes(title_text="% of pixels removed", row=1, col=1, range=[0, 100])
    fig.update_xaxes(title_text="% of pixels inserted (into a blurred copy)", row=1, col=2,
                     range=[0, 100])
    fig.update_yaxes(title_text="class probability", range=[0, 1.02])
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=60 if title else 40, b=10),
                      font=FONT, title=dict(text=title, font=dict(size=14)) if title else None,
                      legend=dict(orientation="h", y=-0.22))
    fig.update_annotations(font_size=12)
    return fig


def box_share_figure(class_names: list[str], share: np.ndarray, area: np.ndarray,
                     counts: np.ndarray) -> go.Figure:
    """Per class: the share of saliency inside the object boxes vs the share of the image the
    boxes cover (what a map spread evenly would score)."""
    keep = [i for i, n in enumerate(counts) if n > 0]
    names = [class_names[i] for i in keep]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=names, y=[share[i] for i in keep], name="saliency inside the box",
                         marker_color=_OURS, text=[f"{share[i]:.0%}" for i in keep],
                         textposition="auto",
                         hovertemplate="%{x}: %{y:.1%} of the saliency<extra></extra>"))
    fig.add_trace(go.Bar(x=names, y=[area[i] for i in keep], name="image area the box covers",
                         marker_color=_RANDOM,
                         hovertemplate="%{x}: boxes cover %{y:.1%} of the image<extra></extra>"))
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=10, b=10),
                      font=FONT, yaxis=dict(range=[0, 1], tickformat=".0%"),
                      legend=dict(orientation="h", y=1.12))
    return fig
