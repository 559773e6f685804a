"""Tests of the architecture table: every number against a hand computation, a published value
or Keras' own count."""

import keras
import pytest

from engine.errors import InvalidModelError
from engine.models.architecture import LayerInfo, layer_table, model_totals

L = keras.layers


def _rows_by_path(model):
    return {row.path: row for row in layer_table(model)}


def _leaf_params(model):
    """Sum of params over rows that are not nested models (those rows repeat their layers)."""
    nested = {row.path for row in layer_table(model) if row.type in ("Functional", "Sequential")}
    return sum(row.params for row in layer_table(model) if row.path not in nested)


# --- a tiny Sequential model, every figure by hand --------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    return keras.Sequential([
        keras.Input((16, 16, 3)),
        L.Conv2D(8, 3, name="conv1"),
        L.MaxPooling2D(2, name="pool"),
        L.Conv2D(16, 3, strides=2, padding="same", name="conv2"),
        L.Flatten(name="flatten"),
        L.Dense(10, name="dense"),
    ])


def test_tiny_rows_follow_layer_order(tiny):
    assert [row.path for row in layer_table(tiny)] == ["conv1", "pool", "conv2", "flatten", "dense"]
    assert all(isinstance(row, LayerInfo) and row.depth == 0 for row in layer_table(tiny))


def test_tiny_output_shapes(tiny):
    # 16 - 3 + 1 = 14; 14 / 2 = 7; ceil(7 / 2) = 4 with "same"; 4 * 4 * 16 = 256.
    expected = [(14, 14, 8), (7, 7, 8), (4, 4, 16), (256,), (10,)]
    assert [row.output_shape for row in layer_table(tiny)] == expected


def test_tiny_params(tiny):
    # conv1: 3*3*3*8 + 8; conv2: 3*3*8*16 + 16; dense: 256*10 + 10.
    expected = [3 * 3 * 3 * 8 + 8, 0, 3 * 3 * 8 * 16 + 16, 0, 256 * 10 + 10]
    assert [row.params for row in layer_table(tiny)] == expected
    assert sum(expected) == tiny.count_params()


def test_tiny_receptive_fields(tiny):
    # conv1: 1 + (3-1)*1 = 3, jump 1. pool: 3 + (2-1)*1 = 4, jump 1*2 = 2.
    # conv2: 4 + (3-1)*2 = 8, jump 2*2 = 4. Flatten and Dense mix every position: no field.
    rows = layer_table(tiny)
    assert [row.rf_size for row in rows] == [3, 4, 8, None, None]
    assert [row.rf_stride for row in rows] == [1, 2, 4, None, None]
    assert rows[2].rf_shape == (8, 8)


def test_tiny_flops(tiny):
    # 2 * Ho*Wo * kh*kw*Cin * Cout for convolutions, 2 * in * out for Dense, 0 for the rest.
    expected = [2 * 14 * 14 * 3 * 3 * 3 * 8, 0, 2 * 4 * 4 * 3 * 3 * 8 * 16, 0, 2 * 256 * 10]
    assert [row.flops for row in layer_table(tiny)] == expected


def test_tiny_totals(tiny):
    params = (3 * 3 * 3 * 8 + 8) + (3 * 3 * 8 * 16 + 16) + (256 * 10 + 10)
    flops = 2 * 14 * 14 * 3 * 3 * 3 * 8 + 2 * 4 * 4 * 3 * 3 * 8 * 16 + 2 * 256 * 10
    totals = model_totals(tiny)
    assert totals.params == params
    assert totals.trainable_params == params
    assert totals.non_trainable_params == 0
    assert totals.size_mb == pytest.approx(params * 4 / 2**20)  # float32
    assert totals.flops == flops
    assert totals.n_layers == 5
    assert totals.input_shape == (16, 16, 3)
    assert totals.output_shape == (10,)


# --- Sequential models in every state Keras 3 leaves them in ----------------------------------


