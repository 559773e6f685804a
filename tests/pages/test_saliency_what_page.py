"""AppTest for the Saliency page's "what" sections: "A rather than B", the channels that drove a
score (and their links to the Feature maps and Filters pages), concepts, and the trust table.

References are computed here, independently of the page: the demo model ends in global average
pooling and a Dense layer, so a channel's contribution to class k is its mean activation times
the Dense kernel's weight ``W[c, k]``."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import engine.saliency
from engine.models import load_model
from engine.saliency import ClassDifference, default_cam_layer
from tests.pages.checks import assert_clean
from ui.images import get_image
from ui.jobs import job_queue

PAGE = "pages/saliency.py"
IMAGES = "shape:star,shape:ring"


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


@pytest.fixture(autouse=True)
def empty_caches():
    """Empty caches at the start; at the end, no job of this test still running."""
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    assert job_queue().wait_idle(120)


@pytest.fixture
def few_steps(monkeypatch):
    """Activation maximisation in 2 steps, on the Saliency page and the Filters page alike (the
    same settings, so both read one disk cache)."""
    import ui.filters_sections
    import ui.saliency_what
    from engine.actmax.views import form_defaults

    def short(side):
        return {**form_defaults(side), "steps": 2}

    monkeypatch.setattr(ui.saliency_what, "form_defaults", short)
    monkeypatch.setattr(ui.filters_sections, "form_defaults", short)


def _open(app, page=PAGE, **query):
    at = app(**{"images": IMAGES, **query}).run()
    at.switch_page(page)
    return at.run()


def _click(at, key):
    (button,) = [b for b in at.button if b.key == key]
    return button.click().run()


def _markdown(at):
    return " ".join(m.value for m in at.markdown)


def _contributions(demo, image, k):
    """(C,) each channel's contribution to logit ``k`` (an index, or an (a, b) pair: a - b)."""
    layer = demo.keras_model.get_layer(default_cam_layer(demo.keras_model))
    head = demo.keras_model.get_layer("predictions").get_weights()[0]
    weights = head[:, k[0]] - head[:, k[1]] if isinstance(k, tuple) else head[:, k]
    cut = keras.Model(demo.keras_model.inputs, layer.output)
    assert demo.preprocessing == "unit"  # the network takes RGB divided by 255
    mean = cut([demo.prepare(image) / 255.0]).numpy()[0].mean(axis=(0, 1))
    return mean * weights


def test_a_rather_than_b_defaults_to_the_runner_up(app, demo, monkeypatch):
    calls = []
    real = engine.saliency.explain

    def spy(model, images, method="gradcam", target=None, layer=None, **kwargs):
        calls.append(target)
        return real(model, images, method, target, layer, **kwargs)

    monkeypatch.setattr(engine.saliency, "explain", spy)
    at = _open(app)
    at.toggle(key="_w_sal_contrast").set_value(True).run()
    assert_clean(at)
    probabilities = demo.probabilities([get_image(i) for i in IMAGES.split(",")])
    ranked = np.argsort(-probabilities, axis=1)
    expected = tuple(ClassDifference(int(a), int(b)) for a, b in ranked[:, :2])
    assert calls[-1] == expected
    names = demo.class_names
    for a, b in ranked[:, :2]:
        assert f"map for **{names[a]} rather than {names[b]}**" in _markdown(at)
    assert at.query_params["vs"] in ("runner-up", ["runner-up"])

    other = next(c for c in range(len(names)) if c not in ranked[:, 0])
    at.selectbox(key="_w_sal_vs").select(other).run()
    assert_clean(at)
    assert calls[-1] == tuple(ClassDifference(int(a), other) for a in ranked[:, 0])


def test_what_drove_this_shows_the_channels_with_the_largest_contributions(app, demo,
                                                                             few_steps):
    at = _click(_open(app), "sal_what_go")
    assert_clean(at)
    star = get_image("shape:star")
    top = int(np.argmax(demo.probabilities([star])[0]))
    values = _contributions(demo, star, top)
    order = np.argsort(-values)
    expected_for = [int(c) for c in order[:3]]
    expected_against = [int(c) for c in order[::-1][:3]]
    shown = [b.key.removeprefix("sal_what_fm_") for b in at.button
             if b.key.startswith("sal_what_fm_")]
    assert shown == [str(c) for c in expected_for + expected_against]
    for c in expected_for[:1] + expected_against[:1]:
        side = "for" if values[c] > 0 else "against"
        assert f"**Channel {c}** · {side}: **{values[c]:+.3g}**" in _markdown(at)


