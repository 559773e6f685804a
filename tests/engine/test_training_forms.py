"""The Train page's new-run form as data (engine.training.forms): the suggested image side and
the RunConfig its widget values make."""

from __future__ import annotations

import pytest

from engine.data import import_folder
from engine.errors import TrainingError
from engine.training.config import RunConfig
from engine.training.forms import (DEFAULT_SMOOTHING, DEMO_TRAINING_SIZE, IMAGE_SIZES,
                                   SMOOTHINGS, TRAINING_DEMO_SIZES, nearest, run_config,
                                   suggested_side)
from tests.engine.dataset_helpers import png, write_tree


def test_nearest_takes_the_closest_choice_and_the_first_of_a_tie():
    assert nearest(50, IMAGE_SIZES) == 48
    assert nearest(56, IMAGE_SIZES) == 48  # 8 from 48 and from 64
    assert nearest(1000, IMAGE_SIZES) == 224


def test_the_suggested_side_is_the_images_own_as_a_slider_choice(tmp_path):
    # 60-pixel images: the median side rounded to a multiple of 16 is 64, a choice.
    folder = write_tree(tmp_path / "pets", {f"{c}/{i}.png": png(size=(60, 60))
                                            for c in ("cats", "dogs") for i in range(2)})
    assert suggested_side(import_folder(folder, tmp_path / "data")) == 64
    assert suggested_side(None) == 128


def test_the_offered_defaults_are_among_the_choices():
    assert DEMO_TRAINING_SIZE in TRAINING_DEMO_SIZES
    assert DEFAULT_SMOOTHING == 0.9 and DEFAULT_SMOOTHING in SMOOTHINGS


def test_run_config_turns_widget_values_into_settings(tmp_path):
    config = run_config({"dataset": str(tmp_path), "mode": "fine_tuning", "name": "  mine ",
                         "image_side": 0, "base_model": " demo ", "base_layer": "  ",
                         "weights": "", "epochs": 3.0, "mixed_precision": 0,
                         "learning_rate": 0.01})
    assert config.name == "mine" and config.base_model == "demo"
    assert config.image_size is None  # 0: the base's own size
    assert config.base_layer is None and config.weights == "imagenet"
    assert config.epochs == 3 and isinstance(config.epochs, int)
    assert config.mixed_precision is False
    assert config.learning_rate == 0.01
    # what the form did not give keeps RunConfig's default
    assert config.batch_size == RunConfig.batch_size and config.warmup == RunConfig.warmup


def test_run_config_makes_a_square_and_keeps_a_given_layer(tmp_path):
    config = run_config({"dataset": str(tmp_path), "image_side": 96,
                         "base_layer": " block3_conv2 ", "init_model": ""})
    assert config.image_size == (96, 96)
    assert config.base_layer == "block3_conv2" and config.init_model is None


def test_run_config_refuses_a_key_that_is_no_setting(tmp_path):
    with pytest.raises(TrainingError, match="Unknown training settings"):
        run_config({"dataset": str(tmp_path), "epoch": 3})
