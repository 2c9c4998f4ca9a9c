"""Small convolutional feature extractors: fast enough for tests and CPU demos."""
from __future__ import annotations

import keras

from lite_tf.registry import register_backbone


@register_backbone("conv4")
def conv4(image_size: int, filters: int = 32, blocks: int = 4, name: str = "conv4") -> keras.Model:
    """The few-shot classic: ``blocks`` x [conv3x3, batch norm, ReLU, max-pool 2], global average pool.

    Batch norm statistics are frozen by calling the network with training=False, which learners do
    by default so LITE stays exact.
    """
    if blocks < 1 or filters < 1:
        raise ValueError(f"conv4 needs blocks >= 1 and filters >= 1; got blocks={blocks}, filters={filters}.")
    if image_size < 2 ** blocks:
        raise ValueError(f"conv4 with {blocks} pooling blocks needs images of at least {2 ** blocks} px; "
                         f"got {image_size}.")
    inputs = keras.Input((image_size, image_size, 3))
    x = inputs
    for block in range(blocks):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{block}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{block}")(x)
        x = keras.layers.ReLU(name=f"relu{block}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name=name)
