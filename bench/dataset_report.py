"""Benchmark: the full data set sanity report vs one plain pass that reads and decodes every file.

Generates a data set of 64x64 shape scenes (train / validation / test) with planted exact and
near-duplicate leaks, then times, in the same run and on warm file caches:

- ``plain``: ``np.asarray(Image.open(path).convert("RGB"))`` for every file, nothing else;
- ``report``: ``engine.data.inspect`` (decode, hashes, statistics, duplicates, samples, mean
  images), without its cache;
- the near-duplicate search alone (multi-index pHash search + pixel check) on the first 5,000
  and on all images: it should grow close to linearly.

Goals: report / plain <= 2.0; search time at 20k / at 5k <= 5 (all pairs would be 16).
Prints JSON. The two passes run in turns (medians of wall and of CPU time): on a machine whose
cores are shared with other work, the CPU-time ratio is the steadier one.

    python bench/dataset_report.py [--images 20000] [--repeats 3] [--keep /path]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402

from bench.common import emit, parser  # noqa: E402
from engine.data import import_folder, inspect  # noqa: E402
from engine.data import duplicates  # noqa: E402
from engine.data.report import NEAR_BITS, NEAR_SIMILARITY, THUMB  # noqa: E402
from engine.data.shapes import CLASS_NAMES, make_shape_image  # noqa: E402

PLANTED = 50  # exact copies train -> test, and near copies train -> validation


def build(root: Path, n: int, size: int) -> dict:
    """Write ``n`` images as train/validation/test class folders, planted leaks included."""
    scenes = n - 2 * PLANTED  # the planted copies complete the count
    train = []
    for i in range(scenes):
        share = i / scenes
        split = "train" if share < 0.7 else "validation" if share < 0.85 else "test"
        label = i % len(CLASS_NAMES)
        path = root / split / CLASS_NAMES[label] / f"{i:06d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_shape_image(label, size=size, seed=(7, i))[0]).save(
            path, compress_level=1)
        if split == "train":
            train.append(path)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(train), 2 * PLANTED, replace=False)
    for k, index in enumerate(picks):
        source = train[index]
        if k < PLANTED:  # exact leak into test, same class
            shutil.copy(source, root / "test" / source.parent.name / f"leak_{source.name}")
        else:  # near leak into validation: brighter, smaller, JPEG
            image = Image.open(source).convert("RGB")
            image = ImageEnhance.Brightness(image).enhance(1.08).resize((56, 56))
            image.save(root / "validation" / source.parent.name / f"near_{source.stem}.jpg",
                       quality=90)
    return {"exact_leaks": PLANTED, "near_leaks": PLANTED}


def plain_pass(paths: list[Path]) -> None:
    for path in paths:
        np.asarray(Image.open(path).convert("RGB"))


def _interleaved(fns: dict, repeats: int) -> dict:
    """Median wall and CPU seconds of each function, run in turns so that both see the same
    load from whatever else shares the machine."""
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}


def thumbnails(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """The report's thumbnails: ``(N, 32, 32)`` grey and ``(N, 16, 16, 3)`` colour."""
    rgb = np.empty((len(paths), THUMB, THUMB, 3), np.uint8)
    for i, path in enumerate(paths):
        rgb[i] = Image.open(path).convert("RGB").resize((THUMB, THUMB), Image.Resampling.BILINEAR)
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    colour = rgb.reshape(len(rgb), THUMB // 2, 2, THUMB // 2, 2, 3).mean(axis=(2, 4))
    return grey, colour


def near_search(hashes: np.ndarray, grey: np.ndarray, colour: np.ndarray) -> int:
    """The report's near-duplicate step: candidates from the hashes, then the pixel check."""
    pairs, _ = duplicates.near_pairs(hashes, NEAR_BITS)
    if not len(pairs):
        return 0
    a, b = pairs[:, 0], pairs[:, 1]
    return int((duplicates.similarity(grey[a], grey[b], colour[a], colour[b])
                >= NEAR_SIMILARITY).sum())


def run(n: int, size: int, repeats: int, keep: Path | None) -> dict:
    work = keep or Path(tempfile.mkdtemp(prefix="dataset_bench_"))
    try:
        root = work / "images"
        start = time.perf_counter()
        planted = build(root, n, size) if not root.exists() else {"exact_leaks": PLANTED,
                                                                   "near_leaks": PLANTED}
        dataset = import_folder(root, work / "data")
        setup_s = time.perf_counter() - start
        paths = [dataset.path_of(f) for f in dataset.files]
        plain_pass(paths)  # warm the file cache for both contenders

        times = _interleaved({"plain": lambda: plain_pass(paths),
                              "report": lambda: inspect(dataset, use_cache=False)}, repeats)
        (plain, plain_cpu), (report_s, report_cpu) = times["plain"], times["report"]
        report = inspect(dataset, use_cache=False)

        grey, colour = thumbnails(paths)
        hashes = duplicates.phash(grey)
        small = 5000
        search = _interleaved({
            "5k": lambda: near_search(hashes[:small], grey[:small], colour[:small]),
            "full": lambda: near_search(hashes, grey, colour)}, max(repeats, 9))
        search_small, search_full = search["5k"][0], search["full"][0]
        all_pairs_full = len(hashes) * (len(hashes) - 1) // 2
        candidates = len(duplicates.near_pairs(hashes, NEAR_BITS)[0])
        return {
            "images": len(paths), "size": [size, size], "repeats": repeats,
            "setup_s (generate + import, not timed)": round(setup_s, 1),
            "plain_read_decode_s": round(plain, 3),
            "report_s": round(report_s, 3),
            "ratio_report_over_plain": round(report_s / plain, 3), "goal_report": "<= 2.0",
            "plain_cpu_s": round(plain_cpu, 3), "report_cpu_s": round(report_cpu, 3),
            "ratio_report_over_plain_cpu": round(report_cpu / plain_cpu, 3),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "near_search_5k_s": round(search_small, 4),
            "near_search_full_s": round(search_full, 4),
            "ratio_search_full_over_5k": round(search_full / search_small, 2),
            "goal_search": "<= 5 (linear 4, all pairs 16)",
            "candidate_pairs_full": candidates, "all_pairs_full": all_pairs_full,
            "planted": planted,
            "found": {"exact": report.exact_counts, "near": report.near_counts},
        }
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    options = parser(__doc__, images=20_000, repeats=3, keep=True)
    options.add_argument("--size", type=int, default=64)
    args = options.parse_args()
    emit("dataset_report", result=run(args.images, args.size, args.repeats, args.keep))


if __name__ == "__main__":
    main()
