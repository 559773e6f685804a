"""Feature maps: what every layer computes for the chosen image, from one forward pass.

The maps of every layer are computed once per (model, image) and cached; choosing another
layer, channel, colour scale or tab only reads them again.
"""

import io

import numpy as np
import streamlit as st

from engine import features
from engine.feature_views import every_layer_maps, layers_overview
from ui import feature_figures as ff
from ui import presenter, state
from ui.errors import shown_errors
from ui.feature_sections import arithmetic_section, pick_layer
from ui.page import page
from ui.text import md_escape
from ui.widgets import image_choice

EXPLAINER = """
Each layer of a CNN turns its input into a stack of **feature maps**, one per *channel*. A map
is a small picture of where in the image that channel found "its" pattern: bright means a strong
response, dark means none. The first layers react to edges and colours; deeper layers to
textures, parts and whole objects, on smaller and smaller maps.

- **The grid** shows every channel of the chosen layer for the chosen image; the number above a
  tile is the channel index. Hover a tile for its numbers, click it to see it large, on top of
  the image.
- **Colour scale**: with *each map its own range*, every tile uses all colours (you see shapes,
  not strength); with *one range per layer* or *for all layers*, the same colour means the same
  number, so you can compare how strongly channels or layers respond.
- A **dead** channel (red cross) is zero everywhere on this image: its ReLU never fired.
- **How was this number computed?** opens one number of a convolution layer: the input patch
  under the filter, the filter's weights, their products, the sum plus the bias, and the
  activation, which gives exactly the number in the map.
"""

SCALES = {"local": "Each map its own range", "module": "One range per layer",
          "global": "One range for all layers"}
SORTS = {"index": "Channel index", "mean": "Mean activation (largest first)"}
TABS = ["How was this number computed?", "All layers", "Compare two images",
        "First-layer filters", "Channel statistics"]


# ------------------------------------------------------------------------------ cached work
@st.cache_data(show_spinner=False, max_entries=32)
def _layers(_model, model_key: str) -> list[features.MapLayer]:
    return features.map_layers(_model)


@st.cache_data(show_spinner="Computing every layer's maps in one forward pass...",
               max_entries=8, ttl=3600)
def _maps(_model, model_key: str, image_id: str, _image: np.ndarray) -> dict[str, np.ndarray]:
    """``every_layer_maps``: the only place this page runs the model."""
    return every_layer_maps(_model, _image)


# ------------------------------------------------------------------------------ pickers
def _select_channel_from_grid():
    points = st.session_state["fm_grid"].selection.points
    if points:
        st.session_state["fm_channel"] = int(points[0]["customdata"])


# ------------------------------------------------------------------------------ sections
def _grid_section(maps, layer, stats, order, low, high, colormap, channel):
    grid = ff.channel_grid(maps[layer.path], low, high, colormap, order, stats.dead)
    presenter.chart(ff.grid_figure(grid, stats, selected=channel), key="fm_grid",
                    on_select=_select_channel_from_grid, selection_mode="points",
                    width="content", config={"displayModeBar": False})
    th, tw = grid.tile
    h, w = layer.output_shape[:2]
    note = "downsampled" if th < h else ("enlarged" if th > h else "at full size")
    st.caption(f"{layer.channels} channels, {h}×{w} each, tiles {note} to {th}×{tw} px. Hover "
               "a tile for its numbers; click it to see it large below.")
    return grid


def _channel_section(model, image, maps, layer, stats, low, high, colormap, channel):
    values = maps[layer.path][:, :, channel]
    st.subheader(f"Channel {channel}", anchor=False)
    dead = " · **dead** on this image (zero everywhere)" if stats.dead[channel] else ""
    st.markdown(f"mean {stats.mean[channel]:.4g} · max {stats.max[channel]:.4g} · "
                f"zeros {stats.zero_fraction[channel]:.0%}{dead}")
    left, right = st.columns(2)
    with left:
        opacity = st.slider("Opacity of the map over the image", 0.0, 1.0, step=0.05,
                            **state.durable("fm_opacity", 0.6))
        seen = model.prepare(image)[0].astype(np.uint8)
        picture = ff.overlay(seen, values, float(low[channel]), float(high[channel]), colormap,
                             opacity)
        st.image(ff.magnify(picture, 448), width="stretch",
                 caption=f"Channel {channel} enlarged onto the image the network saw "
                         f"({seen.shape[1]}×{seen.shape[0]})")
    with right:
        presenter.chart(ff.channel_heatmap(values, float(low[channel]), float(high[channel]),
                                           colormap, f"Full resolution: {values.shape[0]}×"
                                                     f"{values.shape[1]} values"),
                        key="fm_channel_heatmap")


