"""Loading models: catalogue entries, ImageNet weights (online or cached), users' own files.

Every failure becomes an ``engine.errors`` exception with a sentence saying what to do.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import keras

from engine.errors import InvalidModelError, WeightsUnavailableError
from engine.models.catalogue import (CATALOGUE, DEMO_MODEL_PATH, KERAS_WEIGHTS_URL, ModelSpec,
                                     demo_model_card)
from engine.models.explorable import ExplorableModel
from engine.models.imagenet import N_CLASSES as IMAGENET_CLASSES, imagenet_class_names
from engine.models.layers import conv_layer_paths
from engine.models.preprocessing import (DEFAULT_PREPROCESSING, PREPROCESSING_MODES,
                                         detect_preprocessing)
from engine.models.scratch import build_scratch_cnn

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
#: Model files above this are refused before reading (a classifier worth exploring is far smaller).
MAX_MODEL_BYTES = 2 * 1024**3
_PROBE_HOST, _PROBE_TIMEOUT_S = "storage.googleapis.com", 4.0
_online_cache: dict[str, tuple[float, bool]] = {}


def load_model(name_or_path: str | os.PathLike, **options) -> ExplorableModel:
    """Load a catalogue model by name, or a user's ``.keras`` / ``.h5`` file by path.

    Args:
        name_or_path: a catalogue name (see ``list_models``) or a path to a model file.
        **options: for ImageNet models ``weights`` (``"imagenet"``, a weights-file path, or
            ``None`` for random weights); for ``scratch`` ``input_size``, ``n_classes``,
            ``class_names``; for files ``preprocessing``, ``class_names``, ``input_size``.

    Returns:
        The model, wrapped to take RGB 0-255 images of any size.

    Raises:
        InvalidModelError: the file is missing, broken, unsafe or not an image classifier.
        WeightsUnavailableError: ImageNet weights are neither cached nor downloadable.
    """
    name = str(name_or_path)
    if name in CATALOGUE:
        return load_catalogue_model(CATALOGUE[name], **options)
    return load_model_file(name_or_path, **options)


def load_catalogue_model(spec: ModelSpec, **options) -> ExplorableModel:
    """Build or load the catalogue entry ``spec`` (see ``load_model`` for the options)."""
    if spec.family == "demo":
        card = demo_model_card()
        model = load_model_file(DEMO_MODEL_PATH, preprocessing=card["preprocessing"],
                                class_names=card["classes"], name="demo")
        model.title, model.source = spec.title, "bundled with CNN Explorer"
        return model
    if spec.family == "scratch":
        return _scratch(spec, **options)
    return _imagenet(spec, **options)


def _scratch(spec: ModelSpec, input_size=None, n_classes=None, class_names=None,
             seed: int | None = 0) -> ExplorableModel:
    if class_names is None:
        from engine.data.shapes import CLASS_NAMES  # the demo data set it is first trained on

        class_names = list(CLASS_NAMES)[: n_classes or None]
    n_classes = n_classes or len(class_names)
    if len(class_names) != n_classes:
        class_names = [f"class {i}" for i in range(n_classes)]
    size = tuple(input_size or spec.input_size)
    try:
        network = build_scratch_cnn(size, n_classes, seed=seed)
    except ValueError as exc:
        raise InvalidModelError(str(exc)) from exc
    return ExplorableModel(network, name=spec.name, class_names=list(class_names),
                           preprocessing=spec.preprocessing, input_size=size, title=spec.title,
                           source="random initialisation (untrained)")


def _imagenet(spec: ModelSpec, weights: str | os.PathLike | None = "imagenet") -> ExplorableModel:
    h, w = spec.input_size
    if weights == "imagenet":
        source = _check_imagenet_weights(spec)
    elif weights is None:
        source = "random initialisation (weights=None)"
    else:
        weights = str(weights)
        if not Path(weights).is_file():
            raise WeightsUnavailableError(
                f"No weights file at '{weights}'. Give the path of a {spec.title} weights file "
                f"such as '{spec.weights_file}'.")
        source = f"weights file {Path(weights).name}"
    try:
        network = spec.builder(weights=weights, input_shape=(h, w, 3))
    except Exception as exc:  # Keras raises bare Exception/ValueError/OSError for these cases
        raise _weights_error(spec, weights, exc) from exc
    return ExplorableModel(network, name=spec.name, class_names=list(imagenet_class_names()),
                           preprocessing=spec.preprocessing, input_size=(h, w), title=spec.title,
                           source=source)


def keras_models_dir() -> Path:
    """The folder where Keras caches downloaded weights (``$KERAS_HOME/models``)."""
    try:
        from keras.src.backend.config import keras_home

        home = keras_home()
    except ImportError:  # private accessor moved: fall back to Keras' documented default
        home = os.environ.get("KERAS_HOME", "~/.keras")
    return Path(os.path.expanduser(home)) / "models"


def cached_weights_path(spec: ModelSpec) -> Path | None:
    """Where Keras caches ``spec``'s ImageNet weights (``None`` for models without any)."""
    return keras_models_dir() / spec.weights_file if spec.weights_file else None


