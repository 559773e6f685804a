"""AppTest of the report export: the Home page and the Saliency page build an HTML report of
the chosen image with the page's settings and offer it for download."""

from __future__ import annotations

import re

from engine.models import load_model
from tests.pages.checks import assert_clean
from ui.report import report_file_name


def _download_labels(at):
    return [b.proto.label for b in at.get("download_button")]


def test_home_builds_the_report_of_the_chosen_image(app):
    at = app(images="shape:circle,shape:star").run()
    assert_clean(at)
    assert "Download cnn_explorer_report_Shape_star.html" not in _download_labels(at)
    at.selectbox(key="home_report_image").select("shape:star").run()
    # the layer last chosen on the Filters page is the one whose filters the report shows
    at.session_state[f"am_layer:{load_model('demo').key}"] = "block1_conv1"
    at.button(key="home_report_go").click().run()
    assert_clean(at)
    assert "Download cnn_explorer_report_Shape_star.html" in _download_labels(at)
    request, document, name = at.session_state["_home_report"]
    assert name == "cnn_explorer_report_Shape_star.html"
    assert document.startswith("<!DOCTYPE html>") and document.rstrip().endswith("</html>")
    assert "Shape: star" in document
    # the top prediction of a star is "star"; only the fast methods were asked for
    assert re.search(r'<td>1</td><td class="class">star</td>', document)
    assert 'data-method="gradcam"' in document and 'data-method="scorecam"' not in document
    assert "The 5 filters of <b>block1_conv1</b> most active on this image" in document


def test_saliency_page_report_uses_its_class_layer_and_slow_methods(app):
    at = app(images="shape:ring").run()
    at.switch_page("pages/saliency.py").run()
    assert_clean(at)
    at.selectbox(key="_w_sal_target").select(0).run()  # circle: "why not a circle?"
    at.checkbox(key="sal_report_slow").check().run()
    at.button(key="sal_report_go").click().run()
    assert_clean(at)
    _, document, name = at.session_state["_sal_report"]
    assert name == "cnn_explorer_report_Shape_ring.html"
    for method in ("gradcam", "smoothgrad", "integrated_gradients", "occlusion", "scorecam"):
        assert f'<tr data-method="{method}">' in document
    assert "Maps for the class <b>circle</b> (class 0)" in document
    assert f"Download {name}" in _download_labels(at)


def test_file_name_is_safe_whatever_the_image_is_called():
    assert report_file_name("<script>alert(1)</script>.png") == "cnn_explorer_report_script_.html"
    assert report_file_name("Photo: Cat (Chelsea)") == "cnn_explorer_report_Photo_Cat_Chelsea_.html"
    assert report_file_name("../../etc/passwd") == "cnn_explorer_report_passwd.html"
