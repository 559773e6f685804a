"""Tour: seven short steps through what a CNN does to the visitor's image, in plain words.

Every picture and number is computed now, by the same engine as the other pages, on the image
and model chosen in the sidebar; nothing is a stored picture. The step lives under the durable
key ``tour_step``, so it holds across reruns and page switches.
"""

import numpy as np
import streamlit as st

from engine import actmax, features
from engine.actmax.jobs import layer_work
from engine.conv_arithmetic import conv_arithmetic
from engine.data.shapes import CLASS_NAMES as SHAPES
from engine.errors import CNNExplorerError
from engine.jobs import CANCELLED, FAILED
from engine.models import predict
from engine.models.layers import find_layer
from engine.saliency import explain
from engine.tour import busiest_window, first_conv, strongest_position, tour_layers
from engine.training.quick import BatchPoint, EpochPoint, QuickFitConfig, demo_data, \
    quick_fit_work
from ui import feature_figures as ff
from ui import presenter
from ui import state
from ui import tour_figures
from ui.errors import shown_errors
from ui.figures import top_k_bars
from ui.filters_figures import example_with_box, fit_to_side
from ui.jobs import again, follow, job_for, job_queue, session_id
from ui.page import page
from ui.paths import cache_dir
from ui.saliency_figures import overlay
from ui.sidebar import PAGES
from ui.text import md_escape

EXPLAINER = """
Seven short steps, each computed now on **your** image by the network chosen in the sidebar:
how the picture becomes numbers, how one filter slides over it, what the layers see, what the
network answers, where it looks, what its filters like, and how a network learns at all.
Use **Next** and **Previous**; change the image or the model in the sidebar at any time and the
step is computed again. For a projector, switch on **Presenter mode** in the sidebar.
"""

STEPS = ["An image is numbers", "One convolution", "Feature maps: what the layers see",
         "The prediction", "Where it looks", "What its filters like", "How it learns"]
CROP = 8  # pixels per side of the zoomed crop
N_MAPS = 8  # feature maps shown per layer
N_FILTERS = 6  # filters drawn by activation maximisation
ACTMAX_STEPS = 48  # few steps: seconds on a CPU, and the pattern already shows
ACTMAX_SIDE = 96  # pixels at most, for the same reason
FIT = QuickFitConfig()
#: what a network does to the 0-255 numbers before its first layer, in plain words
PREPROCESSING = {
    "unit": "divides every number by 255, so they run from 0 to 1",
    "tf": "rescales every number to run from -1 to 1",
    "caffe": "swaps red and blue, then subtracts the average colour of the photos it learned "
             "from",
    "torch": "rescales the numbers to 0 to 1, subtracts the average colour of the photos it "
             "learned from and divides by their spread",
    "raw": "uses the 0 to 255 numbers as they are",
}


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


# ------------------------------------------------------------------------------ navigation
def _go(delta: int) -> None:
    st.session_state["tour_step"] = int(np.clip(st.session_state["tour_step"] + delta, 0,
                                                len(STEPS) - 1))


def _navigation(where: str) -> None:
    step = st.session_state["tour_step"]
    left, middle, right = st.columns([1.4, 4, 1.4], vertical_alignment="center")
    left.button("Previous", key=f"tour_prev_{where}", icon=":material/arrow_back:",
                on_click=_go, args=(-1,), disabled=step == 0, width="stretch")
    right.button("Next", key=f"tour_next_{where}", icon=":material/arrow_forward:",
                 on_click=_go, args=(1,), disabled=step == len(STEPS) - 1, type="primary",
                 width="stretch")
    if where == "top":
        middle.progress((step + 1) / len(STEPS), text=f"Step {step + 1} of {len(STEPS)}")
        st.markdown(" · ".join(f":blue-background[**{i + 1} {name}**]" if i == step
                               else f"{i + 1} {name}" for i, name in enumerate(STEPS)))


def _chart(fig, key: str) -> None:
    st.plotly_chart(presenter.figure(fig), key=key, config={"displayModeBar": False})


def _explained(message: str) -> None:
    """A step this model cannot show: say why, in plain words."""
    st.info(message, icon=":material/info:")


# ------------------------------------------------------------------------------ the steps
def _numbers(model, image_id, image) -> None:
    seen = model.prepare(image)[0].astype(np.uint8)
    h, w = seen.shape[:2]
    n = min(CROP, h, w)
    top, left = busiest_window(seen, n)
    crop = seen[top:top + n, left:left + n]
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
        _chart(tour_figures.pixels_figure(crop, top, left), "tour_pixels")
    st.caption("The frame sits where the numbers change most: an edge. Hover a square for its "
               "row and column.")


