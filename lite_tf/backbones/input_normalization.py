"""Optional fixed input normalisation for backbones that take lite_tf's [-1, 1] images.

Some official models (ORBIT's) were trained on ImageNet-normalised pixels, ``(x01 - mean) / std``
with x01 in [0, 1]; ``normalize_input(x, "imagenet")`` puts that in front of a network so the same
weights see the same numbers. The statistics are constants of the graph, not weights.
"""
from __future__ import annotations

from typing import Optional

import keras
import numpy as np

from lite_tf.errors import ConfigError

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)
INPUT_NORMALIZATIONS = (None, "imagenet")


def check_input_normalization(value: Optional[str], owner: str) -> None:
    if value not in INPUT_NORMALIZATIONS:
        raise ConfigError(f"{owner} input_normalization must be one of {INPUT_NORMALIZATIONS}; got {value!r}.")


def normalize_input(x, kind: Optional[str], name: str = "input_normalization"):
    """[-1, 1] images -> as ``kind`` says (None: unchanged)."""
    if kind is None:
        return x
    x = keras.layers.Rescaling(0.5, offset=0.5, name=f"{name}_to_unit")(x)
    return keras.layers.Normalization(axis=-1, mean=list(IMAGENET_MEAN_RGB),
                                      variance=list(np.square(IMAGENET_STDDEV_RGB)), name=name)(x)
