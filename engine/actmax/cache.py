"""Finished images on disk, one small file per (model, layer, unit, settings).

A whole layer takes minutes on a CPU; the disk cache makes reopening it instant, lets a job that
was stopped go on where it stopped, and lets a page show each batch as soon as it is written.
The engine takes the folder as an argument (the app passes one below its home folder)::

    <folder>/<model digest>/<layer>-<settings digest>/settings.json   what the digest stands for
    <folder>/<model digest>/<layer>-<settings digest>/<unit>.npz      image, activations, history

Files are written to a temporary name and renamed, so a reader never sees half a file; a file
that cannot be read counts as missing and is computed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np

from engine.actmax.optimize import ALGORITHM_VERSION, ActMaxResult
from engine.cache import BoundedCache

_MEMO_SIZE = 4096
# (path, mtime, size) -> the result read from it; shared by every cache object.
_memo: "BoundedCache[ActMaxResult]" = BoundedCache(_MEMO_SIZE)
# What reading a damaged or half-copied file raises.
_UNREADABLE = (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError)


def _digest(text: str, n: int = 16) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


class ActMaxCache:
    """The cached units of one (model, layer, objective, settings).

    Args:
        folder: the cache root.
        model_key: ``ExplorableModel.key``.
        layer: layer path (or ``network.OUTPUT`` for classes).
        settings: what decides the images, as JSON values (``Settings.key()`` without the batch
            size, plus the objective's description).
    """

    def __init__(self, folder: str | os.PathLike, model_key: str, layer: str, settings: dict):
        self.settings = {"version": ALGORITHM_VERSION, "model": model_key, "layer": layer,
                         **settings}
        text = json.dumps(self.settings, sort_keys=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", layer).strip("._")[:48] or "layer"
        self.folder = Path(folder) / _digest(model_key) / f"{slug}-{_digest(text, 12)}"

    def path(self, unit: int) -> Path:
        return self.folder / f"{int(unit)}.npz"

    def load(self, units: Iterable[int]) -> dict[int, ActMaxResult]:
        """The cached results among ``units``, one single-row result per unit found.

        Files already read are served from memory while unchanged on disk, so a page that
        polls a running job reads each file once.
        """
        found = {}
        for unit in units:
            path = self.path(unit)
            try:
                stat = path.stat()
            except OSError:
                continue
            stamp = (str(path), stat.st_mtime_ns, stat.st_size)
            try:
                found[int(unit)] = _memo.get_or_build(stamp, lambda: _read(path, int(unit)))
            except _UNREADABLE:
                continue  # damaged or half-copied: compute it again
        return found

    def missing(self, units: Iterable[int]) -> list[int]:
        """The units without a file yet (cheap: no file is read)."""
        return [int(u) for u in units if not self.path(u).is_file()]

    def save(self, result: ActMaxResult) -> None:
        """Write every row of ``result``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        meta = self.folder / "settings.json"
        if not meta.exists():
            _atomic_write(meta, json.dumps(self.settings, indent=2, sort_keys=True).encode())
        for i, unit in enumerate(result.units):
            tmp = self.folder / f".{int(unit)}.{uuid.uuid4().hex}.npz"
            np.savez(tmp, image=result.images[i], activation=result.activations[i],
                     initial=result.initial[i], history=result.history[i],
                     objective=np.array(result.objective))
            os.replace(tmp, self.path(unit))


def stored_settings(folder: str | os.PathLike, model_key: str, layer: str) -> list[dict]:
    """The settings of every set of ``layer`` images on disk for a model, each as
    ``ActMaxCache`` takes it (so ``ActMaxCache(folder, model_key, layer, s).load(...)`` reads
    it); sets written by another algorithm version are left out."""
    found = []
    for meta in sorted((Path(folder) / _digest(model_key)).glob("*/settings.json")):
        try:
            settings = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (isinstance(settings, dict) and settings.get("version") == ALGORITHM_VERSION
                and settings.get("model") == model_key and settings.get("layer") == layer):
            found.append({k: v for k, v in settings.items()
                          if k not in ("version", "model", "layer")})
    return found


def _read(path: Path, unit: int) -> ActMaxResult:
    """Raises one of ``_UNREADABLE`` for a damaged file."""
    with np.load(path, allow_pickle=False) as data:
        return ActMaxResult(np.array([unit]), data["image"][None], data["activation"][None],
                            data["initial"][None], data["history"][None],
                            str(data["objective"]))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
