"""The Tour page and presenter mode in AppTest, on the bundled demo model and demo image."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

from engine.images import load_image
from engine.models import load_model
from tests.conftest import ROOT
from tests.pages.checks import assert_clean

STEPS = ["An image is numbers", "One convolution", "Feature maps: what the layers see",
         "The prediction", "Where it looks", "What its filters like", "How it learns"]


def _tour(app):
    at = app()
    at.run()
    at.switch_page("pages/tour.py").run()
    assert_clean(at)
    return at


def _headers(at) -> list[str]:
    return [h.value for h in at.header]


def _wait_for_job(at, timeout=180):
    """Rerun until no job progress bar is left (the page's own step bar stays)."""
    deadline = time.monotonic() + timeout
    while [p for p in at.get("progress") if not p.proto.text.startswith("Step ")]:
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.5)
        at.run()


def test_every_step_renders_on_the_demo_model(app):
    at = _tour(app)
    for number, title in enumerate(STEPS, start=1):
        if number == 6:
            _wait_for_job(at)  # activation maximisation of six kernels
        assert_clean(at, title)
        assert _headers(at) == [f"{number}. {title}"]
        assert f"Step {number} of 7" in [p.proto.text for p in at.get("progress")]
        if number == 6:
            captions = [i.caption for image in at.get("image") for i in image.proto.imgs]
            assert len([c for c in captions if re.fullmatch(r"kernel \d+ likes", c)]) == 6
        if number < len(STEPS):
            at.button(key="tour_next_top").click().run()
    assert at.button(key="tour_next_top").disabled
    assert at.button(key="tour_fit_start")


def test_next_and_previous_move_and_the_step_survives_a_page_switch(app):
    at = _tour(app)
    assert at.button(key="tour_prev_top").disabled
    at.button(key="tour_next_top").click().run()
    at.button(key="tour_next_bottom").click().run()
    assert _headers(at) == ["3. Feature maps: what the layers see"]
    at.button(key="tour_prev_top").click().run()
    assert _headers(at) == ["2. One convolution"]
    at.switch_page("pages/model.py").run()
    at.switch_page("pages/tour.py").run()
    assert_clean(at)
    assert _headers(at) == ["2. One convolution"]


def _every_step(at):
    """Open the Tour and walk its steps but the last, each clean and headed by its own title;
    yields (number, title, the info boxes' texts) before going on to the next step."""
    at.switch_page("pages/tour.py").run()
    for number, title in enumerate(STEPS[:-1], start=1):
        if number == 6:
            _wait_for_job(at)
        assert_clean(at, title)
        assert _headers(at) == [f"{number}. {title}"]
        yield number, title, [i.value for i in at.info]
        at.button(key="tour_next_top").click().run()


def _hand_convolution(row: int, col: int, kernel_index: int) -> float:
    """The first layer's output by hand: the 3x3 patch of the star image (divided by 255,
    zero outside the image: padding "same") times the kernel, plus the bias, then ReLU."""
    model = load_model("demo")
    layer = model.keras_model.get_layer("block1_conv1")
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    x = model.prepare(load_image(ROOT / "assets" / "images" / "shape_star.png"))[0] / 255.0
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    patch = padded[row:row + 3, col:col + 3, :]  # rows row-1..row+1 of the image
    return max(0.0, float((patch * kernel[..., kernel_index]).sum() + bias[kernel_index]))


def _shown(at) -> tuple[int, int, int, float]:
    line = next(m.value for m in at.markdown if m.value.startswith("**Kernel "))
    kernel, row, col = map(int, re.match(r"\*\*Kernel (\d+), row (\d+), column (\d+)", line)
                           .groups())
    value = float(next(m.value for m in at.metric if m.label == "Output at this position"))
    return kernel, row, col, value


def test_the_convolution_step_shows_patch_times_kernel_plus_bias(app):
    at = _tour(app)
    at.button(key="tour_next_top").click().run()
    kernel, row, col, value = _shown(at)
    assert value == pytest.approx(_hand_convolution(row, col, kernel), abs=1e-4)
    assert value > 0  # it starts where the kernel responds most

    at.slider(key="_w_tour_row").set_value(2).run()  # move the window: computed again
    at.slider(key="_w_tour_col").set_value(5).run()
    kernel2, row, col, value = _shown(at)
    assert (kernel2, row, col) == (kernel, 2, 5)
    assert value == pytest.approx(_hand_convolution(2, 5, kernel), abs=1e-4)

    other = (kernel + 1) % 16
    at.selectbox(key="_w_tour_kernel").set_value(other).run()
    assert_clean(at)
    kernel, row, col, value = _shown(at)
    assert kernel == other
    assert value == pytest.approx(_hand_convolution(row, col, other), abs=1e-4)


