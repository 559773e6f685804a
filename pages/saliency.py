"""Saliency: which pixels the model's decision depends on, by nine methods; how faithful the
map is (deletion / insertion), whether it depends on the model at all (sanity check), and what
the model looks at over a whole data set."""

import collections
from pathlib import Path

import numpy as np
import streamlit as st

from engine.cache import BoundedCache
from engine.data.dataset import list_datasets
from engine.data.shapes import CLASS_NAMES as SHAPE_CLASSES
from engine.data.shapes import make_shapes
from engine.errors import CNNExplorerError
from engine.images import load_image
from engine.jobs import CANCELLED, FINISHED
from engine.models import predict
from engine.progress import Progress
from engine.saliency import METHODS, default_cam_layer, explain, spatial_layer_paths
from engine.saliency.dataset import dataset_saliency
from engine.saliency.metrics import deletion_insertion
from engine.saliency.occlusion import FILLS
from engine.saliency.sanity import UNCHANGED_CORRELATION, randomized_copy, sanity_check
from engine.saliency.sanity import weighted_layers
from ui import saliency_figures as sf
from ui import presenter, state
from ui.errors import log, shown_errors
from ui.images import safe_file_name
from ui.jobs import again, ended_message, follow, job_for
from ui.page import page
from ui.report import report_section
from ui.paths import datasets_dir
from ui.text import md_escape

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

TOP = "top"
_BLANK = "The map is blank: this method found no evidence for this class in the image."
METHOD_NAMES = list(METHODS)
TABS = ["Explain", "Compare all methods", "Data set"]


# ------------------------------------------------------------------------------ cached work
@st.cache_resource(show_spinner=False)
def _results() -> BoundedCache:
    """Server-wide cache of work that reports progress while it runs (``st.cache_data`` would
    replay the progress bar's updates on a hit, into a bar that no longer exists)."""
    return BoundedCache(64)


def _remembered(key, compute, store: BoundedCache | None = None):
    """``store``: ``_results()`` fetched by the script (a queued job computes in a thread of its
    own, outside the script run)."""
    return (_results() if store is None else store).get_or_build(key, compute)


def _maps(model, model_key, image_ids, images, method, target, layer, options,
          progress: Progress | None = None, store: BoundedCache | None = None):
    """Maps of the images (read-only arrays shared by every session). Integrated Gradients'
    completeness, measured on the way, is kept beside them (``_completeness``)."""
    key = ("maps", model_key, image_ids, method, target, layer, options)

    def compute():
        found = explain(model, list(images), method, target, layer, progress=progress,
                        details=True, **dict(options))
        if found.completeness is not None:
            _remembered(("completeness",) + key[1:], lambda: found.completeness, store=store)
        return found.maps

    return _remembered(key, compute, store=store)


def _completeness(model_key, image_ids, method, target, layer, options):
    """The ``Completeness`` ``_maps`` kept for these maps, or ``None``."""
    return _results().get(("completeness", model_key, image_ids, method, target, layer, options))


def _queued_maps(model, model_key, image_ids, images, method, target, layer, options):
    """The maps of a slow method, computed by a job of the server's queue: ``None`` while it
    waits or runs (its place in line and progress are shown)."""
    key = ("maps", model_key, image_ids, method, target, layer, options)
    store = _results()
    found = store.get(key)
    if found is not None:
        return found
    title = f"{METHODS[method].title} on {len(image_ids)} image{'s' if len(image_ids) > 1 else ''}"

    def work(job):
        return _maps(model, model_key, image_ids, images, method, target, layer, options,
                     lambda done, total, stage: job.report(done, total), store=store)

    job = job_for(key, work, title=title)
    if job is None or job.status == FINISHED:
        return None if job is None else job.result
    if job.alive:
        follow(job, "sal_job")
        return None
    ended_message(job)
    if st.button("Compute again", key="sal_again", icon=":material/replay:"):
        again(key, work, title=title)
        st.rerun()
    return None


