"""engine.render against independent references: Plotly's own colour scales, blends and layouts
computed by hand, Pillow decoding what was encoded, NumPy's repeat."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import plotly.colors as pcolors
import pytest
from PIL import Image, ImageDraw

from engine import render
from tests.conftest import ROOT
from tests.engine.test_layering import _imported

#: our colour maps -> the Plotly colour scale each copies
PLOTLY_NAMES = {"jet": "Jet", "turbo": "Turbo", "viridis": "Viridis", "magma": "Magma",
                "inferno": "Inferno", "cividis": "Cividis", "hot": "Hot", "gray": "Greys_r",
                "blue-white-red (signed)": "RdBu_r"}
JET_STOPS = [(0, 0, 131), (0, 60, 170), (5, 255, 255), (255, 255, 0), (250, 0, 0), (128, 0, 0)]


def _plotly_rgb(scale: str, points) -> np.ndarray:
    colours = pcolors.sample_colorscale(scale, list(points))  # "rgb(r, g, b)" strings
    return np.array([pcolors.unlabel_rgb(c) for c in colours], np.float64)


def test_every_colour_map_is_copied_from_plotly():
    assert set(render.COLORMAPS) == set(PLOTLY_NAMES)


@pytest.mark.parametrize("name", list(PLOTLY_NAMES))
def test_colour_map_matches_plotly_sampled_at_the_same_points(name):
    points = np.linspace(0.0, 1.0, 256)
    theirs = np.round(_plotly_rgb(PLOTLY_NAMES[name], points))
    ours = render.colorize(points, name).astype(np.float64)
    assert ours.shape == (256, 3)
    assert np.abs(ours - theirs).max() <= 1
    np.testing.assert_array_equal(ours, render.colormap_lut(name))


@pytest.mark.parametrize("name", list(PLOTLY_NAMES))
def test_colour_stops_are_plotlys_scale(name):
    theirs = pcolors.get_colorscale(PLOTLY_NAMES[name])
    ours = render.colour_stops(name)
    assert [p for p, _ in ours] == pytest.approx([p for p, _ in theirs])
    for (_, a), (_, b) in zip(ours, theirs):
        assert pcolors.hex_to_rgb(a) == tuple(round(v) for v in pcolors.unlabel_rgb(
            pcolors.convert_colors_to_same_type(b, "rgb")[0][0]))


def test_colorize_maps_low_and_high_to_the_ends_and_clips():
    values = np.array([[-5.0, 0.0, 10.0], [20.0, 99.0, np.nan]])
    colours = render.colorize(values, "jet", low=0.0, high=10.0)
    first, last = JET_STOPS[0], JET_STOPS[-1]
    np.testing.assert_array_equal(colours, [[first, first, last], [last, last, first]])
    # a stop half-way along the range gets exactly that stop's colour (0.4 -> the third stop)
    np.testing.assert_array_equal(render.colorize(np.array([4.0]), "jet", 0.0, 10.0),
                                  [JET_STOPS[2]])


def test_unknown_colour_map_is_refused():
    with pytest.raises(KeyError, match="Unknown colour map 'rainbow'"):
        render.colorize(np.zeros(2), "rainbow")


def test_overlay_is_the_alpha_blend_rounded_half_up():
    image = np.array([[[0, 0, 0], [255, 255, 255]], [[100, 40, 8], [20, 200, 56]]], np.uint8)
    values = np.array([[0.0, 1.0], [0.4, 0.2]])  # Jet's stops 1, 6, 3 and 2
    # 0.75 * image + 0.25 * colour, by hand; 84.5 rounds up to 85 (half to even would say 84)
    expected = [[[0, 0, 33], [223, 191, 191]], [[76, 94, 70], [15, 165, 85]]]
    np.testing.assert_array_equal(render.overlay(image, values, 0.25, "jet"), expected)
    # the same map on another range gives the same picture
    np.testing.assert_array_equal(render.overlay(image, values * 10 - 3, 0.25, "jet", -3, 7),
                                  expected)


def test_overlay_ends_and_resize():
    image = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    values = np.random.default_rng(1).random((4, 6))
    np.testing.assert_array_equal(render.overlay(image, values, 0.0), image)
    np.testing.assert_array_equal(render.overlay(image, values, 1.0, "viridis"),
                                  render.colorize(values, "viridis"))
    # a smaller map is stretched over the whole image: a constant map stays constant
    np.testing.assert_array_equal(render.overlay(image, np.ones((2, 3)), 1.0),
                                  np.broadcast_to(JET_STOPS[-1], (4, 6, 3)))


@pytest.mark.parametrize("shape", [(5, 6, 3), (5, 6), (5, 6, 4)])
@pytest.mark.parametrize("optimize", [False, True])
def test_png_round_trip_through_pillow(shape, optimize):
    image = np.random.default_rng(2).integers(0, 256, shape, dtype=np.uint8)
    data = render.png_bytes(image, optimize=optimize)
    picture = Image.open(io.BytesIO(data))
    assert picture.format == "PNG"
    np.testing.assert_array_equal(np.asarray(picture), image)


def test_png_refuses_what_is_not_a_uint8_image():
    with pytest.raises(ValueError, match="uint8"):
        render.png_bytes(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        render.png_bytes(np.zeros((4, 4, 2), np.uint8))


def _decode(uri: str) -> tuple[str, Image.Image]:
    match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", uri)
    assert match, uri[:40]
    picture = Image.open(io.BytesIO(base64.b64decode(match.group(2))))
    picture.load()
    return match.group(1), picture


def test_data_uri_decodes_back_to_the_same_pixels():
    assert render.data_uri(b"abc", "text/plain") == "data:text/plain;base64,YWJj"
    image = np.random.default_rng(3).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    kind, picture = _decode(render.image_uri(image))
    assert kind == "png"
    np.testing.assert_array_equal(np.asarray(picture), image)


def test_image_uri_takes_the_smaller_of_png_and_jpeg():
    flat = np.zeros((64, 64, 3), np.uint8)
    flat[:, 32:] = (200, 30, 30)
    kind, picture = _decode(render.image_uri(flat, jpeg_quality=85))
    assert kind == "png"  # flat colours: PNG is tiny and exact
    np.testing.assert_array_equal(np.asarray(picture), flat)
    rng = np.random.default_rng(4)
    y, x = np.mgrid[0:128, 0:128]
    photo = np.clip(np.stack([x, y, (x + y) // 2], -1) + rng.normal(0, 4, (128, 128, 3)),
                    0, 255).astype(np.uint8)
    uri = render.image_uri(photo, jpeg_quality=85)
    kind, picture = _decode(uri)
    assert kind == "jpeg"  # a noisy gradient: JPEG is much smaller
    assert picture.size == (128, 128)
    assert len(base64.b64decode(uri.split(",")[1])) < len(render.png_bytes(photo, optimize=True))
    assert np.abs(np.asarray(picture, float) - photo).mean() < 5  # the same picture, lossy


def _tiles():
    return [np.full((2, 3, 3), 10, np.uint8), np.full((4, 2, 3), 20, np.uint8),
            np.full((1, 1, 3), 30, np.uint8)]


def test_tile_grid_layout_by_hand():
    grid = render.tile_grid(_tiles(), columns=2, gap=1)
    # cells of the largest tile (4 x 3) plus the gap; a gap around the grid
    assert grid.image.shape == (1 + 2 * (4 + 1), 1 + 2 * (3 + 1), 3)
    np.testing.assert_array_equal(grid.boxes, [[1, 1, 4, 3], [5, 1, 7, 5], [1, 6, 2, 7]])
    expected = np.full((11, 9, 3), 255, np.uint8)
    expected[1:3, 1:4] = 10
    expected[1:5, 5:7] = 20
    expected[6:7, 1:2] = 30
    np.testing.assert_array_equal(grid.image, expected)


def test_tile_grid_labels_sit_in_a_band_above_each_tile():
    tiles = [np.full((4, 12, 3), 10, np.uint8), np.full((6, 12, 3), 20, np.uint8)]
    grid = render.tile_grid(tiles, columns=5, gap=1, labels=["0", "1"], label_height=13)
    # two tiles, so two columns however many were asked for; each tile 13 pixels lower
    assert grid.image.shape == (1 + 13 + 6 + 1, 1 + 2 * (12 + 1), 3)
    np.testing.assert_array_equal(grid.boxes, [[1, 14, 13, 18], [14, 14, 26, 20]])
    assert (grid.image[14:18, 1:13] == 10).all() and (grid.image[14:20, 14:26] == 20).all()
    for x0, x1 in ((1, 13), (14, 26)):  # label ink in the band above each tile
        assert (grid.image[1:14, x0:x1] != 255).any()
    assert (grid.image[:1] == 255).all() and (grid.image[-1:] == 255).all()


def test_long_labels_are_shortened_to_the_tile():
    picture = Image.new("RGB", (10, 10))
    draw, font = ImageDraw.Draw(picture), render.label_font(10)
    text = render.fit_text("a very long layer name", 40, font, draw)
    assert text.endswith("…") and draw.textlength(text, font=font) <= 40
    assert render.fit_text("ok", 40, font, draw) == "ok"


def test_magnify_repeats_each_pixel():
    image = np.array([[1, 2], [3, 4]], np.uint8)
    np.testing.assert_array_equal(render.magnify(image, 4),
                                  [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    rgb = np.random.default_rng(5).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(render.magnify(rgb, 7),  # 7 // 3: a factor of 2
                                  np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1))
    np.testing.assert_array_equal(render.magnify(rgb, 2), rgb)  # never shrunk


def test_fit_to_side():
    rgb = np.random.default_rng(6).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    np.testing.assert_array_equal(render.fit_to_side(rgb, 6),  # a whole factor: nearest
                                  np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1))
    assert render.fit_to_side(rgb, 4).shape == (3, 4, 3)  # round(2 * 4 / 3) = 3
    assert render.fit_to_side(rgb, 30, enlarge=False) is rgb
    assert render.fit_to_side(rgb, 1, enlarge=False).shape == (1, 1, 3)


def test_tile_size():
    assert render.tile_size(7, 7, 64) == (63, 63)  # 9 times, whole
    assert render.tile_size(3, 5, 64) == (36, 60)
    assert render.tile_size(100, 50, 64) == (64, 32)


def test_resize_for_display_nearest_up_area_down():
    values = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(render.resize_for_display(values, 8, 8),
                                  np.repeat(np.repeat(values, 2, axis=0), 2, axis=1))
    blocks = values.reshape(2, 2, 2, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(render.resize_for_display(values, 2, 2), blocks, atol=1e-5)


def test_map_tiles_colour_each_channel_on_its_own_range():
    maps = np.stack([np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([[5.0, 5.0], [5.0, 9.0]])], -1)
    tiles = render.map_tiles(maps, [1, 0], (4, 4), "jet", np.array([0.0, 5.0]),
                             np.array([1.0, 9.0]))
    assert [t.shape for t in tiles] == [(4, 4, 3), (4, 4, 3)]
    first, last = JET_STOPS[0], JET_STOPS[-1]
    np.testing.assert_array_equal(tiles[0][:2, :2], np.broadcast_to(first, (2, 2, 3)))
    np.testing.assert_array_equal(tiles[0][2:, 2:], np.broadcast_to(last, (2, 2, 3)))
    np.testing.assert_array_equal(tiles[1][:2, :2], np.broadcast_to(first, (2, 2, 3)))


def test_diverging():
    assert render.is_diverging("blue-white-red (signed)") and not render.is_diverging("jet")


def test_render_needs_only_numpy_pillow_and_the_standard_library():
    allowed = {"__future__", "base64", "functools", "io", "math", "dataclasses", "typing",
               "numpy", "PIL"}
    imported = {name.split(".")[0] for name in _imported(ROOT / "engine" / "render.py")}
    assert imported <= allowed, imported - allowed
