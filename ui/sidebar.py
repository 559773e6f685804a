"""The sidebar every page shares: navigation, the model picker and the image picker."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from engine.errors import CNNExplorerError
from engine.images import MAX_BYTES, load_image
from engine.models import ExplorableModel, list_models
from engine.models.catalogue import CATALOGUE
from engine.models.loading import MODEL_SUFFIXES
from engine.models.preprocessing import PREPROCESSING_MODES
from engine.training import TrainedModel, load_trained, trained_models
from ui import images as gallery_images
from ui import presenter, state
from ui.models import get_model
from ui.paths import model_uploads_dir, runs_dir
from ui.text import md_escape

#: (script, label, icon): the pages, in reading order
PAGES = [
    ("app.py", "Home / Predict", ":material/home:"),
    ("pages/tour.py", "Tour", ":material/tour:"),
    ("pages/model.py", "Model", ":material/account_tree:"),
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/feature_maps.py", "Feature maps", ":material/grid_view:"),
    ("pages/dataset.py", "Data set", ":material/dataset:"),
    ("pages/saliency.py", "Saliency", ":material/center_focus_strong:"),
    ("pages/filters.py", "Filters", ":material/auto_awesome:"),
]
OWN_MODEL = "own"
TRAINED = "run:"  # option id prefix of models trained on the Train page: "run:<run id>"
IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]


@dataclass
class Selection:
    """What the sidebar chose: the model (None when it failed to load) and the images."""

    model: ExplorableModel | None
    images: list[tuple[str, str, np.ndarray]] = field(default_factory=list)  # (id, label, image)
    model_error: str | None = None  # why the chosen model did not load, for the main area

    @property
    def arrays(self) -> list[np.ndarray]:
        return [image for _, _, image in self.images]


def sidebar() -> Selection:
    """Draw the shared sidebar and return the chosen model and images."""
    state.restore_from_url()
    with st.sidebar:
        st.markdown("### :material/visibility: CNN Explorer")
        for script, title, icon in PAGES:
            st.page_link(script, label=title, icon=icon, query_params=state.url_params())
        st.divider()
        model, error = _model_picker()
        st.divider()
        images = _image_picker()
        st.divider()
        presenter.toggle()  # last: the image list above needs the room to open downwards
        state.remember_browser()
    state.write_to_url()
    return Selection(model, images, error)


# ------------------------------------------------------------------------------------- model
def _model_title(name: str, trained: dict[str, TrainedModel]) -> str:
    if name in trained:
        return f"Trained: {trained[name].title}"
    return "Your own model file (.keras / .h5)" if name == OWN_MODEL else CATALOGUE[name].title


def _model_picker() -> tuple[ExplorableModel | None, str | None]:
    trained = {TRAINED + t.run_id: t for t in trained_models(runs_dir())}
    names = [spec.name for spec in list_models()] + list(trained) + [OWN_MODEL]
    if st.session_state.get("model") not in names:
        st.session_state["model"] = "demo"
    name = st.selectbox("Model", names, format_func=lambda n: _model_title(n, trained),
                        **state.durable("model", "demo"),
                        help="The network to explore. The demo model works offline; ImageNet "
                             "models need their weights (downloaded once by Keras, or a file). "
                             "Models trained on the Train page are listed too.")
    try:
        if name in trained:
            model = _trained_model(str(trained[name].path.parent), trained[name].version)
        elif name == OWN_MODEL:
            model = _own_model()
        elif CATALOGUE[name].family == "imagenet":
            model = _imagenet_model(name)
        else:
            model = get_model(name)
    except CNNExplorerError as exc:
        st.error("This model did not load; the page says why.", icon=":material/error:")
        return None, str(exc)
    if model is not None:
        st.caption(md_escape(f"{model.title} · {model.input_size[0]}x{model.input_size[1]} "
                             f"input · {model.n_classes} classes · {model.source}"))
        if name in CATALOGUE:
            st.caption(md_escape(CATALOGUE[name].description))
    return model, None


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _trained_model(run_dir: str, version: float) -> ExplorableModel:
    """A model trained on the Train page, shared by every session (``version``: the file's
    modification time, so a model written again is loaded again)."""
    return load_trained(run_dir)


def _imagenet_model(name: str) -> ExplorableModel:
    spec = CATALOGUE[name]
    with st.expander("Weights", expanded=False):
        st.caption(f"By default Keras downloads '{spec.weights_file}' (about "
                   f"{spec.download_mb:g} MB) once and keeps it in ~/.keras/models. Offline, give "
                   "a weights file here instead.")
        path = st.text_input("Weights file on this computer",
                             placeholder="/path/to/" + spec.weights_file,
                             **state.durable(f"weights_path_{name}", ""))
        upload = st.file_uploader("or upload a weights file", type=["h5"], key=f"weights_up_{name}")
    if upload is not None:
        folder = model_uploads_dir(state.upload_token())
        target = folder / gallery_images.safe_file_name(upload.name)
        target.write_bytes(upload.getvalue())
        return get_model(name, weights=str(target))
    if path.strip():
        return get_model(name, weights=path.strip())
    return get_model(name)


def _own_model() -> ExplorableModel | None:
    upload = st.file_uploader("Upload a model", type=[s.lstrip(".") for s in MODEL_SUFFIXES],
                              key="model_upload")
    path = st.text_input("or a model file on this computer", **state.durable("model_path", ""),
                         placeholder="/path/to/model.keras")
    names_text = st.text_area("Class names (one per line, optional)",
                              help="Without them a 1000-class model gets the ImageNet names.",
                              **state.durable("model_classes", ""))
    if upload is not None:
        folder = model_uploads_dir(state.upload_token())
        target = folder / gallery_images.safe_file_name(upload.name)
        target.write_bytes(upload.getvalue())
        st.session_state["model_path"] = str(target)
        path = str(target)
    if not path.strip():
        st.info("Upload a .keras or .h5 model, or type its path.")
        return None
    file = Path(path.strip())
    options = {}
    class_names = [line.strip() for line in names_text.splitlines() if line.strip()]
    if class_names:
        options["class_names"] = class_names
    # A file saved again under the same name must be loaded again, not served from the cache.
    version = file.stat().st_mtime if file.is_file() else 0.0
    model = get_model(str(file), cache_version=version, **options)  # preprocessing as detected
    _preprocessing_follows_file((str(file), version), model.preprocessing)
    prep = st.selectbox("Its preprocessing", list(PREPROCESSING_MODES),
                        format_func=lambda m: PREPROCESSING_MODES[m],
                        **state.durable("model_prep", model.preprocessing))
    st.caption(md_escape(model.detected_preprocessing.reason))
    if prep != model.preprocessing:
        model = get_model(str(file), cache_version=version, preprocessing=prep, **options)
    return model


def _preprocessing_follows_file(file: tuple[str, float], detected: str) -> None:
    """A newly chosen model file starts with the preprocessing its layers show; the user's
    choice for a file stays while the file does, and so does a link's for the file it names."""
    if st.session_state.get("_model_prep_file") == file:
        return
    from_link = ("_model_prep_file" not in st.session_state
                 and st.session_state.get("model_prep") in PREPROCESSING_MODES)
    st.session_state["_model_prep_file"] = file
    if not from_link:
        st.session_state["model_prep"] = detected


