"""VTAB-1k label functions: a TFDS example (dict of tensors) -> an int64 class label.

Each function re-derives the VTAB task label (task_adaptation's definitions) from the raw TFDS
features: most tasks use ``label`` as is, the structured tasks bin a continuous attribute or
count objects. They run inside ``tf.data`` maps, so they are written with TF ops only.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np
import tensorflow as tf

LabelFn = Callable[[Dict[str, tf.Tensor]], tf.Tensor]

# Bin edges from the VTAB definitions: a label is the index of the last edge below the value.
CLEVR_DISTANCE_EDGES = (0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0)
KITTI_VEHICLE_EDGES = (-100.0, 8.0, 20.0, 999.0)
KITTI_NO_VEHICLE_DEPTH = 1000.0  # depth given to "no vehicle": lands in the last bin
KITTI_VEHICLE_TYPES = 3          # object types 0, 1, 2 are Car, Van, Truck


def _bin(value: tf.Tensor, edges) -> tf.Tensor:
    """Index of the last edge strictly below ``value`` (edges ascending)."""
    below = tf.cast(tf.constant(np.asarray(edges, np.float32)) < tf.cast(value, tf.float32), tf.int64)
    return tf.reduce_sum(below) - 1


def feature(key: str) -> LabelFn:
    """The TFDS feature ``key`` itself (``label``, ``label_azimuth``, ...)."""
    def label(example):
        return tf.cast(example[key], tf.int64)

    label.__name__ = f"feature_{key}"
    return label


def coarse(key: str, original_classes: int, classes: int) -> LabelFn:
    """``key`` grouped into ``classes`` equal bins (dSprites position and orientation: 16 bins)."""
    factor = float(original_classes) / float(classes)

    def label(example):
        return tf.cast(tf.math.floordiv(tf.cast(example[key], tf.float32), factor), tf.int64)

    label.__name__ = f"coarse_{key}_{classes}"
    return label


def clevr_count(example) -> tf.Tensor:
    """Number of objects in the scene, 3..10 -> 0..7."""
    return tf.cast(tf.size(example["objects"]["size"]), tf.int64) - 3


def clevr_closest_distance(example) -> tf.Tensor:
    """Depth of the closest object (pixel_coords z), binned by ``CLEVR_DISTANCE_EDGES`` -> 0..5."""
    return _bin(tf.reduce_min(example["objects"]["pixel_coords"][:, 2]), CLEVR_DISTANCE_EDGES)


def kitti_closest_vehicle_distance(example) -> tf.Tensor:
    """Depth of the closest car, van or truck, binned -> 0..2; no vehicle at all -> 3."""
    objects = example["objects"]
    is_vehicle = objects["type"] < KITTI_VEHICLE_TYPES
    depths = tf.boolean_mask(tf.cast(objects["location"][:, 2], tf.float32), is_vehicle)
    depth = tf.reduce_min(tf.concat([depths, [KITTI_NO_VEHICLE_DEPTH]], axis=0))
    return _bin(depth, KITTI_VEHICLE_EDGES)
