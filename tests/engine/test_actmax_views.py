"""The Filters page's form and status line: its starting values are the engine's defaults (the
same request as ``plan`` without settings), and what it says at each stage of a layer's job."""

from __future__ import annotations

import keras
import pytest

from engine import actmax
from engine.actmax.views import SIZES, form_defaults, size_choices, status_line
from engine.jobs import CANCELLED, FAILED, FINISHED, RUNNING, Job
from engine.models.explorable import ExplorableModel


def _model(side: int) -> ExplorableModel:
    inputs = keras.Input((side, side, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    return ExplorableModel(keras.Model(inputs, outputs), "m", ["a", "b"], "unit", (side, side))


@pytest.mark.parametrize("side", [64, 32])
def test_the_forms_starting_values_make_the_engines_default_request(side):
    model = _model(side)
    default_side = actmax.default_size(model)[0]
    asked = actmax.plan(model, "conv", [0, 1], **form_defaults(default_side))
    assert asked.key == actmax.plan(model, "conv", [0, 1]).key


def test_the_shift_is_a_sixteenth_of_the_side_and_at_least_a_pixel():
    assert form_defaults(96)["jitter"] == 6
    assert form_defaults(8)["jitter"] == 1


def test_the_models_own_side_is_offered():
    assert size_choices(_model(100)) == sorted(SIZES + (100,))
    assert size_choices(_model(64)) == list(SIZES)


def _job(status, done_text="", started=10.0, ended=52.4):
    job = Job("k", lambda job: None)
    job.status, job.text, job.started, job.ended = status, done_text, started, ended
    return job


def test_without_a_job_the_cache_speaks():
    assert status_line(None, 4, 4, "filters") == "All 4 filters come from the cache."
    assert status_line(None, 0, 4, "filters") == ("0 of 4 filters are in the cache. Press Start "
                                                  "to compute them.")
    assert status_line(None, 1, 6, "classes").endswith("Press Start to compute the rest.")


def test_a_jobs_stages():
    assert status_line(_job(RUNNING, "batch 2"), 2, 4, "filters") == \
        "Computing: 2 of 4 filters done · batch 2"
    assert status_line(_job(RUNNING), 2, 4, "filters") == "Computing: 2 of 4 filters done"
    assert status_line(_job(FINISHED), 4, 4, "filters") == "Done: 4 of 4 filters in 42 s."
    assert status_line(_job(CANCELLED), 3, 4, "filters") == \
        "Stopped: 3 of 4 filters done (kept in the cache)."
    assert status_line(_job(FAILED), 1, 4, "filters") == "Failed after 1 of 4 filters."
