"""The interface every learner plugin implements, and the pieces every learner needs."""
from __future__ import annotations

from typing import Callable, Union

import keras
import tensorflow as tf

from lite_tf.clips import chunk_in_clips, pool_clips
from lite_tf.images import to_float_images
from lite_tf.lite import LiteConfig, chunked_map
from lite_tf.registry import get_backbone


class Learner(keras.layers.Layer):
    """Turns a support set into a classifier and scores a batch of query images.

    Subclasses implement ``call`` and ``build_for``; they map per-image networks over the support
    set only through ``mapper.map(fn, support_images)`` (see lite_tf/lite.py) so the same code runs
    with LITE, exact, full back-propagation or inference; a mapped function that depends on
    set-level tensors takes them as ``context`` (``mapper.map(fn, images, context=c)`` calls
    ``fn(images, c)``). Query images are float32 in [-1, 1]. Shared heads live in lite_tf/heads.py.
    Sets may be clips [clips, T, H, W, 3] (ORBIT, lite_tf/clips.py): the mapper pools them; a learner
    embeds its queries through ``pool_clips`` and builds personalised models with ``clip_inputs``.
    """

    #: support images embedded at a time when personalising (``embed_support``). EpisodicModel sets
    #: it from its LiteConfig.chunk_size; None takes the gin-bound LiteConfig's. One binding for both.
    support_chunk_size = None

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

    # ------------------------------------------------------------------ helpers for subclasses
    @staticmethod
    def build_backbone(spec: Union[str, keras.layers.Layer], image_size: int, **kwargs) -> keras.layers.Layer:
        """The registered backbone ``spec`` built for ``image_size`` (``kwargs`` go to its factory),
        or ``spec`` itself when it is already a layer."""
        if isinstance(spec, str):
            return get_backbone(spec)(image_size=image_size, **kwargs)
        return spec

    def embed_support(self, fn: Callable, images) -> tf.Tensor:
        """``fn`` over a support set (uint8 or float images) in chunks of the LITE chunk size, without
        gradients (personalisation). Clips [clips, T, H, W, 3] give one mean-pooled value per clip
        (lite_tf/clips.py), a chunk holding about the chunk size in frames."""
        images = tf.convert_to_tensor(images)
        chunk_size = chunk_in_clips(self.support_chunk_size or LiteConfig().chunk_size, images)
        per_image = pool_clips(lambda x: fn(to_float_images(x)))
        return tf.stop_gradient(chunked_map(per_image, images, chunk_size))
