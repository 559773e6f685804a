"""Runs in their own processes, as the Start button and the command line start them: two at
once, a crash and a resume, and MirroredStrategy over two logical CPU devices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import pytest

from engine.training import read_metrics, run_status
from engine.training.config import save_config
from engine.training.runs import create_run, resume
from engine.training.run import train
from tests.conftest import ROOT
from tests.engine.training_helpers import STEPS, tiny_config, tiny_dataset, wait_for

EPOCHS = 5


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _files(run_dir):
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file())


def _events(rows):
    return {r["event"]: r["time"] for r in rows if r["kind"] == "event"}


@pytest.fixture(scope="module")
def two_runs(dataset, tmp_path_factory):
    """The same settings (but the name and seed) started at once by the Start button's
    function and by the command line, into one runs folder. The Start button's run is
    launched by a process that exits at once, as a Streamlit server may."""
    runs_dir = tmp_path_factory.mktemp("runs")
    configs = tmp_path_factory.mktemp("configs")
    save_config(tiny_config(dataset, name="cli", seed=2, epochs=EPOCHS), configs / "cli.json")
    save_config(tiny_config(dataset, name="button", seed=1, epochs=EPOCHS),
                configs / "button.json")
    launcher = subprocess.run(
        [sys.executable, "-c", "import sys; from engine.training import load_config, start_run;"
         " print(start_run(load_config(sys.argv[1]), sys.argv[2]))",
         str(configs / "button.json"), str(runs_dir)],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert launcher.returncode == 0, launcher.stderr[-3000:]
    launcher_gone = time.time()
    button = launcher.stdout.strip().splitlines()[-1]
    config_file = configs / "cli.json"
    cli = subprocess.run([sys.executable, "-m", "engine.training", "--config", str(config_file),
                          "--runs-dir", str(runs_dir)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    wait_for(lambda: not run_status(button, runs_dir).active, timeout=300)
    by_name = {json.loads((d / "config.json").read_text())["name"]: d
               for d in runs_dir.iterdir() if d.is_dir()}
    return runs_dir, by_name["button"], by_name["cli"], cli.stdout, launcher_gone


def test_command_line_and_start_button_leave_the_same_run_folder(two_runs):
    _, button, cli, stdout, _ = two_runs
    assert _files(button) == _files(cli)
    assert {"config.json", "status.json", "metrics.jsonl", "log.txt", "model.keras",
            "checkpoints/last.keras", "timeline/probe.npz", "evaluation.json"} <= set(_files(cli))
    a, b = (json.loads((d / "config.json").read_text()) for d in (button, cli))
    assert {k: v for k, v in a.items() if k not in ("name", "seed")} == \
        {k: v for k, v in b.items() if k not in ("name", "seed")}
    for run_dir in (button, cli):
        assert run_status(run_dir.name, run_dir.parent).state == "finished"
    assert f"epoch {EPOCHS} · loss" in stdout and "finished" in stdout


def test_two_runs_at_once_keep_to_their_own_files(two_runs):
    runs_dir, button, cli, _, _ = two_runs
    a, b = (read_metrics(d.name, runs_dir) for d in (button, cli))
    ea, eb = _events(a), _events(b)
    assert ea["start"] < eb["end"] and eb["start"] < ea["end"]  # they really overlapped
    for rows in (a, b):
        steps = [r["step"] for r in rows if r["kind"] == "batch"]
        assert steps == list(range(1, EPOCHS * STEPS + 1))
        assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == list(range(EPOCHS))
    assert sorted(p.name for p in runs_dir.iterdir()) == sorted([".lock", button.name, cli.name])
    assert (button / "pid").read_text().split()[0] != (cli / "pid").read_text().split()[0]
    # different seeds trained different weights: nothing was shared
    wa, wb = (keras.saving.load_model(d / "model.keras", compile=False).get_weights()[0]
              for d in (button, cli))
    assert not (wa == wb).all()


def test_a_run_outlives_the_process_that_started_it(two_runs):
    runs_dir, button, _, _, launcher_gone = two_runs
    rows = read_metrics(button.name, runs_dir)
    assert _events(rows)["end"] > launcher_gone  # it ended after its launcher had exited
    assert run_status(button.name, runs_dir).state == "finished"


def test_a_killed_run_resumes_from_its_last_checkpoint(dataset, tmp_path):
    run_dir = create_run(tiny_config(dataset, epochs=500, probe_images=2), tmp_path)
    state = run_dir / "checkpoints" / "state.json"
    wait_for(lambda: state.is_file(), timeout=180)
    pid = int((run_dir / "pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: run_status(run_dir.name, tmp_path).state == "crashed", timeout=30)
    done = json.loads(state.read_text())["epochs_done"]
    assert run_status(run_dir.name, tmp_path).resumable
    before = read_metrics(run_dir.name, tmp_path)
    # Finish two epochs after the checkpoint, not 500.
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "epochs": done + 2}))

    resume(run_dir, launch=False)
    status = train(run_dir)
    rows = read_metrics(run_dir.name, tmp_path)
    assert status.state == "finished" and status.epochs_done == done + 2
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == list(range(done + 2))
    steps = [r["step"] for r in rows if r["kind"] == "batch"]
    assert steps == list(range(1, (done + 2) * STEPS + 1))
    # the run's life (a tiny set may also get a "not_learning" warning, which is no stage of it)
    assert [r["event"] for r in rows if r["kind"] == "event"
            and r["event"] != "not_learning"] == ["start", "resume", "end"]
    # the epochs before the crash are kept as they were
    old = [r for r in before if r["kind"] == "epoch" and r["epoch"] < done]
    assert old == [r for r in rows if r["kind"] == "epoch" and r["epoch"] < done]
    # the optimizer went on from the checkpoint (a fresh one would have counted 2 epochs)
    last = keras.saving.load_model(run_dir / "checkpoints" / "last.keras")
    assert int(last.optimizer.iterations) == (done + 2) * STEPS


def test_mirrored_strategy_over_two_logical_cpus(dataset, tmp_path):
    # Logical devices must be set before TensorFlow initialises its devices: own process.
    script = textwrap.dedent("""
        import json, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from engine.training.runs import create_run
        from engine.training.run import train
        from engine.training.config import load_config
        config = load_config(sys.argv[1])
        status = train(create_run(config, sys.argv[2], launch=False),
                       tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
        print(json.dumps({"state": status.state, "replicas": status.info["replicas"],
                          "run_id": status.run_id}))
    """)
    save_config(tiny_config(dataset, epochs=1, probe_images=2, evaluate=False),
                tmp_path / "run.json")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "run.json"),
                          str(tmp_path / "runs")], cwd=ROOT, env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["state"] == "finished" and result["replicas"] == 2
    rows = read_metrics(result["run_id"], tmp_path / "runs")
    # each global batch of 8 was split over 2 replicas; the log still has one row per batch
    assert [r["step"] for r in rows if r["kind"] == "batch"] == list(range(1, STEPS + 1))
    assert (tmp_path / "runs" / result["run_id"] / "timeline" / "epoch_0001.npz").is_file()
