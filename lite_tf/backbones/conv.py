"""Small convolutional feature extractors: fast enough for tests and CPU demos."""
from __future__ import annotations

import keras

from lite_tf.errors import ConfigError
from lite_tf.registry import register_backbone


@register_backbone("conv4")
def conv4(image_size: int, filters: int = 32, blocks: int = 4, stem_pool: int = 1,
          name: str = "conv4") -> keras.Model:
    """The few-shot classic: ``blocks`` x [conv3x3, batch norm, ReLU, max-pool 2], global average pool.

    ``stem_pool`` > 1 average-pools the input first: large images at a small network's cost (the
    CPU quickstart feeds 224 px episodes this way). Batch norm statistics are frozen by calling the
    network with training=False, which learners do by default so LITE stays exact.
    """
    if stem_pool < 1:
        raise ConfigError(f"conv4 stem_pool must be >= 1; got {stem_pool}.")
    if blocks < 1 or filters < 1:
        raise ConfigError(f"conv4 needs blocks >= 1 and filters >= 1; got blocks={blocks}, filters={filters}.")
    if image_size < stem_pool * 2 ** blocks:
        # Smaller images would pool down to nothing: a run that trains but learns nothing.
        raise ConfigError(f"backbones.conv4: {blocks} pooling blocks and stem_pool = {stem_pool} need images of "
                          f"at least {stem_pool * 2 ** blocks} px; got {image_size} px. Lower stem_pool or blocks.")
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.AveragePooling2D(stem_pool, name="stem_pool")(inputs) if stem_pool > 1 else inputs
    for block in range(blocks):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{block}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{block}")(x)
        x = keras.layers.ReLU(name=f"relu{block}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name=name)
