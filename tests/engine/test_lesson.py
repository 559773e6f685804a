"""The small-data lesson: four ordinary runs started one after another, found again from the
record, compared in a table whose numbers are read back here from the runs' own files."""

from __future__ import annotations

import json
import math

import pytest

from engine.training.lesson import (STEPS, LessonConfig, lesson_curves, lesson_rows,
                                    lesson_work, list_lessons, start_lesson)
from engine.training.run import train
from engine.training.runs import create_run
from tests.engine.training_helpers import tiny_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def _config(dataset, **changes):
    return LessonConfig(dataset=str(dataset.folder), **{"epochs": 1, **changes})


def test_the_four_runs_are_scratch_without_and_with_augmentation_then_the_demo_base(dataset):
    configs = _config(dataset, epochs=6).run_configs()
    assert [(c.mode, c.augment) for c in configs] == [(m, a) for _, m, a in STEPS] == [
        ("scratch", False), ("scratch", True), ("feature_extraction", True),
        ("fine_tuning", True)]
    assert {c.base_model for c in configs} == {"demo"}
    assert configs[3].fine_tune_epochs == 3 and configs[3].total_epochs == 9
    assert len({c.seed for c in configs}) == 1 and all(c.epochs == 6 for c in configs)


def test_an_experiment_runs_its_steps_in_order_and_the_table_reads_their_files(dataset,
                                                                             tmp_path):
    runs_dir = tmp_path / "runs"
    lesson = start_lesson(_config(dataset, fine_tune_epochs=1), runs_dir)
    assert [x.lesson_id for x in list_lessons(runs_dir)] == [lesson.lesson_id]
    started, said = [], []

    def start(config):
        config.probe_images = 0
        status = train(create_run(config, runs_dir, launch=False))
        started.append((config.mode, config.augment))
        return status.run_id

    ids = lesson_work(lesson.lesson_id, runs_dir, limit=1, start=start, poll_s=0.01,
                      report=said.append)
    assert started == [(m, a) for _, m, a in STEPS] and len(ids) == 4
    found = list_lessons(runs_dir)[0]  # what a reloaded page reads
    assert found.run_ids == ids and found.complete
    rows = lesson_rows(found, runs_dir)
    assert [r.label for r in rows] == [label for label, _, _ in STEPS]
    for row in rows:
        assert row.state == "finished"
        epochs = [json.loads(line) for line in
                  (runs_dir / row.run_id / "metrics.jsonl").read_text().splitlines()
                  if '"kind":"epoch"' in line]
        best = max(epochs, key=lambda r: r["val_accuracy"])
        assert row.best_val_accuracy == pytest.approx(best["val_accuracy"])
        assert row.gap == pytest.approx(best["accuracy"] - best["val_accuracy"])
        status = json.loads((runs_dir / row.run_id / "status.json").read_text())
        assert row.test_accuracy == pytest.approx(status["evaluation_accuracy"])
        assert 0 < row.seconds < 600 and row.verdict
    assert [label for label, _ in lesson_curves(found, runs_dir)] == [r.label for r in rows]
    # starting it again starts nothing new: every step has its run
    assert lesson_work(lesson.lesson_id, runs_dir, limit=1, start=start, poll_s=0.01) == ids
    assert len(started) == 4


def test_a_cancelled_experiment_starts_no_run_and_its_table_says_waiting(dataset, tmp_path):
    runs_dir = tmp_path / "runs"
    lesson = start_lesson(_config(dataset), runs_dir)
    calls = []
    assert lesson_work(lesson.lesson_id, runs_dir, limit=1, start=calls.append,
                       cancelled=lambda: True, poll_s=0.01) == []
    assert calls == []
    rows = lesson_rows(list_lessons(runs_dir)[0], runs_dir)
    assert [r.state for r in rows] == ["waiting"] * 4
    assert all(math.isnan(r.test_accuracy) for r in rows)


def test_wrong_settings_are_refused_before_anything_waits_in_line(dataset, tmp_path):
    from engine.errors import TrainingError

    with pytest.raises(TrainingError, match="epochs"):
        start_lesson(_config(dataset, epochs=0), tmp_path / "runs")
    with pytest.raises(TrainingError, match="not a base model"):
        start_lesson(_config(dataset, base_model="nope"), tmp_path / "runs")
    assert list_lessons(tmp_path / "runs") == []


@pytest.mark.parametrize("train, val, words", [
    (0.81, 0.24, "memorises: 81% right on its training images, 24% on new ones"),
    (0.30, 0.25, "learns little"), (0.95, 0.60, "overfits"), (0.87, 0.83, "generalises"),
    (math.nan, 0.5, "")])
def test_the_gap_in_plain_words(train, val, words):
    from engine.training.lesson import _verdict

    assert _verdict(train, val).startswith(words)
