"""Data sets: the procedural shapes set the demo model is trained on; importing image data
sets (zip, folder), their sanity report and streaming them with tf.data."""

from engine.data.dataset import (
    Dataset,
    DatasetFile,
    SkippedFile,
    ZipLimits,
    delete_dataset,
    export_demo,
    import_folder,
    import_zip,
    list_datasets,
    open_dataset,
)
from engine.data.pipeline import (
    MIRRORS,
    Augmentation,
    augment_samples,
    augmentation_layers,
    load_augmentation,
    save_augmentation,
    tf_dataset,
)
from engine.data.report import DatasetReport, DuplicatePair, inspect, load_report
from engine.data.shapes import (
    CLASS_NAMES,
    ShapesBatch,
    make_shape_image,
    make_shape_mask,
    make_shapes,
    write_sample_images,
)

__all__ = [
    "CLASS_NAMES",
    "ShapesBatch",
    "make_shape_image",
    "make_shape_mask",
    "make_shapes",
    "write_sample_images",
    # data sets on disk
    "Augmentation",
    "MIRRORS",
    "Dataset",
    "DatasetFile",
    "DatasetReport",
    "DuplicatePair",
    "SkippedFile",
    "ZipLimits",
    "augment_samples",
    "augmentation_layers",
    "delete_dataset",
    "export_demo",
    "import_folder",
    "import_zip",
    "inspect",
    "list_datasets",
    "load_augmentation",
    "load_report",
    "open_dataset",
    "save_augmentation",
    "tf_dataset",
]
