"""Where the app keeps files between sessions: uploads, data sets, training runs, caches."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``$CNN_EXPLORER_HOME`` or ``~/.cnn_explorer``: everything the app writes lives here."""
    path = Path(os.environ.get("CNN_EXPLORER_HOME", "~/.cnn_explorer")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def uploads_dir(token: str) -> Path:
    """The folder of one browser's uploads (``token`` is random and kept in a cookie, never in
    a URL: see ui.state)."""
    if not token.isalnum():
        raise ValueError("bad upload token")
    path = home() / "uploads" / token
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_uploads_dir(token: str) -> Path:
    """Uploaded model and weights files, apart from the uploaded images."""
    path = uploads_dir(token) / "models"
    path.mkdir(exist_ok=True)
    return path


def datasets_dir() -> Path:
    """The data folder: one sub-folder per imported data set (engine.data writes there)."""
    path = home() / "datasets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """The training runs: one sub-folder per run (engine.training writes there).
    ``$CNN_EXPLORER_RUNS`` overrides it, as it does for the command line."""
    override = os.environ.get("CNN_EXPLORER_RUNS")
    path = Path(override).expanduser() if override else home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir(name: str) -> Path:
    """A folder of computed results that can be thrown away and computed again
    (``<home>/cache/<name>``; activation maximisation keeps its images there)."""
    path = home() / "cache" / name
    path.mkdir(parents=True, exist_ok=True)
    return path
