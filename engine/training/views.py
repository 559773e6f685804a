"""What the Train page says about runs, in words and numbers: a run's progress line and
counters, which run to show, its evaluation's table and captions, the timeline's captions and
the small-data experiment's table. Plain text (no Markdown): the page escapes and draws it."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from engine.training.config import MODES
from engine.training.evaluate import Evaluation
from engine.training.metrics import progress
from engine.training.runs import ACTIVE_STATES, RunStatus

#: how much of a run's log the page shows (its end)
LOG_TAIL_CHARS = 6000
#: runs a comparison starts with: the run shown and the newest others
COMPARED = 4


def duration_text(seconds: float | None) -> str:
    """``"45 s"``, ``"2 min 05 s"``, ``"1 h 02 min"``; ``"estimating..."`` for None."""
    if seconds is None:
        return "estimating..."
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def run_label(status: RunStatus) -> str:
    """What the run pickers list: name, state (``going`` while active) and local start time."""
    when = time.strftime("%d %b %H:%M", time.localtime(status.created))
    return f"{status.name} · {'going' if status.active else status.state} · {when}"


def run_to_show(statuses: Sequence[RunStatus], current: str | None) -> str:
    """The run the page shows: ``current`` while it exists, else (a new session, a reload, a
    deleted run) the newest run still going, else the newest run.

    Args:
        statuses: every run, newest first (``list_runs``); at least one.
        current: the run id shown before, or None.
    """
    if any(s.run_id == current for s in statuses):
        return current
    going = [s for s in statuses if s.active]
    return (going or list(statuses))[0].run_id


def compared_runs(run_ids: Sequence[str], current: str) -> list[str]:
    """The runs a comparison starts with: ``current`` and the first others of ``run_ids``."""
    return [current] + [i for i in run_ids if i != current][:COMPARED - 1]


@dataclass(frozen=True)
class RunView:
    """One run's line, counters and notices for the page.

    Attributes:
        mode: the mode in words.
        fraction: share of the run done, in [0, 1].
        progress_text: ``"Running · epoch 3/10 · batch 5/40 · ETA 2 min 05 s"`` while active,
            ``"Finished after 10/10 epochs"`` after.
        metrics: ``(label, value)`` of the counters: epoch, batch, learning rate, stage,
            images per second ("—" where there is no value yet).
        notices: ``(kind, text)``: ``"warning"`` (not learning), ``"diverged"``, ``"failed"``
            (failed or crashed) or ``"ended"`` (how a run that ended normally ended).
    """

    mode: str
    fraction: float
    progress_text: str
    metrics: tuple[tuple[str, str], ...]
    notices: tuple[tuple[str, str], ...]


def run_view(status: RunStatus, rows: list[dict]) -> RunView:
    """The page's view of a run from its status and its metrics rows so far."""
    p = progress(rows, status.total_epochs, status.steps_per_epoch, status.batch_size)
    if status.active:
        text = (f"{status.state.capitalize()} · epoch {min(p.epoch + 1, p.total_epochs)}"
                f"/{p.total_epochs} · batch {p.batch}/{p.steps_per_epoch} · ETA "
                f"{duration_text(p.eta_seconds)}")
    else:
        text = f"{status.state.capitalize()} after {p.epoch}/{p.total_epochs} epochs"
    metrics = (
        ("Epoch", f"{p.epoch}/{p.total_epochs}"),
        ("Batch", f"{p.batch}/{p.steps_per_epoch}" if status.active else "—"),
        ("Learning rate", "—" if p.learning_rate is None else f"{p.learning_rate:.3g}"),
        ("Stage", f"{p.stage} of {len(status.info.get('stages', [1]))}"),
        ("Images / s", "—" if p.images_per_second is None else f"{p.images_per_second:,.0f}"))
    notices = [("warning", status.warning)] if status.warning else []
    if status.state == "diverged":
        notices.append(("diverged", status.message))
    elif status.state in ("failed", "crashed"):
        notices.append(("failed", status.message))
    elif status.message and not status.active:
        notices.append(("ended", status.message))
    return RunView(MODES.get(status.mode, status.mode), p.fraction, text, metrics,
                   tuple(notices))


def evaluation_metrics(report: Evaluation) -> list[tuple[str, str]]:
    """``(label, value)``: the accuracy on the split, the images and the mistakes."""
    return [(f"Accuracy on '{report.split}'", f"{report.accuracy:.1%}"),
            ("Images", f"{int(report.confusion.sum()):,}"),
            ("Misclassified", f"{len(report.misclassified):,}")]


def class_rows(report: Evaluation) -> list[dict]:
    """One row per class: ``class``, ``precision``, ``recall`` (shares) and ``images``."""
    return [{"class": n, "precision": p, "recall": r, "images": int(s)}
            for n, p, r, s in zip(report.class_names, report.precision, report.recall,
                                  report.support)]


def mistake_captions(report: Evaluation, n: int) -> list[str]:
    """``"circle → star (93%)"`` (true → predicted, its confidence) of the first ``n``
    misclassified images."""
    names = report.class_names
    return [f"{names[t]} → {names[q]} ({c:.0%})" for _, t, q, c in report.misclassified[:n]]


def probe_captions(class_names: Sequence[str], labels: Sequence[int],
                   probabilities: np.ndarray) -> list[str]:
    """``"star: 87%"`` (the true class's probability) per timeline image, with
    ``" (says circle)"`` where another class is the most probable.

    Args:
        class_names: the classes.
        labels: (P,) the images' true classes.
        probabilities: (P, C) the model's probabilities at one epoch.
    """
    captions = []
    for i, true in enumerate(labels):
        said = int(np.argmax(probabilities[i]))
        captions.append(f"{class_names[true]}: {probabilities[i, true]:.0%}"
                        + ("" if said == true else f" (says {class_names[said]})"))
    return captions


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The last ``chars`` characters of a run's log; ``"(empty)"`` when it is empty."""
    return path.read_text(errors="replace")[-chars:] or "(empty)"


def lesson_progress(rows) -> tuple[float, str]:
    """``(share of the runs ended, "2 of 4 runs ended · From scratch: finished · ...")`` of the
    small-data experiment's rows (``engine.training.lesson.lesson_rows``)."""
    done = sum(r.state not in ACTIVE_STATES and r.state != "waiting" for r in rows)
    text = f"{done} of {len(rows)} runs ended · " + " · ".join(f"{r.label}: {r.state}"
                                                               for r in rows)
    return done / max(len(rows), 1), text


def lesson_table(rows) -> list[dict]:
    """The experiment's comparison table, one dict per run: shares (None where there is no
    value yet) and the time in minutes as text."""
    def value(x):
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else x

    return [{"Run": r.label, "State": r.state, "Epochs": r.epochs_done,
             "Best validation accuracy": value(r.best_val_accuracy),
             "Test accuracy": value(r.test_accuracy),
             "Train-validation gap": value(r.gap), "In plain words": r.verdict,
             "Time": f"{r.seconds / 60:.1f} min" if r.seconds else "",
             "Run id": r.run_id or ""} for r in rows]
