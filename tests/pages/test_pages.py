"""AppTest for the foundation pages: Home / Predict and Model."""

from __future__ import annotations

from engine.models import load_model
from engine.models.catalogue import CATALOGUE
from engine.models.architecture import layer_table
from tests.pages.checks import assert_clean
from ui.text import md_escape


def _texts(at, kind):
    return [element.value for element in getattr(at, kind)]


def test_home_predicts_every_chosen_image_with_the_demo_model(app):
    at = app().run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="_w_model").value == "demo"
    images = at.sidebar.multiselect(key="_w_images").value
    assert len(images) >= 1
    bars = at.get("progress")
    assert len(bars) == 5 * len(images)
    # Each image's bars are the model's own top-5, most likely first.
    model = load_model("demo")
    names = [bar.proto.text.split(" · ")[0] for bar in bars[:5]]
    values = [bar.proto.value for bar in bars[:5]]
    assert len(set(names)) == 5 and set(names) <= set(model.class_names)
    assert values == sorted(values, reverse=True)
    assert "What am I looking at?" in [e.label for e in at.expander]


def test_changing_the_model_in_the_sidebar_changes_predictions_and_url(app):
    at = app().run()
    at.sidebar.selectbox(key="_w_model").select("scratch").run()
    assert_clean(at)
    assert any("Scratch CNN" in c for c in _texts(at.sidebar, "caption"))
    # the catalogue's sentence for people about the chosen model, under the picker
    assert md_escape(CATALOGUE["scratch"].description) in _texts(at.sidebar, "caption")
    assert at.query_params["model"] in ("scratch", ["scratch"])


def test_offline_imagenet_model_explains_which_file_to_put_where(app):
    at = app(model="vgg16").run()
    assert not at.exception
    errors = " ".join(_texts(at, "error"))
    assert "vgg16\\_weights\\_tf\\_dim\\_ordering\\_tf\\_kernels" in errors
    assert ".keras" in errors and "models" in errors
    assert not at.get("progress")


def test_url_restores_model_and_images(app):
    at = app(model="scratch", images="shape:circle,photo:coffee").run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="_w_model").value == "scratch"
    assert at.sidebar.multiselect(key="_w_images").value == ["shape:circle", "photo:coffee"]


def test_unknown_ids_in_the_url_are_dropped_not_crashed(app):
    at = app(model="nonsense", images="shape:circle,upload:../../etc/passwd,bogus").run()
    assert_clean(at)
    assert at.sidebar.selectbox(key="_w_model").value == "demo"
    assert at.sidebar.multiselect(key="_w_images").value == ["shape:circle"]


def test_model_page_table_has_every_layer_with_receptive_fields(app):
    at = app(model="demo").run()
    at.switch_page("pages/model.py").run()
    assert_clean(at)
    frame = at.dataframe[0].value
    model = load_model("demo")
    rows = layer_table(model.keras_model)
    assert len(frame) == len(rows)
    conv = frame[frame["type"] == "Conv2D"]
    assert conv["receptive field"].is_monotonic_increasing
    assert int(conv["receptive field"].iloc[0]) == 3
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == f"{model.keras_model.count_params():,}"
    assert len(at.get("plotly_chart")) == 2


def test_own_model_file_by_path(app, tiny_cnn, tmp_path):
    path = tmp_path / "mine.keras"
    tiny_cnn.save(path)
    at = app().run()
    at.sidebar.selectbox(key="_w_model").select("own").run()
    at.sidebar.text_input(key="_w_model_path").input(str(path)).run()
    assert_clean(at)
    assert any(md_escape("mine.keras") in c for c in _texts(at.sidebar, "caption"))
    assert len(at.get("progress")) >= 1


def test_broken_own_model_is_refused_on_the_page(app, tmp_path):
    path = tmp_path / "broken.keras"
    path.write_bytes(b"not a zip")
    at = app().run()
    at.sidebar.selectbox(key="_w_model").select("own").run()
    at.sidebar.text_input(key="_w_model_path").input(str(path)).run()
    assert not at.exception
    assert any(md_escape("could not be read as a Keras model") in e for e in _texts(at, "error"))
