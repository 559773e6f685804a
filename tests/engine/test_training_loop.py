"""The one training loop (engine.training.loop): a run, the Tour's quick fit and the demo model
train as plain Keras does, each checked against ``model.fit`` written out by hand; the demo
model augments with the layers a run on a demo data set uses; one ``fold_batch_norm``."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from engine.data import export_demo, load_augmentation
from engine.data.shapes import make_shapes
from engine.errors import InvalidModelError
from engine.models import demo
from engine.models.folding import fold_batch_norm
from engine.models.scratch import build_scratch_cnn
from engine.training import read_metrics, train
from engine.training.data import array_pipeline
from engine.training.quick import QuickFitConfig, demo_data, quick_fit
from engine.training.runs import create_run
from tests.engine.training_helpers import N_TRAIN, split_arrays, tiny_config, tiny_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def _epoch_means(points, config: QuickFitConfig) -> list[float]:
    """Each epoch's mean batch loss, weighted by the batches' images (Keras' epoch loss)."""
    sizes = [min(config.batch_size, config.n_train - b * config.batch_size)
             for b in range(config.steps_per_epoch)]
    losses = np.reshape([p.loss for p in points], (config.epochs, len(sizes)))
    return list((losses * sizes).sum(axis=1) / sum(sizes))


def test_the_quick_fit_learns_as_plain_keras_fit_on_its_images_in_its_orders():
    # 20 images in batches of 8, 8 and 4: the last, smaller batch weighs less in the mean.
    config = QuickFitConfig(n_train=20, n_validation=12, epochs=2, batch_size=8, seed=3)
    result = quick_fit(config)
    # The reference: the classic way, as the quick fit did before the one loop: NumPy arrays,
    # the images in an order drawn from the seed each epoch, sparse cross-entropy, Adam.
    (images, labels), (val_images, val_labels) = demo_data(config), demo_data(config, True)
    x, x_val = images / np.float32(255), val_images / np.float32(255)
    model = build_scratch_cnn((32, 32), 6, seed=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = model.evaluate(x_val, val_labels, verbose=0)
    rng, losses, val_losses = np.random.default_rng(3), [], []
    for epoch in range(2):
        order = rng.permutation(20)
        history = model.fit(x[order], labels[order], batch_size=8, epochs=1, shuffle=False,
                            validation_data=(x_val, val_labels), verbose=0)
        losses += history.history["loss"]
        val_losses += history.history["val_loss"]
    assert [p.epoch for p in result.validation] == [0, 1, 2]
    assert result.validation[0].loss == pytest.approx(before[0], rel=1e-5)
    assert result.validation[0].accuracy == pytest.approx(before[1])
    assert _epoch_means(result.points, config) == pytest.approx(losses, rel=1e-4)
    assert [p.loss for p in result.validation[1:]] == pytest.approx(val_losses, rel=1e-4)


def test_a_run_learns_as_plain_keras_fit_with_its_recipe(dataset, tmp_path):
    # One batch of every training image per epoch: batch normalisation's statistics, and so
    # the step, do not depend on the order the run's pipeline reads the files in.
    config = tiny_config(dataset, batch_size=N_TRAIN, epochs=4, probe_images=0, evaluate=False)
    run_dir = create_run(config, tmp_path, launch=False)
    assert train(run_dir).state == "finished"
    rows = [r for r in read_metrics(run_dir.name, tmp_path) if r["kind"] == "epoch"]
    # The reference: the scratch CNN as a run builds it (batch norm, the classifier at zero),
    # images read with Pillow, the recipe of RunConfig's documentation spelt out in Keras:
    # Adam at 2e-3 rising over the first quarter of the 4 steps, then a cosine down to 0,
    # label smoothing 0.1.
    (x, y), (x_val, y_val) = split_arrays(dataset, "train"), split_arrays(dataset, "validation")
    model = build_scratch_cnn((32, 32), 6, seed=config.seed, batch_norm=True, zero_head=True)
    schedule = keras.optimizers.schedules.CosineDecay(0.0, 3, warmup_target=2e-3,
                                                      warmup_steps=1)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
                  metrics=["accuracy"])
    history = model.fit(x / np.float32(255), np.eye(6)[y], batch_size=N_TRAIN, epochs=4,
                        validation_data=(x_val / np.float32(255), np.eye(6)[y_val]),
                        shuffle=False, verbose=0).history
    assert [r["loss"] for r in rows] == pytest.approx(history["loss"], rel=1e-3)
    assert [r["val_loss"] for r in rows] == pytest.approx(history["val_loss"], rel=1e-3)
    assert [r["accuracy"] for r in rows] == pytest.approx(history["accuracy"], abs=1e-6)


# ------------------------------------------------------------------------------ the demo
def test_the_demo_model_augments_as_a_run_on_a_demo_data_set(tmp_path):
    # the pages make demo data sets with the mirrors, and a run on one augments with them
    made = export_demo(tmp_path, 36, size=16, mirrors=True)
    assert demo.AUGMENTATION == load_augmentation(made)
    assert not demo.AUGMENTATION.is_identity


def test_augmented_batches_are_the_images_turned_and_mirrored_every_way():
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), np.uint8)
    symmetries = [np.rot90(m, k) for m in (image, image[:, ::-1]) for k in range(4)]
    assert len({s.tobytes() for s in symmetries}) == 8  # a noise image: 8 different pictures
    batches = array_pipeline(np.repeat(image[None], 200, axis=0), np.zeros(200, np.int64), 50,
                             "raw", augment=demo.AUGMENTATION, seed=0)
    seen = set()
    for x, _ in batches:
        for out in np.asarray(x):
            matches = [i for i, s in enumerate(symmetries) if np.array_equal(out, s)]
            assert len(matches) == 1  # exactly a symmetry of the square, nothing else
            seen.add(matches[0])
    assert seen == set(range(8))


def test_training_the_demo_model_writes_a_card_that_its_model_agrees_with(tmp_path):
    config = dataclasses.replace(demo.TrainingConfig(), train_images=64, heldout_images=30,
                                 epochs=1)
    card = demo.train_demo_model(tmp_path, config, verbose=0)
    model = keras.saving.load_model(tmp_path / "demo_model.keras", safe_mode=True)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    held_out = make_shapes(30, size=64, seed=config.heldout_seed)
    predicted = model.predict(held_out.images / np.float32(255), verbose=0).argmax(axis=1)
    assert card["heldout_accuracy"] == pytest.approx((predicted == held_out.labels).mean(),
                                                     abs=1e-4)
    assert np.trace(card["confusion_matrix"]) == (predicted == held_out.labels).sum()
    assert json.loads((tmp_path / "demo_model.json").read_text()) == card


# ------------------------------------------------------------------------------ folding
def test_folding_a_network_of_no_family_says_so():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="conv_bn")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(InvalidModelError, match="'mine'"):
        fold_batch_norm(keras.Model(inputs, outputs, name="mine"))


def test_a_mixed_precision_scratch_network_folds_into_a_float32_one():
    from engine.models.layers import dtype_policy
    from tests.engine.training_helpers import random_batch_norm_statistics

    with dtype_policy("mixed_float16"):
        trained = build_scratch_cnn((32, 32), 3, seed=1, batch_norm=True)
    rng = random_batch_norm_statistics(trained, 1)
    plain = fold_batch_norm(trained)
    assert {layer.compute_dtype for layer in plain.layers if layer.weights} == {"float32"}
    x = rng.uniform(0, 1, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(plain(x), trained(x, training=False), atol=2e-3)  # float16
