"""``sources.orbit``: ORBIT training and validation tasks (the settings live on ``orbit_train_dataset``)."""
from __future__ import annotations

from typing import Optional, Sequence

from lite_tf.data.orbit import orbit_train_dataset
from lite_tf.errors import ConfigError
from lite_tf.registry import register_source
from lite_tf.source import Source


@register_source("orbit")
class Orbit(Source):
    """User-centric few-shot tasks from ORBIT videos; ``root`` (or --data_root) holds train/, validation/, test/."""

    def __init__(self, root: Optional[str] = None):
        self.root = root

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None):
        if datasets is not None:
            raise ConfigError("sources.orbit has no sub-datasets to pick; leave datasets unset.")
        location = {"root": data_root or self.root} if (data_root or self.root) else {}  # else gin's ORBIT_ROOT
        return orbit_train_dataset(split=split, frame_size=image_size, seed=seed, **location)
