"""ResNet-18 with FiLM after both batch norms of every basic block (as in Simple CNAPs / LITE).

Two stems: ``resnet18_film`` (224 px style: 7x7/2 conv, 3x3/2 max-pool) and ``resnet18_film_84``
(84 px style: 5x5/2 conv, no max-pool). Convolutions have no bias and explicit zero padding, the
layout of torchvision's ResNet, so converted PyTorch weights line up. Images are taken as given
([-1, 1] by the project's convention). Pretrained weights come from a local Keras weights file of
this same architecture.
"""
from __future__ import annotations

import os
from typing import Optional

import keras

from lite_tf.backbones.film import FilmSites
from lite_tf.backbones.input_normalization import check_input_normalization, normalize_input
from lite_tf.registry import register_backbone
from lite_tf.errors import ConfigError

STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))
BLOCKS_PER_STAGE = 2


def _conv_bn(x, filters, kernel, strides, padding, name):
    if padding:
        x = keras.layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    x = keras.layers.Conv2D(filters, kernel, strides=strides, use_bias=False, name=f"{name}_conv")(x)
    return keras.layers.BatchNormalization(epsilon=1e-5, momentum=0.9, name=f"{name}_bn")(x)


def _basic_block(x, sites: FilmSites, filters: int, strides: int, name: str):
    shortcut = x
    y = _conv_bn(x, filters, 3, strides, 1, f"{name}_1")
    y = sites.apply(y, f"{name}_1_film")
    y = keras.layers.ReLU(name=f"{name}_1_relu")(y)
    y = _conv_bn(y, filters, 3, 1, 1, f"{name}_2")
    y = sites.apply(y, f"{name}_2_film")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, 1, strides, 0, f"{name}_down")
    y = keras.layers.add([y, shortcut], name=f"{name}_add")
    return keras.layers.ReLU(name=f"{name}_out")(y)


def build_resnet18_film(image_size: int, small_stem: bool, name: str, input_normalization: Optional[str] = None,
                        stem_padding: Optional[int] = None) -> keras.Model:
    """The graph with random weights; ``small_stem`` selects the 84 px stem.

    ``stem_padding``: zero padding of the stem convolution (default 3 for the 7x7 stem, as torchvision;
    1 for the 5x5 stem). The official ORBIT ResNet-18 pads its 7x7 stem by 1.
    ``input_normalization``: see :mod:`lite_tf.backbones.input_normalization` ('imagenet' for ORBIT).
    """
    check_input_normalization(input_normalization, name)
    if stem_padding is not None and (not isinstance(stem_padding, int) or stem_padding < 0):
        raise ConfigError(f"{name} stem_padding must be a non-negative int or None; got {stem_padding!r}.")
    min_size = 16 if small_stem else 32
    if not isinstance(image_size, int) or image_size < min_size:
        raise ConfigError(f"{name} needs square images of at least {min_size} px; got image_size={image_size!r}.")
    inputs = keras.Input((image_size, image_size, 3), name="images")
    sites = FilmSites()
    x = normalize_input(inputs, input_normalization)
    if small_stem:
        x = _conv_bn(x, 64, 5, 2, 1 if stem_padding is None else stem_padding, "stem")
        x = keras.layers.ReLU(name="stem_relu")(x)
    else:
        x = _conv_bn(x, 64, 7, 2, 3 if stem_padding is None else stem_padding, "stem")
        x = keras.layers.ReLU(name="stem_relu")(x)
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool")(x)
    for stage, (filters, strides) in enumerate(STAGES):
        for block in range(BLOCKS_PER_STAGE):
            x = _basic_block(x, sites, filters, strides if block == 0 else 1, f"layer{stage + 1}_{block}")
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return sites.model(inputs, outputs, name)


def _load(model: keras.Model, weights: Optional[str]) -> keras.Model:
    if weights is None:
        return model
    if not os.path.isfile(str(weights)):
        raise FileNotFoundError(f"{model.name} weights file {weights!r} does not exist; pass None or the path "
                                f"of a Keras weights file (.weights.h5) saved from {model.name}.")
    try:
        model.load_weights(weights)
    except Exception as error:
        raise ConfigError(f"Could not load {model.name} weights from {weights!r}: expected a weights file of "
                         f"the {model.name} architecture. {error}") from error
    return model


@register_backbone("resnet18_film")
def resnet18_film(image_size: int, weights: Optional[str] = None, name: str = "resnet18_film",
                  input_normalization: Optional[str] = None, stem_padding: Optional[int] = None) -> keras.Model:
    """FiLM ResNet-18 with the ImageNet (224 px) stem; 512-d average-pooled features."""
    return _load(build_resnet18_film(image_size, False, name, input_normalization, stem_padding), weights)


@register_backbone("resnet18_film_84")
def resnet18_film_84(image_size: int, weights: Optional[str] = None, name: str = "resnet18_film_84",
                     input_normalization: Optional[str] = None, stem_padding: Optional[int] = None) -> keras.Model:
    """FiLM ResNet-18 with the 84 px stem (5x5/2 conv, no max-pool); 512-d features."""
    return _load(build_resnet18_film(image_size, True, name, input_normalization, stem_padding), weights)
