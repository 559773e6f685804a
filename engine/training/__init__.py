"""Training: from scratch, feature extraction, fine-tuning, or continuing a model.

    >>> from engine.training import RunConfig, start_run, run_status, read_metrics, stop_run
    >>> run_id = start_run(RunConfig(dataset="/data/shapes", epochs=5), runs_dir="runs")
    >>> run_status(run_id, "runs").state          # "starting", "running", ..., "finished"
    >>> read_metrics(run_id, "runs")[-1]           # the latest row of metrics.jsonl
    >>> stop_run(run_id, "runs")                   # graceful: keeps the best and last model
    >>> delete_run(run_id, "runs")                 # once it has ended: removes its folder

A run trains in its own process (``python -m engine.training``) and keeps everything in its
folder ``<runs_dir>/<run_id>/``, so it outlives whoever started it; ``runs_dir`` defaults to
``$CNN_EXPLORER_RUNS``.

Where things live: ``config.py`` (the settings), ``build.py`` (the model of each mode),
``data.py`` (splits and the input pipelines, from disk or memory), ``loop.py`` (the one loop
every network trains through: runs, the Tour's ``quick.py`` and the demo model),
``callbacks.py`` (the one callback: live metrics, divergence, stop, checkpoints, timeline),
``run.py`` (the training function and strategies),
``runs.py`` (run folders, processes, status), ``metrics.py`` (reading the live log, curves,
progress), ``timeline.py``, ``evaluate.py``, ``loading.py`` (trained models for the explorer),
``__main__.py`` (the command line).
"""

from __future__ import annotations

import os

from engine.training.config import (LR_SCHEDULES, MODES, OPTIMIZERS, STRATEGIES, RunConfig,
                                    default_learning_rate, load_config, save_config)
from engine.training.loading import TrainedModel, load_trained, trained_model, trained_models
from engine.training.metrics import (Curves, MetricsReader, RunProgress, curves, progress,
                                     smooth)
from engine.training.runs import RunStatus, max_runs, resolve_runs_dir, run_dir_of

__all__ = ["LR_SCHEDULES", "MODES", "OPTIMIZERS", "STRATEGIES", "Curves", "MetricsReader",
           "RunConfig", "RunProgress", "RunStatus", "TrainedModel", "curves",
           "default_learning_rate", "delete_run",
           "list_runs", "load_config", "load_trained", "max_runs", "progress", "read_metrics",
           "resolve_runs_dir", "resume_run", "run_dir_of", "run_status", "save_config", "smooth",
           "start_run", "stop_run", "train", "trained_model", "trained_models"]


def start_run(config: RunConfig, runs_dir: str | os.PathLike | None = None, *,
              max_concurrent: int | None = None) -> str:
    """Start a run in the background; returns its id at once.

    Raises:
        TrainingError: invalid settings, or ``max_concurrent`` runs (default ``max_runs()``)
            are already going.
    """
    from engine.training import runs

    return runs.create_run(config, runs_dir, max_concurrent=max_concurrent).name


def run_status(run_id: str, runs_dir: str | os.PathLike | None = None) -> RunStatus:
    """The run's state, progress plan and message (see ``RunStatus``)."""
    from engine.training import runs

    return runs.read_status(run_dir_of(run_id, runs_dir))


def stop_run(run_id: str, runs_dir: str | os.PathLike | None = None, *,
             force: bool = False) -> RunStatus:
    """Ask a run to stop after its current batch, keeping the best and the last model
    (``force``: kill its process at once; it can be resumed from its last checkpoint)."""
    from engine.training import runs

    return runs.request_stop(run_dir_of(run_id, runs_dir), force=force)


def resume_run(run_id: str, runs_dir: str | os.PathLike | None = None, *,
               max_concurrent: int | None = None) -> str:
    """Start a crashed, failed or stopped run again from its last checkpoint, in the
    background."""
    from engine.training import runs

    return runs.resume(run_dir_of(run_id, runs_dir), max_concurrent=max_concurrent).name


def delete_run(run_id: str, runs_dir: str | os.PathLike | None = None) -> None:
    """Remove a finished, stopped, diverged, failed or crashed run and its folder (its model
    too, so it leaves the sidebar's model picker).

    Raises:
        TrainingError: no such run, or it is still going (stop it first).
    """
    from engine.training import runs

    runs.delete(run_dir_of(run_id, runs_dir))


def read_metrics(run_id: str, runs_dir: str | os.PathLike | None = None) -> list[dict]:
    """Every row the run has written to ``metrics.jsonl`` so far (see ``metrics``)."""
    from engine.training.metrics import METRICS_FILE, read_rows

    return read_rows(run_dir_of(run_id, runs_dir) / METRICS_FILE)


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[RunStatus]:
    """Every run, newest first."""
    from engine.training import runs

    return runs.list_runs(runs_dir)


def train(run_dir: str | os.PathLike, strategy=None) -> RunStatus:
    """Train a prepared run folder in this process (see ``run.train``)."""
    from engine.training.run import train as _train

    return _train(run_dir, strategy)
