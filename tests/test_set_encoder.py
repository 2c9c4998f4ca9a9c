"""Set encoder: per-image codes, task embedding as their mean, mapped through LITE."""
import numpy as np
import pytest
import tensorflow as tf

from lite_tf import LiteConfig, SupportMapper
from lite_tf.backbones.set_encoder import set_encoder, task_embedding


def test_architecture_and_output():
    encoder = set_encoder(32)
    assert len([l for l in encoder.layers if l.name.startswith("conv")]) == 5
    assert all(encoder.get_layer(f"conv{i}").filters == 64 for i in range(5))
    assert encoder(tf.zeros([3, 32, 32, 3])).shape == (3, 64)
    assert set_encoder(8, filters=4, blocks=3)(tf.zeros([1, 8, 8, 3])).shape == (1, 4)  # 8 -> 4 -> 2 -> 1 px


def test_official_layout_floor_pooling_and_batch_norm_epsilon():
    """As the official SimplePrePoolNet: 84 px -> 42, 21, 10, 5, 2 px maps (floor pooling), BN eps 1e-5."""
    encoder = set_encoder(84)
    assert [encoder.get_layer(f"pool{i}").output.shape[1] for i in range(5)] == [42, 21, 10, 5, 2]
    assert all(encoder.get_layer(f"bn{i}").epsilon == 1e-5 for i in range(5))
    assert all(encoder.get_layer(f"conv{i}").use_bias for i in range(5))
    # floor pooling: a 33 px map pools its first 32 rows/columns only
    import keras
    small = set_encoder(33, filters=4, blocks=1)
    images = tf.random.uniform([2, 33, 33, 3], -1, 1)
    relu = keras.Model(small.inputs, small.get_layer("relu0").output)(images).numpy()
    pooled = relu[:, :32, :32].reshape(2, 16, 2, 16, 2, 4).max(axis=(2, 4))
    np.testing.assert_allclose(small(images).numpy(), pooled.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_task_embedding_is_the_mean_and_lite_preserves_it():
    encoder = set_encoder(16, filters=8, blocks=2, batch_norm="moving")  # per-image codes
    images = tf.random.uniform([7, 16, 16, 3], -1, 1)
    expected = tf.reduce_mean(encoder(images), 0).numpy()
    np.testing.assert_allclose(task_embedding(encoder, images).numpy(), expected, rtol=1e-5, atol=1e-6)
    import keras
    mapper = SupportMapper(LiteConfig(mode="lite", h=3, chunk_size=2), 7, training=True,
                           seed=keras.random.SeedGenerator(0))
    mapper.start_batch()
    np.testing.assert_allclose(task_embedding(encoder, images, mapper).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="set_encoder needs blocks >= 1"):
        set_encoder(32, blocks=0)
    with pytest.raises(ValueError, match="5 floor max-pools needs images of at least 32 px; got image_size=16"):
        set_encoder(16)
