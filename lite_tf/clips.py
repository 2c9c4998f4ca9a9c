"""Clip features: embed every frame of a clip, average the frame features into one clip feature.

The official ORBIT models of the LITE paper (microsoft/ORBIT-Dataset at tag results-neurips21-paper,
``models/poolers.py`` ``MeanPooler`` and ``few_shot_recognisers.py`` ``_pool_features``) treat a clip
of ``clip_length`` contiguous frames as one example: the feature extractor embeds its frames one by
one and the clip's feature is their mean. So a context set is a set of clips (LITE's h counts clips)
and a target clip gets one prediction.

In lite_tf a set of clips is an image tensor of rank 5, [clips, T, H, W, 3], and a set of frames one
of rank 4. ``pool_clips(fn)`` turns a per-image function into one that takes either: frames pass
through, clips are flattened to frames, embedded and mean-pooled. The LITE mapper
(lite_tf/lite.py) and ``Learner.embed_support`` wrap the functions they map, so a learner's code
never changes for clips; a learner only pools its query features through ``pool_clips`` and builds
its personalised model with ``clip_inputs`` / ``pool_output``.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import keras
import tensorflow as tf

from lite_tf.errors import DataError

CLIP_RANK = 5  # [clips, T, H, W, 3]


def clip_length_of(images) -> Optional[int]:
    """T of a clip tensor [clips, T, H, W, 3] (static), None for frames [N, H, W, 3]."""
    shape = images.shape
    if shape.rank != CLIP_RANK:
        return None
    if shape[1] is None:
        raise DataError(f"Clips must have a static clip length: got image shape {shape} ([clips, T, H, W, 3]).")
    return int(shape[1])


def to_frames(clips: tf.Tensor) -> tf.Tensor:
    """[clips, T, H, W, C] -> [clips * T, H, W, C], clip-major (row c * T + t is frame t of clip c)."""
    shape = tf.shape(clips)
    return tf.reshape(clips, tf.concat([[-1], shape[2:]], 0))


def mean_pool(features: tf.Tensor, clip_length: int) -> tf.Tensor:
    """[clips * T, D] clip-major frame features -> [clips, D] (official ``MeanPooler``)."""
    dim = tf.shape(features)[-1]
    return tf.reduce_mean(tf.reshape(features, tf.stack([-1, clip_length, dim])), axis=1)


def pool_clips(fn: Callable) -> Callable:
    """``fn(images, *args, **kwargs)`` on frames, or on clips as the mean of its frames' outputs."""
    def pooled(images, *args, **kwargs):
        images = tf.convert_to_tensor(images)
        length = clip_length_of(images)
        if length is None:
            return fn(images, *args, **kwargs)
        return mean_pool(fn(to_frames(images), *args, **kwargs), length)

    return pooled


def chunk_in_clips(chunk_size: int, images) -> int:
    """Clips per chunk so one chunk holds about ``chunk_size`` frames (at least one clip)."""
    length = clip_length_of(images)
    return chunk_size if length is None else max(1, chunk_size // length)


# ---------------------------------------------------------------- personalised Keras models
@keras.saving.register_keras_serializable(package="lite_tf")
class ClipFrames(keras.layers.Layer):
    """[clips, T, H, W, C] -> [clips * T, H, W, C] inside a Keras model."""

    def call(self, clips):
        return to_frames(clips)

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[2:])


@keras.saving.register_keras_serializable(package="lite_tf")
class MeanPooler(keras.layers.Layer):
    """[clips * T, D] frame features -> [clips, D] clip features (official ``MeanPooler(T)``)."""

    def __init__(self, clip_length: int, **kwargs):
        super().__init__(**kwargs)
        self.clip_length = int(clip_length)

    def call(self, features):
        return mean_pool(features, self.clip_length)

    def compute_output_shape(self, input_shape):
        return (None, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "clip_length": self.clip_length}


def clip_inputs(image_size: int, clip_length: Optional[int]) -> Tuple[keras.KerasTensor, keras.KerasTensor]:
    """(model input, frames to embed): frames [S, S, 3] as they are, or clips [T, S, S, 3] flattened."""
    if clip_length is None:
        inputs = keras.Input((image_size, image_size, 3), name="images")
        return inputs, inputs
    inputs = keras.Input((clip_length, image_size, image_size, 3), name="clips")
    return inputs, ClipFrames(name="clip_frames")(inputs)


def pool_output(features, clip_length: Optional[int]):
    """Frame features as they are, or mean-pooled per clip (the partner of ``clip_inputs``)."""
    return features if clip_length is None else MeanPooler(clip_length, name="clip_pooler")(features)


def split_clip_model(model: keras.Model):
    """(frames -> frame features, pooled features -> outputs) of a model built with ``clip_inputs`` /
    ``pool_output``, or None for a model without those layers.

    Scoring every frame with its clip history embeds each frame ``T`` times through the whole model;
    the two halves let a caller embed each frame once and pool any histories it likes (the same
    numbers: features are per frame).
    """
    try:
        frames, pooler = model.get_layer("clip_frames"), model.get_layer("clip_pooler")
    except ValueError:
        return None
    return keras.Model(frames.output, pooler.input), keras.Model(pooler.output, model.outputs[0])
