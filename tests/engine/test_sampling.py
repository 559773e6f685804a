"""Drawing a few images from a data set: which files, their labels and boxes, files that no
longer load, and demo shapes from a seed the demo model never saw."""

from __future__ import annotations

import numpy as np
import pytest

from engine.data import export_demo, import_folder, make_shape_image
from engine.data.sampling import HELD_OUT_SEED, sample_dataset, sample_shapes, spread
from engine.errors import InvalidDatasetError
from engine.models.demo import HELDOUT_SEED, TRAIN_SEED
from tests.engine.dataset_helpers import png


@pytest.fixture
def ten_files(tmp_path):
    """Two classes of five flat images each; image ``k`` of class ``c`` has red ``c*100+k*10``."""
    for c, name in enumerate(("a", "b")):
        (tmp_path / "src" / name).mkdir(parents=True)
        for k in range(5):
            (tmp_path / "src" / name / f"{k}.png").write_bytes(png((c * 100 + k * 10, 0, 0)))
    return import_folder(tmp_path / "src", tmp_path / "data")


def test_spread_takes_the_first_the_last_and_evenly_between():
    assert spread(10, 4).tolist() == [0, 3, 6, 9]       # 9 / 3 = 3 apart
    assert spread(7, 3).tolist() == [0, 3, 6]
    assert spread(3, 10).tolist() == [0, 1, 2]          # never more than there are
    assert spread(5, 1).tolist() == [0]
    assert spread(0, 3).tolist() == [] and spread(4, 0).tolist() == []


def test_a_sample_spreads_over_every_class_folder(ten_files):
    sample = sample_dataset(ten_files, 4)
    # files a/0..a/4, b/0..b/4: indices 0, 3, 6, 9 are a/0, a/3, b/1, b/4
    assert [int(image[0, 0, 0]) for image in sample.images] == [0, 30, 110, 140]
    assert sample.labels.tolist() == [0, 0, 1, 1]
    assert sample.class_names == ["a", "b"]
    assert sample.boxes is None                          # an imported folder has no boxes


def test_a_file_that_no_longer_loads_is_left_out(ten_files):
    ten_files.path_of("a/3.png").write_bytes(b"not an image any more")
    sample = sample_dataset(ten_files, 4)
    assert [int(image[0, 0, 0]) for image in sample.images] == [0, 110, 140]
    assert sample.labels.tolist() == [0, 1, 1]


def test_a_data_set_whose_files_are_all_gone_says_so(ten_files):
    for f in ten_files.files:
        ten_files.path_of(f).write_bytes(b"")
    with pytest.raises(InvalidDatasetError, match="could be read"):
        sample_dataset(ten_files, 3)


def test_the_demo_set_keeps_its_boxes(tmp_path):
    dataset = export_demo(tmp_path, n=36, size=32)
    sample = sample_dataset(dataset, 5)
    files = dataset.files_in(None)
    chosen = [files[i] for i in (0, 9, 18, 26, 35)]      # round(35 * k / 4)
    assert sample.labels.tolist() == [f.label for f in chosen]
    known = dataset.boxes()
    assert sample.boxes.tolist() == [list(known[f.path]) for f in chosen]


def test_shapes_are_drawn_from_a_seed_the_demo_model_never_saw():
    assert HELD_OUT_SEED not in (TRAIN_SEED, HELDOUT_SEED)
    sample = sample_shapes(7, size=32)
    assert sample.labels.tolist() == [0, 1, 2, 3, 4, 5, 0]
    for i in (0, 6):
        image, box = make_shape_image(i % 6, size=32, seed=(HELD_OUT_SEED, i))
        np.testing.assert_array_equal(sample.images[i], image)
        assert sample.boxes[i].tolist() == list(box)
    assert sample.class_names[3] == "star"
