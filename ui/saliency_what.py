"""The Saliency page's questions about *what*, beside the maps' *where*: "why A rather than B?"
(the class picker's contrast), the channels that drove a decision (each with its feature map,
the picture it responds to most and real patches that excite it, and links to that channel on
the Feature maps and Filters pages) and the concepts a layer recognises (non-negative matrix
factorisation of its activations, over one image or over a class of a data set).

The numbers come from ``engine.saliency.channel_contributions`` and ``engine.features.concepts``;
activation maximisation from ``engine.actmax``, through the server's job queue and into the
Filters page's disk cache.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from engine import actmax
from engine.actmax.jobs import layer_work
from engine.actmax.top_examples import layer_responses, top_examples
from engine.actmax.views import form_defaults
from engine.data import list_datasets
from engine.data.sampling import ImageSample, sample_dataset, sample_shapes
from engine.concepts import DEFAULT_CONCEPTS, concept_patches, concepts
from engine.features import feature_maps
from engine.predictions import cached_probabilities
from engine.render import fit_to_side, overlay
from engine.saliency import ClassDifference, channel_contributions, runner_up
from ui import presenter, state
from ui.errors import shown_errors
from ui.jobs import queued_result
from ui.paths import cache_dir, datasets_dir
from ui.text import md_escape
from ui.widgets import image_choice, linked_choice

#: the "B" that is each image's most likely class other than A
RUNNER_UP = "runner-up"
#: channels shown on each side (for, against) and real patches per channel
TOP_CHANNELS, TOP_PATCHES = 3, 4
#: images drawn from a data set for the real patches, and for a class's concepts
PATCH_IMAGES = CLASS_IMAGES = 120
PATCH_SIDE = 96  # pixels on screen of a concept's patch
NO_SOURCE = "none"  # the "no data set" choice of ``image_source``
#: most concepts offered
MAX_CONCEPTS = 10
_FOR, _AGAINST = "#c0392b", "#2f6fde"


# ------------------------------------------------------------------------------ A rather than B
def pick_contrast(model, images: list[np.ndarray], target: int | None):
    """The "A rather than B" switch under the class picker: ``None`` when off, else one
    ``ClassDifference(A, B)`` per image (A: ``target``, or the image's top class; B: the chosen
    class, by default the most likely class other than A)."""
    if len(model.class_names) < 2 or not images:
        state.unlinked("vs")
        return None
    on = st.toggle("A rather than B", **state.durable("sal_contrast", "vs" in st.query_params),
                   help="Explain why the model says A (the class above) rather than B: the "
                        "map shows what speaks for A and against B (the difference of their "
                        "scores before the softmax).")
    if not on:
        state.unlinked("vs")
        return None
    names = model.class_names
    options = [RUNNER_UP] + list(range(len(names)))
    b = linked_choice("Rather than (B)", "sal_vs", "vs", options, RUNNER_UP,
                      format_func=lambda o: ("The runner-up (most likely other class)"
                                             if o == RUNNER_UP else names[o]))
    probabilities = cached_probabilities(model, images)
    a = np.argmax(probabilities, axis=1) if target is None else np.full(len(images), target)
    if b == RUNNER_UP:
        second = runner_up(probabilities)
        top = np.argmax(probabilities, axis=1)
        b = np.where(top == a, second, top)
    else:
        b = np.full(len(images), int(b))
    if np.any(a == b):
        st.warning("A and B are the same class for some image: pick another B.",
                   icon=":material/warning:")
        return None
    return tuple(ClassDifference(int(i), int(j)) for i, j in zip(a, b))


def target_name(model, top_name: str, target, i: int) -> str:
    """What image ``i``'s map explains, for people: ``top_name`` (its top class, for a
    ``None`` target), a class, or "A rather than B"."""
    one, names = _one(target, i), model.class_names
    if isinstance(one, ClassDifference):
        return f"{names[one.a]} rather than {names[one.b]}"
    return top_name if one is None else names[one]


def _one(target, i: int):
    return target[i] if isinstance(target, tuple) else target


def _asked_for_image(selection, target, key: str, label: str, icon: str, context: tuple):
    """An image picker beside a button: once the button has asked for the chosen image (and
    ``context``), ``(image id, its index, the image, its target)``, else ``None``."""
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    image_id = image_choice(selection, f"{key}_image", container=left)
    index = [i for i, _, _ in selection.images].index(image_id)
    one = _one(target, index)
    request = (image_id, repr(one)) + context
    if right.button(label, key=f"{key}_go", icon=icon, width="stretch"):
        st.session_state[f"{key}_request"] = request
    if st.session_state.get(f"{key}_request") != request:
        return None
    return image_id, index, selection.images[index][2], one


# ------------------------------------------------------------------------------ the channels
@st.cache_data(show_spinner="Weighing every channel's share of the score...", max_entries=32)
def _contributions(_model, model_key, image_id, _image, layer, target_key, _target):
    return channel_contributions(_model, _image, layer, _target)


@st.cache_data(show_spinner=False, max_entries=16)
def _layer_maps(_model, model_key, image_id, _image, layer) -> np.ndarray:
    return feature_maps(_model, _image, [layer])[layer][0]


def contributions_figure(values: np.ndarray, channels: list[int], bias: float, score: float,
                         explained: str) -> go.Figure:
    """Horizontal bars: the shown channels' contributions, for (red) and against (blue)."""
    shown = values[channels]
    fig = go.Figure(go.Bar(
        x=shown, y=[f"channel {c}" for c in channels], orientation="h",
        marker_color=[_FOR if v > 0 else _AGAINST for v in shown],
        hovertemplate="%{y}: %{x:.4g}<extra></extra>"))
    fig.update_layout(
        title=f"Score of {explained}: {score:.3g} = channels {values.sum():.3g} + rest "
              f"{bias:.3g}", height=80 + 28 * len(channels), margin=dict(l=10, r=10, t=40, b=30),
        yaxis=dict(autorange="reversed"), xaxis_title="contribution to the score (logits)")
    return presenter.figure(fig)


