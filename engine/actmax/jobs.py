"""A whole layer of activation maximisation as a job of the server's queue (``engine.jobs``).

Visualising every filter of a layer takes minutes on a CPU. The page submits
``layer_work(request, cache_dir)`` under the request's key: a second viewer of the same layer
joins the running job, the job goes on when its page is left, and every finished batch is
written to the disk cache and published on the job, so ``finished_so_far(job)`` grows while it
runs. Cancelling stops after the current optimisation step; finished batches stay cached.
"""

from __future__ import annotations

import os
from typing import Callable

from engine.actmax.optimize import ActMaxResult
from engine.jobs import Job, JobProgress


def layer_work(request, cache_dir: str | os.PathLike, *, batch_size: int | None = None
               ) -> Callable[[Job], ActMaxResult]:
    """The work of a job computing ``request`` (an ``actmax.Request``) with a disk cache
    (``batch_size``: see ``actmax.run``)."""
    from engine import actmax  # the package imports this module's users, not the other way

    def work(job: Job) -> ActMaxResult:
        return actmax.run(request, cache_dir=cache_dir, batch_size=batch_size,
                          callback=JobProgress(job))

    return work


def finished_so_far(job: Job) -> ActMaxResult | None:
    """The units the job finished so far (in the order they finished), or ``None``."""
    parts = job.parts()
    if not parts:
        return None
    first = parts[0]
    return ActMaxResult.concatenate(parts, first.history.shape[1], first.images.shape[1:3],
                                    first.objective)
