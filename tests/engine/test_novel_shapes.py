"""The "novel" family of shapes, which the demo model never saw, and the sets exported from it."""

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage
from skimage.measure import regionprops
from skimage.transform import rotate

from engine.data import (
    CLASS_NAMES,
    FAMILIES,
    MIRRORS,
    NOVEL_CLASS_NAMES,
    NOVEL_SMALL_TEST_PER_CLASS,
    NOVEL_SMALL_TRAIN_PER_CLASS,
    NOVEL_SMALL_VALIDATION_PER_CLASS,
    export_demo,
    export_small_novel,
    family_class_names,
    list_datasets,
    load_augmentation,
    make_shape_image,
    make_shape_mask,
    make_shapes,
)
from engine.errors import InvalidDatasetError
from tests.conftest import ROOT

NOVEL = "novel"


def footprint(label, seed, family, size=64):
    """Pixels the object changes: the image minus the same scene drawn without the object."""
    with_object, _ = make_shape_image(label, size=size, seed=seed, family=family)
    without, _ = make_shape_image(label, size=size, seed=seed, family=family, with_object=False)
    return np.abs(with_object.astype(int) - without.astype(int)).max(axis=-1)


# ------------------------------------------------------------------------------ the families
def test_default_family_still_draws_the_bundled_sample_images():
    # The sample PNGs were drawn before families existed, with the seed (4242, label) at 128 px.
    for label, name in enumerate(CLASS_NAMES):
        bundled = np.asarray(Image.open(ROOT / "assets" / "images" / f"shape_{name}.png")
                             .convert("RGB"))
        np.testing.assert_array_equal(make_shape_image(label, size=128, seed=(4242, label))[0],
                                      bundled)


def test_demo_is_the_default_family():
    default, demo = make_shapes(12, size=32, seed=7), make_shapes(12, size=32, seed=7,
                                                                  family="demo")
    np.testing.assert_array_equal(default.images, demo.images)
    np.testing.assert_array_equal(default.boxes, demo.boxes)
    assert default.class_names == list(CLASS_NAMES)
    np.testing.assert_array_equal(make_shape_mask(3, seed=9), make_shape_mask(3, seed=9,
                                                                             family="demo"))


def test_class_names_of_the_families():
    assert len(NOVEL_CLASS_NAMES) == len(set(NOVEL_CLASS_NAMES)) == len(CLASS_NAMES) == 6
    assert not set(NOVEL_CLASS_NAMES) & set(CLASS_NAMES)
    assert FAMILIES == {"demo": CLASS_NAMES, "novel": NOVEL_CLASS_NAMES}
    assert family_class_names(NOVEL) == NOVEL_CLASS_NAMES
    assert make_shapes(6, size=16, family=NOVEL).class_names == list(NOVEL_CLASS_NAMES)
    # Folder names on any file system: no separators, nothing two names share up to case.
    assert all("/" not in n and "\\" not in n for n in NOVEL_CLASS_NAMES)
    assert len({n.lower() for n in NOVEL_CLASS_NAMES + CLASS_NAMES}) == 12


@pytest.mark.parametrize("call", [
    lambda: make_shape_image(0, family="novelty"),
    lambda: make_shape_mask(0, family="Demo"),
    lambda: make_shapes(1, family=None),
    lambda: make_shape_image(6, family=NOVEL),
])
def test_unknown_family_or_label_is_refused(call):
    with pytest.raises(ValueError):
        call()


def test_novel_family_changes_only_the_object():
    # Same seed: the same scene with another shape, so outside both objects nothing moves.
    for label in range(6):
        seed = (13, label)
        demo, _ = make_shape_image(label, seed=seed)
        novel, _ = make_shape_image(label, seed=seed, family=NOVEL)
        outside = (make_shape_mask(label, seed=seed) == 0) & (
            make_shape_mask(label, seed=seed, family=NOVEL) == 0)
        np.testing.assert_array_equal(demo[outside], novel[outside])
        assert (demo != novel).any(axis=-1).mean() > 0.02


