"""Importing data sets: layouts, every bad zip and folder, the demo export, stored sets."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from engine.data import (
    ZipLimits,
    delete_dataset,
    export_demo,
    import_folder,
    import_zip,
    list_datasets,
    make_shapes,
    open_dataset,
)
from engine.errors import InvalidDatasetError
from tests.engine.dataset_helpers import all_files, huge_png_header, make_zip, png, write_tree

TWO_CLASSES = {"cats/a.png": png((200, 0, 0)), "cats/b.png": png((190, 0, 0)),
               "dogs/c.png": png((0, 0, 200))}


def _reasons(dataset) -> dict[str, str]:
    return {s.path: s.reason for s in dataset.skipped}


# ------------------------------------------------------------------------------ good zips
def test_zip_of_class_folders(tmp_path):
    dest = tmp_path / "data"
    ds = import_zip(make_zip(tmp_path / "pets.zip", TWO_CLASSES), dest)
    assert ds.name == "pets" and ds.source == "zip"
    assert ds.class_names == ("cats", "dogs")
    assert ds.splits == ["all"]
    assert ds.counts() == {"all": {"cats": 2, "dogs": 1}}
    assert [(f.path, f.label) for f in ds.files] == [("cats/a.png", 0), ("cats/b.png", 0),
                                                     ("dogs/c.png", 1)]
    for f in ds.files:  # written byte for byte inside the data set folder
        assert ds.path_of(f).read_bytes() == TWO_CLASSES[f.path]
        assert ds.path_of(f).resolve().is_relative_to(dest.resolve())
    assert ds.skipped == ()


def test_zip_from_a_file_object_with_a_wrapper_folder_and_split_folders(tmp_path):
    entries = {f"mydata/{split}/{cls}/{i}.png": png((i * 40, 0, 0))
               for split in ("train", "val", "test") for cls in ("a", "b") for i in range(2)}
    buffer = io.BytesIO(make_zip(tmp_path / "x.zip", entries).read_bytes())
    buffer.name = "upload.zip"  # like Streamlit's UploadedFile
    ds = import_zip(buffer, tmp_path / "data")
    assert ds.name == "upload"
    assert ds.splits == ["train", "validation", "test"]
    assert ds.counts()["validation"] == {"a": 2, "b": 2}
    assert all(f.path.startswith(("train/", "val/", "test/")) for f in ds.files)


def test_same_zip_twice_is_the_same_data_set(tmp_path):
    zip_path = make_zip(tmp_path / "pets.zip", TWO_CLASSES)
    first = import_zip(zip_path, tmp_path / "data")
    second = import_zip(zip_path, tmp_path / "data")
    assert first.id == second.id and first.key == second.key
    assert [d.id for d in list_datasets(tmp_path / "data")] == [first.id]


def test_html_and_odd_characters_in_names_are_kept_as_text(tmp_path):
    entries = {"<b>cats<i>/<script>alert(1)<script>.png": png(), "dogs & co/x y#?.png": png(),
               "dogs & co/ünï *[x](y).png": png((1, 2, 3))}
    ds = import_zip(make_zip(tmp_path / "odd.zip", entries), tmp_path / "data")
    assert ds.class_names == ("<b>cats<i>", "dogs & co")
    assert {f.path for f in ds.files} == set(entries)
    assert all(ds.path_of(f).is_file() for f in ds.files)


def test_formats_tensorflow_reads_differently_are_marked_for_pillow(tmp_path):
    rgba = io.BytesIO()
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(rgba, "PNG")
    tiff = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(tiff, "TIFF")
    entries = {"a/rgb.png": png(), "a/rgba.png": rgba.getvalue(), "b/x.tif": tiff.getvalue(),
               "b/grey.png": png((90, 90, 90), mode="L")}
    ds = import_zip(make_zip(tmp_path / "f.zip", entries), tmp_path / "data")
    native = {f.path: f.native for f in ds.files}
    assert native == {"a/rgb.png": True, "a/rgba.png": False, "b/x.tif": False,
                      "b/grey.png": True}


# --------------------------------------------------------------------------- zip security
@pytest.mark.parametrize("name, why", [
    ("../evil.png", "'..'"),
    ("cats/../../evil.png", "'..'"),
    ("/tmp/evil.png", "absolute"),
    ("C:/evil.png", "drive letter"),
    ("cats\\..\\..\\evil.png", "backslash"),
])
def test_zip_slip_entries_are_skipped_and_nothing_is_written_outside(tmp_path, name, why):
    root = tmp_path / "root"
    root.mkdir()
    zip_path = make_zip(root / "slip.zip", {**TWO_CLASSES, name: png()})
    before = all_files(tmp_path)
    dest = root / "data"
    ds = import_zip(zip_path, dest)
    assert why in _reasons(ds)[name] and "unsafe path" in _reasons(ds)[name]
    new = all_files(tmp_path) - before
    assert new and all(p.resolve().is_relative_to(dest.resolve()) for p in new)
    assert not any("evil" in p.name for p in all_files(tmp_path))
    assert not (tmp_path.parent / "evil.png").exists()


def test_symlink_entries_are_skipped(tmp_path):
    zip_path = make_zip(tmp_path / "link.zip", TWO_CLASSES,
                        symlinks={"cats/passwd.png": "/etc/passwd", "dogs/up": "../../.."})
    ds = import_zip(zip_path, tmp_path / "data")
    reasons = _reasons(ds)
    assert "symbolic link" in reasons["cats/passwd.png"] and "symbolic link" in reasons["dogs/up"]
    assert not any(p.is_symlink() for p in (tmp_path / "data").rglob("*"))
    assert len(ds.files) == 3


def test_hidden_and_system_files_are_skipped_and_listed(tmp_path):
    hidden = {"__MACOSX/cats/._a.png": b"\x00\x05\x16\x07", "cats/.DS_Store": b"\x00\x00",
              ".hidden/x.png": png(), "dogs/.secret.png": png(), "cats/Thumbs.db": b"x"}
    ds = import_zip(make_zip(tmp_path / "mac.zip", {**TWO_CLASSES, **hidden}), tmp_path / "data")
    reasons = _reasons(ds)
    assert set(reasons) == set(hidden)
    assert all("hidden or system" in r for r in reasons.values())
    assert ds.class_names == ("cats", "dogs")  # __MACOSX and .hidden are not classes


def test_non_images_damaged_and_huge_images_are_skipped_with_the_reason(tmp_path):
    good = png((10, 200, 10), size=(32, 32))
    bad = {"cats/notes.txt": b"just some notes", "cats/fake.png": b"\x89PNG\r\n\x1a\nnope",
           "dogs/cut.png": good[: len(good) // 2], "dogs/huge.png": huge_png_header(),
           "dogs/empty.jpg": b""}
    ds = import_zip(make_zip(tmp_path / "bad.zip", {**TWO_CLASSES, **bad}), tmp_path / "data")
    reasons = _reasons(ds)
    assert set(reasons) == set(bad)
    assert "not an image" in reasons["cats/notes.txt"]
    assert "truncated" in reasons["dogs/cut.png"] or "decoded" in reasons["dogs/cut.png"]
    assert "pixel limit" in reasons["dogs/huge.png"]
    assert "empty" in reasons["dogs/empty.jpg"]
    assert len(ds.files) == 3
    assert not any(p.name in ("notes.txt", "huge.png") for p in (tmp_path / "data").rglob("*"))


def test_file_larger_than_the_limit_is_skipped(tmp_path):
    big = png((1, 2, 3), size=(400, 400))
    limits = ZipLimits(max_file_bytes=len(big) - 1)
    ds = import_zip(make_zip(tmp_path / "b.zip", {**TWO_CLASSES, "dogs/big.png": big}),
                    tmp_path / "data", limits=limits)
    assert "larger than" in _reasons(ds)["dogs/big.png"]


@pytest.mark.parametrize("limits, entries, words", [
    (ZipLimits(max_files=10), {f"c{i % 2}/{i}.png": png() for i in range(11)}, "entries"),
    (ZipLimits(max_total_bytes=1000), {"a/x.png": os.urandom(800), "b/y.png": os.urandom(800)},
     "unpack to"),
    (ZipLimits(), {"a/x.bmp": b"\x00" * (2 * 2**20 + 1), "b/y.png": png()}, "times larger"),
], ids=["count", "size", "ratio"])
def test_zip_bombs_are_refused_before_anything_is_written(tmp_path, limits, entries, words):
    zip_path = make_zip(tmp_path / "bomb.zip", entries)
    with pytest.raises(InvalidDatasetError, match=words) as info:
        import_zip(zip_path, tmp_path / "data", limits=limits)
    assert "bomb" in str(info.value) or "more than" in str(info.value)
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_a_lying_header_cannot_unpack_more_than_it_declares(tmp_path):
    zip_path = make_zip(tmp_path / "liar.zip", {**TWO_CLASSES, "dogs/z.bmp": b"\x00" * 2**21})
    data = bytearray(zip_path.read_bytes())
    # Make the central directory claim 1000 bytes for the 2 MB entry (its ratio then looks fine).
    with zipfile.ZipFile(zip_path) as archive:
        info = archive.getinfo("dogs/z.bmp")
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(b"dogs/z.bmp"))
    data[central + 24:central + 28] = (1000).to_bytes(4, "little")
    zip_path.write_bytes(bytes(data))
    assert info.file_size == 2**21
    ds = import_zip(zip_path, tmp_path / "data")
    assert "damaged" in _reasons(ds)["dogs/z.bmp"]
    assert max(p.stat().st_size for p in (tmp_path / "data").rglob("*") if p.is_file()) < 2**20


def test_streaming_limits_stop_what_the_central_directory_did_not(tmp_path):
    # Two entries each under the total, together over it: only the running count sees that.
    entries = {"a/x.png": png(size=(64, 64)), "b/y.png": png(size=(64, 63))}
    zip_path = make_zip(tmp_path / "two.zip", entries, compression=zipfile.ZIP_STORED)
    sizes = [len(v) for v in entries.values()]
    from engine.data import dataset as module

    limits = ZipLimits(max_total_bytes=sum(sizes) - 1)
    original = module._check_central_directory
    module._check_central_directory = lambda *args: None  # as if the headers had lied
    try:
        with pytest.raises(InvalidDatasetError, match="zip bomb"):
            import_zip(zip_path, tmp_path / "data", limits=limits)
    finally:
        module._check_central_directory = original
    assert not any(p.is_file() for p in (tmp_path / "data").rglob("*"))


@pytest.mark.parametrize("entries, words", [
    ({"a.png": png(), "b.png": png()}, "no class folders"),
    ({"cats/a.png": png(), "cats/b.png": png()}, "only one class"),
    ({"wrap/cats/a.png": png()}, "only one class"),
    ({"train/cats/a.png": png(), "train/dogs/b.png": png(), "birds/c.png": png()}, "mixes split"),
    ({"cats/a.png": png(), "dogs/notes.txt": b"text"}, "at least two class folders"),
], ids=["no-classes", "one-class", "one-class-wrapped", "mixed-splits", "one-readable-class"])
def test_layouts_that_are_not_a_data_set(tmp_path, entries, words):
    with pytest.raises(InvalidDatasetError, match=words):
        import_zip(make_zip(tmp_path / "x.zip", entries), tmp_path / "data")
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_not_a_zip(tmp_path):
    path = tmp_path / "photo.zip"
    path.write_bytes(png())
    with pytest.raises(InvalidDatasetError, match="not a readable zip"):
        import_zip(path, tmp_path / "data")


def test_files_outside_class_folders_are_listed(tmp_path):
    entries = {**{f"train/{k}": v for k, v in TWO_CLASSES.items()}, "readme.png": png(),
               "train/loose.png": png()}
    ds = import_zip(make_zip(tmp_path / "x.zip", entries), tmp_path / "data")
    reasons = _reasons(ds)
    assert "not inside a class folder" in reasons["readme.png"]
    assert "not inside a class folder" in reasons["train/loose.png"]


# -------------------------------------------------------------------------------- folders
def test_folder_is_read_in_place_and_skips_links_and_hidden_files(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(png())
    root = write_tree(tmp_path / "pets", {**TWO_CLASSES, "cats/.DS_Store": b"x",
                                          "dogs/notes.txt": b"hello"})
    (root / "dogs" / "link.png").symlink_to(outside)
    (root / "linked_class").symlink_to(root / "cats")
    before = all_files(root)
    ds = import_folder(root, tmp_path / "data")
    assert ds.source == "folder" and ds.image_root == root.resolve()
    assert ds.class_names == ("cats", "dogs")
    reasons = _reasons(ds)
    assert "symbolic link" in reasons["dogs/link.png"]
    assert "symbolic link" in reasons["linked_class"]
    assert "hidden" in reasons["cats/.DS_Store"] and "not an image" in reasons["dogs/notes.txt"]
    assert all_files(root) == before  # nothing written into the user's folder
    assert not list((tmp_path / "data").rglob("*.png"))  # and nothing copied


def test_folder_with_a_wrapper_folder_and_splits(tmp_path):
    root = write_tree(tmp_path / "pets", {f"pets/{split}/{k}": v for split in ("train", "val")
                                          for k, v in TWO_CLASSES.items()})
    ds = import_folder(root)
    assert ds.splits == ["train", "validation"] and ds.image_root == (root / "pets").resolve()
    assert all(ds.path_of(f).read_bytes() == TWO_CLASSES[f.path.split("/", 1)[1]]
               for f in ds.files)


def test_folder_without_a_data_folder_writes_nothing(tmp_path):
    root = write_tree(tmp_path / "pets", TWO_CLASSES)
    ds = import_folder(root)
    assert ds.folder is None and len(ds.files) == 3
    assert all_files(tmp_path) == all_files(root)


def test_missing_folder(tmp_path):
    with pytest.raises(InvalidDatasetError, match="no folder"):
        import_folder(tmp_path / "nope")


def test_folder_rescan_sees_new_files_and_keeps_the_id(tmp_path):
    root = write_tree(tmp_path / "pets", TWO_CLASSES)
    first = import_folder(root, tmp_path / "data")
    write_tree(root, {"dogs/d.png": png((0, 0, 100))})
    second = import_folder(root, tmp_path / "data")
    assert second.id == first.id and second.key != first.key
    assert len(second.files) == 4
    assert [d.id for d in list_datasets(tmp_path / "data")] == [first.id]


# ------------------------------------------------------------------------ demo and stored
def test_demo_export_matches_make_shapes_and_keeps_the_boxes(tmp_path):
    ds = export_demo(tmp_path / "data", n=120, size=32, seed=5)
    reference = make_shapes(120, size=32, seed=5)
    assert ds.class_names == tuple(reference.class_names)
    # 20 per class: 15 % of 20 is 3 for validation and for test.
    assert ds.counts() == {"train": dict.fromkeys(ds.class_names, 14),
                           "validation": dict.fromkeys(ds.class_names, 3),
                           "test": dict.fromkeys(ds.class_names, 3)}
    boxes = ds.boxes()
    for f in ds.files:
        i = int(f.path.rsplit("_", 1)[1].split(".")[0])
        assert f.label == reference.labels[i]
        assert np.array_equal(np.asarray(Image.open(ds.path_of(f))), reference.images[i])
        assert boxes[f.path] == tuple(reference.boxes[i])


def test_demo_is_reused_and_too_small_is_refused(tmp_path):
    first = export_demo(tmp_path / "data", n=36, size=16)
    assert export_demo(tmp_path / "data", n=36, size=16).created == first.created
    with pytest.raises(InvalidDatasetError, match="at least 36"):
        export_demo(tmp_path / "data", n=30)


def test_stored_data_sets_reopen_list_and_delete(tmp_path):
    dest = tmp_path / "data"
    zipped = import_zip(make_zip(tmp_path / "pets.zip", TWO_CLASSES), dest)
    root = write_tree(tmp_path / "mine", TWO_CLASSES)
    folder = import_folder(root, dest)
    assert {d.id for d in list_datasets(dest)} == {zipped.id, folder.id}
    again = open_dataset(zipped.folder)
    assert again.files == zipped.files and again.class_names == zipped.class_names
    (dest / "junk").mkdir()
    (dest / "junk" / "dataset.json").write_text("{broken")
    assert len(list_datasets(dest)) == 2  # a damaged folder is left out, not fatal
    delete_dataset(folder)
    assert all(p.is_file() for p in (root / "cats").iterdir())  # the user's images stay
    assert [d.id for d in list_datasets(dest)] == [zipped.id]
    assert not os.path.exists(folder.folder)
