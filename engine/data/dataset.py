"""Image data sets on disk: import from a zip or a folder, export the demo shapes, list them.

A data set is a tree of class folders (``cats/…``, ``dogs/…``), optionally below split folders
(``train/``, ``validation/``, ``test/``). Importing never fails on a single bad file: hidden
files, non-images, damaged and oversized images are skipped and listed with the reason. What
cannot be a data set at all (no class folders, one class, a zip bomb) raises
``InvalidDatasetError`` with a sentence that says what to change.

Each data set owns a folder under the data folder the caller passes in (the engine knows no
global paths)::

    <dest>/<id>/dataset.json     the manifest: classes, files, skipped files
    <dest>/<id>/images/...       the images of a zip import or of the demo set
    <dest>/<id>/report/...       the cached sanity report (engine.data.report)
    <dest>/<id>/augment.json     the augmentation settings training uses (engine.data.pipeline)
    <dest>/<id>/boxes.json       demo set only: the object box of every image

A folder import keeps its images where they are and only writes the manifest folder.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import shutil
import stat
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterable

from PIL import Image

from engine.errors import InvalidDatasetError, InvalidImageError
from engine.images import MAX_BYTES, load_image
from engine.progress import Progress, report_each_percent
from engine.records import stored_records

MANIFEST = "dataset.json"
IMAGES = "images"
BOXES = "boxes.json"
MANIFEST_VERSION = 1

#: Split folder names people use, mapped to the name the app uses.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "validation": "validation", "val": "validation", "valid": "validation",
    "test": "test", "testing": "test",
}
SPLIT_ORDER = ("train", "validation", "test")
#: The one split of a data set without split folders.
ALL = "all"

#: Files operating systems and archivers leave behind; never part of a data set.
SYSTEM_FILES = {"__MACOSX", "Thumbs.db", "desktop.ini", "Icon\r"}

#: What ``export_small_novel`` draws per class: few training images, so that the Train page's
#: "New shapes (small)" is a quick fine-tuning task, and a test split large enough (600 images
#: in all) for a held-out accuracy to within a few points.
NOVEL_SMALL_TRAIN_PER_CLASS = 50
NOVEL_SMALL_VALIDATION_PER_CLASS = 15
NOVEL_SMALL_TEST_PER_CLASS = 100
#: Used by no other set of the project (the demo model's seeds are 0, 777, 1000 and 4242).
NOVEL_SMALL_SEED = 5050

#: Per family: (folder name prefix, data set name).
_FAMILY_TITLES = {"demo": ("shapes", "Demo shapes"), "novel": ("novel-shapes", "New shapes")}

# TensorFlow decodes these formats and modes exactly as Pillow + load_image would; every other
# file (transparency, CMYK, 16-bit, EXIF rotation, TIFF...) goes through load_image in tf.data.
_NATIVE_FORMATS = {"JPEG": {"RGB", "L"}, "PNG": {"RGB", "L", "P"}, "GIF": {"P", "L", "RGB"},
                   "BMP": {"RGB"}, "WEBP": {"RGB"}}
_EXIF_ORIENTATION = 0x0112
_COPY_CHUNK = 1 << 16


@dataclass(frozen=True)
class ZipLimits:
    """What a zip may hold before it is refused as a zip bomb.

    Attributes:
        max_files: most entries (files, folders, skipped ones included).
        max_total_bytes: most bytes all entries may hold once uncompressed.
        max_file_bytes: largest single file; larger images are skipped and listed.
        max_ratio: largest uncompressed / compressed size of one entry, checked for entries of
            more than ``ratio_min_bytes`` (small files legitimately compress very well).
        ratio_min_bytes: see ``max_ratio``.
    """

    max_files: int = 100_000
    max_total_bytes: int = 4 * 2**30
    max_file_bytes: int = MAX_BYTES
    max_ratio: float = 100.0
    ratio_min_bytes: int = 2**20


@dataclass(frozen=True)
class DatasetFile:
    """One image of a data set.

    Attributes:
        path: POSIX path relative to ``Dataset.image_root`` (split and class folders included).
        split: ``"train"``, ``"validation"``, ``"test"`` or ``"all"``.
        label: index into ``Dataset.class_names``.
        native: True when TensorFlow's own decoder reads it exactly as ``load_image`` does.
    """

    path: str
    split: str
    label: int
    native: bool = True


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a data set: its path (as found, shown as text) and why."""

    path: str
    reason: str


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set on disk.

    Attributes:
        name: what people see (the zip or folder name; shown as text).
        source: ``"zip"``, ``"folder"`` or ``"demo"``.
        class_names: class folder names, sorted (the demo set keeps ``CLASS_NAMES``' order);
            labels index into them.
        files: every usable image, sorted by split then path.
        skipped: every file left out, with the reason.
        image_root: the folder the file paths are relative to.
        folder: the data set's own folder (manifest, report cache, augmentation settings), or
            None for a folder read in place without a data folder.
        key: fingerprint of the file list; changes whenever the content may have changed.
        created: when it was imported (seconds since the epoch).
    """

    name: str
    source: str
    class_names: tuple[str, ...]
    files: tuple[DatasetFile, ...]
    skipped: tuple[SkippedFile, ...]
    image_root: Path
    folder: Path | None
    key: str
    created: float = field(default_factory=time.time)

    @property
    def id(self) -> str:
        """The data set folder's name (unique inside the data folder)."""
        return self.folder.name if self.folder is not None else self.key

    @property
    def splits(self) -> list[str]:
        """The splits present, in the order train, validation, test (or just ``["all"]``)."""
        present = {f.split for f in self.files}
        return [s for s in (*SPLIT_ORDER, ALL) if s in present]

    def files_in(self, split: str | None = None) -> list[DatasetFile]:
        """The files of one split (``None`` or ``"all"``: every file).

        Raises:
            InvalidDatasetError: when the data set has no such split.
        """
        if split is None or split == ALL:
            return list(self.files)
        if split not in self.splits:
            raise InvalidDatasetError(
                f"The data set '{self.name}' has no '{split}' split; it has: "
                f"{', '.join(self.splits)}.")
        return [f for f in self.files if f.split == split]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{split: {class name: number of images}}``, every class listed in every split."""
        out = {s: dict.fromkeys(self.class_names, 0) for s in self.splits}
        for f in self.files:
            out[f.split][self.class_names[f.label]] += 1
        return out

    def path_of(self, file: DatasetFile | str) -> Path:
        """The absolute path of a file of this data set."""
        rel = file.path if isinstance(file, DatasetFile) else file
        return self.image_root / rel

    @property
    def boxes_path(self) -> Path | None:
        """The demo set's ``boxes.json`` (``{path: [x0, y0, x1, y1]}``), else None."""
        if self.folder is None or not (self.folder / BOXES).is_file():
            return None
        return self.folder / BOXES

    def boxes(self) -> dict[str, tuple[int, int, int, int]]:
        """Object boxes of the demo set (inclusive-exclusive x0, y0, x1, y1), else ``{}``."""
        path = self.boxes_path
        if path is None:
            return {}
        return {k: tuple(v) for k, v in json.loads(path.read_text()).items()}


# ------------------------------------------------------------------------------------ import
def import_zip(file: str | os.PathLike | BinaryIO, dest: str | os.PathLike, *,
               name: str | None = None, limits: ZipLimits = ZipLimits(),
               callback: Progress | None = None) -> Dataset:
    """Import a ``.zip`` of class folders into a new data set folder under ``dest``.

    Nothing is ever written outside ``dest``: entries with ``..``, absolute paths, drive
    letters or backslashes, symbolic links and other special entries are skipped and listed, as
    are hidden and system files (``__MACOSX``, ``.DS_Store``, dotfiles) and files that are not
    readable images. A single folder wrapping everything (``mydata/cats/…``) is looked through.
    The same zip imported twice gives the same data set (its id includes the content hash).

    Args:
        file: path of the zip, or a binary file object (e.g. Streamlit's ``UploadedFile``).
        dest: the data folder; the data set gets its own sub-folder there.
        name: what to call the data set (default: the zip's file name without ``.zip``).
        limits: zip bomb limits; checked on the central directory before anything is written
            and again while extracting, since headers can lie.
        callback: ``callback(done, total, stage)`` while extracting.

    Returns:
        The imported data set.

    Raises:
        InvalidDatasetError: not a zip, a zip bomb, no class folders, fewer than two classes
            with images, or split folders mixed with class folders.
    """
    dest = Path(dest)
    label = name or _zip_name(file)
    digest = _content_hash(file)
    try:
        archive = zipfile.ZipFile(_rewound(file))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InvalidDatasetError(
            f"'{label}' is not a readable zip file ({exc}); compress the class folders into a "
            ".zip and upload it again.") from exc
    with archive:
        infos = archive.infolist()
        _check_central_directory(infos, label, limits)
        entries, skipped = _zip_entries(infos)
        layout = _layout(list(entries), label)
        skipped += layout.skipped
        dataset_id = f"{_slug(label)}-{digest[:10]}"
        final = dest / dataset_id
        existing = _existing(final)
        if existing is not None:
            return existing
        work = dest / f".import-{uuid.uuid4().hex}"
        (work / IMAGES).mkdir(parents=True)
        try:
            files, bad = _extract(archive, entries, layout, work / IMAGES, limits, label,
                                  callback)
            dataset = _finish(work, final, label, "zip", files, skipped + bad)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return dataset


def import_folder(path: str | os.PathLike, dest: str | os.PathLike | None = None, *,
                  name: str | None = None, callback: Progress | None = None) -> Dataset:
    """Read a folder of class folders in place (its images are neither copied nor changed).

    Args:
        path: the folder; class folders directly inside, or inside ``train/``, ``validation/``
            (``val/``), ``test/``.
        dest: the data folder. When given, the data set is listed there (manifest, report
            cache and augmentation settings go in a sub-folder); when None nothing is written.
        name: what to call the data set (default: the folder's name).
        callback: ``callback(done, total, stage)`` while checking the images.

    Returns:
        The data set. Importing the same folder again rescans it.

    Raises:
        InvalidDatasetError: no such folder, no class folders, fewer than two classes with
            images, or split folders mixed with class folders.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InvalidDatasetError(f"There is no folder at '{path}'; check the path.")
    root = root.resolve()
    label = name or root.name or str(root)
    entries, skipped = _folder_entries(root)
    layout = _layout(entries, label)
    skipped += layout.skipped
    image_root = root.joinpath(*layout.prefix)  # inside a wrapper folder (pets/pets/cats/…)
    files, bad = [], []
    total = len(layout.files)
    for i, (parts, split, class_name) in enumerate(layout.files):
        rel = "/".join(parts)
        try:
            native = _probe(image_root / rel)
        except InvalidImageError as exc:
            bad.append(SkippedFile(rel, str(exc)))
        else:
            files.append((rel, split, class_name, native))
        report_each_percent(callback, i + 1, total, "checking images")
    if dest is None:
        return _build(label, "folder", files, skipped + bad, image_root, None, time.time())
    dest = Path(dest)
    dataset_id = f"{_slug(label)}-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"
    work = dest / f".import-{uuid.uuid4().hex}"
    work.mkdir(parents=True)
    try:
        return _finish(work, dest / dataset_id, label, "folder", files, skipped + bad,
                       image_root=image_root, replace=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


#: the demo data set made when nothing else is asked, on the Data set and Train pages alike:
#: the smallest the scratch CNN learns from with the default settings (10 epochs at 64 px:
#: about 96 % on its test split in a few minutes on two CPU cores; 600 images stay near
#: chance, about 78 % held-out errors where chance makes 83 %)
DEMO_SET_SIZE = 3000


def export_demo(dest: str | os.PathLike, n: int = DEMO_SET_SIZE, *, size: int = 64, seed: int = 0,
                fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                callback: Progress | None = None, mirrors: bool = False, family: str = "demo",
                per_class: tuple[int, int, int] | None = None) -> Dataset:
    """Write the procedural shapes set as a data set with train, validation and test splits.

    Images come from ``engine.data.shapes.make_shapes(n, size=size, seed=seed, family=family)``;
    the object box of every image is kept in ``boxes.json`` (see ``Dataset.boxes``) for saliency
    checks. Each family gets its own folder, ``shapes-…`` or ``novel-shapes-…``.

    Args:
        dest: the data folder.
        n: number of images in all, >= 36; rounded down to a multiple of the six classes.
        size: image side in pixels, >= 16.
        seed: non-negative int; the same arguments always give the same images.
        fractions: shares of train, validation and test (each rounded to whole images per
            class, at least one per class in each split).
        callback: ``callback(done, total, stage)`` while drawing and writing.
        mirrors: save ``engine.data.MIRRORS`` (both flips and the diagonal mirror) as the
            set's augmentation: every shape keeps its class under them, and the bundled demo
            model was trained with them. From scratch with the default run settings (10
            epochs, 3,000 images at 64 pixels): 53 test errors in 450 with them, 100 without.
            A set that already exists keeps its saved settings.
        family: ``"demo"`` (the classes the bundled demo model learnt) or ``"novel"`` (six
            shapes it never saw, ``engine.data.NOVEL_CLASS_NAMES``).
        per_class: ``(train, validation, test)`` images per class, each >= 1; when given, ``n``
            and ``fractions`` are not used, and the test and validation images are the same
            whatever the number of training images.

    Returns:
        The data set (reused when it already exists).

    Raises:
        InvalidDatasetError: too few images, or a split of ``per_class`` below one.
        ValueError: an unknown family.
    """
    from engine.data.shapes import family_class_names, make_shape_image

    names = family_class_names(family)
    prefix, title = _FAMILY_TITLES[family]
    n_classes = len(names)
    if per_class is None:
        if n < 6 * n_classes:
            raise InvalidDatasetError(f"The demo set needs at least {6 * n_classes} images "
                                      f"(got {n}); choose a larger size.")
        per = n // n_classes
        n_val, n_test = (max(1, round(per * share)) for share in fractions[1:])
        counts = (per - n_val - n_test, n_val, n_test)
    else:
        counts = tuple(int(c) for c in per_class)
        if len(counts) != 3 or min(counts) < 1:
            raise InvalidDatasetError(
                "Ask for at least one image per class in each of train, validation and test "
                f"(got {tuple(per_class)}).")
    n_train, n_val, n_test = counts
    per_class_total = n_train + n_val + n_test
    dest = Path(dest)
    name = f"{prefix}-{per_class_total * n_classes}-{size}px-seed{seed}"
    label = f"{title}, {size}x{size} px, seed {seed}"
    if per_class is not None:  # its splits are cut in another order: never the same folder
        name += f"-per-class-{n_train}-{n_val}-{n_test}"
        label = f"{title}, {n_train} training images per class, {size}x{size} px, seed {seed}"
    final = dest / name
    existing = _existing(final)
    if existing is not None:
        return existing
    # Each class's images go to the splits in rank order. With explicit counts the held-out
    # splits come first, so that sets asking for more training images share their validation
    # and test images and only add training ones.
    order = SPLIT_ORDER if per_class is None else SPLIT_ORDER[::-1]
    sizes = dict(zip(SPLIT_ORDER, counts))
    cut = dict(zip(order, itertools.accumulate(sizes[s] for s in order)))

    work = dest / f".import-{uuid.uuid4().hex}"
    (work / IMAGES).mkdir(parents=True)
    try:
        files, boxes, total = [], {}, per_class_total * n_classes
        # Image i is make_shapes(total, size=size, seed=seed)'s image i (the seed (seed, i)),
        # drawn one at a time so that a large set never sits in memory.
        for i in range(total):
            label_index = i % n_classes
            rank = i // n_classes  # the rank of this image inside its class
            split = next(s for s in order if rank < cut[s])
            image, box = make_shape_image(label_index, size=size, seed=(seed, i), family=family)
            cls = names[label_index]
            rel = f"{split}/{cls}/{cls}_{i:06d}.png"
            out = work / IMAGES / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(out, compress_level=1)
            files.append((rel, split, cls, True))
            boxes[rel] = [int(v) for v in box]
            report_each_percent(callback, i + 1, total, "drawing shapes")
        (work / BOXES).write_text(json.dumps(boxes))
        if mirrors:
            from engine.data.pipeline import AUGMENT_FILE, MIRRORS

            (work / AUGMENT_FILE).write_text(json.dumps(MIRRORS.to_dict()))
        # The classes keep make_shapes' order, so labels here are make_shapes' labels.
        return _finish(work, final, label, "demo", files, [], class_order=list(names))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def export_small_novel(dest: str | os.PathLike,
                       train_per_class: int = NOVEL_SMALL_TRAIN_PER_CLASS, *, size: int = 64,
                       seed: int = NOVEL_SMALL_SEED, callback: Progress | None = None,
                       mirrors: bool = True) -> Dataset:
    """Write "New shapes (small)": the six shapes the demo model never saw, few per class.

    By default 50 training, 15 validation and 100 test images per class (990 images), drawn
    from a seed no other set uses. The validation and test images are the same whatever
    ``train_per_class`` is (more training images only add to the training split), so held-out
    accuracies of runs with more or fewer training images compare.
    This is ``export_demo(dest, family="novel", per_class=(train_per_class, 15, 100), ...)``.

    Args:
        dest: the data folder.
        train_per_class: training images per class, >= 1.
        size: image side in pixels, >= 16.
        seed: non-negative int.
        callback: as for ``export_demo``.
        mirrors: as for ``export_demo``; on by default, as the pages create the demo set.

    Returns:
        The data set (reused when it already exists).

    Raises:
        InvalidDatasetError: ``train_per_class`` below one.
    """
    return export_demo(dest, size=size, seed=seed, callback=callback, mirrors=mirrors,
                       family="novel", per_class=(train_per_class,
                                                  NOVEL_SMALL_VALIDATION_PER_CLASS,
                                                  NOVEL_SMALL_TEST_PER_CLASS))


# ----------------------------------------------------------------------------- stored sets
def open_dataset(folder: str | os.PathLike) -> Dataset:
    """Open a data set folder written by an import.

    Raises:
        InvalidDatasetError: when the folder holds no readable manifest.
    """
    folder = Path(folder)
    try:
        data = json.loads((folder / MANIFEST).read_text())
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"manifest version {data.get('version')}")
        columns = data["files"]
        files = tuple(DatasetFile(p, s, int(label), bool(n)) for p, s, label, n in zip(
            columns["path"], columns["split"], columns["label"], columns["native"]))
        skipped = tuple(SkippedFile(p, r) for p, r in data["skipped"])
        root = Path(data["image_root"]) if data["image_root"] else folder / IMAGES
        return Dataset(name=data["name"], source=data["source"],
                       class_names=tuple(data["class_names"]), files=files, skipped=skipped,
                       image_root=root, folder=folder, key=data["key"],
                       created=float(data["created"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidDatasetError(
            f"The data set folder '{folder.name}' is damaged ({exc}); import it again.") from exc


def list_datasets(dest: str | os.PathLike) -> list[Dataset]:
    """Every data set stored under the data folder ``dest``, newest first (damaged ones are
    left out)."""
    return stored_records(Path(dest), MANIFEST, open_dataset, InvalidDatasetError,
                          key=lambda d: (-d.created, d.id))


def delete_dataset(dataset: Dataset) -> None:
    """Delete a stored data set's folder. A folder import's own images are never touched."""
    if dataset.folder is None:
        return
    shutil.rmtree(dataset.folder, ignore_errors=True)


# ---------------------------------------------------------------------------- zip entries
@dataclass
class _Entry:
    info: zipfile.ZipInfo | None
    parts: tuple[str, ...]


def _check_central_directory(infos: list[zipfile.ZipInfo], label: str,
                             limits: ZipLimits) -> None:
    if len(infos) > limits.max_files:
        raise InvalidDatasetError(
            f"'{label}' holds {len(infos):,} entries, more than the {limits.max_files:,} "
            "allowed; split it into smaller zips.")
    total = sum(i.file_size for i in infos)
    if total > limits.max_total_bytes:
        raise InvalidDatasetError(
            f"'{label}' would unpack to {_size(total)}, more than the "
            f"{_size(limits.max_total_bytes)} allowed; it looks like a zip bomb, or the data set "
            "is too large for this app.")
    for info in infos:
        if _ratio_too_high(info.file_size, info.compress_size, limits):
            raise InvalidDatasetError(
                f"'{label}' has an entry ('{info.filename}') that unpacks "
                f"{info.file_size / max(info.compress_size, 1):,.0f} times larger than it is "
                "stored: it looks like a zip bomb and was not imported.")


def _ratio_too_high(size: int, compressed: int, limits: ZipLimits) -> bool:
    return size > limits.ratio_min_bytes and size > limits.max_ratio * max(compressed, 1)


def _zip_entries(infos: list[zipfile.ZipInfo]) -> tuple[list[_Entry], list[SkippedFile]]:
    entries, skipped, seen = [], [], set()
    for info in infos:
        name = info.filename
        kind = (info.external_attr >> 16) & 0o170000
        if kind == stat.S_IFDIR or (not kind and info.is_dir()):
            continue
        problem = _unsafe_name(name)
        if problem:
            skipped.append(SkippedFile(name, f"unsafe path ({problem}); skipped, nothing "
                                             "written"))
            continue
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if kind == stat.S_IFLNK:
            skipped.append(SkippedFile(name, "symbolic link; skipped"))
            continue
        if kind and kind != stat.S_IFREG:
            skipped.append(SkippedFile(name, "not a regular file; skipped"))
            continue
        if _hidden(parts):
            skipped.append(SkippedFile(name, "hidden or system file; skipped"))
            continue
        if info.flag_bits & 0x1:
            skipped.append(SkippedFile(name, "encrypted; skipped (zip it without a password)"))
            continue
        if parts in seen:
            skipped.append(SkippedFile(name, "appears twice in the zip; the first copy is used"))
            continue
        seen.add(parts)
        entries.append(_Entry(info, parts))
    return entries, skipped


def _unsafe_name(name: str) -> str | None:
    """Why a zip entry name could write outside the destination, or None when it cannot."""
    if "\\" in name:
        return "backslash in the name"
    if name.startswith("/"):
        return "absolute path"
    if re.match(r"^[A-Za-z]:", name):
        return "drive letter"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "control character in the name"
    parts = name.split("/")
    if ".." in parts:
        return "'..' in the path"
    if any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        return "name too long"
    return None


def _hidden(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p in SYSTEM_FILES for p in parts)


def _folder_entries(root: Path) -> tuple[list[_Entry], list[SkippedFile]]:
    entries, skipped = [], []
    for current, dirs, names in os.walk(root):
        here = Path(current)
        rel_dir = here.relative_to(root).parts
        for d in list(dirs):
            if (here / d).is_symlink():
                skipped.append(SkippedFile("/".join((*rel_dir, d)), "symbolic link; skipped"))
                dirs.remove(d)
            elif _hidden([d]):
                skipped.append(SkippedFile("/".join((*rel_dir, d)),
                                           "hidden or system folder; skipped"))
                dirs.remove(d)
        dirs.sort()
        for n in sorted(names):
            parts = (*rel_dir, n)
            rel = "/".join(parts)
            if (here / n).is_symlink():
                skipped.append(SkippedFile(rel, "symbolic link; skipped"))
            elif _hidden([n]):
                skipped.append(SkippedFile(rel, "hidden or system file; skipped"))
            elif not (here / n).is_file():
                skipped.append(SkippedFile(rel, "not a regular file; skipped"))
            else:
                entries.append(_Entry(None, parts))
    return entries, skipped


# -------------------------------------------------------------------------------- layout
@dataclass
class _Layout:
    class_names: list[str]
    files: list[tuple[tuple[str, ...], str, str]]  # (parts after the wrapper, split, class)
    skipped: list[SkippedFile]
    prefix: tuple[str, ...] = ()  # the wrapper folders looked through


def _layout(entries: list[_Entry], label: str) -> _Layout:
    """Find split and class folders among the entries' paths."""
    paths = [e.parts for e in entries]
    prefix: tuple[str, ...] = ()
    # Look through wrapper folders (mydata/cats/...), but never through a split folder or a
    # folder holding files directly (that is a class).
    while paths:
        tops = {p[0] for p in paths if len(p) > 1}
        if len(tops) != 1 or any(len(p) == 1 for p in paths):
            break
        top = next(iter(tops))
        if top.lower() in SPLIT_ALIASES or all(len(p) == 2 for p in paths):
            break
        prefix += (top,)
        paths = [p[1:] for p in paths]
    for e in entries:
        e.parts = e.parts[len(prefix):]

    skipped, files = [], []
    tops = sorted({p[0] for p in paths if len(p) > 1})
    split_tops = [t for t in tops if t.lower() in SPLIT_ALIASES]
    if split_tops and len(split_tops) != len(tops):
        others = [t for t in tops if t not in split_tops]
        raise InvalidDatasetError(
            f"'{label}' mixes split folders ({', '.join(split_tops)}) with other folders "
            f"({', '.join(others[:5])}); put every class folder inside a split folder, or use "
            "no split folders at all.")
    if split_tops:
        names = [SPLIT_ALIASES[t.lower()] for t in split_tops]
        if len(set(names)) != len(names):
            raise InvalidDatasetError(
                f"'{label}' has two folders for the same split ({', '.join(split_tops)}); "
                "keep one of them.")
    depth = 2 if split_tops else 1
    for p in paths:
        shown = "/".join((*prefix, *p))
        if len(p) <= depth:
            where = "a split folder" if split_tops and len(p) == 2 else "the top folder"
            skipped.append(SkippedFile(shown, f"not inside a class folder (it is in {where}); "
                                              "skipped"))
            continue
        split = SPLIT_ALIASES[p[0].lower()] if split_tops else ALL
        files.append((p, split, p[depth - 1]))
    class_names = sorted({c for _, _, c in files})
    if not class_names:
        raise InvalidDatasetError(
            f"'{label}' has no class folders: put the images of each class in a folder named "
            "after the class (cats/…, dogs/…), optionally inside train/, validation/ and "
            "test/.")
    if len(class_names) < 2:
        raise InvalidDatasetError(
            f"'{label}' has only one class ('{class_names[0]}'); a classifier needs at least "
            "two class folders.")
    return _Layout(class_names, files, skipped, prefix)


# ------------------------------------------------------------------------------ extraction
class _ZipBomb(Exception):
    pass


def _extract(archive: zipfile.ZipFile, entries: list[_Entry], layout: _Layout, out: Path,
             limits: ZipLimits, label: str, callback: Progress | None
             ) -> tuple[list[tuple[str, str, str, bool]], list[SkippedFile]]:
    by_parts = {e.parts: e.info for e in entries}
    out_root = out.resolve()
    files, bad, total = [], [], 0
    for i, (parts, split, class_name) in enumerate(layout.files):
        info = by_parts[parts]
        shown = info.filename
        if info.file_size > limits.max_file_bytes:
            bad.append(SkippedFile(shown, f"{_size(info.file_size)}, larger than the "
                                          f"{_size(limits.max_file_bytes)} limit; skipped"))
            continue
        try:
            data = _read_member(archive, info, limits, total)
        except _ZipBomb as exc:
            raise InvalidDatasetError(
                f"'{label}' stopped unpacking at '{shown}': {exc}. It looks like a zip bomb "
                "and was not imported.") from None
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
            bad.append(SkippedFile(shown, f"damaged inside the zip ({exc}); skipped"))
            continue
        total += len(data)
        rel = "/".join(parts)
        try:
            native = _probe(_named_bytes(data, parts[-1]))
        except InvalidImageError as exc:
            bad.append(SkippedFile(shown, str(exc)))
            continue
        target = (out / rel)
        # The names were checked already; this is the last guard before writing.
        if not target.resolve().is_relative_to(out_root):
            bad.append(SkippedFile(shown, "unsafe path; skipped, nothing written"))
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as handle:
                handle.write(data)
        except OSError as exc:  # e.g. a file and a folder of the same name
            bad.append(SkippedFile(shown, f"could not be written ({exc.strerror}); skipped"))
            continue
        files.append((rel, split, class_name, native))
        report_each_percent(callback, i + 1, len(layout.files), "unpacking")
    return files, bad


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ZipLimits,
                 total_before: int) -> bytes:
    """The entry's bytes, counting them as they come: a lying header stops the read."""
    chunks, size = [], 0
    with archive.open(info) as src:
        while chunk := src.read(_COPY_CHUNK):
            size += len(chunk)
            if size > info.file_size:
                raise _ZipBomb("it holds more bytes than its header says")
            if size > limits.max_file_bytes:
                raise _ZipBomb(f"one file passes {_size(limits.max_file_bytes)}")
            if total_before + size > limits.max_total_bytes:
                raise _ZipBomb(f"the files pass {_size(limits.max_total_bytes)} in all")
            if _ratio_too_high(size, info.compress_size, limits):
                raise _ZipBomb(f"one file unpacks more than {limits.max_ratio:g} times its "
                               "stored size")
            chunks.append(chunk)
    return b"".join(chunks)


