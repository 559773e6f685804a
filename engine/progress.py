"""The engine's one progress protocol: ``callback(done, total, stage)``.

Every long computation of the engine (saliency maps in batches, importing a data set, a data
set's report, the model report, activation maximisation, DeepDream) takes an optional
callback and calls it as it goes::

    callback(done, total, stage)

- ``done`` of ``total``: how far it is, in the computation's own units (batches, images,
  filters); ``done`` may be fractional (a batch partly optimised) and is ``total`` at the end.
- ``stage``: what it is doing, a short phrase for people (``"reading images"``).

The engine does not know who listens: a progress bar, a job of the server's queue
(``Job.report`` has this signature; ``engine.jobs.JobProgress``), a test's list. After Keras'
and tf-keras-vis' callbacks, work that can stop early or that finishes in pieces also looks at
two optional attributes of the callback:

- ``stop_requested``: true once the listener wants the work to stop after its current step;
- ``publish(part)``: a finished piece of the result (a batch of activation maximisation
  images), handed over before the whole is done.
"""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    """``callback(done, total, stage)``: see the module docstring."""

    def __call__(self, done: float, total: float, stage: str) -> None: ...


def report(callback: Progress | None, done: float, total: float, stage: str) -> None:
    """Tell ``callback`` how far the work is (nothing when it is ``None``)."""
    if callback is not None:
        callback(done, total, stage)


def report_each_percent(callback: Progress | None, done: int, total: int, stage: str) -> None:
    """``report`` for a loop over many small items: about once each hundredth of ``total``,
    and at the end (a callback that redraws a bar would cost more than the items)."""
    if done == total or done % max(1, total // 100) == 0:
        report(callback, done, total, stage)


def stop_requested(callback: Progress | None) -> bool:
    """Whether ``callback`` asks the work to stop (its optional ``stop_requested``)."""
    return bool(getattr(callback, "stop_requested", False))


def publish(callback: Progress | None, part: Any) -> None:
    """Hand a finished piece of the result to ``callback.publish``, where it has one."""
    hook = getattr(callback, "publish", None)
    if hook is not None:
        hook(part)
