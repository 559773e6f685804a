"""Filters: the image each filter (or class) responds to most, real images that excite it, and
DeepDream.

A layer is computed by a job of the server's queue (``ui.jobs``) that writes every finished batch
to a disk cache; this page only starts, polls and draws it. Leaving the page does not stop the job,
and reopening a computed layer reads the cache.
"""

import functools

import numpy as np
import streamlit as st

from engine import actmax
from engine.actmax.jobs import layer_work
from engine.actmax.network import OUTPUT
from engine.actmax.top_examples import layer_responses, top_examples
from engine.actmax.views import DEFAULT_MAX_CLASSES, DREAM, VIEWS, status_line
from engine.data import list_datasets
from engine.data.sampling import sample_dataset, sample_shapes
from engine.jobs import FAILED, QUEUED
from ui import filters_figures as fig
from ui import presenter, state
from ui.errors import shown_errors
from ui.filters_sections import pick_units, settings_form
from ui.jobs import again, job_queue, status_text
from ui.page import page
from ui.paths import cache_dir, datasets_dir
from ui.text import md_escape
from ui.widgets import image_choice, linked_choice, progress_bar

EXPLAINER = """
Each filter of a convolution layer is a pattern detector. To see **what a filter looks for**, we
start from a grey image and change it, step by step, in the direction that makes the filter
respond more strongly (*activation maximisation*). The result is the picture this filter "wants
to see", drawn in the network's own vocabulary: early layers want edges and colours, deeper
layers textures, parts and whole shapes.

- **The grid** has one such picture per filter; the number above it is the filter's index.
  Filters appear as they are finished. Click a picture (or pick its number) to see it large,
  how its activation rose over the steps, and **real images that excite it most**, with the
  patch the filter sees (its *receptive field*) framed in pink.
- **Settings.** *Steps*: more steps, stronger images, longer wait. *Fourier* describes the image
  by its frequencies, which gives smoother, more natural pictures than changing *pixels*
  directly. Small random **shifts, zooms and turns** at every step keep the picture from
  exploiting one exact alignment. **Regularisers** (total variation, L2, blur) are penalties
  subtracted from the objective: they prefer smooth, moderate images.
- **What to maximise**: the filter's mean response over the whole picture (*channel*), or its
  response at the centre only (*neuron*, a single unit whose view is limited to its receptive
  field).
- **Classes** does the same for a class score (before the softmax): what "triangle" looks like
  to the model. **DeepDream** starts from one of your images instead of grey and amplifies
  whatever a layer already sees in it, at several sizes (*octaves*).

A whole layer takes a while on a CPU. It keeps computing when you switch pages, and finished
filters are kept on disk, so reopening the page is instant.
"""

EXAMPLE_IMAGES = 120  # images drawn from a data set to find top examples in
TOP_K = 6
DREAM_WIDTH = 360  # pixels on screen for the image and its dream, side by side


# ------------------------------------------------------------------------------ cached work
@st.cache_data(show_spinner="Running the images through the network...", max_entries=16)
def _responses(_model, model_key: str, layer: str, source_key: str, _images):
    return layer_responses(_model, layer, _images)


@st.cache_data(show_spinner=False, max_entries=8)
def _grid_picture(request_key: tuple, units: tuple, _images: np.ndarray, labels: tuple):
    """The grid and its PNG, drawn once per set of finished units (the page polls often)."""
    grid = fig.image_grid(_images, list(labels))
    return grid, fig.png_bytes(grid.image)


@st.cache_data(show_spinner="Drawing the example images...", max_entries=8)
def _sample(source: str, version: str, size: int) -> list[np.ndarray]:
    """``EXAMPLE_IMAGES`` images of ``"shapes"`` (``size`` pixels) or of ``"data:<folder>"``
    (``version``: the data set's key)."""
    if source == "shapes":
        return list(sample_shapes(EXAMPLE_IMAGES, size=size).images)
    dataset = next(d for d in list_datasets(datasets_dir()) if f"data:{d.folder}" == source)
    return sample_dataset(dataset, EXAMPLE_IMAGES).images


# ------------------------------------------------------------------------------ the job
def _start(request, folder) -> None:
    where = "classes" if request.layer == OUTPUT else f"filters of {request.layer}"
    again(request.key, layer_work(request, folder),
          title=f"Activation maximisation, {len(request.units)} {where}")