def _small_stack():
    return [L.Conv2D(4, 3, name="c1"), L.MaxPooling2D(2, name="p1"), L.Conv2D(4, 3, name="c2"),
            L.GlobalAveragePooling2D(name="gap")]


def _check_small_stack(model):
    # 32 - 2 = 30; 30 / 2 = 15; 15 - 2 = 13. Fields 3, 4, 4 + 2*2 = 8, then none.
    rows = layer_table(model)
    assert [row.output_shape for row in rows] == [(30, 30, 4), (15, 15, 4), (13, 13, 4), (4,)]
    assert [row.rf_size for row in rows] == [3, 4, 8, None]


def test_sequential_never_called_with_input():
    _check_small_stack(keras.Sequential([keras.Input((32, 32, 3))] + _small_stack()))


def test_sequential_built_with_build():
    model = keras.Sequential(_small_stack())
    model.build((None, 32, 32, 3))
    _check_small_stack(model)


def test_sequential_without_input_shape_is_refused():
    model = keras.Sequential(_small_stack())
    with pytest.raises(InvalidModelError, match="build"):
        layer_table(model)


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = L.Conv2D(2, 3)

        def call(self, x):
            return self.conv(x)

    model = Net()
    model(keras.ops.zeros((1, 8, 8, 3)))
    with pytest.raises(InvalidModelError, match="Functional or Sequential"):
        model_totals(model)


# --- receptive fields -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def vgg16_224():
    return keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3))


def test_vgg16_published_receptive_fields(vgg16_224):
    # Five blocks of 3x3 convs (2, 2, 3, 3, 3), each closed by a 2x2/2 max pool. Jump 1, 2, 4,
    # 8, 16 in blocks 1-5, so the field grows 2, 4, 8, 16, 32 per conv and 1, 2, 4, 8, 16 per pool:
    # 1+2+2 = 5, +1 = 6 | +4+4 = 14, +2 = 16 | +8*3 = 40, +4 = 44 | +16*3 = 92, +8 = 100 |
    # +32*3 = 196, +16 = 212. These are the values of Araujo et al. (Distill 2019).
    rows = _rows_by_path(vgg16_224)
    assert (rows["block5_conv3"].rf_size, rows["block5_conv3"].rf_stride) == (196, 16)
    assert (rows["block5_pool"].rf_size, rows["block5_pool"].rf_stride) == (212, 32)


def test_vgg16_flops_match_published_count(vgg16_224):
    # Conv layers as (output side, Cin, Cout), all 3x3: 2 * side^2 * 9 * Cin * Cout each.
    convs = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128),
             (56, 128, 256), (56, 256, 256), (56, 256, 256),
             (28, 256, 512), (28, 512, 512), (28, 512, 512),
             (14, 512, 512), (14, 512, 512), (14, 512, 512)]
    hand = sum(2 * side * side * 9 * c_in * c_out for side, c_in, c_out in convs)
    assert model_totals(vgg16_224).flops == hand
    # Adding the three FC layers (25088*4096 + 4096*4096 + 4096*1000 multiply-adds) gives the
    # published 15.47 G multiply-adds of VGG16.
    fc_macs = 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    assert (hand / 2 + fc_macs) / 1e9 == pytest.approx(15.47, abs=0.01)


def test_dilated_conv_receptive_field():
    model = keras.Sequential([
        keras.Input((32, 32, 1)),
        L.Conv2D(1, 3, dilation_rate=2, name="d2"),
        L.Conv2D(1, 3, dilation_rate=4, name="d4"),
    ])
    rows = _rows_by_path(model)
    # 1 + (3-1)*2*1 = 5; 5 + (3-1)*4*1 = 13; dilation does not change the jump.
    assert (rows["d2"].rf_size, rows["d2"].rf_stride) == (5, 1)
    assert (rows["d4"].rf_size, rows["d4"].rf_stride) == (13, 1)


