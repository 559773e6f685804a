"""The images a session works on: the bundled gallery and the user's uploads.

An image is named by a stable id: ``shape:circle`` (bundled shapes) or ``photo:chelsea``
(scikit-image's bundled photos), which travel in the URL, or ``upload:<hash>_<name>`` (a file
this browser uploaded, kept on disk under its upload token so that a reload keeps it; never put
in a URL, see ui.state).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import streamlit as st

from engine.images import load_image
from ui.paths import uploads_dir

ASSETS_IMAGES = Path(__file__).resolve().parents[1] / "assets" / "images"
#: scikit-image ships these photos inside its wheel, so they work offline.
PHOTOS = {"chelsea": "Cat (Chelsea)", "coffee": "Coffee cup", "astronaut": "Astronaut",
          "rocket": "Rocket"}
DEFAULT_IMAGES = ["shape:star", "shape:ring", "photo:chelsea"]


def gallery() -> dict[str, str]:
    """Bundled image ids -> labels, shapes first."""
    shapes = {f"shape:{p.stem.removeprefix('shape_')}": f"Shape: {p.stem.removeprefix('shape_')}"
              for p in sorted(ASSETS_IMAGES.glob("shape_*.png"))}
    return {**shapes, **{f"photo:{k}": f"Photo: {v}" for k, v in PHOTOS.items()}}


def label(image_id: str, token: str = "") -> str:
    """What people see for an image id (uploads: their original file name, shown as plain text)."""
    kind, _, rest = image_id.partition(":")
    if kind == "upload":
        return _original_names(token).get(rest) or rest.split("_", 1)[-1]
    return gallery().get(image_id, image_id)


def _names_file(token: str) -> Path:
    return uploads_dir(token) / ".names.json"


def _original_names(token: str) -> dict[str, str]:
    if not token:
        return {}
    try:
        return json.loads(_names_file(token).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@st.cache_data(show_spinner=False, max_entries=256)
def get_image(image_id: str, token: str = "") -> np.ndarray:
    """The (H, W, 3) uint8 image for an id. Raises InvalidImageError for a vanished upload."""
    kind, _, rest = image_id.partition(":")
    if kind == "photo" and rest in PHOTOS:
        import skimage.data

        return load_image(getattr(skimage.data, rest)())
    if kind == "shape":
        return load_image(ASSETS_IMAGES / f"shape_{rest}.png")
    if kind == "upload" and token and "/" not in rest and "\\" not in rest and rest[:1] != ".":
        return load_image(uploads_dir(token) / rest)
    from engine.errors import InvalidImageError

    raise InvalidImageError(f"The image '{label(image_id)}' is no longer available; "
                            "upload it again.")


def safe_file_name(name: str, limit: int = 60) -> str:
    """A name safe to use on disk: letters, digits, dot, dash, underscore; no leading dot."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).lstrip("._") or "file"
    return clean[-limit:]


def save_upload(data: bytes, name: str, token: str) -> str:
    """Keep an uploaded image that loaded fine; return its id (same bytes -> same id)."""
    digest = hashlib.sha1(data).hexdigest()[:10]
    file_name = f"{digest}_{safe_file_name(name)}"
    path = uploads_dir(token) / file_name
    if not path.exists():
        path.write_bytes(data)
        names = _original_names(token)
        names[file_name] = Path(name).name[:200]
        _names_file(token).write_text(json.dumps(names), encoding="utf-8")
    return f"upload:{file_name}"


def uploaded_ids(token: str) -> list[str]:
    """Every image this browser uploaded, oldest first."""
    folder = uploads_dir(token)
    files = sorted((p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
                   key=lambda p: p.stat().st_mtime)
    return [f"upload:{p.name}" for p in files]
