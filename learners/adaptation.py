"""The CNAPs family's FiLM generator (task embedding -> FiLM parameters).

Its temporary home: it moves to lite_tf/backbones/film_generator.py. The FiLM-adapted learner base
is lite_tf/film_learner.py; Simple CNAPs and CNAPs set ``film_generator_class`` to this class.
"""
from __future__ import annotations

from typing import Sequence

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="lite_tf")
class FilmGenerator(keras.layers.Layer):
    """Task embedding z -> (gamma, beta) for every FiLM site.

    Per site: a shared Dense(hidden, relu) on z, then one two-layer MLP each for gamma and beta.
    Their outputs are multiplied by learned per-channel scales initialised N(0, init_scale), so at
    initialisation gamma ~ 1 and beta ~ 0 (the backbone starts unmodulated):
    gamma = 1 + s_gamma * mlp_gamma(z), beta = s_beta * mlp_beta(z). ``l2()`` is the sum of the
    squared scales, the FiLM regulariser.
    """

    def __init__(self, channels: Sequence[int], hidden: int = 64, init_scale: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.channels = [int(c) for c in channels]
        self.hidden = int(hidden)
        self.init_scale = float(init_scale)
        init = keras.initializers.RandomNormal(0.0, self.init_scale)
        dense = lambda units, act, name: keras.layers.Dense(units, activation=act, name=name)
        # Flat lists of layers so Keras tracks every weight.
        self.shared = [dense(self.hidden, "relu", f"site{i}_shared") for i in range(len(self.channels))]
        self.gamma_hidden = [dense(self.hidden, "relu", f"site{i}_gamma_hidden") for i in range(len(self.channels))]
        self.beta_hidden = [dense(self.hidden, "relu", f"site{i}_beta_hidden") for i in range(len(self.channels))]
        self.gamma_out = [dense(c, None, f"site{i}_gamma_out") for i, c in enumerate(self.channels)]
        self.beta_out = [dense(c, None, f"site{i}_beta_out") for i, c in enumerate(self.channels)]
        self.gamma_scales = [self.add_weight(shape=(c,), initializer=init, name=f"site{i}_gamma_scale")
                             for i, c in enumerate(self.channels)]
        self.beta_scales = [self.add_weight(shape=(c,), initializer=init, name=f"site{i}_beta_scale")
                            for i, c in enumerate(self.channels)]

    def build(self, input_shape):
        dim = input_shape[-1]
        for i in range(len(self.channels)):
            self.shared[i].build((1, dim))
            for layer in (self.gamma_hidden[i], self.beta_hidden[i], self.gamma_out[i], self.beta_out[i]):
                layer.build((1, self.hidden))
        self.built = True

    def call(self, z):
        z = tf.reshape(z, [1, -1])
        film = []
        for i in range(len(self.channels)):
            shared = self.shared[i](z)
            gamma = self.gamma_out[i](self.gamma_hidden[i](shared))
            beta = self.beta_out[i](self.beta_hidden[i](shared))
            film.append((1.0 + self.gamma_scales[i] * gamma, self.beta_scales[i] * beta))
        return film

    def l2(self) -> tf.Tensor:
        return tf.add_n([tf.reduce_sum(tf.square(s)) for s in self.gamma_scales + self.beta_scales])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "hidden": self.hidden,
                "init_scale": self.init_scale}
