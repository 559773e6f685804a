"""AppTest for the Saliency page: what it asks the engine for, what it shows, and that drawing
choices (opacity, colour map) reuse the maps instead of computing them again."""

from __future__ import annotations

import json
import threading

import keras
import pytest

import engine.saliency
from engine.models import load_model
from engine.saliency import METHODS
from tests.pages.checks import assert_clean
from ui.jobs import job_queue

PAGE = "pages/saliency.py"
IMAGES = "shape:star,shape:ring"


@pytest.fixture
def explain_calls(monkeypatch):
    """Records every ``engine.saliency.explain`` call the page makes (the page imports it at
    each run, so the spy is what it gets), with an empty result cache."""
    calls = []
    real = engine.saliency.explain

    def spy(model, images, method="gradcam", target=None, layer=None, **kwargs):
        options = {k: v for k, v in kwargs.items()
                   if k not in ("progress", "batch_size", "details")}
        calls.append({"model": model.name, "n": len(images), "method": method,
                      "target": target, "layer": layer, "options": options})
        return real(model, images, method, target, layer, **kwargs)

    monkeypatch.setattr(engine.saliency, "explain", spy)
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    return calls


def _open(app, **query):
    at = app(**{"images": IMAGES, **query}).run()
    at.switch_page(PAGE)
    return at.run()


def _markdown(at):
    return " ".join(m.value for m in at.markdown)


def _click(at, key):
    (button,) = [b for b in at.button if b.key == key]
    return button.click().run()


def _progress(at):
    """The first progress bar's text, as people read it (Markdown escapes removed)."""
    return at.get("progress")[0].proto.text.replace("\\", "")


def _settle(at):
    """Heavy work goes through the server's job queue: let it finish, then draw the page."""
    assert job_queue().wait_idle(120)
    return at.run()


def test_a_gradcam_map_for_every_chosen_image(app, explain_calls):
    at = _open(app)
    assert_clean(at)
    assert explain_calls == [{"model": "demo", "n": 2, "method": "gradcam", "target": None,
                              "layer": "block4_conv2", "options": {}}]
    assert len(at.get("image")) == 4                 # overlay and raw map per image
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Overlay (PNG)", "Raw map (.npy)"] * 2
    text = _markdown(at)
    assert "map for **star**" in text and "map for **ring**" in text


def test_choosing_a_method_and_a_class(app, explain_calls):
    at = _open(app)
    at.selectbox(key="_w_sal_method").select("smoothgrad").run()
    assert [s.label for s in at.slider][:2] == ["Noisy samples",
                                                "Noise level (share of the value range)"]
    circle = load_model("demo").class_names.index("circle")
    at.selectbox(key="_w_sal_target").select(circle).run()
    at = _settle(at)  # a slow method: computed by a job of the server's queue
    assert_clean(at)
    assert explain_calls[-1] == {"model": "demo", "n": 2, "method": "smoothgrad",
                                 "target": circle, "layer": None,
                                 "options": {"noise": 0.2, "samples": 20}}
    assert _markdown(at).count("map for **circle**") == 2
    # Every class can be picked, the top-5 classes of the images first.
    options = at.selectbox(key="_w_sal_target").options
    assert len(options) == 1 + len(load_model("demo").class_names)


def test_drawing_choices_reuse_the_maps(app, explain_calls):
    at = _open(app)
    at.slider(key="_w_sal_opacity").set_value(0.8).run()
    at.selectbox(key="_w_sal_cmap").select("viridis").run()
    assert_clean(at)
    assert len(explain_calls) == 1


def test_comparison_grid_runs_every_method(app, explain_calls):
    at = _settle(_click(_open(app), "sal_compare_go"))
    assert_clean(at)
    done = [p.proto.text for p in at.get("progress")]
    assert done[-1] == f"All {len(METHODS)} methods done."
    compared = {c["method"] for c in explain_calls if c["n"] == 1}
    assert compared == set(METHODS)
    assert len(at.get("image")) == 4 + len(METHODS)


def test_faithfulness_curves_and_sanity_check(app, explain_calls):
    at = _click(_open(app), "sal_faith_go")
    (chart,) = [c for c in at.get("plotly_chart") if c.proto.id.endswith("sal_faith_chart")]
    spec = json.loads(chart.proto.spec)
    assert [t["name"] for t in spec["data"]] == ["map order", "random order"] * 2
    assert "Deletion: AUC" in json.dumps(spec["layout"])
    at = _click(at, "sal_sanity_go")
    assert_clean(at)
    (metric,) = [m for m in at.metric if m.label == "Rank correlation"]
    assert -1.0 <= float(metric.value) <= 1.0
    verdicts = [s.value for s in at.success] + [w.value for w in at.warning]
    assert any("Grad-CAM: the map" in v for v in verdicts)


