"""The episode structure shared by the data pipeline and EpisodicModel, and its validation.

An episode is a dict of tensors:
  support_images  [N, H, W, 3]  float32 in [-1, 1] (or uint8 in [0, 255], converted per chunk)
  support_labels  [N]           int32, episode-relative class ids in [0, way)
  query_images    [M, H, W, 3]  same dtype as support_images
  query_labels    [M]           int32 in [0, way)
  way             []            int32, number of classes in the episode
N, M and way change from episode to episode; datasets declare them as unknown dimensions so the
training step is traced once. Support and query images may instead be clips [N, T, H, W, 3] (ORBIT's
clip features, lite_tf/clips.py): one label per clip, each clip embedded frame by frame and pooled.
"""
from __future__ import annotations

from typing import Mapping, Optional

import tensorflow as tf

from lite_tf.errors import DataError, MissingKeyError, WrongTypeError

EPISODE_KEYS = ("support_images", "support_labels", "query_images", "query_labels", "way")
IMAGE_DTYPES = (tf.float32, tf.uint8)


def episode_signature(image_size: Optional[int] = None, image_dtype=tf.float32, channels: int = 3,
                      clip_length: Optional[int] = None) -> dict:
    """The ``tf.TensorSpec`` of every key; sizes that vary between episodes are left unknown.
    ``clip_length``: images are clips [N, clip_length, H, W, C]."""
    image_shape = [None, image_size, image_size, channels]
    if clip_length is not None:
        image_shape.insert(1, clip_length)
    return {
        "support_images": tf.TensorSpec(image_shape, image_dtype, name="support_images"),
        "support_labels": tf.TensorSpec([None], tf.int32, name="support_labels"),
        "query_images": tf.TensorSpec(image_shape, image_dtype, name="query_images"),
        "query_labels": tf.TensorSpec([None], tf.int32, name="query_labels"),
        "way": tf.TensorSpec([], tf.int32, name="way"),
    }


def unpack_episode(data) -> dict:
    """Accepts an episode dict, or Keras's (x, y, sample_weight) wrapping of one with y unset."""
    if isinstance(data, (tuple, list)) and data and all(item is None for item in data[1:]):
        data = data[0]
    if not isinstance(data, Mapping):
        raise WrongTypeError(
            f"An episode must be a dict with keys {EPISODE_KEYS}; got {type(data).__name__}."
        )
    missing = [key for key in EPISODE_KEYS if key not in data]
    if missing:
        raise MissingKeyError(f"Episode is missing key(s) {missing}; expected keys {EPISODE_KEYS}.")
    return {key: data[key] for key in EPISODE_KEYS}


def _check_static(episode: dict, image_size: Optional[int]) -> None:
    for key in ("support_images", "query_images"):
        images = episode[key]
        if images.shape.rank is not None and images.shape.rank not in (4, 5):
            raise DataError(
                f"Episode {key} must have rank 4 [count, height, width, channels] or 5 (clips [count, "
                f"clip_length, height, width, channels]); got shape {images.shape}."
            )
        if images.dtype not in IMAGE_DTYPES:
            raise WrongTypeError(
                f"Episode {key} must be float32 in [-1, 1] or uint8; got dtype {images.dtype.name}."
            )
        if image_size is not None and images.shape.rank is not None:
            height, width = images.shape[-3], images.shape[-2]
            if (height is not None and height != image_size) or (width is not None and width != image_size):
                raise DataError(
                    f"Episode {key} has {height}x{width} images; this model was built for "
                    f"{image_size}x{image_size}."
                )
    if episode["support_images"].shape.rank != episode["query_images"].shape.rank:
        raise DataError(
            "Episode support_images and query_images must both be images or both be clips; got shapes "
            f"{episode['support_images'].shape} and {episode['query_images'].shape}."
        )
    if episode["support_images"].dtype != episode["query_images"].dtype:
        raise WrongTypeError(
            "Episode support_images and query_images must share a dtype; got "
            f"{episode['support_images'].dtype.name} and {episode['query_images'].dtype.name}."
        )
    for key in ("support_labels", "query_labels"):
        labels = episode[key]
        if labels.shape.rank is not None and labels.shape.rank != 1:
            raise DataError(f"Episode {key} must have rank 1 [count]; got shape {labels.shape}.")
        if not labels.dtype.is_integer:
            raise WrongTypeError(f"Episode {key} must be integer class ids; got dtype {labels.dtype.name}.")
    if episode["way"].shape.rank not in (None, 0):
        raise DataError(f"Episode way must be a scalar; got shape {episode['way'].shape}.")


def validate_episode(episode: dict, image_size: Optional[int] = None) -> tuple:
    """Checks an episode before any weight is touched; returns (episode, assertion ops).

    Rank, dtype and size problems raise at once (they are static). Label problems depend on
    values, so they become assertion ops that the caller runs before the forward pass; in eager
    mode they raise immediately. Every message says which key is wrong and what was expected.
    """
    episode = dict(episode)
    for key in EPISODE_KEYS:
        episode[key] = tf.convert_to_tensor(episode[key])
    _check_static(episode, image_size)
    episode["support_labels"] = tf.cast(episode["support_labels"], tf.int32)
    episode["query_labels"] = tf.cast(episode["query_labels"], tf.int32)
    episode["way"] = tf.cast(episode["way"], tf.int32)
    way = episode["way"]
    support_labels, query_labels = episode["support_labels"], episode["query_labels"]
    checks = [
        tf.debugging.assert_greater_equal(way, 1, message="Episode way must be at least 1."),
        tf.debugging.assert_equal(
            tf.shape(episode["support_images"])[0], tf.shape(support_labels)[0],
            message="Episode support_images and support_labels must have the same count.",
        ),
        tf.debugging.assert_equal(
            tf.shape(episode["query_images"])[0], tf.shape(query_labels)[0],
            message="Episode query_images and query_labels must have the same count.",
        ),
        tf.debugging.assert_greater(
            tf.shape(query_labels)[0], 0, message="Episode has no query image; expected at least one."
        ),
        tf.debugging.assert_non_negative(support_labels, message="Episode support_labels must be >= 0."),
        tf.debugging.assert_less(
            support_labels, way, message="Episode support_labels must be < way (labels out of range)."
        ),
        tf.debugging.assert_non_negative(query_labels, message="Episode query_labels must be >= 0."),
        tf.debugging.assert_less(
            query_labels, way, message="Episode query_labels must be < way (labels out of range)."
        ),
    ]
    with tf.control_dependencies(checks):
        counts = tf.math.bincount(support_labels, minlength=way, maxlength=way)
        checks.append(
            tf.debugging.assert_positive(
                counts,
                message="Episode has a class with no support image; every class in [0, way) needs one "
                "(support image count per class follows)",
                summarize=64,
            )
        )
    return episode, checks
