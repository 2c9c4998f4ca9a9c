"""Simple CNAPs (Bateni et al., 2020): FiLM-adapted features and a Mahalanobis-distance head.

Per class c with n_c support features: mean mu_c, unbiased covariance S_c, and the task covariance
S_task of all support features; Q_c = l_c S_c + (1 - l_c) S_task + I with l_c = n_c / (n_c + 1);
logits = -(x - mu_c)^T Q_c^-1 (x - mu_c), computed with a Cholesky factor of Q_c (never an inverse).
The head is lite_tf/heads.py's Mahalanobis head.

One-shot classes: the official code's unbiased estimate divides by n_c - 1 = 0. Here S_c of a
one-shot class is defined as zero (its scatter is exactly zero and the divisor is clamped to 1),
so Q_c = S_task / 2 + I, finite and positive definite. A one-image support set likewise gets
S_task = 0.

Everything is batched over classes (segment sums, batched Cholesky/triangular solves), so way and
support size may be dynamic inside tf.function.
"""
from __future__ import annotations

from learners.adaptation import FilmGenerator  # until it moves to lite_tf/backbones/film_generator.py
from lite_tf.film_learner import FilmAdaptedLearner
from lite_tf.heads import MahalanobisHead, simple_cnaps_logits
from lite_tf.registry import register_learner


@register_learner("simple_cnaps")
class SimpleCnaps(FilmAdaptedLearner):
    """Simple CNAPs over a FiLM backbone (frozen by default); see lite_tf/film_learner.py for args."""

    film_generator_class = FilmGenerator

    def build_head(self, feature_dim: int) -> None:
        pass  # the Mahalanobis head has no weights

    def head_logits(self, support, labels, way, query):
        return simple_cnaps_logits(support, labels, way, query)

    def personal_head(self, support, labels, way):
        return MahalanobisHead.from_support(support, labels, way, name="mahalanobis")
