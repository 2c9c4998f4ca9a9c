"""XLA for the per-image no-gradient passes (LiteConfig(jit_compile=True)): one trace per compiled
function over episodes of varying sizes, results equal to the dynamic path."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from helpers import IMAGE_SIZE, episode_dataset, make_episode, protonets_model
from lite_tf import LiteConfig
from lite_tf.errors import ConfigError
from lite_tf.lite import chunked_map


def test_compiled_chunks_trace_once_over_fifty_support_sizes():
    keras.utils.set_random_seed(0)
    layer = keras.layers.Conv2D(4, 3)
    layer.build((None, IMAGE_SIZE, IMAGE_SIZE, 3))
    compiled = tf.function(lambda x: tf.reduce_mean(layer(x), [1, 2]), jit_compile=True)
    outer = tf.function(lambda x: chunked_map(compiled, x, 6, jit_compile=True),
                        input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3])])
    rng = np.random.default_rng(0)
    for size in rng.integers(1, 40, size=50):
        images = rng.normal(size=(size, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)
        result = outer(images)
        if size in (1, 13):
            expected = tf.reduce_mean(layer(images), [1, 2])
            np.testing.assert_allclose(result, expected, atol=1e-5)
        assert result.shape[0] == size
    assert compiled.experimental_get_tracing_count() == 1
    assert outer.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("mode", ["lite", "exact"])
def test_jit_compiled_maps_equal_the_dynamic_path(mode):
    rng = np.random.default_rng(2)
    episode = make_episode(rng, 3, [4, 3, 5], 2)
    results = []
    for jit in (False, True):
        model = protonets_model(LiteConfig(mode=mode, h=3, chunk_size=4, jit_compile=jit))
        keras.utils.set_random_seed(5)
        for v in model.trainable_variables:
            v.assign(tf.random.normal(v.shape, stddev=0.2))
        step = tf.function(lambda data: model.episode_gradients(data, subset=tf.constant([0, 5, 9])))
        results.append(step(episode))
        results.append(model.evaluate_episode(episode))
    (loss, accuracy, gradients), evaluation, (xla_loss, xla_accuracy, xla_gradients), xla_evaluation = results
    np.testing.assert_allclose(xla_loss, loss, rtol=1e-5)
    np.testing.assert_allclose(xla_evaluation, evaluation, rtol=1e-5)
    for g, x in zip(gradients, xla_gradients):
        np.testing.assert_allclose(x, g, rtol=1e-4, atol=1e-6)


def test_fit_traces_once_with_compiled_maps():
    model = protonets_model(LiteConfig(mode="lite", h=3, chunk_size=4, jit_compile=True))
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(episode_dataset(3, 50), epochs=1, verbose=0)
    assert model.trace_count == 1  # the episode-level step stayed dynamic
    assert np.isfinite(history.history["loss"]).all()


def test_jit_compile_must_be_a_bool():
    with pytest.raises(ConfigError, match="jit_compile must be True or False"):
        LiteConfig(jit_compile="yes")