def test_the_prediction_step_shows_the_models_probabilities(app):
    at = _tour(app)
    at.session_state["tour_step"] = 3
    at.run()
    assert_clean(at)
    model = load_model("demo")
    p = model.probabilities(load_image(ROOT / "assets" / "images" / "shape_star.png"))[0]
    top = model.class_names[int(np.argmax(p))]
    text = next(m.value for m in at.markdown if "For your image it says" in m.value)
    assert f"it says **{top}**, {p.max():.0%} sure" in text
    bars = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert bars["y"][-1] == top and bars["x"][-1] == pytest.approx(float(p.max()), abs=1e-6)


@pytest.mark.slow
def test_the_learning_step_trains_and_its_curves_grow_to_the_end(app):
    at = _tour(app)
    at.session_state["tour_step"] = 6
    at.run()
    at.button(key="tour_fit_start").click().run()
    _wait_for_job(at)
    assert_clean(at)
    summary = next(m.value for m in at.markdown if m.value.startswith("Before training"))
    before, after = map(int, re.findall(r"\*\*(\d+)%\*\*", summary))
    assert before < 25 and after > before
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    batch = next(t for t in spec["data"] if t["name"] == "each practice batch")
    assert len(batch["x"]) == 120  # 2 epochs of 480 images in batches of 8
    assert at.button(key="tour_fit_again")


# ------------------------------------------------------------------------------ presenter
def _presenting(at, on: bool):
    at.sidebar.toggle(key="_w_presenter").set_value(on).run()
    return at


def _style(at) -> str:
    return " ".join(h.proto.body for h in at.get("html"))


def test_presenter_mode_enlarges_text_and_holds_across_pages(app):
    at = _tour(app)
    assert "font-size" not in _style(at)
    _presenting(at, True)
    assert re.search(r"html \{ font-size: 20px; \}", _style(at))
    at.switch_page("pages/feature_maps.py").run()
    assert_clean(at)
    assert at.sidebar.toggle(key="_w_presenter").value
    assert "font-size: 20px" in _style(at)
    _presenting(at, False)
    assert "font-size" not in _style(at)


def test_presenter_mode_enlarges_the_figures_of_other_pages(app):
    at = _tour(app)
    at.switch_page("pages/model.py").run()

    def sizes(at):
        return [(spec["layout"]["font"]["size"], spec["layout"]["height"])
                for spec in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))]

    before = sizes(at)
    assert before
    _presenting(at, True)
    assert_clean(at)
    after = sizes(at)
    assert len(after) == len(before)
    for (font, height), (font_on, height_on) in zip(before, after):
        assert font_on == pytest.approx(font * 1.3) and height_on == int(height * 1.3)


@pytest.mark.parametrize("script, shown", [
    ("pages/filters.py", lambda at: [e.label for e in at.expander if e.label == "Settings"]),
    ("pages/feature_maps.py", lambda at: [s.label for s in at.selectbox
                                          if s.label in ("Colormap", "Colour scale")]),
    ("pages/model.py", lambda at: [s.value for s in at.subheader if s.value == "Every layer"]),
    ("pages/saliency.py", lambda at: [s.label for s in at.selectbox if s.label == "Layer"]),
])
def test_presenter_mode_hides_expert_settings_and_the_page_still_works(app, script, shown):
    at = app()
    at.run()
    at.switch_page(script).run()
    assert shown(at), "the expert settings are there when not presenting"
    _presenting(at, True)
    assert_clean(at)
    assert not shown(at)
    _presenting(at, False)
    assert shown(at)


def test_presenter_mode_hides_the_training_settings_but_keeps_the_epochs(app, app_home):
    from engine.data import export_demo

    export_demo(app_home / "datasets", 60, size=32)
    at = app()
    at.run()
    at.switch_page("pages/train.py").run()
    labels = {w.label for w in at.number_input} | {w.label for w in at.selectbox}
    assert {"Epochs", "Batch size", "Learning rate"} <= labels
    assert "More settings" in [e.label for e in at.expander]
    _presenting(at, True)
    assert_clean(at)
    labels = {w.label for w in at.number_input} | {w.label for w in at.selectbox}
    assert "Epochs" in labels and not {"Batch size", "Learning rate", "Optimizer"} & labels
    assert "More settings" not in [e.label for e in at.expander]


def test_a_step_the_model_cannot_show_says_why_and_the_others_work(app, tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.SeparableConv2D(4, 3, activation="relu", name="separable")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="sep")
    path = tmp_path / "separable.keras"
    model.save(path)
    at = app(model="own", path=str(path), prep="unit")
    at.run()
    for number, title, reasons in _every_step(at):
        if number == 2:  # a separable convolution has no single kernel per colour to spell out
            assert len(reasons) == 1
            assert "does not start with a plain convolution layer" in reasons[0]
        else:
            assert not reasons, (title, reasons)


@pytest.mark.slow
def test_every_step_renders_on_an_imagenet_model(app, mobilenet_weights):
    at = app(model="mobilenet_0.25")
    at.session_state["weights_path_mobilenet_0.25"] = str(mobilenet_weights)
    at.run()
    for _, title, reasons in _every_step(at):
        assert not reasons, (title, reasons)
