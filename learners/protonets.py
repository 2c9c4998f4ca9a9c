"""Prototypical Networks (Snell et al., 2017) as a LITE learner.

Prototypes are class means of support features; logits are negative squared Euclidean distances
(``logits='squared_distance'``), or 2 p.x - ||p||^2 (``'linear'``: the official ORBIT
``PrototypicalClassifier``, which differs by ||x||^2 per query: the same softmax, loss and
predictions, the official logit values). lite_tf/heads.py.
"""
from __future__ import annotations

from typing import Union

import keras
import tensorflow as tf

from lite_tf.backbones.film import FilmConstants, call_backbone, identity_film
from lite_tf.clips import clip_inputs, clip_length_of, pool_output
from lite_tf.heads import PROTOTYPE_LOGITS, PrototypeHead, check_prototype_logits, class_means
from lite_tf.learner import Learner
from lite_tf.registry import register_learner


@register_learner("protonets")
class ProtoNets(Learner):
    """ProtoNets over any registered backbone (a FiLM backbone runs with identity FiLM); batch norm
    frozen unless ``bn_training``; ``logits``: 'squared_distance' or 'linear' (module docstring)."""

    def __init__(self, backbone: Union[str, keras.layers.Layer] = "conv4", bn_training: bool = False,
                 backbone_trainable: bool = True, logits: str = "squared_distance", **kwargs):
        super().__init__(**kwargs)
        check_prototype_logits(logits, "learners.protonets")
        self.backbone_spec = backbone
        self.bn_training = bn_training
        self.backbone_trainable = backbone_trainable
        self.logits = logits
        self.backbone = None

    def build_for(self, image_size: int) -> None:
        self.backbone = self.build_backbone(self.backbone_spec, image_size)
        self.backbone.trainable = self.backbone_trainable
        self.backbone.build((None, image_size, image_size, 3))
        self.image_size = image_size
        self.built = True

    def features(self, images, training=False):
        return call_backbone(self.backbone, images, training=bool(training and self.bn_training))

    def call(self, support_images, support_labels, query_images, way, mapper, training=False):
        support, query = mapper.map_with_queries(lambda x: self.features(x, training), support_images, query_images,
                                                 joint=not (training and self.bn_training))
        prototypes = class_means(support, support_labels, way)
        return PROTOTYPE_LOGITS[self.logits](query, prototypes)

    def personalize(self, support_images, support_labels, way) -> keras.Model:
        images = tf.convert_to_tensor(support_images)
        support = self.embed_support(self.features, images)
        prototypes = class_means(support, tf.convert_to_tensor(support_labels, tf.int32), way)
        clip_length = clip_length_of(images)
        inputs, frames = clip_inputs(self.image_size, clip_length)
        film = identity_film(self.backbone)
        if film:
            constants = FilmConstants([int(g.shape[-1]) for g, _ in film], name="identity_film")
            constants.set_film(film)
            features = self.backbone([frames, *constants(frames)], training=False)
        else:
            features = self.backbone(frames, training=False)
        features = pool_output(features, clip_length)
        logits = PrototypeHead(prototypes, logits=self.logits, name="prototypes")(features)
        return keras.Model(inputs, logits, name="personalized_protonets")
