"""AppTest for shareable state: the URL carries each page's view (layer, channel, method, class)
and reopens it in a new session; hand-edited values fall back to defaults; uploads never go
into the URL and belong to the browser (its cookie), not to the link."""

from __future__ import annotations

import pytest
import streamlit.runtime.context as st_context

from engine import features
from engine.models import load_model
from engine.saliency import default_cam_layer, spatial_layer_paths
from tests.pages.checks import assert_clean
from ui import images as gallery_images
from ui import state

FM = "pages/feature_maps.py"
SAL = "pages/saliency.py"


def _open(app, page, **query):
    at = app(**query).run()
    at.switch_page(page)
    return at.run()


def _value(at, key):
    (widget,) = [w for kind in (at.selectbox, at.number_input, at.radio) for w in kind
                  if w.key == key]
    return widget.value


def _param(at, name):
    value = at.query_params.get(name)
    return value[-1] if isinstance(value, list) else value


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def test_feature_maps_view_comes_back_from_the_url(app, demo):
    layers = features.map_layers(demo)
    first_conv = next(m for m in layers if m.kind == "conv")
    assert first_conv.path != features.default_layer(layers)  # so the URL is what chose it
    at = _open(app, FM, model="demo", images="shape:star,photo:coffee", image="photo:coffee",
               layer=first_conv.path, channel="3")
    assert_clean(at)
    assert _value(at, "_w_fm_layer") == first_conv.path
    assert _value(at, "_w_fm_image") == "photo:coffee"
    assert _value(at, "_w_fm_channel") == 3
    assert [s.value for s in at.subheader][:1] == ["Channel 3"]


def test_feature_maps_choices_go_into_the_url(app, demo):
    layers = features.map_layers(demo)
    at = _open(app, FM, model="demo", images="shape:star")
    default = next(m for m in layers if m.path == features.default_layer(layers))
    assert _param(at, "layer") == default.path
    other = next(m for m in layers if m.block == default.block and m.path != default.path)
    at.selectbox(key="_w_fm_layer").select(other.path).run()
    at.number_input(key="_w_fm_channel").set_value(2).run()
    assert_clean(at)
    assert _param(at, "layer") == other.path and _param(at, "channel") == "2"
    assert _param(at, "image") == "shape:star" and _param(at, "model") == "demo"


def test_saliency_view_comes_back_from_the_url(app, demo):
    paths = spatial_layer_paths(demo.keras_model)
    layer = next(p for p in paths if p != default_cam_layer(demo.keras_model))
    circle = demo.class_names.index("circle")
    at = _open(app, SAL, model="demo", images="shape:star", method="gradcam",
               **{"class": str(circle), "layer": layer})
    assert_clean(at)
    assert _value(at, "_w_sal_method") == "gradcam"
    assert _value(at, "_w_sal_target") == circle
    assert _value(at, f"_w_sal_layer:{demo.name}") == layer
    assert "map for **circle**" in " ".join(m.value for m in at.markdown)


def test_saliency_method_without_a_layer_drops_it_from_the_url(app):
    at = _open(app, SAL, model="demo", images="shape:star", method="gradcam")
    assert _param(at, "layer") is not None
    at.selectbox(key="_w_sal_method").select("vanilla").run()
    assert_clean(at)
    assert _param(at, "method") == "vanilla" and _param(at, "layer") is None
    assert _param(at, "class") == "top"


def test_hand_edited_values_fall_back_to_the_defaults(app, demo):
    layers = features.map_layers(demo)
    at = _open(app, FM, model="demo", images="shape:star", image="photo:astronaut",
               layer="no_such_layer", channel="99999")
    assert_clean(at)
    assert _value(at, "_w_fm_layer") == features.default_layer(layers)
    assert _value(at, "_w_fm_image") == "shape:star"  # not among the chosen images
    channels = next(m for m in layers if m.path == features.default_layer(layers)).channels
    assert 0 <= _value(at, "_w_fm_channel") < channels
    at = _open(app, SAL, model="demo", images="shape:star", method="bogus",
               **{"class": "-1", "layer": "<b>x</b>"})
    assert_clean(at)
    assert _value(at, "_w_sal_method") == "gradcam"
    assert _value(at, "_w_sal_target") == "top"
    assert _value(at, f"_w_sal_layer:{demo.name}") == default_cam_layer(demo.keras_model)
    assert _param(at, "method") == "gradcam" and _param(at, "layer") != "<b>x</b>"


def test_old_links_with_an_upload_token_open_without_it(app):
    at = app(model="demo", images="shape:star,upload:0123456789_cat.png",
             u="0123456789abcdef0123456789abcdef").run()
    assert_clean(at)
    assert at.sidebar.multiselect(key="_w_images").value == ["shape:star"]
    assert "u" not in at.query_params


