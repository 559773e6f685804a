"""The sanity report of a data set: what a practitioner checks before training on it.

One pass over the files reads and decodes every image once and keeps only small things: a
content hash, a 32x32 thumbnail (for the perceptual hash, the per-class mean image and the
near-duplicate check), the size, mode, format and file size. Then:

- counts per split and class, and the class imbalance (largest / smallest class);
- files that could not be used, with the reason (the import's skipped files plus any image
  that no longer decodes);
- exact duplicates (same bytes) and near duplicates (perceptual hash within a few bits, then a
  pixel check), each pair put in one scope: across splits (leakage, e.g. train vs test), else
  across classes (conflicting labels), else within a class;
- image sizes, aspect ratios, colour modes and file sizes; tiny images and grayscale/colour
  mixes flagged;
- a few sample thumbnails per class and the per-class mean image.

The report is cached in the data set's folder (``report/``) and reused while the data set's
``key`` is unchanged, so showing it again is instant.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
import uuid
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
import numpy as np
from PIL import Image, ImageOps

from engine.data import duplicates
from engine.data.dataset import Dataset, DatasetFile, SkippedFile
from engine.errors import InvalidImageError
from engine.images import MAX_BYTES, MAX_PIXELS, load_image
from engine.progress import Progress, report, report_each_percent

REPORT_VERSION = 1
REPORT_DIR = "report"

THUMB = duplicates.HASH_SIDE  # 32x32 thumbnails for hashes and mean images
SAMPLE_SIDE = 96  # sample thumbnails fit in 96x96
SAMPLES_PER_CLASS = 8
#: Hash bits two images may differ by to be near duplicate candidates (the search is exact).
NEAR_BITS = 5
#: How alike candidates must look (``duplicates.similarity``) to be reported as near duplicates.
NEAR_SIMILARITY = 0.9
#: Images whose shorter side is below this many pixels are flagged as tiny.
TINY_SIDE = 32
#: A largest-to-smallest class ratio at or above this is flagged.
IMBALANCE_WARNING = 1.5
#: Example pairs kept per (exact / near, scope); the counts are always complete.
MAX_EXAMPLE_PAIRS = 200

SCOPES = ("across splits", "across classes", "within class")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_CHUNK = 512


@dataclass(frozen=True)
class DuplicatePair:
    """Two files that hold the same (``exact``) or nearly the same image.

    Attributes:
        a, b: paths relative to the data set's image root (``a`` sorts first).
        a_split, a_class, b_split, b_class: where each one is.
        scope: ``"across splits"`` (leakage), ``"across classes"`` (conflicting labels) or
            ``"within class"``.
        exact: True for the same bytes.
        distance: perceptual-hash bits that differ (0 for exact duplicates).
    """

    a: str
    b: str
    a_split: str
    a_class: str
    b_split: str
    b_class: str
    scope: str
    exact: bool
    distance: int


@dataclass
class DatasetReport:
    """What ``inspect`` found. Arrays (thumbnails, mean images) sit in ``arrays``.

    Attributes:
        dataset_key: the ``Dataset.key`` it describes.
        class_names, splits: as in the data set.
        counts: ``{split: {class: readable images}}``.
        imbalance_ratio: largest / smallest class over all splits (``inf`` when a class has no
            readable image).
        unreadable: files not used, with the reason (import and report together).
        exact_counts, near_counts: ``{scope: number of pairs}`` over every pair.
        pairs: example pairs, at most ``MAX_EXAMPLE_PAIRS`` per kind and scope.
        paths, widths, heights, file_bytes: one entry per readable image (sizes as stored,
            before EXIF rotation).
        modes, formats: how many images have each Pillow mode / file format.
        tiny: paths of images whose shorter side is below ``TINY_SIDE``.
        grayscale: paths of images without colour (grey modes, or RGB with equal channels).
        samples: ``{class: [path, ...]}``; their thumbnails are ``arrays["sample_<i>"]`` in the
            order of ``sample_paths``.
        warnings: plain sentences summing up what needs attention.
        seconds: how long computing took.
        arrays: ``mean_images`` ``(C, 32, 32, 3)`` uint8 and one ``sample_<i>`` per sample
            thumbnail (uint8 RGB, at most 96x96).
    """

    dataset_key: str
    class_names: list[str]
    splits: list[str]
    counts: dict[str, dict[str, int]]
    imbalance_ratio: float
    unreadable: list[SkippedFile]
    exact_counts: dict[str, int]
    near_counts: dict[str, int]
    pairs: list[DuplicatePair]
    paths: list[str]
    widths: list[int]
    heights: list[int]
    file_bytes: list[int]
    modes: dict[str, int]
    formats: dict[str, int]
    tiny: list[str]
    grayscale: list[str]
    samples: dict[str, list[str]]
    warnings: list[str]
    seconds: float
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_images(self) -> int:
        return len(self.paths)

    @property
    def mean_images(self) -> np.ndarray:
        """``(C, 32, 32, 3)`` uint8: the average of each class's thumbnails."""
        return self.arrays["mean_images"]

    @property
    def sample_paths(self) -> list[str]:
        return [p for paths in self.samples.values() for p in paths]

    def sample_thumbnails(self, class_name: str) -> list[tuple[str, np.ndarray]]:
        """``[(path, (h, w, 3) uint8 thumbnail)]`` of one class's samples."""
        index = {p: i for i, p in enumerate(self.sample_paths)}
        return [(p, self.arrays[f"sample_{index[p]}"]) for p in self.samples.get(class_name, [])]

    def pairs_in(self, scope: str, exact: bool | None = None) -> list[DuplicatePair]:
        """The example pairs of one scope (``exact=None``: exact and near)."""
        return [p for p in self.pairs if p.scope == scope and (exact is None or p.exact == exact)]

    @property
    def leaks(self) -> int:
        """Pairs shared between splits, exact and near."""
        return self.exact_counts["across splits"] + self.near_counts["across splits"]


