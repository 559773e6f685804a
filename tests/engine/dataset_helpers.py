"""Builders of small image files, folders and zips for the data set tests."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from engine.data.shapes import make_shape_image


def png(color=(200, 30, 30), size=(16, 16), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    image = Image.new(mode, size, color if mode != "L" else color[0])
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def array_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def shape_png(i: int, size: int = 64) -> bytes:
    """A distinct textured image (a shapes scene) per ``i``."""
    return array_png(make_shape_image(i % 6, size=size, seed=(99, i))[0])


def near_copy_jpeg(data: bytes) -> bytes:
    """The same picture a little brighter, downscaled and re-encoded as JPEG."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    image = ImageEnhance.Brightness(image).enhance(1.1)
    image = image.resize((image.width * 7 // 8, image.height * 7 // 8), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def huge_png_header(width=100_000, height=100_000) -> bytes:
    """A PNG whose header claims a giant image (its data is a few bytes)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def make_zip(path: Path, entries: dict[str, bytes], *, symlinks: dict[str, str] | None = None,
             compression=zipfile.ZIP_DEFLATED) -> Path:
    """A zip with the given entries written verbatim (names are not sanitised)."""
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100644 << 16)
            info.compress_type = compression
            archive.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, target)
    return path


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}
