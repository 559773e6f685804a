"""The Feature maps page's layer picker (block, then layer) and its "how was this number
computed?" view: pick a position of a Conv2D channel, see its window, weights, products and sum.

The numbers come from ``engine.conv_arithmetic`` and ``engine.feature_views``; the figures from
``ui.feature_figures``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from engine import features
from engine.conv_arithmetic import ConvArithmetic, conv_arithmetic, explainable
from engine.feature_views import (explainable_convs, first_conv, input_channel_names,
                                  matches_map, peak)
from engine.models.layers import find_layer
from ui import feature_figures as ff
from ui import presenter, state


# ------------------------------------------------------------------------------ the layer
def pick_layer(layers: list[features.MapLayer], model_name: str) -> features.MapLayer:
    """Block, then layer; the choice is kept per model across reruns and pages."""
    by_path = {layer.path: layer for layer in layers}
    key = f"fm_layer:{model_name}"
    state.linked(key, "layer", by_path, features.default_layer(layers))
    current = by_path[st.session_state[key]]
    blocks = list(dict.fromkeys(layer.block for layer in layers))

    def block_changed():
        block = st.session_state["_w_fm_block"]
        in_block = [layer for layer in layers if layer.block == block]
        convs = [layer for layer in in_block if layer.kind == "conv"]
        st.session_state[key] = (convs or in_block)[0].path

    def layer_changed():
        st.session_state[key] = st.session_state["_w_fm_layer"]

    st.session_state["_w_fm_block"] = current.block
    st.session_state["_w_fm_layer"] = current.path
    left, right = st.columns([1, 2])
    left.selectbox("Block", blocks, key="_w_fm_block", on_change=block_changed,
                   help="Layers grouped by block: a block ends where the maps shrink "
                        "(pooling or a strided convolution).")
    in_block = [layer.path for layer in layers if layer.block == current.block]
    right.selectbox("Layer", in_block, key="_w_fm_layer", on_change=layer_changed,
                    format_func=lambda p: f"{p} · {by_path[p].type} · "
                                          f"{' × '.join(map(str, by_path[p].output_shape))}",
                    help="Convolution, pooling, activation, merge and dense layers, including "
                         "those inside a nested model (shown as outer/inner).")
    return current


# ------------------------------------------------------------------------------ arithmetic
def arithmetic_section(model, maps, layer, channel, colormap, low, high, layers) -> None:
    """One number of ``channel`` of a Conv2D ``layer`` spelt out (an invitation to open one
    when ``layer`` is another kind)."""
    layer_obj = find_layer(model.keras_model, layer.path)
    if not explainable(layer_obj):
        convs = explainable_convs(model, layers)
        st.info(f"The step-by-step sum is shown for Conv2D layers; this is a {layer.type} layer. "
                "Choose a convolution layer above.", icon=":material/info:")
        if convs and st.button(f"Open the first convolution ({convs[0]})", key="fm_go_conv"):
            st.session_state[f"fm_layer:{model.name}"] = convs[0]
            st.rerun()
        return
    x_in = maps[features.input_key(layer.path)]
    values = maps[layer.path][:, :, channel]
    pick, numbers = st.columns([1, 2])
    with pick:
        row, col = _position(values, layer.path, channel, colormap, float(low[channel]),
                             float(high[channel]))
    arith = conv_arithmetic(layer_obj, x_in, row, col, channel)
    with numbers:
        _position_inputs(values.shape, layer.path, channel)
        _sum_text(arith, float(values[row, col]), layer.path == first_conv(layers))
    _input_channels(model, x_in, arith, layer.path, layers)


def _position(values, path: str, channel: int, colormap: str, low: float, high: float):
    """The chosen position of the channel (its peak at first), clickable on the map."""
    positions = st.session_state.setdefault("fm_positions", {})
    if (path, channel) not in positions:
        positions[(path, channel)] = peak(values)
    row, col = positions[(path, channel)]
    st.session_state["_w_fm_row"], st.session_state["_w_fm_col"] = row, col

    def clicked():
        points = st.session_state["fm_position_pick"].selection.points
        if points:
            r, c = points[0]["customdata"]
            st.session_state.setdefault("fm_positions", {})[(path, channel)] = (int(r), int(c))

    presenter.chart(ff.position_figure(values, row, col, colormap, low, high),
                    key="fm_position_pick", on_select=clicked, selection_mode="points",
                    width="content", config={"displayModeBar": False})
    return row, col


def _position_inputs(shape, path: str, channel: int) -> None:
    def typed():
        st.session_state["fm_positions"][(path, channel)] = (int(st.session_state["_w_fm_row"]),
                                                             int(st.session_state["_w_fm_col"]))

    a, b = st.columns(2)
    a.number_input("Row", 0, shape[0] - 1, step=1, key="_w_fm_row", on_change=typed)
    b.number_input("Column", 0, shape[1] - 1, step=1, key="_w_fm_col", on_change=typed)


def _sum_text(arith: ConvArithmetic, shown: float, first: bool) -> None:
    kh, kw, c_in = arith.patch.shape
    source = "the preprocessed image" if first else "the output of the layer before"
    st.markdown(
        f"The value at row **{arith.row}**, column **{arith.col}** of channel **{arith.channel}** "
        f"comes from a **{kh}×{kw}×{c_in}** window of this layer's input ({source}): multiply "
        f"each of its {kh * kw * c_in:,} numbers by the matching filter weight, add everything "
        "up, add the bias, apply the activation.")
    st.markdown(
        f"- sum of the {kh * kw * c_in:,} products: `{arith.total:.6g}`\n"
        f"- plus the bias `{arith.bias:.6g}` gives `{arith.pre_activation:.6g}`\n"
        f"- {arith.activation}(`{arith.pre_activation:.6g}`) = **`{arith.value:.6g}`**")
    if matches_map(arith, shown):
        st.success(f"The map shows `{shown:.6g}` here: the same number (difference "
                   f"{abs(arith.value - shown):.1e}, float rounding).", icon=":material/check:")
    else:
        st.error(f"The map shows `{shown:.6g}`, the sum gives `{arith.value:.6g}`: they "
                 "differ, which should not happen. Please report it.", icon=":material/error:")
    if not arith.inside.all():
        st.caption("Part of the window hangs over the border: those inputs are the zero "
                   "padding ('pad' in the cells).")


def _input_channels(model, x_in, arith: ConvArithmetic, path: str, layers) -> None:
    """One input channel's window, weights and products; every channel's share of the sum."""
    c_in = arith.patch.shape[2]
    names = input_channel_names(model, path, layers, c_in)
    input_channel = st.selectbox(
        "Input channel to look at", np.argsort(-np.abs(arith.channel_sums), kind="stable").tolist(),
        key=f"fm_in_ch:{path}:{c_in}",
        format_func=lambda c: f"{names[c]} (adds {arith.channel_sums[c]:+.4g})",
        help="Each input channel has its own k×k slice of the filter; listed by how much it "
             "adds to the sum.")
    left, right = st.columns([1, 2])
    left.plotly_chart(ff.window_figure(x_in, arith, input_channel,
                                       f"Input channel {input_channel} and the window"),
                      key="fm_window")
    right.plotly_chart(ff.arithmetic_figure(arith, input_channel), key="fm_arith")
    if c_in > 1:
        presenter.chart(ff.contributions_figure(arith, input_channel), key="fm_contrib")
