"""Simple CNAPs (Bateni et al., 2020): FiLM-adapted features and a Mahalanobis-distance head.

Per class c with n_c support features: mean mu_c, unbiased covariance S_c, and the task covariance
S_task of all support features; Q_c = l_c S_c + (1 - l_c) S_task + I with l_c = n_c / (n_c + 1);
logits = -(x - mu_c)^T Q_c^-1 (x - mu_c), computed with a Cholesky factor of Q_c (never an inverse).
The head is lite_tf/heads.py's Mahalanobis head.

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

from lite_tf.learners.film_learner import FilmAdaptedLearner
from lite_tf.heads import ONE_SHOT_COVARIANCES, MahalanobisHead, simple_cnaps_logits
from lite_tf.errors import ConfigError
from lite_tf.registry import register_learner


@register_learner("simple_cnaps")
class SimpleCnaps(FilmAdaptedLearner):
    """Simple CNAPs over a FiLM backbone (frozen by default); see learners/film_learner.py for args.

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
            raise ConfigError(f"simple_cnaps one_shot_covariance must be one of {ONE_SHOT_COVARIANCES}; "
                              f"got {one_shot_covariance!r}.")
        self.one_shot_covariance = one_shot_covariance

    def build_head(self, feature_dim: int) -> None:
        pass  # the Mahalanobis head has no weights

    def head_logits(self, support, labels, way, query):
        return simple_cnaps_logits(support, labels, way, query, self.one_shot_covariance)

    def personal_head(self, support, labels, way):
        return MahalanobisHead.from_support(support, labels, way, one_shot=self.one_shot_covariance,
                                            name="mahalanobis")
