"""Where a transfer run's base comes from, and where it is cut.

Feature extraction and fine-tuning put a new head on a trained network's convolutional part.
That network (``RunConfig.base_model``) can be:

- ``"demo"``: the bundled shapes model, which needs no download: the classroom's base;
- ``"run:<run id>"``: the final model of a run trained earlier;
- the path of a ``.keras`` / ``.h5`` file (loaded with Keras' ``safe_mode`` on);
- a catalogue ImageNet name (``"mobilenet_0.25"``, ``"vgg16"``, ...), with ``RunConfig.weights``.

``RunConfig.base_layer`` says where the base is cut (default: the output of its last
convolution block, the layer Grad-CAM uses by default). The base keeps its own preprocessing
(the demo model's and a run's from their card, a file's from what it carries inside, an
ImageNet network's from the catalogue), and it takes images of any size: its input layers are
rebuilt without a fixed height and width, which convolutions do not need.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import keras

from engine.errors import CNNExplorerError, InvalidModelError, TrainingError
from engine.models.catalogue import CATALOGUE, DEMO_CARD_PATH, DEMO_MODEL_PATH
from engine.models.layers import SEPARATOR, find_layer, iter_layers

DEMO = "demo"
RUN_PREFIX = "run:"
FILE_SUFFIXES = (".keras", ".h5")
#: the name of the base inside a transfer model (``BuiltModel.base``)
BASE_NAME = "base"


@dataclass
class Base:
    """A trained network's convolutional part, ready to go under a new head.

    Attributes:
        network: from the image to ``layer``'s output; takes any height and width.
        preprocessing: a mode of ``PREPROCESSING_MODES``: how its images are fed.
        input_size: (height, width) it was trained at: the default image size of the run.
        layer: the path where it was cut.
        kind: ``"demo"``, ``"run"``, ``"file"`` or ``"imagenet"``.
        source: where its weights came from, for people.
    """

    network: keras.Model
    preprocessing: str
    input_size: tuple[int, int]
    layer: str
    kind: str
    source: str


def base_kind(name: str) -> str:
    """``"demo"``, ``"run"``, ``"imagenet"`` or ``"file"`` for a ``base_model`` value
    (no file is opened).

    Raises:
        TrainingError: a name that is none of these, with the choices.
    """
    name = (name or "").strip()
    if name == DEMO:
        return "demo"
    if name.startswith(RUN_PREFIX):
        if not name[len(RUN_PREFIX):]:
            raise TrainingError("Give the run to start from after 'run:' (its run id).")
        return "run"
    spec = CATALOGUE.get(name)
    if spec is not None and spec.family == "imagenet":
        return "imagenet"
    if name.lower().endswith(FILE_SUFFIXES):
        return "file"
    choices = ", ".join(s.name for s in CATALOGUE.values() if s.family == "imagenet")
    raise TrainingError(f"'{name}' is not a base model: give 'demo', 'run:<run id>', the path of "
                        f"a .keras or .h5 file, or an ImageNet network ({choices}).")


def resolve_base(name: str, *, weights: str | None = "imagenet", layer: str | None = None,
                 image_size: tuple[int, int] | None = None,
                 runs_dir: str | os.PathLike | None = None) -> Base:
    """The base ``name`` (see the module docstring), cut at ``layer``.

    Args:
        name: a ``base_model`` value.
        weights: ImageNet bases only (see ``build.imagenet_base``).
        layer: path of the layer to cut at; ``None``: its last convolution block's output.
        image_size: ImageNet bases are built at this size (default: their own).
        runs_dir: where ``run:<id>`` is looked for (default ``$CNN_EXPLORER_RUNS``).

    Raises:
        TrainingError: an unknown name or run, a missing file, or a layer that is missing or
            has no spatial grid.
        InvalidModelError: a file that cannot be read safely as a Keras model.
        WeightsUnavailableError: ImageNet weights that cannot be had offline.
    """
    kind = base_kind(name)
    if kind == "imagenet":
        from engine.training.build import imagenet_base

        spec = CATALOGUE[name]
        network, source = imagenet_base(spec, weights, tuple(image_size or spec.input_size))
        preprocessing, size = spec.preprocessing, spec.input_size
    else:
        network, preprocessing, size, source = _trained_network(name, kind, runs_dir)
    path = layer or _default_layer(network, name)
    cut = cut_at(network, path, title=_title(name, kind))
    return Base(any_size(cut), preprocessing, size, path, kind, source)


def cut_at(network: keras.Model, path: str, *, title: str = "the base") -> keras.Model:
    """``network`` from its input to the output of the layer at ``path`` (a nested path such
    as ``"mobilenet/conv_pw_13_relu"`` too), as a model named ``BASE_NAME``.

    Raises:
        TrainingError: no such layer, or one whose output is not a grid (height, width,
            channels) that global average pooling can read.
    """
    try:
        target = find_layer(network, path)
    except KeyError:
        names = [ref.path for ref in iter_layers(network) if _is_grid(ref.layer)]
        hint = f" Layers with a grid: {', '.join(names[-6:])}." if names else ""
        raise TrainingError(f"{title} has no layer '{path}' to cut at.{hint}") from None
    if not _is_grid(target):
        raise TrainingError(
            f"The layer '{path}' of {title} outputs shape {_shape(target)}, not a grid of "
            "(height, width, channels): the new head pools over a grid. Cut at a convolution "
            "block instead (the default is the last one).")
    return keras.Model(network.inputs, _output_in(network, path), name=BASE_NAME)


def any_size(network: keras.Model) -> keras.Model:
    """The same network and weights, taking images of any height and width (its input
    layers, nested ones included, rebuilt without a fixed spatial size)."""
    config = network.get_config()
    _free_input_sides(config)
    try:
        flexible = network.__class__.from_config(config)
        flexible.set_weights(network.get_weights())
    except Exception as exc:  # noqa: BLE001 - Keras raises many types rebuilding a graph
        raise TrainingError(f"The base cannot be rebuilt for another image size "
                            f"({str(exc).splitlines()[0][:200]}).") from exc
    return flexible


def base_choices(runs_dir: str | os.PathLike | None = None, *,
                 imagenet_available: bool = False) -> dict[str, str]:
    """The bases a person can pick (``base_model`` value -> what people read), in the order
    to offer them: the demo model first unless ImageNet weights are at hand, then the runs
    with a trained model, then the catalogue's ImageNet networks."""
    from engine.training.loading import trained_models

    demo = {DEMO: "Shapes demo CNN (bundled, works offline)"}
    imagenet = {s.name: f"{s.title} (ImageNet)" for s in CATALOGUE.values()
                if s.family == "imagenet"}
    try:
        runs = trained_models(runs_dir)
    except TrainingError:  # no runs folder set: no runs to offer
        runs = []
    trained = {f"{RUN_PREFIX}{t.run_id}": f"Run: {t.title}" for t in runs}
    if imagenet_available:
        return {**imagenet, **demo, **trained}
    return {**demo, **trained, **imagenet}


