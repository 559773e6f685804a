"""Load, validate and resize images from paths, bytes, uploads and arrays.

Every image leaves this module as a ``(H, W, 3)`` uint8 RGB array, whatever it came in as
(palette, 16-bit, CMYK, transparent, rotated by EXIF...), so the rest of the engine handles one
kind of image. Anything that cannot become one raises ``InvalidImageError`` with a sentence that
names the file and says what to do.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import InvalidImageError

# Larger than any photo or PNG export a person would upload to explore a CNN, yet small enough
# that reading the whole file into memory (Streamlit holds uploads in memory anyway) is harmless.
MAX_BYTES = 50 * 2**20
# 50 megapixels admits a 48 MP phone photo (8000 x 6000). Beyond it the decoded array alone
# passes 150 MB (and 600 MB as float32) while the models only look at a few hundred pixels.
MAX_PIXELS = 50_000_000

# Only the decoders we promise; this also keeps Pillow from handing EPS files to Ghostscript.
# The JPEG decoder also opens the multi-picture (MPO) JPEGs that many phones write.
_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_WHITE = (255, 255, 255, 255)


def image_name(source: Any) -> str:
    """Returns the best name to show for an image source.

    Args:
        source: anything `load_image` accepts.

    Returns:
        The file name of a path, the base name of a ``.name`` attribute (uploads, open files), or
        ``"image"`` when the source has no name (bytes, arrays).
    """
    return _known_name(source) or "image"


def load_image(
    source: Any, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Loads an image from a path, bytes, a binary file object or an array.

    Files may be JPEG, PNG, WebP, BMP, GIF or TIFF in any Pillow mode. EXIF rotation is applied,
    transparency is composited on white, 16-bit images are scaled by their full range and
    animations give their first frame.

    Args:
        source: a path (``str`` or ``pathlib.Path``); raw ``bytes``; a binary file object with
            ``getvalue()`` (its whole content is used, whatever its position, so a Streamlit
            ``UploadedFile`` read before still works) or ``read()``; or a NumPy array of shape
            ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` (the last channel is alpha)
            with dtype uint8, uint16 (full range 0-65535), bool, another integer type with values
            in [0, 255], or float in [0, 1] or [0, 255] (read as [0, 1] when the maximum is <= 1).
        max_bytes: largest accepted file size in bytes; checked before reading when the size
            is known up front.
        max_pixels: largest accepted ``width * height``; checked from the file header before
            decoding, so a decompression bomb never gets decoded.

    Returns:
        ``(H, W, 3)`` uint8 RGB array in [0, 255], a new array the caller may modify.

    Raises:
        InvalidImageError: when the file is missing, empty, too large in bytes or pixels, not an
            image, truncated or damaged, or the array has the wrong shape, dtype or range.
        TypeError: when `source` is none of the types above.
    """
    subject = _subject(source)
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, subject, max_pixels)
    data = _read_bytes(source, subject, max_bytes)
    if not data:
        raise InvalidImageError(f"{subject} is empty (0 bytes); choose a file that holds an image.")
    if len(data) > max_bytes:
        raise _too_many_bytes(subject, len(data), max_bytes)
    try:
        # Pillow only warns between its own limit and twice it; turn that into an error here
        # without touching its global MAX_IMAGE_PIXELS or the warning filters of the app.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
                _check_pixels(*img.size, subject, max_pixels)  # header only, nothing decoded yet
                img.load()  # decode now so truncation fails here, not later in a model
                return _pil_to_rgb(ImageOps.exif_transpose(img), subject, max_pixels)
    except InvalidImageError:
        raise
    except UnidentifiedImageError as exc:
        raise InvalidImageError(
            f"{subject} is not an image this app can read; use a JPEG, PNG, WebP, BMP, GIF or "
            "TIFF file."
        ) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImageError(
            f"{subject} has more pixels than the {max_pixels:,}-pixel limit; downscale it first."
        ) from exc
    # Decoders of untrusted files fail in many ways (OSError, SyntaxError, ValueError...); every
    # one of them means the same thing to the person who uploaded the file.
    except Exception as exc:
        if "truncated" in str(exc).lower():
            raise InvalidImageError(
                f"{subject} is truncated (the file ends before the image does); upload the "
                "complete file or export it again."
            ) from exc
        raise InvalidImageError(
            f"{subject} could not be decoded ({exc}); the file may be damaged, export it again "
            "as PNG or JPEG."
        ) from exc