def test_novel_images_are_a_pure_function_of_label_size_and_seed():
    first = make_shape_image(4, size=48, seed=(3, 10), family=NOVEL)
    make_shapes(7, seed=99, family=NOVEL)  # drawing others in between changes nothing
    again = make_shape_image(4, size=48, seed=(3, 10), family=NOVEL)
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1] == again[1]
    assert (make_shape_image(4, size=48, seed=(3, 11), family=NOVEL)[0] != first[0]).mean() > 0.5
    short, long = make_shapes(5, seed=3, family=NOVEL), make_shapes(11, seed=3, family=NOVEL)
    np.testing.assert_array_equal(short.images, long.images[:5])
    image, box = make_shape_image(10 % 6, seed=(3, 10), family=NOVEL)
    np.testing.assert_array_equal(long.images[10], image)
    assert tuple(long.boxes[10]) == box and long.labels[10] == 4


@pytest.mark.parametrize("index", range(0, 36, 5))
def test_novel_box_is_tight_around_the_mask_and_the_changed_pixels(index):
    label, seed = index % 6, (17, index)
    mask = make_shape_mask(label, seed=seed, family=NOVEL)
    x0, y0, x1, y1 = make_shape_image(label, seed=seed, family=NOVEL)[1]
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert (x0, y0, x1, y1) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    changed = footprint(label, seed, NOVEL)
    assert not changed[mask == 0].any()  # nothing outside the mask, so nothing outside the box
    assert (changed[mask >= 0.5] > 0).all()
    inside = mask == 1.0
    assert np.median(changed[inside]) > 40  # the object stands out from its background


def test_novel_shapes_are_as_large_as_the_demo_shapes():
    # Larger box side over the image side, over the same 36 seeds for every class.
    def sides(label, family):
        boxes = np.array([make_shape_image(label, size=64, seed=(23, k), family=family)[1]
                          for k in range(36)])
        return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 64

    circle = sides(0, "demo")  # its box side is the circumscribed circle's diameter
    for label in range(6):
        novel = sides(label, NOVEL)
        assert novel.min() >= 0.2 and novel.max() <= 0.72
        assert 0.8 * circle.mean() <= novel.mean() <= 1.05 * circle.mean()


# ------------------------------------------------------------- distinct, and kept by mirrors
def mask_features(mask: np.ndarray) -> np.ndarray:
    """Features unchanged by moving, turning, mirroring and scaling a shape: solidity, four
    log Hu moments, and the histogram of pixel distances from the centroid over sqrt(area)."""
    m = mask >= 0.5
    props = regionprops(m.astype(np.uint8))[0]
    hu = props.moments_hu[:4]
    ys, xs = np.nonzero(m)
    reach = np.hypot(ys - ys.mean(), xs - xs.mean()) / np.sqrt(m.sum())
    hist = np.histogram(reach, bins=8, range=(0, 1.2))[0] / m.sum()
    return np.r_[props.solidity, np.sign(hu) * np.log10(np.abs(hu) + 1e-12), hist]


def test_a_nearest_centroid_on_mask_features_tells_the_novel_shapes_apart():
    def features(seed):
        x = np.array([[mask_features(make_shape_mask(label, seed=(seed, k), family=NOVEL))
                       for label in range(6)] for k in range(20)])
        return x.reshape(-1, x.shape[-1]), np.tile(np.arange(6), 20)

    x_fit, y_fit = features(41)
    x_test, y_test = features(42)
    mean, std = x_fit.mean(axis=0), x_fit.std(axis=0) + 1e-9
    centroids = np.stack([((x_fit - mean) / std)[y_fit == c].mean(axis=0) for c in range(6)])
    distances = ((((x_test - mean) / std)[:, None] - centroids) ** 2).sum(axis=-1)
    predicted = distances.argmin(axis=1)
    assert (predicted == y_test).mean() > 0.9
    for c in range(6):  # no class is lost in another
        assert (predicted[y_test == c] == c).mean() >= 0.75


def best_overlap_with_its_mirror_image(mask: np.ndarray) -> float:
    """The best IoU of a mask with its diagonal mirror image turned by any whole 3 degrees
    about the centroid: near 1 when the mirror image is a rotation of the shape."""
    m = mask >= 0.5
    cy, cx = ndimage.center_of_mass(m)
    mirrored = ndimage.shift(m.T.astype(float), (cy - cx, cx - cy), order=1)
    best = 0.0
    for angle in range(0, 360, 3):
        turned = rotate(mirrored, angle, center=(cx, cy), order=1) >= 0.5
        best = max(best, (turned & m).sum() / (turned | m).sum())
    return best


