"""``sources.orbit``: ORBIT training tasks through the Source interface (lite_tf/source.py)."""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from lite_tf.data.orbit.pipeline import orbit_train_dataset
from lite_tf.data.orbit.protocol import OrbitProtocol
from lite_tf.errors import ConfigError
from lite_tf.registry import register_source
from lite_tf.source import Source


@register_source("orbit")
class OrbitSource(Source):
    """User- or object-centric ORBIT tasks of ``<root>/<split>`` under ``protocol`` (gin preset)."""

    SPLITS = {"train": "train", "valid": "validation", "validation": "validation", "test": "test"}

    def __init__(self, root: Optional[str] = None, protocol: Optional[OrbitProtocol] = None,
                 target_video_type: str = "clutter", cache_dir: Optional[str] = None, image_dtype: str = "uint8"):
        self.root, self.protocol, self.target_video_type = root, protocol, target_video_type
        self.cache_dir, self.image_dtype = cache_dir, image_dtype

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> tf.data.Dataset:
        if datasets:
            raise ConfigError(f"sources.orbit has no sub-datasets; got datasets={list(datasets)}.")
        if split not in self.SPLITS:
            raise ConfigError(f"sources.orbit: unknown split {split!r}; expected one of {sorted(self.SPLITS)}.")
        return orbit_train_dataset(self.root or data_root, self.SPLITS[split], image_size, protocol=self.protocol,
                                   target_video_type=self.target_video_type, image_dtype=self.image_dtype,
                                   seed=seed, cache_dir=self.cache_dir)
