"""What the Train page says about runs (engine.training.views), against hand-made statuses,
metrics rows and evaluations."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from engine.training.evaluate import Evaluation
from engine.training.lesson import LessonRow
from engine.training.runs import RunStatus
from engine.training.views import (class_rows, compared_runs, duration_text, evaluation_metrics,
                                   lesson_progress, lesson_table, log_tail, mistake_captions,
                                   probe_captions, run_label, run_to_show, run_view)


def _status(run_id="r1", state="finished", **changes) -> RunStatus:
    values = dict(run_id=run_id, run_dir=Path("/runs") / run_id, name=f"run {run_id}",
                  mode="scratch", state=state, message="", created=0.0, epochs_done=0,
                  total_epochs=3, steps_per_epoch=10, batch_size=8, pid=None, info={})
    values.update(changes)
    return RunStatus(**values)


def test_durations_in_seconds_minutes_and_hours():
    assert duration_text(None) == "estimating..."
    assert duration_text(44.6) == "45 s"
    assert duration_text(125) == "2 min 05 s"
    assert duration_text(3720) == "1 h 02 min"


def test_the_run_label_says_going_while_a_run_is_active():
    created = time.mktime((2024, 3, 5, 14, 7, 0, 0, 0, -1))
    assert run_label(_status(created=created)) == "run r1 · finished · 05 Mar 14:07"
    assert run_label(_status(state="stopping", created=created)).startswith("run r1 · going")


def test_the_run_shown_is_the_current_one_else_the_newest_going_else_the_newest():
    statuses = [_status("c"), _status("b", state="running"), _status("a")]
    assert run_to_show(statuses, "a") == "a"
    assert run_to_show(statuses, None) == "b"
    assert run_to_show(statuses, "deleted") == "b"
    assert run_to_show([_status("c"), _status("a")], None) == "c"


def test_a_comparison_starts_with_the_run_shown_and_three_others():
    assert compared_runs(["e", "d", "c", "b", "a"], "c") == ["c", "e", "d", "b"]
    assert compared_runs(["a"], "a") == ["a"]


def _rows():
    """Epoch 0 done (10 batches, 1 s each), then 5 batches of epoch 1: 1.5 of 3 epochs in 16 s."""
    rows = [{"kind": "event", "event": "start", "epoch": 0, "time": 0.0}]
    rows += [{"kind": "batch", "epoch": 0, "batch": b, "time": 1.0 + b, "lr": 1e-3}
             for b in range(10)]
    rows.append({"kind": "epoch", "epoch": 0, "time": 11.0, "lr": 1e-3})
    rows += [{"kind": "batch", "epoch": 1, "batch": b, "time": 12.0 + b} for b in range(5)]
    return rows


def test_a_running_run_shows_its_epoch_batch_eta_and_counters():
    view = run_view(_status(state="running"), _rows())
    # half done in 16 s: 16 s left; 13 one-second gaps inside epochs of 8 images each
    assert view.progress_text == "Running · epoch 2/3 · batch 5/10 · ETA 16 s"
    assert view.fraction == 0.5
    assert dict(view.metrics) == {"Epoch": "1/3", "Batch": "5/10", "Learning rate": "0.001",
                                  "Stage": "1 of 1", "Images / s": "8"}
    assert view.notices == ()
    assert view.mode.startswith("Train from scratch")


def test_an_ended_run_says_how_it_ended():
    finished = run_view(_status(message="Done."), _rows())
    assert finished.progress_text == "Finished after 1/3 epochs"
    assert dict(finished.metrics)["Batch"] == "—" and finished.notices == (("ended", "Done."),)
    diverged = run_view(_status(state="diverged", message="Lower it."), [])
    assert diverged.notices == (("diverged", "Lower it."),)
    assert dict(diverged.metrics)["Learning rate"] == "—"
    crashed = run_view(_status(state="crashed", message="Gone.", warning="Not learning."), [])
    assert crashed.notices == (("warning", "Not learning."), ("failed", "Gone."))


def _evaluation() -> Evaluation:
    confusion = np.array([[3, 1], [0, 4]])  # one circle taken for a star
    return Evaluation(split="test", class_names=["circle", "star"], confusion=confusion,
                      precision=np.array([1.0, 0.8]), recall=np.array([0.75, 1.0]),
                      accuracy=7 / 8, misclassified=[("test/circle/1.png", 0, 1, 0.93)])


def test_the_evaluation_counters_rows_and_mistake_captions():
    report = _evaluation()
    assert evaluation_metrics(report) == [("Accuracy on 'test'", "87.5%"), ("Images", "8"),
                                          ("Misclassified", "1")]
    assert class_rows(report) == [
        {"class": "circle", "precision": 1.0, "recall": 0.75, "images": 4},
        {"class": "star", "precision": 0.8, "recall": 1.0, "images": 4}]
    assert mistake_captions(report, 5) == ["circle → star (93%)"]


def test_probe_captions_give_the_true_class_and_what_the_model_says_instead():
    probabilities = np.array([[0.87, 0.13], [0.6, 0.4]])
    assert probe_captions(["star", "circle"], [0, 1], probabilities) == [
        "star: 87%", "circle: 40% (says star)"]


def test_the_log_tail_is_the_end_of_the_log(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text("abcdef")
    assert log_tail(log, chars=3) == "def"
    log.write_text("")
    assert log_tail(log) == "(empty)"


def _lesson_row(label, state, seconds=0.0, val=math.nan):
    return LessonRow(label, None if state == "waiting" else "r", state, 2, val, math.nan,
                     math.nan, math.nan, seconds, "")


def test_the_lesson_progress_counts_the_runs_that_ended():
    rows = [_lesson_row("A", "finished"), _lesson_row("B", "running"),
            _lesson_row("C", "waiting"), _lesson_row("D", "failed")]
    assert lesson_progress(rows) == (0.5, "2 of 4 runs ended · A: finished · B: running · "
                                          "C: waiting · D: failed")


def test_the_lesson_table_leaves_missing_numbers_empty():
    (row,) = lesson_table([_lesson_row("A", "finished", seconds=90, val=0.5)])
    assert row["Best validation accuracy"] == 0.5 and row["Test accuracy"] is None
    assert row["Time"] == "1.5 min" and row["Run id"] == "r"
    (waiting,) = lesson_table([_lesson_row("B", "waiting")])
    assert waiting["Time"] == "" and waiting["Run id"] == ""
