"""Run folders: creating them, launching their process, reading their status, stopping them.

Each run owns ``<runs_dir>/<run_id>/``::

    config.json        the RunConfig (written once, before the run starts)
    status.json        state, progress plan and final message (written by the run's process)
    pid                the process id of the run's process
    metrics.jsonl      the live log (engine.training.metrics)
    log.txt            the process's own output (tracebacks of failures end up here)
    STOP               present once a stop was asked for
    checkpoints/       last.keras, best.keras, state.json (where to resume)
    timeline/          probe.npz and one epoch_NNNN.npz per epoch (engine.training.timeline)
    model.keras        the final model (the best checkpoint), with model.json, its card
    evaluation.json    confusion matrix, precision and recall; evaluation.npz: the
                       misclassified images with their Grad-CAM maps

The state lives on disk and the run in its own process, so a run outlives the page, the
browser and the Streamlit server; the page finds it again by listing the folder. Nothing here
imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import TrainingError
from engine.records import stored_records
from engine.training.config import CONFIG_FILE, RunConfig, load_config, save_config

RUNS_ENV = "CNN_EXPLORER_RUNS"
MAX_RUNS_ENV = "CNN_EXPLORER_MAX_RUNS"
DEFAULT_MAX_RUNS = 2
STATUS_FILE = "status.json"
PID_FILE = "pid"
LOG_FILE = "log.txt"
STOP_FILE = "STOP"
CHECKPOINTS = "checkpoints"
LAST, BEST = "last.keras", "best.keras"
STATE_FILE = "state.json"
MODEL_FILE = "model.keras"
MODEL_CARD = "model.json"  # next to model.keras: classes, preprocessing, input size
#: states a run's process writes; "crashed" and "stopping" are only ever derived when reading
ACTIVE_STATES = ("starting", "running", "stopping")
FINAL_STATES = ("finished", "stopped", "diverged", "failed", "crashed")
_STARTING_GRACE_S = 60.0
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_children: dict[int, subprocess.Popen] = {}  # processes this process launched, to reap them


def resolve_runs_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    """``runs_dir``, else ``$CNN_EXPLORER_RUNS``; created if missing.

    Raises:
        TrainingError: neither is given.
    """
    value = runs_dir if runs_dir is not None else os.environ.get(RUNS_ENV)
    if not value:
        raise TrainingError(f"No runs folder: pass runs_dir or set {RUNS_ENV}.")
    path = Path(value).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def max_runs() -> int:
    """The default limit of runs at once: ``$CNN_EXPLORER_MAX_RUNS`` or 2."""
    try:
        return max(1, int(os.environ.get(MAX_RUNS_ENV, DEFAULT_MAX_RUNS)))
    except ValueError:
        return DEFAULT_MAX_RUNS


# ------------------------------------------------------------------------------- status
@dataclass(frozen=True)
class RunStatus:
    """What a run folder says about its run.

    Attributes:
        run_id: the folder's name.
        run_dir: the folder.
        name: what people call the run.
        mode: the training mode.
        state: ``starting``, ``running``, ``stopping``, ``finished``, ``stopped``,
            ``diverged``, ``failed`` or ``crashed`` (its process ended without saying so).
        message: what happened, for people ("" while running normally).
        created: when the folder was made (seconds since the epoch).
        epochs_done: epochs completed (from the last checkpoint).
        total_epochs: epochs planned.
        steps_per_epoch: training batches per epoch (0 until the run has started).
        batch_size: images per batch.
        pid: the process, or None.
        info: everything else status.json holds (data set name, class names, splits...).
        warning: a sentence while the run is not learning (its training loss still at chance
            level after two epochs), saying what to try; "" otherwise.
    """

    run_id: str
    run_dir: Path
    name: str
    mode: str
    state: str
    message: str
    created: float
    epochs_done: int
    total_epochs: int
    steps_per_epoch: int
    batch_size: int
    pid: int | None
    info: dict
    warning: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def has_model(self) -> bool:
        """A final model (``model.keras``) exists."""
        return (self.run_dir / MODEL_FILE).is_file()

    @property
    def resumable(self) -> bool:
        """The run can go on from its last checkpoint (it crashed, failed, or was stopped
        before its last epoch)."""
        return (self.state in ("crashed", "stopped", "failed")
                and self.epochs_done < self.total_epochs
                and (self.run_dir / CHECKPOINTS / LAST).is_file())

    @property
    def class_names(self) -> list[str]:
        return list(self.info.get("class_names", []))


def read_status(run_dir: str | os.PathLike) -> RunStatus:
    """The status of the run in ``run_dir``, with ``crashed`` and ``stopping`` derived from
    its process and its stop file.

    Raises:
        TrainingError: not a run folder.
    """
    run_dir = Path(run_dir)
    _reap()
    data = _read_json(run_dir / STATUS_FILE)
    if data is None:
        raise TrainingError(f"'{run_dir.name}' is not a training run folder.")
    state = data.get("state", "starting")
    pid, started = _read_pid(run_dir)
    message = data.get("message", "")
    if state in ("starting", "running"):
        alive = pid is not None and _alive(pid, started)
        began = max(float(data.get("created", 0)), float(data.get("restarted", 0)))
        young = time.time() - began < _STARTING_GRACE_S
        if not alive and not (state == "starting" and pid is None and young):
            state = "crashed"
            message = ("The training process ended without finishing (it was killed or the "
                       "computer restarted); see its log. " + (
                           "Resume it from its last checkpoint."
                           if (run_dir / CHECKPOINTS / LAST).is_file() else
                           "It had not finished an epoch yet: start it again."))
        elif (run_dir / STOP_FILE).exists():
            state = "stopping"
    checkpoint = _read_json(run_dir / CHECKPOINTS / STATE_FILE) or {}
    return RunStatus(
        run_id=run_dir.name, run_dir=run_dir, name=data.get("name", run_dir.name),
        mode=data.get("mode", ""), state=state, message=message,
        created=float(data.get("created", 0.0)),
        epochs_done=int(checkpoint.get("epochs_done", 0)),
        total_epochs=int(data.get("total_epochs", 0)),
        steps_per_epoch=int(data.get("steps_per_epoch", 0)),
        batch_size=int(data.get("batch_size", 0)), pid=pid, info=data,
        warning=str(data.get("warning", "")))


def write_status(run_dir: str | os.PathLike, **updates) -> dict:
    """Merge ``updates`` into ``status.json`` (atomically) and return the new content. Only a
    run's own process writes it once the run has started."""
    path = Path(run_dir) / STATUS_FILE
    data = _read_json(path) or {}
    data.update(updates)
    data["updated"] = time.time()
    _write_json(path, data)
    return data


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[RunStatus]:
    """Every run in the runs folder, newest first."""
    return stored_records(resolve_runs_dir(runs_dir), STATUS_FILE, read_status, TrainingError,
                          key=lambda s: (-s.created, s.run_id))