def _strip_section(model, image, maps, layers, scale, colormap):
    overview = layers_overview(model, image, maps, layers, scale, ff.is_diverging(colormap))
    strip = ff.layers_strip(overview.columns, colormap)
    st.image(strip, width="stretch")
    st.caption(overview.caption)
    st.download_button("Download the overview (PNG)", ff.png_bytes(strip),
                       f"{model.name}_all_layers.png", "image/png", icon=":material/download:",
                       key="fm_strip_png")


def _compare_section(model, model_key, selection, image_id, maps, layer, order, scale,
                     colormap, channel):
    others = [i for i, _, _ in selection.images if i != image_id]
    if not others:
        st.info("Choose a second image in the sidebar to compare the two on this layer.",
                icon=":material/info:")
        return
    labels = {i: label for i, label, _ in selection.images}
    images = {i: image for i, _, image in selection.images}
    if st.session_state.get("fm_compare") not in others:
        st.session_state["fm_compare"] = others[0]
    other = st.selectbox("Compare with", others, format_func=lambda i: labels[i],
                         **state.durable("fm_compare", others[0]))
    other_maps = None
    with shown_errors("Computing the second image's maps failed: "):
        other_maps = _maps(model, model_key, other, images[other])
    if other_maps is None:
        return
    symmetric = ff.is_diverging(colormap)
    low, high = features.color_limits([maps, other_maps], layer.path, scale, symmetric)
    st.caption("Both images use the same channel order and one colour range per channel "
               "computed over both, so the same colour means the same number on both sides.")
    for col, (iid, m) in zip(st.columns(2), ((image_id, maps), (other, other_maps))):
        with col:
            st.markdown(f"**{md_escape(labels[iid])}**")
            stats = features.channel_stats(m[layer.path])
            if layer.is_spatial:
                grid = ff.channel_grid(m[layer.path], low, high, colormap, order, stats.dead,
                                       width=700)
                st.image(grid.image, width="stretch")
                seen = model.prepare(images[iid])[0].astype(np.uint8)
                picture = ff.overlay(seen, m[layer.path][:, :, channel], float(low[channel]),
                                     float(high[channel]), colormap, 0.6)
                st.image(ff.magnify(picture, 320), caption=f"Channel {channel}", width=320)
            else:
                presenter.chart(ff.units_figure(m[layer.path]), key=f"fm_cmp_units_{iid}")
            st.caption(f"{int(stats.dead.sum())} dead of {len(stats.dead)} · mean of the layer "
                       f"{float(m[layer.path].mean()):.4g}")


def _filters_section(model):
    filters = None
    with shown_errors("Showing the first-layer filters failed: "):
        filters = features.first_layer_filters(model)
    if filters is None:
        return
    n, kh, kw, _ = filters.images.shape
    st.image(ff.labelled_filters_image(filters.images), width="content")
    st.caption(f"The {n} filters of {filters.layer}, each {kh}×{kw} weights per colour shown as "
               f"a tiny RGB picture: grey is a weight of 0, bright colours push that colour up, "
               f"dark ones down (±{filters.scale:.3g} is full contrast). Trained networks show "
               "edge and colour detectors here; an untrained one shows noise.")


def _stats_section(stats, order):
    presenter.chart(ff.stats_figure(stats, order), key="fm_stats")
    st.dataframe({"channel": order, "mean": stats.mean[order], "max": stats.max[order],
                  "fraction of zeros": stats.zero_fraction[order], "dead": stats.dead[order]},
                 hide_index=True, height=260, width="stretch")


def _npz(arrays: dict[str, np.ndarray]):
    def build() -> bytes:
        out = io.BytesIO()
        np.savez(out, **arrays)
        return out.getvalue()
    return build


# ------------------------------------------------------------------------------ the page
selection = page("Feature maps", EXPLAINER, icon=":material/grid_view:")
model = selection.model
if model is None or not selection.images:
    st.stop()
model_key = model.key
layers = None
with shown_errors("Reading the model's layers failed: "):
    layers = _layers(model, model_key)
    if not layers:
        st.info("This model has no convolution, pooling, activation or dense layer to show.")