def _check_imagenet_weights(spec: ModelSpec) -> str:
    cached = cached_weights_path(spec)
    if cached.is_file():
        return f"ImageNet weights from the Keras cache ({cached})"
    if not is_online():
        raise WeightsUnavailableError(
            f"{spec.title} needs its ImageNet weights, file '{spec.weights_file}' "
            f"(about {spec.download_mb:g} MB), and this computer cannot reach the internet to "
            f"download it. Copy that file to {cached} (Keras' cache folder; download it on a "
            f"computer that is online from {KERAS_WEIGHTS_URL}), or give the path of a weights "
            "file instead, or pick the bundled demo model.")
    return "ImageNet weights downloaded by Keras"


def _weights_error(spec: ModelSpec, weights, exc: Exception) -> WeightsUnavailableError:
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if weights == "imagenet" and ("URL fetch failure" in reason or isinstance(exc, OSError)
                                  and not cached_weights_path(spec).is_file()):
        return WeightsUnavailableError(
            f"Downloading the ImageNet weights of {spec.title} failed ({reason}). Check the "
            f"internet connection, or copy '{spec.weights_file}' to {cached_weights_path(spec)}.")
    where = cached_weights_path(spec) if weights == "imagenet" else weights
    return WeightsUnavailableError(
        f"The weights file '{where}' does not fit {spec.title} ({reason}). Use the file Keras "
        f"names '{spec.weights_file}' (with the classifier top), or delete a damaged cached copy "
        "and download it again.")


def is_online(host: str = _PROBE_HOST, timeout: float = _PROBE_TIMEOUT_S) -> bool:
    """Whether ``host`` answers on port 443 within ``timeout`` seconds (result kept 60 s).

    The probe runs in a thread joined with a timeout because a broken resolver can block
    ``getaddrinfo`` far longer than any socket timeout: offline must mean a quick message.
    ``CNN_EXPLORER_OFFLINE=1`` says offline without probing (classrooms, tests, metered links).
    """
    if os.environ.get("CNN_EXPLORER_OFFLINE") == "1":
        return False
    now = time.monotonic()
    if host in _online_cache and now - _online_cache[host][0] < 60:
        return _online_cache[host][1]
    result = [False]

    def probe():
        try:
            socket.create_connection((host, 443), timeout=timeout).close()
            result[0] = True
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 1)
    _online_cache[host] = (now, result[0])
    return result[0]


