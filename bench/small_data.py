"""The small-data lesson, measured: the four runs of ``engine.training.lesson`` on the new shapes.

    python bench/small_data.py [--train-per-class 50] [--size 64] [--out DIR]

Data: ``engine.data.export_small_novel`` (six shapes the demo model never saw, 50 training, 15
validation and 100 test images per class: 600 held-out test images from a seed no other set
uses). Runs: ``LessonConfig``'s defaults, trained one after another in this process through the
training engine (``train``), exactly as the Train page's experiment runs them. Printed (JSON):
per run its held-out test accuracy, best validation accuracy, the train-validation gap and wall
time, and the goals (``GOALS``: feature extraction from the demo base >= 0.80, fine-tuning
>= 0.85, each run <= 3 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOALS = {"Pretrained base: feature extraction": 0.80, "Pretrained base: fine-tuning": 0.85}
MAX_SECONDS = 180.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-per-class", type=int, default=None)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=None, help="default: LessonConfig's")
    parser.add_argument("--fine-tune-layers", type=int, default=None)
    parser.add_argument("--fine-tune-learning-rate", type=float, default=None)
    parser.add_argument("--fine-tune-epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None, help="of the runs")
    parser.add_argument("--out", help="folder for the data set and runs (default: temporary)")
    parser.add_argument("--only", type=int, nargs="*", help="run only these steps (1-4)")
    args = parser.parse_args(argv)

    from engine.data import NOVEL_SMALL_TRAIN_PER_CLASS, export_small_novel
    from engine.training.lesson import Lesson, LessonConfig, lesson_rows
    from engine.training.run import train
    from engine.training.runs import create_run

    out = Path(args.out or tempfile.mkdtemp(prefix="bench-small-data-"))
    started = time.perf_counter()
    dataset = export_small_novel(out / "data", args.train_per_class or NOVEL_SMALL_TRAIN_PER_CLASS,
                                 size=args.size)
    drawing = time.perf_counter() - started
    settings = {key: value for key, value in (
        ("epochs", args.epochs), ("fine_tune_layers", args.fine_tune_layers),
        ("fine_tune_learning_rate", args.fine_tune_learning_rate),
        ("fine_tune_epochs", args.fine_tune_epochs), ("seed", args.seed)) if value is not None}
    lesson_config = LessonConfig(dataset=str(dataset.folder), **settings)
    configs = lesson_config.run_configs()
    runs_dir = out / "runs"
    run_ids: list[str | None] = [None] * len(configs)
    walls = {}
    for i, config in enumerate(configs):
        if args.only and i + 1 not in args.only:
            continue
        config.probe_images = 0  # the page's runs draw a timeline too; not part of the lesson
        run_dir = create_run(config, runs_dir, launch=False)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # the runs' epoch lines; JSON on stdout
            status = train(run_dir)
        walls[i] = time.perf_counter() - t0
        run_ids[i] = status.run_id
        print(f"# {config.name}: {status.state} in {walls[i]:.1f} s", file=sys.stderr, flush=True)
    lesson = Lesson("bench", time.time(), [c.to_dict() for c in configs], run_ids,
                    str(dataset.folder))
    rows = []
    for i, row in enumerate(lesson_rows(lesson, runs_dir)):
        if row.run_id is None:
            continue
        goal = GOALS.get(row.label)
        rows.append({
            "run": row.label, "state": row.state, "epochs": row.epochs_done,
            "test_accuracy": round(row.test_accuracy, 4),
            "best_val_accuracy": round(row.best_val_accuracy, 4),
            "train_accuracy_at_best": round(row.train_accuracy, 4),
            "train_val_gap": round(row.gap, 4), "verdict": row.verdict,
            "wall_s": round(walls[i], 1), "goal_test_accuracy": goal,
            "meets_goal": (goal is None or row.test_accuracy >= goal)
            and walls[i] <= MAX_SECONDS})
    counts = dataset.counts()
    print(json.dumps({
        "bench": "small_data", "dataset": dataset.name, "image_size": args.size,
        "splits": {split: sum(c.values()) for split, c in counts.items()},
        "lesson": {k: v for k, v in vars(lesson_config).items() if k != "dataset"},
        "cpu_cores": os.cpu_count(), "drawing_s": round(drawing, 1), "runs": rows,
        "max_run_s": MAX_SECONDS}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
