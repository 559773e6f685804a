"""``RunMonitor``: the one Keras callback that watches a run; ``BatchValues``: each batch's own
loss and accuracy from Keras' running means (the Tour's quick fit reports them too).

``RunMonitor`` writes the live metrics, notices a diverging loss, a network that is not
learning and a request to stop, keeps the last and the best checkpoint, and records the
learning timeline.

Live metrics must not slow training down. A callback that appends a JSON line on every batch
cost the scratch CNN about 30 % of its throughput, so per batch this one only appends a tuple
to a list; every ``flush_seconds`` (or ``flush_batches`` batches) it turns the buffered
running means into per-batch values, checks them for NaN and infinity, writes them in one
``write`` and looks for the stop file.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from engine.training import runs
from engine.training.metrics import METRICS_FILE, append_rows
from engine.training.timeline import TimelineRecorder

FLUSH_SECONDS = 0.5
FLUSH_BATCHES = 512
#: a run whose epoch's training loss is still within this share of chance level
#: (``chance_loss``) after ``NOT_LEARNING_EPOCHS`` epochs is warned that it is not learning. A
#: learning run is clearly below it by then: on the 3,000-image demo set at 64 pixels, the
#: recipe before the dense batch norm (97 % of the dense units dead after one epoch) was
#: 1.6 % below ln 6 after 2 epochs and reached 0.33 validation accuracy after 4; at 128
#: pixels (every dense unit dead) it was at ln 6 (1.7917), and stayed there for 10 epochs.
NOT_LEARNING_TOLERANCE = 0.01
NOT_LEARNING_EPOCHS = 2


class RunMonitor(keras.callbacks.Callback):
    """Live metrics, divergence and stop detection, checkpoints and timeline of one run.

    After ``fit`` returns, ``outcome`` says why it ended: ``"done"``, ``"stopped"`` (stop file
    or SIGTERM), ``"diverged"`` (a non-finite loss; ``message`` says where), or
    ``"early_stop"`` is set by the caller from Keras' EarlyStopping.

    Args:
        run_dir: the run folder.
        stage: 1, or 2 in fine-tuning's second stage.
        steps_per_epoch: training batches per epoch.
        n_train: training images (to turn running means into per-batch values).
        batch_size: images per batch.
        monitor: what "best" means: ``"val_loss"`` (or ``"loss"`` without validation).
        best: the best value so far (from an earlier stage or before a resume).
        timeline: records the timeline at every epoch end, or None.
        stop_requested: callable telling whether a stop was asked by other means (SIGTERM).
        save_checkpoints: write ``last.keras``/``best.keras`` (False on non-chief workers).
        chance_loss: the loss of a network that learns nothing (``chance_loss``), or None:
            no check. A run still at it after ``NOT_LEARNING_EPOCHS`` epochs gets a
            ``warning`` in status.json and a ``not_learning`` event; the warning is cleared
            when the loss drops later.
    """

    def __init__(self, run_dir: str | os.PathLike, *, stage: int, steps_per_epoch: int,
                 n_train: int, batch_size: int, monitor: str = "val_loss",
                 best: float = math.inf, timeline: TimelineRecorder | None = None,
                 stop_requested=lambda: False, save_checkpoints: bool = True,
                 chance_loss: float | None = None, flush_seconds: float = FLUSH_SECONDS,
                 flush_batches: int = FLUSH_BATCHES):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.stage, self.steps_per_epoch, self.n_train = stage, steps_per_epoch, n_train
        self.batch_size, self.monitor, self.best = batch_size, monitor, best
        self.timeline, self.stop_requested = timeline, stop_requested
        self.save_checkpoints, self.chance_loss = save_checkpoints, chance_loss
        self.flush_seconds, self.flush_batches = flush_seconds, flush_batches
        self.outcome = "done"
        self.message = ""
        self._buffer: list[tuple[int, float, dict]] = []
        self._handle = None
        self._last_flush = 0.0
        self._epoch = 0
        self._epoch_start = 0.0
        self._values = BatchValues(batch_size, n_train)
        self._warned = False

    # ----------------------------------------------------------------- Keras hooks
    def on_train_begin(self, logs=None):
        self._handle = open(self.run_dir / METRICS_FILE, "a", encoding="utf-8")
        self._last_flush = time.monotonic()
        (self.run_dir / runs.CHECKPOINTS).mkdir(exist_ok=True)
        # a warning of an earlier stage, or of the session before a resume, is cleared here
        # once the loss drops
        status = runs._read_json(self.run_dir / runs.STATUS_FILE) or {}
        self._warned = bool(status.get("warning"))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._epoch_start = time.time()
        self._values.start_epoch()

    def on_train_batch_end(self, batch, logs=None):
        # The hot path: no conversion, no I/O.
        self._buffer.append((batch, time.time(), logs))
        if (len(self._buffer) >= self.flush_batches
                or time.monotonic() - self._last_flush >= self.flush_seconds):
            self._flush()

    def on_epoch_end(self, epoch, logs=None):
        partial = self.outcome == "stopped"  # a stop seen mid-epoch cut this one short
        self._flush()
        logs = dict(logs or {})
        loss = _float(logs.get("loss"))
        if self.outcome != "diverged" and _blown_up(loss):
            self._diverged(epoch, None, loss)
        row = {"kind": "epoch", "stage": self.stage, "epoch": epoch, "time": time.time(),
               "seconds": round(time.time() - self._epoch_start, 3), "lr": self._lr(),
               **{k: _round(_float(v)) for k, v in logs.items()
                  if k in ("loss", "accuracy", "val_loss", "val_accuracy")}}
        if partial:
            row["partial"] = True
        append_rows(self._handle, [row])
        print(_epoch_line(row), flush=True)  # the command line's progress, and log.txt's
        if self.outcome == "diverged":
            return  # keep the checkpoints from before the loss blew up
        self._checkpoint(epoch, logs)
        if self.timeline is not None:
            self.timeline.snapshot(epoch + 1)
        runs.write_status(self.run_dir, epoch=epoch + 1,
                          **({} if partial else self._learning_check(epoch, loss)))

    def on_train_end(self, logs=None):
        self._flush()
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    # ----------------------------------------------------------------- the work
    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        buffered, self._buffer = self._buffer, []
        rows = []
        for batch, stamp, logs in buffered:
            loss, accuracy = self._values.of_batch(batch, logs)
            rows.append({"kind": "batch", "stage": self.stage, "epoch": self._epoch,
                         "batch": int(batch), "step": self._epoch * self.steps_per_epoch
                         + int(batch) + 1, "time": round(stamp, 3), "loss": _round(loss),
                         "accuracy": _round(accuracy)})
            loss_mean = _float(logs.get("loss"))
            if _blown_up(loss_mean) and self.outcome != "diverged":
                self._diverged(self._epoch, int(batch), loss_mean)
        if rows:
            rows[-1]["lr"] = self._lr()
        if self._handle is not None:
            append_rows(self._handle, rows)
        if self.outcome == "done" and (self.stop_requested()
                                       or (self.run_dir / runs.STOP_FILE).exists()):
            self.outcome = "stopped"
            self.message = "Stopped on request; the best and the last model were kept."
            self.model.stop_training = True

    def _diverged(self, epoch: int, batch: int | None, value: float) -> None:
        self.outcome = "diverged"
        where = f"epoch {epoch + 1}" + (f", batch {batch + 1}" if batch is not None else "")
        lr = self._lr()
        suggestion = f" (now {lr:.3g}; try {lr / 10:.3g})" if lr else ""
        self.message = (f"Training diverged: the loss became {value:.3g} at {where}. Start again "
                        f"with a lower learning rate{suggestion}.")
        self.model.stop_training = True

    def _learning_check(self, epoch: int, loss: float) -> dict:
        """``{"warning": ...}`` for status.json: a sentence while the run is not learning,
        "" once it learns again; ``{}`` when nothing changes."""
        if self.chance_loss is None:
            return {}
        if not not_learning(loss, self.chance_loss, epoch + 1):
            cleared, self._warned = self._warned, False
            return {"warning": ""} if cleared else {}
        h, w = (int(v) for v in self.model.inputs[0].shape[1:3])
        message = (f"The network is not learning: after {epoch + 1} epochs its training loss "
                   f"({loss:.3f}) is within {NOT_LEARNING_TOLERANCE:.0%} of chance level "
                   f"({self.chance_loss:.3f}, what always answering the classes' shares "
                   "scores). Try a lower learning rate, the data set's own image size (the "
                   f"network takes {h}x{w} pixels), more epochs, or a pretrained base "
                   "(feature extraction).")
        if not self._warned:
            append_rows(self._handle, [{"kind": "event", "event": "not_learning",
                                        "stage": self.stage, "epoch": epoch,
                                        "time": time.time(), "message": message}])
            print(message, flush=True)
        self._warned = True
        return {"warning": message}

    def _checkpoint(self, epoch: int, logs: dict) -> None:
        folder = self.run_dir / runs.CHECKPOINTS
        value = _float(logs.get(self.monitor, logs.get("loss")))
        improved = math.isfinite(value) and value < self.best
        if self.save_checkpoints:
            _save_model(self.model, folder / runs.LAST)
            if improved:
                shutil.copyfile(folder / runs.LAST, folder / f".{runs.BEST}.tmp")
                os.replace(folder / f".{runs.BEST}.tmp", folder / runs.BEST)
        if improved:
            self.best = value
        state = {"epochs_done": epoch + 1, "stage": self.stage, "best": self.best,
                 "monitor": self.monitor, "lr": self._lr(), "time": time.time()}
        if self.save_checkpoints:
            runs._write_json(folder / runs.STATE_FILE, state)

    def _lr(self) -> float | None:
        try:
            return _round(float(np.asarray(self.model.optimizer.learning_rate)))
        except (AttributeError, TypeError, ValueError):
            return None


class BatchValues:
    """Each batch's own loss and accuracy, from the running means Keras reports after it
    (means since the epoch began, weighted by images): the mean is undone.

    Args:
        batch_size: images per batch.
        n_images: images per epoch (the last batch holds the rest).
    """

    def __init__(self, batch_size: int, n_images: int):
        self.batch_size = batch_size
        self.n_images = n_images
        self._sums = (0.0, 0.0, 0)  # loss sum, accuracy sum, images seen this epoch

    def start_epoch(self) -> None:
        self._sums = (0.0, 0.0, 0)

    def of_batch(self, batch: int, logs: dict) -> tuple[float, float]:
        """``(loss, accuracy)`` of batch ``batch`` (from 0) of this epoch, from Keras' ``logs``
        after it; call it for every batch, in order."""
        size = min(self.batch_size, max(1, self.n_images - batch * self.batch_size))
        loss_sum, accuracy_sum, seen = self._sums
        total = seen + size
        loss_mean, accuracy_mean = _float(logs.get("loss")), _float(logs.get("accuracy"))
        self._sums = (loss_mean * total, accuracy_mean * total, total)
        return (loss_mean * total - loss_sum) / size, (accuracy_mean * total - accuracy_sum) / size


def chance_loss(class_counts: Sequence[int], label_smoothing: float = 0.0) -> float:
    """The training loss of a network that ignores its input: what a run that learns nothing
    levels off at.

    Label smoothing ``e`` trains towards ``(1 - e) * one_hot + e / k``; the constant prediction
    with the lowest expected cross-entropy is the mean target, ``q_c = (1 - e) p_c + e / k``
    (``p_c``: class ``c``'s share of the images), and its loss is the entropy of ``q``,
    ``-sum q_c ln q_c``: ln k for balanced classes, whatever the smoothing (the smoothed
    loss's floor, about 0.42 for 6 classes and 0.1, is a different number).

    Args:
        class_counts: training images of each class (classes without images included).
        label_smoothing: in [0, 1).

    Returns:
        The loss in nats.
    """
    counts = np.asarray(class_counts, np.float64)
    q = (1.0 - label_smoothing) * counts / counts.sum() + label_smoothing / len(counts)
    q = q[q > 0]
    return float(-(q * np.log(q)).sum())


def not_learning(loss: float, chance: float, epochs_done: int) -> bool:
    """Whether a run whose last epoch's training loss was ``loss`` after ``epochs_done``
    epochs is still at chance level ``chance`` (within ``NOT_LEARNING_TOLERANCE``, or above
    it) after ``NOT_LEARNING_EPOCHS`` epochs or more."""
    return (epochs_done >= NOT_LEARNING_EPOCHS and math.isfinite(loss)
            and loss >= (1.0 - NOT_LEARNING_TOLERANCE) * chance)


def _epoch_line(row: dict) -> str:
    parts = [f"epoch {row['epoch'] + 1}"] + [
        f"{key} {row[key]:.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy")
        if isinstance(row.get(key), float)]
    return " · ".join(parts) + f" · {row['seconds']:.1f} s"


def _save_model(model: keras.Model, path: Path) -> None:
    """Save atomically: a crash while saving leaves the previous checkpoint intact."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


#: a loss above this has blown up even where it stays finite: a softmax classifier's cross
#: entropy is at most -log(1e-7) = 16.1 (Keras clips the probabilities), and batch
#: normalisation keeps a network with an absurd learning rate from ever reaching inf or NaN
DIVERGED_LOSS = 1e6


def _blown_up(loss: float) -> bool:
    return not math.isfinite(loss) or loss > DIVERGED_LOSS


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _round(value: float | None):
    if value is None or not math.isfinite(value):
        return None if value is None else str(value)  # JSON has no NaN: "nan", "inf"
    return float(f"{value:.6g}")
