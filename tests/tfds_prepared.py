"""Genuinely prepared TFDS data dirs with synthetic examples, for the VTAB reader's real path.

``prepare`` takes a registered TFDS builder (``tfds.builder(name, data_dir=...)``, configs
included), replaces only its example source (``_split_generators``: no download manager is used,
so nothing is fetched) and calls TFDS's own ``download_and_prepare``: TFDS encodes the examples
with the builder's real ``info.features``, shuffles and writes the tfrecord shards and
``dataset_info.json`` (split sizes) exactly as ``tfds build`` would. Reading is not patched at all.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Mapping

import numpy as np
import tensorflow_datasets as tfds

# Free image sides (shape None) get this size: tiny, so preparing and reading are fast.
FREE_SIDE = 12

Example = Dict[str, object]
# (split, index, rng) -> the fields the test cares about; every other feature is filled by ``filler``.
Maker = Callable[[str, int, np.random.Generator], Example]


def filler(feature, rng: np.random.Generator):
    """A valid value for any TFDS feature (the builder's own encoder checks it when writing)."""
    features = tfds.features
    if isinstance(feature, features.FeaturesDict):
        return {key: filler(item, rng) for key, item in feature.items()}
    if isinstance(feature, features.Sequence):
        return [filler(feature.feature, rng) for _ in range(2)]
    if isinstance(feature, features.Image):
        shape = [FREE_SIDE if side is None else side for side in feature.shape]
        return rng.integers(0, 256, shape).astype(np.uint8)
    if isinstance(feature, features.ClassLabel):
        return int(rng.integers(feature.num_classes))
    if isinstance(feature, features.BBoxFeature):
        return features.BBox(0.1, 0.2, 0.6, 0.7)
    if isinstance(feature, features.Text):
        return "synthetic"
    if isinstance(feature, features.Tensor):
        shape = [2 if side is None else side for side in feature.shape]
        return np.zeros(shape, feature.np_dtype)
    raise TypeError(f"tests/tfds_prepared.py: no synthetic value for TFDS feature {type(feature).__name__}")


def _merge(base, fields):
    """``base`` with ``fields`` written over it (nested dicts merged key by key)."""
    if not (isinstance(base, dict) and isinstance(fields, dict)):
        return fields
    merged = dict(base)
    for key, value in fields.items():
        merged[key] = _merge(base.get(key), value)
    return merged


def prepare(data_dir: str, name: str, sizes: Mapping[str, int], make: Maker, seed: int = 0):
    """Prepares TFDS dataset ``name`` (e.g. ``"kitti"``, ``"diabetic_retinopathy_detection/btgraham-300"``)
    in ``data_dir`` with ``sizes[split]`` synthetic examples per split; returns the builder."""
    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features

    def generate(split):
        rng = np.random.default_rng([seed, list(sizes).index(split)])
        for index in range(sizes[split]):
            yield f"{split}-{index}", _merge(filler(features, rng), make(split, index, rng))

    # The instance's example source only: TFDS's writer, encoder and metadata code run unchanged.
    builder._split_generators = lambda dl_manager: {split: generate(split) for split in sizes}
    config = tfds.download.DownloadConfig(try_download_gcs=False, compute_stats=tfds.download.ComputeStatsMode.SKIP)
    builder.download_and_prepare(download_config=config)
    return builder


def prepared_files(builder) -> list:
    """The files TFDS wrote for ``builder``'s version (dataset_info.json, features.json, shards)."""
    return sorted(os.listdir(builder.data_dir))