def _named_bytes(data: bytes, name: str) -> io.BytesIO:
    buffer = io.BytesIO(data)
    buffer.name = name  # load_image names the file in its messages
    return buffer


def _probe(source: Path | io.BytesIO) -> bool:
    """Check one image fully (size, header, decode); True when TensorFlow decodes it alone.

    Raises:
        InvalidImageError: not an image, damaged, truncated or too large.
    """
    load_image(source)  # the same checks and messages as everywhere else in the app
    opened = source if isinstance(source, Path) else io.BytesIO(source.getvalue())
    with Image.open(opened) as img:
        modes = _NATIVE_FORMATS.get(img.format or "")
        if not modes or img.mode not in modes or img.has_transparency_data:
            return False
        if img.format == "JPEG" and img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            return False
        return True


# ----------------------------------------------------------------------------- manifest
def _finish(work: Path, final: Path, label: str, source: str,
            files: list[tuple[str, str, str, bool]], skipped: list[SkippedFile], *,
            image_root: Path | None = None, replace: bool = False,
            class_order: list[str] | None = None) -> Dataset:
    """Write the manifest in ``work`` and move it to ``final``."""
    created = time.time()
    dataset = _build(label, source, files, skipped, image_root or final / IMAGES,
                     final, created, class_order)
    manifest = {
        "version": MANIFEST_VERSION, "name": label, "source": source, "created": created,
        "key": dataset.key, "class_names": list(dataset.class_names),
        "image_root": str(image_root) if image_root else None,
        "files": {"path": [f.path for f in dataset.files],
                  "split": [f.split for f in dataset.files],
                  "label": [f.label for f in dataset.files],
                  "native": [f.native for f in dataset.files]},
        "skipped": [[s.path, s.reason] for s in dataset.skipped],
    }
    (work / MANIFEST).write_text(json.dumps(manifest))
    if final.exists():
        if not replace:
            existing = _existing(final)
            shutil.rmtree(work, ignore_errors=True)
            if existing is not None:  # another session imported the same zip meanwhile
                return existing
            raise InvalidDatasetError(f"'{final.name}' exists but is damaged; delete it first.")
        # A rescan of a folder: keep the saved augmentation settings, replace the rest.
        augment = final / "augment.json"
        if augment.is_file():
            shutil.copy2(augment, work / augment.name)
        shutil.rmtree(final)
    os.replace(work, final)
    return open_dataset(final)


