"""Data set: import a small image data set, read its sanity report, preview augmentation."""

from __future__ import annotations

import streamlit as st

from engine.data import delete_dataset, list_datasets
from engine.data.views import known_report, report_key, report_work
from ui import presenter
from ui.dataset_sections import (augmentation_preview, dataset_picker, duplicates_section,
                                 images_section, import_section, summary_section)
from ui.errors import shown_errors
from ui.jobs import again, ended_message, follow, job_for
from ui.model_report import model_report_section
from ui.page import page
from ui.paths import datasets_dir
from ui.text import md_escape

EXPLAINER = """
A CNN learns from **examples**: a folder of images per class (`cats/`, `dogs/`, ...). Before
training on them it pays to look at them, because most surprises in training come from the data:

- **Counts per class**: if one class has many more images, the network can score well by
  mostly guessing that class (*imbalance*).
- **Splits**: images are kept apart for *training*, *validation* (choosing settings) and *test*
  (the final score). The same photo in train and test (**leakage**) makes the test score too
  good to be true.
- **Duplicates**: *exact* copies have the same bytes; *near* copies are the same picture
  re-saved, resized or slightly brightened (found with a *perceptual hash*, a 64-bit summary of
  the picture's coarse shapes). A copy with a different label is a **conflicting label**.
- **Sizes and colours**: every image is resized to the network's input, so tiny images are
  blown up and blurred, and grayscale images among colour ones look different to the network.
- **Mean image**: the average of all images of a class. A sharp shape in it means the class's
  objects always sit in the same place, or share a background the network may learn instead.
- **Augmentation** shows the network slightly changed copies (flipped, rotated, zoomed...) so
  it learns the object, not one exact picture. The settings you choose here are saved with the
  data set and used for training.
"""

selection = page("Data set", EXPLAINER, icon=":material/dataset:")
FOLDER = datasets_dir()


def _picker(stored):
    """The data set picker, with a Delete button beside it."""
    cols = st.columns([4, 1], vertical_alignment="bottom")
    ds = dataset_picker(stored, where=cols[0])
    with cols[1], presenter.technical("dataset_delete"), st.popover("Delete",
                                                                     icon=":material/delete:"):
        st.caption(md_escape(f"Delete '{ds.name}' from the data folder"
                             + (" (the folder's own images are kept)?" if ds.source == "folder"
                                else "?")))
        if st.button("Delete it", key="dataset_delete", type="primary"):
            delete_dataset(ds)
            st.session_state.pop("dataset", None)
            st.rerun()
    return ds


def _report(ds):
    """The data set's report; None while its job (reading every image) waits or runs, or when
    it failed or was cancelled (said on the page)."""
    report = known_report(ds)
    if report is not None:
        return report
    key, work, title = report_key(ds), report_work(ds), f"The report on {ds.name}"
    job = job_for(key, work, title=title)
    if job is not None and job.alive:
        follow(job, "dataset_report_job")
    elif job is not None:
        ended_message(job)
        if job.result is None and st.button("Compute the report again", key="dataset_again"):
            again(key, work, title=title)
            st.rerun()
        return job.result
    return None


def _report_sections(ds) -> None:
    with shown_errors("The report could not be computed: "):
        report = _report(ds)
        if report is not None:
            summary_section(report)
            duplicates_section(ds, report)
            images_section(report)
            augmentation_preview(ds, report)
    model_report_section(ds, selection.model)


import_section(FOLDER, expanded=not list_datasets(FOLDER))
stored = list_datasets(FOLDER)
if stored:
    _report_sections(_picker(stored))
else:
    st.info("Import a data set above to see its report.", icon=":material/info:")
