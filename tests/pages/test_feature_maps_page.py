"""AppTest for the Feature maps page: it renders for every model available offline, and
choosing layers, channels and scales reuses the maps instead of running the model again."""

from __future__ import annotations

import base64
import json

import keras
import numpy as np
import pytest
import streamlit as st

from engine import features
from engine.models import list_models, load_model
from engine.models.catalogue import DEMO_MODEL_PATH
from engine.models.loading import cached_weights_path
from tests.pages.checks import assert_clean
from ui.images import get_image

PAGE = "pages/feature_maps.py"
IMAGES = "photo:chelsea,photo:coffee"


def _open(app, **query):
    at = app(**query).run()
    at.switch_page(PAGE)
    return at.run()


def _chart(at, key: str) -> dict:
    (chart,) = [c for c in at.get("plotly_chart") if c.proto.id.endswith(key)]
    return json.loads(chart.proto.spec)


def _grid_spec(at) -> dict:
    return _chart(at, "fm_grid")


def _array(value) -> np.ndarray:
    """A Plotly JSON array: a list, or NumPy's typed-array form {"dtype", "bdata"}."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
    return np.asarray(value)


def _offline(spec) -> bool:
    if spec.family == "demo":
        return DEMO_MODEL_PATH.is_file()
    if spec.family == "imagenet":
        return cached_weights_path(spec).is_file()
    return True


@pytest.fixture
def forward_passes(monkeypatch):
    """Counts calls of ``engine.features.feature_maps`` (the page's only model run), starting
    from an empty cache."""
    st.cache_data.clear()
    calls = []
    real = features.feature_maps

    def counting(model, images, layers=None, **kwargs):
        calls.append(model.name)
        return real(model, images, layers, **kwargs)

    monkeypatch.setattr(features, "feature_maps", counting)
    return calls


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_page_renders_for_each_catalogue_model_available_offline(app, spec):
    if not _offline(spec):
        pytest.skip(f"{spec.name} is not available offline here")
    at = _open(app, model=spec.name, images=IMAGES)
    assert_clean(at)
    model = load_model(spec.name)
    default = features.default_layer(features.map_layers(model))
    assert at.selectbox(key="_w_fm_layer").value == default
    spec_json = _grid_spec(at)
    assert spec_json["data"][0]["type"] == "image"  # the grid is one image ...
    channels = next(m.channels for m in features.map_layers(model) if m.path == default)
    markers = _array(spec_json["data"][1]["customdata"])  # ... with one marker per tile
    assert sorted(markers.tolist()) == list(range(channels))
    assert any(default.replace("_", "\\_") in m.value for m in at.markdown)


def test_mobilenet_with_a_weights_file_given_in_the_sidebar(app, mobilenet_weights):
    at = _open(app, model="mobilenet_0.25", images=IMAGES)
    at.sidebar.text_input(key="_w_weights_path_mobilenet_0.25").input(str(mobilenet_weights)).run()
    assert_clean(at)
    assert at.selectbox(key="_w_fm_layer").value == "conv_pw_7"
    assert _grid_spec(at)["data"][0]["type"] == "image"


def test_imagenet_model_without_weights_explains_instead_of_crashing(app):
    at = _open(app, model="vgg16", images=IMAGES)
    assert not at.exception
    assert any("vgg16\\_weights" in e.value for e in at.error)
    assert not at.get("plotly_chart")


def test_switching_layer_channel_scale_and_tabs_does_not_run_the_model_again(app, forward_passes):
    at = _open(app, model="scratch", images=IMAGES)
    assert_clean(at)
    assert forward_passes == ["scratch"]  # one pass for the shown image, every layer at once
    layer = at.selectbox(key="_w_fm_layer")
    at = layer.select_index(len(layer.options) - 1).run()  # another layer of the same block
    block = at.selectbox(key="_w_fm_block")
    at = block.select(block.options[0]).run()
    assert at.selectbox(key="_w_fm_layer").value == "block1_conv"
    at.number_input(key="_w_fm_channel").set_value(3).run()
    at.selectbox(key="_w_fm_scale").select("global").run()
    at.selectbox(key="_w_fm_sort").select("mean").run()
    for tab in ("All layers", "First-layer filters", "Channel statistics"):
        at.session_state["fm_tab"] = tab
        at.run()
    assert_clean(at)
    assert forward_passes == ["scratch"]
    at.selectbox(key="_w_fm_image").select("photo:coffee").run()
    assert forward_passes == ["scratch", "scratch"]  # a new image is a new pass ...
    at.selectbox(key="_w_fm_image").select("photo:chelsea").run()
    assert forward_passes == ["scratch", "scratch"]  # ... and an old one is not


def test_comparing_two_images_computes_the_second_once(app, forward_passes):
    at = _open(app, model="scratch", images=IMAGES)
    at.session_state["fm_tab"] = "Compare two images"
    at.run()
    assert_clean(at)
    assert forward_passes == ["scratch", "scratch"]
    assert at.selectbox(key="_w_fm_compare").value == "photo:coffee"
    at.number_input(key="_w_fm_channel").set_value(5).run()
    assert forward_passes == ["scratch", "scratch"]
    assert len(at.get("image")) == 5  # main overlay; per image a grid and channel 5 on it


def test_grid_marks_the_dead_channels_of_the_image(app):
    at = _open(app, model="scratch", images="photo:chelsea")
    assert_clean(at)
    model = load_model("scratch")
    maps = features.feature_maps(model, get_image("photo:chelsea"), ["block3_conv"])
    maps = maps["block3_conv"][0]
    dead = int((maps.reshape(-1, maps.shape[-1]) == 0).all(0).sum())  # independent count
    header = next(m.value for m in at.markdown if "block3\\_conv" in m.value)
    assert f"**{dead}** of 128 channels dead" in header
    hover = _grid_spec(at)["data"][1]["hovertext"]
    assert sum(text.endswith("· dead") for text in hover) == dead


def test_arithmetic_view_reproduces_the_map_value(app):
    at = _open(app, model="scratch", images="photo:chelsea")
    at.number_input(key="_w_fm_row").set_value(10).run()
    at.number_input(key="_w_fm_col").set_value(20).run()
    assert_clean(at)
    (success,) = at.success
    assert "the same number" in success.value
    channel = at.number_input(key="_w_fm_channel").value
    model = load_model("scratch")
    x = model.preprocess(model.prepare(get_image("photo:chelsea"))).numpy()
    reference = keras.Model(model.keras_model.inputs,
                            model.keras_model.get_layer("block3_conv").output).predict(x, verbose=0)
    assert f"{reference[0, 10, 20, channel]:.6g}" in success.value


def test_dense_layer_shows_units_not_a_grid(app):
    at = _open(app, model="scratch", images=IMAGES)
    at.selectbox(key="_w_fm_block").select("Dense").run()
    assert_clean(at)
    assert at.selectbox(key="_w_fm_layer").value == "dense"
    assert _chart(at, "fm_units")["data"][0]["type"] == "bar"
    shown = _array(_chart(at, "fm_units")["data"][0]["y"])
    model = load_model("scratch")
    x = model.preprocess(model.prepare(get_image("photo:chelsea"))).numpy()
    reference = keras.Model(model.keras_model.inputs,
                            model.keras_model.get_layer("dense").output).predict(x, verbose=0)
    np.testing.assert_allclose(shown, reference[0], rtol=1e-4, atol=1e-5)
    assert not any(c.proto.id.endswith("fm_grid") for c in at.get("plotly_chart"))


def test_nested_model_layers_are_listed_and_shown(app, tmp_path):
    keras.utils.set_random_seed(0)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(base(inputs)))
    path = tmp_path / "transfer.keras"
    keras.Model(inputs, outputs).save(path)
    at = app(images=IMAGES).run()
    at.sidebar.selectbox(key="_w_model").select("own").run()
    at.sidebar.text_input(key="_w_model_path").input(str(path)).run()
    at.switch_page(PAGE)
    at.run()
    assert_clean(at)
    assert at.selectbox(key="_w_fm_layer").value == "vgg16/block3_conv3"
    block = at.selectbox(key="_w_fm_block")
    at = block.select(block.options[-2]).run()
    assert at.selectbox(key="_w_fm_layer").value == "vgg16/block5_conv1"
    assert_clean(at)
    assert _grid_spec(at)["data"][0]["type"] == "image"
