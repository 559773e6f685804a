"""``ExplorableModel``: a Keras classifier plus everything needed to explore it.

The wrapper takes RGB images with values 0-255 at any size: resizing to the network's input and
the network's own preprocessing happen inside, so the rest of the engine (feature maps, saliency,
activation maximisation) and notebook users never think about either. Class names travel with the
model. The wrapped Keras model is never mutated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from engine.errors import InvalidImageError
from engine.images import resize_image
from engine.models.layers import conv_layer_paths
from engine.models.preprocessing import DetectedPreprocessing, preprocess

ImageBatch = "np.ndarray | Sequence[np.ndarray]"


@dataclass(eq=False)
class ExplorableModel:
    """A classifier ready to be explored.

    Attributes:
        keras_model: the network as built or loaded; it expects preprocessed input at
            ``input_size``. Treat it as read-only (it is shared between sessions).
        name: catalogue name (``"demo"``, ``"vgg16"``) or the user's file name.
        class_names: one name per output unit.
        preprocessing: a mode of ``engine.models.preprocessing.PREPROCESSING_MODES``.
        input_size: (height, width) of the network input.
        title: a readable title for people.
        source: where the weights came from (shown in the UI and the model card).
        detected_preprocessing: what the network's own leading layers say about its input
            (``engine.models.preprocessing.detect_preprocessing``), for models loaded from a
            file; None for models built here.
    """

    keras_model: keras.Model
    name: str
    class_names: list[str]
    preprocessing: str
    input_size: tuple[int, int]
    title: str = ""
    source: str = ""
    detected_preprocessing: DetectedPreprocessing | None = None
    _forward: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.title = self.title or self.name
        h, w = self.input_size
        spec = tf.TensorSpec((None, h, w, 3), tf.float32)
        # One traced graph for any batch size: no retracing when the number of images changes.
        self._forward = tf.function(self._probabilities_graph, input_signature=[spec])

    # ----------------------------------------------------------------- properties
    @property
    def channels(self) -> int:
        """3 for RGB networks, 1 for grayscale ones (fed the luminance of the RGB input)."""
        return int(self.keras_model.inputs[0].shape[-1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def conv_layers(self) -> list[str]:
        """Paths of every convolution layer, nested models included (``"vgg16/block5_conv3"``)."""
        return conv_layer_paths(self.keras_model)

    @property
    def key(self) -> str:
        """A stable, hashable identity for caches: name, preprocessing and a digest of the
        weights' shapes and a few values (two models with the same name but other weights, or
        the same file fed other pixel values, get other keys)."""
        digest = hashlib.sha1(f"{self.name}\0{self.preprocessing}".encode())
        for w in self.keras_model.weights[:4] + self.keras_model.weights[-4:]:
            value = np.asarray(w.numpy())
            digest.update(str(value.shape).encode())
            digest.update(value.ravel()[:64].tobytes())
        return f"{self.name}:{digest.hexdigest()[:16]}"

    @property
    def output_activation(self) -> str:
        """``"softmax"``, ``"sigmoid"`` or ``"linear"`` (logits): what the last layer applies."""
        return _output_activation(self.keras_model)

    # ----------------------------------------------------------------- computing
    def prepare(self, images: ImageBatch) -> np.ndarray:
        """Resize images to the network input.

        Args:
            images: one (H, W, 3) uint8 image, a list of them (sizes may differ), or an
                (N, H, W, 3) array, RGB 0-255.

        Returns:
            (N, h, w, 3) float32 in [0, 255] at ``input_size``.

        Raises:
            InvalidImageError: an image is not (H, W, 3).
        """
        batch = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
        if not batch:
            raise InvalidImageError("No images were given: choose or upload at least one image.")
        h, w = self.input_size
        out = np.empty((len(batch), h, w, 3), np.float32)
        for i, image in enumerate(batch):
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[-1] != 3:
                raise InvalidImageError(
                    f"Image {i + 1} has shape {image.shape}; expected (height, width, 3) RGB.")
            if image.dtype != np.uint8:
                image = np.clip(image, 0, 255).astype(np.uint8)
            out[i] = image if image.shape[:2] == (h, w) else resize_image(image, (h, w))
        return out

    def preprocess(self, x: tf.Tensor) -> tf.Tensor:
        """(N, h, w, 3) RGB 0-255 -> what the network's first layer expects (differentiable)."""
        if self.channels == 1:
            x = tf.image.rgb_to_grayscale(x)
        return preprocess(x, self.preprocessing)

    def logits_or_probabilities(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        """The network's raw output for (N, h, w, 3) RGB 0-255 input, inside a graph or eagerly."""
        return self.keras_model(self.preprocess(x), training=training)

    def _probabilities_graph(self, x: tf.Tensor) -> tf.Tensor:
        return _to_probabilities(self.logits_or_probabilities(x), self.output_activation)

    def probabilities(self, images: ImageBatch, batch_size: int = 32) -> np.ndarray:
        """Class probabilities.

        Args:
            images: as for ``prepare``.
            batch_size: images per forward pass (bounds memory for large selections).

        Returns:
            (N, n_classes) float32, rows summing to 1.
        """
        x = self.prepare(images)
        parts = [self._forward(tf.constant(x[i:i + batch_size])).numpy()
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts).astype(np.float32)


def _output_activation(model: keras.Model) -> str:
    last = model.layers[-1]
    if isinstance(last, keras.Model):
        return _output_activation(last)
    if isinstance(last, keras.layers.Softmax):
        return "softmax"
    name = getattr(getattr(last, "activation", None), "__name__", "linear")
    return name if name in ("softmax", "sigmoid") else "linear"


def _to_probabilities(out: tf.Tensor, activation: str) -> tf.Tensor:
    if out.shape[-1] == 1:
        # One unit is a binary classifier: expand it to [p(class 0), p(class 1)].
        p = out if activation == "sigmoid" else tf.sigmoid(out)
        return tf.concat([1.0 - p, p], axis=-1)
    if activation == "softmax":
        return out
    return tf.nn.softmax(out, axis=-1)
