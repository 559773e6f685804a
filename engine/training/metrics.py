"""``metrics.jsonl``: the live log of a run, one JSON object per line, and what is read from it.

Three kinds of rows, each with ``kind``, ``stage`` (1, or 2 in fine-tuning's second stage) and
``time`` (seconds since the epoch):

- ``batch``: ``epoch``, ``batch`` (0-based within the epoch), ``step`` (1-based over the run),
  ``loss`` and ``accuracy`` *of that batch alone* (Keras reports running means over the epoch;
  the writer turns them back into per-batch values), and ``lr`` on some rows;
- ``epoch``: ``epoch``, ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` (when there is
  validation), ``lr``, ``seconds``, ``partial`` (a stop cut the epoch short);
- ``event``: ``event`` (``start``, ``stage``, ``resume``, ``stopped``, ``diverged``,
  ``early_stop``, ``end``, ``failed``, ``not_learning``) and a ``message`` for people.

The writer only ever appends whole lines; a reader skips a last line that is not finished yet.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

METRICS_FILE = "metrics.jsonl"


# ------------------------------------------------------------------------------ reading
class MetricsReader:
    """Reads a growing ``metrics.jsonl`` incrementally: each ``read()`` parses only what was
    appended since the last one (a page polling every second stays cheap on long runs)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: list[dict] = []
        self._offset = 0
        self._inode = None

    def read(self) -> list[dict]:
        """All rows so far (the same list, grown)."""
        try:
            stat = self.path.stat()
        except OSError:
            return self.rows
        if stat.st_ino != self._inode or stat.st_size < self._offset:
            # The file was rewritten (a resumed run drops its unfinished epoch): start over.
            self.rows, self._offset, self._inode = [], 0, stat.st_ino
        if stat.st_size == self._offset:
            return self.rows
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # a last line without its newline is still being written
        for line in data[:end].splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                self.rows.append(row)
        self._offset += end
        return self.rows


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Every complete row of a metrics file (``[]`` when there is none yet)."""
    return MetricsReader(path).read()


def append_rows(handle, rows: list[dict]) -> None:
    """Append rows to an open text file as whole lines, in one write."""
    if rows:
        handle.write("".join(json.dumps(row, separators=(",", ":")) + "\n" for row in rows))
        handle.flush()


# ----------------------------------------------------------------------------- curves
@dataclass
class Curves:
    """A run's curves as arrays. ``x`` values are epochs: a batch's ``x`` is the fraction of
    epochs done after it (``epoch + (batch + 1) / steps``), an epoch's is ``epoch + 1``.

    Attributes:
        batch_x, batch_loss, batch_accuracy: one value per training batch.
        epoch_x, loss, accuracy, val_loss, val_accuracy, lr: one per epoch (NaN where absent).
        stage_starts: x where each stage after the first begins.
    """

    batch_x: np.ndarray
    batch_loss: np.ndarray
    batch_accuracy: np.ndarray
    epoch_x: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    val_loss: np.ndarray
    val_accuracy: np.ndarray
    lr: np.ndarray
    stage_starts: list[float] = field(default_factory=list)

    @property
    def has_validation(self) -> bool:
        return bool(np.isfinite(self.val_loss).any())


def curves(rows: list[dict], steps_per_epoch: int) -> Curves:
    """The curves of ``rows`` (see ``Curves``)."""
    steps = max(1, int(steps_per_epoch or 1))
    batches = [r for r in rows if r.get("kind") == "batch"]
    epochs = [r for r in rows if r.get("kind") == "epoch"]

    def column(items, key):
        return np.array([_number(r.get(key)) for r in items], np.float64)

    starts = [float(r.get("epoch", 0)) for r in rows
              if r.get("kind") == "event" and r.get("event") == "stage"]
    return Curves(
        batch_x=np.array([r["epoch"] + (r["batch"] + 1) / steps for r in batches], np.float64),
        batch_loss=column(batches, "loss"), batch_accuracy=column(batches, "accuracy"),
        epoch_x=np.array([r["epoch"] + 1 for r in epochs], np.float64),
        loss=column(epochs, "loss"), accuracy=column(epochs, "accuracy"),
        val_loss=column(epochs, "val_loss"), val_accuracy=column(epochs, "val_accuracy"),
        lr=column(epochs, "lr"), stage_starts=starts)


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing (the first values are not pulled
    towards 0); NaNs are skipped (they keep the previous average).

    Args:
        values: (N,) values.
        weight: in [0, 1); 0 returns the values unchanged.

    Returns:
        (N,) float64.
    """
    values = np.asarray(values, np.float64)
    out = np.empty_like(values)
    average, count = 0.0, 0
    for i, v in enumerate(values):
        if math.isfinite(v):
            average = weight * average + (1 - weight) * v
            count += 1
        out[i] = average / (1 - weight ** count) if count else math.nan
    return out