def channels_section(model, selection, target, layer: str | None) -> None:
    """"What drove this?": the channels of the CAM layer that added most to (and took most
    from) the explained score of one image, each with what it saw and what it looks for."""
    st.subheader("What drove this? The channels behind the score", anchor=False)
    st.caption("Each channel of the layer adds to the class score: its activation times the "
               "score's gradient, summed over the map. Red channels speak for the class, blue "
               "ones against it. Each comes with where it fired on this image, the picture it "
               "responds to most, and real patches that excite it.")
    asked = _asked_for_image(selection, target, "sal_what", "What drove this?",
                             ":material/manage_search:", (model.key, layer))
    if asked is None:
        return
    image_id, index, image, one = asked
    found = _contributions(model, model.key, image_id, image, layer, repr(one), one)
    explained = target_name(model, model.class_names[found.target] if one is None else "",
                            target, index)
    channels = [int(c) for c in np.concatenate([found.top(TOP_CHANNELS, +1),
                                                found.top(TOP_CHANNELS, -1)])]
    presenter.chart(contributions_figure(found.values, channels, found.bias, found.score,
                                         explained), key="sal_what_bars")
    maps = _layer_maps(model, model.key, image_id, image, found.layer)
    pictures = _pictures(model, found.layer, channels)
    patches = _patches(model, found.layer)
    for c in channels:
        _channel_row(model, image_id, image, found, c, maps[..., c], pictures.get(c),
                     patches(c) if patches else [])