def _grid(request, folder, labels: list[str], noun: str, key: str, polling: bool) -> None:
    """Progress, the grid and the grid download; reruns the whole page when a tile is picked
    or the job ends (this runs as a polling fragment while the job computes)."""
    job = job_queue().get(request.key)
    if polling and (job is None or not job.alive):
        st.rerun()  # the job ended: draw the final state, stop polling
    result = actmax.cached(request, folder)
    total = len(request.units)
    fraction = job.fraction if job is not None and job.alive else len(result) / max(total, 1)
    st.progress(min(1.0, fraction), text=status_text(job) if job is not None and
                job.status == QUEUED else status_line(job, len(result), total, noun))
    if job is not None and job.status == FAILED:
        st.error(md_escape(job.error or "The computation failed."), icon=":material/error:")
    if not len(result):
        return
    units = [int(u) for u in result.units]
    grid, png = _grid_picture(request.key, tuple(units), result.images,
                              tuple(labels[u].removeprefix("filter ") for u in units))
    hover = [f"{labels[u]}<br>activation {a:.4g} (start {s:.3g})"
             for u, a, s in zip(units, result.activations, result.initial)]
    selected = st.session_state.get(f"am_selected_{key}")
    index = units.index(selected) if selected in units else None
    presenter.chart(fig.grid_figure(grid, hover, index, png=png), key=f"am_grid_{key}",
                    on_select=functools.partial(_tile_clicked, key, units),
                    selection_mode="points", width="content", config={"displayModeBar": False})
    st.download_button("Download the grid (PNG)", png,
                       f"{request.model.name}_{key}_grid.png", "image/png",
                       icon=":material/download:", key=f"am_grid_png_{key}")
    # A click inside the polling fragment reruns only the fragment: rerun the page so that the
    # details below show the clicked tile.
    seen = f"_am_seen_{key}"
    clicked = st.session_state.get(seen, selected) != selected
    st.session_state[seen] = selected
    if polling and clicked:
        st.rerun()


def _tile_clicked(key: str, units: list[int]) -> None:
    points = st.session_state[f"am_grid_{key}"].selection.points
    if points:
        st.session_state[f"am_selected_{key}"] = units[int(points[0]["customdata"])]


def _job_section(request, labels: list[str], noun: str, key: str) -> actmax.ActMaxResult:
    """Start/stop buttons, then the grid (polled while the job runs); returns what is done."""
    folder = cache_dir("actmax")
    job = job_queue().get(request.key)  # a Start click has already started it (callback)
    running = job is not None and job.alive
    with st.container(horizontal=True):
        st.button("Start", type="primary", icon=":material/play_arrow:", key=f"am_start_{key}",
                  disabled=running, on_click=_start, args=(request, folder))
        st.button("Stop", icon=":material/stop:", key=f"am_stop_{key}", disabled=not running,
                  on_click=lambda: job_queue().cancel(job))
    if running:
        st.fragment(_grid, run_every=1.0)(request, folder, labels, noun, key, polling=True)
    else:
        _grid(request, folder, labels, noun, key, polling=False)
    return actmax.cached(request, folder)


# ------------------------------------------------------------------------------ details
def _details(model, result, labels: list[str], key: str, layer: str | None, selection) -> None:
    units = [int(u) for u in result.units]
    state_key = f"am_selected_{key}"
    state.linked(state_key, "filter" if key == "layer" else "class", units, units[0])
    st.session_state[f"_w_{state_key}"] = st.session_state[state_key]
    st.subheader("One " + ("class" if layer is None else "filter") + " up close")
    unit = st.selectbox("Look closer at", units, format_func=lambda u: labels[u],
                        key=f"_w_{state_key}",
                        on_change=lambda: st.session_state.update(
                            {state_key: st.session_state[f"_w_{state_key}"]}))
    i = units.index(unit)
    left, right = st.columns([1, 2])
    with left:
        st.image(fig.fit_to_side(result.images[i], 320), caption=labels[unit], output_format="PNG")
        st.download_button("Download this image (PNG)", fig.png_bytes(result.images[i]),
                           f"{model.name}_{key}_{unit}.png", "image/png",
                           icon=":material/download:", key=f"am_one_png_{key}")
    with right:
        quantity = "Logit" if layer is None else "Activation"
        presenter.chart(fig.history_figure(result.history[i], f"{quantity} of {labels[unit]}",
                                           float(result.activations[i]),
                                           float(result.initial[i]), quantity.lower()),
                        key=f"am_curve_{key}")
    if layer is not None:
        _examples(model, layer, unit, selection)


def _examples(model, layer: str, unit: int, selection) -> None:
    st.markdown("**Real images that excite it most**")
    datasets = {f"data:{d.folder}": d for d in list_datasets(datasets_dir())}
    sources = {"selected": f"The {len(selection.images)} images chosen in the sidebar",
               "shapes": f"{EXAMPLE_IMAGES} generated shape images"}
    sources |= {source: f"Data set: {d.name}" for source, d in datasets.items()}
    if st.session_state.get("am_source") not in sources:
        st.session_state["am_source"] = "selected" if selection.images else "shapes"
    source = st.radio("Examples from", list(sources), format_func=lambda s: md_escape(sources[s]),
                      horizontal=True, **state.durable("am_source", "selected"))
    if source == "selected" and not selection.images:
        st.info("Choose images in the sidebar, or another source.")
        return
    with shown_errors("Finding the top examples failed: "):
        if source == "selected":
            images, source_key = selection.arrays, "selected:" + ",".join(
                i for i, _, _ in selection.images)
        else:
            version = datasets[source].key if source in datasets else ""
            images = _sample(source, version, max(model.input_size))
            source_key = f"{source}:{version}"
        responses = _responses(model, model.key, layer, source_key, images)
        examples = top_examples(model, responses, images, unit, k=TOP_K)
        for col, example in zip(st.columns(len(examples)), examples):
            col.image(fig.example_with_box(model.prepare([images[example.index]])[0]
                                           .round().astype(np.uint8), example.box),
                      caption=f"activation {example.activation:.3g}", output_format="PNG")
            col.image(fig.fit_to_side(example.patch, 96), caption="receptive field",
                      output_format="PNG")
        rf = (f"{responses.rf_size}x{responses.rf_size} pixels" if responses.rf_size
              else "the whole image")
        st.caption(f"Each image resized to the model's input ({model.input_size[0]}x"
                   f"{model.input_size[1]}); the frame is the receptive field ({rf}) of the "
                   "position where the filter responds most.")


