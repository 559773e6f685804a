"""Every saliency method on one image, as one piece of work that hands over each map as soon as
it is ready (the Saliency page's comparison grid runs it as one job of the server's queue).

A method that fails does not stop the others: its place in the result says why, in a sentence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engine.errors import CNNExplorerError
from engine.models.explorable import ExplorableModel
from engine.progress import Progress, publish, report, stop_requested
from engine.saliency import METHODS, explain

log = logging.getLogger("cnn_explorer")

#: ``explain_one(method, layer, progress)``: one method's (H, W) map of the image
ExplainOne = Callable[[str, str | None, Progress | None], np.ndarray]


@dataclass(frozen=True)
class ComparedMap:
    """One method's outcome.

    Attributes:
        method: a key of ``METHODS``.
        saliency: (H, W) float32 map in [0, 1], or ``None`` when the method failed.
        error: why it failed, a sentence for people (``None`` when it did not).
    """

    method: str
    saliency: np.ndarray | None = None
    error: str | None = None


class _Stopped(Exception):
    """The listener asked the work to stop (``progress.stop_requested``)."""


def compare_methods(model: ExplorableModel, image: np.ndarray, target=None,
                    layer: str | None = None, *, methods: Sequence[str] | None = None,
                    explain_one: ExplainOne | None = None,
                    progress: Progress | None = None) -> list[ComparedMap]:
    """Each method's map of ``image`` for ``target``, each with its default options.

    Args:
        model: the model.
        image: (H, W, 3) uint8 RGB.
        target: as for ``explain`` (``None``: the image's top class).
        layer: the CAM methods' layer (``None``: their default); the other methods get none.
        methods: keys of ``METHODS``, in the order to run them; default: all, fast ones first.
        explain_one: how one map is computed, ``explain_one(method, layer, progress)`` (a
            caller's cache of maps); default: ``explain(model, [image], method, target,
            layer)``.
        progress: ``progress(done, total, stage)`` counted in methods (fractional while one
            runs), the stage naming the method (``engine.progress``); its ``publish`` gets each
            ``ComparedMap`` when done; once its ``stop_requested`` is true the work stops after
            the current batch.

    Returns:
        A ``ComparedMap`` per method run, in order (fewer after a stop).
    """
    names = list(METHODS if methods is None else methods)
    if explain_one is None:
        def explain_one(name, method_layer, method_progress):
            return explain(model, [image], name, target, method_layer,
                           progress=method_progress)[0]

    n, done = len(names), []
    for i, name in enumerate(names):
        title = METHODS[name].title
        stage = f"{title} ({i + 1}/{n})..."

        def step(part, total, _stage, i=i, stage=stage):
            report(progress, i + part / max(total, 1), n, stage)
            if stop_requested(progress):
                raise _Stopped

        try:
            step(0, 1, stage)
            found = ComparedMap(name, explain_one(
                name, layer if METHODS[name].uses_layer else None, step))
        except _Stopped:
            return done
        except CNNExplorerError as exc:
            found = ComparedMap(name, error=f"{title}: {exc}")
        except Exception:  # a bug in one method: the others still run
            log.exception("comparing saliency methods: %s failed", name)
            found = ComparedMap(name, error=f"{title}: something went wrong inside CNN "
                                            "Explorer; the details were written to the server log.")
        done.append(found)
        publish(progress, found)
    report(progress, n, n, f"All {n} methods done.")
    return done
