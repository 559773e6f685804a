"""The Saliency page's pickers and cards: the method, the class to explain, the CAM layer, each
method's own options (starting at the method's defaults, ``METHODS[name].options``), one
image's card and the comparison grid.

The numbers and verdicts come from ``engine.saliency``; the pictures from
``ui.saliency_figures``.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import streamlit as st

from engine.errors import CNNExplorerError
from engine.saliency import METHODS, default_cam_layer, spatial_layer_paths
from engine.saliency.compare import ComparedMap
from engine.saliency.occlusion import default_patch, default_stride
from engine.saliency.gradients import IntegratedGradients
from engine.saliency.occlusion import FILLS
from engine.saliency.verdicts import COMPLETENESS_TOLERANCE, steps_too_few
from ui import saliency_figures as sf
from ui import state
from ui.images import safe_file_name
from ui.text import md_escape
from ui.widgets import linked_choice

TOP = "top"
BLANK = "The map is blank: this method found no evidence for this class in the image."


def title(name: str) -> str:
    """The method's title, marked "(slow)" for the slow ones."""
    cls = METHODS[name]
    return f"{cls.title} (slow)" if cls.speed == "slow" else cls.title


# ------------------------------------------------------------------------------ pickers
def pick_method() -> str:
    return linked_choice("Method", "sal_method", "method", METHODS, "gradcam", format_func=title,
                         help="; ".join(f"{cls.title}: {cls.summary}" for cls in METHODS.values()))


def pick_target(model, predictions) -> int | None:
    """``None`` (each image's top class) or a class index (names can repeat: ImageNet has two
    'missile' classes, so the options are indices), the classes of the images' top 5 first."""
    names = model.class_names
    index_of = {name: i for i, name in reversed(list(enumerate(names)))}
    in_top = list(dict.fromkeys(index_of[name] for top in predictions for name, _ in top))
    options = [TOP] + in_top + [i for i in range(len(names)) if i not in set(in_top)]
    repeated = {name for name, n in collections.Counter(names).items() if n > 1}

    def label(option):
        if option == TOP:
            return "Top prediction of each image"
        name = names[option] + (f" (class {option})" if names[option] in repeated else "")
        return f"{name} (in a top 5)" if option in in_top else name

    choice = linked_choice(
        "Explain which class?", "sal_target", "class", options, TOP, format_func=label,
        help="The map shows the evidence for this class. Pick another class than the top "
             "prediction to ask 'why not that class?'. Type to search all classes.")
    return None if choice == TOP else int(choice)


@st.cache_data(show_spinner=False, max_entries=16)
def _cam_layers(_model, model_key):
    return spatial_layer_paths(_model.keras_model), default_cam_layer(_model.keras_model)


def pick_layer(model, method: str) -> str | None:
    """The CAM methods' layer (``None`` for the other methods, or a model without one)."""
    if not METHODS[method].uses_layer:
        state.unlinked("layer")
        return None
    try:
        paths, default = _cam_layers(model, model.key)
    except CNNExplorerError as exc:
        st.warning(md_escape(str(exc)), icon=":material/warning:")
        return None
    return linked_choice("Layer", f"sal_layer:{model.name}", "layer", paths, default,
                         format_func=lambda p: f"{p} (default)" if p == default else p,
                         help="The CAM methods read this layer's channels. The default is the "
                              "last convolution block's output after its normalisation and "
                              "activation; earlier layers give finer, noisier maps.")


def method_options(model, method: str) -> dict:
    """The chosen method's own options, each starting at the method's default."""
    default = METHODS[method].options
    if method == "smoothgrad":
        left, right = st.columns(2)
        return {"samples": left.slider("Noisy samples", 5, 100, step=5,
                                       **state.durable("sal_samples", default["samples"])),
                "noise": right.slider("Noise level (share of the value range)", 0.05, 0.5,
                                      step=0.05, **state.durable("sal_noise", default["noise"]))}
    if method == "integrated_gradients":
        left, mid, right = st.columns(3)
        return {"steps": left.slider("Integration steps", 16, 256, step=16,
                                     **state.durable("sal_steps", default["steps"])),
                "baseline": mid.selectbox("Baseline (the 'blank' image)",
                                          sorted(IntegratedGradients.BASELINES),
                                          **state.durable("sal_baseline", default["baseline"])),
                "spacing": right.selectbox(
                    "Step spacing", list(IntegratedGradients.SPACINGS),
                    **state.durable("sal_spacing", default["spacing"]),
                    help="Adaptive puts more steps where the class score changes fastest "
                         "along the path: the attributions then add up to the score "
                         "difference much more closely for the same number of steps.")}
    if method == "occlusion":
        return _occlusion_options(min(model.input_size), default)
    if method == "scorecam":
        return {"max_channels": st.number_input(
            "Channels used (0 = all)", 0, 4096, step=16,
            **state.durable("sal_channels", default["max_channels"]),
            help="Faster Score-CAM: only the channels that vary most on the image.")}
    return {}


def _occlusion_options(side: int, default: dict) -> dict:
    # The patch and stride the method picks by itself.
    left, mid, right = st.columns(3)
    patch = left.slider("Patch (pixels at the model input)", 2, max(2, side // 2),
                        **state.durable(f"sal_patch:{side}", default_patch(side)))
    stride = mid.slider("Stride", 1, max(1, side // 4),
                        **state.durable(f"sal_stride:{side}", default_stride(default_patch(side))))
    fill = right.selectbox("Cover with", list(FILLS), **state.durable("sal_fill", default["fill"]))
    return {"patch": patch, "stride": stride, "fill": fill}


# ------------------------------------------------------------------------------ cards
def image_card(i: int, item, top, saliency, method: str, explained: str, opacity: float,
               colormap: str) -> None:
    """One image: its top prediction, the map over it and alone, and the downloads."""
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
            st.caption(BLANK)
        c, d = st.columns(2)
        stem = f"{Path(safe_file_name(image_id.partition(':')[2])).stem[:40]}_{method}"
        c.download_button("Overlay (PNG)", sf.png_bytes(picture), f"{stem}.png", "image/png",
                          key=f"sal_png_{i}", icon=":material/download:")
        d.download_button("Raw map (.npy)", sf.npy_bytes(saliency), f"{stem}.npy",
                          "application/octet-stream", key=f"sal_npy_{i}",
                          icon=":material/download:")


def completeness_note(complete, i: int) -> None:
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
    if steps_too_few(complete)[i]:
        st.warning(f"The gap is over {COMPLETENESS_TOLERANCE * 100:.0f} % ({share}): the steps "
                   "are too few for this image. Raise the integration steps or use adaptive "
                   "spacing.", icon=":material/warning:")


def compare_cells(image: np.ndarray, done: dict[str, ComparedMap]) -> None:
    """The comparison grid: a map per finished method, its error, or 'waiting'."""
    columns = st.columns(3)
    for i, name in enumerate(METHODS):
        with columns[i % 3]:
            found = done.get(name)
            if found is None:
                st.caption(f"{title(name)}: waiting...")
            elif found.error is not None:
                st.error(md_escape(found.error), icon=":material/error:")
            else:
                st.image(sf.overlay(image, found.saliency, 0.5), caption=title(name),
                         width="stretch")
                if not found.saliency.any():
                    st.caption(BLANK)
