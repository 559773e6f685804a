"""The pieces of activation maximisation, each against a hand computation or a known property:
objectives, parameterisations, transforms, the disk cache, progress callbacks, background jobs,
top examples and DeepDream."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from engine.actmax import cached, deep_dream, objectives, plan, visualize
from engine.actmax.cache import ActMaxCache
from engine.actmax.jobs import finished_so_far, layer_work
from engine.actmax.network import Tap
from engine.actmax.objectives import Tensors
from engine.actmax.param import FourierImage, PixelImage
from engine.actmax.top_examples import layer_responses, top_examples
from engine.actmax.transforms import Jitter, RandomRotate, RandomScale, apply
from engine.errors import InvalidImageError, InvalidModelError
from engine.jobs import CANCELLED, FINISHED, JobQueue
from engine.models import load_model


@pytest.fixture(scope="module")
def demo():
    return load_model("demo")


def _tensors(rng):
    pre = tf.constant(rng.normal(size=(2, 4, 4, 3)), tf.float32)
    image = tf.constant(rng.uniform(size=(2, 6, 6, 3)), tf.float32)
    return Tensors({"conv": Tap(pre, tf.nn.relu(pre))}, image, tf.constant([2, 0]))


# ------------------------------------------------------------------------------ objectives
def test_channel_reads_each_images_own_unit(rng):
    t = _tensors(rng)
    out = t.taps["conv"].out.numpy()
    np.testing.assert_allclose(objectives.channel("conv", stage="out")(t),
                               [out[0, :, :, 2].mean(), out[1, :, :, 0].mean()], rtol=1e-6)
    np.testing.assert_allclose(objectives.channel("conv", 1, stage="out")(t),
                               out[:, :, :, 1].mean(axis=(1, 2)), rtol=1e-6)


def test_leaky_stage_is_output_plus_a_tenth_of_the_pre_activation(rng):
    t = _tensors(rng)
    pre, out = t.taps["conv"].pre.numpy(), t.taps["conv"].out.numpy()
    expected = (out + 0.1 * pre)[:, 2, 2, 1]
    np.testing.assert_allclose(objectives.neuron("conv", 1)(t), expected, rtol=1e-6)


def test_objectives_compose_like_numbers(rng):
    t = _tensors(rng)
    a, b = objectives.channel("conv"), objectives.total_variation()
    composed = 2 * a - 0.5 * b + 1
    np.testing.assert_allclose(composed(t), 2 * a(t) - 0.5 * b(t) + 1, rtol=1e-6)
    np.testing.assert_allclose((a * b)(t), a(t) * b(t), rtol=1e-6)
    assert composed.layers == {"conv"}
    assert composed.description == "2.0*channel(conv, each, leaky) - 0.5*tv() + 1.0"
    assert sum([a, b]).description == "channel(conv, each, leaky) + tv()"


def test_regularisers_by_hand(rng):
    t = _tensors(rng)
    x = t.image.numpy()
    tv = np.abs(np.diff(x, axis=1)).mean(axis=(1, 2, 3)) + np.abs(np.diff(x, axis=2)).mean(
        axis=(1, 2, 3))
    np.testing.assert_allclose(objectives.total_variation()(t), tv, rtol=1e-5)
    np.testing.assert_allclose(objectives.l2()(t), ((x - 0.5) ** 2).mean(axis=(1, 2, 3)),
                               rtol=1e-5)
    flat = Tensors(t.taps, tf.fill((2, 6, 6, 3), 0.3), t.units)
    np.testing.assert_allclose(objectives.blur()(flat), [0, 0], atol=1e-7)  # nothing to blur
    assert np.all(objectives.blur()(t).numpy() > 0)


def test_build_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="Unknown objective"):
        objectives.build("gradient", "conv")
    objective, measure = objectives.build("channel", "conv", tv=0.1, blur_weight=0.2)
    assert objective.description == ("channel(conv, each, leaky) - 0.1*tv() - 0.2*blur()")
    assert measure.description == "channel(conv, each, out)"


# ------------------------------------------------------------------------ parameterisations
def test_start_depends_on_seed_and_unit_only():
    param = FourierImage((16, 20))
    batch = param.initial([3, 7, 9], seed=5)
    np.testing.assert_array_equal(batch[1], param.initial([7], seed=5)[0])
    assert not np.array_equal(batch[1], param.initial([7], seed=6)[0])
    assert batch.shape == (3, 2, 3, 16, 11)


@pytest.mark.parametrize("param", [FourierImage((16, 20)), PixelImage((16, 20)),
                                   FourierImage((15, 15), decorrelate=False)])
def test_render_gives_valid_images_and_starts_near_grey(param):
    start = param.render(tf.constant(param.initial([0, 1], seed=0))).numpy()
    assert start.shape == (2, *param.size, 3)
    assert np.abs(start - 0.5).max() < 0.05
    wild = param.render(tf.constant(param.initial([0], seed=0) * 1000)).numpy()
    assert wild.min() >= 0 and wild.max() <= 1 and wild.std() > 0.1


def test_fourier_image_of_one_frequency_is_a_cosine():
    param = FourierImage((8, 8), decorrelate=False)
    spectrum = np.zeros((1, *param.shape), np.float32)
    spectrum[0, 0, :, 0, 1] = 1.0  # real part, every colour, frequency (0, 1/8)
    raw = param._raw(tf.constant(spectrum)).numpy()[0, :, :, 0]
    x = np.arange(8)
    scale = 8 * np.sqrt(64) / 64 / 4 * 2  # 1/f, unitary sqrt(hw), irfft 1/hw, /4, two halves
    np.testing.assert_allclose(raw, np.tile(scale * np.cos(2 * np.pi * x / 8), (8, 1)),
                               atol=1e-5)


# ------------------------------------------------------------------------------ transforms
def test_jitter_is_a_whole_pixel_shift():
    image = tf.constant(np.random.default_rng(0).uniform(size=(1, 12, 12, 1)), tf.float32)
    seed = tf.constant([0, 3])
    moved = apply(image, [Jitter(2)], seed).numpy()[0, :, :, 0]
    d = tf.random.stateless_uniform([2], tf.random.experimental.stateless_fold_in(seed, 0), -2,
                                    3, tf.int32).numpy()
    # Output pixel (y, x) shows input pixel (y + dy, x + dx) away from the edges.
    original = image.numpy()[0, :, :, 0]
    np.testing.assert_allclose(moved[3:9, 3:9], original[3 + d[1]:9 + d[1], 3 + d[0]:9 + d[0]],
                               atol=1e-5)


def test_rotation_and_scale_keep_the_centre_and_are_shared_by_the_batch():
    image = np.zeros((2, 9, 9, 1), np.float32)
    image[:, 4, 4] = 1.0
    out = apply(tf.constant(image), [RandomScale(0.8, 1.2), RandomRotate(30)],
                tf.constant([1, 2])).numpy()
    assert out[0, 4, 4, 0] == pytest.approx(out.max(), abs=1e-6)
    np.testing.assert_array_equal(out[0], out[1])
    unchanged = tf.constant(image)
    assert apply(unchanged, [], tf.constant([0, 0])) is unchanged


# ------------------------------------------------------------------ cache and callbacks
class Recorder:
    """A progress callback (``engine.progress``) that keeps every report and every published
    batch, and asks to stop after ``stop_after_batches`` batches."""

    def __init__(self, stop_after_batches=None):
        self.calls, self.batches = [], []
        self.stop_after_batches = stop_after_batches
        self.stop_requested = False

    def __call__(self, done, total, stage):
        self.calls.append((done, total, stage))

    def publish(self, part):
        self.batches.append(list(part.units))
        if self.stop_after_batches and len(self.batches) >= self.stop_after_batches:
            self.stop_requested = True

    @property
    def steps(self):
        return sum(stage.startswith("current batch") for _, _, stage in self.calls)


def test_callback_hears_every_step_and_batch(demo):
    recorder = Recorder()
    result = visualize(demo, "block1_conv1", [0, 1, 2], steps=3, size=16, batch_size=2,
                       callback=recorder)
    assert recorder.steps == 6 and recorder.batches == [[0, 1], [2]]
    assert list(result.units) == [0, 1, 2]
    # ``done`` counts filters: each step of the batch of 2 moves it by 2/3, of the last one by 1/3.
    steps = [call for call in recorder.calls if call[2].startswith("current batch")]
    np.testing.assert_allclose([done for done, _, _ in steps],
                               [2 / 3, 4 / 3, 2, 2 + 1 / 3, 2 + 2 / 3, 3])
    assert steps[0][1:] == (3, "current batch: 2 filters, step 1/3")
    assert steps[-1][1:] == (3, "current batch: 1 filters, step 3/3")
    assert recorder.calls[-1] == (3, 3, "batch finished")


def test_stopping_keeps_the_finished_batches(demo):
    recorder = Recorder(stop_after_batches=1)
    result = visualize(demo, "block1_conv1", [0, 1, 2, 3], steps=2, size=16, batch_size=2,
                       callback=recorder)
    assert list(result.units) == [0, 1]


def test_disk_cache_serves_what_was_computed(demo, tmp_path):
    first = visualize(demo, "block1_conv1", [4, 5], steps=3, size=16, cache_dir=tmp_path)
    recorder = Recorder()
    again = visualize(demo, "block1_conv1", [5, 6, 4], steps=3, size=16, cache_dir=tmp_path,
                      callback=recorder)
    # 4 and 5 come from disk at once; only 6 is computed.
    assert recorder.steps == 3
    assert recorder.batches[0] == [5, 4] and recorder.batches[1] == [6]
    assert list(again.units) == [5, 6, 4]
    np.testing.assert_array_equal(again.images[[2, 0]], first.images)
    np.testing.assert_array_equal(again.history[[2, 0]], first.history)
    # Other settings are other entries.
    other = Recorder()
    visualize(demo, "block1_conv1", [4], steps=3, size=16, cache_dir=tmp_path, seed=1,
              callback=other)
    assert other.steps == 3


def test_damaged_cache_file_is_computed_again(demo, tmp_path):
    visualize(demo, "block1_conv1", [0], steps=2, size=16, cache_dir=tmp_path)
    (file,) = list(tmp_path.rglob("0.npz"))
    file.write_bytes(b"not a zip")
    recorder = Recorder()
    visualize(demo, "block1_conv1", [0], steps=2, size=16, cache_dir=tmp_path,
              callback=recorder)
    assert recorder.steps == 2


def test_cache_keys_separate_models_layers_and_settings(tmp_path):
    a = ActMaxCache(tmp_path, "demo:1", "block1_conv1", {"steps": 3})
    assert a.folder != ActMaxCache(tmp_path, "demo:2", "block1_conv1", {"steps": 3}).folder
    assert a.folder != ActMaxCache(tmp_path, "demo:1", "block2_conv1", {"steps": 3}).folder
    assert a.folder != ActMaxCache(tmp_path, "demo:1", "block1_conv1", {"steps": 4}).folder
    assert a.missing([0, 1]) == [0, 1] and a.load([0]) == {}


# ------------------------------------------------------------------------- background jobs
def test_a_layer_job_publishes_its_batches_as_they_finish(demo, tmp_path):
    queue = JobQueue(max_running=1)
    request = plan(demo, "block1_conv1", [0, 1, 2], steps=2, size=16)
    gate = threading.Event()
    work = layer_work(request, tmp_path, batch_size=2)
    parts = []

    def gated(job):
        gate.wait(10)
        job.publish = lambda part, publish=job.publish: (parts.append(len(job.parts())),
                                                         publish(part))
        return work(job)

    job = queue.submit(request.key, gated)
    assert queue.submit(request.key, gated) is job  # a second viewer joins it
    assert job.alive and finished_so_far(job) is None
    gate.set()
    assert job.wait(60)
    assert job.status == FINISHED and job.fraction == 1.0
    assert sorted(finished_so_far(job).units) == [0, 1, 2]
    assert parts == [0, 1]  # two batches, each published when it finished
    assert sorted(cached(request, tmp_path).units) == [0, 1, 2]  # and on disk


def test_a_cancelled_layer_job_stops_and_keeps_what_it_finished(demo, tmp_path):
    queue = JobQueue(max_running=1)
    request = plan(demo, "block1_conv1", list(range(16)), steps=50, size=16)
    first_batch = threading.Event()
    work = layer_work(request, tmp_path, batch_size=1)

    def watched(job):
        job.publish = lambda part, publish=job.publish: (publish(part), first_batch.set())
        return work(job)

    job = queue.submit(request.key, watched)
    assert first_batch.wait(60)
    queue.cancel(job)
    assert job.wait(60) and job.status == CANCELLED
    done = len(cached(request, tmp_path))
    assert 0 < done < 16 and done == len(finished_so_far(job))


# -------------------------------------------------------------------------- top examples
def test_top_examples_match_a_plain_forward_pass(demo):
    from engine.data.shapes import make_shapes

    shapes = make_shapes(12, size=64, seed=3)
    layer = "block3_conv1"
    responses = layer_responses(demo, layer, shapes.images, batch_size=5)
    cut = keras.Model(demo.keras_model.inputs, demo.keras_model.get_layer(layer).output)
    maps = cut(shapes.images.astype(np.float32) / 255.0).numpy()
    np.testing.assert_allclose(responses.peaks, maps.max(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    assert responses.grid == (16, 16) and responses.rf_stride == 4

    examples = top_examples(demo, responses, shapes.images, unit=7, k=3)
    expected = np.argsort(-maps[..., 7].max(axis=(1, 2)), kind="stable")[:3]
    assert [e.index for e in examples] == list(expected)
    for e in examples:
        x0, y0, x1, y1 = e.box
        assert e.patch.shape == (y1 - y0, x1 - x0, 3)
        np.testing.assert_array_equal(e.patch, shapes.images[e.index][y0:y1, x0:x1])
        assert max(x1 - x0, y1 - y0) <= responses.rf_size
        # The strongest position's centre lies inside its patch.
        row, col = responses.where[e.index, 7]
        assert x0 <= col * 4 + 1.5 <= x1 and y0 <= row * 4 + 1.5 <= y1


def test_top_examples_need_images(demo):
    with pytest.raises(InvalidImageError):
        layer_responses(demo, "block1_conv1", [])


# ------------------------------------------------------------------------------ DeepDream
def test_deep_dream_amplifies_the_layer(demo):
    from engine.data.shapes import make_shapes

    image = make_shapes(1, size=80, seed=5).images[0]
    recorder = Recorder()
    dreamed = deep_dream(demo, image, "block3_conv1", octaves=2, steps=6, callback=recorder)
    assert dreamed.shape == image.shape and dreamed.dtype == np.uint8
    # ``done`` counts octaves: each of the 6 steps of an octave moves it by 1/6.
    np.testing.assert_allclose([done for done, _, _ in recorder.calls],
                               np.arange(1, 13) / 6)
    assert recorder.calls[0][1:] == (2, "Octave 1 of 2, step 1")
    assert recorder.calls[-1][1:] == (2, "Octave 2 of 2, step 6")
    network = demo.keras_model
    cut = keras.Model(network.inputs, network.get_layer("block3_conv1").output)
    resized = demo.prepare([image, dreamed]) / 255.0
    before, after = cut(resized).numpy().mean(axis=(1, 2, 3))
    assert after > 1.5 * before


def test_deep_dream_refuses_layers_without_a_map_and_bad_images(demo):
    with pytest.raises(InvalidModelError, match="feature map"):
        deep_dream(demo, np.zeros((32, 32, 3), np.uint8), "predictions", steps=1)
    with pytest.raises(InvalidImageError):
        deep_dream(demo, np.zeros((32, 32), np.uint8), "block1_conv1", steps=1)