def test_a_channel_link_opens_that_channel_on_the_feature_maps_page(app, demo, few_steps):
    at = _open(app, "pages/feature_maps.py")
    at.number_input(key="_w_fm_channel").set_value(1).run()  # this session's own choice first
    at.switch_page(PAGE).run()
    layer = at.selectbox(key=f"_w_sal_layer:{demo.name}").value  # the channels' layer
    at = _click(at, "sal_what_go")
    channel = int(next(b.key for b in at.button
                       if b.key.startswith("sal_what_fm_")).removeprefix("sal_what_fm_"))
    assert channel != 1
    at = _click(at, f"sal_what_fm_{channel}")
    assert_clean(at)
    assert [s.value for s in at.subheader][:1] == [f"Channel {channel}"]
    assert at.number_input(key="_w_fm_channel").value == channel
    assert at.selectbox(key="_w_fm_layer").value == layer
    assert at.query_params["channel"] in (str(channel), [str(channel)])
    assert at.query_params["layer"] in (layer, [layer])


def test_a_channel_link_opens_that_filter_on_the_filters_page(app, demo, few_steps):
    at = _click(_open(app), "sal_what_go")
    assert job_queue().wait_idle(120)  # the pictures of the shown channels
    at.run()
    assert_clean(at)
    assert "not ready yet" not in " ".join(c.value for c in at.caption)
    pictures = [i for i in at.get("image") if i.proto.imgs[0].caption == "What it looks for"]
    assert len(pictures) == 6
    channel = int(next(b.key for b in at.button
                       if b.key.startswith("sal_what_am_")).removeprefix("sal_what_am_"))
    at = _click(at, f"sal_what_am_{channel}")
    assert_clean(at)
    layer = default_cam_layer(demo.keras_model)
    assert at.session_state[f"am_layer:{demo.key}"] == layer
    assert at.selectbox(key="_w_am_selected_layer").value == channel


def test_concepts_of_an_image_and_of_a_class(app):
    at = _open(app)
    at.slider(key="_w_sal_k").set_value(3).run()
    at = _click(at, "sal_concepts_go")
    assert_clean(at)
    assert "This image is recognised from these 3 parts" in _markdown(at)
    captions = [c for i in at.get("image") for c in [i.proto.imgs[0].caption]
                if c.startswith("Concept ")]
    assert len(captions) == 3
    at.radio(key="_w_sal_concepts_over").set_value("class").run()
    at.selectbox(key="sal_concept_class").select_index(3).run()
    at = _click(at, "sal_class_concepts_go")
    assert_clean(at)
    assert "recognised from these 3 parts" in _markdown(at)


def test_the_trust_table_runs_on_the_queue_and_says_what_the_randomisation_found(
        app, demo, monkeypatch):
    import ui.saliency_trust

    monkeypatch.setattr(ui.saliency_trust, "SHUFFLED_IMAGES", 24)
    boards = []
    real = ui.saliency_trust.leaderboard

    def spy(model, dataset, methods=None, n=100, callback=None, config=None):
        boards.append((len(dataset.images), methods, n, config.layer,
                       real(model, dataset, methods, n, callback, config)))
        return boards[-1][-1]

    monkeypatch.setattr(ui.saliency_trust, "leaderboard", spy)
    at = _open(app)
    at.slider(key="_w_sal_trust_n").set_value(6).run()
    at.multiselect(key="_w_sal_trust_methods").set_value(["gradcam", "vanilla"]).run()
    at = _click(at, "sal_trust_go")
    assert job_queue().wait_idle(240)
    at.run()
    assert_clean(at)
    (images, methods, n, layer, board), = boards
    assert (images, methods, n) == (6, ["gradcam", "vanilla"], 6)
    assert layer == default_cam_layer(demo.keras_model)  # the page's CAM layer
    (table,) = at.dataframe
    frame = table.value
    assert list(frame["method"]) == ["Grad-CAM", "Vanilla gradients"]
    assert np.allclose(frame["deletion AUC ↓"], [r.deletion_auc for r in board.rows])
    assert "pointing game ↑" in frame.columns  # the demo shapes have boxes
    assert [b.proto.label for b in at.get("download_button")][-1] == "Table (CSV)"
    assert "Data randomisation" in _markdown(at)
    assert any("shuffled" in s.value for s in list(at.success) + list(at.warning))
    # The report built next on this page carries the same table.
    at.button(key="sal_report_go").click().run()
    assert_clean(at)
    _, document, _ = at.session_state["_sal_report"]
    assert '<section id="leaderboard">' in document
    assert f'<td class="num" data-score="deletion_auc">{board.rows[0].deletion_auc:.3f}</td>' \
        in document
