"""Meta-Dataset in Google's TFDS format, read directly (the source: lite_tf/sources/metadataset_tfds.py).

Google's ``meta_dataset`` TFDS builder (google-research/meta-dataset, meta_dataset/data/tfds)
writes one dataset per source, ``<data_dir>/meta_dataset/<source>/<version>/``, holding a single
``all_classes`` split whose examples are sorted by class (``disable_shuffling``), and a
``metadata.json`` with, per protocol version ("v1", "v2"), the source's Meta-Dataset spec
(``dataset_specs``) and the [start, stop) example range of every class, keyed by its id relative
to its meta-split (``relative_class_slices``; the ranges are positions in ``all_classes``, and a
class may cross shard files).
A user with that data needs no conversion: :class:`TfdsClassStore` is a record set of the episode
pipeline (``lite_tf.data.metadataset.pipeline``, like its per-class record files): the shards'
record headers are indexed once and every class becomes its run(s) of (shard, offsets, lengths).
The pipeline does the rest with no Python while iterating: episodes planned ahead from the spec in
the metadata, the sampled records read by TensorFlow ops (in memory when the shards fit its
``cache_bytes``, else each record's byte range), parsed, checked (image signature; the stored
``label`` must be the class the plan drew the example from) and decoded by lite_tf/data/decode.py.
Errors name the source and its folder, the class ids and the record numbers within each class
(record ``n`` of class ``c`` is example ``start(c) + n`` of ``all_classes``).
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from lite_tf.data.metadataset import records
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.metadataset.pipeline import make_episode_dataset
from lite_tf.errors import ConfigError, DataError

DATASET_NAME = "meta_dataset"
SPLIT_NAME = "all_classes"
VERSIONS = ("v1", "v2")
METADATA_FILE = "metadata.json"


def source_dir(data_dir: str, source: str) -> str:
    """The newest prepared version folder of ``source`` under ``data_dir``."""
    base = os.path.join(data_dir, DATASET_NAME, source)
    versions = sorted((v for v in (os.listdir(base) if os.path.isdir(base) else [])
                       if os.path.isfile(os.path.join(base, v, "dataset_info.json"))),
                      key=lambda v: tuple(int(p) if p.isdigit() else 0 for p in v.split(".")))
    if not versions:
        raise DataError(f"No prepared Meta-Dataset TFDS source {source!r} under {base} (expected "
                        f"<version>/dataset_info.json); build it with meta-dataset's `tfds build meta_dataset "
                        f"--config={source} --data_dir={data_dir}` (see meta_dataset/data/tfds/README.md).")
    return os.path.join(base, versions[-1])


def available_sources(data_dir: str) -> List[str]:
    base = os.path.join(data_dir, DATASET_NAME)
    if not os.path.isdir(base):
        return []
    def prepared(name):
        folder = os.path.join(base, name)
        return (not name.startswith(".") and os.path.isdir(folder) and any(
            os.path.isfile(os.path.join(folder, version, "dataset_info.json")) for version in os.listdir(folder)))

    return sorted(name for name in os.listdir(base) if prepared(name))


class TfdsClassStore:
    """One source's ``all_classes`` split as a record set of the episode pipeline (the interface of
    ``store.ClassFiles``): its spec, and each class's records as runs of (shard, offsets, lengths)."""

    def __init__(self, folder: str, version: str):
        import tensorflow_datasets as tfds

        if version not in VERSIONS:
            raise ConfigError(f"Meta-Dataset protocol version must be one of {VERSIONS}; got {version!r}.")
        self.folder = folder
        metadata_path = os.path.join(folder, METADATA_FILE)
        try:
            with open(metadata_path) as handle:
                metadata = json.load(handle)
        except FileNotFoundError:
            raise DataError(f"{metadata_path} is missing: not a Meta-Dataset TFDS dataset (its builder writes "
                            "the specs and class slices there).") from None
        except json.JSONDecodeError as error:
            raise DataError(f"{metadata_path} is not valid JSON: {error}") from None
        for key in ("dataset_specs", "relative_class_slices"):
            if version not in metadata.get(key, {}):
                raise DataError(f"{metadata_path}: no {key}[{version!r}]; this source is not part of Meta-Dataset "
                                f"{version} (has {sorted(metadata.get(key, {}))}).")
        self.spec = spec_lib.spec_from_json_dict(metadata["dataset_specs"][version], source=metadata_path)
        self._slices = metadata["relative_class_slices"][version]
        info = tfds.builder_from_directory(folder).info
        if SPLIT_NAME not in info.splits:
            raise DataError(f"{folder}: no {SPLIT_NAME!r} split (has {sorted(info.splits)}).")
        split = info.splits[SPLIT_NAME]
        self._files = [os.path.join(folder, os.path.basename(name)) for name in split.filenames]
        self._shard_starts = np.cumsum([0] + list(split.shard_lengths))
        self._index: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        self.name = f"Meta-Dataset TFDS source {self.spec.name} ({folder})"

    def class_range(self, split, class_id: int) -> Tuple[int, int]:
        """[start, stop) of ``class_id`` (absolute id in the spec) within ``all_classes``."""
        split = spec_lib.Split.of(split)
        classes = list(self.spec.classes(split))
        relative = classes.index(int(class_id))
        entry = self._slices.get(split.value.lower(), {}).get(str(relative))
        if entry is None:
            raise DataError(f"{self.name}: relative_class_slices has no class {relative} of split {split.value}.")
        start, stop = int(entry[0]), int(entry[1])
        if stop - start != self.spec.images_per_class[int(class_id)]:
            raise DataError(f"{self.name}: class {class_id} has {stop - start} examples in its slice but "
                            f"{self.spec.images_per_class[int(class_id)]} in the spec.")
        if start < 0 or stop > self._shard_starts[-1]:
            raise DataError(f"{self.name}: class {class_id}'s slice [{start}, {stop}) lies outside the split's "
                            f"{self._shard_starts[-1]} examples.")
        return start, stop

    def _split_of(self, class_id: int):
        return next(split for split in spec_lib.SPLITS if int(class_id) in self.spec.classes(split))

    def check(self, classes: Sequence[int]) -> None:
        """Every class's slice agrees with the spec and the split (metadata only, before any indexing)."""
        for class_id in classes:
            self.class_range(self._split_of(class_id), class_id)

    def class_records(self, class_id: int) -> List[Tuple[str, np.ndarray, np.ndarray]]:
        """(shard file, offsets, lengths) of the class's examples, shard by shard, in order."""
        start, stop = self.class_range(self._split_of(class_id), class_id)
        runs = []
        for shard in range(int(np.searchsorted(self._shard_starts, start, side="right")) - 1, len(self._files)):
            first = int(self._shard_starts[shard])
            if first >= stop:
                break
            offsets, lengths = self._shard_offsets(shard)
            rows = slice(max(start - first, 0), min(stop, int(self._shard_starts[shard + 1])) - first)
            runs.append((self._files[shard], offsets[rows], lengths[rows]))
        return runs

    def _shard_offsets(self, shard: int):
        if shard not in self._index:
            path = self._files[shard]
            try:
                offsets, lengths = records.record_index(path)
            except (OSError, records.RecordFileError) as error:
                raise DataError(f"{self.name}: cannot index shard {path}: {error}") from None
            expected = int(self._shard_starts[shard + 1] - self._shard_starts[shard])
            if len(offsets) != expected:
                raise DataError(f"{self.name}: shard {path} holds {len(offsets)} records, dataset_info.json "
                                f"says {expected}.")
            self._index[shard] = (offsets, lengths)
        return self._index[shard]


