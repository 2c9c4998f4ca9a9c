"""``sources.orbit``: ORBIT training and validation tasks (task rules: an OrbitProtocol preset in gin)."""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from lite_tf.data.orbit.pipeline import orbit_train_dataset
from lite_tf.errors import ConfigError
from lite_tf.registry import register_source
from lite_tf.source import Source


@register_source("orbit")
class OrbitSource(Source):
    """User- or object-centric ORBIT tasks of ``<root>/<split>``.

    Everything but the location and the image size is bound on ``orbit_train_dataset`` and
    ``OrbitProtocol`` in gin (gin/data/orbit.gin, gin/orbit/*.gin), so each value has one home.
    """

    SPLITS = {"train": "train", "valid": "validation", "validation": "validation", "test": "test"}

    def __init__(self, root: Optional[str] = None):
        self.root = root

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> tf.data.Dataset:
        if datasets:
            raise ConfigError(f"sources.orbit has no sub-datasets; got datasets={list(datasets)}.")
        if split not in self.SPLITS:
            raise ConfigError(f"sources.orbit: unknown split {split!r}; expected one of {sorted(self.SPLITS)}.")
        root = self.root or data_root
        location = {"root": root} if root else {}  # else orbit_train_dataset.root from gin (ORBIT_ROOT)
        return orbit_train_dataset(split=self.SPLITS[split], frame_size=image_size, seed=seed, **location)