def test_asymmetric_kernels_give_rectangular_field():
    model = keras.Sequential([keras.Input((17, 17, 1)), L.Conv2D(1, (1, 7), name="c17"),
                              L.Conv2D(1, (3, 1), name="c31")])
    rows = _rows_by_path(model)
    assert rows["c17"].rf_shape == (1, 7)
    assert rows["c31"].rf_shape == (3, 7)
    assert rows["c31"].rf_size == 7  # the longer side


def _residual_model(swap_add_inputs=False):
    inputs = keras.Input((32, 32, 3))
    stem = L.Conv2D(8, 3, padding="same", name="stem")(inputs)
    long = L.Conv2D(8, 3, padding="same", name="a1")(stem)
    long = L.Conv2D(8, 3, padding="same", name="a2")(long)
    short = L.Conv2D(8, 1, name="shortcut")(stem)
    pair = [short, long] if swap_add_inputs else [long, short]
    merged = L.Add(name="add")(pair)
    out = L.Activation("relu", name="relu")(merged)
    return keras.Model(inputs, out)


@pytest.mark.parametrize("swap", [False, True])
def test_add_takes_the_widest_branch(swap):
    rows = _rows_by_path(_residual_model(swap))
    # stem 3; 3x3 path: 5, 7; 1x1 path: 3 + 0 = 3. Add: max(7, 3) = 7, passed on by relu.
    assert [rows[p].rf_size for p in ("stem", "a1", "a2", "shortcut")] == [3, 5, 7, 3]
    assert rows["add"].rf_size == 7
    assert rows["relu"].rf_size == 7


def test_concatenate_of_strided_branches():
    inputs = keras.Input((32, 32, 3))
    a = L.Conv2D(4, 3, strides=2, padding="same", name="a")(inputs)
    b = L.MaxPooling2D(3, strides=2, padding="same", name="b")(inputs)
    out = L.Concatenate(name="cat")([a, b])
    rows = _rows_by_path(keras.Model(inputs, out))
    # Both branches: 1 + (3-1)*1 = 3 with jump 2.
    assert (rows["cat"].rf_size, rows["cat"].rf_stride) == (3, 2)


def test_keras_ops_in_the_graph_pass_the_field_on():
    inputs = keras.Input((16, 16, 3))
    a = L.Conv2D(4, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(4, 5, padding="same", name="b")(inputs)
    merged = keras.ops.relu(keras.ops.add(a, b))  # operations, not layers: no row of their own
    rows = _rows_by_path(keras.Model(inputs, L.Conv2D(4, 3, name="c")(merged)))
    assert list(rows) == ["a", "b", "c"]
    assert rows["c"].rf_size == 5 + 2  # widest input (b: 5) + (3-1)*1


@pytest.mark.parametrize("layer", [
    L.GlobalAveragePooling2D(), L.Flatten(), L.UpSampling2D(2), L.Conv2DTranspose(2, 3),
    L.Reshape((-1, 3)),
], ids=lambda layer: type(layer).__name__)
def test_layers_without_a_field(layer):
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(3, 3, padding="same"), layer])
    row = layer_table(model)[-1]
    assert row.rf_size is None and row.rf_stride is None and row.rf_shape is None


def test_padding_keeps_field():
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(3, 3, name="c"),
                              L.ZeroPadding2D(1, name="pad"), L.Cropping2D(1, name="crop")])
    rows = _rows_by_path(model)
    assert rows["pad"].rf_size == rows["crop"].rf_size == 3


# --- FLOPs of the less common convolutions ---------------------------------------------------


