"""The server's one queue of heavy jobs: bounded globally and per session, cancellable.

A class of 30 shares one machine. Every heavy computation (Score-CAM and the other slow
saliency methods, the comparison grid, activation maximisation, data set reports, the admission
of training runs) is a ``Job`` submitted to one ``JobQueue``:

- **Lanes.** Jobs wait in first-in-first-out lines; each lane has a global limit of jobs
  running at once. ``"compute"`` jobs run in this process (threads on the same CPU cores, so
  a few at a time); ``"training"`` jobs only admit a training run, whose work happens in its
  own process, and keep its slot until that process ends.
- **Per session.** One session has at most ``per_session`` jobs queued or running; one more
  is refused with ``BusyError``, a sentence the page shows.
- **Shared by key.** Submitting the key of a job that is still queued or running joins it (a
  second viewer of the same layer watches the same job); finished jobs stay findable by key for
  a while.
- **Progress and parts.** The work gets its ``Job`` and calls ``job.report(done, total, text)``
  (the signature of the engine's progress callbacks, ``engine.progress``; ``JobProgress`` is a
  job as such a callback, for work that stops by itself); results that come in pieces are
  published with ``job.publish(part)`` and read with ``job.parts()`` while the job still runs.
- **Cancellation.** ``cancel`` takes a queued job out of its line at once, and asks a running
  one to stop: the next ``report`` raises ``JobCancelled`` inside the work (work that checks
  ``job.cancelled`` itself can stop more gently).
- **Sessions that went away.** Given ``session_alive(session_id) -> bool``, a watchdog thread
  drops sessions that have not been alive for ``grace_s`` seconds from their jobs, and cancels
  a job nobody is left to see: every queued job, and running jobs unless they were submitted
  with ``outlives_session=True`` (a training run goes on when its browser closes).

Plain Python and threads: the engine knows nothing of the user interface that polls it. The
user interface says how it knows a session is alive (``ui.jobs`` asks Streamlit's runtime
whether the browser tab's websocket is still connected).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Hashable

from engine.errors import BusyError, CNNExplorerError

log = logging.getLogger("cnn_explorer")

#: The states of a job, in the order they happen.
QUEUED, RUNNING, FINISHED, CANCELLED, FAILED = "queued", "running", "finished", "cancelled", \
    "failed"
COMPUTE, TRAINING = "compute", "training"

JOBS_ENV = "CNN_EXPLORER_JOBS"
PER_SESSION_ENV = "CNN_EXPLORER_JOBS_PER_SESSION"
GRACE_ENV = "CNN_EXPLORER_JOB_GRACE_S"
DEFAULT_JOBS = 2
DEFAULT_PER_SESSION = 3
DEFAULT_GRACE_S = 10.0
_KEEP_FINISHED = 128  # finished jobs kept findable by key


class JobCancelled(Exception):
    """Raised inside a job's work (by ``Job.report``) once the job was cancelled."""


