"""Saliency: which pixels the model's decision depends on, by nine methods; how faithful the
map is (deletion / insertion), whether it depends on the model at all (sanity check), and what
the model looks at over a whole data set."""

import numpy as np
import streamlit as st

from engine.cache import BoundedCache
from engine.data.dataset import list_datasets
from engine.data.sampling import sample_dataset, sample_shapes
from engine.jobs import CANCELLED, FINISHED, JobProgress
from engine.models import predict
from engine.progress import Progress
from engine.saliency import METHODS, Explanation, explain
from engine.saliency.compare import compare_methods
from engine.saliency.dataset import dataset_saliency
from engine.saliency.metrics import deletion_insertion
from engine.saliency.sanity import UNCHANGED_CORRELATION, randomized_copy, sanity_check
from engine.saliency.sanity import weighted_layers
from engine.saliency.verdicts import box_verdict, faithfulness_verdict
from ui import saliency_figures as sf
from ui import presenter, state
from ui import saliency_sections as sections
from ui import saliency_trust as trust
from ui import saliency_what as what
from ui.errors import shown_errors
from ui.jobs import again, ended_message, follow, job_for, queued_result
from ui.model_report import similar_images
from ui.page import page
from ui.paths import datasets_dir
from ui.report import report_section
from ui.text import md_escape
from ui.widgets import image_choice, progress_bar

EXPLAINER = """
A **saliency map** colours each pixel by how much the model's answer depends on it: red where
it matters most, blue where it hardly matters. Different methods ask the question differently:

- **Grad-CAM** and its relatives (**Grad-CAM++**, **Layer-CAM**, **Score-CAM**) look at the last
  block of convolutions, whose maps are coarse (e.g. 7x7 or 14x14) and stretched over the image:
  blobs showing *where* the class was found.
- **Gradients** (vanilla, gradient x input, **SmoothGrad**, **Integrated Gradients**) ask how the
  score would change if one pixel changed: fine-grained, speckled maps.
- **Occlusion** covers one square at a time and watches the probability drop: slow, but it needs
  nothing from inside the model.

**Which class?** By default each image's top prediction. Pick another class to ask *"why not
that class?"*: the map then shows the evidence for it.

Maps can look convincing and still be wrong. Two checks help:
**Faithfulness** deletes the pixels in the map's order (the most important first): if the map is
right, the probability falls faster than when deleting in a random order (and rises faster
when inserting). **Sanity check** gives the model random weights in its top layers: a map
that hardly changes shows the image, not what the model learned.
"""

TABS = ["Explain", "Compare all methods", "Data set"]


# ------------------------------------------------------------------------------ cached work
@st.cache_resource(show_spinner=False)
def _results() -> BoundedCache:
    """Server-wide cache of work that reports progress while it runs (``st.cache_data`` would
    replay the progress bar's updates on a hit, into a bar that no longer exists)."""
    return BoundedCache(64)


def _explained(model, model_key, image_ids, images, method, target, layer, options,
               progress: Progress | None = None, store: BoundedCache | None = None
               ) -> Explanation:
    """The maps of the images and what the method measured on the way (read-only, shared by
    every session). ``store``: ``_results()`` fetched by the script (a queued job computes in
    a thread of its own, outside the script run)."""
    key = ("maps", model_key, image_ids, method, target, layer, options)
    return (_results() if store is None else store).get_or_build(key, lambda: explain(
        model, list(images), method, target, layer, progress=progress, details=True,
        **dict(options)))


def _queued(model, model_key, image_ids, images, method, target, layer, options):
    """A slow method's ``_explained``, computed by a job of the server's queue: ``None`` while
    it waits or runs (its place in line and progress are shown)."""
    key = ("maps", model_key, image_ids, method, target, layer, options)
    store = _results()
    n = len(image_ids)

    def work(job):
        return _explained(model, model_key, image_ids, images, method, target, layer, options,
                          lambda done, total, stage: job.report(done, total), store=store)

    return store.get(key) or queued_result(
        key, work, title=f"{METHODS[method].title} on {n} image{'s' if n > 1 else ''}",
        follow_key="sal_job", again_key="sal_again")


@st.cache_data(show_spinner=False, max_entries=32)
def _predictions(_model, model_key, image_ids, _images):
    return predict(_model, list(_images), top=5)


