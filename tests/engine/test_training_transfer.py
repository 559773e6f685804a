"""Feature extraction and fine-tuning: the base is frozen, then exactly the named top layers
learn; pretrained weights reach the base from a file with or without the classifier top."""

from __future__ import annotations


import keras
import numpy as np
import pytest

from engine.models.catalogue import CATALOGUE
from engine.training import read_metrics
from engine.training.build import build_model, imagenet_base, unfreeze_top
from engine.training.run import train
from engine.training.runs import create_run
from tests.conftest import MOBILENET_WEIGHTS
from tests.engine.training_helpers import tiny_config, tiny_dataset

BASE = "mobilenet_0.25"
N_UNFROZEN = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def _config(dataset, **changes):
    settings = dict(mode="fine_tuning", base_model=BASE, weights=None, epochs=1,
                    fine_tune_epochs=1, fine_tune_layers=N_UNFROZEN, probe_images=2)
    return tiny_config(dataset, **{**settings, **changes})


def _names(weights):
    return sorted(w.path for w in weights)


def test_feature_extraction_trains_only_the_new_head(dataset):
    built = build_model(_config(dataset, mode="feature_extraction"), 6)
    head = [built.model.get_layer(n) for n in ("fc", "predictions")]
    assert _names(built.model.trainable_weights) == _names(
        w for layer in head for w in layer.weights)
    assert [type(layer).__name__ for layer in built.model.layers[2:]] == [
        "GlobalAveragePooling2D", "Dense", "Dropout", "Dense"]
    assert built.model.get_layer("fc").units == 1024
    assert built.model.get_layer("dropout").rate == 0.5
    assert built.preprocessing == "tf"  # MobileNet's own


def test_unfreezing_the_top_layers_makes_exactly_their_weights_trainable(dataset):
    built = build_model(_config(dataset), 6)
    base = built.model.get_layer(built.base)
    unfrozen = unfreeze_top(built.model, built.base, N_UNFROZEN)
    with_weights = [layer for layer in base.layers if layer.weights]
    top = with_weights[-N_UNFROZEN:]
    expected = [layer.name for layer in top
                if not isinstance(layer, keras.layers.BatchNormalization)]
    assert unfrozen == expected and len(unfrozen) >= 1
    head = [w for n in ("fc", "predictions") for w in built.model.get_layer(n).weights]
    learned = [w for layer in top if layer.name in unfrozen for w in layer.trainable_weights]
    assert _names(built.model.trainable_weights) == _names(head + learned)


@pytest.fixture(scope="module")
def fine_tuned(dataset, tmp_path_factory):
    """A fine-tuning run of one epoch per stage. With the shared ImageNet weights when they are
    here: a random MobileNet's activations vanish (about 1e-17 at the top), so its layers
    would get no gradient to learn from."""
    weights = str(MOBILENET_WEIGHTS) if MOBILENET_WEIGHTS.is_file() else None
    config = _config(dataset, weights=weights,
                     probe_images=0, evaluate=False)
    initial = build_model(config, 6).model  # the run builds the same weights (same seed)
    runs_dir = tmp_path_factory.mktemp("runs")
    status = train(create_run(config, runs_dir, launch=False))
    stage = next(r for r in read_metrics(status.run_id, runs_dir) if r.get("event") == "stage")
    final = keras.saving.load_model(status.run_dir / "checkpoints" / "last.keras")
    return config, status, stage, initial, final


def test_stage_two_unfreezes_the_named_layers_for_the_optimizer(fine_tuned):
    _, status, stage, _, final = fine_tuned
    assert status.state == "finished" and status.epochs_done == 2
    assert stage["epoch"] == 1 and stage["stage"] == 2 and len(stage["layers"]) >= 1
    base = final.get_layer(status.info["base"])
    trainable = {layer.name for layer in base.layers if layer.trainable and layer.weights}
    assert trainable == set(stage["layers"])
    # the optimizer of stage 2 keeps moments for exactly the head and the named layers
    expected = {w.path for w in final.trainable_weights}
    assert {w.path for name in stage["layers"] for w in base.get_layer(name).weights} <= expected
    moments = {v.path for v in final.optimizer.variables if "momentum" in v.path}
    assert len(moments) == len(expected)
    assert all(any(p.replace("/", "_") in m for m in moments) for p in expected)


def test_fine_tuning_changes_exactly_the_unfrozen_layers_of_the_base(fine_tuned,
                                                                    mobilenet_weights):
    _, status, stage, initial, final = fine_tuned
    before, after = initial.get_layer(status.info["base"]), final.get_layer(status.info["base"])
    changed = {layer.name for layer in before.layers if layer.weights and not all(
        np.array_equal(a, b) for a, b in zip(layer.get_weights(),
                                             after.get_layer(layer.name).get_weights()))}
    assert changed == set(stage["layers"])  # the named layers learned, nothing else did
    for name in ("fc", "predictions"):
        assert not np.array_equal(initial.get_layer(name).get_weights()[0],
                                  final.get_layer(name).get_weights()[0])


def test_a_weights_file_with_the_top_fills_the_base_at_another_input_size(mobilenet_weights):
    path = str(mobilenet_weights)
    base, source = imagenet_base(CATALOGUE[BASE], path, (96, 96))
    full = keras.applications.MobileNet(alpha=0.25, weights=path, input_shape=(224, 224, 3))
    assert base.input_shape[1:3] == (96, 96) and "mobilenet_v1_0.25_224.h5" in source
    compared = 0
    for layer in (x for x in base.layers if x.weights):
        for a, b in zip(layer.get_weights(), full.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b)
            compared += 1
    assert compared == len(base.weights) > 0