def test_depthwise_flops_and_params():
    model = keras.Sequential([keras.Input((8, 8, 4)),
                              L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")])
    row = layer_table(model)[0]
    # 2 * Ho*Wo * kh*kw * C * multiplier; weights 3*3*4*2 + bias 4*2.
    assert row.flops == 2 * 8 * 8 * 3 * 3 * 4 * 2
    assert row.params == 3 * 3 * 4 * 2 + 4 * 2
    assert row.output_shape == (8, 8, 8)


def test_separable_flops_are_depthwise_plus_pointwise():
    model = keras.Sequential([keras.Input((8, 8, 4)), L.SeparableConv2D(6, 3, padding="same")])
    depthwise = 2 * 8 * 8 * 3 * 3 * 4
    pointwise = 2 * 8 * 8 * 4 * 6
    assert layer_table(model)[0].flops == depthwise + pointwise


def test_grouped_conv_flops():
    model = keras.Sequential([keras.Input((5, 5, 8)), L.Conv2D(4, 3, groups=2)])
    # Each output channel sees Cin / groups = 4 input channels.
    assert layer_table(model)[0].flops == 2 * 3 * 3 * 3 * 3 * 4 * 4


def test_transposed_conv_flops():
    model = keras.Sequential([keras.Input((5, 5, 2)), L.Conv2DTranspose(4, 3, strides=2)])
    # Every input position scatters a 3x3 kernel to each of the 4 output channels.
    assert layer_table(model)[0].flops == 2 * 5 * 5 * 3 * 3 * 2 * 4


def test_shared_layer_counts_every_call():
    shared = L.Dense(3, name="shared")
    a, b = keras.Input((5,)), keras.Input((5,))
    model = keras.Model([a, b], L.Add()([shared(a), shared(b)]))
    assert _rows_by_path(model)["shared"].flops == 2 * (2 * 5 * 3)
    assert model_totals(model).params == model.count_params()


# --- nested models -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transfer_model():
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(64, 64, 3))
    return keras.Sequential([base, L.GlobalAveragePooling2D(name="gap"), L.Dense(2, name="dense")])


def test_nested_rows_have_paths_and_depth(transfer_model):
    rows = layer_table(transfer_model)
    assert (rows[0].path, rows[0].depth, rows[0].type) == ("vgg16", 0, "Functional")
    assert (rows[1].path, rows[1].depth) == ("vgg16/block1_conv1", 1)
    assert rows[1].output_shape == (64, 64, 64)
    assert rows[-1].path == "dense" and rows[-1].depth == 0


def test_nested_receptive_field_matches_standalone(transfer_model):
    rows = _rows_by_path(transfer_model)
    assert (rows["vgg16/block5_conv3"].rf_size, rows["vgg16/block5_conv3"].rf_stride) == (196, 16)
    assert rows["vgg16"].rf_size == 212  # the nested model's own row: its output's field


def test_nested_totals_match_keras(transfer_model):
    totals = model_totals(transfer_model)
    assert totals.params == transfer_model.count_params()
    assert _leaf_params(transfer_model) == transfer_model.count_params()
    assert totals.n_layers == 18 + 2  # VGG16 without top has 18 layers besides its input
    rows = _rows_by_path(transfer_model)
    assert rows["vgg16"].params == transfer_model.layers[0].count_params()
    assert rows["vgg16"].flops == totals.flops - rows["dense"].flops


def test_nested_field_continues_from_outer_layers():
    inner = keras.Sequential([L.Conv2D(4, 3, name="c1"), L.Conv2D(4, 3, name="c2")], name="inner")
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(4, 3, strides=2, name="outer_conv")(inputs)  # rf 3, jump 2
    model = keras.Model(inputs, inner(x))
    rows = _rows_by_path(model)
    # 3 + (3-1)*2 = 7, then 7 + 4 = 11, both at jump 2.
    assert (rows["inner/c1"].rf_size, rows["inner/c2"].rf_size) == (7, 11)
    assert rows["inner/c2"].rf_stride == 2
    assert rows["inner/c2"].output_shape == (3, 3, 4)  # 16 -> 7 -> 5 -> 3


def test_nested_base_built_for_any_size_gets_concrete_shapes():
    base = keras.Sequential([keras.Input((None, None, 3)), L.Conv2D(4, 3, name="c")], name="base")
    model = keras.Sequential([keras.Input((10, 10, 3)), base, L.Flatten()])
    row = _rows_by_path(model)["base/c"]
    assert row.output_shape == (8, 8, 4)
    assert row.flops == 2 * 8 * 8 * 3 * 3 * 3 * 4


def test_nested_subclassed_model_is_one_opaque_row():
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.conv = L.Conv2D(2, 3, name="inner_conv")

        def call(self, x):
            return self.conv(x)

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, Net()(inputs))
    rows = _rows_by_path(model)
    assert rows["net"].output_shape == (6, 6, 2)  # Keras can still infer what comes out
    assert rows["net"].rf_size is None and rows["net"].flops == 0  # but not what is inside
    assert rows["net/inner_conv"].output_shape is None


