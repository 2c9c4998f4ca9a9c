"""``sources.orbit``: ORBIT training and validation tasks (task rules: an OrbitProtocol preset in gin)."""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from lite_tf.data.orbit.pipeline import orbit_eval_tasks, orbit_train_dataset
from lite_tf.errors import ConfigError
from lite_tf.registry import register_source
from lite_tf.source import Source


@register_source("orbit")
class OrbitSource(Source):
    """User- or object-centric ORBIT tasks of ``<root>/<split>``.

    Everything but the location and the image size is bound on ``orbit_train_dataset``,
    ``orbit_eval_tasks`` and ``OrbitProtocol`` in gin (gin/data/orbit.gin, gin/orbit/*.gin), so each
    value has one home. Its datasets are the target video types, "clean" (CLE-VE) and "clutter"
    (CLU-VE); runs are scored with the ``orbit`` evaluator (``lite_tf/eval/orbit_evaluation.py``).
    """

    evaluator = "orbit"  # scored per task and video (lite_tf/eval/orbit_evaluation.py), not by episode count
    SPLITS = {"train": "train", "valid": "validation", "validation": "validation", "test": "test"}
    TARGET_TYPES = ("clean", "clutter")

    def __init__(self, root: Optional[str] = None):
        self.root = root

    def dataset_names(self, data_root: Optional[str] = None) -> Sequence[str]:
        return self.TARGET_TYPES

    def _split(self, split: str) -> str:
        if split not in self.SPLITS:
            raise ConfigError(f"sources.orbit: unknown split {split!r}; expected one of {sorted(self.SPLITS)}.")
        return self.SPLITS[split]

    def _location(self, data_root: Optional[str]) -> dict:
        root = self.root or data_root
        return {"root": root} if root else {}  # else the gin-bound root (ORBIT_ROOT)

    def _target_types(self, datasets: Optional[Sequence[str]]) -> tuple:
        names = tuple(datasets) if datasets else self.TARGET_TYPES
        unknown = [name for name in names if name not in self.TARGET_TYPES]
        if unknown:
            raise ConfigError(f"sources.orbit: unknown target type(s) {', '.join(map(repr, unknown))}; "
                              f"expected {' or '.join(self.TARGET_TYPES)}.")
        return names

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None, first_episode: int = 0) -> tf.data.Dataset:
        """Training tasks; ``datasets=[type]`` picks the target video type (default: gin's)."""
        options = {}
        if datasets:
            kinds = self._target_types(datasets)
            if len(kinds) != 1:
                raise ConfigError(f"sources.orbit trains on one target video type; got datasets={list(datasets)}.")
            options["target_video_type"] = kinds[0]
        return orbit_train_dataset(split=self._split(split), frame_size=image_size, seed=seed,
                                   first_episode=first_episode, **self._location(data_root), **options)

    def eval_tasks(self, split: str, *, image_size: int, data_root: Optional[str] = None,
                   datasets: Optional[Sequence[str]] = None, tasks_per_user: Optional[int] = None,
                   seed: Optional[int] = None, strict: bool = False):
        """CLE-VE / CLU-VE evaluation tasks (``orbit_eval_tasks``); None options keep gin's values."""
        options = {key: value for key, value in (("tasks_per_user", tasks_per_user), ("seed", seed))
                   if value is not None}
        return orbit_eval_tasks(split=self._split(split), frame_size=image_size,
                                target_types=self._target_types(datasets), strict=strict,
                                **self._location(data_root), **options)