def _convolution(model, image_id, image) -> None:
    layers = _layers(model, model.key)
    path = first_conv(model, layers)
    if path is None:
        _explained("This model does not start with a plain convolution layer (a layer that "
                   "slides small grids of numbers over the image), so this step has nothing to "
                   "spell out. Pick the demo model or a VGG or ResNet model in the sidebar.")
        return
    maps = _maps(model, model.key, image_id, image, (path,), (path,))
    x_in, out = maps[features.input_key(path)], maps[path]
    layer = find_layer(model.keras_model, path)
    kh, kw = layer.kernel_size
    st.markdown(
        f"The first layer slides small grids of numbers, called **kernels** (or filters), "
        f"over the image. This one has **{out.shape[-1]} kernels** of {kh}×{kw} numbers per "
        "colour. At every position, each pixel value under the kernel is multiplied by the "
        "kernel's number at the same place, and everything is added up, plus one extra "
        "number, the **bias**. A negative total becomes 0 (this rule is called **ReLU**). "
        f"Before that, the network {PREPROCESSING.get(model.preprocessing, 'rescales them')}.")
    margin = max(kh, kw) // 2  # first spots: the window fully inside the image
    key = f"tour_conv:{model.key}:{image_id}"
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
    arith = conv_arithmetic(layer, x_in, row, col, channel)
    c_in = arith.patch.shape[-1]
    colours = ["grey"] if c_in == 1 else (["blue", "green", "red"] if model.preprocessing ==
                                          "caffe" else ["red", "green", "blue"])
    seen = model.prepare(image)[0].astype(np.uint8)
    rows, cols = arith.input_rows, arith.input_cols
    box = (max(0, int(cols.min())), max(0, int(rows.min())),
           min(seen.shape[1], int(cols.max()) + 1), min(seen.shape[0], int(rows.max()) + 1))
    left, right = st.columns([1, 3])
    left.image(example_with_box(seen, box, side=360), width="stretch",
               caption=f"The window at row {row}, column {col}")
    with right:
        _chart(tour_figures.convolution_figure(arith, colours), "tour_conv")
    sums = " + ".join(f"{colours[i] if i < len(colours) else i} {arith.channel_sums[i]:.4f}"
                      for i in range(c_in))
    if arith.activation == "relu":
        rule = ("negative, so ReLU makes it 0" if arith.pre_activation < 0
                else "positive, so ReLU keeps it")
    elif arith.activation == "linear":
        rule = "this network applies ReLU in a separate layer after this one, so it stays"
    else:
        rule = f"then the '{arith.activation}' rule gives {arith.value:.4f}"
    st.markdown(f"**Kernel {channel}, row {row}, column {col}:** {sums} + bias "
                f"{arith.bias:.4f} = **{arith.pre_activation:.4f}**; {rule}.")
    m1, m2 = st.columns([1, 3])
    m1.metric("Output at this position", f"{arith.value:.4f}",
              help="The number this kernel writes at this position of its feature map.")
    m2.caption(f"The network itself computed {float(out[row, col, channel]):.4f} here: the "
               "same number, up to rounding.")
    low, high = features.color_limits(maps, path, "local")
    left, right = st.columns(2)
    with left:
        _chart(ff.channel_heatmap(out[:, :, channel], float(low[channel]), float(high[channel]),
                                  "viridis", f"Kernel {channel} at every position: its feature "
                                  "map", mark=(row, col), height=380), "tour_conv_map")
    right.markdown(
        "Doing this at **every** position gives a new picture, a **feature map**: bright where "
        "the kernel's pattern is in the image, dark where it is not. Each kernel makes its own "
        f"map, so this layer turns your image into {n_kernels} maps. Try another kernel, or move "
        "the window.")


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
    seen = model.prepare(image)[0].astype(np.uint8)
    columns = st.columns([1, 2, 2])
    columns[0].image(fit_to_side(seen, 320), width="stretch", caption="Your image")
    for column, path, when in ((columns[1], chosen.early, "Early"),
                               (columns[2], chosen.late, "Late")):
        values = maps[path]
        picks = features.overview_channels(values, N_MAPS)
        low, high = features.color_limits(maps, path, "local")
        grid = ff.channel_grid(values, low, high, "viridis", order=picks, width=560)
        h, w, c = values.shape
        column.image(grid.image, width="stretch",
                     caption=f"{when}: layer {spatial.index(path) + 1} of {len(spatial)}, "
                             f"{c} maps of {h}×{w}; the {len(picks)} that respond most")
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
    values = maps[path]
    picks = [int(k) for k in features.overview_channels(values, N_FILTERS)]
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
    folder = cache_dir("actmax")
    result = actmax.cached(request, folder)
    if len(result) < len(picks):
        title = f"Drawing what {len(picks)} kernels of {path} like"
        job = job_for(request.key, layer_work(request, folder), title=title)
        if job is None:
            return  # this visitor has too many computations going: job_for said so
        if job.alive:
            follow(job, "tour_am")
            return
        if job.status in (FAILED, CANCELLED):
            if job.status == FAILED:
                st.error(md_escape(job.error or "Drawing the patterns failed."),
                         icon=":material/error:")
            st.button("Draw them again", key="tour_am_again", icon=":material/replay:",
                      on_click=again, args=(request.key, layer_work(request, folder)),
                      kwargs={"title": title})
        result = actmax.cached(request, folder)
        if not len(result):
            return
    seen = model.prepare(image)[0].astype(np.uint8)
    low, high = features.color_limits(maps, path, "local")
    columns = st.columns(len(result))
    for column, unit, picture in zip(columns, result.units, result.images):
        unit = int(unit)
        column.image(fit_to_side(picture, 240), width="stretch", caption=f"kernel {unit} likes",
                     output_format="PNG")
        column.image(ff.overlay(seen, values[:, :, unit], float(low[unit]), float(high[unit]),
                                "viridis", 0.6), width="stretch",
                     caption="where it found it in your image")
    st.caption(f"{ACTMAX_STEPS} small steps per picture, at {side}×{side} pixels. The Filters "
               "page draws every kernel of any layer, with more steps.")


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
        "practised on 18,000 full pictures for minutes; silhouettes are simpler, so learning "
        "shows within seconds. This step trains the same small network whatever model the "
        "sidebar shows.)")
    key = st.session_state.get("tour_fit_key")
    job = job_queue().get(key) if key is not None else None
    if job is None:
        samples, labels = _unseen_shapes(6)
        columns = st.columns(6)
        for column, picture, label in zip(columns, samples, labels):
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