def _upload(at, tmp_path) -> str:
    """Save a PNG into this session's upload folder (what the uploader does) and choose it."""
    from PIL import Image

    path = tmp_path / "mine.png"
    Image.new("RGB", (32, 24), (200, 30, 30)).save(path)
    image_id = gallery_images.save_upload(path.read_bytes(), "mine.png",
                                          at.session_state["upload_token"])
    at.run()  # the sidebar lists the new file
    chosen = at.sidebar.multiselect(key="_w_images").value
    at.sidebar.multiselect(key="_w_images").set_value(chosen + [image_id]).run()
    return image_id


@pytest.fixture
def cookies(monkeypatch):
    """The cookies a browser sends (AppTest has no client to send them)."""
    jar = {}
    monkeypatch.setattr(st_context.ContextProxy, "cookies", property(lambda self: jar))
    return jar


def test_uploads_stay_out_of_the_url_and_in_the_browser(app, tmp_path, cookies):
    at = app(model="demo", images="shape:star").run()
    token = at.session_state["upload_token"]
    image_id = _upload(at, tmp_path)
    assert_clean(at)
    assert at.sidebar.multiselect(key="_w_images").value == ["shape:star", image_id]
    assert _param(at, "images") == "shape:star"
    assert not any(token in str(v) or "upload" in str(v) for v in at.query_params.values())

    # A reload in the same browser (same cookie, same URL): the upload is still chosen.
    cookies[state.COOKIE] = token
    again = app(**{k: _param(at, k) for k in at.query_params}).run()
    assert_clean(again)
    assert again.sidebar.multiselect(key="_w_images").value == ["shape:star", image_id]

    # The link in another browser (no cookie): bundled images only, none of the uploads.
    cookies.clear()
    other = app(**{k: _param(at, k) for k in at.query_params}).run()
    assert_clean(other)
    assert other.session_state["upload_token"] != token
    assert other.sidebar.multiselect(key="_w_images").value == ["shape:star"]
    assert image_id not in other.sidebar.multiselect(key="_w_images").options


def test_an_uploaded_image_chosen_on_feature_maps_stays_out_of_the_url(app, tmp_path, cookies):
    at = app(model="demo", images="shape:star").run()
    image_id = _upload(at, tmp_path)
    at.switch_page(FM).run()
    at.selectbox(key="_w_fm_image").select(image_id).run()
    assert_clean(at)
    assert _param(at, "image") is None
    cookies[state.COOKIE] = at.session_state["upload_token"]
    again = _open(app, FM, **{k: _param(at, k) for k in at.query_params})
    assert_clean(again)
    assert _value(again, "_w_fm_image") == image_id


def test_filters_view_comes_back_from_the_url(app, demo):
    layers = demo.conv_layers
    at = _open(app, "pages/filters.py", model="demo", images="shape:star,photo:coffee",
               view="dream", layer=layers[0], image="photo:coffee")
    assert_clean(at)
    assert _value(at, "_w_am_view") == "dream"
    assert _value(at, f"_w_am_dream_layer:{demo.key}") == layers[0]  # not the middle default
    assert _value(at, "_w_am_dream_image") == "photo:coffee"
    at = _open(app, "pages/filters.py", model="demo", view="layer", layer=layers[-1])
    assert_clean(at)
    assert _value(at, f"_w_am_layer:{demo.key}") == layers[-1]
    at = _open(app, "pages/filters.py", model="demo", view="nonsense", layer="nonsense")
    assert_clean(at)
    assert _value(at, "_w_am_view") == "layer"
    assert _value(at, f"_w_am_layer:{demo.key}") == layers[0]


def test_an_uploaded_model_file_stays_out_of_the_url(app, tiny_cnn, cookies):
    from ui.paths import model_uploads_dir

    at = app().run()
    token = at.session_state["upload_token"]
    path = model_uploads_dir(token) / "mine.keras"  # where the sidebar's uploader puts it
    tiny_cnn.save(path)
    at.sidebar.selectbox(key="_w_model").select("own").run()
    at.sidebar.text_input(key="_w_model_path").input(str(path)).run()
    assert_clean(at)
    assert len(at.get("progress")) >= 1  # its predictions on Home
    assert _param(at, "model") == "own" and _param(at, "path") is None
    assert not any(token in str(v) for v in at.query_params.values())
    cookies[state.COOKIE] = token  # a reload in the same browser finds the file again
    again = app(**{k: _param(at, k) for k in at.query_params}).run()
    assert_clean(again)
    assert again.sidebar.text_input(key="_w_model_path").value == str(path)