# ------------------------------------------------------------------------------ users' files
def load_model_file(path: str | os.PathLike, *, preprocessing: str | None = None,
                    class_names: list[str] | None = None, input_size: tuple[int, int] | None = None,
                    name: str | None = None) -> ExplorableModel:
    """Load a ``.keras`` / ``.h5`` model with Keras' safe mode on, and check it can be explored.

    Args:
        path: the model file.
        preprocessing: how 0-255 RGB becomes the network's input (``PREPROCESSING_MODES``);
            None reads it off the network (``detect_preprocessing``: ``"raw"`` for a model
            that starts with a Rescaling or Normalization layer), else ``DEFAULT_PREPROCESSING``.
        class_names: one per output unit; default the ImageNet names for 1000 outputs,
            ``"class 0"``, ``"class 1"``, ... otherwise.
        input_size: (h, w) for networks whose input accepts any size; default 224x224.
        name: display name; default the file name.

    Returns:
        The model; its ``detected_preprocessing`` says what the network's layers showed.

    Raises:
        InvalidModelError: see ``check_explorable`` and the messages below.
    """
    path = Path(path)
    name = name or path.name
    if preprocessing is not None and preprocessing not in PREPROCESSING_MODES:
        raise InvalidModelError(f"Unknown preprocessing '{preprocessing}'; choose one of "
                                f"{', '.join(PREPROCESSING_MODES)}.")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise InvalidModelError(f"'{name}' is not a Keras model file: give a .keras or .h5 file "
                                "saved with model.save(...).")
    if not path.is_file():
        raise InvalidModelError(f"No model file at '{path}'.")
    if path.stat().st_size == 0:
        raise InvalidModelError(f"'{name}' is empty (0 bytes): the upload or copy did not finish.")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise InvalidModelError(f"'{name}' is larger than {MAX_MODEL_BYTES // 1024**3} GB; "
                                "CNN Explorer loads classifiers up to that size.")
    try:
        network = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for broken files; all mean "unreadable"
        raise _file_error(name, exc) from exc
    size = check_explorable(network, name, input_size)
    n_out = int(network.outputs[0].shape[-1])
    n_classes = 2 if n_out == 1 else n_out
    if class_names:
        names = list(class_names)
    elif n_classes == IMAGENET_CLASSES:
        names = list(imagenet_class_names())
    else:
        names = [f"class {i}" for i in range(n_classes)]
    if len(names) != n_classes:
        raise InvalidModelError(f"'{name}' has {n_classes} output classes but {len(names)} class "
                                "names were given: give one name per class.")
    detected = detect_preprocessing(network)
    return ExplorableModel(network, name=name, class_names=names,
                           preprocessing=preprocessing or detected.mode or DEFAULT_PREPROCESSING,
                           input_size=size, source=f"file {path.name}",
                           detected_preprocessing=detected)


def _file_error(name: str, exc: Exception) -> InvalidModelError:
    text = str(exc)
    if "safe_mode" in text or "Lambda" in text and "unsafe" in text.lower():
        return InvalidModelError(
            f"'{name}' contains a Lambda layer with Python code. Loading it would run code from "
            "the file, so CNN Explorer refuses it (Keras safe mode). Rebuild the model without "
            "Lambda layers (use built-in layers such as Rescaling) and save it again.")
    if "Could not locate" in text or "Unknown layer" in text:
        return InvalidModelError(
            f"'{name}' uses a custom layer or function that is not part of Keras "
            f"({text.splitlines()[0][:200]}). Only models made of built-in Keras layers can be "
            "loaded.")
    first = text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
    return InvalidModelError(
        f"'{name}' could not be read as a Keras model ({first}). Save the model with "
        "model.save('model.keras') in Keras 3 and try again.")


def check_explorable(network: keras.Model, name: str,
                     input_size: tuple[int, int] | None = None) -> tuple[int, int]:
    """Refuse networks that CNN Explorer cannot explore; return their input (h, w).

    Raises:
        InvalidModelError: more than one input or output, an input that is not an image
            (N, H, W, 1 or 3), an output that is not (N, classes), or no convolution layer.
    """
    if not isinstance(network, keras.Model):
        raise InvalidModelError(f"'{name}' holds a single layer, not a model.")
    if len(network.inputs) != 1 or len(network.outputs) != 1:
        raise InvalidModelError(f"'{name}' has {len(network.inputs)} inputs and "
                                f"{len(network.outputs)} outputs; CNN Explorer explores image "
                                "classifiers with one image input and one class output.")
    shape = tuple(network.inputs[0].shape)
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise InvalidModelError(f"'{name}' takes input of shape {shape[1:]}, not an image "
                                "(height, width, 3 colour channels or 1 grey channel).")
    out = tuple(network.outputs[0].shape)
    if len(out) != 2:
        raise InvalidModelError(f"'{name}' outputs shape {out[1:]}, not one score per class.")
    if not conv_layer_paths(network):
        raise InvalidModelError(f"'{name}' has no convolution layer, so there are no feature "
                                "maps or filters to explore. Load a convolutional network.")
    h, w = shape[1], shape[2]
    if h is None or w is None:
        h, w = input_size or (224, 224)
    return int(h), int(w)