def run_dir_of(run_id: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """The folder of ``run_id``.

    Raises:
        TrainingError: no such run (or an id that is not a plain folder name).
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run_id or ""):
        raise TrainingError(f"'{run_id}' is not a run id.")
    path = resolve_runs_dir(runs_dir) / run_id
    if not (path / STATUS_FILE).is_file():
        raise TrainingError(f"There is no run '{run_id}'; it may have been deleted.")
    return path


# ------------------------------------------------------------------------------ creating
def create_run(config: RunConfig, runs_dir: str | os.PathLike | None = None, *,
               max_concurrent: int | None = None, launch: bool = True) -> Path:
    """Make a run folder for ``config`` and (``launch``) start its process in the background.

    The limit check and the folder creation happen under a lock on the runs folder, so two
    tabs pressing Start at once cannot both pass the limit.

    Args:
        config: the settings (validated here).
        runs_dir: the runs folder (default ``$CNN_EXPLORER_RUNS``).
        max_concurrent: most runs going at once (default ``max_runs()``).
        launch: start the process; False leaves that to the caller (the command line trains
            in its own process).

    Returns:
        The new run folder.

    Raises:
        TrainingError: invalid settings, or the limit is reached.
    """
    config.validate()
    root = resolve_runs_dir(runs_dir)
    limit = max_concurrent or max_runs()
    with _locked(root):
        going = [s for s in list_runs(root) if s.active]
        if len(going) >= limit:
            raise TrainingError(
                f"{len(going)} run{'s are' if len(going) > 1 else ' is'} already going "
                f"(limit {limit}): wait for one to finish, stop one, or raise the limit.")
        run_dir = root / _new_run_id(config)
        run_dir.mkdir()
        save_config(config, run_dir / CONFIG_FILE)
        write_status(run_dir, state="starting", name=config.name or default_name(config),
                     mode=config.mode, created=time.time(), total_epochs=config.total_epochs,
                     batch_size=config.batch_size)
        if launch:
            launch_process(run_dir)
    return run_dir


def launch_process(run_dir: Path) -> subprocess.Popen:
    """Start ``python -m engine.training --run-dir run_dir`` in its own session (so it
    survives the server that started it), its output going to ``log.txt``."""
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT),
                                                    env.get("PYTHONPATH")) if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with open(run_dir / LOG_FILE, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.training", "--config", str(run_dir / CONFIG_FILE),
             "--run-dir", str(run_dir)],
            cwd=_PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    write_pid(run_dir, proc.pid)
    _children[proc.pid] = proc
    return proc


def resume(run_dir: str | os.PathLike, *, launch: bool = True,
           max_concurrent: int | None = None) -> Path:
    """Go on with a crashed, failed or stopped run from its last checkpoint.

    Raises:
        TrainingError: the run is going, finished, or has no checkpoint; or the limit.
    """
    run_dir = Path(run_dir)
    root = run_dir.parent
    with _locked(root):
        status = read_status(run_dir)
        if not status.resumable:
            raise TrainingError(f"The run '{status.name}' is {status.state} and cannot be "
                                "resumed" + ("" if status.state in ACTIVE_STATES else
                                             " (it has no checkpoint or nothing left to do)")
                                + ".")
        limit = max_concurrent or max_runs()
        going = [s for s in list_runs(root) if s.active]
        if len(going) >= limit:
            raise TrainingError(f"{len(going)} runs are already going (limit {limit}); wait "
                                "for one to finish or stop one.")
        (run_dir / STOP_FILE).unlink(missing_ok=True)
        (run_dir / PID_FILE).unlink(missing_ok=True)
        write_status(run_dir, state="starting", message="", restarted=time.time())
        if launch:
            launch_process(run_dir)
    return run_dir


def request_stop(run_dir: str | os.PathLike, *, force: bool = False) -> RunStatus:
    """Ask a run to stop: it finishes the current batch, saves its last checkpoint and model,
    and ends as ``stopped``. ``force`` kills its process instead (it can be resumed)."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    if not status.active:
        return status
    (run_dir / STOP_FILE).write_text(str(time.time()))
    if force and status.pid is not None and _alive(status.pid, _read_pid(run_dir)[1]):
        os.kill(status.pid, signal.SIGKILL)
        _reap()
    return read_status(run_dir)


def delete(run_dir: str | os.PathLike) -> None:
    """Remove a run that is not going, its folder and everything in it (model included).

    The folder is first renamed to a hidden name, under the runs folder's lock, so listings
    never show a half-deleted run and a resume cannot start it meanwhile.

    Raises:
        TrainingError: the run is still going (stop it first), or is not a run folder.
    """
    run_dir = Path(run_dir)
    with _locked(run_dir.parent):
        status = read_status(run_dir)
        if status.active:
            raise TrainingError(f"The run '{status.name}' is {status.state}; stop it and wait "
                                "for it to end before deleting it.")
        doomed = run_dir.with_name(f".deleted-{run_dir.name}-{secrets.token_hex(3)}")
        os.replace(run_dir, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def default_name(config: RunConfig) -> str:
    """A name for people: what is trained, and on which data set."""
    from engine.data.dataset import open_dataset
    from engine.errors import InvalidDatasetError

    try:
        data = open_dataset(config.dataset).name
    except InvalidDatasetError:
        data = Path(config.dataset).name
    what = {"scratch": "scratch CNN", "feature_extraction": f"{config.base_model} features",
            "fine_tuning": f"{config.base_model} fine-tuned",
            "continue": f"continued {Path(config.init_model or '').stem}"}[config.mode]
    return f"{what} on {data}"


# ------------------------------------------------------------------------------ helpers
def _new_run_id(config: RunConfig) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", config.name or config.mode).strip("-").lower()[:24]
    return f"{stamp}-{slug or 'run'}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def _locked(root: Path):
    with open(root / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _read_pid(run_dir: Path) -> tuple[int | None, str | None]:
    try:
        parts = (run_dir / PID_FILE).read_text().split()
        return int(parts[0]), (parts[1] if len(parts) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None, None


def _alive(pid: int, start: str | None = None) -> bool:
    """Whether ``pid`` is still the process that wrote the pid file: alive, not a zombie, and
    (where ``/proc`` tells) started at ``start``, so a recycled pid does not count."""
    if pid == os.getpid():
        return True  # a run trained in this very process (tests, notebooks)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc (macOS): the signal check is all there is
    if stat[0] in ("Z", "X"):
        return False
    return start is None or stat[19] == start


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first, start time at
    index 19), or None without ``/proc``."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def write_pid(run_dir: Path, pid: int) -> None:
    """Record the run's process: its id and, where ``/proc`` tells, its start time."""
    stat = _proc_stat(pid)
    (run_dir / PID_FILE).write_text(f"{pid} {stat[19]}" if stat else str(pid))


def _reap() -> None:
    """Collect the exit status of finished children (else they linger as zombies)."""
    for pid, proc in list(_children.items()):
        if proc.poll() is not None:
            del _children[pid]


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    return load_config(Path(run_dir) / CONFIG_FILE)
