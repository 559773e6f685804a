"""tf.data streaming from disk and the augmentation settings training uses."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.data import (
    Augmentation,
    augment_samples,
    export_demo,
    import_folder,
    load_augmentation,
    save_augmentation,
    tf_dataset,
)
from engine.errors import InvalidDatasetError
from engine.images import load_image
from tests.engine.dataset_helpers import png, write_tree


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return export_demo(tmp_path_factory.mktemp("data"), n=72, size=32, seed=3)


def _all(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_every_file_of_the_split_once_with_its_label_in_order(demo):
    test_files = demo.files_in("test")
    x, y = _all(tf_dataset(demo, "test", (32, 32), 5))
    assert x.shape == (len(test_files), 32, 32, 3) and x.dtype == np.float32
    assert y.tolist() == [f.label for f in test_files]  # not shuffled outside "train"
    # Same size in and out: the pixels are the PNG's own.
    reference = np.stack([np.asarray(Image.open(demo.path_of(f))) for f in test_files])
    assert np.abs(x - reference).max() <= 0.5


def test_train_is_shuffled_every_epoch_and_reproducible_with_a_seed(demo):
    ds = tf_dataset(demo, "train", (16, 16), 100)
    first, second = (next(iter(ds))[1].numpy() for _ in range(2))
    labels = [f.label for f in demo.files_in("train")]
    assert sorted(first.tolist()) == sorted(labels)
    assert first.tolist() != labels
    again = next(iter(tf_dataset(demo, "train", (16, 16), 100)))[1].numpy()
    assert again.tolist() == first.tolist()
    assert second.tolist() != first.tolist() or len(labels) < 3


def test_resizing_a_flat_image_keeps_its_colour(tmp_path):
    root = write_tree(tmp_path / "d", {"a/1.png": png((10, 200, 30), (50, 20)),
                                       "b/1.png": png((255, 255, 0), (7, 90))})
    x, y = _all(tf_dataset(import_folder(root), None, (24, 24), 4))
    assert x.shape == (2, 24, 24, 3)
    assert np.allclose(x[0], [10, 200, 30], atol=0.5) and np.allclose(x[1], [255, 255, 0],
                                                                       atol=0.5)


def test_files_tensorflow_would_read_differently_go_through_load_image(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[:, :15] = (255, 0, 0, 255)  # left half opaque red, right half transparent black
    transparent = io.BytesIO()
    Image.fromarray(rgba).save(transparent, "PNG")
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("RGB", (30, 20), (0, 0, 250)).save(rotated, "JPEG", exif=exif.tobytes(),
                                                 quality=95)
    root = write_tree(tmp_path / "d", {"a/t.png": transparent.getvalue(),
                                       "b/r.jpg": rotated.getvalue()})
    ds = import_folder(root)
    assert {f.path: f.native for f in ds.files} == {"a/t.png": False, "b/r.jpg": False}
    x, _ = _all(tf_dataset(ds, None, (20, 30), 1))
    # load_image composites on white (TensorFlow alone would give black).
    assert np.allclose(x[0], load_image(root / "a" / "t.png"), atol=0.5)
    assert np.allclose(x[0][:, -1], 255)
    # EXIF rotation applied: the 30 x 20 photo is shown 20 wide, 30 high.
    upright, _ = _all(tf_dataset(ds, None, (30, 20), 1))
    assert load_image(root / "b" / "r.jpg").shape == (30, 20, 3)
    assert np.allclose(upright[1], load_image(root / "b" / "r.jpg"), atol=0.5)


def test_streams_from_disk_rather_than_loading_everything_up_front(tmp_path):
    root = write_tree(tmp_path / "d", {f"{c}/{k}.png": png((k, 0, 0)) for c in "ab"
                                       for k in range(3)})
    ds = import_folder(root)
    stream = tf_dataset(ds, None, (8, 8), 2)
    (root / "b" / "2.png").write_bytes(png((77, 0, 0)))  # changed after the pipeline was built
    x, _ = _all(stream)
    assert np.allclose(x[-1], [77, 0, 0], atol=0.5)


def test_unknown_or_empty_split_is_a_clear_error(demo, tmp_path):
    with pytest.raises(InvalidDatasetError, match="no 'holdout' split"):
        tf_dataset(demo, "holdout", (8, 8), 2)


# ---------------------------------------------------------------------------- augmentation
def test_the_demo_set_can_come_with_its_mirrors(tmp_path):
    mirrored = export_demo(tmp_path / "a", n=36, size=16, mirrors=True)
    assert load_augmentation(mirrored) == Augmentation(horizontal_flip=True, vertical_flip=True,
                                                       transpose=True)
    assert load_augmentation(export_demo(tmp_path / "b", n=36, size=16)) == Augmentation()
    # Every training image comes back as one of the eight symmetries of the square.
    plain, _ = _all(tf_dataset(mirrored, "train", (16, 16), 36))
    augmented, _ = _all(tf_dataset(mirrored, "train", (16, 16), 36, augment=True))
    for a, b in zip(plain, augmented):
        views = [np.rot90(v, k) for v in (a, a.transpose(1, 0, 2)) for k in range(4)]
        assert any(np.allclose(v, b, atol=1e-3) for v in views)
    assert any(not np.allclose(a, b, atol=1e-3) for a, b in zip(plain, augmented))
    # A set that exists keeps what was saved with it.
    save_augmentation(mirrored, Augmentation())
    again = export_demo(tmp_path / "a", n=36, size=16, mirrors=True)
    assert load_augmentation(again) == Augmentation()


def test_saved_settings_are_what_training_uses(demo, tmp_path):
    assert load_augmentation(demo) == Augmentation()
    save_augmentation(demo, Augmentation(horizontal_flip=True))
    assert load_augmentation(demo) == Augmentation(horizontal_flip=True)
    plain, _ = _all(tf_dataset(demo, "test", (32, 32), 6))
    flipped, _ = _all(tf_dataset(demo, "test", (32, 32), 6, augment=True))
    # With the flip only, every image comes back as itself or its mirror, and some mirrored.
    same = [np.allclose(a, b, atol=1e-3) for a, b in zip(plain, flipped)]
    mirrored = [np.allclose(a[:, ::-1], b, atol=1e-3) for a, b in zip(plain, flipped)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert any(m and not s for s, m in zip(same, mirrored))
    unchanged, _ = _all(tf_dataset(demo, "test", (32, 32), 6, augment=None))
    assert np.array_equal(unchanged, plain)
    save_augmentation(demo, Augmentation())


def test_brightness_shifts_every_pixel_by_one_amount_within_the_limit():
    rng = np.random.default_rng(0)
    image = rng.integers(60, 190, (24, 24, 3), dtype=np.uint8)
    out = augment_samples(image, Augmentation(brightness=0.2), n=6, seed=1)
    deltas = out.astype(int) - image.astype(int)
    for d in deltas:
        assert d.max() - d.min() <= 1  # one shift for the whole image (rounding aside)
        assert abs(d.mean()) <= 0.2 * 255 + 1
    assert len({int(round(d.mean())) for d in deltas}) > 1  # samples differ


@pytest.mark.parametrize("setting, mirror", [
    ("vertical_flip", lambda im: im[::-1]),
    ("transpose", lambda im: im.transpose(1, 0, 2)),
])
def test_vertical_flip_and_diagonal_mirror_give_the_image_or_its_exact_mirror(setting, mirror):
    image = np.random.default_rng(2).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    out = augment_samples(image, Augmentation(**{setting: True}), n=16, seed=3)
    same = [np.array_equal(o, image) for o in out]
    mirrored = [np.array_equal(o, mirror(image)) for o in out]
    assert all(a or b for a, b in zip(same, mirrored))
    assert any(same) and any(mirrored)  # half of the time, not always nor never


def test_the_diagonal_mirror_leaves_images_that_are_not_square_unchanged():
    image = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = augment_samples(image, Augmentation(transpose=True), n=6, seed=3)
    assert np.array_equal(out, np.stack([image] * 6))


def test_every_setting_runs_and_keeps_shape_and_range():
    image = np.asarray(Image.open(io.BytesIO(png((40, 90, 200), (40, 30)))))
    settings = Augmentation(horizontal_flip=True, rotation=30, shear=0.3, zoom=0.2,
                            translation=0.2, brightness=0.3, contrast=0.4)
    out = augment_samples(image, settings, n=4, seed=0)
    assert out.shape == (4, 30, 40, 3) and out.dtype == np.uint8
    assert np.array_equal(augment_samples(image, Augmentation(), n=2), np.stack([image] * 2))


@pytest.mark.parametrize("bad", [{"rotation": 200}, {"zoom": -0.1}, {"contrast": float("nan")},
                                 {"shear": "lots"}])
def test_out_of_range_settings_are_refused(bad):
    with pytest.raises(InvalidDatasetError, match=next(iter(bad))):
        Augmentation.from_dict(bad)


def test_settings_from_a_dict_ignore_unknown_keys():
    assert Augmentation.from_dict({"rotation": 10, "future_option": 1}) == Augmentation(rotation=10)