def _build(label: str, source: str, files: list[tuple[str, str, str, bool]],
           skipped: list[SkippedFile], image_root: Path, folder: Path | None,
           created: float, class_order: list[str] | None = None) -> Dataset:
    present = {c for _, _, c, _ in files}
    with_images = [c for c in class_order if c in present] if class_order else sorted(present)
    if len(with_images) < 2:
        found = f"only '{with_images[0]}' does" if with_images else "none does"
        raise InvalidDatasetError(
            f"'{label}' needs readable images in at least two class folders, but {found}; "
            "the skipped files are listed with the reason.")
    index = {c: i for i, c in enumerate(with_images)}
    rows = sorted((DatasetFile(p, s, index[c], n) for p, s, c, n in files),
                  key=lambda f: (_split_rank(f.split), f.path))
    key = hashlib.sha1(json.dumps([[f.path, f.split, f.label] for f in rows]
                                  + [str(image_root)] * (source == "folder")).encode())
    if source == "folder":  # files may change in place: the key follows sizes and times
        for f in rows:
            st_ = (image_root / f.path).stat()
            key.update(f"{st_.st_size}:{st_.st_mtime_ns}".encode())
    return Dataset(name=label, source=source, class_names=tuple(with_images), files=tuple(rows),
                   skipped=tuple(skipped), image_root=image_root, folder=folder,
                   key=key.hexdigest()[:16], created=created)