def test_frozen_base_rows_and_totals():
    base = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="c"),
                             L.BatchNormalization(name="bn")], name="base")
    base.trainable = False
    model = keras.Sequential([keras.Input((8, 8, 3)), base, L.Flatten(), L.Dense(2, name="head")])
    rows = _rows_by_path(model)
    assert not rows["base"].trainable and not rows["base/c"].trainable
    assert not rows["base/bn"].trainable
    assert rows["head"].trainable
    totals = model_totals(model)
    head = 6 * 6 * 4 * 2 + 2
    assert totals.trainable_params == head
    # conv 3*3*3*4 + 4, BN gamma/beta/mean/variance 4 each.
    assert totals.non_trainable_params == (3 * 3 * 3 * 4 + 4) + 4 * 4


def test_batch_norm_statistics_are_non_trainable():
    model = keras.Sequential([keras.Input((4, 4, 3)), L.BatchNormalization()])
    totals = model_totals(model)
    assert (totals.trainable_params, totals.non_trainable_params) == (3 * 2, 3 * 2)


# --- Keras applications: the table runs and adds up -------------------------------------------

# (builder, input side, last spatial layer, its published receptive field or None). The fields
# are those tabulated by Araujo et al., "Computing Receptive Fields of CNNs", Distill 2019.
APPLICATIONS = {
    "MobileNet": (lambda s: keras.applications.MobileNet(
        alpha=0.25, weights=None, input_shape=(s, s, 3), classes=10), 32, "conv_pw_13_relu", 315),
    "ResNet50": (lambda s: keras.applications.ResNet50(
        weights=None, input_shape=(s, s, 3), classes=10), 32, "conv5_block3_out", 483),
    "InceptionV3": (lambda s: keras.applications.InceptionV3(
        weights=None, input_shape=(s, s, 3), classes=10), 75, "mixed10", 1311),
    "DenseNet121": (lambda s: keras.applications.DenseNet121(
        weights=None, input_shape=(s, s, 3), classes=10), 32, None, None),
    "Xception": (lambda s: keras.applications.Xception(
        weights=None, input_shape=(s, s, 3), classes=10), 71, None, None),
    "EfficientNetB0": (lambda s: keras.applications.EfficientNetB0(
        weights=None, input_shape=(s, s, 3), classes=10), 32, None, None),
}


# All six take about 4 s together on 2 cores, so none is marked slow.
@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_application_table_adds_up(name):
    build, side, last_spatial, published_rf = APPLICATIONS[name]
    model = build(side)
    rows = layer_table(model)
    assert len(rows) == len(model.layers) - 1  # every layer but the input
    assert sum(row.params for row in rows) == model.count_params()
    totals = model_totals(model)
    assert totals.params == model.count_params()
    assert totals.trainable_params + totals.non_trainable_params == model.count_params()
    assert totals.output_shape == (10,)
    assert rows[-1].output_shape == (10,)
    if published_rf is not None:
        assert _rows_by_path(model)[last_spatial].rf_size == published_rf
