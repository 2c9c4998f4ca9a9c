"""The interface every learner plugin implements."""
from __future__ import annotations

import keras
import tensorflow as tf


class Learner(keras.layers.Layer):
    """Turns a support set into a classifier and scores a batch of query images.

    Subclasses implement ``call`` and ``build_for``; they map per-image networks over the support
    set only through ``mapper.map(fn, support_images)`` (see lite_tf/lite.py) so the same code runs
    with LITE, full back-propagation or inference. Query images are float32 in [-1, 1].
    """

    def build_for(self, image_size: int) -> None:
        """Creates every weight for images of ``image_size`` pixels (called once, eagerly)."""
        raise NotImplementedError

    def call(self, support_images, support_labels, query_images, way, mapper, training=False):
        """Returns query logits [num_query, way]."""
        raise NotImplementedError

    def regularization_loss(self) -> tf.Tensor:
        """Weight penalties added to the training loss once per episode (e.g. FiLM L2)."""
        return tf.constant(0.0)

    def personalize(self, support_images, support_labels, way) -> keras.Model:
        """Adapts to one support set; returns a Keras model mapping images to logits.

        The returned model never needs the support set again and can be saved and reloaded.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement personalize().")