# ------------------------------------------------------------------------------------ images
def _image_picker() -> list[tuple[str, str, np.ndarray]]:
    token = state.upload_token()
    files = st.file_uploader("Upload images", type=IMAGE_TYPES, accept_multiple_files=True,
                             key="image_upload", max_upload_size=MAX_BYTES // 2**20,
                             help="JPEG, PNG, WebP, BMP, GIF or TIFF; several at once is fine.")
    _take_uploads(files or [], token)
    options = list(gallery_images.gallery()) + gallery_images.uploaded_ids(token)
    chosen = [i for i in st.session_state.get("images", gallery_images.DEFAULT_IMAGES)
              if i in options]
    st.session_state["images"] = chosen
    chosen = st.multiselect("Images", options,
                            format_func=lambda i: gallery_images.label(i, token),
                            **state.durable("images", chosen),
                            help="Bundled shapes and photos, and the images you uploaded.")
    out = []
    for image_id in chosen:
        try:
            out.append((image_id, gallery_images.label(image_id, token),
                        gallery_images.get_image(image_id, token)))
        except CNNExplorerError as exc:
            st.warning(md_escape(str(exc)))
    if not out:
        st.info("Choose or upload at least one image.")
    return out


def _take_uploads(files, token: str) -> None:
    """Keep each newly uploaded file that loads; list the others with their reason."""
    seen = st.session_state.setdefault("_seen_uploads", {})
    for file in files:
        if file.file_id in seen:
            continue
        try:
            load_image(file)
        except CNNExplorerError as exc:
            seen[file.file_id] = str(exc)
            continue
        new_id = gallery_images.save_upload(file.getvalue(), file.name, token)
        seen[file.file_id] = ""
        selected = st.session_state.setdefault("images", list(gallery_images.DEFAULT_IMAGES))
        if new_id not in selected:
            selected.append(new_id)
    problems = [seen[f.file_id] for f in files if seen.get(f.file_id)]
    if problems:
        st.warning("Some files were not used:\n\n"
                   + "\n\n".join(f"- {md_escape(p)}" for p in problems),
                   icon=":material/warning:")
