"""The model catalogue: one small spec per model a user can pick.

Adding a backbone is one ``ModelSpec`` entry (after timm's registry), not a new ``if``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras

ASSETS = Path(__file__).resolve().parents[2] / "assets"
DEMO_MODEL_PATH = ASSETS / "demo_model.keras"
DEMO_CARD_PATH = ASSETS / "demo_model.json"
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/"


@dataclass(frozen=True)
class ModelSpec:
    """What the catalogue knows about a model before it is loaded.

    Attributes:
        name: the key users and code pass to ``load_model`` (``"vgg16"``).
        title: readable title.
        family: ``"demo"``, ``"scratch"`` or ``"imagenet"``.
        input_size: (height, width) the weights were trained at.
        preprocessing: a mode of ``PREPROCESSING_MODES``.
        weights: ``"bundled"``, ``"random"`` or ``"imagenet"``.
        weights_file: for ImageNet models, the file name Keras caches in ``~/.keras/models``.
        download_mb: approximate size of that file, told to users before they wait for it.
        builder: builds the Keras network; takes ``weights=`` and ``input_shape=``.
        description: one plain sentence for people, shown under the sidebar's model picker.
    """

    name: str
    title: str
    family: str
    input_size: tuple[int, int]
    preprocessing: str
    weights: str
    description: str
    weights_file: str | None = None
    download_mb: float = 0.0
    builder: Callable[..., keras.Model] | None = field(default=None, compare=False, repr=False)

    @property
    def needs_download(self) -> bool:
        return self.weights == "imagenet"


def _app(name, title, builder, size, prep, weights_file, mb, description, **kwargs) -> ModelSpec:
    def build(weights="imagenet", input_shape=None, **extra):
        return builder(weights=weights, input_shape=input_shape, **{**kwargs, **extra})

    return ModelSpec(name=name, title=title, family="imagenet", input_size=(size, size),
                     preprocessing=prep, weights="imagenet", weights_file=weights_file,
                     download_mb=mb, builder=build, description=description)


def _mobilenet(alpha: float) -> ModelSpec:
    text = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[alpha]
    return _app(f"mobilenet_{alpha}", f"MobileNet (alpha {alpha:g})", keras.applications.MobileNet,
                224, "tf", f"mobilenet_{text}_224_tf.h5",
                {1.0: 17, 0.75: 10, 0.5: 5.3, 0.25: 2.1}[alpha],
                f"Howard et al. 2017: depthwise separable convolutions, width x{alpha:g}; "
                "small and fast.", alpha=alpha)


_A = keras.applications
_SPECS: list[ModelSpec] = [
    ModelSpec("demo", "Shapes demo CNN (bundled)", "demo", (64, 64), "unit", "bundled",
              "A small CNN trained by this project to tell six shapes apart; works offline."),
    ModelSpec("scratch", "Scratch CNN (untrained)", "scratch", (128, 128), "unit", "random",
              "The classic CNN (Chollet): Conv2D 32/64/128/128 + MaxPooling blocks, Flatten, "
              "Dropout 0.5, Dense 512, with random weights: its answers are guesses until a "
              "run on the Train page trains it on a data set."),
    _app("vgg16", "VGG16", _A.VGG16, 224, "caffe",
         "vgg16_weights_tf_dim_ordering_tf_kernels.h5", 528,
         "Simonyan & Zisserman 2014: 13 3x3 conv layers in 5 blocks, 3 dense layers."),
    _app("vgg19", "VGG19", _A.VGG19, 224, "caffe",
         "vgg19_weights_tf_dim_ordering_tf_kernels.h5", 549,
         "VGG with 16 conv layers."),
    _app("resnet50", "ResNet50", _A.ResNet50, 224, "caffe",
         "resnet50_weights_tf_dim_ordering_tf_kernels.h5", 98,
         "He et al. 2015: residual blocks with skip connections, 50 layers deep."),
    _mobilenet(1.0), _mobilenet(0.75), _mobilenet(0.5), _mobilenet(0.25),
    _app("mobilenet_v2", "MobileNetV2", _A.MobileNetV2, 224, "tf",
         "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5", 14,
         "Sandler et al. 2018: inverted residual blocks with linear bottlenecks."),
    _app("efficientnet_b0", "EfficientNetB0", _A.EfficientNetB0, 224, "raw",
         "efficientnetb0.h5", 21,
         "Tan & Le 2019: compound-scaled MBConv blocks with squeeze-and-excitation."),
    _app("inception_v3", "InceptionV3", _A.InceptionV3, 299, "tf",
         "inception_v3_weights_tf_dim_ordering_tf_kernels.h5", 92,
         "Szegedy et al. 2015: parallel 1x1/3x3/5x5 branches in each Inception module."),
    _app("densenet121", "DenseNet121", _A.DenseNet121, 224, "torch",
         "densenet121_weights_tf_dim_ordering_tf_kernels.h5", 33,
         "Huang et al. 2016: every layer of a block sees the feature maps of all earlier ones."),
    _app("xception", "Xception", _A.Xception, 299, "tf",
         "xception_weights_tf_dim_ordering_tf_kernels.h5", 88,
         "Chollet 2016: Inception taken to depthwise separable convolutions."),
]
CATALOGUE: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def list_models() -> list[ModelSpec]:
    """Every catalogue entry, the default (``demo``) first."""
    return list(_SPECS)


def get_spec(name: str) -> ModelSpec:
    """The catalogue entry called ``name``.

    Raises:
        KeyError: no entry has that name.
    """
    return CATALOGUE[name]


def demo_model_card() -> dict:
    """The bundled demo model's card (classes, input size, held-out accuracy, training set-up)."""
    return json.loads(DEMO_CARD_PATH.read_text(encoding="utf-8"))
