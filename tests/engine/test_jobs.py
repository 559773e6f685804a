"""The server's job queue: limits, order, sharing, progress, cancelling, sessions that went away.

Every job here blocks on an event the test controls, so what runs when is decided by the test,
never by timing luck.
"""

from __future__ import annotations

import threading

import pytest

from engine.errors import BusyError, InvalidModelError
from engine.jobs import CANCELLED, FAILED, FINISHED, QUEUED, RUNNING, JobQueue

TIMEOUT = 10


class Gate:
    """Work that reports it started, then waits until the test opens it."""

    def __init__(self, result=None):
        self.started = threading.Event()
        self.open = threading.Event()
        self.result = result

    def __call__(self, job):
        self.started.set()
        while not self.open.wait(0.01):
            job.report(0, 1)  # raises JobCancelled once cancelled
        return self.result


@pytest.fixture
def queue():
    q = JobQueue(max_running=2, per_session=2, lanes={"training": 1})
    yield q
    q.cancel_all(TIMEOUT)
    q.close()


def test_the_global_limit_holds_back_the_rest_in_submission_order(queue):
    gates = [Gate(i) for i in range(4)]
    jobs = [queue.submit(i, gate) for i, gate in enumerate(gates)]
    assert gates[0].started.wait(TIMEOUT) and gates[1].started.wait(TIMEOUT)
    assert [j.status for j in jobs] == [RUNNING, RUNNING, QUEUED, QUEUED]
    assert [queue.ahead(j) for j in jobs[2:]] == [0, 1]  # "1 job ahead of yours"
    gates[1].open.set()
    assert gates[2].started.wait(TIMEOUT)  # the first in line takes the free slot
    assert jobs[1].status == FINISHED and jobs[1].result == 1
    assert jobs[3].status == QUEUED and queue.ahead(jobs[3]) == 0
    assert len(queue.running()) == 2


def test_lanes_have_their_own_limits(queue):
    training = [Gate(), Gate()]
    first = queue.submit("run-a", training[0], lane="training")
    second = queue.submit("run-b", training[1], lane="training")
    compute = queue.submit("cam", Gate())
    assert training[0].started.wait(TIMEOUT)
    assert first.status == RUNNING and second.status == QUEUED
    assert compute.status == RUNNING  # a training run does not hold a compute slot


def test_one_session_cannot_take_more_than_its_share(queue):
    queue.submit("a", Gate(), session="alice")
    queue.submit("b", Gate(), session="alice")
    with pytest.raises(BusyError, match="at most 2 per person"):
        queue.submit("c", Gate(), session="alice")
    assert queue.submit("c", Gate(), session="bob").owner == "bob"  # others still can
    # Joining a job another session started costs nothing.
    assert queue.submit("c", Gate(), session="alice").owner == "bob"


def test_a_second_viewer_joins_the_job_of_the_same_key(queue):
    gate = Gate("maps")
    job = queue.submit("scorecam:star", gate, session="alice")
    assert queue.submit("scorecam:star", Gate("other"), session="bob") is job
    assert job.sessions == {"alice", "bob"}
    gate.open.set()
    assert job.wait(TIMEOUT) and job.result == "maps"
    assert queue.get("scorecam:star") is job  # still findable once finished
    rerun = queue.submit("scorecam:star", Gate())
    assert rerun is not job and rerun.alive  # an ended job can be submitted again


def test_progress_and_parts_are_visible_while_the_job_runs(queue):
    step, go_on = threading.Event(), threading.Event()

    def work(job):
        job.report(1, 4, "batch 1 of 4")
        job.publish("first batch")
        step.set()
        go_on.wait(TIMEOUT)
        job.report(4, 4)
        return "all"

    job = queue.submit("k", work)
    assert step.wait(TIMEOUT)
    assert (job.fraction, job.text, job.parts()) == (0.25, "batch 1 of 4", ["first batch"])
    go_on.set()
    assert job.wait(TIMEOUT) and job.fraction == 1.0 and job.result == "all"


def test_cancelling_a_queued_job_and_a_running_one(queue):
    gates = [Gate(), Gate(), Gate()]
    jobs = [queue.submit(i, gate) for i, gate in enumerate(gates)]
    assert gates[0].started.wait(TIMEOUT) and gates[1].started.wait(TIMEOUT)
    queue.cancel(jobs[2])
    assert jobs[2].status == CANCELLED and not gates[2].started.is_set()
    assert queue.waiting() == []
    queue.cancel(jobs[0])
    assert jobs[0].wait(TIMEOUT) and jobs[0].status == CANCELLED and jobs[0].result is None


def test_failures_are_sentences(queue):
    def refused(job):
        raise InvalidModelError("The layer is gone.")

    def bug(job):
        raise ZeroDivisionError

    a, b = queue.submit("a", refused), queue.submit("b", bug)
    assert a.wait(TIMEOUT) and b.wait(TIMEOUT)
    assert (a.status, a.error) == (FAILED, "The layer is gone.")
    assert b.status == FAILED and "ZeroDivisionError" in b.error and "server log" in b.error


