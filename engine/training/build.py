"""The network of each training mode.

- **scratch**: the classic CNN of the catalogue (``engine.models.scratch``), sized to the data
  set's classes;
- **feature extraction**: a trained network's convolutional part (the bundled demo model, a
  run's model, a user's file or a catalogue ImageNet network: ``engine.training.bases``),
  frozen, under a new head: global average pooling, Dense 1024, Dropout 0.5, softmax (the
  classic transfer recipe, Chollet ch. 5; Yosinski et al. 2014 on how transferable features are);
- **fine-tuning**: the same model; after stage 1, ``unfreeze_top`` lets the top layers of the
  base learn too, at a low learning rate;
- **continue**: a ``.keras`` model trained earlier or uploaded.

Every network takes *preprocessed* input, like every model of the explorer: the training
pipeline applies the preprocessing, and ``ExplorableModel`` does when the model is explored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import keras

from engine.data.dataset import open_dataset
from engine.errors import InvalidModelError, TrainingError, WeightsUnavailableError
from engine.models.catalogue import ModelSpec
from engine.models.layers import is_nested_model, iter_layers
from engine.models.loading import cached_weights_path, check_explorable, is_online
from engine.models.preprocessing import PREPROCESSING_MODES
from engine.models.scratch import build_scratch_cnn
from engine.training.config import RunConfig
from engine.training.data import default_image_size
from engine.training.runs import MODEL_CARD

#: the head of feature extraction and fine-tuning
HEAD_UNITS, HEAD_DROPOUT = 1024, 0.5


@dataclass
class BuiltModel:
    """A network ready to compile, and how to feed it.

    Attributes:
        model: the Keras model (takes ``(N, h, w, channels)`` preprocessed input).
        preprocessing: a mode of ``PREPROCESSING_MODES``.
        input_size: (height, width).
        base: name of the nested ImageNet base inside ``model`` (transfer modes), else None.
        source: where the starting weights came from, for people.
        frozen: names of the base layers that stage 1 keeps frozen (the whole base).
    """

    model: keras.Model
    preprocessing: str
    input_size: tuple[int, int]
    base: str | None = None
    source: str = ""
    frozen: list[str] = field(default_factory=list)

    @property
    def channels(self) -> int:
        return int(self.model.inputs[0].shape[-1])


def build_model(config: RunConfig, n_classes: int, *, mixed_precision: bool = False,
                runs_dir=None) -> BuiltModel:
    """The starting network of ``config.mode`` with ``n_classes`` outputs (call it inside the
    distribution strategy's scope). ``runs_dir``: where a ``run:<id>`` base is looked for.

    Raises:
        TrainingError: a base that cannot be had or cut (``engine.training.bases``), or a model
            to continue whose outputs do not match the classes.
        WeightsUnavailableError: ImageNet weights that are neither cached, downloadable nor
            given as a file.
        InvalidModelError: the model to continue cannot be read.
    """
    keras.utils.set_random_seed(config.seed)
    if config.mode == "scratch":
        size = tuple(config.image_size or default_image_size(open_dataset(config.dataset)))
        try:
            model = build_scratch_cnn(size, n_classes, seed=config.seed,
                                      batch_norm=config.batch_norm,
                                      zero_head=config.batch_norm)  # measured with it
        except ValueError as exc:
            raise TrainingError(str(exc)) from exc
        if mixed_precision:
            model = _float32_output(model)
        return BuiltModel(model, "unit", size, source="random initialisation")
    if config.mode in ("feature_extraction", "fine_tuning"):
        return _transfer_model(config, n_classes, runs_dir)
    return _continued_model(config, n_classes)


# ----------------------------------------------------------------------------- transfer
def _transfer_model(config: RunConfig, n_classes: int, runs_dir=None) -> BuiltModel:
    """A trained base (``engine.training.bases``), frozen, under the new head."""
    from engine.training.bases import resolve_base

    base = resolve_base(config.base_model, weights=config.weights, layer=config.base_layer,
                        image_size=config.image_size, runs_dir=runs_dir)
    size = tuple(config.image_size or base.input_size)
    network = base.network
    network.trainable = False
    inputs = keras.Input((*size, 3), name="image")
    # training=False keeps batch normalisation in inference mode in both stages: its moving
    # statistics are part of what was learned on the base's data (Keras' transfer guide).
    x = network(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(HEAD_UNITS, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(HEAD_DROPOUT, name="dropout")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32",
                                 name="predictions")(x)
    model = keras.Model(inputs, outputs, name=f"{_slug(config.base_model)}_transfer")
    frozen = [ref.path for ref in iter_layers(network) if ref.layer.weights
              and not is_nested_model(ref.layer)]
    return BuiltModel(model, base.preprocessing, size, base=network.name,
                      source=f"{base.source}, cut at {base.layer}", frozen=frozen)


def _slug(name: str) -> str:
    stem = Path(name).stem if name.lower().endswith((".keras", ".h5")) else name
    return "".join(c if c.isalnum() else "_" for c in stem)[:40] or "base"


def imagenet_base(spec: ModelSpec, weights: str | None,
                  input_size: tuple[int, int]) -> tuple[keras.Model, str]:
    """``spec``'s network without its classifier, at ``input_size``.

    Args:
        spec: a catalogue ImageNet entry.
        weights: ``"imagenet"`` (the Keras cache, else a download of the file without the
            top), a weights file with or without the classifier top (a file with the top is
            loaded into the full network, then its layers are copied by name), or None.
        input_size: (height, width); convolution weights fit any size.

    Returns:
        (base model, where its weights came from).

    Raises:
        WeightsUnavailableError: with what to do about it.
    """
    shape = (*input_size, 3)
    if weights is None:
        return spec.builder(weights=None, include_top=False, input_shape=shape), \
            "random initialisation (weights=None)"
    if weights == "imagenet":
        cached = cached_weights_path(spec)
        if cached is not None and cached.is_file():
            return _base_from_full_file(spec, str(cached), shape), \
                f"ImageNet weights from the Keras cache ({cached.name})"
        if not is_online():
            raise WeightsUnavailableError(
                f"{spec.title} needs its ImageNet weights and this computer cannot download "
                f"them. Copy '{spec.weights_file}' to {cached} (Keras' cache), or give the "
                "path of a weights file in the settings.")
        try:
            return spec.builder(weights="imagenet", include_top=False, input_shape=shape), \
                "ImageNet weights downloaded by Keras"
        except Exception as exc:  # Keras raises bare Exception for failed downloads
            raise WeightsUnavailableError(
                f"Downloading the ImageNet weights of {spec.title} failed ({_first_line(exc)}); "
                "check the internet connection or give a weights file.") from exc
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"No weights file at '{weights}'. Give the path of a "
                                      f"{spec.title} weights file such as '{spec.weights_file}'.")
    try:
        return spec.builder(weights=str(path), include_top=False, input_shape=shape), \
            f"weights file {path.name}"
    except Exception:  # not a file without the top: try it as one with the top below
        pass
    return _base_from_full_file(spec, str(path), shape), f"weights file {path.name}"


def _base_from_full_file(spec: ModelSpec, path: str, shape) -> keras.Model:
    """Load a weights file *with* the classifier top into the full network, then copy every
    layer the base shares with it (by name): the same weights, at any input size."""
    try:
        full = spec.builder(weights=path, include_top=True,
                            input_shape=(*spec.input_size, 3))
    except Exception as exc:  # Keras raises ValueError/OSError/bare Exception here
        raise WeightsUnavailableError(
            f"The weights file '{Path(path).name}' does not fit {spec.title} "
            f"({_first_line(exc)}). Use the file Keras calls '{spec.weights_file}', or the "
            "one without the top ('..._no_top.h5').") from exc
    base = spec.builder(weights=None, include_top=False, input_shape=shape)
    by_name = {layer.name: layer for layer in full.layers}
    for layer in base.layers:
        source = by_name.get(layer.name)
        if layer.weights and source is not None:
            layer.set_weights(source.get_weights())
    return base


def unfreeze_top(model: keras.Model, base: str, n_layers: int) -> list[str]:
    """Let the top ``n_layers`` layers with weights of the nested ``base`` learn (stage 2 of
    fine-tuning); everything below stays frozen. Layers inside models nested in the base count
    one by one. Batch normalisation layers among them stay frozen (their statistics come from
    the base's data; see ``_transfer_model``). Recompile after.

    Returns:
        The paths (inside the base) of the layers now trainable, bottom to top.
    """
    base_model = model.get_layer(base)
    leaves = [ref for ref in iter_layers(base_model) if not is_nested_model(ref.layer)]
    with_weights = [ref for ref in leaves if ref.layer.weights]
    top = {id(ref.layer) for ref in with_weights[-n_layers:]}
    base_model.trainable = True  # nested models too; each leaf is set below
    unfrozen = []
    for ref in leaves:
        layer = ref.layer
        layer.trainable = (id(layer) in top
                           and not isinstance(layer, keras.layers.BatchNormalization))
        if layer.trainable and layer.weights:
            unfrozen.append(ref.path)
    return unfrozen


# ----------------------------------------------------------------------------- continue
def _continued_model(config: RunConfig, n_classes: int) -> BuiltModel:
    path = Path(config.init_model).expanduser()
    if not path.is_file():
        raise TrainingError(f"No model file at '{config.init_model}' to continue from.")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for broken files
        raise InvalidModelError(f"'{path.name}' could not be read as a Keras model "
                                f"({_first_line(exc)}).") from exc
    size = tuple(config.image_size or check_explorable(model, path.name))
    n_out = int(model.outputs[0].shape[-1])
    if n_out != n_classes:
        raise TrainingError(f"'{path.name}' has {n_out} outputs but the data set has "
                            f"{n_classes} classes; continue a model trained on the same "
                            "classes, or train a new one.")
    card = _card_next_to(path)
    preprocessing = config.preprocessing or card.get("preprocessing", "unit")
    if preprocessing not in PREPROCESSING_MODES:
        raise TrainingError(f"Unknown preprocessing '{preprocessing}'; choose one of "
                            f"{', '.join(PREPROCESSING_MODES)}.")
    return BuiltModel(model, preprocessing, size, base=card.get("base"),
                      source=f"continued from {path.name}")


def _card_next_to(path: Path) -> dict:
    try:
        return json.loads((path.parent / MODEL_CARD).read_text())
    except (OSError, ValueError):
        return {}


def _float32_output(model: keras.Model) -> keras.Model:
    """The same network with its output layer computing in float32 (mixed precision keeps
    the softmax out of float16, where it can overflow)."""
    last = model.layers[-1].name

    def clone(layer):
        config = layer.get_config()
        if layer.name == last:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