@st.cache_data(show_spinner=False, max_entries=32)
def _predictions(_model, model_key, image_ids, _images):
    return predict(_model, list(_images), top=5)


@st.cache_data(show_spinner=False, max_entries=16)
def _cam_layers(_model, model_key):
    return spatial_layer_paths(_model.keras_model), default_cam_layer(_model.keras_model)


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
    """The per-class summary of ``count`` images of a source, and how they were grouped."""
    def compute():
        images, labels, boxes, classes = _dataset_images(source, count, stored)
        if classes != list(model.class_names):
            labels = None  # the data set's classes are not the model's: group by prediction
        summary = dataset_saliency(model, images, labels, boxes, method=method, layer=layer,
                                   progress=progress)
        return summary, labels is not None

    version = next((d.key for d in stored if d.id == source), "")
    return _remembered(("dataset", model_key, source, version, count, method, layer), compute)


# ------------------------------------------------------------------------------ widgets
def _title(name):
    cls = METHODS[name]
    return f"{cls.title} (slow)" if cls.speed == "slow" else cls.title


def _pick_method():
    state.linked("sal_method", "method", METHODS, "gradcam")
    return st.selectbox("Method", METHOD_NAMES, format_func=_title,
                        **state.durable("sal_method", "gradcam"),
                        help="; ".join(f"{METHODS[m].title}: {METHODS[m].summary}"
                                       for m in METHOD_NAMES))


def _pick_target(model, predictions):
    """``None`` (each image's top class) or a class index (names can repeat: ImageNet has two
    'missile' classes, so the options are indices)."""
    names = model.class_names
    index_of = {name: i for i, name in reversed(list(enumerate(names)))}
    in_top = list(dict.fromkeys(index_of[name] for top in predictions for name, _ in top))
    options = [TOP] + in_top + [i for i in range(len(names)) if i not in set(in_top)]
    repeated = {name for name, n in collections.Counter(names).items() if n > 1}
    state.linked("sal_target", "class", options, TOP)

    def label(option):
        if option == TOP:
            return "Top prediction of each image"
        name = names[option] + (f" (class {option})" if names[option] in repeated else "")
        return f"{name} (in a top 5)" if option in in_top else name

    choice = st.selectbox(
        "Explain which class?", options, format_func=label, **state.durable("sal_target", TOP),
        help="The map shows the evidence for this class. Pick another class than the top "
             "prediction to ask 'why not that class?'. Type to search all classes.")
    return None if choice == TOP else int(choice)


def _pick_layer(model, method):
    if not METHODS[method].uses_layer:
        state.unlinked("layer")
        return None
    try:
        paths, default = _cam_layers(model, model.key)
    except CNNExplorerError as exc:
        st.warning(md_escape(str(exc)), icon=":material/warning:")
        return None
    key = f"sal_layer:{model.name}"
    state.linked(key, "layer", paths, default)
    return st.selectbox("Layer", paths, **state.durable(key, default),
                        format_func=lambda p: f"{p} (default)" if p == default else p,
                        help="The CAM methods read this layer's channels. The default is the "
                             "last convolution block's output after its normalisation and "
                             "activation; earlier layers give finer, noisier maps.")


