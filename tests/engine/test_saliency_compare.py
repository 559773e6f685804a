"""Every saliency method on one image: each method once, in order, the CAM layer only where a
method reads one, every map handed over when done, failures that leave the others running,
and a stop that ends the work after the current method."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidModelError
from engine.models.explorable import ExplorableModel
from engine.saliency import METHODS, explain
from engine.saliency.compare import compare_methods

IMAGE = np.full((8, 8, 3), 120, np.uint8)


class Listener:
    """A progress callback that records what it is told and can ask to stop."""

    def __init__(self, stop_after: int | None = None):
        self.calls, self.parts, self.stop_after = [], [], stop_after

    def __call__(self, done, total, stage):
        self.calls.append((done, total, stage))

    @property
    def stop_requested(self):
        return self.stop_after is not None and len(self.parts) >= self.stop_after

    def publish(self, part):
        self.parts.append(part)


def recorder(fail: dict | None = None):
    """An ``explain_one`` that records its calls and returns a map holding the call's number."""
    calls = []

    def explain_one(method, layer, progress):
        calls.append((method, layer))
        progress(1, 2, "half")
        if method in (fail or {}):
            raise fail[method]
        return np.full((8, 8), len(calls), np.float32)

    return explain_one, calls


def test_every_method_runs_once_in_order_with_the_layer_where_it_reads_one():
    explain_one, calls = recorder()
    found = compare_methods(None, IMAGE, layer="conv2", explain_one=explain_one)
    assert [c[0] for c in calls] == list(METHODS)
    assert all(layer == ("conv2" if METHODS[m].uses_layer else None) for m, layer in calls)
    assert [f.method for f in found] == list(METHODS)
    assert [float(f.saliency[0, 0]) for f in found] == list(range(1, len(METHODS) + 1))
    assert all(f.error is None for f in found)


def test_progress_counts_methods_and_each_map_is_handed_over_when_done():
    explain_one, _ = recorder()
    listener = Listener()
    found = compare_methods(None, IMAGE, methods=["vanilla", "gradcam"],
                            explain_one=explain_one, progress=listener)
    assert listener.parts == found
    assert listener.calls == [(0.0, 2, "Vanilla gradients (1/2)..."),
                              (0.5, 2, "Vanilla gradients (1/2)..."),   # half of method 1
                              (1.0, 2, "Grad-CAM (2/2)..."),
                              (1.5, 2, "Grad-CAM (2/2)..."),
                              (2, 2, "All 2 methods done.")]


def test_a_failing_method_says_why_and_the_others_still_run():
    explain_one, calls = recorder({"vanilla": InvalidModelError("No such layer."),
                                   "gradxinput": ZeroDivisionError("a bug")})
    found = compare_methods(None, IMAGE, methods=["vanilla", "gradxinput", "gradcam"],
                            explain_one=explain_one)
    assert [c[0] for c in calls] == ["vanilla", "gradxinput", "gradcam"]
    assert found[0].saliency is None and found[0].error == "Vanilla gradients: No such layer."
    assert found[1].saliency is None and "server log" in found[1].error
    assert found[1].error.startswith("Gradient x input: ")
    assert found[2].error is None and found[2].saliency is not None


def test_a_stop_ends_the_work_after_the_current_method():
    explain_one, calls = recorder()
    listener = Listener(stop_after=2)
    found = compare_methods(None, IMAGE, methods=["vanilla", "gradxinput", "gradcam"],
                            explain_one=explain_one, progress=listener)
    assert [f.method for f in found] == ["vanilla", "gradxinput"]
    assert [c[0] for c in calls] == ["vanilla", "gradxinput"]
    assert not any(stage.startswith("All") for _, _, stage in listener.calls)


@pytest.fixture(scope="module")
def tiny(tiny_cnn):
    return ExplorableModel(tiny_cnn, name="tiny", class_names=["a", "b", "c"],
                           preprocessing="unit", input_size=(8, 8))


def test_by_default_each_map_is_the_method_run_on_its_own(tiny):
    """The grid shows the same map as the Explain tab: the method with its default options."""
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    found = compare_methods(tiny, image, 1, "conv1", methods=["gradcam", "vanilla"])
    np.testing.assert_allclose(found[0].saliency, explain(tiny, [image], "gradcam", 1, "conv1")[0])
    np.testing.assert_allclose(found[1].saliency, explain(tiny, [image], "vanilla", 1)[0])
