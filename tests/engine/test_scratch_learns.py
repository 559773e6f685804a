"""A from-scratch run with every default learns the Train page's demo set in 4 epochs, from the
command line at the set's own size and through the API at 128 pixels. Slow (minutes on a CPU):
``pytest -m slow tests/engine/test_scratch_learns.py``; ``bench/training.py --scratch-sizes``
prints the same numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.data import export_demo
from engine.training import RunConfig, list_runs, read_metrics, run_status, start_run
from engine.training.runs import FINAL_STATES
from tests.engine.training_helpers import wait_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: the demo set the Train page offers first: 3,000 images of 64 pixels, with the mirrors
IMAGES, SIDE = 3000, 64
EPOCHS, GOAL = 4, 0.6


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return export_demo(tmp_path_factory.mktemp("data"), IMAGES, size=SIDE, mirrors=True)


def _validation_accuracy(run_id: str, runs_dir: Path) -> list[float]:
    return [r["val_accuracy"] for r in read_metrics(run_id, runs_dir) if r["kind"] == "epoch"]


def test_from_the_command_line_at_the_data_sets_own_size(demo, tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"dataset": str(demo.folder),
                                                   "epochs": EPOCHS}))
    done = subprocess.run(
        [sys.executable, "-m", "engine.training", "--config", str(tmp_path / "run.json"),
         "--runs-dir", str(tmp_path / "runs")],
        cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (status,) = list_runs(tmp_path / "runs")
    assert status.state == "finished" and status.info["input_size"] == [SIDE, SIDE]
    accuracy = _validation_accuracy(status.run_id, tmp_path / "runs")
    assert len(accuracy) == EPOCHS and accuracy[-1] >= GOAL, accuracy
    assert status.warning == ""


def test_through_the_api_at_128_pixels(demo, tmp_path):
    runs_dir = tmp_path / "runs"
    run_id = start_run(RunConfig(dataset=str(demo.folder), epochs=EPOCHS,
                                 image_size=(128, 128)), runs_dir)
    status = wait_for(lambda: (s := run_status(run_id, runs_dir)).state in FINAL_STATES and s,
                      timeout=3600, every=2.0)
    assert status.state == "finished", status.message
    assert status.info["input_size"] == [128, 128]
    accuracy = _validation_accuracy(run_id, runs_dir)
    assert len(accuracy) == EPOCHS and accuracy[-1] >= GOAL, accuracy
    assert status.warning == ""
