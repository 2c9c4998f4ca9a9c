"""FiLM (feature-wise linear modulation) for backbones, with the per-task parameters as explicit inputs.

A FiLM backbone is a functional ``keras.Model`` whose inputs are ``[images, gamma_0, beta_0, gamma_1,
beta_1, ...]``: one (gamma, beta) pair per FiLM site, each of shape ``[1, C]`` (one task, broadcast
over the images) or ``[N, C]``. FiLM sits after a batch norm and before the activation:
``y = gamma * x + beta`` per channel. Passing the parameters in, rather than storing them in the
network, lets one set of backbone weights serve every task and lets a learner generate them from
a task embedding (CNAPs) or optimise them (FineTuner).

Use :func:`call_backbone` to run any backbone (FiLM or not) with a parameter list; it checks the
list against the backbone and names what does not match.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from lite_tf.registry import register_backbone
from lite_tf.errors import ConfigError

FilmParams = List[Tuple[tf.Tensor, tf.Tensor]]


@keras.saving.register_keras_serializable(package="lite_tf")
class FiLM(keras.layers.Layer):
    """``[x, gamma, beta] -> gamma * x + beta`` per channel; gamma/beta are [1, C] or [batch, C]."""

    def call(self, inputs):
        x, gamma, beta = inputs
        shape = tf.concat([tf.shape(gamma)[:1], tf.ones([len(x.shape) - 2], tf.int32), tf.shape(gamma)[-1:]], 0)
        return x * tf.reshape(gamma, shape) + tf.reshape(beta, shape)

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]


class FilmSites:
    """Collects FiLM sites while a functional backbone graph is built, then makes the model.

    ``x = sites.apply(x, "block1_film")`` inserts a FiLM layer fed by two new model inputs
    (``block1_film_gamma``, ``block1_film_beta``) sized to ``x``'s channels.
    """

    def __init__(self):
        self.names: List[str] = []
        self.inputs: List[keras.KerasTensor] = []

    def apply(self, x, name: str):
        channels = x.shape[-1]
        gamma = keras.Input((channels,), name=f"{name}_gamma")
        beta = keras.Input((channels,), name=f"{name}_beta")
        self.names.append(name)
        self.inputs += [gamma, beta]
        return FiLM(name=name)([x, gamma, beta])

    def model(self, image_input, outputs, name: str) -> keras.Model:
        return keras.Model([image_input, *self.inputs], outputs, name=name)


def is_film_backbone(backbone) -> bool:
    inputs = getattr(backbone, "inputs", None)
    return bool(inputs) and len(inputs) >= 3 and len(inputs) % 2 == 1


def film_sites(backbone) -> List[Tuple[str, int]]:
    """``[(site name, channels)]`` of a FiLM backbone, in input order; [] for a plain backbone."""
    if not is_film_backbone(backbone):
        return []
    sites = []
    for gamma in backbone.inputs[1::2]:
        name = gamma.name[: -len("_gamma")] if gamma.name.endswith("_gamma") else gamma.name
        sites.append((name, int(gamma.shape[-1])))
    return sites


def identity_film(backbone) -> FilmParams:
    """gamma = 1, beta = 0 at every site: the backbone's unmodulated output."""
    return [(tf.ones([1, c]), tf.zeros([1, c])) for _, c in film_sites(backbone)]


