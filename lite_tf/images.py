"""Pixel conventions shared by every pipeline, the LITE mapper and the learners.

Images travel as uint8 [0, 255] (4x smaller) or float32 already in [-1, 1]; networks always see
float32 in [-1, 1]. This module is the one place that conversion is written.
"""
from __future__ import annotations

import tensorflow as tf


def to_float_images(images: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] (or any float in [0, 255] when ``from_pixels``) -> float32 [-1, 1].

    Float images are taken to be in [-1, 1] already and pass through unchanged.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype == tf.uint8:
        return tf.cast(images, tf.float32) / 127.5 - 1.0
    return images


def scale_pixels(pixels: tf.Tensor) -> tf.Tensor:
    """Float pixel values in [0, 255] (e.g. after a resize) -> float32 [-1, 1], clipped."""
    return tf.clip_by_value(tf.cast(pixels, tf.float32) / 127.5 - 1.0, -1.0, 1.0)
