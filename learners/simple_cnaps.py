"""Simple CNAPs (Bateni et al., 2020): FiLM-adapted features and a Mahalanobis-distance head.

Per class c with n_c support features: mean mu_c, unbiased covariance S_c, and the task covariance
S_task of all support features; Q_c = l_c S_c + (1 - l_c) S_task + I with l_c = n_c / (n_c + 1);
logits = -(x - mu_c)^T Q_c^-1 (x - mu_c), computed with a Cholesky factor of Q_c (never an inverse).

One-shot classes (``one_shot_covariance``): the official code (cambridge-mlg/LITE and Simple CNAPs,
``_estimate_cov``) treats a single feature vector x as one variable with D observations, so its
"covariance" is the unbiased variance of x's D entries, a scalar v that broadcasts into the constant
matrix v 1 1^T: Q_c = v/2 1 1^T + S_task/2 + I. ``'official'`` (the default, what official checkpoints
were trained and evaluated with) reproduces that; ``'zero'`` defines S_c of a one-shot class as zero
(Q_c = S_task / 2 + I). Both are positive definite. A one-image support set gets S_task the same way.

Everything is batched over classes (segment sums, batched Cholesky/triangular solves), so way and
support size may be dynamic inside tf.function.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from learners.adaptation import FilmAdaptedLearner
from lite_tf.registry import register_learner


ONE_SHOT_COVARIANCES = ("official", "zero")


def class_statistics(features: tf.Tensor, labels: tf.Tensor, way, one_shot: str = "official"):
    """(means [K, D], counts [K], class covariances S_c [K, D, D], task covariance S_task [D, D]).

    ``one_shot`` says what S_c of a one-shot class (and S_task of a one-image set) is; see the module doc.
    """
    if one_shot not in ONE_SHOT_COVARIANCES:
        raise ValueError(f"one_shot_covariance must be one of {ONE_SHOT_COVARIANCES}; got {one_shot!r}.")
    features = tf.convert_to_tensor(features, tf.float32)
    labels = tf.convert_to_tensor(labels, tf.int32)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(labels, tf.float32), labels, way)
    means = tf.math.unsorted_segment_sum(features, labels, way) / tf.maximum(counts, 1.0)[:, None]
    centered = features - tf.gather(means, labels)  # [N, D]; zero rows for one-shot classes
    one_hot = tf.one_hot(labels, way, dtype=features.dtype)  # [N, K]
    weighted = tf.transpose(one_hot)[:, :, None] * centered[None]  # [K, N, D]
    scatter = tf.matmul(weighted, centered[None], transpose_a=True)  # [K, D, D]
    class_cov = scatter / tf.maximum(counts - 1.0, 1.0)[:, None, None]
    count = tf.cast(tf.shape(features)[0], features.dtype)
    task_centered = features - tf.reduce_mean(features, 0, keepdims=True)
    task_cov = tf.matmul(task_centered, task_centered, transpose_a=True) / tf.maximum(count - 1.0, 1.0)
    if one_shot == "official":
        dim = tf.shape(features)[1]
        ones = tf.ones(tf.stack([dim, dim]), features.dtype)
        row_var = tf.math.reduce_variance(features, axis=1) * tf.cast(dim, features.dtype) / tf.cast(dim - 1, features.dtype)
        single = tf.math.unsorted_segment_sum(row_var, labels, way)  # the member's v where n_c == 1
        class_cov = tf.where((counts == 1.0)[:, None, None], single[:, None, None] * ones[None], class_cov)
        task_cov = tf.where(count == 1.0, row_var[0] * ones, task_cov)
    return means, counts, class_cov, task_cov


def regularized_covariances(counts, class_cov, task_cov) -> tf.Tensor:
    """Q_c = l_c S_c + (1 - l_c) S_task + I, l_c = n_c / (n_c + 1); [K, D, D]."""
    shrink = (counts / (counts + 1.0))[:, None, None]
    eye = tf.eye(tf.shape(task_cov)[0], dtype=task_cov.dtype)
    return shrink * class_cov + (1.0 - shrink) * task_cov[None] + eye[None]


def mahalanobis_logits(query: tf.Tensor, means: tf.Tensor, cholesky: tf.Tensor) -> tf.Tensor:
    """[Q, K] logits -(x - mu_c)^T (L_c L_c^T)^-1 (x - mu_c) from lower Cholesky factors L_c."""
    diff = query[None, :, :] - means[:, None, :]  # [K, Q, D]
    solved = tf.linalg.triangular_solve(cholesky, tf.transpose(diff, [0, 2, 1]), lower=True)  # [K, D, Q]
    return -tf.transpose(tf.reduce_sum(tf.square(solved), axis=1))


def simple_cnaps_logits(support, labels, way, query, one_shot: str = "official") -> tf.Tensor:
    means, counts, class_cov, task_cov = class_statistics(support, labels, way, one_shot)
    cholesky = tf.linalg.cholesky(regularized_covariances(counts, class_cov, task_cov))
    return mahalanobis_logits(tf.cast(query, tf.float32), means, cholesky)


@keras.saving.register_keras_serializable(package="lite_tf")
class MahalanobisHead(keras.layers.Layer):
    """A personalised Simple CNAPs head: class means and Cholesky factors of Q_c held as weights."""

    def __init__(self, way: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.way, self.dim = int(way), int(dim)
        self.means = self.add_weight(shape=(self.way, self.dim), initializer="zeros", trainable=False, name="means")
        self.cholesky = self.add_weight(shape=(self.way, self.dim, self.dim), initializer="zeros", trainable=False,
                                        name="cholesky")

    def call(self, features):
        return mahalanobis_logits(features, tf.convert_to_tensor(self.means), tf.convert_to_tensor(self.cholesky))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.way)

    def get_config(self):
        return {**super().get_config(), "way": self.way, "dim": self.dim}


@register_learner("simple_cnaps")
class SimpleCnaps(FilmAdaptedLearner):
    """Simple CNAPs over a FiLM backbone (frozen by default); see learners/adaptation.py for args.

    ``one_shot_covariance``: 'official' (default) or 'zero', see the module doc.
    """

    def __init__(self, backbone="efficientnet_b0_film", set_encoder="set_encoder", task_embedding_dim: int = 64,
                 generator_hidden: int = 64, film_l2_weight: float = 0.001, bn_training: bool = False,
                 backbone_trainable: bool = False, one_shot_covariance: str = "official", **kwargs):
        # Arguments spelt out (not **kwargs) so gin sees them in the registered constructor's signature.
        super().__init__(backbone=backbone, set_encoder=set_encoder, task_embedding_dim=task_embedding_dim,
                         generator_hidden=generator_hidden, film_l2_weight=film_l2_weight,
                         bn_training=bn_training, backbone_trainable=backbone_trainable, **kwargs)
        if one_shot_covariance not in ONE_SHOT_COVARIANCES:
            raise ValueError(f"simple_cnaps one_shot_covariance must be one of {ONE_SHOT_COVARIANCES}; "
                             f"got {one_shot_covariance!r}.")
        self.one_shot_covariance = one_shot_covariance

    def build_head(self, feature_dim: int) -> None:
        pass  # the Mahalanobis head has no weights

    def head_logits(self, support, labels, way, query):
        return simple_cnaps_logits(support, labels, way, query, self.one_shot_covariance)

    def personal_head(self, support, labels, way):
        means, counts, class_cov, task_cov = class_statistics(support, labels, way, self.one_shot_covariance)
        head = MahalanobisHead(way, int(support.shape[-1]), name="mahalanobis")
        head.means.assign(means)
        head.cholesky.assign(tf.linalg.cholesky(regularized_covariances(counts, class_cov, task_cov)))
        return head