@st.cache_data(show_spinner="Deleting and inserting pixels in the map's order...",
               max_entries=32, ttl=3600)
def _faithfulness(_model, model_key, image_id, _image, _saliency, method, target, layer,
                  options, steps):
    return deletion_insertion(_model, _image, _saliency, target, steps=steps)


@st.cache_resource(show_spinner="Copying the model and randomising its top layers...",
                   max_entries=2)
def _randomized(_model, model_key, n_layers):
    return randomized_copy(_model, n_layers, seed=0)


@st.cache_data(show_spinner="Explaining both models...", max_entries=16, ttl=3600)
def _sanity(_model, model_key, _copy, image_id, _image, method, target, layer, options,
            n_layers):
    return sanity_check(_model, [_image], method, target, layer, n_layers=n_layers,
                        randomized=_copy, **dict(options))


def _dataset_summary(model, model_key, source, count, stored, method, layer,
                     progress: Progress | None = None):
    """The per-class summary of ``count`` images of a source, and whether they were grouped by
    their labels (the data set's classes are the model's) rather than by prediction."""
    def compute():
        sample = sample_shapes(count) if source == "demo" else sample_dataset(
            next(d for d in stored if d.id == source), count)
        labels = sample.labels if sample.class_names == list(model.class_names) else None
        summary = dataset_saliency(model, sample.images, labels, sample.boxes, method=method,
                                   layer=layer, progress=progress)
        return summary, labels is not None

    version = next((d.key for d in stored if d.id == source), "")
    return _results().get_or_build(("dataset", model_key, source, version, count, method, layer),
                                   compute)


# ------------------------------------------------------------------------------ sections
def _image(selection, image_id):
    index = [i for i, _, _ in selection.images].index(image_id)
    return index, selection.images[index][2]


def _asked(key: str, request) -> bool:
    """Whether the current ``request`` is the one asked for last (by a button)."""
    return st.session_state.get(key) == request


def _explain_tab(model, key, selection, predictions, method, target, layer, options):
    ids = tuple(image_id for image_id, _, _ in selection.images)
    left, right = st.columns(2)
    opacity = left.slider("Opacity of the map", 0.0, 1.0, step=0.05,
                          **state.durable("sal_opacity", 0.5))
    colormap = right.selectbox("Colour map", list(sf.COLORMAPS), **state.durable("sal_cmap",
                                                                                   "jet"))
    request = (model, key, ids, selection.arrays, method, target, layer, options)
    if METHODS[method].speed == "slow":
        found = _queued(*request)
        if found is None:
            return None
    else:
        bar, report = progress_bar(f"{METHODS[method].title}: batch")
        found = _explained(*request, report)
        bar.empty()
    per_row = 2 if len(ids) > 1 else 1
    for start in range(0, len(ids), per_row):
        columns = st.columns(per_row)
        for i in range(start, min(start + per_row, len(ids))):
            with columns[i - start]:
                explained = what.target_name(model, predictions[i][0][0], target, i)
                sections.image_card(i, selection.images[i], predictions[i], found.maps[i], method,
                                    explained, opacity, colormap)
                if found.completeness is not None:
                    sections.completeness_note(found.completeness, i)
    return found.maps


def _faithfulness_section(model, key, selection, maps, method, target, layer, options):
    st.subheader("Faithfulness: deletion and insertion", anchor=False)
    st.caption("Pixels are removed (turned black) or inserted (into a blurred copy) in the "
               "map's order, most important first, and the class probability is measured after "
               "each step. A faithful map makes it fall faster than a random order when "
               "deleting (lower area) and rise faster when inserting (higher area).")
    image_id = image_choice(selection, "sal_faith_image")
    index, image = _image(selection, image_id)
    request = (key, image_id, method, target, layer, options)
    if st.button("Measure faithfulness", key="sal_faith_go", icon=":material/monitoring:"):
        st.session_state["sal_faith_request"] = request
    if not _asked("sal_faith_request", request):
        return
    with shown_errors("Measuring faithfulness failed: "):
        curves = _faithfulness(model, key, image_id, image, maps[index], method, target, layer,
                               options, steps=24)
        name = model.class_names[curves.target]
        presenter.chart(sf.faithfulness_figure(curves, f"{METHODS[method].title}, class "
                                                        f"{name}"), key="sal_faith_chart")
        st.markdown(faithfulness_verdict(curves).sentence)


