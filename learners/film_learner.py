"""The FiLM-adapted learner base shared by the CNAPs family (Simple CNAPs, CNAPs).

A CNAPs-family learner embeds the support set with the set encoder (z = mean of per-image codes,
mapped through LITE), generates FiLM parameters for every site of a frozen FiLM backbone from z,
and hands FiLM-adapted support and query features to a head (Mahalanobis for Simple CNAPs, a
classifier hyper-network for CNAPs). Because z feeds the mapped feature function, LITE's support
gradient through z is not exactly unbiased (see lite_tf/lite.py); ``exact`` mode and h >= N equal
full back-propagation.
"""
from __future__ import annotations

import time
from typing import Union

import keras
import tensorflow as tf

from lite_tf.backbones.film import FilmConstants, call_backbone, film_sites
from lite_tf.backbones.film_generator import FilmGenerator
from lite_tf.backbones.set_encoder import context_chunk, task_embedding
from lite_tf.clips import clip_inputs, clip_length_of, pool_output
from lite_tf.errors import ConfigError
from lite_tf.macs import image_macs
from lite_tf.learner import Learner


class FilmAdaptedLearner(Learner):
    """Base of Simple CNAPs and CNAPs: set encoder -> FiLM generator -> FiLM backbone -> head.

    ``film_generator_class`` is the official FiLM generator (lite_tf/backbones/film_generator.py);
    a subclass may set another layer ``cls(channels, hidden=..., name=...)`` mapping z to
    [(gamma, beta)] per FiLM site, with an ``l2()`` regulariser. Subclasses implement
    ``build_head(feature_dim)``, ``head_logits(support, labels, way, query)`` and
    ``personal_head(support, labels, way) -> keras layer``.

    Args:
      backbone: registered FiLM backbone name (built with ``image_size``) or a built FiLM model.
      set_encoder: registered name or model of the per-image set encoder.
      task_embedding_dim: set-encoder width (64 in the paper).
      generator_hidden: hidden width of the FiLM generator MLPs.
      film_l2_weight: weight of the FiLM regulariser in the training loss (0.001 in the paper).
      bn_training: run batch norm in training mode while meta-training (breaks LITE exactness).
      backbone_trainable: also train the feature extractor (frozen in the paper).
    """

    film_generator_class = FilmGenerator

    def __init__(self, backbone: Union[str, keras.Model] = "efficientnet_b0_film",
                 set_encoder: Union[str, keras.Model] = "set_encoder", task_embedding_dim: int = 64,
                 generator_hidden: int = 64, film_l2_weight: float = 0.001, bn_training: bool = False,
                 backbone_trainable: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.backbone_spec, self.set_encoder_spec = backbone, set_encoder
        self.task_embedding_dim, self.generator_hidden = task_embedding_dim, generator_hidden
        self.film_l2_weight, self.bn_training = float(film_l2_weight), bn_training
        self.backbone_trainable = backbone_trainable
        self.last_personalization_cost = None

    # ---------------------------------------------------------------- building
    def build_for(self, image_size: int) -> None:
        self.backbone = self.build_backbone(self.backbone_spec, image_size)
        sites = film_sites(self.backbone)
        if not sites:
            raise ConfigError(f"{type(self).__name__} needs a FiLM backbone; "
                              f"{getattr(self.backbone, 'name', self.backbone_spec)!r} has no FiLM sites "
                              f"(try efficientnet_b0_film, resnet18_film, film_conv4).")
        self.backbone.trainable = self.backbone_trainable
        self.set_encoder = self.build_backbone(self.set_encoder_spec, image_size, filters=self.task_embedding_dim)
        self.film_generator = self.film_generator_class([c for _, c in sites], hidden=self.generator_hidden,
                                                        name="film_generator")
        self.film_generator.build((1, self.set_encoder.outputs[0].shape[-1]))
        self.feature_dim = int(self.backbone.outputs[0].shape[-1])
        self.build_head(self.feature_dim)
        self.image_size = image_size
        self.built = True

    def build_head(self, feature_dim: int) -> None:
        raise NotImplementedError

    # ---------------------------------------------------------------- forward
    def _bn(self, training) -> bool:
        return bool(training and self.bn_training)

    def task_film(self, support_images, mapper=None, training=False):
        """FiLM parameters generated from the support set's task embedding."""
        z = task_embedding(self.set_encoder, support_images, mapper, training=self._bn(training))
        return self.film_generator(z)

    def features(self, images, film, training=False):
        return call_backbone(self.backbone, images, film, training=self._bn(training))

    def call(self, support_images, support_labels, query_images, way, mapper, training=False):
        film = self.task_film(support_images, mapper, training)
        # FiLM is the map's context: exact mode differentiates the support features through it.
        # Without batch statistics, H and the queries are embedded as one batch (SupportMapper.map_with_queries).
        support, query = mapper.map_with_queries(lambda x, film: self.features(x, film, training), support_images,
                                                 query_images, context=film, joint=not self._bn(training))
        return self.head_logits(support, support_labels, way, query)

    def head_logits(self, support, labels, way, query):
        raise NotImplementedError

    def regularization_loss(self) -> tf.Tensor:
        return self.film_l2_weight * self.film_generator.l2()

    # ---------------------------------------------------------------- personalisation
    def personal_head(self, support, labels, way) -> keras.layers.Layer:
        raise NotImplementedError

    def personalize(self, support_images, support_labels, way) -> keras.Model:
        """Adapts once (set encoder, FiLM, head) and returns images -> logits; records the cost."""
        start = time.perf_counter()
        images = tf.convert_to_tensor(support_images)
        labels = tf.convert_to_tensor(support_labels, tf.int32)
        if context_chunk(self.set_encoder) is None:
            z = tf.reduce_mean(self.embed_support(lambda x: self.set_encoder(x, training=False), images), axis=0)
        else:  # batch statistics: the official chunks (lite_tf/backbones/set_encoder.py)
            z = tf.stop_gradient(task_embedding(self.set_encoder, images))
        film = self.film_generator(z)
        support = self.embed_support(lambda x: self.features(x, film), images)
        head = self.personal_head(support, labels, int(way))
        constants = FilmConstants([int(g.shape[-1]) for g, _ in film], name="task_film")
        constants.set_film(film)
        clip_length = clip_length_of(images)
        inputs, frames = clip_inputs(self.image_size, clip_length)
        features = pool_output(self.backbone([frames, *constants(frames)], training=False), clip_length)
        model = keras.Model(inputs, head(features), name=f"personalized_{self.name}")
        count = int(images.shape[0]) * (clip_length or 1)  # frames embedded
        per_image = (image_macs(lambda x: self.set_encoder(x, training=False), self.image_size)
                     + image_macs(lambda x: self.features(x, film), self.image_size))
        self.last_personalization_cost = {"seconds": time.perf_counter() - start, "macs": count * per_image}
        return model