def _method_options(model, method):
    """The chosen method's own options, each with a sensible default."""
    side = min(model.input_size)
    if method == "smoothgrad":
        left, right = st.columns(2)
        return {"samples": left.slider("Noisy samples", 5, 100, step=5,
                                       **state.durable("sal_samples", 20)),
                "noise": right.slider("Noise level (share of the value range)", 0.05, 0.5,
                                      step=0.05, **state.durable("sal_noise", 0.2))}
    if method == "integrated_gradients":
        left, mid, right = st.columns(3)
        return {"steps": left.slider("Integration steps", 16, 256, step=16,
                                     **state.durable("sal_steps", 64)),
                "baseline": mid.selectbox("Baseline (the 'blank' image)",
                                          ["black", "blur", "gray", "white"],
                                          **state.durable("sal_baseline", "black")),
                "spacing": right.selectbox(
                    "Step spacing", ["adaptive", "uniform"], **state.durable("sal_spacing",
                                                                             "adaptive"),
                    help="Adaptive puts more steps where the class score changes fastest "
                         "along the path: the attributions then add up to the score "
                         "difference much more closely for the same number of steps.")}
    if method == "occlusion":
        left, mid, right = st.columns(3)
        patch = left.slider("Patch (pixels at the model input)", 2, max(2, side // 2),
                            **state.durable(f"sal_patch:{side}", max(2, side // 8)))
        stride = mid.slider("Stride", 1, max(1, side // 4),
                            **state.durable(f"sal_stride:{side}", max(1, side // 16)))
        fill = right.selectbox("Cover with", list(FILLS), **state.durable("sal_fill", "gray"))
        return {"patch": patch, "stride": stride, "fill": fill}
    if method == "scorecam":
        return {"max_channels": st.number_input(
            "Channels used (0 = all)", 0, 4096, step=16, **state.durable("sal_channels", 0),
            help="Faster Score-CAM: only the channels that vary most on the image.")}
    return {}


def _progress_bar(text):
    bar = st.empty()

    def report(done: int, total: int, stage: str) -> None:
        bar.progress(done / max(total, 1), text=f"{text} {done}/{total}")

    return bar, report


# ------------------------------------------------------------------------------ sections
def _explain_tab(model, key, selection, predictions, method, target, layer, options):
    ids = tuple(image_id for image_id, _, _ in selection.images)
    left, right = st.columns(2)
    opacity = left.slider("Opacity of the map", 0.0, 1.0, step=0.05,
                          **state.durable("sal_opacity", 0.5))
    colormap = right.selectbox("Colour map", list(sf.COLORMAPS), **state.durable("sal_cmap",
                                                                                   "jet"))
    if METHODS[method].speed == "slow":
        maps = _queued_maps(model, key, ids, selection.arrays, method, target, layer, options)
        if maps is None:
            return None
    else:
        bar, report = _progress_bar(f"{METHODS[method].title}: batch")
        maps = _maps(model, key, ids, selection.arrays, method, target, layer, options, report)
        bar.empty()
    complete = _completeness(key, ids, method, target, layer, options)
    per_row = 2 if len(selection.images) > 1 else 1
    for start in range(0, len(selection.images), per_row):
        columns = st.columns(per_row)
        for i in range(start, min(start + per_row, len(selection.images))):
            with columns[i - start]:
                explained = predictions[i][0][0] if target is None else model.class_names[target]
                _image_card(i, selection.images[i], predictions[i], maps[i], method, explained,
                            opacity, colormap)
                if complete is not None:
                    _completeness_note(complete, i)
    return maps


def _completeness_note(complete, i):
    """Integrated Gradients' check on itself: do the attributions add up to the score change?"""
    total, difference = complete.attribution_sum[i], complete.score_difference[i]
    relative = complete.relative_gap[i]
    share = "n/a" if np.isnan(relative) else f"{relative:.1%}"
    st.markdown(f"**Completeness:** the attributions add up to **{total:.4g}**; the class "
                f"score (logit) changes by **{difference:.4g}** from the baseline to the image; "
                f"gap **{total - difference:+.3g}** (**{share}**).",
                help="Integrated Gradients' attributions add up exactly to f(image) - "
                     "f(baseline) when the path integral is exact; the gap is the error of the "
                     "sum over the integration steps.")
    if relative > 0.05:  # nan (no change to explain) is no warning
        st.warning(f"The gap is over 5 % ({share}): the steps are too few for this image. Raise "
                   "the integration steps or use adaptive spacing.", icon=":material/warning:")


def _image_card(i, item, top, saliency, method, explained, opacity, colormap):
    image_id, label, image = item
    with st.container(border=True):
        st.markdown(f"**{md_escape(label)}** · top prediction **{md_escape(top[0][0])}** "
                    f"({top[0][1]:.1%}) · map for **{md_escape(explained)}**")
        a, b = st.columns(2)
        picture = sf.overlay(image, saliency, opacity, colormap)
        a.image(picture, caption="Map over the image", width="stretch")
        b.image(sf.colorize(saliency, colormap), width="stretch",
                caption=f"Raw map, {saliency.shape[1]}x{saliency.shape[0]}, values 0 to 1")
        if not saliency.any():
            st.caption(_BLANK)
        c, d = st.columns(2)
        stem = f"{Path(safe_file_name(image_id.partition(':')[2])).stem[:40]}_{method}"
        c.download_button("Overlay (PNG)", sf.png_bytes(picture), f"{stem}.png", "image/png",
                          key=f"sal_png_{i}", icon=":material/download:")
        d.download_button("Raw map (.npy)", sf.npy_bytes(saliency), f"{stem}.npy",
                          "application/octet-stream", key=f"sal_npy_{i}",
                          icon=":material/download:")


def _choose_image(selection, key):
    labels = {image_id: label for image_id, label, _ in selection.images}
    if st.session_state.get(key) not in labels:
        st.session_state[key] = next(iter(labels))
    if len(labels) == 1:
        return next(iter(labels))
    return st.selectbox("Image", list(labels), format_func=labels.get, key=key)


def _faithfulness_section(model, key, selection, maps, method, target, layer, options):
    st.subheader("Faithfulness: deletion and insertion", anchor=False)
    st.caption("Pixels are removed (turned black) or inserted (into a blurred copy) in the "
               "map's order, most important first, and the class probability is measured after "
               "each step. A faithful map makes it fall faster than a random order when "
               "deleting (lower area) and rise faster when inserting (higher area).")
    image_id = _choose_image(selection, "sal_faith_image")
    index = [i for i, _, _ in selection.images].index(image_id)
    request = (key, image_id, method, target, layer, options)
    if st.button("Measure faithfulness", key="sal_faith_go", icon=":material/monitoring:"):
        st.session_state["sal_faith_request"] = request
    if st.session_state.get("sal_faith_request") != request:
        return
    with shown_errors("Measuring faithfulness failed: "):
        curves = _faithfulness(model, key, image_id, selection.images[index][2], maps[index],
                               method, target, layer, options, steps=24)
        name = model.class_names[curves.target]
        presenter.chart(sf.faithfulness_figure(curves, f"{METHODS[method].title}, class "
                                                        f"{name}"), key="sal_faith_chart")
        better = [curves.deletion_auc < curves.random_deletion_auc,
                  curves.insertion_auc > curves.random_insertion_auc]
        verdict = {2: "beats the random order on both curves",
                   1: "beats the random order on one curve only",
                   0: "does no better than a random order"}[sum(better)]
        st.markdown(f"The map {verdict}.")


def _sanity_section(model, key, selection, method, target, layer, options):
    st.subheader("Sanity check: randomise the top layers", anchor=False)
    n_weighted = len(weighted_layers(model.keras_model))
    st.caption("A copy of the model gets random weights in its top layers (the model itself is "
               "not changed). A map that explains the model must change; the rank correlation "
               f"of the two maps measures how much. At {UNCHANGED_CORRELATION} or above the "
               "method is flagged: its map does not depend much on what the model learned.")
    image_id = _choose_image(selection, "sal_sanity_image")
    index = [i for i, _, _ in selection.images].index(image_id)
    n_layers = st.slider("Layers to randomise (from the output)", 1, max(1, n_weighted),
                         **state.durable("sal_sanity_layers", min(3, n_weighted))) \
        if n_weighted > 1 else 1
    request = (key, image_id, method, target, layer, options, n_layers)
    if st.button("Run the sanity check", key="sal_sanity_go", icon=":material/science:"):
        st.session_state["sal_sanity_request"] = request
    if st.session_state.get("sal_sanity_request") != request:
        return
    with shown_errors("The sanity check failed: "):
        copy = _randomized(model, key, n_layers)
        result = _sanity(model, key, copy, image_id, selection.images[index][2], method,
                         target, layer, options, n_layers)
        rho = float(result.rank_correlation[0])
        image = selection.images[index][2]
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
    image_id = _choose_image(selection, "sal_compare_image")
    index = [i for i, _, _ in selection.images].index(image_id)
    _, _, image = selection.images[index]
    name = "the top prediction" if target is None else model.class_names[target]
    st.markdown(f"Class explained: **{md_escape(name)}**")
    request = (key, image_id, target, layer)
    clicked = st.button("Run all methods", key="sal_compare_go", type="primary",
                        icon=":material/play_arrow:")
    if clicked:
        st.session_state["sal_compare_request"] = request
    if st.session_state.get("sal_compare_request") != request:
        return
    # One job of the server's queue runs every method; each map appears when it is ready.
    work = _compare_work(model, key, image_id, image, target, layer, _results())
    title = "Every saliency method on one image"
    job = (again if clicked else job_for)(("compare",) + request, work, title=title)
    if job is None:
        return
    if job.alive:
        follow(job, "sal_compare_job", lambda j: _compare_cells(image, dict(j.parts())))
        return
    ended_message(job)
    if job.status == FINISHED:
        st.progress(1.0, text=f"All {len(METHOD_NAMES)} methods done.")
    if job.status != CANCELLED:
        _compare_cells(image, dict(job.parts()))


def _compare_work(model, key, image_id, image, target, layer, store):
    """Every method on one image, each map (or the reason it failed) published when done."""
    def work(job):
        n = len(METHOD_NAMES)
        for i, name in enumerate(METHOD_NAMES):
            text = f"{METHODS[name].title} ({i + 1}/{n})..."
            job.report(i, n, text)
            try:
                found = _maps(model, key, (image_id,), [image], name, target,
                              layer if METHODS[name].uses_layer else None, (),
                              lambda done, total, stage, i=i, text=text:
                              job.report(i + done / max(total, 1), n, text), store=store)[0]
            except CNNExplorerError as exc:
                found = f"{METHODS[name].title}: {exc}"
            except Exception:  # a bug in one method: the others still run
                log.exception("comparing saliency methods: %s failed", name)
                found = (f"{METHODS[name].title}: something went wrong inside CNN Explorer; "
                         "the details were written to the server log.")
            job.publish((name, found))
        job.report(n, n, f"All {n} methods done.")
    return work


def _compare_cells(image, done):
    """The grid of the comparison: a map per finished method, its error, or 'waiting'."""
    columns = st.columns(3)
    for i, name in enumerate(METHOD_NAMES):
        with columns[i % 3]:
            found = done.get(name)
            if found is None:
                st.caption(f"{_title(name)}: waiting...")
            elif isinstance(found, str):
                st.error(md_escape(found), icon=":material/error:")
            else:
                st.image(sf.overlay(image, found, 0.5), caption=_title(name), width="stretch")
                if not found.any():
                    st.caption(_BLANK)


def _dataset_tab(model, key, method, layer):
    st.caption("The average map per class over many images, and for images whose object boxes "
               "are known (the demo shapes), the share of the saliency inside the box: a model "
               "that looks at the background shows up here even when it is accurate.")
    stored = list_datasets(datasets_dir())
    sources = ["demo"] + [d.id for d in stored]
    names = {"demo": "Demo shapes (drawn now, with boxes)"} | {d.id: d.name for d in stored}
    if st.session_state.get("sal_ds_source") not in sources:
        st.session_state["sal_ds_source"] = "demo"
    left, mid, right = st.columns(3)
    source = left.selectbox("Images", sources, format_func=lambda s: names[s],
                            **state.durable("sal_ds_source", "demo"))
    count = mid.slider("How many", 12, 120, step=6, **state.durable("sal_ds_count", 36))
    fast = [m for m in METHOD_NAMES if METHODS[m].speed == "fast"]
    ds_method = right.selectbox("Method", fast, format_func=_title,
                                index=fast.index(method) if method in fast else 0,
                                key="sal_ds_method")
    request = (key, source, count, ds_method, layer)
    if st.button("Compute the averages", key="sal_ds_go", icon=":material/functions:"):
        st.session_state["sal_ds_request"] = request
    if st.session_state.get("sal_ds_request") != request:
        return
    with shown_errors("The data set summary failed: "):
        bar, report = _progress_bar("Images")
        summary, by_label = _dataset_summary(
            model, key, source, count, stored, ds_method,
            layer if METHODS[ds_method].uses_layer else None, report)
        bar.empty()
        grouping = ("by their true class (the model's classes are the data set's)" if by_label
                    else "by the class the model predicts")
        st.markdown(f"{len(summary.explained)} images, grouped {grouping}.")
        present = [c for c in np.argsort(-summary.counts, kind="stable")
                   if summary.counts[c] > 0][:12]
        columns = st.columns(min(6, len(present)) or 1)
        for j, c in enumerate(present):
            columns[j % len(columns)].image(
                sf.overlay(summary.mean_images[c], _unit(summary.mean_maps[c]), 0.6),
                caption=f"{model.class_names[c]} ({summary.counts[c]} images)", width="stretch")
        if summary.box_share is not None:
            share, area = float(summary.box_share.mean()), float(summary.box_area.mean())
            a, b, c = st.columns(3)
            a.metric("Saliency inside the object box", f"{share:.0%}")
            b.metric("Image area the boxes cover", f"{area:.0%}")
            c.metric("Peak inside the box (pointing game)", f"{summary.pointing.mean():.0%}")
            per_class = [summary.box_share[summary.explained == k].mean()
                         if summary.counts[k] else 0.0 for k in range(model.n_classes)]
            per_area = [summary.box_area[summary.explained == k].mean()
                        if summary.counts[k] else 0.0 for k in range(model.n_classes)]
            presenter.chart(sf.box_share_figure(model.class_names, per_class, per_area,
                                                summary.counts), key="sal_ds_chart")
            if share < 1.5 * area:
                st.warning("Little of the saliency falls on the objects: the model may be "
                           "looking at the background.", icon=":material/flag:")


def _unit(values):
    high = float(values.max())
    return values / high if high > 0 else values


def _dataset_images(source, count, stored):
    """Images, labels, boxes (or None) and class names of the chosen source."""
    if source == "demo":
        batch = make_shapes(count, seed=31337)  # a seed the demo model never trained on
        return batch.images, batch.labels, batch.boxes, list(SHAPE_CLASSES)
    dataset = next(d for d in stored if d.id == source)
    files = list(dataset.files)
    step = max(1, len(files) // count)
    chosen = files[::step][:count]
    known = dataset.boxes()
    images, labels, boxes = [], [], []
    for f in chosen:
        try:
            images.append(load_image(dataset.path_of(f)))
        except CNNExplorerError:
            continue
        labels.append(f.label)
        boxes.append(known.get(f.path))
    has_boxes = bool(boxes) and all(b is not None for b in boxes)
    return images, np.array(labels), (np.array(boxes) if has_boxes else None), \
        list(dataset.class_names)


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
        method = _pick_method()
    with b:
        target = _pick_target(model, predictions)
    with c, presenter.technical("sal_layer"):
        layer = _pick_layer(model, method)
    with presenter.technical("sal_options"):
        options = tuple(sorted(_method_options(model, method).items()))
    st.caption(METHODS[method].summary)
    if not selection.images:
        st.info("Choose or upload images in the sidebar.")
    else:
        maps = _explain_tab(model, model_key, selection, predictions, method, target, layer,
                            options)
        if maps is not None:  # None while a queued job computes them
            _faithfulness_section(model, model_key, selection, maps, method, target, layer,
                                  options)
            _sanity_section(model, model_key, selection, method, target, layer, options)
        report_section(selection, key="sal", target=target, cam_layer=layer,
                       method_options={method: dict(options)})
with compare_tab, shown_errors("Comparing methods failed: "):
    if selection.images:
        _compare_tab(model, model_key, selection, target, layer)
    else:
        st.info("Choose or upload images in the sidebar.")
with dataset_tab, shown_errors("The data set summary failed: "):
    _dataset_tab(model, model_key, method, layer)