if not layers:
    st.stop()

images = {i: image for i, _, image in selection.images}
top = st.columns([1, 3])
image_id = image_choice(selection, "fm_image", linked=True, container=top[0])
with top[1]:
    layer = pick_layer(layers, model.name)

maps = None
with shown_errors("Computing the feature maps failed: "):
    maps = _maps(model, model_key, image_id, images[image_id])
if maps is None:
    st.stop()

with presenter.technical("fm_display"):
    options = st.columns(3)
    colormap = options[0].selectbox("Colormap", list(ff.COLORMAPS),
                                    **state.durable("fm_cmap", "viridis"))
    scale = options[1].selectbox("Colour scale", list(SCALES), format_func=SCALES.get,
                                 help="CNN Explainer's local / module / global scales: compare "
                                      "shapes (each map) or magnitudes (per layer, all layers).",
                                 **state.durable("fm_scale", "local"))
    sort = options[2].selectbox("Sort channels by", list(SORTS), format_func=SORTS.get,
                                **state.durable("fm_sort", "index"))

values = maps[layer.path]
stats = features.channel_stats(values)
order = stats.order(sort)
low, high = features.color_limits(maps, layer.path, scale, ff.is_diverging(colormap))
rf = f" · receptive field {layer.rf_size}×{layer.rf_size} px" if layer.rf_size else ""
st.markdown(f"**{md_escape(layer.path)}** · {layer.type} · output "
            f"{' × '.join(map(str, layer.output_shape))}{rf} · **{int(stats.dead.sum())}** of "
            f"{len(stats.dead)} {'channels' if layer.is_spatial else 'units'} dead on this image")

if layer.is_spatial:
    # An unknown or out-of-range channel becomes the most active one.
    state.linked("fm_channel", "channel", range(layer.channels), int(np.argmax(stats.mean)))
    grid = _grid_section(maps, layer, stats, order, low, high, colormap,
                         st.session_state.get("fm_channel", 0))
    downloads = st.columns(3)
    downloads.pop(0).download_button("Grid (PNG)", ff.png_bytes(grid.image),
                                     f"{model.name}_{layer.path.replace('/', '_')}.png",
                                     "image/png", icon=":material/download:", key="fm_grid_png")
    channel = int(st.number_input("Channel", 0, layer.channels - 1, step=1,
                                  help="Or click a tile of the grid.",
                                  **state.durable("fm_channel", 0)))
    _channel_section(model, images[image_id], maps, layer, stats, low, high, colormap, channel)
else:
    names = model.class_names if layer.channels == model.n_classes else None
    presenter.chart(ff.units_figure(values, names, f"{layer.channels} units of {layer.path}"),
                    key="fm_units")
    downloads = st.columns(3)[:2]
    channel = 0
    state.unlinked("channel")
downloads[0].download_button("This layer (.npz)", _npz({layer.path: values}),
                             f"{model.name}_{layer.path.replace('/', '_')}.npz",
                             "application/octet-stream", icon=":material/download:",
                             key="fm_layer_npz")
downloads[1].download_button(
    "Every layer (.npz)",
    _npz({k: v for k, v in maps.items() if not k.endswith(features.INPUT_SUFFIX)}),
    f"{model.name}_all_layers.npz", "application/octet-stream", icon=":material/download:",
    key="fm_all_npz", help="Raw activations of every layer for this image, keyed by layer path.")

# Only the open tab is drawn: the comparison computes a second image only when asked for.
tabs = st.tabs(TABS, key="fm_tab", on_change="rerun")
with tabs[0]:
    if tabs[0].open:
        if layer.is_spatial:
            with shown_errors("The arithmetic view failed: "):
                arithmetic_section(model, maps, layer, channel, colormap, low, high, layers)
        else:
            st.info("Choose a convolution layer to see how one of its numbers is computed.")
with tabs[1]:
    if tabs[1].open:
        with shown_errors("Drawing the overview failed: "):
            _strip_section(model, images[image_id], maps, layers, scale, colormap)
with tabs[2]:
    if tabs[2].open:
        with shown_errors("Comparing failed: "):
            _compare_section(model, model_key, selection, image_id, maps, layer, order, scale,
                             colormap, channel)
with tabs[3]:
    if tabs[3].open:
        _filters_section(model)
with tabs[4]:
    if tabs[4].open:
        _stats_section(stats, order)