def test_the_jobs_of_a_session_that_went_away_are_cancelled():
    alive = {"alice": True, "bob": True}
    queue = JobQueue(max_running=1, per_session=4, lanes={"training": 1},
                     session_alive=lambda s: alive[s], grace_s=0.3, check_every_s=0.05)
    try:
        mine, shared, queued = Gate(), Gate(), Gate()
        running = queue.submit("alice-cam", mine, session="alice")
        waiting = queue.submit("alice-grid", queued, session="alice")
        watched = queue.submit("layer", shared, session="alice", lane="training")
        queue.watch(watched, "bob")
        run = Gate()
        training = queue.submit("run", run, session="alice", lane="training",
                                outlives_session=True)
        assert mine.started.wait(TIMEOUT) and shared.started.wait(TIMEOUT)
        assert waiting.status == QUEUED and training.status == QUEUED
        alive["alice"] = False  # the tab was closed: the watchdog finds out by itself
        assert running.wait(TIMEOUT) and running.status == CANCELLED
        assert waiting.wait(TIMEOUT) and waiting.status == CANCELLED
        assert training.wait(TIMEOUT) and training.status == CANCELLED  # never started
        assert not queued.started.is_set() and not run.started.is_set()
        assert watched.alive and watched.sessions == {"bob"}  # bob still watches it
        shared.open.set()
        assert watched.wait(TIMEOUT) and watched.status == FINISHED
    finally:
        queue.cancel_all(TIMEOUT)
        queue.close()


def test_a_running_training_admission_outlives_its_session():
    alive = {"alice": True}
    queue = JobQueue(lanes={"training": 1}, session_alive=lambda s: alive[s], grace_s=0.0,
                     check_every_s=60)
    gate = Gate()
    job = queue.submit("run", gate, session="alice", lane="training", outlives_session=True)
    assert gate.started.wait(TIMEOUT)
    alive["alice"] = False
    assert queue.reap() == [] and job.status == RUNNING
    gate.open.set()
    assert job.wait(TIMEOUT) and job.status == FINISHED
    queue.close()


def test_a_short_disconnect_within_the_grace_period_cancels_nothing():
    alive = {"alice": True}
    queue = JobQueue(session_alive=lambda s: alive[s], grace_s=5.0, check_every_s=60)
    gate = Gate()
    job = queue.submit("k", gate, session="alice")
    alive["alice"] = False
    assert queue.reap(now=100.0) == []
    alive["alice"] = True  # the browser reconnected
    assert queue.reap(now=104.0) == []
    alive["alice"] = False
    assert queue.reap(now=106.0) == []  # gone again: the grace period starts over
    assert queue.reap(now=111.0) == [job]
    assert job.wait(TIMEOUT) and job.status == CANCELLED
    queue.close()


# ------------------------------------------------------------------ admitting training runs
def test_a_training_run_is_admitted_when_the_runs_folder_has_room(tmp_path):
    """Limit 1 and a run already going (started before a server restart): the next run starts
    only once that one has ended, and the job keeps its slot until its own run has ended."""
    from engine.data import export_demo
    from engine.training.admission import admission
    from engine.training.runs import create_run, read_status, write_status
    from tests.engine.training_helpers import tiny_config, wait_for

    runs = tmp_path / "runs"
    dataset = export_demo(tmp_path / "data", n=36, size=32, seed=0)
    earlier = create_run(tiny_config(dataset, name="earlier"), runs, launch=False)
    started = []

    def start():
        started.append(create_run(tiny_config(dataset, name="mine"), runs, launch=False).name)
        return started[-1]

    queue = JobQueue(lanes={"training": 1})
    job = queue.submit("run", admission(start, runs, limit=1, poll_s=0.02), lane="training")
    wait_for(lambda: job.text.startswith("waiting for one of the 1 runs"), timeout=TIMEOUT)
    assert started == [] and job.status == RUNNING
    write_status(earlier, state="finished")
    (run_id,) = wait_for(job.parts, timeout=TIMEOUT)
    assert started == [run_id] and read_status(runs / run_id).active
    assert job.alive  # the slot stays taken while the run is going
    write_status(runs / run_id, state="finished")
    assert job.wait(TIMEOUT) and (job.status, job.result) == (FINISHED, run_id)
    queue.close()


def test_cancelling_an_admitted_run_asks_it_to_stop(tmp_path):
    from engine.data import export_demo
    from engine.training.admission import admission
    from engine.training.runs import STOP_FILE, create_run, write_status
    from tests.engine.training_helpers import tiny_config, wait_for

    runs = tmp_path / "runs"
    dataset = export_demo(tmp_path / "data", n=36, size=32, seed=0)
    queue = JobQueue(lanes={"training": 1})
    job = queue.submit("run", admission(
        lambda: create_run(tiny_config(dataset), runs, launch=False).name, runs, limit=1,
        poll_s=0.02), lane="training")
    (run_id,) = wait_for(job.parts, timeout=TIMEOUT)
    queue.cancel(job)
    wait_for(lambda: (runs / run_id / STOP_FILE).is_file(), timeout=TIMEOUT)
    assert job.alive  # until the run's process has saved and ended
    write_status(runs / run_id, state="stopped")
    assert job.wait(TIMEOUT) and job.status == CANCELLED
    queue.close()