def test_every_novel_shape_keeps_its_class_under_the_mirrors():
    # Both flips are the diagonal mirror and a quarter turn, so one mirror stands for all of
    # MIRRORS: a shape whose mirror image is a rotation of itself keeps its class under them.
    for label in range(6):
        for k in range(2):
            mask = make_shape_mask(label, size=128, seed=(50, k), family=NOVEL)
            assert best_overlap_with_its_mirror_image(mask) > 0.85, NOVEL_CLASS_NAMES[label]
    # The check can fail: an L with unequal arms is not a rotation of its mirror image.
    canvas = Image.new("L", (128, 128))
    ImageDraw.Draw(canvas).polygon([(40, 30), (55, 30), (55, 85), (75, 85), (75, 100),
                                    (40, 100)], fill=255)
    assert best_overlap_with_its_mirror_image(np.asarray(canvas) / 255.0) < 0.7


# ----------------------------------------------------------------------------- exported sets
def test_novel_export_has_its_own_folder_name_classes_images_and_boxes(tmp_path):
    novel = export_demo(tmp_path, n=120, size=24, seed=5, family=NOVEL, mirrors=True)
    demo = export_demo(tmp_path, n=120, size=24, seed=5)
    assert novel.folder.name.startswith("novel-shapes-") and novel.folder != demo.folder
    assert novel.name.startswith("New shapes") and demo.name.startswith("Demo shapes")
    assert {d.id for d in list_datasets(tmp_path)} == {novel.id, demo.id}
    assert novel.class_names == NOVEL_CLASS_NAMES and novel.source == "demo"
    # 20 per class: 15 % of 20 is 3 for validation and for test.
    assert novel.counts() == {"train": dict.fromkeys(NOVEL_CLASS_NAMES, 14),
                              "validation": dict.fromkeys(NOVEL_CLASS_NAMES, 3),
                              "test": dict.fromkeys(NOVEL_CLASS_NAMES, 3)}
    assert load_augmentation(novel) == MIRRORS
    reference = make_shapes(120, size=24, seed=5, family=NOVEL)
    boxes = novel.boxes()
    for f in novel.files[::7]:
        i = int(f.path.rsplit("_", 1)[1].split(".")[0])
        assert f.label == reference.labels[i]
        assert f.path.split("/")[1] == NOVEL_CLASS_NAMES[reference.labels[i]]
        np.testing.assert_array_equal(np.asarray(Image.open(novel.path_of(f))),
                                      reference.images[i])
        assert tuple(boxes[f.path]) == tuple(reference.boxes[i])


def test_small_novel_set_counts_and_shared_held_out_images(tmp_path):
    assert (NOVEL_SMALL_TRAIN_PER_CLASS, NOVEL_SMALL_VALIDATION_PER_CLASS) == (50, 15)
    assert NOVEL_SMALL_TEST_PER_CLASS * 6 >= 600
    one = export_small_novel(tmp_path, 1, size=16)
    two = export_small_novel(tmp_path, 2, size=16)
    for ds, n_train in ((one, 1), (two, 2)):
        assert ds.counts() == {
            "train": dict.fromkeys(NOVEL_CLASS_NAMES, n_train),
            "validation": dict.fromkeys(NOVEL_CLASS_NAMES, NOVEL_SMALL_VALIDATION_PER_CLASS),
            "test": dict.fromkeys(NOVEL_CLASS_NAMES, NOVEL_SMALL_TEST_PER_CLASS)}
        assert f"{n_train} training images per class" in ds.name
        assert load_augmentation(ds) == MIRRORS
    assert one.folder != two.folder
    assert export_small_novel(tmp_path, 2, size=16).created == two.created  # reused

    def split(ds, name):
        return {f.path for f in ds.files if f.split == name}

    # More training images only add training images: validation and test stay the same.
    for name in ("validation", "test"):
        assert split(one, name) == split(two, name)
    assert split(one, "train") < split(two, "train")
    for path in sorted(split(one, "test"))[:5]:
        np.testing.assert_array_equal(np.asarray(Image.open(one.path_of(path))),
                                      np.asarray(Image.open(two.path_of(path))))


@pytest.mark.parametrize("per_class", [(0, 1, 1), (1, 0, 1), (1, 1, 0), (1, 1)])
def test_empty_split_is_refused_with_a_sentence(tmp_path, per_class):
    with pytest.raises(InvalidDatasetError, match="at least one image per class"):
        export_demo(tmp_path, size=16, family=NOVEL, per_class=per_class)
    assert not list(tmp_path.iterdir())
