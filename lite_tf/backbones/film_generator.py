"""The CNAPs FiLM generator: task embedding z -> (gamma, beta) for every FiLM site of a backbone.

This is the official LITE / Simple CNAPs architecture (cambridge-mlg/LITE ``FilmLayerGenerator``), so
official checkpoints load into it one tensor for one tensor (``lite_tf.weights``). Per site and
separately for gamma and beta, an MLP ``Dense(hidden) -> LayerNorm(eps 1e-5) -> ReLU -> Dense(C)``
maps z to C values, which are multiplied by a learned per-channel regulariser vector r (initialised
N(0, 0.001)):

    gamma = 1 + g(z) * r_gamma,    beta = b(z) * r_beta

so the backbone starts (almost) unmodulated. ``l2()`` is the official FiLM regularisation term, the
plain sum of squares of every r vector; learners weight it (0.001 in the paper).

``FilmGenerator.call`` keeps one ``FilmMlp`` layer per MLP (their variables and names are what the
official checkpoints map onto) but computes all of them at once from those variables: one matmul for
every first layer, one LayerNorm over the stacked hidden vectors, one batched matmul per group of
MLPs with equal output width. Calling 2 x sites small Keras layers made the traced training step
thousands of ops larger, and tracing, Grappler and the first step all scale with the op count.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import keras
import tensorflow as tf

from lite_tf.errors import ConfigError

LAYER_NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, used by the official code
REGULARIZER_INIT_STDDEV = 1e-3


def _stack(variables, axis: int = 0) -> tf.Tensor:
    """tf.stack of Keras variables' values (read under the current autocast scope, as a layer would)."""
    return tf.stack([tf.convert_to_tensor(v) for v in variables], axis=axis)


def _layer_norm_rows(x, gamma, beta, epsilon: float) -> tf.Tensor:
    """Keras 3's ``ops.layer_normalization`` over the last axis, row by row with per-row gamma and beta
    (same formula in float32 at least, ``x * inv + (beta - mean * inv)``) written so that each row equals
    a one-row LayerNormalization bit for bit, eager and in a graph: ``inv = 1 / sqrt(var + eps)`` is a
    division, since on CPU Rsqrt over 8 or more values is a vectorised approximation (1 ulp off for
    ~25% of them) and Grappler turns ``1 / sqrt`` (not DivNoNan; var + eps > 0, so no-NaN never
    triggers) into Rsqrt; ``beta - mean * inv`` (= Keras's ``-mean * inv + beta``) is a Sub, since
    Grappler regroups a chain of same-shape Adds into one AddN, which sums in another order."""
    dtype = x.dtype
    compute = tf.float32 if dtype in (tf.float16, tf.bfloat16, tf.float32) else dtype
    x, gamma, beta = (tf.cast(t, compute) for t in (x, gamma, beta))
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    root = tf.sqrt(variance + epsilon)
    inv = tf.math.divide_no_nan(tf.ones_like(root), root) * gamma
    return tf.cast(x * inv + (beta - mean * inv), dtype)


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
        if not self._batchable():
            return self._per_mlp_call(z)
        mlps = self.gamma_generators + self.beta_generators
        scales = self.gamma_regularizers + self.beta_regularizers
        groups = self._width_groups()
        order = [j for group in groups for j in group]  # MLPs of equal width next to each other
        ordered = [mlps[j] for j in order]
        # Variables are read here, inside this layer's call, so a mixed policy's autocast casts them as
        # it did when each FilmMlp read its own (all layers have this layer's policy: _batchable).
        kernel1 = tf.reshape(_stack([m.linear1.kernel for m in ordered], axis=1), [-1, len(order) * self.hidden])
        h = tf.reshape(tf.matmul(z, kernel1), [len(order), self.hidden])
        h = h + _stack([m.linear1.bias for m in ordered])
        h = _layer_norm_rows(h, _stack([m.layernorm.gamma for m in ordered]),
                             _stack([m.layernorm.beta for m in ordered]), ordered[0].layernorm.epsilon)
        h = tf.cast(h, ordered[0].layernorm.compute_dtype)  # as LayerNormalization.call; no op if equal
        h = tf.reshape(tf.nn.relu(h), [len(order), 1, self.hidden])
        outputs: Dict[int, tf.Tensor] = {}
        sites = len(self.channels)
        for group, h_group in zip(groups, tf.split(h, [len(g) for g in groups])):
            kernel2 = _stack([mlps[j].linear2.kernel for j in group])  # [n, hidden, C]
            y = tf.reshape(tf.matmul(h_group, kernel2), [len(group), -1])
            y = (y + _stack([mlps[j].linear2.bias for j in group])) * _stack([scales[j] for j in group])
            if any(j < sites for j in group):  # gamma = 1 + g * r; beta rows add an exact 0
                y = y + tf.constant([[1.0] if j < sites else [0.0] for j in group], dtype=y.dtype)
            outputs.update(zip(group, tf.split(y, len(group))))
        return [(outputs[i], outputs[sites + i]) for i in range(sites)]

    def _width_groups(self) -> List[List[int]]:
        """Indices into gamma_generators + beta_generators, grouped by output width, first-seen order."""
        groups: Dict[int, List[int]] = {}
        for j, c in enumerate(self.channels + self.channels):
            groups.setdefault(c, []).append(j)
        return list(groups.values())

    def _batchable(self) -> bool:
        """The batched call reproduces the per-layer one when every sub-layer shares this layer's dtype
        policy and autocast (always so in lite_tf: precision.apply_policy sets them all alike). Keras
        LayerNormalization never autocasts: it reads gamma/beta in float32 and normalises in float32."""
        mlps = self.gamma_generators + self.beta_generators
        autocasting = [layer for m in mlps for layer in (m, m.linear1, m.linear2)]
        layers = autocasting + [m.layernorm for m in mlps]
        return (all(layer.autocast == self.autocast for layer in autocasting)
                and all(layer.dtype_policy.name == self.dtype_policy.name for layer in layers)
                and len({m.layernorm.epsilon for m in mlps}) == 1)

    def _per_mlp_call(self, z):
        """One Keras call per MLP (the plain form of ``call``)."""
        return [(1.0 + g(z) * r_gamma, b(z) * r_beta)
                for g, b, r_gamma, r_beta in zip(self.gamma_generators, self.beta_generators,
                                                 self.gamma_regularizers, self.beta_regularizers)]

    def l2(self) -> tf.Tensor:
        """Sum of squares of all regulariser vectors (the official ``regularization_term()``)."""
        return tf.add_n([tf.reduce_sum(tf.square(r)) for r in self.gamma_regularizers + self.beta_regularizers])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "hidden": self.hidden,
                "init_scale": self.init_scale}
