"""The CNAPs FiLM generator: task embedding z -> (gamma, beta) for every FiLM site of a backbone.

This is the official LITE / Simple CNAPs architecture (cambridge-mlg/LITE ``FilmLayerGenerator``), so
official checkpoints load into it one tensor for one tensor (``lite_tf.weights``). Per site and
separately for gamma and beta, an MLP ``Dense(hidden) -> LayerNorm(eps 1e-5) -> ReLU -> Dense(C)``
maps z to C values, which are multiplied by a learned per-channel regulariser vector r (initialised
N(0, 0.001)):

    gamma = 1 + g(z) * r_gamma,    beta = b(z) * r_beta

so the backbone starts (almost) unmodulated. ``l2()`` is the official FiLM regularisation term, the
plain sum of squares of every r vector; learners weight it (0.001 in the paper).
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf

from lite_tf.errors import ConfigError

LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, used by the official code
REGULARIZER_INIT_STDDEV = 1e-3


@keras.saving.register_keras_serializable(package="lite_tf")
class FilmMlp(keras.layers.Layer):
    """``Dense(hidden) -> LayerNorm -> ReLU -> Dense(units)``: one gamma or beta generator."""

    def __init__(self, units: int, hidden: int, **kwargs):
        super().__init__(**kwargs)
        self.units, self.hidden = int(units), int(hidden)
        self.linear1 = keras.layers.Dense(self.hidden, name="linear1")
        self.layernorm = keras.layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="layernorm")
        self.linear2 = keras.layers.Dense(self.units, name="linear2")

    def build(self, input_shape):
        self.linear1.build((None, input_shape[-1]))
        self.layernorm.build((None, self.hidden))
        self.linear2.build((None, self.hidden))
        self.built = True

    def call(self, z):
        return self.linear2(tf.nn.relu(self.layernorm(self.linear1(z))))

    def get_config(self):
        return {**super().get_config(), "units": self.units, "hidden": self.hidden}


@keras.saving.register_keras_serializable(package="lite_tf")
class FilmGenerator(keras.layers.Layer):
    """z [D] or [1, D] -> ``[(gamma [1, C_i], beta [1, C_i]) for each site i]``.

    Args:
      channels: channels C_i of each FiLM site, in the backbone's site order.
      hidden: width of each MLP's hidden layer (the official code uses the task-embedding width, 64).
      init_scale: standard deviation of the regulariser vectors at initialisation.
    """

    def __init__(self, channels: Sequence[int], hidden: int = 64, init_scale: float = REGULARIZER_INIT_STDDEV,
                 **kwargs):
        super().__init__(**kwargs)
        self.channels = [int(c) for c in channels]
        self.hidden = int(hidden)
        self.init_scale = float(init_scale)
        if not self.channels or min(self.channels) < 1 or self.hidden < 1:
            raise ConfigError(f"FilmGenerator needs at least one site with >= 1 channel and hidden >= 1; got "
                             f"channels={self.channels}, hidden={self.hidden}.")
        init = keras.initializers.RandomNormal(0.0, self.init_scale)
        # Flat lists so Keras tracks every weight; index i is FiLM site i.
        self.gamma_generators = [FilmMlp(c, self.hidden, name=f"site{i}_gamma") for i, c in enumerate(self.channels)]
        self.beta_generators = [FilmMlp(c, self.hidden, name=f"site{i}_beta") for i, c in enumerate(self.channels)]
        self.gamma_regularizers = [self.add_weight(shape=(c,), initializer=init, name=f"site{i}_gamma_regularizer")
                                   for i, c in enumerate(self.channels)]
        self.beta_regularizers = [self.add_weight(shape=(c,), initializer=init, name=f"site{i}_beta_regularizer")
                                  for i, c in enumerate(self.channels)]

    def build(self, input_shape):
        for layer in self.gamma_generators + self.beta_generators:
            layer.build((1, input_shape[-1]))
        self.built = True

    def call(self, z):
        z = tf.reshape(z, [1, -1])
        film = []
        for g, b, r_gamma, r_beta in zip(self.gamma_generators, self.beta_generators,
                                         self.gamma_regularizers, self.beta_regularizers):
            film.append((1.0 + g(z) * r_gamma, b(z) * r_beta))
        return film

    def l2(self) -> tf.Tensor:
        """Sum of squares of all regulariser vectors (the official ``regularization_term()``)."""
        return tf.add_n([tf.reduce_sum(tf.square(r)) for r in self.gamma_regularizers + self.beta_regularizers])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "hidden": self.hidden,
                "init_scale": self.init_scale}
