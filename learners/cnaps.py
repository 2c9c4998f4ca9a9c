"""CNAPs (Requeima et al., 2019): FiLM-adapted features and a classifier generated per class.

A hyper-network maps each class mean mu_c of the adapted support features to the weights and bias
of a linear classifier: w_c = mu_c + g_w(mu_c) (residual MLP), b_c = g_b(mu_c); logits = x W^T + b.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from learners.adaptation import FilmGenerator  # until it moves to lite_tf/backbones/film_generator.py
from lite_tf.film_learner import FilmAdaptedLearner
from lite_tf.heads import LinearHead, class_means, linear_logits
from lite_tf.registry import register_learner


@keras.saving.register_keras_serializable(package="lite_tf")
class ClassifierHyperNetwork(keras.layers.Layer):
    """Class means [K, D] -> (weights [K, D], biases [K]); ELU MLPs of width ``hidden``."""

    def __init__(self, dim: int, hidden: int = None, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.hidden = int(hidden or dim)
        self.weight_hidden = keras.layers.Dense(self.hidden, activation="elu", name="weight_hidden")
        self.weight_out = keras.layers.Dense(self.dim, name="weight_out")
        self.bias_hidden = keras.layers.Dense(self.hidden, activation="elu", name="bias_hidden")
        self.bias_out = keras.layers.Dense(1, name="bias_out")

    def build(self, input_shape):
        self.weight_hidden.build((None, self.dim))
        self.weight_out.build((None, self.hidden))
        self.bias_hidden.build((None, self.dim))
        self.bias_out.build((None, self.hidden))
        self.built = True

    def call(self, means):
        weights = means + self.weight_out(self.weight_hidden(means))
        biases = tf.squeeze(self.bias_out(self.bias_hidden(means)), -1)
        return weights, biases

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "hidden": self.hidden}


@register_learner("cnaps")
class Cnaps(FilmAdaptedLearner):
    """CNAPs over a FiLM backbone (frozen by default); ``hypernet_hidden`` defaults to the feature size."""

    film_generator_class = FilmGenerator

    def __init__(self, backbone="efficientnet_b0_film", set_encoder="set_encoder", task_embedding_dim: int = 64,
                 generator_hidden: int = 64, film_l2_weight: float = 0.001, bn_training: bool = False,
                 backbone_trainable: bool = False, hypernet_hidden: int = None, **kwargs):
        # Arguments spelt out (not *args) so gin sees them in the registered constructor's signature.
        super().__init__(backbone=backbone, set_encoder=set_encoder, task_embedding_dim=task_embedding_dim,
                         generator_hidden=generator_hidden, film_l2_weight=film_l2_weight,
                         bn_training=bn_training, backbone_trainable=backbone_trainable, **kwargs)
        self.hypernet_hidden = hypernet_hidden

    def build_head(self, feature_dim: int) -> None:
        self.hypernet = ClassifierHyperNetwork(feature_dim, self.hypernet_hidden, name="classifier_hypernet")
        self.hypernet.build((None, feature_dim))

    def classifier(self, support, labels, way):
        return self.hypernet(class_means(tf.cast(support, tf.float32), labels, way))

    def head_logits(self, support, labels, way, query):
        return linear_logits(query, *self.classifier(support, labels, way))

    def personal_head(self, support, labels, way):
        return LinearHead.from_weights(*self.classifier(support, labels, way), name="linear_classifier")
