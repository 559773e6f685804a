"""The HTML report: what it shows is what the engine computes, it is self-contained, and the
names people give (images, models, classes) appear as text, never as markup."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from engine import actmax
from engine.actmax.cache import ActMaxCache, stored_settings
from engine.errors import InvalidModelError
from engine.images import load_image
from engine.models.catalogue import DEMO_MODEL_PATH
from engine.models.explorable import ExplorableModel
from engine.report import FAST_METHODS, build_report
from engine.saliency import explain
from engine.saliency.metrics import deletion_insertion
from tests.conftest import ROOT

EVIL = "<script>alert(1)</script>.png"
STAR = ROOT / "assets" / "images" / "shape_star.png"
demo_only = pytest.mark.skipif(not DEMO_MODEL_PATH.exists(), reason="demo model not built")


class _Parsed(HTMLParser):
    """Tags with their attributes, the visible text, and the ids of the sections."""

    def __init__(self, document: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(document)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag):
        return [attrs for t, attrs in self.tags if t == tag]


def _decoded(src: str) -> Image.Image:
    match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", src)
    assert match, src[:60]
    picture = Image.open(io.BytesIO(base64.b64decode(match.group(2))))
    picture.load()
    assert picture.format == match.group(1).upper()
    return picture


@pytest.fixture(scope="module")
def demo():
    from engine.models import load_model

    return load_model("demo")


@pytest.fixture(scope="module")
def star():
    return load_image(STAR)


@pytest.fixture(scope="module")
def report(demo, star, tmp_path_factory):
    calls = []
    document = build_report(demo, star, image_name=EVIL, n_filters=3, quick_steps=4,
                            actmax_cache=tmp_path_factory.mktemp("actmax"),
                            callback=lambda done, total, text: calls.append((done, total)))
    return document, calls


@demo_only
def test_the_top_class_is_the_shape_drawn(report):
    parsed = _Parsed(report[0])
    text = " ".join(parsed.text)
    match = re.search(r"#\s+class\s+probability\s+1\s+(\w+)\s+([\d.]+)%", text)
    assert match, text[:500]
    assert match.group(1) == "star" and float(match.group(2)) > 50


@demo_only
def test_every_section_is_there(report):
    ids = [attrs.get("id") for attrs in _Parsed(report[0]).all("section")]
    assert ids == ["prediction", "feature-maps", "saliency", "filters", "model-summary",
                   "settings"]


@demo_only
def test_every_picture_is_an_embedded_png_or_jpeg(report):
    images = _Parsed(report[0]).all("img")
    # the image, up to four feature-map grids, one map per fast method, three filters
    assert len(images) == 1 + 4 + len(FAST_METHODS) + 3
    for attrs in images:
        picture = _decoded(attrs["src"])
        assert picture.size == (int(attrs["width"]), int(attrs["height"]))
        assert min(picture.size) > 0


@demo_only
def test_nothing_is_fetched_from_outside_the_file(report):
    document = report[0]
    parsed = _Parsed(document)
    for tag, attrs in parsed.tags:
        for name in ("src", "href", "srcset", "data", "poster", "action"):
            if name in attrs:
                assert attrs[name].startswith("data:"), (tag, attrs[name][:60])
    assert not parsed.all("script") and not parsed.all("link") and not parsed.all("iframe")
    assert "url(" not in document and "@import" not in document
    assert "http://" not in document and "https://" not in document


@demo_only
def test_auc_numbers_are_what_deletion_insertion_gives(report, demo, star):
    rows = {attrs["data-method"] for attrs in _Parsed(report[0]).all("tr")
            if "data-method" in attrs}
    assert rows == set(FAST_METHODS)
    for method in FAST_METHODS:
        saliency = explain(demo, star, method)[0]
        curves = deletion_insertion(demo, star, saliency, steps=24)
        for kind in ("deletion", "insertion", "random_deletion", "random_insertion"):
            cell = re.search(rf'<tr data-method="{method}">.*?data-auc="{kind}">([\d.]+)<',
                             report[0])
            assert cell, (method, kind)
            assert cell.group(1) == f"{getattr(curves, kind + '_auc'):.4f}", (method, kind)


@demo_only
def test_a_hostile_image_name_shows_as_text(report):
    document = report[0]
    parsed = _Parsed(document)
    assert EVIL not in document  # only escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in document
    assert any(EVIL in chunk for chunk in parsed.text)
    assert not parsed.all("script")


@demo_only
def test_progress_counts_up_to_the_end(report):
    calls = report[1]
    done = [d for d, _ in calls]
    assert done == sorted(done) and done[0] == 0
    assert calls[-1][0] == calls[-1][1] == 2 * len(FAST_METHODS) + 4


@demo_only
def test_slow_methods_only_when_asked(demo, star):
    document = build_report(demo, star, image_name="star", methods=["gradcam", "occlusion"],
                            method_options={"occlusion": {"patch": 16, "stride": 8}},
                            n_filters=1, quick_steps=1)
    methods = [a["data-method"] for a in _Parsed(document).all("tr") if "data-method" in a]
    assert methods == ["gradcam", "occlusion"]
    assert "scorecam" not in FAST_METHODS and "occlusion" not in FAST_METHODS
    # the settings name the options used, the chosen ones over the defaults
    assert "occlusion: patch: 16; stride: 8; fill: " in " ".join(_Parsed(document).text)


@demo_only
def test_filters_come_from_the_cache_when_there(demo, star, tmp_path):
    layer = "block1_conv1"
    cached = actmax.visualize(demo, layer, range(16), steps=3, cache_dir=tmp_path)
    document = build_report(demo, star, image_name="star", methods=["gradcam"],
                            filter_layer=layer, n_filters=4, quick_steps=5,
                            actmax_cache=tmp_path)
    cards = re.findall(r'<div class="card" data-filter="(\d+)">.*?activation ([^<]+)<br>'
                       r"([^<]+)</div>", document)
    assert len(cards) == 4
    for unit, activation, source in cards:
        assert source == "from the cache: 3 steps, fourier"
        assert activation == f"{cached.activations[int(unit)]:.3g}"
    assert len(stored_settings(tmp_path, demo.key, layer)) == 1  # nothing new was computed


@demo_only
def test_missing_filters_are_computed_and_kept(demo, star, tmp_path):
    layer = "block2_conv1"
    document = build_report(demo, star, image_name="star", methods=["gradcam"],
                            filter_layer=layer, n_filters=2, quick_steps=4,
                            actmax_cache=tmp_path)
    units = [int(u) for u in re.findall(r'data-filter="(\d+)"', document)]
    assert len(units) == 2
    assert document.count("computed for this report: 4 steps") == 2
    (settings,) = stored_settings(tmp_path, demo.key, layer)
    assert settings["steps"] == 4
    assert sorted(ActMaxCache(tmp_path, demo.key, layer, settings).load(units)) == sorted(units)


def test_own_model_names_show_as_text(tiny_cnn):
    """A user's model: class names and file name with markup, no 64x64 demo."""
    names = ['<img src=x onerror="alert(1)">', "a&b", "</td></tr></table>"]
    model = ExplorableModel(tiny_cnn, name="evil<b>.keras", class_names=names,
                            preprocessing="unit", input_size=(8, 8))
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    document = build_report(model, image, image_name="x.png", methods=["gradcam"],
                            n_filters=2, quick_steps=1)
    parsed = _Parsed(document)
    assert all(attrs["src"].startswith("data:") for attrs in parsed.all("img"))
    assert not any("onerror" in attrs for _, attrs in parsed.tags)
    text = "".join(parsed.text)
    for name in names + ["evil<b>.keras"]:
        assert name in text
    assert "<img src=x" not in document and "evil<b>" not in document
    # no markup broke out of its cell: every section is still there, in order
    assert [a.get("id") for a in parsed.all("section")] == [
        "prediction", "feature-maps", "saliency", "filters", "model-summary", "settings"]


