"""Admitting training runs through the server's job queue (``engine.jobs``, lane "training").

A run trains in its own process; what the queue bounds is how many are going at once. The job
of a run waits for its turn in the training lane, then for the runs folder to show fewer than
``limit`` runs going (runs started before a server restart or from the command line count too),
starts the run, publishes its id, and keeps its slot until the run's process has ended.
Cancelling the job before that stops the run gracefully (it keeps its checkpoints and can be
resumed).
"""

from __future__ import annotations

import os
import time
from typing import Callable

from engine.jobs import Job
from engine.training.runs import list_runs, read_status, request_stop, resolve_runs_dir


def admission(start: Callable[[], str], runs_dir: str | os.PathLike, limit: int, *,
              poll_s: float = 1.0) -> Callable[[Job], str]:
    """The work of a job that admits one run.

    Args:
        start: starts the run (e.g. ``lambda: start_run(config, runs_dir)``) and returns its id.
        runs_dir: the runs folder.
        limit: most runs going at once, counted in the runs folder.
        poll_s: how often the folder is looked at.

    Returns:
        ``work(job) -> run id``; the run id is also published (``job.parts()``) as soon as the
        run has started.
    """
    def work(job: Job) -> str:
        root = resolve_runs_dir(runs_dir)
        while True:
            going = sum(s.active for s in list_runs(root))
            if going < limit:
                break
            job.report(0, 0, f"waiting for one of the {going} runs going to end")
            time.sleep(poll_s)
        run_id = start()
        job.publish(run_id)
        stopped = False
        while read_status(root / run_id).active:
            job.report(0, 0, "training", check=False)
            if job.cancelled and not stopped:
                request_stop(root / run_id)
                stopped = True
            time.sleep(poll_s)
        return run_id

    return work
