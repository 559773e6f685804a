"""A whole layer as a background job: started once, polled by any number of viewers.

Visualising every filter of a layer takes minutes on a CPU. A user interface starts a
``LayerJob`` (a daemon thread running ``visualize`` with a disk cache) and polls it: finished
batches are in ``job.result()`` as soon as they are done, and the job goes on when the viewer
leaves the page. ``JobRegistry`` keeps one job per key (model, layer, filters, settings), so a
second viewer of the same layer joins the running job, and runs at most ``max_running`` jobs
at once (on a CPU two jobs at once only take twice as long each).

Plain Python and threads: the engine knows nothing of the user interface that polls.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Hashable

from engine.actmax.optimize import ActMaxResult, Progress
from engine.errors import CNNExplorerError

log = logging.getLogger("cnn_explorer")

#: The states of a job, in the order they happen.
WAITING, RUNNING, FINISHED, STOPPED, FAILED = "waiting", "running", "finished", "stopped", "failed"


class LayerJob:
    """One ``visualize`` call in a background thread.

    Args:
        key: what the job computes (for the registry).
        work: ``work(callback) -> ActMaxResult``, e.g. ``functools.partial(visualize, model,
            layer, filters, cache_dir=..., ...)`` called with ``callback=``.
        units_total: how many units the job computes.
        slots: a semaphore bounding how many jobs run at once.

    Attributes (read them from any thread):
        status: ``WAITING``, ``RUNNING``, ``FINISHED``, ``STOPPED`` or ``FAILED``.
        error: the reason of a failure, a sentence for people.
        progress: the last ``Progress`` reported.
        started, ended: ``time.time()`` of the start and of the end (``None`` until then).
    """

    def __init__(self, key: Hashable, work: Callable[..., ActMaxResult], units_total: int,
                 slots: threading.Semaphore):
        self.key = key
        self.units_total = units_total
        self.status = WAITING
        self.error: str | None = None
        self.progress = Progress(0, units_total, 0, 0)
        self.started: float | None = None
        self.ended: float | None = None
        self.stop_requested = False
        self._work = work
        self._slots = slots
        self._parts: list[ActMaxResult] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"actmax-{abs(hash(key)) % 10**8}")

    # -- callback protocol (called from the job's thread by ``visualize``)
    def on_begin(self, units_total: int, steps: int) -> None:
        self.progress = Progress(0, units_total, 0, steps)

    def __call__(self, progress: Progress) -> None:
        self.progress = progress
        if progress.finished is not None:
            with self._lock:
                self._parts.append(progress.finished)

    def on_end(self, result: ActMaxResult) -> None:
        pass

    # -- control
    def start(self) -> "LayerJob":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the job to stop after the current step (finished batches stay cached)."""
        self.stop_requested = True

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self.status in (WAITING, RUNNING)

    @property
    def fraction(self) -> float:
        return 1.0 if self.status == FINISHED else self.progress.fraction

    def result(self) -> ActMaxResult | None:
        """The units finished so far (in the order they finished), or ``None`` before any."""
        with self._lock:
            parts = list(self._parts)
        if not parts:
            return None
        first = parts[0]
        return ActMaxResult.concatenate(parts, first.history.shape[1], first.images.shape[1:3],
                                        first.objective)

    def _run(self) -> None:
        with self._slots:
            if self.stop_requested:  # stopped while waiting for its turn
                self.status, self.ended = STOPPED, time.time()
                return
            self.status, self.started = RUNNING, time.time()
            try:
                self._work(callback=self)
            except CNNExplorerError as exc:
                self.status, self.error = FAILED, str(exc)
            except Exception as exc:  # a bug: log it, tell people without a traceback
                log.exception("activation maximisation job %s failed", self.key)
                self.status = FAILED
                self.error = (f"The computation failed unexpectedly ({type(exc).__name__}); the "
                              "details are in the server log.")
            else:
                self.status = STOPPED if self.stop_requested else FINISHED
            finally:
                self.ended = time.time()


class JobRegistry:
    """The jobs of one process, one per key.

    Args:
        max_running: jobs that compute at the same time; the others wait.
    """

    def __init__(self, max_running: int = 1):
        self._jobs: dict[Hashable, LayerJob] = {}
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max_running)

    def get(self, key: Hashable) -> LayerJob | None:
        with self._lock:
            return self._jobs.get(key)

    def start(self, key: Hashable, work: Callable[..., ActMaxResult], units_total: int
              ) -> LayerJob:
        """The job for ``key``: the one already waiting or running, else a new one started."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.alive:
                return job
            job = LayerJob(key, work, units_total, self._slots)
            self._jobs[key] = job
        return job.start()

    def jobs(self) -> list[LayerJob]:
        with self._lock:
            return list(self._jobs.values())

    def stop_all(self, timeout: float = 30.0) -> None:
        """Stop every job and wait for their threads (tests, shutdown)."""
        jobs = self.jobs()
        for job in jobs:
            job.stop()
        for job in jobs:
            job.join(timeout)
