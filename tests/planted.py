"""A demo shapes data set with planted label errors, for the model report's page and browser
tests: a share of the images is moved, by a seed, into another class's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from engine.data import CLASS_NAMES, export_demo, import_folder


def planted_folder(root: Path, n: int, *, share: float = 0.05, size: int = 32,
                   seed: int = 0) -> tuple[Path, set[str]]:
    """A folder of class folders (``split/class/file.png``) holding ``export_demo``'s ``n``
    images, where ``round(share * n)`` of them, chosen by ``seed``, sit in a wrong class's
    folder.

    Returns:
        The folder and the relative paths of the flipped images (as the imported data set
        names them).
    """
    source = export_demo(root / "source", n, size=size, seed=seed)
    rng = np.random.default_rng(seed)
    flipped = set(rng.choice(len(source.files), size=round(share * len(source.files)),
                             replace=False).tolist())
    tree, moved = root / "planted", set()
    for i, file in enumerate(source.files):
        label = file.label
        if i in flipped:
            label = (label + 1 + int(rng.integers(len(CLASS_NAMES) - 1))) % len(CLASS_NAMES)
        rel = f"{file.split}/{CLASS_NAMES[label]}/{Path(file.path).name}"
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.path_of(file), tree / rel)
        if i in flipped:
            moved.add(rel)
    return tree, moved


def planted_dataset(root: Path, datasets: Path, n: int, **options):
    """``planted_folder`` imported into the data folder ``datasets``: (data set, flipped)."""
    tree, moved = planted_folder(root, n, **options)
    return import_folder(tree, datasets, name="planted shapes"), moved
