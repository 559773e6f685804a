"""The small-data lesson as one experiment: four real runs on the same small data set.

*A small data set is not enough to train a convnet from scratch; augmentation helps; a
pretrained base helps most; fine-tuning its top helps a bit more* (Chollet, ch. 5). The lesson
is four ordinary runs, each with its folder, evaluation and model in the sidebar:

1. from scratch, without augmentation;
2. from scratch, with the data set's augmentation;
3. feature extraction from a pretrained base (default: the bundled demo model, no download);
4. fine-tuning that base's top layers after the same feature extraction.

``start_lesson`` writes a small record (``<runs_dir>/.lessons/<id>.json``) naming the four
configs; ``lesson_work`` starts them one after another, each when the runs folder has a free
slot (the page runs it as one job of the server's training lane, the command line in a loop),
and notes each run id in the record as it starts, so a reloaded page, another tab or a
restarted server finds the experiment and its runs again. ``lesson_rows`` and
``lesson_curves`` read the runs for the comparison table and the overlaid curves.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from engine.errors import TrainingError
from engine.training.config import RunConfig
from engine.training.runs import (ACTIVE_STATES, list_runs, read_status, request_stop,
                                  resolve_runs_dir)

LESSONS = ".lessons"
TITLE = "Small data: from scratch, with augmentation, from a pretrained base"

#: (short label, mode, augmentation) of the four runs, in order
STEPS = (
    ("From scratch", "scratch", False),
    ("From scratch + augmentation", "scratch", True),
    ("Pretrained base: feature extraction", "feature_extraction", True),
    ("Pretrained base: fine-tuning", "fine_tuning", True),
)


@dataclass
class LessonConfig:
    """The settings of the experiment (good defaults; only ``dataset`` is required).

    Attributes:
        dataset: the small data set's folder (default on the pages: the new shapes, 50
            training images per class, which the demo model never saw).
        base_model: the pretrained base of runs 3 and 4 (see ``RunConfig.base_model``).
        epochs: epochs of each run (of stage 1 when fine-tuning); small sets make each epoch
            a few seconds.
        fine_tune_epochs: epochs of fine-tuning's stage 2 (None: half of ``epochs``).
        fine_tune_layers: layers with weights unfrozen in stage 2: the demo base's top two
            convolution blocks (bench/small_data.py, new shapes at 64 px: 88.3 % held-out
            with 4 layers at 3e-4, 85.7 % with 2 at 1e-4).
        fine_tune_learning_rate: stage 2's learning rate (a tenth of stage 1's and less).
        image_size: (height, width) of every run; None: the data set's own / the base's own.
        seed: of all four runs.
    """

    dataset: str
    base_model: str = "demo"
    epochs: int = 30
    fine_tune_epochs: int | None = None
    fine_tune_layers: int = 4
    fine_tune_learning_rate: float = 3e-4
    image_size: tuple[int, int] | None = None
    seed: int = 0

    def run_configs(self) -> list[RunConfig]:
        """The four runs' settings, in ``STEPS`` order (each validated)."""
        out = []
        second = self.fine_tune_epochs or max(1, self.epochs // 2)
        for label, mode, augment in STEPS:
            config = RunConfig(dataset=os.fspath(self.dataset), mode=mode, augment=augment,
                               name=label, epochs=self.epochs, seed=self.seed,
                               base_model=self.base_model, image_size=self.image_size,
                               fine_tune_epochs=second,
                               fine_tune_layers=self.fine_tune_layers,
                               fine_tune_learning_rate=self.fine_tune_learning_rate)
            out.append(config.validate())
        return out


@dataclass
class Lesson:
    """One started experiment, as its record says.

    Attributes:
        lesson_id: the record's name.
        created: when it was started (seconds since the epoch).
        configs: the four runs' settings, as dicts.
        run_ids: the run of each step once it has started, else None.
        dataset: the data set's folder.
    """

    lesson_id: str
    created: float
    configs: list[dict]
    run_ids: list[str | None] = field(default_factory=list)
    dataset: str = ""

    @property
    def labels(self) -> list[str]:
        return [label for label, _, _ in STEPS]

    @property
    def complete(self) -> bool:
        """Every step has started."""
        return all(self.run_ids)


def start_lesson(config: LessonConfig, runs_dir: str | os.PathLike | None = None) -> Lesson:
    """Validate the four runs and write the experiment's record (no run starts here: run
    ``lesson_work`` for that).

    Raises:
        TrainingError: settings that cannot train (said before anything waits in line).
    """
    configs = config.run_configs()
    lesson = Lesson(f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", time.time(),
                    [c.to_dict() for c in configs], [None] * len(configs),
                    os.fspath(config.dataset))
    _save(lesson, resolve_runs_dir(runs_dir))
    return lesson


def list_lessons(runs_dir: str | os.PathLike | None = None) -> list[Lesson]:
    """Every experiment of the runs folder, newest first."""
    folder = resolve_runs_dir(runs_dir) / LESSONS
    out = []
    for path in folder.glob("*.json") if folder.is_dir() else ():
        try:
            data = json.loads(path.read_text())
            out.append(Lesson(**data))
        except (OSError, ValueError, TypeError):
            continue  # a record being written or damaged: not listed
    return sorted(out, key=lambda lesson: -lesson.created)


def lesson_work(lesson_id: str, runs_dir: str | os.PathLike, limit: int, *,
                start: Callable[[RunConfig], str] | None = None, poll_s: float = 1.0,
                report: Callable[[str], None] | None = None,
                cancelled: Callable[[], bool] = lambda: False,
                published: Callable[[str], None] | None = None) -> list[str]:
    """Start the experiment's runs that have not started, one after another, each once fewer
    than ``limit`` runs are going, and wait for each to end.

    Args:
        lesson_id: the record.
        runs_dir: the runs folder.
        limit: most runs going at once in the folder.
        start: starts a run and returns its id (default: ``create_run`` + its process).
        poll_s: how often the folder is looked at.
        report: called with what is happening ("run 2 of 4: training").
        cancelled: when it turns true, the run going is asked to stop and no other starts.
        published: called with each run id as it starts.

    Returns:
        The run ids of all steps.
    """
    from engine.training.runs import create_run

    root = resolve_runs_dir(runs_dir)
    start = start or (lambda c: create_run(c, root, max_concurrent=limit).name)
    say = report or (lambda text: None)
    lesson = _load(root, lesson_id)
    for i, settings in enumerate(lesson.configs):
        step = f"run {i + 1} of {len(lesson.configs)}"
        run_id = lesson.run_ids[i]
        if run_id is None:
            while sum(s.active for s in list_runs(root)) >= limit:
                if cancelled():
                    return [r for r in lesson.run_ids if r]
                say(f"{step}: waiting for a free slot")
                time.sleep(poll_s)
            if cancelled():
                return [r for r in lesson.run_ids if r]
            run_id = start(RunConfig.from_dict(settings))
            lesson = _load(root, lesson_id)
            lesson.run_ids[i] = run_id
            _save(lesson, root)
        if published is not None:
            published(run_id)
        stopped = False
        while read_status(root / run_id).state in ACTIVE_STATES:
            say(f"{step}: training")
            if cancelled() and not stopped:
                request_stop(root / run_id)
                stopped = True
            time.sleep(poll_s)
        if stopped:
            break
    return [r for r in lesson.run_ids if r]


def delete_lesson(lesson_id: str, runs_dir: str | os.PathLike | None = None) -> None:
    """Forget the experiment's record (its runs stay: delete them on their own)."""
    path = resolve_runs_dir(runs_dir) / LESSONS / f"{_checked(lesson_id)}.json"
    path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class LessonRow:
    """One run of the experiment, for the comparison table.

    Attributes:
        label: what the step is ("From scratch").
        run_id: its run (None before it started).
        state: the run's state, or ``"waiting"``.
        epochs_done: epochs trained so far.
        best_val_accuracy: the best validation accuracy of any epoch (NaN before one).
        test_accuracy: accuracy on the held-out split after training (NaN until then).
        train_accuracy: training accuracy at the best validation epoch (NaN before one).
        gap: ``train_accuracy - best_val_accuracy``: how much better the run does on images
            it trained on than on new ones (overfitting when large).
        seconds: wall time so far.
        verdict: the gap in plain words.
    """

    label: str
    run_id: str | None
    state: str
    epochs_done: int
    best_val_accuracy: float
    test_accuracy: float
    train_accuracy: float
    gap: float
    seconds: float
    verdict: str

    def as_dict(self) -> dict:
        return asdict(self)


#: a train-validation accuracy gap above this is called overfitting
OVERFIT_GAP = 0.15


def lesson_rows(lesson: Lesson, runs_dir: str | os.PathLike | None = None) -> list[LessonRow]:
    """The comparison table: one row per step (see ``LessonRow``)."""
    from engine.training.metrics import METRICS_FILE, read_rows

    root = resolve_runs_dir(runs_dir)
    out = []
    for label, run_id in zip(lesson.labels, lesson.run_ids):
        if run_id is None or not (root / run_id).is_dir():
            out.append(LessonRow(label, run_id, "waiting" if run_id is None else "deleted", 0,
                                 math.nan, math.nan, math.nan, math.nan, 0.0, ""))
            continue
        status = read_status(root / run_id)
        epochs = [r for r in read_rows(root / run_id / METRICS_FILE) if r.get("kind") == "epoch"]
        best = max(epochs, key=lambda r: _num(r.get("val_accuracy")), default=None)
        val = _num(best.get("val_accuracy")) if best else math.nan
        train = _num(best.get("accuracy")) if best else math.nan
        started = float(status.info.get("started") or status.created or time.time())
        ended = float(status.info.get("ended") or 0) or time.time()
        gap = train - val
        out.append(LessonRow(label, run_id, status.state, status.epochs_done, val,
                             _num(status.info.get("evaluation_accuracy")), train, gap,
                             max(0.0, ended - started), _verdict(train, val)))
    return out


def lesson_curves(lesson: Lesson, runs_dir: str | os.PathLike | None = None):
    """``[(label, Curves)]`` of the steps that have started, for overlaid curves."""
    from engine.training.metrics import METRICS_FILE, curves, read_rows

    root = resolve_runs_dir(runs_dir)
    out = []
    for label, run_id in zip(lesson.labels, lesson.run_ids):
        if run_id is None or not (root / run_id / METRICS_FILE).is_file():
            continue
        steps = read_status(root / run_id).steps_per_epoch
        out.append((label, curves(read_rows(root / run_id / METRICS_FILE), steps)))
    return out


def _verdict(train: float, val: float) -> str:
    """The train-validation comparison in plain words."""
    if math.isnan(train) or math.isnan(val):
        return ""
    both = f"{train:.0%} right on its training images, {val:.0%} on new ones"
    if val < 0.5 and train - val > OVERFIT_GAP:
        return f"memorises: {both} (too few images to learn the shapes themselves)"
    if val < 0.5:
        return f"learns little: {both}"
    if train - val > OVERFIT_GAP:
        return f"overfits: {both}"
    return f"generalises: {both}"


# ----------------------------------------------------------------------------- records
def _checked(lesson_id: str) -> str:
    if not lesson_id or "/" in lesson_id or "\\" in lesson_id or lesson_id.startswith("."):
        raise TrainingError(f"'{lesson_id}' is not an experiment id.")
    return lesson_id


def _load(root: Path, lesson_id: str) -> Lesson:
    path = root / LESSONS / f"{_checked(lesson_id)}.json"
    try:
        return Lesson(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise TrainingError(f"The experiment '{lesson_id}' cannot be read ({exc}); start it "
                            "again.") from exc


def _save(lesson: Lesson, root: Path) -> None:
    folder = root / LESSONS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_checked(lesson.lesson_id)}.json"
    tmp = folder / f".{path.name}.{uuid.uuid4().hex[:6]}.tmp"
    tmp.write_text(json.dumps(asdict(lesson), indent=2))
    os.replace(tmp, path)


def _num(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


__all__ = ["LESSONS", "STEPS", "TITLE", "Lesson", "LessonConfig", "LessonRow", "delete_lesson",
           "lesson_curves", "lesson_rows", "lesson_work", "list_lessons",
           "start_lesson"]
