"""MultiWorkerMirroredStrategy for real: two worker processes on this machine, a cluster on two
localhost ports, each running ``python -m engine.training`` with its own ``TF_CONFIG``, as the
README shows for two machines. Each worker is one CPU replica; the global batch of 8 is split
4 + 4 between them and the gradients are all-reduced over gRPC, so both must end with the same
weights."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from engine.training.config import save_config
from engine.training.metrics import read_rows
from engine.training.run import WORKER_DIR_ENV
from engine.training.runs import create_run
from tests.conftest import ROOT
from tests.engine.training_helpers import STEPS, tiny_config, tiny_dataset

EPOCHS = 2
#: seconds the whole cluster may take (about 15 s on 2 idle cores; far more on a busy machine)
DEADLINE = 300


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("data"))


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _cluster(worker_args: list[list[str]], tmp_path):
    """Run ``python -m engine.training <args>`` as worker 0, 1... of one cluster; wait for all
    of them (killing every one still running after ``DEADLINE``). Worker 1 keeps its folder in
    ``tmp_path / "worker1"``. Returns ``[(exit status, output)]``."""
    hosts = [f"127.0.0.1:{p}" for p in _free_ports(len(worker_args))]
    procs = []
    try:
        for index, args in enumerate(worker_args):
            log = open(tmp_path / f"worker{index}.log", "w")
            env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
                   "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path),
                   WORKER_DIR_ENV: str(tmp_path / f"worker{index}"),
                   "TF_CONFIG": json.dumps({"cluster": {"worker": hosts},
                                            "task": {"type": "worker", "index": index}})}
            procs.append((subprocess.Popen([sys.executable, "-m", "engine.training", *args],
                                           cwd=ROOT, env=env, stdout=log,
                                           stderr=subprocess.STDOUT), log))
        deadline = time.monotonic() + DEADLINE
        for proc, _ in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()  # SIGKILL: a worker waiting for its peers ignores SIGTERM
                proc.wait()
            log.close()
    return [(proc.returncode, (tmp_path / f"worker{i}.log").read_text())
            for i, (proc, _) in enumerate(procs)]


def _weights(path):
    model = keras.saving.load_model(path, compile=True)
    return model.get_weights(), int(model.optimizer.iterations)


def _epoch_rows(path):
    return [{k: r[k] for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")}
            for r in read_rows(path) if r["kind"] == "epoch"]


def test_two_workers_train_one_model_and_only_the_chief_writes_the_run(dataset, tmp_path):
    save_config(tiny_config(dataset, epochs=EPOCHS, probe_images=0, evaluate=False,
                            strategy="multi_worker"), tmp_path / "run.json")
    command = ["--config", str(tmp_path / "run.json"), "--runs-dir", str(tmp_path / "runs")]
    results = _cluster([command, command], tmp_path)
    for code, output in results:
        assert code == 0, output[-4000:]

    # The chief's run folder: one run, finished, written by the chief alone.
    runs = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert len(runs) == 1
    run = runs[0]
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["replicas"] == 2
    assert status["steps_per_epoch"] == STEPS  # the global batch of 8, not 4 per worker
    assert (run / "model.keras").is_file() and (run / "model.json").is_file()
    rows = read_rows(run / "metrics.jsonl")
    events = [r["event"] for r in rows if r["kind"] == "event"]
    assert events.count("start") == 1 and events.count("end") == 1 and events[-1] == "end"
    assert [r["step"] for r in rows if r["kind"] == "batch"] == list(range(1, EPOCHS * STEPS + 1))
    assert [r["epoch"] for r in rows if r["kind"] == "epoch"] == list(range(EPOCHS))
    assert f"run folder: {run}" in results[0][1]
    assert str(tmp_path / "runs") not in results[1][1]  # worker 1 never named it

    # Worker 1 kept its own record: the same run, the same metrics, the same weights.
    worker = tmp_path / "worker1"
    assert json.loads((worker / "status.json").read_text())["state"] == "finished"
    assert _epoch_rows(worker / "metrics.jsonl") == _epoch_rows(run / "metrics.jsonl")
    (chief_weights, chief_steps), (worker_weights, worker_steps) = (
        _weights(folder / "checkpoints" / "last.keras") for folder in (run, worker))
    assert chief_steps == worker_steps == EPOCHS * STEPS
    assert len(chief_weights) == len(worker_weights)
    for a, b in zip(chief_weights, worker_weights):
        np.testing.assert_array_equal(a, b)


def test_a_stop_asked_on_the_chief_stops_every_worker(dataset, tmp_path):
    # Asked before the start, the stop comes at the chief's first flush of the live metrics,
    # mid-epoch; the worker that is not asked must leave the same batch, not wait in an
    # all-reduce the chief never joins.
    config = tiny_config(dataset, epochs=50, probe_images=0, evaluate=False,
                         strategy="multi_worker")
    save_config(config, tmp_path / "run.json")
    run = create_run(config, tmp_path / "runs", launch=False)
    (run / "STOP").write_text("")
    results = _cluster([["--run-dir", str(run)],
                        ["--config", str(tmp_path / "run.json"), "--runs-dir", "unused"]],
                       tmp_path)
    for code, output in results:
        assert code == 0, output[-4000:]
    assert "stopped: Stopped on request" in results[0][1]
    assert "stopped: Stopped with another worker of the cluster." in results[1][1]
    worker = tmp_path / "worker1"
    assert json.loads((run / "status.json").read_text())["state"] == "stopped"
    assert json.loads((worker / "status.json").read_text())["state"] == "stopped"
    (chief_weights, chief_steps), (worker_weights, worker_steps) = (
        _weights(folder / "checkpoints" / "last.keras") for folder in (run, worker))
    assert 0 < chief_steps == worker_steps < 50 * STEPS
    for a, b in zip(chief_weights, worker_weights):
        np.testing.assert_array_equal(a, b)
