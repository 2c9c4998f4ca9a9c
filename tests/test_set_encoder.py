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
    assert set_encoder(8, filters=4)(tf.zeros([1, 8, 8, 3])).shape == (1, 4)  # 'same' pooling: small images ok


def test_task_embedding_is_the_mean_and_lite_preserves_it():
    encoder = set_encoder(16, filters=8, blocks=2)
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