def _existing(folder: Path) -> Dataset | None:
    if not (folder / MANIFEST).is_file():
        return None
    try:
        return open_dataset(folder)
    except InvalidDatasetError:
        shutil.rmtree(folder, ignore_errors=True)  # a damaged earlier import: start again
        return None


# ------------------------------------------------------------------------------- helpers
def _split_rank(split: str) -> int:
    return (*SPLIT_ORDER, ALL).index(split)


def _slug(text: str, limit: int = 40) -> str:
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return clean[:limit] or "dataset"


def _zip_name(file: Any) -> str:
    raw = os.fspath(file) if isinstance(file, (str, os.PathLike)) else getattr(file, "name", "")
    base = PurePosixPath(str(raw).replace("\\", "/")).name if raw else ""
    return re.sub(r"\.zip$", "", base, flags=re.IGNORECASE) or "data set"


def _rewound(file: Any) -> Any:
    if hasattr(file, "seek"):
        file.seek(0)
    return file


def _content_hash(file: Any) -> str:
    digest = hashlib.sha1()
    if isinstance(file, (str, os.PathLike)):
        try:
            with open(file, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        except OSError as exc:
            raise InvalidDatasetError(f"Cannot read the zip '{file}' ({exc}).") from exc
        return digest.hexdigest()
    _rewound(file)
    while chunk := file.read(1 << 20):
        digest.update(chunk)
    _rewound(file)
    return digest.hexdigest()


def _size(n_bytes: int) -> str:
    if n_bytes >= 2**30:
        return f"{n_bytes / 2**30:.1f} GB"
    if n_bytes >= 2**20:
        return f"{n_bytes / 2**20:.1f} MB"
    return f"{n_bytes:,} bytes"
