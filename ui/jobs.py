"""The server's one job queue (``engine.jobs``) as the pages see it: submit heavy work, show its
place in line and its progress while the page stays usable, cancel it.

How a session proves it is alive: Streamlit's runtime knows which sessions have a browser tab
connected by websocket (``Runtime.is_active_session``, safe from any thread). Closing or
reloading the tab disconnects the session; the queue's watchdog asks every second and, after
``$CNN_EXPLORER_JOB_GRACE_S`` seconds (a browser that reconnects keeps its session id),
cancels the jobs nobody is left to see. Switching pages keeps the same session, so a job goes
on while its page is not shown.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from engine.errors import BusyError
from engine.jobs import CANCELLED, COMPUTE, FAILED, FINISHED, QUEUED, Job, JobQueue
from engine.training import max_runs
from ui.text import md_escape

POLL_S = 1.0


def session_alive(session_id: str) -> bool:
    """Whether a browser tab is still connected to ``session_id``; True without a runtime
    (AppTest, scripts): there is then no browser to lose."""
    if not Runtime.exists():
        return True
    return bool(Runtime.instance().is_active_session(session_id))


@st.cache_resource(show_spinner=False)
def job_queue() -> JobQueue:
    """One queue per server process, shared by every session (limits: see ``engine.jobs``;
    training runs at once: ``$CNN_EXPLORER_MAX_RUNS``)."""
    return JobQueue.from_env(training_limit=max_runs(), session_alive=session_alive)


def session_id() -> str | None:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def job_for(key: Hashable, work: Callable[[Job], Any], *, title: str, lane: str = COMPUTE,
            outlives_session: bool = False, start: bool = True) -> Job | None:
    """The job for ``key``: the one queued, running or recently ended; else (``start``) a new
    one submitted for this session. ``None`` when nothing is there and ``start`` is False, or
    when this session already has its share of jobs (a warning says so).

    A job that was cancelled for another session (it went away) is submitted again; one this
    session cancelled stays cancelled until the page asks again (``start`` after a button).
    """
    queue = job_queue()
    me = session_id()
    job = queue.get(key)
    if job is not None and job.alive and me:
        queue.watch(job, me)
    mine = job is not None and me in (job.sessions | {job.owner})
    if job is not None and not (job.status == CANCELLED and not mine):
        return job
    if not start:
        return None
    try:
        return queue.submit(key, work, session=me, title=title, lane=lane,
                            outlives_session=outlives_session)
    except BusyError as exc:
        st.warning(md_escape(str(exc)), icon=":material/hourglass_top:")
        return None


def again(key: Hashable, work: Callable[[Job], Any], *, title: str, **options) -> Job | None:
    """Submit ``key`` anew (after a cancel or a failure)."""
    queue = job_queue()
    job = queue.get(key)
    if job is not None and job.alive:
        return job
    try:
        return queue.submit(key, work, session=session_id(), title=title, **options)
    except BusyError as exc:
        st.warning(md_escape(str(exc)), icon=":material/hourglass_top:")
        return None


def queued_result(key: Hashable, work: Callable[[Job], Any], *, title: str, follow_key: str,
                  again_key: str, again_label: str = "Compute again") -> Any:
    """The result of the job computing ``key`` (``job_for``: submitted when missing), or
    ``None`` while it waits or runs (``follow`` shows where it stands) and after it failed or
    was cancelled (``ended_message`` says so, beside a button that submits it again)."""
    job = job_for(key, work, title=title)
    if job is None or job.status == FINISHED:
        return None if job is None else job.result
    if job.alive:
        follow(job, follow_key)
        return None
    ended_message(job)
    if st.button(again_label, key=again_key, icon=":material/replay:"):
        again(key, work, title=title)
        st.rerun()
    return None


def status_text(job: Job) -> str:
    """Where the job stands, for people: its place in line, or its progress."""
    queue = job_queue()
    if job.status == QUEUED:
        ahead = queue.ahead(job)
        busy = len(queue.running(job.lane))
        place = ("yours starts next" if ahead == 0 else
                 f"{ahead} job{'s' if ahead != 1 else ''} ahead of yours")
        return (f"{job.title}: waiting, {place} ({busy} running on this server, at most "
                f"{queue.limits[job.lane]} at once).")
    if job.alive:
        detail = job.text or (f"{job.done:.0f} of {job.total:.0f}" if job.total else "starting")
        return f"{job.title}: {detail}"
    return {CANCELLED: f"{job.title}: cancelled.", FAILED: f"{job.title}: failed."}.get(
        job.status, f"{job.title}: done.")


def follow(job: Job, key: str, body: Callable[[Job], None] | None = None) -> None:
    """Show a queued or running job's place in line and progress, with a Cancel button, polling
    every second in a fragment (the rest of the page stays usable); ``body(job)`` draws what
    is finished so far on each tick. The whole page reruns once the job has ended."""
    _follow(job, key, body)


@st.fragment(run_every=POLL_S)
def _follow(job: Job, key: str, body: Callable[[Job], None] | None) -> None:
    if not job.alive:
        st.rerun()  # it ended: draw the page with the result, stop polling
    left, right = st.columns([6, 1], vertical_alignment="center")
    left.progress(job.fraction, text=md_escape(status_text(job)))
    right.button("Cancel", key=f"{key}_cancel", icon=":material/close:",
                 on_click=job_queue().cancel, args=(job,))
    if body is not None:
        body(job)


def ended_message(job: Job) -> None:
    """Say why an ended job has no result (failed or cancelled); nothing for a finished one."""
    if job.status == FAILED:
        st.error(md_escape(job.error or "The computation failed."), icon=":material/error:")
    elif job.status == CANCELLED:
        st.info(md_escape(f"{job.title}: cancelled."), icon=":material/cancel:")