# ------------------------------------------------------------------------------ the views
def _layer_view(model, selection) -> None:
    layers = model.conv_layers
    layer = linked_choice("Layer", f"am_layer:{model.key}", "layer", layers, layers[0],
                          help="The convolution layers of the model, first to last.")
    n = actmax.unit_count(model, layer)
    labels = [f"filter {u}" for u in range(n)]
    units = pick_units(n, "layer")
    options = settings_form(model, objective_choice=True)
    if not units:
        st.info("Choose at least one filter.")
        return
    with shown_errors("Activation maximisation failed: "):
        request = actmax.plan(model, layer, units, **options)
        result = _job_section(request, labels, "filters", "layer")
        if len(result):
            _details(model, result, labels, "layer", layer, selection)


def _class_view(model, selection) -> None:
    names = model.class_names
    st.caption(md_escape(f"The model's {len(names)} classes. Each picture maximises the class "
                         "score before the softmax (on a copy of the output layer)."))
    units = pick_units(len(names), "class", names,
                       "range" if len(names) > DEFAULT_MAX_CLASSES else "all")
    options = settings_form(model, objective_choice=False)
    if not units:
        st.info("Choose at least one class.")
        return
    labels = [f"{u}: {name}" for u, name in enumerate(names)]
    with shown_errors("Class visualisation failed: "):
        request = actmax.plan(model, None, units, **{**options, "objective": "class"})
        result = _job_section(request, labels, "classes", "class")
        if len(result):
            _details(model, result, labels, "class", None, selection)


def _dream_view(model, selection) -> None:
    if not selection.images:
        st.info("Choose or upload an image in the sidebar.")
        return
    labels = {i: label for i, label, _ in selection.images}
    images = {i: image for i, _, image in selection.images}
    c1, c2 = st.columns(2)
    image_id = image_choice(selection, "am_dream_image", linked=True, container=c1)
    layers = model.conv_layers
    layer = linked_choice("Layer to amplify", f"am_dream_layer:{model.key}", "layer", layers,
                          layers[len(layers) // 2], container=c2)
    with presenter.technical("am_dream_settings"):
        c1, c2, c3 = st.columns(3)
        octaves = c1.slider("Octaves", 1, 6, **state.durable("am_octaves", DREAM.octaves),
                            help=f"How many image sizes, each {DREAM.octave_scale} times the last.")
        steps = c2.slider("Steps per octave", 1, 100,
                          **state.durable("am_dream_steps", DREAM.steps))
        step_size = c3.slider("Step size", 0.005, 0.1, step=0.005, format="%.3f",
                              **state.durable("am_dream_step", DREAM.step_size))
    key = (model.key, image_id, layer, octaves, steps, step_size)
    if st.button("Dream", type="primary", icon=":material/auto_awesome:", key="am_dream"):
        bar, shown = progress_bar(first="Starting...")
        with shown_errors("DeepDream failed: "):
            dreamed = actmax.deep_dream(model, images[image_id], layer, octaves=octaves,
                                        steps=steps, step_size=step_size, callback=shown)
            st.session_state["am_dream_result"] = (key, dreamed)
        bar.empty()
    stored = st.session_state.get("am_dream_result")
    left, right = st.columns(2)
    left.image(images[image_id], caption=md_escape(labels[image_id]), width=DREAM_WIDTH)
    if stored and stored[0] == key:
        right.image(stored[1], caption=f"DeepDream on {layer}", width=DREAM_WIDTH,
                    output_format="PNG")
        right.download_button("Download the dream (PNG)", fig.png_bytes(stored[1]),
                              f"deepdream_{layer.replace('/', '_')}.png", "image/png",
                              icon=":material/download:", key="am_dream_png")
    else:
        right.info("Press Dream to amplify what the layer sees in this image.")


# ------------------------------------------------------------------------------ the page
selection = page("Filters", EXPLAINER, icon=":material/auto_awesome:")
model = selection.model
if model is None:
    st.stop()

view = linked_choice("Show", "am_view", "view", VIEWS, "layer", widget="radio",
                     format_func=VIEWS.get, horizontal=True, label_visibility="collapsed")
if view == "class":
    _class_view(model, selection)
elif view == "dream":
    _dream_view(model, selection)
else:
    _layer_view(model, selection)