class Job:
    """One unit of heavy work, waiting, running or done.

    Attributes (read them from any thread):
        id: a short unique id.
        key: what the job computes (jobs with the same key are one job while it is alive).
        title: what people call it ("Score-CAM on 2 images").
        lane: the line it waits in.
        owner: the session that submitted it (``None``: no session, e.g. a test or a script).
        status: ``QUEUED``, ``RUNNING``, ``FINISHED``, ``CANCELLED`` or ``FAILED``.
        error: why it failed, a sentence for people.
        done, total, text: the last progress reported (``total`` 0: not known yet).
        result: what the work returned (``FINISHED`` only).
        submitted, started, ended: ``time.time()`` stamps (``None`` until then).
    """

    _ids = itertools.count(1)

    def __init__(self, key: Hashable, work: Callable[["Job"], Any], *, title: str = "",
                 lane: str = COMPUTE, owner: str | None = None, outlives_session: bool = False):
        self.id = f"job{next(self._ids)}"
        self.key = key
        self.title = title or str(key)
        self.lane = lane
        self.owner = owner
        self.outlives_session = outlives_session
        self.sessions: set[str] = {owner} if owner else set()
        self.status = QUEUED
        self.error: str | None = None
        self.done, self.total, self.text = 0, 0, ""
        self.result: Any = None
        self.submitted = time.time()
        self.started: float | None = None
        self.ended: float | None = None
        self._work = work
        self._cancel = threading.Event()
        self._ended = threading.Event()
        self._parts: list = []
        self._lock = threading.Lock()

    # -- called by the work, from the job's thread
    def report(self, done: float, total: float | None = None, text: str | None = None, *,
               check: bool = True) -> None:
        """Record progress; raises ``JobCancelled`` once the job was cancelled, unless ``check``
        is False (work that stops by itself, looking at ``cancelled``)."""
        self.done = done
        if total is not None:
            self.total = total
        if text is not None:
            self.text = text
        if check and self._cancel.is_set():
            raise JobCancelled(self.id)

    def publish(self, part: Any) -> None:
        """Make a finished piece of the result visible before the job ends."""
        with self._lock:
            self._parts.append(part)

    @property
    def cancelled(self) -> bool:
        """True once cancelling was asked for (work may check it and return early)."""
        return self._cancel.is_set()

    # -- read from anywhere
    def parts(self) -> list:
        """The pieces published so far, in order."""
        with self._lock:
            return list(self._parts)

    @property
    def alive(self) -> bool:
        return self.status in (QUEUED, RUNNING)

    @property
    def fraction(self) -> float:
        """Share done in [0, 1] (1 once finished)."""
        if self.status == FINISHED:
            return 1.0
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has ended; False when ``timeout`` passed first."""
        return self._ended.wait(timeout)

    def __repr__(self) -> str:
        return f"Job({self.id}, {self.title!r}, {self.status}, {self.done}/{self.total})"

    # -- the queue's side
    def _run(self, on_end: Callable[["Job"], None]) -> None:
        try:
            if self._cancel.is_set():
                raise JobCancelled(self.id)
            result = self._work(self)
        except JobCancelled:
            self.status = CANCELLED
        except CNNExplorerError as exc:
            self.status, self.error = FAILED, str(exc)
        except Exception as exc:  # a bug: log it, tell people without a traceback
            log.exception("job %s (%s) failed", self.id, self.title)
            self.status = FAILED
            self.error = (f"The computation failed unexpectedly ({type(exc).__name__}); the "
                          "details are in the server log.")
        else:
            self.result = result
            self.status = CANCELLED if self._cancel.is_set() else FINISHED
        finally:
            self.ended = time.time()
            on_end(self)
            self._ended.set()


class JobProgress:
    """A job as the engine's progress callback (``engine.progress``), for work that stops by
    itself: each call is a ``report`` that does not raise, ``stop_requested`` turns true once
    the job is cancelled, finished pieces of the result are published on the job."""

    def __init__(self, job: Job):
        self.job = job

    def __call__(self, done: float, total: float, stage: str) -> None:
        self.job.report(done, total, stage, check=False)

    @property
    def stop_requested(self) -> bool:
        return self.job.cancelled

    def publish(self, part: Any) -> None:
        self.job.publish(part)


class JobQueue:
    """Bounded lines of jobs for one server process.

    Args:
        max_running: jobs of the ``"compute"`` lane running at once.
        per_session: jobs one session may have queued or running at once (all lanes).
        lanes: limits of further lanes, e.g. ``{"training": 2}``.
        session_alive: ``session_alive(session_id) -> bool``; ``None``: every session counts as
            alive (nothing is cancelled for going away).
        grace_s: how long a session may look gone (a reconnecting browser) before its jobs
            are cancelled.
        check_every_s: how often the watchdog asks ``session_alive``.
    """

    def __init__(self, max_running: int = DEFAULT_JOBS, per_session: int = DEFAULT_PER_SESSION,
                 lanes: dict[str, int] | None = None,
                 session_alive: Callable[[str], bool] | None = None,
                 grace_s: float = DEFAULT_GRACE_S, check_every_s: float = 1.0):
        self.limits = {COMPUTE: max(1, int(max_running))}
        self.limits.update({lane: max(1, int(n)) for lane, n in (lanes or {}).items()})
        self.per_session = max(1, int(per_session))
        self.grace_s = float(grace_s)
        self._session_alive = session_alive
        self._check_every = float(check_every_s)
        self._lock = threading.RLock()
        self._waiting: dict[str, collections.deque[Job]] = {lane: collections.deque()
                                                           for lane in self.limits}
        self._running: dict[str, list[Job]] = {lane: [] for lane in self.limits}
        self._by_key: dict[Hashable, Job] = {}
        self._finished: collections.deque[Job] = collections.deque()
        self._gone_since: dict[str, float] = {}
        self._watchdog: threading.Thread | None = None
        self._closed = threading.Event()

    @classmethod
    def from_env(cls, *, training_limit: int = 2, **kwargs) -> "JobQueue":
        """Limits from ``$CNN_EXPLORER_JOBS`` (compute jobs at once, default 2),
        ``$CNN_EXPLORER_JOBS_PER_SESSION`` (default 3) and ``$CNN_EXPLORER_JOB_GRACE_S``
        (default 10); ``training_limit`` for the training lane."""
        return cls(max_running=_env_number(JOBS_ENV, DEFAULT_JOBS, int),
                   per_session=_env_number(PER_SESSION_ENV, DEFAULT_PER_SESSION, int),
                   grace_s=_env_number(GRACE_ENV, DEFAULT_GRACE_S, float),
                   lanes={TRAINING: training_limit}, **kwargs)

    # ---------------------------------------------------------------------------- submitting
    def submit(self, key: Hashable, work: Callable[[Job], Any], *, session: str | None = None,
               title: str = "", lane: str = COMPUTE, outlives_session: bool = False) -> Job:
        """The job for ``key``: the one still queued or running (``session`` joins it), else a
        new one in ``lane``'s line.

        Args:
            key: what the job computes (hashable).
            work: ``work(job) -> result``, run in a thread of its own.
            session: the submitting session (for its limit and for cancelling when it goes).
            title: what people call the job.
            lane: the line to wait in (``"compute"`` or a lane given to the constructor).
            outlives_session: once running, go on when every session watching it went away.

        Raises:
            BusyError: ``session`` already has ``per_session`` jobs queued or running.
            KeyError: an unknown lane.
        """
        if lane not in self.limits:
            raise KeyError(f"unknown lane {lane!r}")
        with self._lock:
            job = self._by_key.get(key)
            if job is not None and job.alive:
                if session:
                    job.sessions.add(session)
                return job
            if session is not None:
                mine = self.session_jobs(session)
                if len(mine) >= self.per_session:
                    raise BusyError(
                        f"You already have {len(mine)} computations waiting or running on this "
                        f"server (at most {self.per_session} per person): wait for one to finish "
                        "or cancel one.")
            job = Job(key, work, title=title, lane=lane, owner=session,
                      outlives_session=outlives_session)
            self._by_key[key] = job
            self._waiting[lane].append(job)
            self._dispatch()
        self._ensure_watchdog()
        return job

    def get(self, key: Hashable) -> Job | None:
        """The newest job for ``key`` (alive or recently ended), or ``None``."""
        with self._lock:
            return self._by_key.get(key)

    def watch(self, job: Job, session: str) -> None:
        """Count ``session`` among the viewers of ``job`` (it is then cancelled only when all
        its viewers went away)."""
        with self._lock:
            if job.alive:
                job.sessions.add(session)

    # ------------------------------------------------------------------------------- reading
    def ahead(self, job: Job) -> int:
        """Jobs in the same line that start before ``job`` (0: it starts next; 0 once it runs)."""
        with self._lock:
            line = self._waiting.get(job.lane, ())
            for i, other in enumerate(line):
                if other is job:
                    return i
            return 0

    def running(self, lane: str = COMPUTE) -> list[Job]:
        with self._lock:
            return list(self._running[lane])

    def waiting(self, lane: str = COMPUTE) -> list[Job]:
        with self._lock:
            return list(self._waiting[lane])

    def session_jobs(self, session: str) -> list[Job]:
        """The queued and running jobs ``session`` submitted."""
        with self._lock:
            return [j for lane in self.limits
                    for j in itertools.chain(self._running[lane], self._waiting[lane])
                    if j.owner == session]

    def jobs(self) -> list[Job]:
        """Every job still known: running, queued, then recently ended."""
        with self._lock:
            alive = [j for lane in self.limits
                     for j in itertools.chain(self._running[lane], self._waiting[lane])]
            return alive + [j for j in self._finished if j not in alive]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running (tests, shutdown); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                alive = [j for j in self.jobs() if j.alive]
            if not alive:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            alive[0].wait(left)

    # ---------------------------------------------------------------------------- cancelling
    def cancel(self, job: Job) -> None:
        """Take a queued job out of its line, or ask a running one to stop."""
        with self._lock:
            job._cancel.set()
            line = self._waiting.get(job.lane)
            if job.status == QUEUED and line is not None and job in line:
                line.remove(job)
                job.status, job.ended = CANCELLED, time.time()
                self._remember_finished(job)
                job._ended.set()

    def cancel_all(self, timeout: float = 30.0) -> None:
        """Cancel every job and wait for the running ones (tests, shutdown)."""
        for job in self.jobs():
            if job.alive:
                self.cancel(job)
        self.wait_idle(timeout)

    def reap(self, now: float | None = None) -> list[Job]:
        """Forget sessions that have looked gone for ``grace_s``; cancel the jobs nobody is
        left to see. Returns the jobs cancelled (the watchdog calls this every second)."""
        if self._session_alive is None:
            return []
        now = time.monotonic() if now is None else now
        with self._lock:
            alive_jobs = [j for j in self.jobs() if j.alive]
            sessions = {s for j in alive_jobs for s in j.sessions}
        gone = set()
        for session in sessions:  # asked outside the lock: it may take the runtime's lock
            try:
                alive = self._session_alive(session)
            except Exception:  # a runtime that cannot tell: keep the job
                log.exception("could not tell whether session %s is alive", session)
                alive = True
            if alive:
                self._gone_since.pop(session, None)
            elif now - self._gone_since.setdefault(session, now) >= self.grace_s:
                gone.add(session)
        cancelled = []
        with self._lock:
            for job in alive_jobs:
                if not job.sessions or not job.sessions & gone:
                    continue
                job.sessions -= gone
                if job.sessions or (job.outlives_session and job.status == RUNNING):
                    continue
                self.cancel(job)
                cancelled.append(job)
            for session in gone:
                self._gone_since.pop(session, None)
        for job in cancelled:
            log.info("cancelled %s (%s): its session went away", job.id, job.title)
        return cancelled

    def close(self) -> None:
        """Stop the watchdog (jobs already running go on)."""
        self._closed.set()

    # ----------------------------------------------------------------------------- internals
    def _dispatch(self) -> None:
        with self._lock:
            for lane, line in self._waiting.items():
                while line and len(self._running[lane]) < self.limits[lane]:
                    job = line.popleft()
                    job.status, job.started = RUNNING, time.time()
                    self._running[lane].append(job)
                    threading.Thread(target=job._run, args=(self._ended,), daemon=True,
                                     name=f"{job.id}-{lane}").start()

    def _ended(self, job: Job) -> None:
        with self._lock:
            if job in self._running[job.lane]:
                self._running[job.lane].remove(job)
            self._remember_finished(job)
            self._dispatch()

    def _remember_finished(self, job: Job) -> None:
        self._finished.append(job)
        while len(self._finished) > _KEEP_FINISHED:
            old = self._finished.popleft()
            if self._by_key.get(old.key) is old:
                del self._by_key[old.key]

    def _ensure_watchdog(self) -> None:
        if self._session_alive is None:
            return
        with self._lock:
            if self._watchdog is not None and self._watchdog.is_alive():
                return
            self._watchdog = threading.Thread(target=self._watch, daemon=True,
                                              name="job-watchdog")
            self._watchdog.start()

    def _watch(self) -> None:
        while not self._closed.wait(self._check_every):
            try:
                self.reap()
            except Exception:  # never let the watchdog die
                log.exception("the job watchdog failed")


def _env_number(name: str, default, kind):
    try:
        value = kind(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default
