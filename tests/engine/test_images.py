"""Tests of engine.images over a corpus of good and bad images built in tmp_path.

Every expected pixel value is derived by hand from how the file was built, not by running the
code under test on it.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from engine.errors import InvalidImageError
from engine.images import (
    MAX_PIXELS,
    image_name,
    load_image,
    load_images,
    resize_image,
)
from engine.render import png_bytes

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def encode(img, fmt, **params):
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def two_colour_rgb():
    """A 4x6 RGB image: red left half, blue right half."""
    img = Image.new("RGB", (6, 4), RED)
    img.paste(BLUE, (3, 0, 6, 4))
    return img


def png_claiming_size(width, height):
    """A valid 1x1 PNG whose IHDR is patched to claim width x height (CRC fixed too)."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)  # after signature(8), length(4), b"IHDR"(4)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


class FakeUpload:
    """The part of Streamlit's UploadedFile the loader uses, already read to the end."""

    def __init__(self, name, data, size=None):
        self.name, self._data = name, data
        self.size = len(data) if size is None else size

    def getvalue(self):
        return self._data

    def read(self):
        return b""  # a second read of a real upload returns nothing


# --- accepted files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt, params",
    [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("GIF", {}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_lossless_formats_keep_exact_colours(tmp_path, fmt, params):
    path = tmp_path / f"two.{fmt.lower()}"
    path.write_bytes(encode(two_colour_rgb(), fmt, **params))
    image = load_image(path)
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    assert tuple(image[0, 0]) == RED and tuple(image[3, 5]) == BLUE


def test_jpeg_colours_within_compression_error():
    image = load_image(encode(Image.new("RGB", (8, 8), (200, 40, 90)), "JPEG", quality=95))
    np.testing.assert_allclose(image[4, 4], (200, 40, 90), atol=4)


def test_exif_orientation_6_rotates_clockwise():
    # 20 wide x 10 high, red top-left corner; orientation 6 means "rotate 90° clockwise to
    # display", which moves the stored top-left corner to the top-right of a 10 x 20 image.
    img = Image.new("RGB", (20, 10), BLUE)
    img.paste(RED, (0, 0, 4, 4))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = load_image(encode(img, "JPEG", quality=95, exif=exif.tobytes()))
    assert image.shape == (20, 10, 3)
    np.testing.assert_allclose(image[1, 8], RED, atol=10)
    np.testing.assert_allclose(image[1, 1], BLUE, atol=10)


def test_grayscale_becomes_equal_channels():
    image = load_image(encode(Image.new("L", (3, 3), 77), "PNG"))
    assert tuple(image[1, 1]) == (77, 77, 77)


def test_one_bit_maps_to_black_and_white():
    img = Image.new("1", (2, 1), 0)
    img.putpixel((1, 0), 1)
    image = load_image(encode(img, "PNG"))
    assert tuple(image[0, 0]) == (0, 0, 0) and tuple(image[0, 1]) == WHITE


def palette_image(transparency=None):
    img = Image.new("P", (2, 1))
    img.putpalette([12, 34, 56, 200, 100, 50] + [0] * 762)
    img.putpixel((1, 0), 1)
    return encode(img, "PNG", **({} if transparency is None else {"transparency": transparency}))


def test_palette_colours_map_exactly():
    image = load_image(palette_image())
    assert tuple(image[0, 0]) == (12, 34, 56) and tuple(image[0, 1]) == (200, 100, 50)


def test_palette_transparent_index_becomes_white():
    image = load_image(palette_image(transparency=0))
    assert tuple(image[0, 0]) == WHITE and tuple(image[0, 1]) == (200, 100, 50)


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (3, 1))
    img.putdata([(10, 20, 30, 0), (10, 20, 30, 255), (0, 0, 0, 128)])
    image = load_image(encode(img, "PNG"))
    assert tuple(image[0, 0]) == WHITE and tuple(image[0, 1]) == (10, 20, 30)
    # black at alpha 128/255 over white: 255 * (1 - 128/255) = 127
    np.testing.assert_allclose(image[0, 2], (127, 127, 127), atol=1)


def test_gray_with_alpha_is_composited_on_white():
    img = Image.new("LA", (2, 1))
    img.putdata([(50, 0), (50, 255)])
    image = load_image(encode(img, "PNG"))
    assert tuple(image[0, 0]) == WHITE and tuple(image[0, 1]) == (50, 50, 50)


def test_cmyk_uses_naive_conversion():
    img = Image.new("CMYK", (2, 1))
    img.putdata([(0, 0, 0, 0), (0, 255, 255, 0)])
    image = load_image(encode(img, "TIFF"))
    assert tuple(image[0, 0]) == WHITE and tuple(image[0, 1]) == RED


def test_cmyk_jpeg_white_stays_white():
    image = load_image(encode(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG", quality=95))
    np.testing.assert_allclose(image[4, 4], WHITE, atol=3)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_scales_by_full_range(fmt):
    img = Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16))
    assert img.mode == "I;16"
    image = load_image(encode(img, fmt))
    # 32768 * 255 / 65535 = 127.5019 -> 128; clipping would have given 255
    assert image[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("top", [2**16 - 1, 2**31 - 1])  # 16-bit values, full 32-bit range
def test_32_bit_integer_image_scales_by_the_depth_its_values_use(top):
    img = Image.fromarray(np.array([[0, top // 2 + 1, top]], dtype=np.int32))
    assert img.mode == "I"
    assert load_image(encode(img, "TIFF"))[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize(
    "values, expected", [([0.0, 0.5, 1.0], [0, 128, 255]), ([0.0, 200.0], [0, 200])]
)
def test_float_image_in_unit_or_byte_range(values, expected):
    img = Image.fromarray(np.array([values], dtype=np.float32))
    assert img.mode == "F"
    assert load_image(encode(img, "TIFF"))[0, :, 0].tolist() == expected


@pytest.mark.parametrize(
    "fmt, params", [("GIF", {}), ("WEBP", {"lossless": True}), ("MPO", {"quality": 95})]
)
def test_multi_frame_files_give_first_frame(fmt, params):
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=50, **params)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    np.testing.assert_allclose(load_image(data)[4, 4], RED, atol=3)  # MPO frames are JPEGs


# --- sources -------------------------------------------------------------------------------


def test_str_path_bytes_and_file_objects_give_the_same_image(tmp_path):
    data = encode(two_colour_rgb(), "PNG")
    path = tmp_path / "two.png"
    path.write_bytes(data)
    exhausted = io.BytesIO(data)
    exhausted.read()  # getvalue() ignores the position, as a rerun Streamlit page needs
    with open(path, "rb") as file:
        sources = [str(path), data, exhausted, FakeUpload("two.png", data), file]
        images = [load_image(source) for source in sources]
    for image in images:
        np.testing.assert_array_equal(image, images[0])


@pytest.mark.parametrize(
    "array, expected",
    [
        (np.full((2, 2), 9, np.uint8), (9, 9, 9)),
        (np.full((2, 2, 1), 9, np.uint8), (9, 9, 9)),
        (np.full((2, 2, 3), (1, 2, 3), np.uint8), (1, 2, 3)),
        (np.full((2, 2, 4), (1, 2, 3, 0), np.uint8), WHITE),
        (np.full((2, 2, 3), (0, 32768, 65535), np.uint16), (0, 128, 255)),
        (np.full((2, 2, 3), (0.0, 0.5, 1.0), np.float32), (0, 128, 255)),
        (np.full((2, 2, 3), (0.0, 100.0, 255.0), np.float64), (0, 100, 255)),
        (np.full((2, 2, 3), (0, 100, 255), np.int64), (0, 100, 255)),
        (np.ones((2, 2), bool), WHITE),
    ],
)
def test_arrays_become_rgb_uint8(array, expected):
    image = load_image(array)
    assert image.shape == (2, 2, 3) and image.dtype == np.uint8
    assert tuple(image[1, 1]) == expected


def test_array_result_is_a_copy():
    array = np.zeros((2, 2, 3), np.uint8)
    load_image(array)[0, 0] = 255
    assert array.max() == 0


# --- refused files -------------------------------------------------------------------------


def refused(source, *phrases, **limits):
    with pytest.raises(InvalidImageError) as info:
        load_image(source, **limits)
    message = str(info.value)
    for phrase in phrases:
        assert phrase in message, message
    return message


def test_empty_file_names_the_file(tmp_path):
    (tmp_path / "cat.jpg").write_bytes(b"")
    refused(tmp_path / "cat.jpg", "'cat.jpg' is empty (0 bytes)")
    refused(b"", "The file is empty")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_refused(fmt):
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), fmt)  # noise: compression leaves plenty to cut
    refused(FakeUpload("half.img", data[: len(data) // 2]), "'half.img' is truncated")
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_text_with_image_extension_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are my notes, not a picture")
    refused(path, "'notes.png' is not an image")


def test_unsupported_format_is_not_an_image():
    refused(encode(Image.new("RGB", (4, 4)), "PPM"), "not an image", "JPEG, PNG")


def test_corrupt_image_data_could_not_be_decoded():
    data = bytearray(encode(two_colour_rgb(), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start : start + 8] = b"\xff" * 8  # break the zlib stream, keep the file length
    refused(bytes(data), "could not be decoded")


def test_header_claiming_too_many_pixels_is_refused_before_decoding():
    refused(png_claiming_size(9_000, 9_000), "9000 x 9000 pixels", f"{MAX_PIXELS:,}-pixel limit")


@pytest.mark.parametrize("side", [10_000, 20_000])  # Pillow's warning, then its error
def test_pillow_bomb_checks_are_refused_too(side):
    before = Image.MAX_IMAGE_PIXELS
    refused(png_claiming_size(side, side), "pixel limit", max_pixels=10**12)
    assert Image.MAX_IMAGE_PIXELS == before


def test_pixel_limit_applies_to_real_images_and_arrays():
    refused(encode(Image.new("RGB", (10, 10)), "PNG"), "10 x 10 pixels", max_pixels=99)
    refused(np.zeros((10, 10, 3), np.uint8), "100 pixels", max_pixels=99)


def test_file_over_byte_limit_is_refused(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(encode(two_colour_rgb(), "PNG"))
    refused(path, "'big.png' is", "larger than the 10 bytes limit", max_bytes=10)
    refused(b"x" * 11, "larger than", max_bytes=10)


def test_upload_over_byte_limit_is_refused_without_reading():
    upload = FakeUpload("huge.jpg", b"", size=60 * 2**20)
    upload.getvalue = upload.read = None  # calling either would fail the test
    refused(upload, "'huge.jpg' is 60.0 MB, larger than the 50.0 MB limit")


def test_missing_path(tmp_path):
    refused(tmp_path / "nope.png", "No image file at", "nope.png")


@pytest.mark.parametrize(
    "array, phrase",
    [
        (np.zeros((0, 5, 3), np.uint8), "zero-size dimension"),
        (np.zeros((4, 0), np.uint8), "zero-size dimension"),
        (np.zeros((3, 8, 8), np.uint8), "has shape (3, 8, 8)"),
        (np.zeros((4, 4, 2), np.uint8), "expected channels last"),
        (np.zeros(5, np.uint8), "has shape (5,)"),
        (np.zeros((4, 4, 3), np.complex64), "dtype complex64"),
        (np.full((4, 4, 3), "a"), "dtype <U1"),
        (np.full((4, 4, 3), 300.0), "values in [300, 300]"),
        (np.full((4, 4, 3), -1, np.int16), "expected [0, 1] or [0, 255]"),
        (np.full((4, 4, 3), np.nan), "NaN"),
    ],
)
def test_bad_arrays_are_refused(array, phrase):
    refused(array, "The array", phrase)


def test_unknown_source_type_is_a_programming_error():
    with pytest.raises(TypeError, match="source must be"):
        load_image(42)


# --- many images, names, resize, encode ----------------------------------------------------


def test_load_images_keeps_going_past_bad_files(tmp_path):
    good_png = tmp_path / "good.png"
    good_png.write_bytes(encode(two_colour_rgb(), "PNG"))
    sources = [FakeUpload("empty.jpg", b""), good_png, FakeUpload("junk.gif", b"GIF? no")]
    good, bad = load_images(sources)
    assert [name for name, _ in good] == ["good.png"]
    assert tuple(good[0][1][0, 0]) == RED
    assert [name for name, _ in bad] == ["empty.jpg", "junk.gif"]
    assert "empty" in bad[0][1] and "not an image" in bad[1][1]


@pytest.mark.parametrize(
    "source, expected",
    [
        ("/photos/cat.jpg", "cat.jpg"),
        (FakeUpload("dog.png", b""), "dog.png"),
        (io.BytesIO(b""), "image"),
        (b"raw", "image"),
        (np.zeros((2, 2)), "image"),
    ],
)
def test_image_name(source, expected):
    assert image_name(source) == expected


def test_resize_keeps_constant_colour_and_sets_shape():
    image = resize_image(np.full((5, 7, 3), (10, 20, 30), np.uint8), (3, 11))
    assert image.shape == (3, 11, 3) and image.dtype == np.uint8
    assert (image == (10, 20, 30)).all()


def test_resize_down_averages_a_checkerboard():
    checker = (np.indices((4, 4)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert abs(int(resize_image(checker, (1, 1))[0, 0]) - 127) <= 1  # antialiased, not sampled


def test_resize_refuses_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        resize_image(np.zeros((4, 4, 3), np.float32), (2, 2))
    with pytest.raises(ValueError, match=">= 1"):
        resize_image(np.zeros((4, 4, 3), np.uint8), (0, 2))


def test_png_bytes_round_trip():
    image = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    data = png_bytes(image)
    assert data.startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), image)
