"""Classification heads shared by learners: prototypes, Mahalanobis distances, linear classifiers.

Each head comes as functions used while meta-training (dynamic way and support size, graph-safe)
and as a Keras layer holding one task's adapted values as weights, for personalised models that
can be saved and reloaded.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from lite_tf.errors import ConfigError


# ---------------------------------------------------------------------- prototypes (ProtoNets)
def class_means(features: tf.Tensor, labels: tf.Tensor, way) -> tf.Tensor:
    """[way, D] mean feature of each class."""
    return tf.math.unsorted_segment_mean(features, labels, way)


def negative_squared_distances(queries: tf.Tensor, prototypes: tf.Tensor) -> tf.Tensor:
    """[Q, way] logits -||q - p||^2, expanded to avoid a [Q, way, D] intermediate."""
    return -(tf.reduce_sum(queries ** 2, -1, keepdims=True)
             - 2.0 * tf.matmul(queries, prototypes, transpose_b=True)
             + tf.reduce_sum(prototypes ** 2, -1)[None, :])


def linear_prototype_logits(queries: tf.Tensor, prototypes: tf.Tensor) -> tf.Tensor:
    """[Q, way] logits 2 p.q - ||p||^2: the official ORBIT ``PrototypicalClassifier`` (weight 2p, bias
    -||p||^2). They differ from -||q - p||^2 by ||q||^2 per query: same softmax, other values."""
    return 2.0 * tf.matmul(queries, prototypes, transpose_b=True) - tf.reduce_sum(prototypes ** 2, -1)[None, :]


PROTOTYPE_LOGITS = {"squared_distance": negative_squared_distances, "linear": linear_prototype_logits}


def check_prototype_logits(form: str, owner: str) -> None:
    if form not in PROTOTYPE_LOGITS:
        raise ConfigError(f"{owner} logits must be one of {tuple(PROTOTYPE_LOGITS)}; got {form!r}.")


@keras.saving.register_keras_serializable(package="lite_tf")
class PrototypeHead(keras.layers.Layer):
    """Fixed prototypes (a personalised ProtoNets head): features -> logits (``logits``: 'squared_distance'
    -||x - p||^2, or 'linear' 2 p.x - ||p||^2 as the official ORBIT code)."""

    def __init__(self, prototypes, logits: str = "squared_distance", **kwargs):
        super().__init__(**kwargs)
        check_prototype_logits(logits, "PrototypeHead")
        self.logits = logits
        prototypes = keras.ops.convert_to_numpy(prototypes)
        self.prototypes = self.add_weight(shape=prototypes.shape, initializer="zeros", trainable=False,
                                          name="prototypes")
        self.prototypes.assign(prototypes)

    def call(self, features):
        return PROTOTYPE_LOGITS[self.logits](features, tf.convert_to_tensor(self.prototypes))

    def get_config(self):
        return {**super().get_config(), "prototypes": keras.ops.convert_to_numpy(self.prototypes).tolist(),
                "logits": self.logits}


# ---------------------------------------------------------------------- Mahalanobis (Simple CNAPs)
# (expand_dims, not [:, None]: TFLite has no builtin for a new-axis strided slice of a dynamic shape,
# and lite_tf/export converts these functions)
def _column3(values: tf.Tensor) -> tf.Tensor:
    """[K] -> [K, 1, 1]."""
    return tf.reshape(values, [-1, 1, 1])


ONE_SHOT_COVARIANCES = ("official", "zero")


def class_statistics(features: tf.Tensor, labels: tf.Tensor, way, one_shot: str = "official"):
    """(means [K, D], counts [K], class covariances S_c [K, D, D], task covariance S_task [D, D]).

    Unbiased covariances. ``one_shot`` says what S_c of a one-shot class (and S_task of a
    one-image set) is: 'official' as the official code's ``_estimate_cov`` (a single vector x is one
    variable with D observations: the unbiased variance v of x's entries, broadcast to v 1 1^T);
    'zero' defines it as zero (the scatter is exactly zero and the divisor is clamped to 1).
    """
    if one_shot not in ONE_SHOT_COVARIANCES:
        raise ConfigError(f"one_shot_covariance must be one of {ONE_SHOT_COVARIANCES}; got {one_shot!r}.")
    features = tf.convert_to_tensor(features, tf.float32)
    labels = tf.convert_to_tensor(labels, tf.int32)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(labels, tf.float32), labels, way)
    means = tf.math.unsorted_segment_sum(features, labels, way) / tf.expand_dims(tf.maximum(counts, 1.0), -1)
    centered = features - tf.gather(means, labels)  # [N, D]; zero rows for one-shot classes
    one_hot = tf.one_hot(labels, way, dtype=features.dtype)  # [N, K]
    weighted = tf.expand_dims(tf.transpose(one_hot), -1) * tf.expand_dims(centered, 0)  # [K, N, D]
    scatter = tf.matmul(weighted, tf.expand_dims(centered, 0), transpose_a=True)  # [K, D, D]
    class_cov = scatter / _column3(tf.maximum(counts - 1.0, 1.0))
    count = tf.cast(tf.shape(features)[0], features.dtype)
    task_centered = features - tf.reduce_mean(features, 0, keepdims=True)
    task_cov = tf.matmul(task_centered, task_centered, transpose_a=True) / tf.maximum(count - 1.0, 1.0)
    if one_shot == "official":
        dim = tf.shape(features)[1]
        ones = tf.ones(tf.stack([dim, dim]), features.dtype)
        row_var = (tf.math.reduce_variance(features, axis=1) * tf.cast(dim, features.dtype)
                   / tf.cast(dim - 1, features.dtype))
        single = tf.math.unsorted_segment_sum(row_var, labels, way)  # the member's v where n_c == 1
        class_cov = tf.where(_column3(counts) == 1.0, _column3(single) * tf.expand_dims(ones, 0), class_cov)
        task_cov = tf.where(count == 1.0, row_var[0] * ones, task_cov)
    return means, counts, class_cov, task_cov


def regularized_covariances(counts, class_cov, task_cov) -> tf.Tensor:
    """Q_c = l_c S_c + (1 - l_c) S_task + I, l_c = n_c / (n_c + 1); [K, D, D]."""
    shrink = _column3(counts / (counts + 1.0))
    eye = tf.eye(tf.shape(task_cov)[0], dtype=task_cov.dtype)
    return shrink * class_cov + (1.0 - shrink) * tf.expand_dims(task_cov, 0) + tf.expand_dims(eye, 0)


def mahalanobis_logits(query: tf.Tensor, means: tf.Tensor, cholesky: tf.Tensor) -> tf.Tensor:
    """[Q, K] logits -(x - mu_c)^T (L_c L_c^T)^-1 (x - mu_c) from lower Cholesky factors L_c."""
    diff = query[None, :, :] - means[:, None, :]  # [K, Q, D]
    solved = tf.linalg.triangular_solve(cholesky, tf.transpose(diff, [0, 2, 1]), lower=True)  # [K, D, Q]
    return -tf.transpose(tf.reduce_sum(tf.square(solved), axis=1))


def mahalanobis_classifier(support, labels, way, one_shot: str = "official"):
    """(class means [K, D], Cholesky factors of Q_c [K, D, D]) of a support set's features."""
    means, counts, class_cov, task_cov = class_statistics(support, labels, way, one_shot)
    return means, tf.linalg.cholesky(regularized_covariances(counts, class_cov, task_cov))


