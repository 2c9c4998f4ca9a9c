"""The CNAPs set encoder: per-image embedding, averaged over the support set into a task embedding.

Only the per-image part is a network; the mean is taken by the learner after the LITE map,
``z = mean(mapper.map(set_encoder, support_images))`` (:func:`task_embedding`), so the set encoder's
back-propagation is subsampled like the feature extractor's.
"""
from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from lite_tf.backbones.input_normalization import check_input_normalization, normalize_input
from lite_tf.registry import register_backbone
from lite_tf.errors import ConfigError


BATCH_NORM_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default, used by the official set encoder
BATCH_NORM_MOMENTUM = 0.9  # = PyTorch momentum 0.1


@register_backbone("set_encoder")
def set_encoder(image_size: int, filters: int = 64, blocks: int = 5, name: str = "set_encoder",
                input_normalization: Optional[str] = None) -> keras.Model:
    """``blocks`` x [conv3x3(filters) with bias, batch norm, ReLU, max-pool 2], global average pool.

    The official CNAPs / LITE set encoder: convolutions padded by 1 (= 'same' at stride 1), batch norm
    eps 1e-5, and floor ('valid') pooling, so 84 px images give 42, 21, 10, 5, 2 px maps exactly as
    the official code. Images need at least 2**blocks px (32 px for the default 5 blocks).
    ``input_normalization='imagenet'`` first maps [-1, 1] images to ImageNet-normalised pixels, as the
    official ORBIT code feeds its set encoder (LITE's feeds [-1, 1]: the default None).
    """
    check_input_normalization(input_normalization, "set_encoder")
    if blocks < 1 or filters < 1:
        raise ConfigError(f"set_encoder needs blocks >= 1 and filters >= 1; got blocks={blocks}, filters={filters}.")
    if not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"set_encoder needs a positive integer image_size; got {image_size!r}.")
    if image_size < 2 ** blocks:
        raise ConfigError(f"set_encoder with {blocks} floor max-pools needs images of at least {2 ** blocks} px; "
                         f"got image_size={image_size} (use fewer blocks for smaller images).")
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = normalize_input(inputs, input_normalization)
    for block in range(blocks):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{block}")(x)
        x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM,
                                            name=f"bn{block}")(x)
        x = keras.layers.ReLU(name=f"relu{block}")(x)
        x = keras.layers.MaxPooling2D(2, padding="valid", name=f"pool{block}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name=name)


def task_embedding(encoder: keras.Model, support_images, mapper=None, training: bool = False) -> tf.Tensor:
    """[D] mean of the per-image set-encoder outputs; mapped through ``mapper`` when given."""
    fn = lambda images: encoder(images, training=training)
    per_image = mapper.map(fn, support_images) if mapper is not None else fn(support_images)
    return tf.reduce_mean(per_image, axis=0)
