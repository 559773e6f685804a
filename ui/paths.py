"""Where the app keeps files between sessions (uploads now; data sets and runs later)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``$CNN_EXPLORER_HOME`` or ``~/.cnn_explorer``: everything the app writes lives here."""
    path = Path(os.environ.get("CNN_EXPLORER_HOME", "~/.cnn_explorer")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def uploads_dir(token: str) -> Path:
    """The folder of one browser's uploads (``token`` is random and travels in the URL)."""
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