def test_unknown_method_is_refused(tiny_cnn):
    model = ExplorableModel(tiny_cnn, name="tiny", class_names=["a", "b", "c"],
                            preprocessing="unit", input_size=(8, 8))
    with pytest.raises(KeyError, match="Unknown saliency method"):
        build_report(model, np.zeros((8, 8, 3), np.uint8), image_name="x", methods=["nope"])


def test_a_class_the_model_lacks_is_refused(tiny_cnn):
    model = ExplorableModel(tiny_cnn, name="tiny", class_names=["a", "b", "c"],
                            preprocessing="unit", input_size=(8, 8))
    with pytest.raises(InvalidModelError, match="0 to 2"):
        build_report(model, np.zeros((8, 8, 3), np.uint8), image_name="x", target=3)


def test_stored_settings_round_trip(tiny_cnn, tmp_path):
    """What ``stored_settings`` lists opens the same cache files the optimiser wrote."""
    result = actmax.visualize(tiny_cnn, "conv1", [0, 2], steps=2, size=8, cache_dir=tmp_path)
    model = actmax.as_explorable(tiny_cnn)
    (settings,) = stored_settings(tmp_path, model.key, "conv1")
    assert settings["steps"] == 2 and settings["size"] == [8, 8]
    loaded = ActMaxCache(tmp_path, model.key, "conv1", settings).load([0, 1, 2])
    assert sorted(loaded) == [0, 2]
    np.testing.assert_array_equal(loaded[2].images[0], result.images[1])
    assert stored_settings(tmp_path, model.key, "conv2") == []