def _channel_row(model, image_id, image, found, c: int, values, picture, patches) -> None:
    side = "for" if found.values[c] > 0 else "against"
    with st.container(border=True):
        a, b, p, links = st.columns([2, 2, 4, 2], vertical_alignment="center")
        a.image(overlay(image, values, 0.6, "viridis", 0.0, max(float(values.max()), 1e-6)),
                caption=f"Channel {c} on this image", width="stretch")
        if picture is not None:
            b.image(fit_to_side(picture, 160), caption="What it looks for", width="stretch")
        else:
            b.caption("What it looks for: not ready yet (its progress is shown above).")
        for col, patch in zip(p.columns(TOP_PATCHES), patches):
            col.image(fit_to_side(patch, 64), width="stretch")
        if patches:
            p.caption("Real patches that excite it most")
        links.markdown(f"**Channel {c}** · {side}: **{found.values[c]:+.3g}**")
        if links.button("Feature map", key=f"sal_what_fm_{c}", icon=":material/grid_view:",
                        help="This channel on the Feature maps page"):
            state.open_page("pages/feature_maps.py", image=image_id, layer=found.layer,
                            channel=c)
        if links.button("Filter", key=f"sal_what_am_{c}", icon=":material/auto_awesome:",
                        help="This channel on the Filters page"):
            state.open_page("pages/filters.py", view="layer", layer=found.layer, filter=c)


def _pictures(model, layer: str, channels: list[int]) -> dict[int, np.ndarray]:
    """The activation-maximised picture of each channel, from the Filters page's cache (its
    default settings); the missing ones are computed by a job of the server's queue."""
    request = actmax.plan(model, layer, sorted(channels),
                          **form_defaults(actmax.default_size(model)[0]))
    folder = cache_dir("actmax")
    done = actmax.cached(request, folder)
    if len(done) < len(request.units):
        done = queued_result(request.key, layer_work(request, folder),
                             title=f"What {len(channels)} channels of {layer} look for",
                             follow_key="sal_what_job", again_key="sal_what_again") or done
    return {int(u): picture for u, picture in zip(done.units, done.images)}


# ------------------------------------------------------------------------------ real patches
def image_source(label: str, key: str, *, none: str | None = None) -> str | None:
    """A choice of images: the demo shapes, a stored data set, or (``none``: its label)
    nothing; returns the source id (``None`` for nothing)."""
    names = ({NO_SOURCE: none} if none else {}) | {"demo": "Demo shapes (drawn now)"}
    names |= {d.id: d.name for d in list_datasets(datasets_dir())}
    if st.session_state.get(key) not in names:
        st.session_state[key] = next(iter(names))
    chosen = st.selectbox(label, list(names), format_func=names.get,
                          **state.durable(key, next(iter(names))))
    return None if chosen == NO_SOURCE else chosen


def draw_source(source: str, count: int) -> ImageSample:
    """``count`` images of a source of ``image_source`` (no Streamlit: jobs call it too)."""
    if source == "demo":
        return sample_shapes(count)
    return sample_dataset(next(d for d in list_datasets(datasets_dir()) if d.id == source),
                          count)


@st.cache_data(show_spinner="Drawing the images...", max_entries=8)
def sample_source(source: str, count: int) -> ImageSample:
    """``draw_source``, kept for the script's reruns."""
    return draw_source(source, count)


@st.cache_data(show_spinner="Running the images through the network...", max_entries=8)
def _source_responses(_model, model_key, layer, source, count):
    return layer_responses(_model, layer, sample_source(source, count).images)


def _patches(model, layer: str):
    """``unit -> its top real patches`` over a chosen data set, or ``None`` when none is."""
    source = image_source("Real patches from", "sal_what_source", none="No data set")
    if source is None:
        return None
    images = sample_source(source, PATCH_IMAGES).images
    responses = _source_responses(model, model.key, layer, source, PATCH_IMAGES)
    return lambda unit: [e.patch for e in top_examples(model, responses, images, unit,
                                                       k=TOP_PATCHES)]


# ------------------------------------------------------------------------------ concepts
@st.cache_data(show_spinner="Factorising the layer's activations into concepts...",
               max_entries=16)
def _concepts(_model, model_key, images_key, _images, layer, k, target_key, _target):
    return concepts(_model, _images, layer, k, target=_target)


