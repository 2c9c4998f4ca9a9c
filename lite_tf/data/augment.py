"""Random image changes for the support or query part of an episode, seeded per image.

Stateless random ops seeded per episode and image, so a seed fixes the episodes and their pixels.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import gin
import tensorflow as tf

from lite_tf.errors import ConfigError


@gin.configurable
@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Random image changes for one part of an episode (support or query); zero/False = off.

    brightness: max delta in [0, 1] pixel units; contrast/saturation: factor drawn in [1-x, 1+x];
    hue: max delta in [0, 0.5]; crop_padding: reflect-pad by this many pixels, then crop back to
    ``image_size`` at a random place; flip: random left-right flip.
    """

    flip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    crop_padding: int = 0

    def __post_init__(self):
        for name, limit in (("brightness", 1.0), ("contrast", 1.0), ("saturation", 1.0), ("hue", 0.5)):
            value = getattr(self, name)
            if not 0.0 <= value <= limit:
                raise ConfigError(f"Augmentation.{name} must be in [0, {limit}]; got {value}.")
        if int(self.crop_padding) < 0:
            raise ConfigError(f"Augmentation.crop_padding must be >= 0; got {self.crop_padding}.")

    @property
    def active(self) -> bool:
        return bool(self.flip or self.brightness or self.contrast or self.saturation or self.hue or self.crop_padding)

    def check_image_size(self, image_size: int) -> None:
        if self.crop_padding >= image_size:
            raise ConfigError(f"Augmentation.crop_padding ({self.crop_padding}) must be below image_size "
                              f"({image_size}).")

    def pixel_function(self, image_size: int) -> Optional["callable"]:
        """``f(pixels [S, S, 3] float32 in [0, 255], seed [2]) -> pixels`` for ``lite_tf.data.decode``;
        None when nothing is switched on."""
        if not self.active:
            return None
        self.check_image_size(image_size)
        return lambda pixels, seed: augment(pixels / 255.0, self, seed, image_size) * 255.0


def augment(image: tf.Tensor, aug: Augmentation, seed: tf.Tensor, image_size: int) -> tf.Tensor:
    """``image`` float32 in [0, 1], [S, S, 3]; stateless ops seeded by ``seed`` (shape [2])."""
    seeds = tf.random.experimental.stateless_split(seed, 6)
    if aug.crop_padding:
        p = int(aug.crop_padding)
        image = tf.pad(image, [[p, p], [p, p], [0, 0]], mode="REFLECT")
        image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seeds[0])
    if aug.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    if aug.brightness:
        image = tf.image.stateless_random_brightness(image, aug.brightness, seeds[2])
    if aug.contrast:
        image = tf.image.stateless_random_contrast(image, 1 - aug.contrast, 1 + aug.contrast, seeds[3])
    if aug.saturation:
        image = tf.image.stateless_random_saturation(image, 1 - aug.saturation, 1 + aug.saturation, seeds[4])
    if aug.hue:
        image = tf.image.stateless_random_hue(image, aug.hue, seeds[5])
    return tf.clip_by_value(image, 0.0, 1.0)
