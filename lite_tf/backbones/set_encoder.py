"""The CNAPs set encoder: per-image embedding, averaged over the support set into a task embedding.

Only the per-image part is a network; the mean is taken by the learner after the LITE map,
``z = mean(mapper.map(set_encoder, support_images))`` (:func:`task_embedding`), so the set encoder's
back-propagation is subsampled like the feature extractor's.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from lite_tf.registry import register_backbone


@register_backbone("set_encoder")
def set_encoder(image_size: int, filters: int = 64, blocks: int = 5, name: str = "set_encoder") -> keras.Model:
    """``blocks`` x [conv3x3(filters), batch norm, ReLU, max-pool 2], global average pool.

    Pools use 'same' padding so small images (down to 1 px after pooling) still work.
    """
    if blocks < 1 or filters < 1:
        raise ValueError(f"set_encoder needs blocks >= 1 and filters >= 1; got blocks={blocks}, filters={filters}.")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"set_encoder needs a positive integer image_size; got {image_size!r}.")
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = inputs
    for block in range(blocks):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{block}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{block}")(x)
        x = keras.layers.ReLU(name=f"relu{block}")(x)
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool{block}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name=name)


def task_embedding(encoder: keras.Model, support_images, mapper=None, training: bool = False) -> tf.Tensor:
    """[D] mean of the per-image set-encoder outputs; mapped through ``mapper`` when given."""
    fn = lambda images: encoder(images, training=training)
    per_image = mapper.map(fn, support_images) if mapper is not None else fn(support_images)
    return tf.reduce_mean(per_image, axis=0)
