"""Meta-Dataset in Google's TFDS format, read directly (the source: lite_tf/sources/metadataset_tfds.py).

Google's ``meta_dataset`` TFDS builder (google-research/meta-dataset, meta_dataset/data/tfds)
writes one dataset per source, ``<data_dir>/meta_dataset/<source>/<version>/``, holding a single
``all_classes`` split whose examples are sorted by class (``disable_shuffling``), and a
``metadata.json`` with, per protocol version ("v1", "v2"), the source's Meta-Dataset spec
(``dataset_specs``) and the [start, stop) example range of every class relative to its meta-split
(``relative_class_slices``). A user with that data needs no conversion: this module samples
episodes with lite_tf's own sampler (``lite_tf.data.metadataset.sampling``) from the spec in the metadata and
reads exactly the sampled examples from the TFRecord shards (record headers indexed once; one
``pread`` per image), like ``lite_tf.data.metadataset.pipeline`` does for per-class record files.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from lite_tf.data.metadataset import records
from lite_tf.data.metadataset import sampling
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.episode import episode_signature
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
    """Random access to the examples of one source's ``all_classes`` split, by class and index."""

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
        self.name = f"Meta-Dataset TFDS source {self.spec.name!r} ({folder})"

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
        return start, stop

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

    def read(self, positions: np.ndarray) -> List[bytes]:
        """Serialized examples at ``positions`` of the ``all_classes`` split (one open per shard)."""
        positions = np.asarray(positions, np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= self._shard_starts[-1]):
            raise DataError(f"{self.name}: example positions outside the split's {self._shard_starts[-1]} examples.")
        shards = np.searchsorted(self._shard_starts, positions, side="right") - 1
        out: List[bytes] = [b""] * len(positions)
        for shard in np.unique(shards):
            rows = np.flatnonzero(shards == shard)
            offsets, lengths = self._shard_offsets(int(shard))
            local = positions[rows] - self._shard_starts[shard]
            for row, data in zip(rows, records.read_records(self._files[shard], offsets[local], lengths[local])):
                out[row] = data
        return out


def make_tfds_episode_dataset(data_dir: str, sources: Sequence[str], split, image_size: int, version: str = "v2",
                              seed: int = 0, sampler_kwargs: Optional[dict] = None,
                              image_dtype=tf.float32) -> tf.data.Dataset:
    """Infinite episodes (``lite_tf.episode`` dicts) from Meta-Dataset TFDS ``sources``; each
    episode from one source picked uniformly, sampled by ``EpisodeSampler`` (gin bindings apply)."""
    image_dtype = tf.as_dtype(image_dtype)
    if image_dtype not in (tf.float32, tf.uint8):
        raise ConfigError(f"image_dtype must be float32 or uint8; got {image_dtype.name}.")
    split = spec_lib.Split.of(split)
    if not sources:
        raise ConfigError("make_tfds_episode_dataset needs at least one Meta-Dataset source name.")
    stores = [TfdsClassStore(source_dir(data_dir, source), version) for source in sources]
    kwargs = dict(sampler_kwargs or {})
    for store in stores:  # fail now on bad specs or slices, not inside tf.data
        sampling.EpisodeSampler(store.spec, split, seed=0, **kwargs)
        ranges = {c: store.class_range(split, c) for c in store.spec.classes(split)}
        store.ranges = ranges

    def generate():
        seeds = np.random.SeedSequence(seed).spawn(len(stores) + 1)
        samplers = [sampling.EpisodeSampler(s.spec, split, seed=q, **kwargs) for s, q in zip(stores, seeds)]
        pick = np.random.default_rng(seeds[-1])
        while True:
            source = int(pick.integers(len(stores))) if len(stores) > 1 else 0
            description = samplers[source].sample()
            store = stores[source]
            positions, labels = {"support": [], "query": []}, {"support": [], "query": []}
            for label, (class_id, s_idx, q_idx) in enumerate(
                    zip(description.class_ids, description.support, description.query)):
                start = store.ranges[int(class_id)][0]
                for part, idx in (("support", s_idx), ("query", q_idx)):
                    positions[part].append(start + np.asarray(idx, np.int64))
                    labels[part].append(np.full(len(idx), label, np.int32))
            support = np.concatenate(positions["support"])
            query = np.concatenate(positions["query"])
            yield {"records": np.array(store.read(np.concatenate([support, query])), dtype=object),
                   "labels": np.concatenate(labels["support"] + labels["query"]),
                   "num_support": np.int32(len(support)), "way": np.int32(description.way)}

    signature = {"records": tf.TensorSpec([None], tf.string), "labels": tf.TensorSpec([None], tf.int32),
                 "num_support": tf.TensorSpec([], tf.int32), "way": tf.TensorSpec([], tf.int32)}

    def decode(image_bytes):
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        image = tf.image.resize(image, [image_size, image_size], method="bilinear")
        if image_dtype == tf.uint8:
            return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)
        return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)

    def decode_episode(episode):
        images, _ = records.parse_examples(episode["records"])
        count = tf.shape(images, out_type=tf.int64)[0]
        batch = (tf.data.Dataset.from_tensor_slices(images)
                 .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(count))
        n = episode["num_support"]
        return batch.map(lambda decoded: {
            "support_images": decoded[:n], "support_labels": episode["labels"][:n],
            "query_images": decoded[n:], "query_labels": episode["labels"][n:], "way": episode["way"]})

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)
    dataset = dataset.flat_map(decode_episode).prefetch(1)
    expected = episode_signature(image_size, image_dtype)
    for key, value in expected.items():
        if not value.is_compatible_with(dataset.element_spec[key]):
            raise AssertionError(f"TFDS episode {key} {dataset.element_spec[key]} does not match {value}.")
    return dataset


# ------------------------------------------------------------------------- the MD-v2 protocol
# VTAB+MD (Dumoulin et al. 2021): all 1000 ILSVRC classes in training (``ilsvrc_2012_v2`` spec), VGG
# Flower moved to VTAB; the official LITE code adds MNIST to training and validates on the sources
# below (mscoco included); MD-v2 tests on the eight sources of ``MD_V2_TEST``.
MD_V2_TRAIN = ("ilsvrc_2012_v2", "omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "mnist")
MD_V2_VALID = ("omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "mscoco")
MD_V2_TEST = ("omniglot", "aircraft", "cu_birds", "dtd", "quickdraw", "fungi", "traffic_sign", "mscoco")
