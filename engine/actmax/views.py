"""The Filters page's form as data (the choices it offers and their defaults) and what it says
about a layer's progress. Plain text (no Markdown): the page escapes and draws it.

The defaults are the engine's own: ``Settings`` for the optimisation, ``plan``'s signature for
the objective and the penalties, ``DreamSettings`` for DeepDream; a changed default changes the
form too.
"""

from __future__ import annotations

import inspect

from engine.actmax import default_size, plan
from engine.actmax.dream import DreamSettings
from engine.actmax.optimize import Settings
from engine.jobs import CANCELLED, FINISHED, Job
from engine.models.explorable import ExplorableModel

#: view -> its name on the page
VIEWS = {"layer": "Filters of a layer", "class": "Classes", "dream": "DeepDream"}
#: which units of a layer -> its name ("filters" reads "classes" in the class view)
MODES = {"all": "All filters", "range": "A range", "pick": "Pick filters"}
OBJECTIVES = {"channel": "Channel (mean over the whole map)", "neuron": "Neuron (centre only)"}
PARAMS = {"fourier": "Fourier (decorrelated)", "pixels": "Pixels"}
#: image sides offered (the model's default side is added)
SIZES = (32, 48, 64, 96, 128, 160, 192, 224)
#: a model with more classes starts with a range of them instead of all
DEFAULT_MAX_CLASSES = 12
#: what DeepDream starts from
DREAM = DreamSettings()


def _plan_default(name: str):
    return inspect.signature(plan).parameters[name].default


def form_defaults(side: int) -> dict:
    """The form's starting values, as ``plan`` arguments, for images of ``side`` pixels (the
    model's ``default_size``): ``Settings``' optimisation defaults, a shift of 1/16 of the
    side (at least one pixel) and ``plan``'s objective and penalties."""
    settings = Settings()
    return dict(objective=_plan_default("objective"), steps=settings.steps, size=side,
                learning_rate=settings.learning_rate, param=settings.param,
                jitter=max(1, round(side / 16)), scale=settings.scale,
                rotate=int(settings.rotate), decorrelate=settings.decorrelate,
                tv=_plan_default("tv"), l2=_plan_default("l2"), blur=_plan_default("blur"),
                seed=settings.seed, coarse_to_fine=_plan_default("coarse_to_fine"))


def size_choices(model: ExplorableModel) -> list[int]:
    """``SIZES`` with the model's default side, sorted."""
    return sorted(set(SIZES) | {default_size(model)[0]})


def status_line(job: Job | None, done: int, total: int, noun: str) -> str:
    """Where a layer stands: ``done`` of ``total`` units (``noun``: "filters" or "classes")
    are finished; ``job`` computes the rest (``None``: no job, only the disk cache). A
    waiting job's place in line is the queue's to tell (``ui.jobs.status_text``)."""
    if job is None:
        if done == total:
            return f"All {total} {noun} come from the cache."
        rest = "the rest" if done else "them"
        return f"{done} of {total} {noun} are in the cache. Press Start to compute {rest}."
    if job.alive:
        stage = f" · {job.text}" if job.text else ""
        return f"Computing: {done} of {total} {noun} done{stage}"
    seconds = (job.ended or 0) - (job.started or 0)
    if job.status == FINISHED:
        return f"Done: {done} of {total} {noun} in {seconds:.0f} s."
    if job.status == CANCELLED:
        return f"Stopped: {done} of {total} {noun} done (kept in the cache)."
    return f"Failed after {done} of {total} {noun}."
