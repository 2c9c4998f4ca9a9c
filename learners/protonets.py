"""Prototypical Networks (Snell et al., 2017) as a LITE learner.

Prototypes are class means of support features; logits are negative squared Euclidean distances
(lite_tf/heads.py).
"""
from __future__ import annotations

from typing import Union

import keras
import tensorflow as tf

from lite_tf.heads import PrototypeHead, class_means, negative_squared_distances
from lite_tf.learner import Learner
from lite_tf.registry import register_learner


@register_learner("protonets")
class ProtoNets(Learner):
    """ProtoNets over any registered backbone; batch norm frozen unless ``bn_training``."""

    def __init__(self, backbone: Union[str, keras.layers.Layer] = "conv4", bn_training: bool = False,
                 backbone_trainable: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.backbone_spec = backbone
        self.bn_training = bn_training
        self.backbone_trainable = backbone_trainable
        self.backbone = None

    def build_for(self, image_size: int) -> None:
        self.backbone = self.build_backbone(self.backbone_spec, image_size)
        self.backbone.trainable = self.backbone_trainable
        self.backbone.build((None, image_size, image_size, 3))
        self.image_size = image_size
        self.built = True

    def features(self, images, training=False):
        return self.backbone(images, training=bool(training and self.bn_training))

    def call(self, support_images, support_labels, query_images, way, mapper, training=False):
        support = mapper.map(lambda x: self.features(x, training), support_images)
        prototypes = class_means(support, support_labels, way)
        return negative_squared_distances(self.features(query_images, training), prototypes)

    def personalize(self, support_images, support_labels, way) -> keras.Model:
        support = self.embed_support(self.features, support_images)
        prototypes = class_means(support, tf.convert_to_tensor(support_labels, tf.int32), way)
        inputs = keras.Input((self.image_size, self.image_size, 3))
        logits = PrototypeHead(prototypes, name="prototypes")(self.backbone(inputs, training=False))
        return keras.Model(inputs, logits, name="personalized_protonets")
