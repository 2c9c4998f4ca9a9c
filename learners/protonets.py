"""Prototypical Networks (Snell et al., 2017) as a LITE learner.

Prototypes are class means of support features; logits are negative squared Euclidean distances.
"""
from __future__ import annotations

from typing import Union

import keras
import tensorflow as tf

from lite_tf.learner import Learner
from lite_tf.registry import get_backbone, register_learner


def class_means(features: tf.Tensor, labels: tf.Tensor, way) -> tf.Tensor:
    """[way, D] mean feature of each class."""
    return tf.math.unsorted_segment_mean(features, labels, way)


def negative_squared_distances(queries: tf.Tensor, prototypes: tf.Tensor) -> tf.Tensor:
    """[Q, way] logits -||q - p||^2, expanded to avoid a [Q, way, D] intermediate."""
    return -(tf.reduce_sum(queries ** 2, -1, keepdims=True)
             - 2.0 * tf.matmul(queries, prototypes, transpose_b=True)
             + tf.reduce_sum(prototypes ** 2, -1)[None, :])


@keras.saving.register_keras_serializable(package="lite_tf")
class PrototypeHead(keras.layers.Layer):
    """Fixed prototypes (a personalised ProtoNets head): features -> negative squared distances."""

    def __init__(self, prototypes, **kwargs):
        super().__init__(**kwargs)
        prototypes = keras.ops.convert_to_numpy(prototypes)
        self.prototypes = self.add_weight(shape=prototypes.shape, initializer="zeros", trainable=False,
                                          name="prototypes")
        self.prototypes.assign(prototypes)

    def call(self, features):
        return negative_squared_distances(features, tf.convert_to_tensor(self.prototypes))

    def get_config(self):
        return {**super().get_config(), "prototypes": keras.ops.convert_to_numpy(self.prototypes).tolist()}


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
        spec = self.backbone_spec
        self.backbone = get_backbone(spec)(image_size=image_size) if isinstance(spec, str) else spec
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
        from lite_tf.images import to_float_images
        from lite_tf.lite import chunked_map

        support = chunked_map(lambda x: self.features(to_float_images(x)), tf.convert_to_tensor(support_images), 64)
        prototypes = class_means(support, tf.convert_to_tensor(support_labels, tf.int32), way)
        inputs = keras.Input((self.image_size, self.image_size, 3))
        logits = PrototypeHead(prototypes, name="prototypes")(self.backbone(inputs, training=False))
        return keras.Model(inputs, logits, name="personalized_protonets")