# ---------------------------------------------------------------------------- progress
@dataclass(frozen=True)
class RunProgress:
    """Where a run is (for the Train page; not a progress callback, see ``engine.progress``).

    Attributes:
        epoch: epochs completed.
        total_epochs: epochs planned (all stages).
        batch: batches done in the current epoch.
        steps_per_epoch: batches per epoch.
        fraction: share of the whole run done, in [0, 1].
        eta_seconds: estimated seconds left (None before the first measurements).
        learning_rate: the latest learning rate seen (None before any).
        images_per_second: training throughput over the latest batches (None before any).
        stage: 1 or 2.
    """

    epoch: int
    total_epochs: int
    batch: int
    steps_per_epoch: int
    fraction: float
    eta_seconds: float | None
    learning_rate: float | None
    images_per_second: float | None
    stage: int


def progress(rows: list[dict], total_epochs: int, steps_per_epoch: int,
             batch_size: int = 0) -> RunProgress:
    """Progress and ETA from the rows so far.

    The ETA is the time per epoch so far (validation and checkpoints included) times the
    epochs left; within an epoch the share of its batches done counts.
    """
    steps = max(1, int(steps_per_epoch or 1))
    total = max(1, int(total_epochs or 1))
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    batches = [r for r in rows if r.get("kind") == "batch"]
    done = int(epochs[-1]["epoch"]) + 1 if epochs else 0
    batch = 0
    if batches and int(batches[-1]["epoch"]) >= done:
        batch = int(batches[-1]["batch"]) + 1
    fraction = min(1.0, (done + min(batch, steps) / steps) / total)
    lr = next((r["lr"] for r in reversed(rows) if _finite(r.get("lr"))), None)
    trained = [r for r in rows if r.get("kind") in ("batch", "epoch")]
    stage = int(trained[-1].get("stage", 1)) if trained else 1

    eta = None
    session = _current_session(rows)
    timed = [r for r in session if r.get("kind") in ("batch", "epoch") and "time" in r]
    if len(timed) >= 2 and fraction > 0:
        start = session[0]["time"]
        done_then = _fraction_at(session[0], total)
        elapsed = timed[-1]["time"] - start
        gained = fraction - done_then
        if gained > 0 and elapsed > 0:
            eta = elapsed / gained * (1 - fraction)

    speed = None
    recent = batches[-51:]
    gaps = [b["time"] - a["time"] for a, b in zip(recent, recent[1:])
            if a.get("epoch") == b.get("epoch") and "time" in a and "time" in b]
    if batch_size and gaps and sum(gaps) > 0:  # within epochs: validation pauses left out
        speed = len(gaps) * batch_size / sum(gaps)
    return RunProgress(done, total, batch, steps, fraction, eta, lr, speed, stage)


def _current_session(rows: list[dict]) -> list[dict]:
    """Rows since the latest start or resume (time spent before a crash says nothing about
    the speed now)."""
    for i in range(len(rows) - 1, -1, -1):
        if rows[i].get("kind") == "event" and rows[i].get("event") in ("start", "resume"):
            return rows[i:]
    return rows


def _fraction_at(event: dict, total: int) -> float:
    return min(1.0, int(event.get("epoch", 0)) / total)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