def _sanity_section(model, key, selection, method, target, layer, options):
    st.subheader("Sanity check: randomise the top layers", anchor=False)
    n_weighted = len(weighted_layers(model.keras_model))
    st.caption("A copy of the model gets random weights in its top layers (the model itself is "
               "not changed). A map that explains the model must change; the rank correlation "
               f"of the two maps measures how much. At {UNCHANGED_CORRELATION} or above the "
               "method is flagged: its map does not depend much on what the model learned.")
    image_id = image_choice(selection, "sal_sanity_image")
    _, image = _image(selection, image_id)
    n_layers = st.slider("Layers to randomise (from the output)", 1, max(1, n_weighted),
                         **state.durable("sal_sanity_layers", min(3, n_weighted))) \
        if n_weighted > 1 else 1
    request = (key, image_id, method, target, layer, options, n_layers)
    if st.button("Run the sanity check", key="sal_sanity_go", icon=":material/science:"):
        st.session_state["sal_sanity_request"] = request
    if not _asked("sal_sanity_request", request):
        return
    with shown_errors("The sanity check failed: "):
        result = _sanity(model, key, _randomized(model, key, n_layers), image_id, image, method,
                         target, layer, options, n_layers)
        rho = float(result.rank_correlation[0])
        a, b, c = st.columns([2, 2, 1])
        a.image(sf.overlay(image, result.original[0], 0.5), caption="Trained model",
                width="stretch")
        b.image(sf.overlay(image, result.randomized[0], 0.5),
                caption=f"Randomised: {', '.join(result.randomized_layers)}", width="stretch")
        c.metric("Rank correlation", "n/a" if np.isnan(rho) else f"{rho:.2f}")
        if not np.any(result.randomized[0]):
            b.caption("Blank: with random top layers the method finds nothing for this class "
                      "(counted as no correlation).")
        if result.flagged:
            st.warning(f"{METHODS[method].title}: the map barely changed. It does not depend "
                       "much on the learned weights; read it with care.", icon=":material/flag:")
        else:
            st.success(f"{METHODS[method].title}: the map changed with the weights, as a map "
                       "that explains the model should.", icon=":material/check_circle:")


def _compare_tab(model, key, selection, target, layer):
    st.caption("Every method on one image and class, each with its default options (the CAM "
               "methods on the layer chosen above). Fast methods come first; each map appears "
               "as soon as it is ready.")
    image_id = image_choice(selection, "sal_compare_image")
    _, image = _image(selection, image_id)
    name = "the top prediction" if target is None else model.class_names[target]
    st.markdown(f"Class explained: **{md_escape(name)}**")
    request = (key, image_id, target, layer)
    clicked = st.button("Run all methods", key="sal_compare_go", type="primary",
                        icon=":material/play_arrow:")
    if clicked:
        st.session_state["sal_compare_request"] = request
    if not _asked("sal_compare_request", request):
        return
    store = _results()

    def work(job):  # one job runs every method; each map appears when it is ready
        return compare_methods(model, image, target, layer, progress=JobProgress(job),
                               explain_one=lambda method, method_layer, progress: _explained(
                                   model, key, (image_id,), [image], method, target,
                                   method_layer, (), progress, store).maps[0])

    def cells(job):
        sections.compare_cells(image, {part.method: part for part in job.parts()})

    job = (again if clicked else job_for)(("compare",) + request, work,
                                          title="Every saliency method on one image")
    if job is None:
        return
    if job.alive:
        follow(job, "sal_compare_job", cells)
        return
    ended_message(job)
    if job.status == FINISHED:
        st.progress(1.0, text=f"All {len(METHODS)} methods done.")
    if job.status != CANCELLED:
        cells(job)


