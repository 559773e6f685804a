"""How one number of a convolution's feature map is computed, spelt out for teaching.

For a ``Conv2D`` layer with kernel ``W`` (kh, kw, C_in, C_out), bias ``b``, stride ``s``,
dilation ``d`` and activation ``f``, the value at row ``r``, column ``c`` of output channel ``k``
is::

    out[r, c, k] = f( b[k] + sum over i, j, ch of
                             in[r*s + i*d - top, c*s + j*d - left, ch] * W[i, j, ch, k] )

where ``in`` is the layer's own input (the previous layer's output; the preprocessed image for
the first layer) and ``top``/``left`` are the zero padding of ``padding="same"`` (TensorFlow puts
the odd extra row or column at the bottom/right). ``conv_arithmetic`` returns every piece of that
sum, so a page can show the patch under the window, the kernel, their element-wise products and
the total, and a test can check the result against the map Keras computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from engine.errors import InvalidModelError


@dataclass(frozen=True)
class ConvArithmetic:
    """Every term of one output value of a ``Conv2D`` layer.

    Attributes:
        row, col, channel: the output position and channel explained.
        input_rows, input_cols: (kh,), (kw,) int: the rows/columns of the layer input under the
            kernel; outside ``[0, h)`` / ``[0, w)`` means zero padding.
        patch: (kh, kw, C_in) float32: the input values under the window (0 on padding).
        inside: (kh, kw) bool: False where the window hangs over the zero padding.
        kernel: (kh, kw, C_in) float32: the weights of output channel ``channel``.
        products: (kh, kw, C_in) float64: ``patch * kernel``.
        channel_sums: (C_in,) float64: the products summed per input channel.
        total: the sum of every product.
        bias: the bias of ``channel`` (0 without bias).
        pre_activation: ``total + bias``.
        activation: the activation's name (``"relu"``, ``"linear"``).
        value: the activation applied: the number the feature map shows.
    """

    row: int
    col: int
    channel: int
    input_rows: np.ndarray
    input_cols: np.ndarray
    patch: np.ndarray
    inside: np.ndarray
    kernel: np.ndarray
    products: np.ndarray
    channel_sums: np.ndarray
    total: float
    bias: float
    pre_activation: float
    activation: str
    value: float


def explainable(layer: keras.layers.Layer) -> bool:
    """Whether ``conv_arithmetic`` can spell out ``layer``: a plain, channels-last Conv2D."""
    return (isinstance(layer, keras.layers.Conv2D) and getattr(layer, "groups", 1) == 1
            and layer.data_format == "channels_last")


def output_size(layer: keras.layers.Conv2D, in_h: int, in_w: int) -> tuple[int, int]:
    """(h, w) of the layer's output for an (in_h, in_w) input."""
    return tuple(_out_and_pad(n, k, s, d, layer.padding)[0] for n, k, s, d in
                 zip((in_h, in_w), layer.kernel_size, layer.strides, layer.dilation_rate))


def conv_arithmetic(layer: keras.layers.Conv2D, layer_input: np.ndarray, row: int, col: int,
                    channel: int) -> ConvArithmetic:
    """Recompute one output value of ``layer`` by hand, keeping every term.

    Args:
        layer: a built ``Conv2D`` (``explainable(layer)``).
        layer_input: (h, w, C_in) float32: the layer's input for one image.
        row, col: the output position.
        channel: the output channel.

    Returns:
        ``ConvArithmetic``.

    Raises:
        InvalidModelError: the layer is not a plain Conv2D (depthwise, separable, grouped,
            transposed or channels-first convolutions are not spelt out).
        ValueError: the position or channel is outside the output, or the input does not fit.
    """
    if not explainable(layer):
        raise InvalidModelError(f"'{layer.name}' is a {type(layer).__name__}; the step-by-step "
                                "arithmetic is shown for plain Conv2D layers.")
    x = np.asarray(layer_input, np.float32)
    kernel = np.asarray(layer.kernel.numpy(), np.float32)
    kh, kw, c_in, c_out = kernel.shape
    if x.ndim != 3 or x.shape[-1] != c_in:
        raise ValueError(f"The input of '{layer.name}' must be (h, w, {c_in}), not {x.shape}.")
    (out_h, pad_top), (out_w, pad_left) = (
        _out_and_pad(n, k, s, d, layer.padding) for n, k, s, d in
        zip(x.shape[:2], layer.kernel_size, layer.strides, layer.dilation_rate))
    if not (0 <= row < out_h and 0 <= col < out_w and 0 <= channel < c_out):
        raise ValueError(f"Position ({row}, {col}) channel {channel} is outside the "
                         f"{out_h}x{out_w}x{c_out} output of '{layer.name}'.")
    (s_h, s_w), (d_h, d_w) = layer.strides, layer.dilation_rate
    rows = row * s_h + np.arange(kh) * d_h - pad_top
    cols = col * s_w + np.arange(kw) * d_w - pad_left
    inside = (((rows >= 0) & (rows < x.shape[0]))[:, None]
              & ((cols >= 0) & (cols < x.shape[1]))[None])
    patch = np.zeros((kh, kw, c_in), np.float32)
    patch[inside] = x[np.clip(rows, 0, x.shape[0] - 1)][:, np.clip(cols, 0, x.shape[1] - 1)][inside]
    bias = np.asarray(layer.bias.numpy(), np.float64) if layer.use_bias else np.zeros(c_out)
    # Every output channel's sum at this position: an activation such as softmax needs them all.
    pre = np.tensordot(patch.astype(np.float64), kernel.astype(np.float64), axes=3) + bias
    activated = keras.ops.convert_to_numpy(layer.activation(keras.ops.convert_to_tensor(
        pre.astype(np.float32)[None])))[0]
    products = patch.astype(np.float64) * kernel[..., channel]
    return ConvArithmetic(
        row=row, col=col, channel=channel, input_rows=rows, input_cols=cols, patch=patch,
        inside=inside, kernel=kernel[..., channel], products=products,
        channel_sums=products.sum(axis=(0, 1)), total=float(products.sum()),
        bias=float(bias[channel]), pre_activation=float(pre[channel]),
        activation=getattr(layer.activation, "__name__", type(layer.activation).__name__),
        value=float(activated[channel]))


def _out_and_pad(size: int, kernel: int, stride: int, dilation: int, padding: str):
    """Output length and padding before, as TensorFlow computes them."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return (size - span) // stride + 1, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return out, total // 2


def channel_colours(n_channels: int, preprocessing: str) -> list[str]:
    """The colour of each input channel of a network's first layer: ``["grey"]`` for one
    channel, blue-green-red after Caffe preprocessing (it swaps red and blue), else
    red-green-blue."""
    if n_channels == 1:
        return ["grey"]
    return ["blue", "green", "red"] if preprocessing == "caffe" else ["red", "green", "blue"]