def imagenet_weights_at_hand() -> bool:
    """Whether some catalogue ImageNet network can be had now: its weights are in Keras' cache,
    or this computer is online (so Keras can download them)."""
    from engine.models.loading import cached_weights_path, is_online

    for spec in CATALOGUE.values():
        cached = cached_weights_path(spec) if spec.family == "imagenet" else None
        if cached is not None and cached.is_file():
            return True
    return is_online()


def why_demo_first(imagenet_available: bool) -> str:
    """The sentence the base picker shows about its order ("" when ImageNet comes first)."""
    if imagenet_available:
        return ""
    return ("The bundled demo model comes first: no ImageNet weights are on this computer and "
            "it cannot download them. The demo model needs no download; its features of shapes "
            "transfer to new shapes. ImageNet networks work once their weights are in Keras' "
            "cache (or given as a file).")


# ----------------------------------------------------------------------------- helpers
def _trained_network(name: str, kind: str, runs_dir):
    """(network, preprocessing, input size, source) of a demo, run or file base."""
    if kind == "demo":
        path, card = DEMO_MODEL_PATH, json.loads(DEMO_CARD_PATH.read_text())
        source = "the bundled shapes demo model"
    elif kind == "run":
        from engine.training import runs

        run_id = name[len(RUN_PREFIX):]
        path = runs.run_dir_of(run_id, runs_dir) / runs.MODEL_FILE
        if not path.is_file():
            raise TrainingError(f"The run '{run_id}' has no trained model yet; wait for it to "
                                "finish, or pick another base.")
        card = runs._read_json(path.parent / runs.MODEL_CARD) or {}
        source = f"the model of run {run_id}"
    else:
        path = Path(name).expanduser()
        if not path.is_file():
            raise TrainingError(f"No model file at '{name}' to use as a base.")
        card, source = {}, f"model file {path.name}"
    network = _load(path)
    preprocessing = card.get("preprocessing") or _detected(network)
    shape = network.inputs[0].shape
    size = card.get("input_size") or [shape[1] or 128, shape[2] or 128]
    return network, preprocessing, (int(size[0]), int(size[1])), source