def _dataset_tab(model, key, method, layer):
    st.caption("The average map per class over many images, and for images whose object boxes "
               "are known (the demo shapes), the share of the saliency inside the box: a model "
               "that looks at the background shows up here even when it is accurate.")
    stored = list_datasets(datasets_dir())
    names = {"demo": "Demo shapes (drawn now, with boxes)"} | {d.id: d.name for d in stored}
    if st.session_state.get("sal_ds_source") not in names:
        st.session_state["sal_ds_source"] = "demo"
    left, mid, right = st.columns(3)
    source = left.selectbox("Images", list(names), format_func=names.get,
                            **state.durable("sal_ds_source", "demo"))
    count = mid.slider("How many", 12, 120, step=6, **state.durable("sal_ds_count", 36))
    fast = [m for m in METHODS if METHODS[m].speed == "fast"]
    ds_method = right.selectbox("Method", fast, format_func=sections.title,
                                index=fast.index(method) if method in fast else 0,
                                key="sal_ds_method")
    request = (key, source, count, ds_method, layer)
    if st.button("Compute the averages", key="sal_ds_go", icon=":material/functions:"):
        st.session_state["sal_ds_request"] = request
    if not _asked("sal_ds_request", request):
        return
    bar, report = progress_bar("Images")
    summary, by_label = _dataset_summary(model, key, source, count, stored, ds_method,
                                         layer if METHODS[ds_method].uses_layer else None, report)
    bar.empty()
    _dataset_result(model, summary, by_label)


def _dataset_result(model, summary, by_label: bool):
    """The mean map of each class present and, with boxes, where the saliency falls."""
    grouping = ("by their true class (the model's classes are the data set's)" if by_label
                else "by the class the model predicts")
    st.markdown(f"{len(summary.explained)} images, grouped {grouping}.")
    present = [c for c in np.argsort(-summary.counts, kind="stable")
               if summary.counts[c] > 0][:12]
    columns = st.columns(min(6, len(present)) or 1)
    for j, c in enumerate(present):
        columns[j % len(columns)].image(
            sf.overlay(summary.mean_images[c], summary.mean_maps[c], 0.6, "jet", 0.0,
                       float(summary.mean_maps[c].max())),
            caption=f"{model.class_names[c]} ({summary.counts[c]} images)", width="stretch")
    boxes = box_verdict(summary)
    if boxes is not None:
        a, b, c = st.columns(3)
        a.metric("Saliency inside the object box", f"{boxes.share:.0%}")
        b.metric("Image area the boxes cover", f"{boxes.area:.0%}")
        c.metric("Peak inside the box (pointing game)", f"{boxes.pointing:.0%}")
        presenter.chart(sf.box_share_figure(model.class_names, boxes.class_share,
                                            boxes.class_area, summary.counts), key="sal_ds_chart")
        if boxes.background:
            st.warning("Little of the saliency falls on the objects: the model may be "
                       "looking at the background.", icon=":material/flag:")


# ------------------------------------------------------------------------------ the page
selection = page("Saliency", EXPLAINER, icon=":material/center_focus_strong:")
model = selection.model
if model is None:
    st.stop()
model_key = model.key
method, target, layer = "gradcam", None, None

explain_tab, compare_tab, dataset_tab = st.tabs(TABS)
with explain_tab, shown_errors("Saliency failed: "):
    ids = tuple(image_id for image_id, _, _ in selection.images)
    predictions = _predictions(model, model_key, ids, selection.arrays) if ids else []
    a, b, c = st.columns(3)
    with a:
        method = sections.pick_method()
    with b:
        target = sections.pick_target(model, predictions)
        contrast = what.pick_contrast(model, selection.arrays, target)
    with c, presenter.technical("sal_layer"):
        layer = sections.pick_layer(model, method)
    with presenter.technical("sal_options"):
        options = tuple(sorted(sections.method_options(model, method).items()))
    st.caption(METHODS[method].summary)
    if not selection.images:
        st.info("Choose or upload images in the sidebar.")
    else:
        maps = _explain_tab(model, model_key, selection, predictions, method,
                            contrast or target, layer, options)
        if maps is not None:  # None while a queued job computes them
            _faithfulness_section(model, model_key, selection, maps, method, target, layer,
                                  options)
            _sanity_section(model, model_key, selection, method, target, layer, options)
            what.what_sections(model, selection, contrast or target, layer)
        report_section(selection, key="sal", target=target, cam_layer=layer,
                       method_options={method: dict(options)})
        similar_images(selection, key="sal")
with compare_tab, shown_errors("Comparing methods failed: "):
    if selection.images:
        _compare_tab(model, model_key, selection, target, layer)
    else:
        st.info("Choose or upload images in the sidebar.")
with dataset_tab, shown_errors("The data set summary failed: "):
    _dataset_tab(model, model_key, method, layer)
    trust.trust_section(model, layer)
