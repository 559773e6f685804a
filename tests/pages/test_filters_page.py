"""AppTest for the Filters page: start a layer, see the grid, reopen it from the cache, classes,
stopping, DeepDream."""

from __future__ import annotations

import json

import pytest

from engine.models import load_model
from tests.pages.checks import assert_clean
from ui.jobs import job_queue

PAGE = "pages/filters.py"


@pytest.fixture(autouse=True)
def no_jobs_left():
    yield
    job_queue().cancel_all()


def _open(app, steps: int | None = 4, **query):
    at = app(model="demo", **query).run()
    at.switch_page(PAGE).run()
    assert_clean(at)
    if steps is not None:
        at.number_input(key="_w_am_steps").set_value(steps).run()
    return at


def _wait_for_jobs(at):
    """Let the background jobs finish, then draw the page as it is now."""
    assert job_queue().wait_idle(120)
    return at.run()


def _status(at) -> str:
    return at.get("progress")[0].proto.text


def _grid_points(at, key: str) -> int:
    charts = [c for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id]
    spec = json.loads(charts[0].proto.spec)
    return len(spec["data"][1]["hovertext"])


def test_page_offers_the_conv_layers_and_explains_itself(app):
    at = _open(app, steps=None)
    assert "What am I looking at?" in [e.label for e in at.expander]
    layer = next(s for s in at.selectbox if s.label == "Layer")
    assert layer.options == load_model("demo").conv_layers
    assert _status(at) == "0 of 16 filters are in the cache. Press Start to compute them."
    assert at.button(key="am_stop_layer").disabled


def test_start_fills_the_grid_and_a_new_visit_reads_the_cache(app):
    at = _open(app)
    at.button(key="am_start_layer").click().run()
    assert_clean(at)
    at = _wait_for_jobs(at)
    assert_clean(at)
    assert _status(at).startswith("Done: 16 of 16 filters")
    assert _grid_points(at, "am_grid_layer") == 16
    assert "One filter up close" in [s.value for s in at.subheader]
    assert at.selectbox(key="_w_am_selected_layer").value == 0
    labels = [b.label for b in at.get("download_button")]
    assert "Download the grid (PNG)" in labels and "Download this image (PNG)" in labels

    job_queue.clear()  # as after a server restart: no job in memory, only the disk cache
    again = _open(app)  # another visit (session) with the same settings
    assert _status(again) == "All 16 filters come from the cache."
    assert _grid_points(again, "am_grid_layer") == 16
    assert job_queue().jobs() == []


def test_a_range_of_filters_and_picking_one_up_close(app):
    at = _open(app)
    at.radio(key="_w_am_mode_layer").set_value("range").run()
    at.slider(key="_w_am_range_layer").set_range(3, 5).run()
    at.button(key="am_start_layer").click().run()
    at = _wait_for_jobs(at)
    assert _status(at).startswith("Done: 3 of 3 filters")
    at.selectbox(key="_w_am_selected_layer").select(4).run()
    assert_clean(at)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"]
              for c in at.get("plotly_chart") if "am_curve_layer" in c.proto.id]
    assert titles == ["Activation of filter 4"]
    # The top examples of filter 4 among the sidebar's images, with their receptive fields.
    assert any("receptive field" in (i.caption or "") for i in _images(at))


def _images(at):
    return [image for element in at.get("image") for image in element.proto.imgs]


def test_stop_keeps_what_is_done(app):
    at = _open(app, steps=2048)
    at.button(key="am_start_layer").click().run()
    at.button(key="am_stop_layer").click().run()
    at = _wait_for_jobs(at)
    assert_clean(at)
    assert _status(at).startswith("Stopped")


def test_classes_are_visualised_with_their_names(app):
    at = _open(app)
    at.radio(key="_w_am_view").set_value("class").run()
    at.button(key="am_start_class").click().run()
    at = _wait_for_jobs(at)
    assert_clean(at)
    assert _status(at).startswith("Done: 6 of 6 classes")
    assert _grid_points(at, "am_grid_class") == 6
    names = load_model("demo").class_names
    assert at.selectbox(key="_w_am_selected_class").value == 0
    assert "One class up close" in [s.value for s in at.subheader]
    assert names[0] in at.selectbox(key="_w_am_selected_class").format_func(0)


def test_deep_dream_on_a_chosen_image(app):
    at = _open(app, steps=None, images="shape:star")
    at.radio(key="_w_am_view").set_value("dream").run()
    at.slider(key="_w_am_octaves").set_value(2).run()
    at.slider(key="_w_am_dream_steps").set_value(3).run()
    at.button(key="am_dream").click().run()
    assert_clean(at)
    captions = [i.caption for i in _images(at)]
    assert any(c and c.startswith("DeepDream on") for c in captions)
    assert "Download the dream (PNG)" in [b.label for b in at.get("download_button")]
