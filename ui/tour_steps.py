"""The Tour's seven steps: each draws its explanation, pictures and numbers for the model and
image chosen in the sidebar (``SHOW[step](model, image_id, image)``).

Everything is computed now by the engine (``features``, ``conv_arithmetic``, ``saliency``,
``actmax``, ``training.quick``); ``engine.tour`` chooses what to show and ``engine.tour_text``
words the numbers.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from engine import actmax, features
from engine.actmax.jobs import layer_work
from engine.conv_arithmetic import conv_arithmetic
from engine.data.shapes import CLASS_NAMES as SHAPES
from engine.errors import CNNExplorerError
from engine.jobs import CANCELLED, FAILED
from engine.models import predict
from engine.models.demo import TrainingConfig as DemoTraining
from engine.models.layers import find_layer
from engine.saliency import explain
from engine.tour import busiest_window, first_conv, strongest_position, tour_layers
from engine.tour_text import (activation_rule, channel_colours, channel_sums_text, fit_points,
                              fit_summary, guess_captions, layer_caption, preprocessing_words,
                              window_box)
from engine.training.quick import QuickFitConfig, demo_data, quick_fit_work
from ui import feature_figures as ff
from ui import presenter
from ui import tour_figures
from ui.figures import top_k_bars
from ui.filters_figures import example_with_box, fit_to_side
from ui.jobs import again, follow, job_for, job_queue, session_id
from ui.paths import cache_dir
from ui.saliency_figures import overlay
from ui.text import md_escape

STEPS = ["An image is numbers", "One convolution", "Feature maps: what the layers see",
         "The prediction", "Where it looks", "What its filters like", "How it learns"]
CROP = 8  # pixels per side of the zoomed crop
N_MAPS = 8  # feature maps shown per layer
N_FILTERS = 6  # filters drawn by activation maximisation
ACTMAX_STEPS = 48  # few steps: seconds on a CPU, and the pattern already shows
ACTMAX_SIDE = 96  # pixels at most, for the same reason
FIT = QuickFitConfig()


# ------------------------------------------------------------------------------ cached work
@st.cache_data(show_spinner=False, max_entries=16)
def _layers(_model, model_key: str) -> list[features.MapLayer]:
    return features.map_layers(_model)


@st.cache_data(show_spinner="Running your image through the network...", max_entries=32)
def _maps(_model, model_key: str, image_id: str, _image: np.ndarray, layers: tuple,
          inputs_of: tuple = ()) -> dict[str, np.ndarray]:
    maps = features.feature_maps(_model, _image, list(layers), inputs_of=list(inputs_of))
    return {key: value[0] for key, value in maps.items()}


@st.cache_data(show_spinner="Predicting...", max_entries=32)
def _top(_model, model_key: str, image_id: str, _image: np.ndarray):
    return predict(_model, [_image], top=5)[0]


@st.cache_data(show_spinner="Tracing the answer back to the image (Grad-CAM)...",
               max_entries=32)
def _gradcam(_model, model_key: str, image_id: str, _image: np.ndarray) -> np.ndarray:
    return explain(_model, [_image], "gradcam")[0]


@st.cache_data(show_spinner=False, max_entries=2)
def _unseen_shapes(n: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = demo_data(FIT, validation=True)
    return images[:n], labels[:n]


def _chart(fig, key: str) -> None:
    st.plotly_chart(presenter.figure(fig), key=key, config={"displayModeBar": False})


def _explained(message: str) -> None:
    """A step this model cannot show: say why, in plain words."""
    st.info(message, icon=":material/info:")


def _seen(model, image) -> np.ndarray:
    """The image as the network takes it: resized, still 0-255."""
    return model.prepare(image)[0].astype(np.uint8)


# ------------------------------------------------------------------------------ the steps
def _numbers(model, image_id, image) -> None:
    seen = _seen(model, image)
    h, w = seen.shape[:2]
    n = min(CROP, h, w)
    top, left = busiest_window(seen, n)
    st.markdown(
        f"To a computer a picture is a grid of tiny squares, **pixels**. Each pixel is three "
        f"numbers: how much **red**, **green** and **blue** light it has, from 0 (none) to 255 "
        f"(full). This network looks at pictures of {h}×{w} pixels, so your image is "
        f"**{h * w * 3:,} numbers** to it, and nothing else.")
    if image.shape[:2] != (h, w):
        st.caption(f"Your image is {image.shape[1]}×{image.shape[0]} pixels; it was resized "
                   f"to the {w}×{h} the network takes.")
    a, b = st.columns([2, 3])
    a.image(example_with_box(seen, (left, top, left + n, top + n), side=480), width="stretch",
            caption=f"What the network sees; the pink frame marks {n}×{n} pixels")
    with b:
        _chart(tour_figures.pixels_figure(seen[top:top + n, left:left + n], top, left),
               "tour_pixels")
    st.caption("The frame sits where the numbers change most: an edge. Hover a square for its "
               "row and column.")


def _convolution(model, image_id, image) -> None:
    path = first_conv(model, _layers(model, model.key))
    if path is None:
        _explained("This model does not start with a plain convolution layer (a layer that "
                   "slides small grids of numbers over the image), so this step has nothing to "
                   "spell out. Pick the demo model or a VGG or ResNet model in the sidebar.")
        return
    maps = _maps(model, model.key, image_id, image, (path,), (path,))
    out = maps[path]
    layer = find_layer(model.keras_model, path)
    kh, kw = layer.kernel_size
    st.markdown(
        f"The first layer slides small grids of numbers, called **kernels** (or filters), "
        f"over the image. This one has **{out.shape[-1]} kernels** of {kh}×{kw} numbers per "
        "colour. At every position, each pixel value under the kernel is multiplied by the "
        "kernel's number at the same place, and everything is added up, plus one extra "
        "number, the **bias**. A negative total becomes 0 (this rule is called **ReLU**). "
        f"Before that, the network {preprocessing_words(model.preprocessing)}.")
    channel, row, col = _window(out, max(kh, kw) // 2, f"tour_conv:{model.key}:{image_id}")
    arith = conv_arithmetic(layer, maps[features.input_key(path)], row, col, channel)
    colours = channel_colours(arith.patch.shape[-1], model.preprocessing)
    seen = _seen(model, image)
    left, right = st.columns([1, 3])
    left.image(example_with_box(seen, window_box(arith, *seen.shape[:2]), side=360),
               width="stretch", caption=f"The window at row {row}, column {col}")
    with right:
        _chart(tour_figures.convolution_figure(arith, colours), "tour_conv")
    st.markdown(f"**Kernel {channel}, row {row}, column {col}:** "
                f"{channel_sums_text(arith, colours)} + bias {arith.bias:.4f} = "
                f"**{arith.pre_activation:.4f}**; {activation_rule(arith)}.")
    m1, m2 = st.columns([1, 3])
    m1.metric("Output at this position", f"{arith.value:.4f}",
              help="The number this kernel writes at this position of its feature map.")
    m2.caption(f"The network itself computed {float(out[row, col, channel]):.4f} here: the "
               "same number, up to rounding.")
    _kernel_map(maps, path, channel, row, col)


def _window(out: np.ndarray, margin: int, key: str) -> tuple[int, int, int]:
    """The kernel, row and column pickers; they start at the kernel that responds most to the
    image, where it responds most (a new kernel jumps to its own strongest position).

    Args:
        out: (h, w, kernels) the layer's maps.
        margin: positions along the border not to start at (the window fully inside).
        key: session key of this model and image's choice.
    """
    if key not in st.session_state:
        channel = int(features.overview_channels(out, 1)[0])
        st.session_state[key] = (channel, *strongest_position(out[:, :, channel], margin))
    channel, row, col = st.session_state[key]
    h, w, n_kernels = out.shape

    def changed():
        k = int(st.session_state["_w_tour_kernel"])
        if k != st.session_state[key][0]:  # a new kernel: go to where it responds most
            st.session_state[key] = (k, *strongest_position(out[:, :, k], margin))
        else:
            st.session_state[key] = (k, int(st.session_state["_w_tour_row"]),
                                     int(st.session_state["_w_tour_col"]))

    st.session_state["_w_tour_kernel"] = channel
    st.session_state["_w_tour_row"], st.session_state["_w_tour_col"] = row, col
    a, b, c = st.columns(3)
    a.selectbox("Kernel", list(range(n_kernels)), key="_w_tour_kernel", on_change=changed,
                format_func=lambda k: f"kernel {k}",
                help="Starts with the kernel that responds most to your image.")
    b.slider("Window position: row", 0, h - 1, key="_w_tour_row", on_change=changed)
    c.slider("Window position: column", 0, w - 1, key="_w_tour_col", on_change=changed)
    return channel, row, col


def _kernel_map(maps, path: str, channel: int, row: int, col: int) -> None:
    """The chosen kernel's whole feature map, the window's position marked."""
    out = maps[path]
    low, high = features.color_limits(maps, path, "local")
    left, right = st.columns(2)
    with left:
        _chart(ff.channel_heatmap(out[:, :, channel], float(low[channel]), float(high[channel]),
                                  "viridis", f"Kernel {channel} at every position: its feature "
                                  "map", mark=(row, col), height=380), "tour_conv_map")
    right.markdown(
        "Doing this at **every** position gives a new picture, a **feature map**: bright where "
        "the kernel's pattern is in the image, dark where it is not. Each kernel makes its own "
        f"map, so this layer turns your image into {out.shape[-1]} maps. Try another kernel, or "
        "move the window.")


def _feature_maps(model, image_id, image) -> None:
    layers = _layers(model, model.key)
    chosen = tour_layers(layers)
    if chosen is None:
        _explained("This model has no layer that makes feature maps (pictures), so there is "
                   "nothing to show here.")
        return
    maps = _maps(model, model.key, image_id, image, (chosen.early, chosen.late))
    spatial = [m.path for m in layers if m.is_spatial]
    st.markdown(
        "A CNN is a stack of such layers, each working on the maps of the one before. **Early** "
        "layers react to simple things such as edges and colours, on big maps. **Late** layers "
        "combine those into bigger, more complex patterns (corners, curves, parts of objects), "
        "on small maps: each of their squares stands for a large part of the image.")
    columns = st.columns([1, 2, 2])
    columns[0].image(fit_to_side(_seen(model, image), 320), width="stretch",
                     caption="Your image")
    for column, path, when in ((columns[1], chosen.early, "Early"),
                               (columns[2], chosen.late, "Late")):
        values = maps[path]
        picks = features.overview_channels(values, N_MAPS)
        low, high = features.color_limits(maps, path, "local")
        grid = ff.channel_grid(values, low, high, "viridis", order=picks, width=560)
        column.image(grid.image, width="stretch",
                     caption=layer_caption(when, spatial.index(path) + 1, len(spatial),
                                           values.shape, len(picks)))
    st.caption("Bright = strong response, dark = none; the number above a map is its kernel. "
               "The Feature maps page shows every layer and every map.")


def _prediction(model, image_id, image) -> None:
    top = _top(model, model.key, image_id, image)
    name, p = top[0]
    st.markdown(
        f"The last layer turns everything into one score per class the network knows "
        f"(**{model.n_classes:,} classes**), written as **probabilities**: how sure it is, "
        f"adding up to 100 % over all classes. For your image it says "
        f"**{md_escape(name)}**, {p:.0%} sure.")
    a, b = st.columns([1, 2])
    a.image(image, width="stretch", caption="Your image")
    with b:
        _chart(top_k_bars(top), "tour_top")
    if model.name == "demo":
        st.caption("The demo model only knows six shapes (" + ", ".join(SHAPES) + "), so it "
                   "calls any photo one of them. Pick an ImageNet model for photos.")


def _where(model, image_id, image) -> None:
    top = _top(model, model.key, image_id, image)
    try:
        cam = _gradcam(model, model.key, image_id, image)
    except CNNExplorerError as exc:
        _explained("This step needs a convolution layer to trace the answer back to the "
                   f"image, and this model has none it can use: {exc}")
        return
    st.markdown(
        f"Which parts of the image made the network say **{md_escape(top[0][0])}**? "
        "**Grad-CAM** (a method that follows the answer back through the last convolution "
        "layer) colours them: **red** mattered most, **blue** hardly at all.")
    a, b = st.columns(2)
    a.image(image, width="stretch", caption="Your image")
    b.image(overlay(image, cam, 0.5), width="stretch",
            caption=f"Where it looked to say '{top[0][0]}'")
    if not cam.any():
        st.caption("The map is blank: the method found no evidence for this class.")
    st.caption("A map that lights up the object is reassuring; one that lights up the "
               "background shows the network may have learned a shortcut. The Saliency page "
               "compares nine such methods.")


def _filters(model, image_id, image) -> None:
    chosen = tour_layers(_layers(model, model.key))
    if chosen is None or chosen.filters is None:
        _explained("This model has no convolution layer, so it has no filters to draw.")
        return
    path = chosen.filters
    maps = _maps(model, model.key, image_id, image, (path,))
    picks = [int(k) for k in features.overview_channels(maps[path], N_FILTERS)]
    st.markdown(
        "Each kernel of a layer is a **pattern detector**. To see what one looks for, we start "
        "from a grey picture and change it step by step so that the kernel responds more and "
        "more (this is called **activation maximisation**). The result is the pattern it "
        f"likes best. Here: the {len(picks)} kernels of layer **{md_escape(path)}** (halfway "
        "through the network) that respond most to your image, and below each, where it "
        "found its pattern in your image.")
    side = min(actmax.default_size(model)[0], ACTMAX_SIDE)
    # float32: for a few filters and steps bfloat16 saves little, and float32 runs the
    # model's own layers rather than bfloat16 copies of them.
    request = actmax.plan(model, path, picks, steps=ACTMAX_STEPS, size=side, precision="float32")
    result = _drawn(request, f"Drawing what {len(picks)} kernels of {path} like", len(picks))
    if result is None or not len(result):
        return
    seen = _seen(model, image)
    low, high = features.color_limits(maps, path, "local")
    for column, unit, picture in zip(st.columns(len(result)), result.units, result.images):
        unit = int(unit)
        column.image(fit_to_side(picture, 240), width="stretch", caption=f"kernel {unit} likes",
                     output_format="PNG")
        column.image(ff.overlay(seen, maps[path][:, :, unit], float(low[unit]),
                                float(high[unit]), "viridis", 0.6), width="stretch",
                     caption="where it found it in your image")
    st.caption(f"{ACTMAX_STEPS} small steps per picture, at {side}×{side} pixels. The Filters "
               "page draws every kernel of any layer, with more steps.")


def _drawn(request, title: str, wanted: int):
    """The patterns of ``request`` from the disk cache, drawing the missing ones through the
    job queue; None while they are being drawn (or this visitor has too many jobs)."""
    folder = cache_dir("actmax")
    result = actmax.cached(request, folder)
    if len(result) >= wanted:
        return result
    job = job_for(request.key, layer_work(request, folder), title=title)
    if job is None:
        return None  # this visitor has too many computations going: job_for said so
    if job.alive:
        follow(job, "tour_am")
        return None
    if job.status in (FAILED, CANCELLED):
        if job.status == FAILED:
            st.error(md_escape(job.error or "Drawing the patterns failed."),
                     icon=":material/error:")
        st.button("Draw them again", key="tour_am_again", icon=":material/replay:",
                  on_click=again, args=(request.key, layer_work(request, folder)),
                  kwargs={"title": title})
    return actmax.cached(request, folder)


def _learning(model=None, image_id=None, image=None) -> None:
    """Model and image are not used: every visitor trains the same small network."""
    st.markdown(
        "A network is not programmed; it **learns by practice**. It guesses the class of a few "
        "example pictures (a **batch**), measures how wrong it was (the **loss**), then nudges "
        "each of its numbers (the **weights**) a little so that the guess would have been "
        "less wrong. One pass over all practice pictures is an **epoch**.")
    st.markdown(
        f"Here a brand-new network with random weights practises on **{FIT.n_train} "
        f"silhouettes** of the six demo shapes for **{FIT.epochs} epochs**, and after each "
        f"epoch we test it on {FIT.n_validation} shapes it has never seen. (The demo model "
        f"practised on {DemoTraining.train_images:,} full pictures for minutes; silhouettes "
        "are simpler, so learning "
        "shows within seconds. This step trains the same small network whatever model the "
        "sidebar shows.)")
    key = st.session_state.get("tour_fit_key")
    job = job_queue().get(key) if key is not None else None
    if job is None:
        samples, labels = _unseen_shapes(6)
        for column, picture, label in zip(st.columns(6), samples, labels):
            column.image(fit_to_side(picture, 96), caption=SHAPES[int(label)], width="stretch")
        st.caption("Six of the unseen test shapes.")
        st.button("Start training", type="primary", icon=":material/play_arrow:",
                  key="tour_fit_start", on_click=_start_fit)
        return
    if job.alive:
        follow(job, "tour_fit", _fit_progress)
        return
    if job.status == FAILED:
        st.error(md_escape(job.error or "Training failed."), icon=":material/error:")
    elif job.result is not None:
        _fit_result(job)
    st.button("Train a new network", icon=":material/replay:", key="tour_fit_again",
              on_click=_start_fit)


def _start_fit() -> None:
    attempt = st.session_state.get("tour_fit_attempt", 0) + 1
    st.session_state["tour_fit_attempt"] = attempt
    key = ("tour_fit", session_id(), attempt)
    if job_for(key, quick_fit_work(FIT), title="Training a small network") is not None:
        st.session_state["tour_fit_key"] = key


def _fit_progress(job) -> None:
    points, validation = fit_points(job.parts())
    _chart(tour_figures.learning_figure(points, validation, FIT.total_steps, FIT.steps_per_epoch),
           "tour_fit_live")
    if validation:
        st.caption(f"Before training it got {validation[0].accuracy:.0%} of the unseen shapes "
                   "right: guessing, 1 in 6. Cancel stops it and keeps what it learned.")


def _fit_result(job) -> None:
    result = job.result
    _chart(tour_figures.learning_figure(result.points, result.validation, FIT.total_steps,
                                        FIT.steps_per_epoch), "tour_fit_done")
    s = fit_summary(result, FIT, (job.ended or 0) - (job.started or 0))
    st.markdown(f"Before training: **{s.before:.0%}** of the unseen shapes right (guessing). "
                f"After {s.epochs} epoch{'s' if s.epochs != 1 else ''}: **{s.after:.0%}** "
                f"({s.how}). Its loss on them went from {s.loss_before:.2f} to "
                f"{s.loss_after:.2f}.")
    samples, labels = _unseen_shapes(6)
    captions = guess_captions(result.predict(samples), labels, SHAPES)
    for column, picture, caption in zip(st.columns(6), samples, captions):
        column.image(fit_to_side(picture, 96), width="stretch", caption=caption)
    st.caption("More practice (more pictures, more epochs) makes it better: the Train page "
               "trains real networks on your own pictures.")


#: what each step shows, in the order of STEPS
SHOW = [_numbers, _convolution, _feature_maps, _prediction, _where, _filters, _learning]
