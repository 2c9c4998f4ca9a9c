"""``sources.metadataset``: episodes from a folder of Meta-Dataset-format record sets.

Episode shape and pipeline settings stay on their own configurables (``EpisodeSampler.*``,
``make_episode_dataset.*``); this class only says where the records are and which sets to use.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.metadataset.pipeline import make_episode_dataset
from lite_tf.errors import DataError
from lite_tf.registry import register_source
from lite_tf.source import Source


def record_sets(root: str) -> list:
    """Names of the sub-folders of ``root`` that hold a dataset_spec.json, sorted."""
    return sorted(entry.name for entry in os.scandir(root)
                  if os.path.isfile(os.path.join(entry.path, spec_lib.SPEC_FILE)))


@register_source("metadataset")
class MetaDataset(Source):
    """Record sets under ``root`` (or the launcher's ``--data_root``), one sub-folder per dataset.

    Args:
      datasets: the sets to train on (every episode from one of them, picked uniformly); None: all
        sets under the root.
      root: the records folder; None: the launcher's ``--data_root``.
    """

    def __init__(self, datasets: Optional[Sequence[str]] = None, root: Optional[str] = None):
        self.datasets = list(datasets) if datasets is not None else None
        self.root = root

    def _root(self, data_root: Optional[str]) -> str:
        root = data_root or self.root
        if not root:
            raise DataError("No data root: pass --data_root (a folder of Meta-Dataset-format record sets).")
        if not os.path.isdir(root):
            raise DataError(f"Data root {root!r} does not exist or is not a folder.")
        return root

    def dataset_names(self, data_root: Optional[str] = None) -> list:
        root = self._root(data_root)
        names = record_sets(root)
        if not names:
            raise DataError(f"Data root {root!r} holds no dataset folder with a {spec_lib.SPEC_FILE}.")
        return names

    def training_datasets(self, data_root: Optional[str] = None) -> list:
        """The sets training episodes come from."""
        return self.datasets if self.datasets is not None else self.dataset_names(data_root)

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None, first_episode: int = 0):
        root = self._root(data_root)
        names = list(datasets) if datasets is not None else self.training_datasets(root)
        known = record_sets(root)
        missing = [name for name in names if name not in known]
        if missing:
            raise DataError(f"Data root {root!r} has no record set {', '.join(map(repr, missing))} "
                            f"(it holds: {', '.join(known) or 'none'}).")
        return make_episode_dataset(root, split, image_size=image_size, datasets=names, seed=seed,
                                    first_episode=first_episode)

    def seen_in_training(self, dataset: str, split: str, train_split: str, data_root: Optional[str] = None) -> int:
        """How many of ``dataset``'s ``split`` classes training episodes (``train_split``) could contain."""
        root = self._root(data_root)
        if dataset not in self.training_datasets(root):
            return 0
        spec = spec_lib.load_spec(os.path.join(root, dataset))
        return len(set(spec.classes(spec_lib.Split.of(split))) & set(spec.classes(spec_lib.Split.of(train_split))))
