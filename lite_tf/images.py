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


def pil_resize(pixels, size: int, method: str = "lanczos"):
    """``PIL.Image.resize((size, size), ...)`` of one image array, returned as RGB uint8 [size, size, 3].

    The pixels as the official LITE VTAB code hands them to PIL (cambridge-mlg/LITE
    ``src/tf_dataset_reader.py`` ``_prepare_image``; SUN397: torchvision ``Resize``, i.e. PIL bilinear):
    the array's dtype and shape pick PIL's mode, and the mode decides the arithmetic, so this keeps
    them: uint8 [H, W, 3] -> "RGB", uint8 [H, W] or [H, W, 1] -> "L" (8-bit passes, each pass
    rounded and clipped), float [H, W(, 1)] -> "F" (float passes; the conversion to RGB then clips
    and truncates, as PIL does). ``method``: "lanczos" or "bilinear".
    """
    import numpy as np
    from PIL import Image

    filters = {"lanczos": Image.Resampling.LANCZOS, "bilinear": Image.Resampling.BILINEAR}
    pixels = np.asarray(pixels)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.float32)
    image = Image.fromarray(pixels)
    resized = image.resize((int(size), int(size)), filters[method])
    return np.asarray(resized.convert("RGB"), dtype=np.uint8)


def pil_lanczos_resize(pixels, size: int):
    """The official LITE VTAB resize: ``Image.resize((size, size), Image.LANCZOS)`` (see :func:`pil_resize`)."""
    return pil_resize(pixels, size, "lanczos")
