"""``sources.metadataset_tfds`` (Google's TFDS build of Meta-Dataset) and ``sources.metadataset_v2``.

``metadataset_v2`` is the VTAB+MD protocol's MD-v2 (Dumoulin et al. 2021): all 1000 ILSVRC classes
in training (the ``ilsvrc_2012_v2`` spec), VGG Flower moved to VTAB, mscoco and traffic_sign
test-only, plus MNIST in training as the official LITE code does. It reads either a Meta-Dataset
records root or a TFDS data dir holding the ``meta_dataset`` build, so one experiment file trains
from either format. The reading itself is lite_tf/data/md_tfds.py and lite_tf/data/metadataset/.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import tensorflow as tf

from lite_tf.data.md_tfds import (DATASET_NAME, MD_V2_TEST, MD_V2_TRAIN, MD_V2_VALID, VERSIONS, available_sources,
                                  make_tfds_episode_dataset)
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.metadataset.pipeline import make_episode_dataset
from lite_tf.errors import ConfigError, DataError
from lite_tf.registry import register_source
from lite_tf.source import Source

_TFDS_NAMES = {"ilsvrc_2012_v2": "ilsvrc_2012"}  # the TFDS build keeps one ILSVRC source with v1 and v2 specs


@register_source("metadataset_tfds")
class MetaDatasetTfds(Source):
    """Meta-Dataset episodes from Google's TFDS build of it (see lite_tf/data/md_tfds.py).

    Args:
      tfds_data_dir: the TFDS data dir holding ``meta_dataset/`` (the launcher's ``--data_root``
        overrides it when given).
      version: "v2" (VTAB+MD protocol: all ILSVRC classes in training, no VGG Flower) or "v1".
      sampler_kwargs: EpisodeSampler arguments (else gin bindings / Meta-Dataset defaults).
    """

    def __init__(self, tfds_data_dir: Optional[str] = None, version: str = "v2",
                 sampler_kwargs: Optional[dict] = None):
        if version not in VERSIONS:
            raise ConfigError(f"sources.metadataset_tfds.version must be one of {VERSIONS}; got {version!r}.")
        self.tfds_data_dir, self.version, self.sampler_kwargs = tfds_data_dir, version, sampler_kwargs

    def _data_dir(self, data_root):
        data_dir = data_root or self.tfds_data_dir
        if not data_dir:
            raise ConfigError("sources.metadataset_tfds needs a TFDS data dir (--data_root or tfds_data_dir).")
        return data_dir

    def dataset_names(self, data_root: Optional[str] = None) -> Sequence[str]:
        return available_sources(self._data_dir(data_root))

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None, first_episode: int = 0) -> tf.data.Dataset:
        data_dir = self._data_dir(data_root)
        names = list(datasets) if datasets else available_sources(data_dir)
        if not names:
            raise DataError(f"No Meta-Dataset TFDS sources under {os.path.join(data_dir, DATASET_NAME)}.")
        return make_tfds_episode_dataset(data_dir, names, split, image_size, self.version, seed,
                                         self.sampler_kwargs, first_episode=first_episode)


@register_source("metadataset_v2")
class MetaDatasetV2(Source):
    """MD-v2 episodes of a split from the sources the protocol uses for it.

    Args:
      root: Meta-Dataset records (one folder per source) or a TFDS data dir with ``meta_dataset/``;
        None: the launcher's ``--data_root``.
      train_datasets / valid_datasets / test_datasets: the protocol's sources per split.
    """

    def __init__(self, root: Optional[str] = None, train_datasets: Sequence[str] = MD_V2_TRAIN,
                 valid_datasets: Sequence[str] = MD_V2_VALID, test_datasets: Sequence[str] = MD_V2_TEST):
        self.root = root
        self.per_split = {"train": list(train_datasets), "valid": list(valid_datasets), "test": list(test_datasets)}

    def _root(self, data_root):
        root = data_root or self.root
        if not root:
            raise ConfigError("sources.metadataset_v2 needs a data root (--data_root): Meta-Dataset records or a "
                              "TFDS data dir.")
        return root

    def dataset_names(self, data_root: Optional[str] = None) -> Sequence[str]:
        return list(self.per_split["test"])

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None, first_episode: int = 0) -> tf.data.Dataset:
        root = self._root(data_root)
        split_name = spec_lib.Split.of(split).value.lower()
        names = list(datasets) if datasets else self.per_split[split_name]
        if os.path.isdir(os.path.join(root, DATASET_NAME)):
            return make_tfds_episode_dataset(root, [_TFDS_NAMES.get(n, n) for n in names], split, image_size,
                                             "v2", seed, first_episode=first_episode)
        missing = [n for n in names if not os.path.isfile(os.path.join(root, n, spec_lib.SPEC_FILE))]
        if missing:
            raise DataError(f"Data root {root!r} lacks the MD-v2 source(s) {missing} for split {split!r} (each a "
                            f"folder with {spec_lib.SPEC_FILE}); convert them, or bind "
                            f"sources.metadataset_v2.{split_name}_datasets to what you have.")
        return make_episode_dataset(root, split, image_size=image_size, datasets=names, seed=seed,
                                    first_episode=first_episode)
