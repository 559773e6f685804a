"""What the Feature maps page computes around one layer's grid: every layer's maps of an image
from one forward pass, the all-layers overview, and the choices of the "how was this number
computed?" view (which layers it opens, where it starts, what the input channels are).
Plain text (no Markdown): the page escapes and draws it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from engine import features
from engine.conv_arithmetic import ConvArithmetic, channel_colours, explainable
from engine.models.explorable import ExplorableModel
from engine.models.layers import find_layer

#: the overview's layer columns at most (evenly spread over the network)
OVERVIEW_LAYERS = 16
#: channels per layer in the overview (the most active ones)
OVERVIEW_CHANNELS = 4
#: dense layers at the end of the overview
OVERVIEW_DENSE = 2
#: how closely the spelt-out sum must equal the map's value (float32 rounding)
MATCH_RTOL, MATCH_ATOL = 1e-4, 1e-5


def every_layer_maps(model: ExplorableModel, image: np.ndarray) -> dict[str, np.ndarray]:
    """Every layer's maps of one image (``features.map_layers``, batch axis dropped), and under
    ``features.input_key(path)`` the input of each Conv2D layer the arithmetic view can open.
    One forward pass; an array two keys share stays one array."""
    layers = [layer.path for layer in features.map_layers(model)]
    explain = [p for p in layers if explainable(find_layer(model.keras_model, p))]
    maps = features.feature_maps(model, image, layers, inputs_of=explain)
    first: dict[int, np.ndarray] = {}
    return {key: first.setdefault(id(value), value[0]) for key, value in maps.items()}


# ------------------------------------------------------------------------------ overview
@dataclass(frozen=True)
class OverviewColumn:
    """One column of the overview: a title, a subtitle and its tiles.

    Attributes:
        title: the layer's own name (``"input"`` for the image).
        subtitle: its true shape (``"32x32x16"``, ``"10 units"``).
        tiles: (h, w, 3) uint8 images (the input) or (h, w) float maps.
        lows, highs: the colour range of each map tile (``None`` for images).
    """

    title: str
    subtitle: str
    tiles: list
    lows: list | None = None
    highs: list | None = None


@dataclass(frozen=True)
class LayersOverview:
    """The input, then at most ``OVERVIEW_LAYERS`` convolution and pooling layers with their
    most active channels, then the last dense layers' units as squares.

    Attributes:
        columns: the columns, input first.
        spatial_shown: layers with maps drawn.
        spatial_total: layers with maps in the network.
    """

    columns: list[OverviewColumn] = field(default_factory=list)
    spatial_shown: int = 0
    spatial_total: int = 0

    @property
    def caption(self) -> str:
        of = (f" (of {self.spatial_total} with maps)"
              if self.spatial_shown < self.spatial_total else "")
        return (f"From the input (left) to the output: the {OVERVIEW_CHANNELS} most active "
                f"channels of {self.spatial_shown} convolution and pooling layers{of}, drawn "
                "smaller as the maps shrink (sizes on a log scale; the true shape is under each "
                "name), then the dense layers' units as squares. Maps shrink and become more "
                "abstract with depth.")


def layers_overview(model: ExplorableModel, image: np.ndarray, maps: dict[str, np.ndarray],
                    layers: Sequence[features.MapLayer], scale: str, symmetric: bool
                    ) -> LayersOverview:
    """The overview of ``every_layer_maps``' ``maps`` of ``image``.

    Args:
        scale: a key of ``features.COLOR_SCALES`` (the dense squares use ``"module"`` for
            ``"local"``: one unit has no range of its own).
        symmetric: colour ranges centred on zero (a diverging colour map).
    """
    with_maps = [m for m in layers if m.is_spatial]
    spatial = [m for m in with_maps if m.kind in ("conv", "pool")] or with_maps
    if len(spatial) > OVERVIEW_LAYERS:
        spatial = [spatial[i] for i in np.unique(
            np.linspace(0, len(spatial) - 1, OVERVIEW_LAYERS).round().astype(int))]
    seen = model.prepare(image)[0].astype(np.uint8)
    columns = [OverviewColumn("input", f"{seen.shape[0]}x{seen.shape[1]}x3", [seen])]
    for m in spatial:
        low, high = features.color_limits(maps, m.path, scale, symmetric)
        picks = features.overview_channels(maps[m.path], k=OVERVIEW_CHANNELS)
        columns.append(OverviewColumn(
            _short(m.path), "x".join(map(str, m.output_shape)),
            [maps[m.path][:, :, c] for c in picks], [low[c] for c in picks],
            [high[c] for c in picks]))
    for m in [m for m in layers if not m.is_spatial][-OVERVIEW_DENSE:]:
        values = maps[m.path]
        side = int(np.ceil(np.sqrt(values.size)))
        square = np.full(side * side, values.min(), np.float32)
        square[:values.size] = values
        low, high = features.color_limits(maps, m.path, "module" if scale == "local" else scale,
                                          symmetric)
        columns.append(OverviewColumn(_short(m.path), f"{values.size} units",
                                      [square.reshape(side, side)], [low[0]], [high[0]]))
    return LayersOverview(columns, len(spatial), len(with_maps))


def _short(path: str) -> str:
    return path.split("/")[-1]


# ------------------------------------------------------------------------------ arithmetic
def explainable_convs(model: ExplorableModel, layers: Sequence[features.MapLayer]) -> list[str]:
    """The paths of the layers the arithmetic view can open (plain Conv2D), first to last."""
    return [m.path for m in layers
            if m.kind == "conv" and explainable(find_layer(model.keras_model, m.path))]


def first_conv(layers: Sequence[features.MapLayer]) -> str | None:
    """The first convolution layer's path: its input is the preprocessed image."""
    return next((m.path for m in layers if m.kind == "conv"), None)


def peak(values: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the largest value of a 2-D map (the first of equals): where the
    arithmetic view starts."""
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return int(row), int(col)


def input_channel_names(model: ExplorableModel, layer: str,
                        layers: Sequence[features.MapLayer], channels: int) -> list[str]:
    """What each input channel of ``layer`` is: ``"input channel 0 (red)"`` on the first
    convolution of an RGB network (blue first for ``"caffe"`` preprocessing, which feeds BGR),
    ``"input channel 5"`` elsewhere."""
    colours = [""] * channels
    if layer == first_conv(layers) and channels == 3:
        colours = [f" ({c})" for c in channel_colours(channels, model.preprocessing)]
    return [f"input channel {c}{colours[c]}" for c in range(channels)]


def matches_map(arith: ConvArithmetic, shown: float) -> bool:
    """Whether the spelt-out value equals the map's ``shown`` value up to float32 rounding."""
    return bool(np.isclose(arith.value, shown, rtol=MATCH_RTOL, atol=MATCH_ATOL))