def test_dataset_mode_measures_saliency_inside_the_boxes(app, explain_calls):
    at = _open(app)
    at.slider(key="_w_sal_ds_count").set_value(12).run()
    at = _click(at, "sal_ds_go")
    assert_clean(at)
    metrics = {m.label: m.value for m in at.metric}
    share = float(metrics["Saliency inside the object box"].rstrip("%"))
    area = float(metrics["Image area the boxes cover"].rstrip("%"))
    assert share > area                              # the demo model looks at the shapes
    assert "grouped by their true class" in _markdown(at)
    assert any(c.proto.id.endswith("sal_ds_chart") for c in at.get("plotly_chart"))


def test_a_transfer_model_file_is_explained_inside_its_base(app, explain_calls, tmp_path):
    """An ImageNet-style base used as one layer: the default CAM layer is found inside it and
    every method runs (tf-keras-vis answers "Graph disconnected" here)."""
    keras.utils.set_random_seed(0)
    base_in = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(base_in)
    x = keras.layers.Conv2D(8, 3, name="conv_b")(x)
    x = keras.layers.BatchNormalization(name="conv_b_bn")(x)
    x = keras.layers.ReLU(name="conv_b_relu")(x)
    base = keras.Model(base_in, x, name="base")
    inputs = keras.Input((32, 32, 3))
    y = keras.layers.GlobalAveragePooling2D()(base(inputs))
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(y)
    path = tmp_path / "transfer.keras"
    keras.Model(inputs, outputs).save(path)
    at = app(images=IMAGES).run()
    at.sidebar.selectbox(key="_w_model").select("own").run()
    at.sidebar.text_input(key="_w_model_path").input(str(path)).run()
    at.switch_page(PAGE).run()
    assert_clean(at)
    assert at.selectbox(key="_w_sal_layer:transfer.keras").value == "base/conv_b_relu"
    assert explain_calls[-1]["layer"] == "base/conv_b_relu"
    at = _settle(_click(at, "sal_compare_go"))
    assert_clean(at)
    assert len(at.get("image")) == 4 + len(METHODS)


def test_a_slow_method_waits_in_line_and_shows_its_place(app, explain_calls, monkeypatch):
    """With one compute slot taken and one job of another session waiting, Score-CAM is the
    second in line; the maps appear once the line has moved on."""
    monkeypatch.setenv("CNN_EXPLORER_JOBS", "1")
    queue = job_queue()  # a fresh queue (the fixture cleared the server-wide caches)
    gate = threading.Event()
    blocker = queue.submit("other-session-1", lambda job: gate.wait(60), session="s1")
    queue.submit("other-session-2", lambda job: None, session="s2")
    at = _open(app)
    at.selectbox(key="_w_sal_method").select("scorecam").run()
    assert _progress(at) == ("Score-CAM on 2 images: waiting, 1 job ahead of yours (1 running "
                             "on this server, at most 1 at once).")
    assert [b.label for b in at.button if b.key == "sal_job_cancel"] == ["Cancel"]
    assert all(c["method"] != "scorecam" for c in explain_calls)
    gate.set()
    assert blocker.wait(60)
    at = _settle(at)
    assert_clean(at)
    assert explain_calls[-1]["method"] == "scorecam"
    assert len(at.get("image")) == 4 and not at.get("progress")


def test_integrated_gradients_show_their_completeness_gap(app, explain_calls):
    """Each image's card says how far the attributions' sum is from f(image) - f(baseline);
    the score change is checked against the class logit of a linear-output twin of the demo
    network, the gap and its share against the two numbers shown."""
    import re

    import numpy as np

    from ui.images import get_image

    at = _open(app)
    at.selectbox(key="_w_sal_method").select("integrated_gradients").run()
    at = _settle(at)
    assert_clean(at)
    assert explain_calls[-1]["options"] == {"steps": 64, "baseline": "black",
                                            "spacing": "adaptive"}
    notes = [m.value for m in at.markdown if m.value.startswith("**Completeness:**")]
    assert len(notes) == 2
    model = load_model("demo")
    twin = keras.models.clone_model(model.keras_model)
    twin.set_weights(model.keras_model.get_weights())
    twin.get_layer("predictions").activation = keras.activations.linear
    x = model.prepare([get_image(i) for i in IMAGES.split(",")])
    logits = twin(model.preprocess(x)).numpy()
    black = twin(model.preprocess(np.zeros_like(x))).numpy()
    for note, row, base in zip(notes, logits, black):
        total, difference, gap, share = map(float, re.search(
            r"add up to \*\*(\S+)\*\*.*changes by \*\*(\S+)\*\*.*gap \*\*(\S+)\*\* "
            r"\(\*\*(\S+)%\*\*\)", note).groups())
        top = int(row.argmax())
        assert difference == pytest.approx(row[top] - base[top], rel=1e-3)
        assert gap == pytest.approx(total - difference, rel=0.02, abs=2e-3 * abs(difference))
        # Shown numbers are rounded (4 significant digits): up to 0.1 point each way.
        assert share == pytest.approx(100 * abs(total - difference) / abs(difference), abs=0.2)
    warned = [w.value for w in at.warning if "The gap is over 5 %" in w.value]
    shares = [float(re.search(r"\(\*\*(\S+)%", n).group(1)) for n in notes]
    assert len(warned) == sum(s > 5 for s in shares)
