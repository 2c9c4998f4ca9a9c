"""EfficientNet-B0 from keras.applications, taking images in [-1, 1]."""
from __future__ import annotations

import os
from typing import Optional

import keras

from lite_tf.registry import register_backbone
from lite_tf.errors import ConfigError


@register_backbone("efficientnet_b0")
def efficientnet_b0(image_size: int, weights: Optional[str] = None, name: str = "efficientnet_b0") -> keras.Model:
    """EfficientNet-B0 without top, average-pooled 1280-d features.

    Args:
      weights: None (random, the default), ``"imagenet"`` (keras.applications downloads them; needs
        the network once, then they are cached), or the path of a local weights file (.h5 or
        .weights.h5) for this architecture without top.
    """
    if image_size < 32:
        raise ConfigError(f"efficientnet_b0 needs images of at least 32 px; got {image_size}.")
    if weights not in (None, "imagenet") and not os.path.isfile(weights):
        raise FileNotFoundError(
            f"efficientnet_b0 weights file {weights!r} does not exist; pass None, 'imagenet' or a file path."
        )
    inputs = keras.Input((image_size, image_size, 3))
    # The application rescales [0, 255] inputs itself.
    pixels = keras.layers.Rescaling(127.5, offset=127.5, name="to_pixels")(inputs)
    application = keras.applications.EfficientNetB0(
        include_top=False, weights=None if weights != "imagenet" else "imagenet",
        input_shape=(image_size, image_size, 3), pooling="avg",
    )
    if weights not in (None, "imagenet"):
        try:
            application.load_weights(weights)
        except Exception as error:
            raise ConfigError(
                f"Could not load efficientnet_b0 weights from {weights!r}: expected an EfficientNet-B0 "
                f"(no top) weights file. {error}"
            ) from error
    return keras.Model(inputs, application(pixels), name=name)