def make_tfds_episode_dataset(data_dir: str, sources: Sequence[str], split, image_size: int, version: str = "v2",
                              seed: Optional[int] = 0, sampler_kwargs: Optional[dict] = None,
                              image_dtype=tf.float32, **options) -> tf.data.Dataset:
    """Episodes (``lite_tf.episode`` dicts) from Meta-Dataset TFDS ``sources`` (names of prepared
    builds under ``data_dir``): the episode pipeline, ``pipeline.make_episode_dataset``, on their
    shards, with its stages, checks and ``options`` (num_episodes, cache_bytes, resize_method, ...;
    its gin bindings apply too). With several sources each episode's source is picked uniformly."""
    if not sources:
        raise ConfigError("make_tfds_episode_dataset needs at least one Meta-Dataset source name.")
    stores = [TfdsClassStore(source_dir(data_dir, source), version) for source in sources]
    return make_episode_dataset(stores, split, image_size=image_size, sampler_kwargs=sampler_kwargs, seed=seed,
                                image_dtype=image_dtype, **options)


# ------------------------------------------------------------------------- the MD-v2 protocol
# VTAB+MD (Dumoulin et al. 2021): all 1000 ILSVRC classes in training (``ilsvrc_2012_v2`` spec), VGG
# Flower moved to VTAB; the official LITE code adds MNIST to training and validates on the sources
# below (mscoco included); MD-v2 tests on the eight sources of ``MD_V2_TEST``.
MD_V2_TRAIN = ("ilsvrc_2012_v2", "omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "mnist")
MD_V2_VALID = ("omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "mscoco")
MD_V2_TEST = ("omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "traffic_sign", "mscoco")
