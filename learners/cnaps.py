"""CNAPs (Requeima et al., 2019): FiLM-adapted features and a classifier generated per class.

A hyper-network maps each class mean mu_c of the adapted support features to the weights and bias
of a linear classifier: w_c = mu_c + g_w(mu_c), b_c = g_b(mu_c); logits = x W^T + b. g_w and g_b are
the official three-layer ELU blocks (width D for the weights, 1 for the bias), so ORBIT's CNAPs
checkpoints load (lite_tf.weights).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from lite_tf.learners.film_learner import FilmAdaptedLearner
from lite_tf.heads import LinearHead, class_means, linear_logits
from lite_tf.registry import register_learner


@keras.saving.register_keras_serializable(package="lite_tf")
class DenseResidualBlock(keras.layers.Layer):
    """Linear(in, out) -> ELU -> Linear(out, out) -> ELU -> Linear(out, out), plus the input when in == out.

    The official CNAPs block (cambridge-mlg/cnaps and ORBIT ``models/mlps.py``), so official weights load.
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.linear1 = keras.layers.Dense(self.units, name="linear1")
        self.linear2 = keras.layers.Dense(self.units, name="linear2")
        self.linear3 = keras.layers.Dense(self.units, name="linear3")

    def build(self, input_shape):
        self.linear1.build((None, input_shape[-1]))
        self.linear2.build((None, self.units))
        self.linear3.build((None, self.units))
        self.built = True

    def call(self, x):
        out = self.linear3(tf.nn.elu(self.linear2(tf.nn.elu(self.linear1(x)))))
        return out + x if x.shape[-1] == self.units else out

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="lite_tf")
class ClassifierHyperNetwork(keras.layers.Layer):
    """Class means [K, D] -> (weights [K, D], biases [K]), as the official CNAPs / ORBIT VersaClassifier:
    w_c = DenseResidualBlock(D, D)(mu_c) (residual), b_c = DenseResidualBlock(D, 1)(mu_c)."""

    def __init__(self, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.weight_processor = DenseResidualBlock(self.dim, name="weight_processor")
        self.bias_processor = DenseResidualBlock(1, name="bias_processor")

    def build(self, input_shape):
        self.weight_processor.build((None, self.dim))
        self.bias_processor.build((None, self.dim))
        self.built = True

    def call(self, means):
        return self.weight_processor(means), tf.squeeze(self.bias_processor(means), -1)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


@register_learner("cnaps")
class Cnaps(FilmAdaptedLearner):
    """CNAPs over a FiLM backbone (frozen by default)."""


    def __init__(self, backbone="efficientnet_b0_film", set_encoder="set_encoder", task_embedding_dim: int = 64,
                 generator_hidden: int = 64, film_l2_weight: float = 0.001, bn_training: bool = False,
                 backbone_trainable: bool = False, **kwargs):
        # Arguments spelt out (not *args) so gin sees them in the registered constructor's signature.
        super().__init__(backbone=backbone, set_encoder=set_encoder, task_embedding_dim=task_embedding_dim,
                         generator_hidden=generator_hidden, film_l2_weight=film_l2_weight,
                         bn_training=bn_training, backbone_trainable=backbone_trainable, **kwargs)

    def build_head(self, feature_dim: int) -> None:
        self.hypernet = ClassifierHyperNetwork(feature_dim, name="classifier_hypernet")
        self.hypernet.build((None, feature_dim))

    def classifier(self, support, labels, way):
        return self.hypernet(class_means(tf.cast(support, tf.float32), labels, way))

    def head_logits(self, support, labels, way, query):
        return linear_logits(query, *self.classifier(support, labels, way))

    def personal_head(self, support, labels, way):
        return LinearHead.from_weights(*self.classifier(support, labels, way), name="linear_classifier")