def check_film(backbone, film: Sequence) -> None:
    """Raises a ValueError naming the backbone and the site when ``film`` does not fit it."""
    sites = film_sites(backbone)
    name = getattr(backbone, "name", type(backbone).__name__)
    if not sites:
        raise ConfigError(f"Backbone {name!r} has no FiLM sites but FiLM parameters were given; "
                         f"use a FiLM backbone (e.g. efficientnet_b0_film, resnet18_film, film_conv4).")
    if len(film) != len(sites):
        raise ConfigError(f"Backbone {name!r} has {len(sites)} FiLM sites "
                         f"({', '.join(s for s, _ in sites[:4])}{', ...' if len(sites) > 4 else ''}); "
                         f"got a FiLM parameter list of length {len(film)}.")
    for (site, channels), pair in zip(sites, film):
        if len(pair) != 2:
            raise ConfigError(f"FiLM parameters for site {site!r} of backbone {name!r} must be a "
                             f"(gamma, beta) pair; got {len(pair)} values.")
        for part, value in zip(("gamma", "beta"), pair):
            shape = value.shape
            if shape.rank != 2 or (shape[-1] is not None and shape[-1] != channels):
                raise ConfigError(f"FiLM {part} for site {site!r} of backbone {name!r} must have shape "
                                 f"[1 or batch, {channels}]; got {list(shape)}.")


def as_film_row(value) -> tf.Tensor:
    """[C] -> [1, C]; [1, C] / [B, C] pass through. Floats keep their dtype (the backbone's FiLM
    layers cast to their compute dtype under mixed precision); anything else becomes float32."""
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_floating:
        value = tf.cast(value, tf.float32)
    return value[None, :] if value.shape.rank == 1 else value


def call_backbone(backbone, images, film: Optional[Sequence] = None, training: bool = False):
    """Features of ``images``; a FiLM backbone gets ``film`` (identity when None)."""
    images = tf.convert_to_tensor(images)
    if film is None:
        if is_film_backbone(backbone):
            film = identity_film(backbone)
        else:
            return backbone(images, training=training)
    film = [(as_film_row(g), as_film_row(b)) for g, b in film]
    check_film(backbone, film)
    flat = [t for pair in film for t in pair]
    return backbone([images, *flat], training=training)


@keras.saving.register_keras_serializable(package="lite_tf")
class FilmConstants(keras.layers.Layer):
    """Holds one task's FiLM parameters as weights and emits them as [1, C] tensors.

    Used by personalised models: ``film = FilmConstants(channels)(images)`` then
    ``backbone([images, *film])``. The input only anchors the layer in a functional graph.
    """

    def __init__(self, channels: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.channels = [int(c) for c in channels]
        self.values = []
        for index, c in enumerate(self.channels):
            self.values.append(self.add_weight(shape=(1, c), initializer="ones", trainable=False,
                                               name=f"gamma_{index}"))
            self.values.append(self.add_weight(shape=(1, c), initializer="zeros", trainable=False,
                                               name=f"beta_{index}"))

    def set_film(self, film: Sequence) -> None:
        for (gamma, beta), (g_var, b_var) in zip(film, zip(self.values[0::2], self.values[1::2])):
            g_var.assign(tf.reshape(tf.cast(gamma, tf.float32), g_var.shape))
            b_var.assign(tf.reshape(tf.cast(beta, tf.float32), b_var.shape))

    def call(self, images):
        return [tf.convert_to_tensor(v) for v in self.values]

    def compute_output_shape(self, input_shape):
        return [(1, c) for c in self.channels for _ in range(2)]

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@register_backbone("film_conv4")
def film_conv4(image_size: int, filters: int = 32, blocks: int = 4, name: str = "film_conv4") -> keras.Model:
    """conv4 with FiLM after every batch norm: small and fast, for tests and CPU demos."""
    if blocks < 1 or filters < 1:
        raise ConfigError(f"film_conv4 needs blocks >= 1 and filters >= 1; got blocks={blocks}, filters={filters}.")
    if image_size < 2 ** blocks:
        raise ConfigError(f"film_conv4 with {blocks} pooling blocks needs images of at least {2 ** blocks} px; "
                         f"got {image_size}.")
    inputs = keras.Input((image_size, image_size, 3), name="images")
    sites = FilmSites()
    x = inputs
    for block in range(blocks):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{block}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{block}")(x)
        x = sites.apply(x, f"film{block}")
        x = keras.layers.ReLU(name=f"relu{block}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{block}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return sites.model(inputs, outputs, name)
