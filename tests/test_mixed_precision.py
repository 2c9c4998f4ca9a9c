"""Mixed precision (lite_tf/precision.py, EpisodicModel(dtype_policy=...)): per-image maps in low
precision, heads in float32, bfloat16 gradients near float32's, float16 loss scaling survives overflow."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from learner_helpers import IMAGE_SIZE, make_episode, tiny_learner
from lite_tf import EpisodicModel, LiteConfig, episode_signature
from lite_tf.backbones.conv import conv4
from lite_tf.learners.protonets import ProtoNets
from lite_tf.errors import ConfigError

# bfloat16 keeps 8 bits of mantissa (relative rounding 2**-9 per op). The heads subtract close
# features (prototype distances, covariances), which amplifies that rounding: on this fixed episode
# the episode gradient stays within 10% (relative L2) of float32's and points the same way
# (cosine > 0.995). Measured: ProtoNets 7.6% / 0.997.
BFLOAT16_RELATIVE_TOLERANCE = 0.10


def _learner(name):
    if name == "protonets":
        return ProtoNets(conv4(IMAGE_SIZE, filters=8, blocks=2))
    return tiny_learner(name)


def _model(name, policy, mode="full"):
    keras.utils.set_random_seed(3)
    return EpisodicModel(_learner(name), IMAGE_SIZE, lite=LiteConfig(mode=mode, h=4, chunk_size=4),
                         dtype_policy=policy, seed=1)


def _episode():
    return make_episode([3, 2, 2], queries=2, seed=4)


@pytest.mark.parametrize("name", ["protonets", "simple_cnaps"])
def test_bfloat16_gradients_are_close_to_float32(name):
    episode = _episode()
    reference = _model(name, "float32")
    low = _model(name, "mixed_bfloat16")
    for a, b in zip(reference.trainable_variables, low.trainable_variables):
        assert a.dtype == b.dtype == "float32"  # variables stay float32
        b.assign(a)
    loss32, _, grads32 = reference.episode_gradients(episode)
    loss16, _, grads16 = low.episode_gradients(episode)
    flat32 = tf.concat([tf.reshape(g, [-1]) for g in grads32], 0)
    flat16 = tf.concat([tf.reshape(g, [-1]) for g in grads16], 0)
    assert flat16.dtype == tf.float32
    relative = float(tf.norm(flat16 - flat32) / tf.norm(flat32))
    cosine = float(tf.reduce_sum(flat16 * flat32) / (tf.norm(flat16) * tf.norm(flat32)))
    assert 0 < relative < BFLOAT16_RELATIVE_TOLERANCE  # > 0: the backbone really ran in bfloat16
    assert cosine > 0.995
    assert float(loss16) == pytest.approx(float(loss32), rel=0.02)


def test_per_image_maps_low_precision_heads_float32():
    model = _model("simple_cnaps", "mixed_bfloat16")
    learner = model.learner
    assert learner.backbone.layers[1].compute_dtype == "bfloat16"
    assert learner.set_encoder.layers[1].compute_dtype == "bfloat16"
    assert learner.film_generator.compute_dtype == "float32"
    assert all(layer.compute_dtype == "float32" for layer in learner.film_generator._flatten_layers())
    episode = _episode()
    features = learner.features(tf.constant(episode["query_images"]), learner.task_film(episode["support_images"]))
    assert features.dtype == tf.float32  # the backbone's output layer is float32


def test_global_policy_is_honoured_and_bad_policy_named():
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = EpisodicModel(_learner("protonets"), IMAGE_SIZE)
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.precision == "mixed_bfloat16"
    assert model.learner.backbone.layers[1].compute_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="dtype_policy 'float8'"):
        EpisodicModel(_learner("protonets"), IMAGE_SIZE, dtype_policy="float8")


def test_float16_compile_wraps_loss_scaling():
    model = _model("protonets", "mixed_float16")
    model.compile(keras.optimizers.SGD(0.1))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.parametrize("mode", ["lite", "exact"])
def test_float16_loss_scaling_survives_an_overflow_step(mode):
    model = _model("protonets", "mixed_float16", mode=mode)
    # 2**30 x the loss overflows float16 (max 65504) in the backbone's backward pass.
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1), initial_scale=2.0 ** 30))
    before = [v.numpy() for v in model.trainable_variables]
    episodes = [_episode() for _ in range(3)]
    data = tf.data.Dataset.from_generator(lambda: iter(episodes), output_signature=episode_signature(IMAGE_SIZE))
    model.fit(data.take(1), epochs=1, verbose=0)
    after_overflow = [v.numpy() for v in model.trainable_variables]
    assert all(np.array_equal(a, b) for a, b in zip(before, after_overflow))  # the step was skipped
    assert float(model.optimizer.dynamic_scale) == 2.0 ** 29  # and the scale halved
    model.fit(data.repeat(8), epochs=1, verbose=0)  # the scale halves until steps apply
    final = [v.numpy() for v in model.trainable_variables]
    assert all(np.isfinite(w).all() for w in final)
    assert max(np.abs(a - b).max() for a, b in zip(before, final)) > 0  # and training went on