def concepts_section(model, selection, target, layer: str | None) -> None:
    """The parts the layer recognises: k concept maps over one image, or the k concepts of a
    class over the images of a data set, each with its share of the score."""
    st.subheader("Concepts: the parts the model recognises", anchor=False)
    st.caption("The layer's activations are split into a few concepts (non-negative matrix "
               "factorisation): each concept is a mix of channels that fire together, such as "
               "an edge, a corner or a stretch of background. Its share is how much of the "
               "class score (before the softmax) it carries.")
    left, right = st.columns([1, 2])
    k = left.slider("Concepts", 2, MAX_CONCEPTS, **state.durable("sal_k", DEFAULT_CONCEPTS))
    over = right.radio("Over", ["image", "class"], horizontal=True,
                       format_func={"image": "One image", "class": "A class of a data set"}.get,
                       **state.durable("sal_concepts_over", "image"))
    if over == "image":
        _image_concepts(model, selection, target, layer, k)
    else:
        _class_concepts(model, layer, k)


def _image_concepts(model, selection, target, layer, k: int) -> None:
    asked = _asked_for_image(selection, target, "sal_concepts", "Find the concepts",
                             ":material/category:", (model.key, layer, k))
    if asked is None:
        return
    image_id, _, image, one = asked
    found = _concepts(model, model.key, image_id, image, layer, k, repr(one), one)
    st.markdown(f"This image is recognised from these {k} parts of **{md_escape(found.layer)}**"
                f" (together {found.explained / _nonzero(found.scores.mean()):.0%} of the "
                "score; the rest is the layer's bias and what the parts leave out):")
    for j, col in enumerate(_grid(k)):
        values = found.maps[0, ..., j]
        col.image(overlay(image, values, 0.6, "viridis", 0.0, max(float(values.max()), 1e-6)),
                  caption=f"Concept {j + 1}: {found.shares[j]:+.0%} of the score",
                  width="stretch")


def _class_concepts(model, layer, k: int) -> None:
    left, right = st.columns(2)
    with left:
        source = image_source("Images", "sal_concept_source")
    sample = sample_source(source, CLASS_IMAGES)
    present = sorted(set(int(label) for label in sample.labels))
    label = right.selectbox("Class", present, format_func=lambda c: sample.class_names[c],
                            key="sal_concept_class")
    name = sample.class_names[label]
    images = [sample.images[i] for i in np.flatnonzero(sample.labels == label)]
    target = name if name in model.class_names else None
    request = (model.key, source, label, layer, k)
    if st.button("Find the class's concepts", key="sal_class_concepts_go",
                 icon=":material/category:"):
        st.session_state["sal_class_concepts_request"] = request
    if st.session_state.get("sal_class_concepts_request") != request:
        return
    found = _concepts(model, model.key, (source, label), images, layer, k, repr(target), target)
    explained = f"the class **{md_escape(name)}**" if target else "the top class of each image"
    st.markdown(f"**{md_escape(name)}** is recognised from these {k} parts ({len(images)} "
                f"images; shares of the score of {explained}), each with the patches where it "
                "is strongest:")
    for j in range(k):
        patches = concept_patches(model, found, images, j, n=TOP_PATCHES)
        with st.container(horizontal=True, vertical_alignment="center"):
            st.markdown(f"**Concept {j + 1}**  \n{found.shares[j]:+.0%} of the score",
                        width=160)
            for example in patches:
                st.image(fit_to_side(example.patch, PATCH_SIDE), width=PATCH_SIDE)


def _grid(n: int, per_row: int = 6):
    """``n`` columns, ``per_row`` to a row."""
    for start in range(0, n, per_row):
        yield from st.columns(per_row)[:min(per_row, n - start)]


def _nonzero(value: float) -> float:
    return value if value else 1.0


# ------------------------------------------------------------------------------ the page's call
def what_sections(model, selection, target, layer: str | None) -> None:
    """The channels that drove the score and the concepts of the layer (the Explain tab)."""
    with shown_errors("Finding the channels failed: "):
        channels_section(model, selection, target, layer)
    with shown_errors("Finding the concepts failed: "):
        concepts_section(model, selection, target, layer)
