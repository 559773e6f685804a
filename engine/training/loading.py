"""Trained models as explorable models: what the sidebar's model picker lists and loads."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import InvalidModelError
from engine.training import runs
from engine.training.runs import MODEL_CARD

if TYPE_CHECKING:  # loading TensorFlow is left to the callers that load a model
    from engine.models.explorable import ExplorableModel


@dataclass(frozen=True)
class TrainedModel:
    """A run's final model.

    Attributes:
        run_id: the run.
        title: what people read ("scratch CNN on shapes · 12 epochs").
        path: its ``model.keras``.
        preprocessing: its input preprocessing.
        class_names: the data set's classes.
        version: the file's modification time (changes when the run writes it again).
    """

    run_id: str
    title: str
    path: Path
    preprocessing: str
    class_names: list[str]
    version: float


def trained_model(run_dir: str | os.PathLike) -> TrainedModel | None:
    """The final model of a run, or None when it has none (yet)."""
    run_dir = Path(run_dir)
    path = run_dir / runs.MODEL_FILE
    try:
        card = json.loads((run_dir / MODEL_CARD).read_text())
        version = path.stat().st_mtime
    except (OSError, ValueError):
        return None
    epochs = card.get("epochs_done", 0)
    return TrainedModel(run_dir.name, f"{card.get('name', run_dir.name)} · {epochs} epochs",
                        path, card.get("preprocessing", "unit"), list(card.get("classes", [])),
                        version)


def trained_models(runs_dir: str | os.PathLike | None = None) -> list[TrainedModel]:
    """The final models of every run that has one, newest run first."""
    out = []
    for status in runs.list_runs(runs_dir):
        if status.active:
            continue  # its model.keras may still be replaced
        model = trained_model(status.run_dir)
        if model is not None:
            out.append(model)
    return out


def load_trained(run_dir: str | os.PathLike) -> ExplorableModel:
    """A run's final model, ready to explore (its preprocessing and class names attached).

    Raises:
        InvalidModelError: the run has no final model.
    """
    from engine.models.loading import load_model_file

    trained = trained_model(run_dir)
    if trained is None:
        raise InvalidModelError(f"The run '{Path(run_dir).name}' has no trained model yet; "
                                "wait for it to finish an epoch and end.")
    model = load_model_file(trained.path, preprocessing=trained.preprocessing,
                            class_names=trained.class_names, name=trained.title)
    model.source = f"trained in run {trained.run_id}"
    return model
