"""Data sets: the procedural shapes set the demo model is trained on."""

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
]