def simple_cnaps_logits(support, labels, way, query, one_shot: str = "official") -> tf.Tensor:
    """Simple CNAPs' Mahalanobis logits of ``query`` features against a support set's classes."""
    means, cholesky = mahalanobis_classifier(support, labels, way, one_shot)
    return mahalanobis_logits(tf.cast(query, tf.float32), means, cholesky)


class PersonalizedHead(keras.layers.Layer):
    """A head whose classifier was computed from one task's support set: ``way`` classes of ``dim``
    features, held as fixed (non-trainable) weights and saved with the personalised model."""

    def __init__(self, way: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.way, self.dim = int(way), int(dim)

    def fixed_weight(self, shape: tuple, name: str):
        return self.add_weight(shape=shape, initializer="zeros", trainable=False, name=name)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.way)

    def get_config(self):
        return {**super().get_config(), "way": self.way, "dim": self.dim}


@keras.saving.register_keras_serializable(package="lite_tf")
class MahalanobisHead(PersonalizedHead):
    """A personalised Simple CNAPs head: class means and Cholesky factors of Q_c held as weights."""

    def __init__(self, way: int, dim: int, **kwargs):
        super().__init__(way, dim, **kwargs)
        self.means = self.fixed_weight((self.way, self.dim), "means")
        self.cholesky = self.fixed_weight((self.way, self.dim, self.dim), "cholesky")

    @classmethod
    def from_support(cls, support, labels, way: int, one_shot: str = "official", **kwargs) -> "MahalanobisHead":
        head = cls(way, int(support.shape[-1]), **kwargs)
        means, cholesky = mahalanobis_classifier(support, labels, way, one_shot)
        head.means.assign(means)
        head.cholesky.assign(cholesky)
        return head

    def call(self, features):
        return mahalanobis_logits(features, tf.convert_to_tensor(self.means), tf.convert_to_tensor(self.cholesky))


# ---------------------------------------------------------------------- linear (CNAPs, FineTuner)
def linear_logits(features, weights, biases) -> tf.Tensor:
    """[Q, K] logits x W^T + b of features [Q, D] with weights [K, D] and biases [K]."""
    return tf.matmul(tf.cast(features, tf.float32), weights, transpose_b=True) + biases[None, :]


@keras.saving.register_keras_serializable(package="lite_tf")
class LinearHead(PersonalizedHead):
    """A personalised linear classifier with fixed weights [way, dim] and biases [way]."""

    def __init__(self, way: int, dim: int, **kwargs):
        super().__init__(way, dim, **kwargs)
        self.kernel = self.fixed_weight((self.way, self.dim), "kernel")
        self.bias = self.fixed_weight((self.way,), "bias")

    @classmethod
    def from_weights(cls, weights, biases, **kwargs) -> "LinearHead":
        head = cls(int(weights.shape[0]), int(weights.shape[-1]), **kwargs)
        head.kernel.assign(weights)
        head.bias.assign(biases)
        return head

    def call(self, features):
        return linear_logits(features, tf.convert_to_tensor(self.kernel), tf.convert_to_tensor(self.bias))
