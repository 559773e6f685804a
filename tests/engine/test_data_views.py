"""What the Data set and Train pages say about data sets (engine.data.views): labels, the
saved augmentation in words, thumbnails, reports kept per process and the report's texts."""

from __future__ import annotations

import dataclasses

import pytest

from engine.data import Augmentation, import_folder, inspect
from engine.data.report import DuplicatePair
from engine.data.views import (augmentation_text, class_total, contents_text, dataset_label,
                               flagged_images, imbalance_text, known_report, pair_count,
                               pair_rows, pair_title, report_metrics, report_work, scope_text,
                               scope_title, splits_text, thumbnail)
from tests.engine.dataset_helpers import png, shape_png, write_tree


@pytest.fixture
def pets(tmp_path):
    """Six images: one exact train/test leak, one tiny grey image among colour ones."""
    leak = shape_png(3, size=40)
    folder = write_tree(tmp_path / "pets", {
        "train/cats/0.png": shape_png(1, size=40), "train/cats/1.png": shape_png(2, size=40),
        "train/dogs/0.png": leak, "train/dogs/1.png": png((90, 90, 90), (16, 16), "L"),
        "test/cats/0.png": shape_png(4, size=40), "test/dogs/leak.png": leak})
    return import_folder(folder, tmp_path / "data")


def test_picker_labels_and_contents(pets):
    assert dataset_label(pets) == "pets · 6 images · 2 classes · folder"
    assert dataset_label(pets, detailed=False) == "pets · 6 images · 2 classes"
    demo = dataclasses.replace(pets, source="demo")
    assert dataset_label(demo, detailed=False) == "pets · 2 classes"
    assert contents_text(pets) == "Classes: cats, dogs · splits: train, test"


def test_the_augmentation_in_the_data_set_pages_words():
    augment = Augmentation(horizontal_flip=True, transpose=True, rotation=30, translation=0.1)
    assert augmentation_text(augment) == "horizontal flip, diagonal mirror, rotation 30, shift 0.1"
    assert "none saved" in augmentation_text(Augmentation())


def test_a_thumbnail_shrinks_to_fit_and_never_enlarges(tmp_path):
    big = write_tree(tmp_path, {"wide.png": png(size=(200, 100)), "small.png": png()})
    assert thumbnail(big / "wide.png", 160).shape == (80, 160, 3)
    assert thumbnail(big / "small.png", 160).shape == (16, 16, 3)


def test_a_saved_report_is_read_once_then_kept(pets):
    computed = inspect(pets)  # saved with the data set
    first = known_report(pets)
    assert first is not computed and first.n_images == computed.n_images == 6
    assert known_report(pets) is first


def test_the_report_job_says_where_it_is_and_keeps_its_report(pets):
    assert known_report(pets) is None  # nothing computed yet

    class Job:
        def __init__(self):
            self.texts = []

        def report(self, done, total, text):
            self.texts.append(text)

    job = Job()
    report = report_work(pets)(job)
    assert "reading the images, 6 / 6" in job.texts
    assert job.texts[-1] == "looking for near duplicates"
    assert known_report(pets) is report


def test_the_reports_counters_and_texts(pets):
    report = inspect(pets)
    assert report_metrics(report) == [("Images", "6"), ("Classes", "2"), ("Splits", "2"),
                                      ("Files not used", "0"), ("Leaks across splits", "1")]
    assert splits_text(report) == "Images per split: train 4 · test 2"
    assert imbalance_text(report).endswith(": 1.00")  # three cats, three dogs
    assert class_total(report, "dogs") == 3
    assert pair_count(report) == pair_count(report, "across splits") == 1
    assert scope_title(report, "across splits") == "Across splits (leakage) · 1"
    assert scope_text(report, "across splits") == "1 exact and 0 near pair(s)."
    (pair,) = report.pairs_in("across splits")
    assert pair_title(pair) == "Exact copy"
    assert pair_rows([pair]) == [{"kind": "exact", "first": "test/dogs/leak.png",
                                  "split": "test", "class": "dogs", "second": "train/dogs/0.png",
                                  "split ": "train", "class ": "dogs"}]
    assert flagged_images(report) == [
        ("Tiny images (shorter side under 32 px)", ["train/dogs/1.png"]),
        ("Grayscale images among colour ones", ["train/dogs/1.png"])]
    empty = dataclasses.replace(report, imbalance_ratio=float("inf"))
    assert imbalance_text(empty).endswith("a class has no images")


def test_a_near_pair_says_how_far_apart_its_hashes_are():
    pair = DuplicatePair("a.png", "b.png", "train", "cats", "train", "cats", "within class",
                         exact=False, distance=3)
    assert pair_title(pair) == "Near copy (hashes 3 bit(s) apart)"


def test_an_all_grey_data_set_is_not_flagged_as_grey(pets):
    report = inspect(pets)
    grey = dataclasses.replace(report, grayscale=list(report.paths), tiny=[])
    assert flagged_images(grey) == []