def load_images(
    sources: Any, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """Loads many images; one that cannot be loaded never stops the others.

    Args:
        sources: iterable of anything `load_image` accepts (e.g. a multi-file upload).
        max_bytes: largest accepted file size in bytes, per image.
        max_pixels: largest accepted ``width * height``, per image.

    Returns:
        ``(good, bad)``, both in input order: ``good`` holds ``(name, (H, W, 3) uint8 array)``
        and ``bad`` holds ``(name, message)`` with the message a person can act on.
    """
    good, bad = [], []
    for source in sources:
        name = image_name(source)
        try:
            good.append((name, load_image(source, max_bytes=max_bytes, max_pixels=max_pixels)))
        except InvalidImageError as exc:
            bad.append((name, str(exc)))
    return good, bad


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes an image with Pillow's bilinear filter.

    Pillow widens the filter's support when shrinking, so downscaling is antialiased.

    Args:
        image: ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 array.
        size: ``(height, width)`` of the result, both >= 1.

    Returns:
        uint8 array of shape ``(height, width)`` plus the channels of `image`.

    Raises:
        ValueError: when `image` is not a uint8 image or `size` is not positive.
    """
    height, width = size
    if height < 1 or width < 1:
        raise ValueError(f"size must be (height, width) with both >= 1, got {size}.")
    resized = _to_pil(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized).copy()


def _known_name(source: Any) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source)) or None
    name = getattr(source, "name", None)  # uploads and open files; an int for fd-opened files
    if isinstance(name, str):
        return os.path.basename(name) or None
    return None


def _subject(source: Any) -> str:
    """Returns how messages name `source`: its quoted name, else "The array" or "The file"."""
    name = _known_name(source)
    if name:
        return f"'{name}'"
    return "The array" if isinstance(source, np.ndarray) else "The file"


def _size_text(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MB" if n_bytes >= 2**20 else f"{n_bytes:,} bytes"


def _too_many_bytes(subject: str, size: int, max_bytes: int) -> InvalidImageError:
    return InvalidImageError(
        f"{subject} is {_size_text(size)}, larger than the {_size_text(max_bytes)} limit; "
        "compress or downscale it first."
    )


def _read_bytes(source: Any, subject: str, max_bytes: int) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise InvalidImageError(f"No image file at '{path}'; check the path.")
        if (size := os.path.getsize(path)) > max_bytes:
            raise _too_many_bytes(subject, size, max_bytes)
        with open(path, "rb") as file:
            return file.read(max_bytes + 1)  # one byte more than allowed is enough to refuse
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "getvalue") or hasattr(source, "read"):
        size = getattr(source, "size", None)  # Streamlit's UploadedFile knows its size
        if isinstance(size, int) and size > max_bytes:
            raise _too_many_bytes(subject, size, max_bytes)
        if hasattr(source, "getvalue"):
            return bytes(source.getvalue())
        return bytes(source.read(max_bytes + 1))
    raise TypeError(
        "source must be a path, bytes, a binary file object or a NumPy array, "
        f"got {type(source).__name__}."
    )


def _check_pixels(width: int, height: int, subject: str, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InvalidImageError(
            f"{subject} is {width} x {height} pixels ({width * height:,} pixels), more than the "
            f"{max_pixels:,}-pixel limit; downscale it first."
        )


def _pil_to_rgb(img: Image.Image, subject: str, max_pixels: int) -> np.ndarray:
    if img.mode == "I":
        # 32-bit integer images: scale by the depth the values actually use, so a 16-bit image
        # stored as 32-bit is not left almost black.
        values = np.asarray(img).astype(np.float32).clip(0, None)
        depth = 16 if values.max(initial=0) < 2**16 else 31
        # min(): float32 rounds 2**31 - 1 up, which would push the top value past 1.
        return _array_to_rgb(np.minimum(values / (2**depth - 1), 1), subject, max_pixels)
    if img.mode.startswith("I;16") or img.mode == "F":
        # Pillow's convert("RGB") clips these to 255; the array path scales them instead.
        return _array_to_rgb(np.asarray(img), subject, max_pixels)
    if img.has_transparency_data:  # RGBA, LA, PA, and P/L/RGB with a transparent colour
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, _WHITE), rgba)
    return np.asarray(img.convert("RGB")).copy()


def _array_to_rgb(array: np.ndarray, subject: str, max_pixels: int) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., np.newaxis]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InvalidImageError(
            f"{subject} has shape {array.shape}; expected channels last: (H, W), (H, W, 1), "
            "(H, W, 3) or (H, W, 4)."
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise InvalidImageError(f"{subject} has a zero-size dimension (shape {array.shape}).")
    _check_pixels(width, height, subject, max_pixels)
    values = _scale_to_255(array, subject)
    if values.shape[-1] == 4:
        alpha = values[..., 3:].astype(np.float32) / 255
        values = values[..., :3] * alpha + 255 * (1 - alpha)
    if values.shape[-1] == 1:
        values = np.repeat(values, 3, axis=-1)
    if values.dtype != np.uint8:
        values = np.rint(values)
    return np.array(values, dtype=np.uint8)  # always a copy: never alias the caller's array


def _scale_to_255(array: np.ndarray, subject: str) -> np.ndarray:
    """Returns `array` as uint8, or float32 in [0, 255], following `load_image`'s dtype rules."""
    kind, itemsize = array.dtype.kind, array.dtype.itemsize
    if kind == "u" and itemsize == 1:
        return array
    if kind == "u" and itemsize == 2:  # any byte order: Pillow gives big-endian I;16B
        return array.astype(np.float32) * (255 / 65535)
    if kind == "b":
        return array.astype(np.float32) * 255
    if kind not in "iuf":
        raise InvalidImageError(
            f"{subject} has dtype {array.dtype}; use uint8, uint16 or float values."
        )
    low, high = float(array.min()), float(array.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InvalidImageError(f"{subject} contains NaN or infinite values.")
    if kind == "f" and low >= 0 and high <= 1:
        return array.astype(np.float32) * 255
    if low < 0 or high > 255:
        raise InvalidImageError(
            f"{subject} has values in [{low:g}, {high:g}]; expected [0, 1] or [0, 255]."
        )
    return array.astype(np.float32)


def _to_pil(image: np.ndarray) -> Image.Image:
    channels_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
    if image.dtype != np.uint8 or not channels_ok:
        raise ValueError(
            f"expected a uint8 image of shape (H, W), (H, W, 3) or (H, W, 4), got "
            f"{image.dtype} {image.shape}."
        )
    return Image.fromarray(np.ascontiguousarray(image))