def _split(parts) -> tuple[list[BatchPoint], list[EpochPoint]]:
    return ([p for p in parts if isinstance(p, BatchPoint)],
            [p for p in parts if isinstance(p, EpochPoint)])


def _fit_progress(job) -> None:
    points, validation = _split(job.parts())
    _chart(tour_figures.learning_figure(points, validation, FIT.total_steps, FIT.steps_per_epoch),
           "tour_fit_live")
    if validation:
        st.caption(f"Before training it got {validation[0].accuracy:.0%} of the unseen shapes "
                   "right: guessing, 1 in 6. Cancel stops it and keeps what it learned.")


def _fit_result(job) -> None:
    result = job.result
    _chart(tour_figures.learning_figure(result.points, result.validation, FIT.total_steps,
                                        FIT.steps_per_epoch), "tour_fit_done")
    first, last = result.validation[0], result.validation[-1]
    seconds = (job.ended or 0) - (job.started or 0)
    how = (f"stopped after {len(result.points)} of {FIT.total_steps} batches"
           if result.stopped else f"{FIT.epochs} epochs in {seconds:.0f} s")
    st.markdown(f"Before training: **{first.accuracy:.0%}** of the unseen shapes right "
                f"(guessing). After {last.epoch} epoch{'s' if last.epoch != 1 else ''}: "
                f"**{last.accuracy:.0%}** ({how}). Its loss on them went from {first.loss:.2f} "
                f"to {last.loss:.2f}.")
    samples, labels = _unseen_shapes(6)
    guesses = result.predict(samples)
    columns = st.columns(6)
    for column, picture, label, p in zip(columns, samples, labels, guesses):
        guess = int(np.argmax(p))
        mark = "right" if guess == int(label) else f"wrong, it is a {SHAPES[int(label)]}"
        column.image(fit_to_side(picture, 96), width="stretch",
                     caption=f"says {SHAPES[guess]} ({p[guess]:.0%}): {mark}")
    st.caption("More practice (more pictures, more epochs) makes it better: the Train page "
               "trains real networks on your own pictures.")


#: what each step shows, in the order of STEPS
SHOW = [_numbers, _convolution, _feature_maps, _prediction, _where, _filters, _learning]


# ------------------------------------------------------------------------------ the page
selection = page("Tour", EXPLAINER, icon=":material/tour:")
st.session_state.setdefault("tour_step", 0)
st.session_state["tour_step"] = int(np.clip(st.session_state["tour_step"], 0, len(STEPS) - 1))
_navigation("top")
step = st.session_state["tour_step"]
st.header(f"{step + 1}. {STEPS[step]}", anchor=False)

model = selection.model
needs_image = step < len(STEPS) - 1
if needs_image and (model is None or not selection.images):
    if model is not None:
        st.info("Choose or upload an image in the sidebar: the tour works on it.",
                icon=":material/info:")
else:
    image_id = image = None
    if needs_image:
        labels = {i: label for i, label, _ in selection.images}
        images = {i: picture for i, _, picture in selection.images}
        if st.session_state.get("tour_image") not in images:
            st.session_state["tour_image"] = next(iter(images))
        if len(images) > 1:
            image_id = st.selectbox("Your image", list(images), format_func=labels.get,
                                    **state.durable("tour_image", next(iter(images))),
                                    help="The images chosen in the sidebar.")
        else:
            image_id = next(iter(images))
        image = images[image_id]
    with shown_errors(f"Step {step + 1} failed: "):
        SHOW[step](model, image_id, image)

st.divider()
_navigation("bottom")
if step == len(STEPS) - 1:
    st.page_link("pages/train.py", label="Next: the small-data lesson. Four runs side by side "
                 "show why a pretrained base wins when there are few images",
                 icon=":material/science:", query_params=state.url_params())
    st.markdown("**Where next?** Each page goes deeper into one of the steps:")
    cols = st.columns(len(PAGES) - 1)
    for col, (script, title, icon) in zip(cols, [p for p in PAGES if p[0] != "pages/tour.py"]):
        col.page_link(script, label=title, icon=icon, query_params=state.url_params())
