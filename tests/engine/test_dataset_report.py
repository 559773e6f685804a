"""The sanity report: planted duplicates and leaks with the counts it must find, statistics,
unreadable files, the cache, and the near-duplicate search against brute force."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from engine.data import import_folder, import_zip, inspect, load_report
from engine.data.duplicates import hamming, near_pairs, phash, similarity
from engine.data.report import IMBALANCE_WARNING, NEAR_BITS, SAMPLES_PER_CLASS, TINY_SIDE
from tests.engine.dataset_helpers import make_zip, near_copy_jpeg, png, shape_png, write_tree

NONE = {"across splits": 0, "across classes": 0, "within class": 0}


@pytest.fixture
def planted(tmp_path):
    """train/test x classes a, b, c of distinct scenes, with one planted pair per case."""
    files, i = {}, 0
    for split, n in (("train", 6), ("test", 2)):
        for cls in "abc":
            for k in range(n):
                files[f"{split}/{cls}/{k}.png"] = shape_png(i)
                i += 1
    files["train/a/0_copy.png"] = files["train/a/0.png"]  # exact, within class
    files["train/b/from_a.png"] = files["train/a/1.png"]  # exact, across classes
    files["test/b/leak.png"] = files["train/b/2.png"]  # exact, across splits
    files["test/c/near_leak.jpg"] = near_copy_jpeg(files["train/c/3.png"])  # near, across splits
    files["train/a/near.jpg"] = near_copy_jpeg(files["train/a/4.png"])  # near, within class
    files["train/c/near_conflict.jpg"] = near_copy_jpeg(files["train/b/5.png"])  # near, classes
    root = write_tree(tmp_path / "planted", files)
    return import_folder(root, tmp_path / "data")


def test_planted_duplicates_and_leaks_are_found_with_their_counts(planted):
    report = inspect(planted)
    assert report.exact_counts == {"across splits": 1, "across classes": 1, "within class": 1}
    assert report.near_counts == {"across splits": 1, "across classes": 1, "within class": 1}
    pairs = {(p.a, p.b, p.exact, p.scope) for p in report.pairs}
    assert pairs == {
        ("train/a/0.png", "train/a/0_copy.png", True, "within class"),
        ("train/a/1.png", "train/b/from_a.png", True, "across classes"),
        ("test/b/leak.png", "train/b/2.png", True, "across splits"),
        ("test/c/near_leak.jpg", "train/c/3.png", False, "across splits"),
        ("train/a/4.png", "train/a/near.jpg", False, "within class"),
        ("train/b/5.png", "train/c/near_conflict.jpg", False, "across classes"),
    }
    assert report.leaks == 2
    assert any("different splits" in w for w in report.warnings)
    assert any("different labels" in w for w in report.warnings)


def test_distinct_images_have_no_duplicates(tmp_path):
    files = {f"{c}/{k}.png": shape_png(10 * k + ord(c)) for c in "xy" for k in range(30)}
    report = inspect(import_folder(write_tree(tmp_path / "d", files), tmp_path / "data"))
    assert report.exact_counts == NONE and report.near_counts == NONE and report.pairs == []


def test_a_group_of_copies_counts_every_pair_once(tmp_path):
    same = shape_png(1)
    files = {"train/a/1.png": same, "train/a/2.png": same, "train/b/3.png": same,
             "test/a/4.png": same, "train/b/x.png": shape_png(2), "test/b/y.png": shape_png(3)}
    report = inspect(import_folder(write_tree(tmp_path / "d", files), tmp_path / "data"))
    # 4 copies = 6 pairs: train a-a (within class), train a-b twice (across classes), and each
    # train copy with the test copy (across splits, 3).
    assert report.exact_counts == {"across splits": 3, "across classes": 2, "within class": 1}
    assert len([p for p in report.pairs if p.exact]) == 6
    assert report.near_counts == NONE  # copies are exact, not also near


def test_counts_imbalance_sizes_modes_and_flags(tmp_path):
    grey = io.BytesIO()
    Image.new("L", (40, 40), 128).save(grey, "PNG")
    files = {"a/1.png": png((255, 0, 0), (64, 48)), "a/2.png": png((255, 0, 0), (64, 48)),
             "a/3.png": png((0, 255, 0), (64, 48)), "a/4.png": png((0, 0, 255), (8, 8)),
             "b/1.png": png((10, 20, 30), (100, 50)), "b/2.png": grey.getvalue()}
    root = write_tree(tmp_path / "d", files)
    report = inspect(import_folder(root, tmp_path / "data"))
    assert report.counts == {"all": {"a": 4, "b": 2}}
    assert report.imbalance_ratio == 2.0 >= IMBALANCE_WARNING
    assert any("imbalanced" in w and "'b'" in w for w in report.warnings)
    size = dict(zip(report.paths, zip(report.widths, report.heights)))
    assert size["a/4.png"] == (8, 8) and size["b/1.png"] == (100, 50)
    assert dict(zip(report.paths, report.file_bytes))["b/2.png"] == len(grey.getvalue())
    assert report.modes == {"RGB": 5, "L": 1} and report.formats == {"PNG": 6}
    assert report.tiny == ["a/4.png"] and 8 < TINY_SIDE
    assert report.grayscale == ["b/2.png"]
    assert any("Grayscale and colour" in w for w in report.warnings)
    # Mean image of class a: the average of its colours, by hand.
    mean_a = report.mean_images[0].reshape(-1, 3).mean(axis=0)
    assert np.allclose(mean_a, [(255 + 255 + 0 + 0) / 4, 255 / 4, 255 / 4], atol=1)
    assert np.allclose(report.mean_images[1], [(10 + 128) / 2, (20 + 128) / 2, (30 + 128) / 2],
                       atol=1)
    # Exact duplicates a/1 and a/2 (same colour, same size).
    assert report.exact_counts["within class"] == 1


def test_samples_per_class_with_thumbnails(tmp_path):
    files = {f"{c}/{k}.png": shape_png(k + 50 * (c == "y"), size=200) for c in "xy"
             for k in range(SAMPLES_PER_CLASS + 3)}
    report = inspect(import_folder(write_tree(tmp_path / "d", files), tmp_path / "data"))
    for c in "xy":
        thumbs = report.sample_thumbnails(c)
        assert len(thumbs) == SAMPLES_PER_CLASS
        assert all(p.startswith(f"{c}/") for p, _ in thumbs)
        assert all(t.shape == (96, 96, 3) and t.dtype == np.uint8 for _, t in thumbs)


def test_unreadable_files_are_listed_never_raised(tmp_path):
    files = {"a/1.png": shape_png(1), "a/2.png": shape_png(2), "b/1.png": shape_png(3),
             "b/notes.txt": b"hello"}
    root = write_tree(tmp_path / "d", files)
    ds = import_folder(root, tmp_path / "data")
    (root / "a" / "2.png").write_bytes(files["a/2.png"][:100])  # damaged after the import
    report = inspect(ds)
    reasons = {s.path: s.reason for s in report.unreadable}
    assert set(reasons) == {"b/notes.txt", "a/2.png"}
    assert "not an image" in reasons["b/notes.txt"]
    assert "2.png" in reasons["a/2.png"]
    assert report.counts == {"all": {"a": 1, "b": 1}}


def test_report_is_cached_on_disk_and_refreshed_when_the_data_changes(tmp_path):
    entries = {f"{c}/{k}.png": shape_png(k + 10 * (c == "b")) for c in "ab" for k in range(4)}
    ds = import_zip(make_zip(tmp_path / "x.zip", entries), tmp_path / "data")
    stages = []
    first = inspect(ds, callback=lambda done, total, stage: stages.append((done, total, stage)))
    assert stages[-1] == (1, 1, "done")
    reading = [(d, t) for d, t, s in stages if s == "reading images"]
    assert reading[-1] == (8, 8) and [d for d, _ in reading] == sorted(d for d, _ in reading)
    for f in ds.files:  # the cache must not need the images any more
        ds.path_of(f).unlink()
    again = inspect(ds)
    assert again.counts == first.counts and again.paths == first.paths
    assert np.array_equal(again.mean_images, first.mean_images)
    assert load_report(ds) is not None

    root = write_tree(tmp_path / "f", entries)
    folder = import_folder(root, tmp_path / "data")
    assert inspect(folder).n_images == 8
    write_tree(root, {"a/new.png": shape_png(99)})
    rescanned = import_folder(root, tmp_path / "data")
    assert load_report(rescanned) is None  # the old report no longer matches
    assert inspect(rescanned).n_images == 9


def test_a_class_without_readable_images_makes_the_ratio_infinite(tmp_path):
    files = {"a/1.png": shape_png(1), "a/2.png": shape_png(2), "b/1.png": shape_png(3)}
    root = write_tree(tmp_path / "d", files)
    ds = import_folder(root, tmp_path / "data")
    (root / "b" / "1.png").write_bytes(b"gone")
    report = inspect(ds)
    assert math.isinf(report.imbalance_ratio)
    assert any("no images" in w for w in report.warnings)
    assert math.isinf(load_report(ds).imbalance_ratio)


# --------------------------------------------------------------------- hashes and search
def _brute_force(hashes, max_distance):
    d = hamming(hashes[:, None], hashes[None, :])
    i, j = np.nonzero(np.triu(d <= max_distance, k=1))
    return set(zip(i.tolist(), j.tolist()))


@pytest.mark.parametrize("max_distance", [0, 2, 3, 5])
def test_near_pairs_finds_exactly_what_all_pairs_finds(max_distance):
    rng = np.random.default_rng(max_distance)
    base = rng.integers(0, 2**63, 300, dtype=np.uint64)
    # Plant close hashes: copies with 0..9 random bits flipped.
    flips = [np.bitwise_or.reduce(np.left_shift(np.uint64(1), rng.choice(64, k, replace=False)
                                                .astype(np.uint64)), initial=np.uint64(0))
             for k in rng.integers(0, 10, 300)]
    hashes = np.concatenate([base, base ^ np.array(flips, np.uint64)])
    pairs, distances = near_pairs(hashes, max_distance)
    assert set(map(tuple, pairs.tolist())) == _brute_force(hashes, max_distance)
    assert np.array_equal(distances, hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]]))


def test_near_pairs_refuses_distances_it_cannot_guarantee():
    with pytest.raises(ValueError):
        near_pairs(np.zeros(3, np.uint64), 6)


def _grey32(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L").resize((32, 32), Image.Resampling.BILINEAR), np.float32)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer)


@pytest.mark.parametrize("edit", [
    lambda s: ImageEnhance.Brightness(s).enhance(1.1),
    lambda s: ImageEnhance.Contrast(s).enhance(1.1),
    lambda s: _jpeg(s, 75),
    lambda s: s.resize((48, 48), Image.Resampling.BILINEAR),
], ids=["brighter", "more-contrast", "jpeg", "smaller"])
def test_phash_is_stable_under_small_edits_and_differs_between_scenes(edit):
    scenes = [Image.open(io.BytesIO(shape_png(i))).convert("RGB") for i in range(40)]
    h = phash(np.stack([_grey32(s) for s in scenes]))
    h_edit = phash(np.stack([_grey32(edit(s)) for s in scenes]))
    assert hamming(h, h_edit).max() <= NEAR_BITS
    others = hamming(h[:20], h[20:])
    assert others.min() > NEAR_BITS and others.mean() > 20  # random 64-bit hashes: ~32 apart


def test_similarity_ignores_brightness_but_not_content():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 200, (3, 32, 32)).astype(np.float32)
    assert np.allclose(similarity(a, a * 1.2 + 10), 1, atol=1e-5)
    assert (similarity(a, rng.uniform(0, 200, (3, 32, 32))) < 0.3).all()
    flat = np.full((2, 32, 32), 100.0)
    assert similarity(flat, flat + np.array([3.0, 50.0])[:, None, None]).tolist() == [1.0, 0.0]


def test_similarity_tells_apart_same_grey_structure_in_other_colours():
    rng = np.random.default_rng(1)
    structure = rng.normal(128, 30, (1, 16, 16))
    tint = rng.normal(0, 1, (1, 16, 16))
    plain = np.stack([structure] * 3, axis=-1)
    # The same luminance everywhere (0.299 * 60 == 0.587 * 30.56), other colours.
    tinted = np.stack([structure + 60 * tint, structure - 30.56 * tint, structure], axis=-1)
    grey = np.repeat(np.repeat(structure, 2, axis=1), 2, axis=2)
    assert similarity(grey, grey)[0] == pytest.approx(1)
    assert similarity(grey, grey, plain, tinted)[0] < 0.6
    assert similarity(grey, grey, plain, plain * 0.9 + 5)[0] == pytest.approx(1, abs=1e-5)