# ----------------------------------------------------------------------------------- inspect
def inspect(dataset: Dataset, callback: Progress | None = None, *,
            use_cache: bool = True) -> DatasetReport:
    """Compute (or load from the cache) the sanity report of a data set.

    Args:
        dataset: an imported data set.
        callback: ``callback(done, total, stage)``; ``stage`` is ``"reading images"``, then
            ``"near duplicates"``, then ``"done"``.
        use_cache: reuse ``<dataset.folder>/report/`` when it describes this ``dataset.key``.

    Returns:
        The report. Files that no longer decode are listed in ``unreadable``, never raised.
    """
    if use_cache and dataset.folder is not None:
        cached = load_report(dataset)
        if cached is not None:
            report(callback, 1, 1, "done")
            return cached
    found = _compute(dataset, callback)
    if dataset.folder is not None:
        _save(found, dataset.folder / REPORT_DIR)
    report(callback, 1, 1, "done")
    return found


def load_report(dataset: Dataset) -> DatasetReport | None:
    """The cached report of ``dataset`` when it is up to date, else None."""
    if dataset.folder is None:
        return None
    folder = dataset.folder / REPORT_DIR
    try:
        data = json.loads((folder / "report.json").read_text())
        if data.pop("version") != REPORT_VERSION or data["dataset_key"] != dataset.key:
            return None
        with np.load(folder / "arrays.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, KeyError):
        return None
    data["unreadable"] = [SkippedFile(**s) for s in data["unreadable"]]
    data["pairs"] = [DuplicatePair(**p) for p in data["pairs"]]
    data["imbalance_ratio"] = float(data["imbalance_ratio"])
    return DatasetReport(**data, arrays=arrays)


def _save(report: DatasetReport, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = asdict(report)
    data.pop("arrays")
    data["version"] = REPORT_VERSION
    data["imbalance_ratio"] = report.imbalance_ratio if math.isfinite(report.imbalance_ratio) \
        else "inf"
    # Write aside, then rename: a reader never sees half a report, and two sessions writing
    # the same report at once do not trip over each other's files.
    token = uuid.uuid4().hex
    tmp_json, tmp_npz = folder / f".report-{token}.json", folder / f".arrays-{token}.npz"
    np.savez(tmp_npz, **report.arrays)
    tmp_json.write_text(json.dumps(data))
    os.replace(tmp_npz, folder / "arrays.npz")
    os.replace(tmp_json, folder / "report.json")


# ---------------------------------------------------------------------------------- one pass
class _Scan:
    """What the single pass over the files keeps (parallel lists over the readable files).

    Thumbnails are batched: every ``_CHUNK`` images, their hashes, grey and colour thumbnails,
    grey flags and class sums are computed with NumPy at once.
    """

    def __init__(self, n_classes: int):
        self.files: list[DatasetFile] = []
        self.digests: list[bytes] = []
        self.widths: list[int] = []
        self.heights: list[int] = []
        self.file_bytes: list[int] = []
        self.grey_flags: list[bool] = []
        self.modes: Counter = Counter()
        self.formats: Counter = Counter()
        self.hashes: list[np.ndarray] = []
        self.thumbs: list[np.ndarray] = []  # (k, 32, 32) uint8 grey chunks
        self.colours: list[np.ndarray] = []  # (k, 16, 16, 3) uint8 chunks
        self.unreadable: list[SkippedFile] = []
        self.samples: dict[int, np.ndarray] = {}
        self.sums = np.zeros((n_classes, THUMB, THUMB, 3), np.float64)
        self._rgb: list[np.ndarray] = []
        self._labels: list[int] = []
        self._grey_modes: list[bool] = []

    def add(self, file: DatasetFile, path: Path, want_sample: bool) -> None:
        try:
            digest, size, mode, fmt, n_bytes, thumb, sample = _read(path, want_sample)
        except InvalidImageError as exc:
            self.unreadable.append(SkippedFile(file.path, str(exc)))
            return
        self.files.append(file)
        self.digests.append(digest)
        self.widths.append(size[0])
        self.heights.append(size[1])
        self.file_bytes.append(n_bytes)
        self.modes[mode] += 1
        self.formats[fmt] += 1
        if sample is not None:
            self.samples[len(self.files) - 1] = sample
        self._rgb.append(thumb)
        self._labels.append(file.label)
        self._grey_modes.append(mode in _GREY_MODES)
        if len(self._rgb) == _CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._rgb:
            return
        rgb = np.stack(self._rgb)
        k = len(rgb)
        labels = np.array(self._labels)
        for label in np.unique(labels):  # np.add.at is many times slower than this
            self.sums[label] += rgb[labels == label].sum(axis=0, dtype=np.float64)
        # NumPy reductions over a last axis of 3 are slow: the channels are combined by hand.
        wide = rgb.astype(np.int16)
        r, g, b = wide[..., 0], wide[..., 1], wide[..., 2]
        grey = r * np.float32(0.299) + g * np.float32(0.587) + b * np.float32(0.114)
        self.hashes.append(duplicates.phash(grey))
        self.thumbs.append(np.rint(grey).astype(np.uint8))
        rows = wide[:, 0::2] + wide[:, 1::2]  # 2x2 means: the 16x16 colour thumbnail
        self.colours.append(((rows[:, :, 0::2] + rows[:, :, 1::2] + 2) // 4).astype(np.uint8))
        # Grey: a grey mode, or RGB whose channels agree within 3 levels everywhere.
        spread = np.maximum(np.abs(r - g), np.abs(g - b)).reshape(k, -1).max(axis=1)
        self.grey_flags.extend((np.array(self._grey_modes) | (spread <= 3)).tolist())
        self._rgb.clear()
        self._labels.clear()
        self._grey_modes.clear()


def _compute(dataset: Dataset, callback: Progress | None) -> DatasetReport:
    start = time.perf_counter()
    samples = _choose_samples(dataset)
    scan = _Scan(len(dataset.class_names))
    total = len(dataset.files)
    with warnings.catch_warnings():
        # Pillow only warns between its pixel limit and twice it: make that an error (the
        # image is listed as unreadable) without touching the app's global warning filters.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for done, file in enumerate(dataset.files, 1):
            scan.add(file, dataset.path_of(file), file.path in samples)
            report_each_percent(callback, done, total, "reading images")
    scan.flush()
    report(callback, 0, 1, "near duplicates")
    return _assemble(dataset, scan, start)


def _read(path: Path, want_sample: bool):
    """Read and decode one file: (digest, (w, h), mode, format, bytes, 32x32 RGB, sample)."""
    name = path.name
    try:
        with open(path, "rb") as handle:
            n_bytes = os.fstat(handle.fileno()).st_size
            if n_bytes > MAX_BYTES:
                load_image(path)  # raises the size message
            # read(size) would allocate the size up front: read what the file holds.
            data = handle.read()
    except OSError as exc:
        raise InvalidImageError(f"'{name}' cannot be read ({exc.strerror}).") from exc
    n_bytes = len(data)
    digest = hashlib.blake2b(data, digest_size=16).digest()
    try:
        with Image.open(io.BytesIO(data)) as img:
            size, mode, fmt = img.size, img.mode, img.format or "?"
            if size[0] * size[1] > MAX_PIXELS:
                raise InvalidImageError(f"'{name}' has more than {MAX_PIXELS:,} pixels.")
            if img.format == "JPEG" and min(size) > 4 * SAMPLE_SIDE:
                img.draft("RGB", (2 * SAMPLE_SIDE, 2 * SAMPLE_SIDE))  # decode at 1/2..1/8
            img.load()
            if fmt == "JPEG":
                img = ImageOps.exif_transpose(img)
            if img.mode in ("RGB", "L") or (img.mode == "P"
                                             and not img.has_transparency_data):
                rgb = img.convert("RGB") if img.mode != "RGB" else img
            else:  # transparency, 16-bit, CMYK...: exactly as everywhere else in the app
                rgb = Image.fromarray(load_image(data))
            thumb = np.asarray(rgb.resize((THUMB, THUMB), Image.Resampling.BILINEAR))
            sample = None
            if want_sample:
                copy = rgb.copy()
                copy.thumbnail((SAMPLE_SIDE, SAMPLE_SIDE), Image.Resampling.BILINEAR)
                sample = np.asarray(copy.convert("RGB"))
    except InvalidImageError:
        raise
    except Exception as exc:  # decoders of untrusted files fail in many ways
        try:
            load_image(data)
        except InvalidImageError as reason:
            raise InvalidImageError(str(reason).replace("The file", f"'{name}'", 1)) from exc
        raise InvalidImageError(f"'{name}' could not be decoded ({exc}).") from exc
    return digest, size, mode, fmt, n_bytes, thumb, sample


def _choose_samples(dataset: Dataset) -> set[str]:
    by_class = defaultdict(list)
    for f in dataset.files:
        by_class[f.label].append(f.path)
    rng = np.random.default_rng(0)
    chosen = set()
    for paths in by_class.values():
        take = rng.permutation(len(paths))[:SAMPLES_PER_CLASS]
        chosen.update(paths[i] for i in sorted(take))
    return chosen


# -------------------------------------------------------------------------------- assemble
def _assemble(dataset: Dataset, scan: _Scan, start: float) -> DatasetReport:
    names = list(dataset.class_names)
    splits = dataset.splits
    counts = {s: dict.fromkeys(names, 0) for s in splits}
    for f in scan.files:
        counts[f.split][names[f.label]] += 1
    per_class = [sum(counts[s][c] for s in splits) for c in names]
    ratio = max(per_class) / min(per_class) if min(per_class) > 0 else math.inf
    mean_images = np.rint(scan.sums / np.maximum(per_class, 1)[:, None, None, None])
    mean_images = mean_images.astype(np.uint8)

    exact_counts, near_counts, pairs = _duplicates(dataset, scan)

    tiny = [f.path for f, w, h in zip(scan.files, scan.widths, scan.heights)
            if min(w, h) < TINY_SIDE]
    grey = [f.path for f, g in zip(scan.files, scan.grey_flags) if g]
    samples: dict[str, list[str]] = {c: [] for c in names}
    arrays = {"mean_images": mean_images}
    for i in sorted(scan.samples, key=lambda i: (scan.files[i].label, scan.files[i].path)):
        samples[names[scan.files[i].label]].append(scan.files[i].path)
    order = [p for paths in samples.values() for p in paths]
    by_path = {scan.files[i].path: scan.samples[i] for i in scan.samples}
    for k, p in enumerate(order):
        arrays[f"sample_{k}"] = by_path[p]

    report = DatasetReport(
        dataset_key=dataset.key, class_names=names, splits=splits, counts=counts,
        imbalance_ratio=ratio, unreadable=list(dataset.skipped) + scan.unreadable,
        exact_counts=exact_counts, near_counts=near_counts, pairs=pairs,
        paths=[f.path for f in scan.files], widths=scan.widths, heights=scan.heights,
        file_bytes=scan.file_bytes, modes=dict(scan.modes), formats=dict(scan.formats),
        tiny=tiny, grayscale=grey, samples=samples, warnings=[], seconds=0.0, arrays=arrays)
    report.warnings = _warnings(report, per_class)
    report.seconds = round(time.perf_counter() - start, 3)
    return report


def _duplicates(dataset: Dataset, scan: _Scan
                ) -> tuple[dict[str, int], dict[str, int], list[DuplicatePair]]:
    """Exact groups by content hash, then near pairs among one file per content."""
    names = dataset.class_names
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, d in enumerate(scan.digests):
        groups[d].append(i)
    exact_counts = dict.fromkeys(SCOPES, 0)
    near_counts = dict.fromkeys(SCOPES, 0)
    examples: dict[tuple[bool, str], list[DuplicatePair]] = defaultdict(list)

    def where(i):
        f = scan.files[i]
        return f.split, f.label

    def add_examples(members_a, members_b, exact, distance):
        same_group = members_a == members_b
        for i in members_a:
            for j in members_b:
                if same_group and j <= i:
                    continue
                (sa, la), (sb, lb) = where(i), where(j)
                scope = _scope(sa, la, sb, lb)
                bucket = examples[(exact, scope)]
                if len(bucket) < MAX_EXAMPLE_PAIRS:
                    fa, fb = sorted((scan.files[i], scan.files[j]), key=lambda f: f.path)
                    bucket.append(DuplicatePair(
                        fa.path, fb.path, fa.split, names[fa.label], fb.split, names[fb.label],
                        scope, exact, distance))

    reps = []
    for members in groups.values():
        reps.append(members)
        if len(members) > 1:
            for scope, n in _scope_counts([where(i) for i in members]).items():
                exact_counts[scope] += n
            add_examples(members[:50], members[:50], True, 0)

    if scan.hashes:
        hashes = np.concatenate(scan.hashes)
        thumbs = np.concatenate(scan.thumbs)
        colours = np.concatenate(scan.colours)
        rep_index = np.array([m[0] for m in reps])
        candidates, distance = duplicates.near_pairs(hashes[rep_index], NEAR_BITS)
        if len(candidates):
            a, b = rep_index[candidates[:, 0]], rep_index[candidates[:, 1]]
            alike = duplicates.similarity(thumbs[a], thumbs[b], colours[a], colours[b]) \
                >= NEAR_SIMILARITY
            for (ra, rb), d in zip(candidates[alike], distance[alike]):
                ga, gb = reps[ra], reps[rb]
                for scope, n in _scope_counts([where(i) for i in ga],
                                              [where(i) for i in gb]).items():
                    near_counts[scope] += n
                add_examples(ga[:10], gb[:10], False, int(d))
    pairs = [p for key in sorted(examples, key=lambda k: (not k[0], SCOPES.index(k[1])))
             for p in sorted(examples[key], key=lambda p: (p.distance, p.a, p.b))]
    return exact_counts, near_counts, pairs


def _scope(split_a: str, label_a: int, split_b: str, label_b: int) -> str:
    if split_a != split_b:
        return "across splits"
    if label_a != label_b:
        return "across classes"
    return "within class"


def _scope_counts(group_a: list[tuple[str, int]], group_b: list[tuple[str, int]] | None = None
                  ) -> dict[str, int]:
    """Pairs by scope, counted without listing them: within one group (``group_b`` None), or
    every pair with one member in each group."""
    split_a, cell_a = Counter(s for s, _ in group_a), Counter(group_a)
    if group_b is None:
        total = _choose2(len(group_a))
        same_split = sum(_choose2(n) for n in split_a.values())
        same_cell = sum(_choose2(n) for n in cell_a.values())
    else:
        split_b, cell_b = Counter(s for s, _ in group_b), Counter(group_b)
        total = len(group_a) * len(group_b)
        same_split = sum(n * split_b[s] for s, n in split_a.items())
        same_cell = sum(n * cell_b[c] for c, n in cell_a.items())
    return {"across splits": total - same_split, "across classes": same_split - same_cell,
            "within class": same_cell}


def _choose2(n: int) -> int:
    return n * (n - 1) // 2


def _warnings(report: DatasetReport, per_class: list[int]) -> list[str]:
    out = []
    names = report.class_names
    if report.imbalance_ratio >= IMBALANCE_WARNING:
        big = names[int(np.argmax(per_class))]
        small = names[int(np.argmin(per_class))]
        ratio = "no images" if not math.isfinite(report.imbalance_ratio) else \
            f"{report.imbalance_ratio:.1f} times fewer images"
        out.append(f"The classes are imbalanced: '{small}' has {ratio} than '{big}' "
                   f"({min(per_class)} vs {max(per_class)}). Consider more data, class weights "
                   "or resampling.")
    for split in report.splits:
        empty = [c for c, n in report.counts[split].items() if n == 0]
        if empty and split != "all":
            out.append(f"The {split} split has no images of: {', '.join(empty)}.")
    if report.unreadable:
        out.append(f"{len(report.unreadable)} file(s) were not used (listed with the reason).")
    leaks = report.leaks
    if leaks:
        out.append(f"{leaks} pair(s) of identical or nearly identical images are in different "
                   "splits: the evaluation would partly test on training data.")
    conflicts = report.exact_counts["across classes"] + report.near_counts["across classes"]
    if conflicts:
        out.append(f"{conflicts} pair(s) of identical or nearly identical images have different "
                   "labels.")
    within = report.exact_counts["within class"] + report.near_counts["within class"]
    if within:
        out.append(f"{within} pair(s) of duplicate images within a class (they weigh twice in "
                   "training).")
    if report.tiny:
        out.append(f"{len(report.tiny)} image(s) are tiny (shorter side under {TINY_SIDE} "
                   "pixels).")
    n_grey = len(report.grayscale)
    if 0 < n_grey < report.n_images:
        out.append(f"Grayscale and colour images are mixed: {n_grey} grayscale, "
                   f"{report.n_images - n_grey} colour. The model sees grayscale ones as RGB "
                   "with three equal channels.")
    return out