def _load(path: Path) -> keras.Model:
    from engine.models.loading import check_explorable

    try:
        network = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for broken files
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else \
            type(exc).__name__
        raise InvalidModelError(f"'{path.name}' could not be read as a Keras model "
                                f"({reason}).") from exc
    try:
        check_explorable(network, path.name)
    except CNNExplorerError as exc:
        raise InvalidModelError(f"'{path.name}' cannot be a base: {exc}") from exc
    return network


def _detected(network: keras.Model) -> str:
    """``"raw"`` when the network rescales its 0-255 input itself, else ``"unit"``."""
    from engine.models.preprocessing import detect_preprocessing

    return detect_preprocessing(network).mode or "unit"


def _default_layer(network: keras.Model, name: str) -> str:
    from engine.saliency.graph import default_cam_layer

    try:
        return default_cam_layer(network)
    except CNNExplorerError as exc:
        raise TrainingError(f"'{name}' has no convolution block to cut at ({exc})") from exc


def _output_in(network: keras.Model, path: str):
    """The symbolic output of the layer at ``path`` in ``network``'s own graph: a layer of a
    nested model is reached by calling the nested model cut at it on the nested model's
    input tensor in ``network``'s graph."""
    first, _, rest = path.partition(SEPARATOR)
    layer = network.get_layer(first)
    if not rest:
        return layer.output
    inner = keras.Model(layer.inputs, _output_in(layer, rest), name=f"{layer.name}_cut")
    node = layer._inbound_nodes[0]
    return inner(node.input_tensors[0] if len(node.input_tensors) == 1 else node.input_tensors)


def _is_grid(layer) -> bool:
    shape = _shape(layer)
    return shape is not None and len(shape) == 4


def _shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def _free_input_sides(config) -> None:
    """Set the height and width of every 4-D input layer in a model config to None."""
    if isinstance(config, dict):
        if config.get("class_name") == "InputLayer":
            inner = config.get("config", {})
            shape = inner.get("batch_shape")
            if shape is not None and len(shape) == 4:
                inner["batch_shape"] = [shape[0], None, None, shape[3]]
        for value in config.values():
            _free_input_sides(value)
    elif isinstance(config, list):
        for value in config:
            _free_input_sides(value)


def _title(name: str, kind: str) -> str:
    return {"demo": "The demo model", "run": f"The model of {name}",
            "imagenet": CATALOGUE[name].title if name in CATALOGUE else name}.get(
        kind, f"'{Path(name).name}'")
