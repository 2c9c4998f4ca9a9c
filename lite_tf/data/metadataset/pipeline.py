"""The Meta-Dataset episode pipeline: records -> episodes in ``lite_tf.episode`` structure.

How it works (and why it is faster and leaner than the reference pipeline):
1. Each source's class files are indexed once: the byte offset and length of every record, read
   from the 12-byte record headers only (``records.record_index``), kept in memory (16 bytes/image).
2. Per episode, the NumPy :class:`~lite_tf.data.metadataset.sampling.EpisodeSampler` picks (class, record index)
   pairs; a small Python generator reads exactly those records with ``os.pread`` (one file open at
   a time, closed straight after) and hands over one vector of serialized examples. No per-class
   streams, no shuffle buffers, no padded slots: memory does not grow with the number of classes.
3. tf.data parses the examples in one vectorised op and checks them; then, per episode, support
   and query are each decoded and resized by a parallel map (``num_parallel_calls=AUTOTUNE``) and
   batched whole, and finished episodes are prefetched. Measured against the alternative of one
   ``tf.map_fn`` per episode under a parallel outer map, this was faster and used less memory.
   Peak pipeline memory is about two of the largest episodes (one handed out, one being built):
   measured 1.1-1.4 GB at 224 px float32 (episodes of 360-510 images), 0.35-0.4 GB as uint8.

Pixels are in [-1, 1] (float32) or [0, 255] (uint8, 4x smaller; EpisodicModel converts per chunk).
Augmentation (flip, colour jitter, pad-and-crop) is set separately for support and query and uses
stateless random ops seeded per episode and image, so a seed fixes the episodes and their pixels.

Bad input, and what happens (every case fails fast; every message names the dataset and its
folder, the class(es) and the file or record numbers):
- a class file missing or empty: fails when the dataset is built (every file of the split is
  checked with one ``stat``);
- a truncated or corrupt record file, or a record count that disagrees with the spec: fails when
  the dataset is built (``index="eager"``, the default: headers of every class file of the split
  are read) or when the class is first drawn (``index="lazy"``, for very large sets);
- a record whose bytes are not an encoded JPEG/PNG/GIF/BMP image (checked by signature), whose
  image data is damaged (the decoder fails), or whose ``label`` is not its class id: the episode
  fails with an assertion naming the dataset, the class ids and the record numbers. (A decoder
  failure is caught with ``ignore_errors`` only to re-decode the episode image by image and name
  the bad records; the episode still fails.) Damage that
  the JPEG decoder tolerates (e.g. flipped bits mid-stream) is not detectable this way;
  :func:`verify_dataset` also checks the record checksums.
- split too small for the minimum way, a class with fewer than 2 images (variable mode) or too few
  for the fixed shots + query: fails when the dataset is built (``sampling.SamplerError``);
- ``image_size`` outside [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE]: ``ValueError`` at once.
Nothing is skipped: a corrupt benchmark silently shrunk would bias results, so every case stops.
"""
from __future__ import annotations

import dataclasses
import os
from typing import List, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from lite_tf.data.metadataset import records
from lite_tf.data.metadataset import sampling
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data import decode as decode_lib
from lite_tf.data.augment import Augmentation
from lite_tf.episode import episode_signature
from lite_tf.errors import ConfigError, DataError

MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 1024
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")


class PipelineError(DataError):
    """Records that disagree with their spec, or are missing or damaged."""


class _RecordStore:
    """Record offsets of the classes of one dataset split, checked against the spec."""

    def __init__(self, spec, classes: Sequence[int], index: str = "eager"):
        if spec.path is None:
            raise PipelineError(f"Dataset {spec.name!r}: the spec has no records path.")
        self.spec = spec
        self._index = {}
        problems = []
        for class_id in classes:
            path = spec.class_file(class_id)
            try:
                size = os.path.getsize(path)
            except OSError:
                problems.append(f"class {class_id}: {path} is missing")
                continue
            if size == 0:
                problems.append(f"class {class_id}: {path} is empty (0 bytes)")
        if problems:
            raise PipelineError(
                f"Dataset {spec.name!r} ({spec.path}): {len(problems)} class file(s) missing or empty, "
                f"expected one record file per class: " + "; ".join(problems[:5])
                + (" ..." if len(problems) > 5 else ""))
        if index not in ("eager", "lazy"):
            raise ConfigError(f"index must be 'eager' or 'lazy'; got {index!r}.")
        if index == "eager":
            for class_id in classes:
                self.offsets(class_id)

    def offsets(self, class_id: int):
        class_id = int(class_id)
        entry = self._index.get(class_id)
        if entry is None:
            path = self.spec.class_file(class_id)
            try:
                entry = records.record_index(path)
            except records.RecordFileError as error:
                raise PipelineError(f"Dataset {self.spec.name!r} class {class_id}: {error}") from None
            expected = self.spec.images_per_class[class_id]
            if len(entry[0]) != expected:
                raise PipelineError(
                    f"Dataset {self.spec.name!r} class {class_id}: the spec says {expected} images but "
                    f"{path} holds {len(entry[0])} records; re-run the converter or fix dataset_spec.json."
                )
            self._index[class_id] = entry
        return entry

    def read(self, class_id: int, indices: np.ndarray) -> List[bytes]:
        offsets, lengths = self.offsets(class_id)
        return records.read_records(self.spec.class_file(class_id), offsets[indices], lengths[indices])


def _as_specs(sources, datasets: Optional[Sequence[str]]) -> list:
    if isinstance(sources, (str, os.PathLike, spec_lib.DatasetSpec)):
        sources = [sources]
    sources = list(sources)
    if datasets:
        if len(sources) != 1 or not isinstance(sources[0], (str, os.PathLike)):
            raise ConfigError("With `datasets`, `sources` must be the one records root folder.")
        sources = [os.path.join(os.fspath(sources[0]), name) for name in datasets]
    if not sources:
        raise ConfigError("make_episode_dataset needs at least one source (a dataset folder or spec).")
    return [s if isinstance(s, spec_lib.DatasetSpec) else spec_lib.load_spec(os.fspath(s)) for s in sources]


def check_image_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ConfigError(f"image_size must be an integer number of pixels; got {image_size!r}.")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ConfigError(f"image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] pixels; got {image_size}.")
    return int(image_size)


def _check_records(images, labels, episode, names):
    """Assertions on parsed records: encoded-image signature and label == class id."""
    signature_ok = tf.zeros_like(labels, dtype=tf.bool)
    for signature in _SIGNATURES:
        prefix = tf.strings.substr(images, 0, len(signature))
        signature_ok = tf.logical_or(signature_ok, tf.equal(prefix, signature))
    name = tf.gather(names, episode["source"])
    not_image = tf.logical_not(signature_ok)
    wrong_label = tf.not_equal(labels, episode["class_ids"])
    return [
        tf.debugging.Assert(
            tf.reduce_all(signature_ok),
            ["Record(s) whose image bytes are not an encoded JPEG/PNG/GIF/BMP image, in", name,
             "class ids:", tf.boolean_mask(episode["class_ids"], not_image),
             "record numbers in their class file:", tf.boolean_mask(episode["record_ids"], not_image)],
            summarize=10),
        tf.debugging.Assert(
            tf.reduce_all(tf.logical_not(wrong_label)),
            ["Record(s) whose label feature is not the id of their class file, in", name,
             "class ids:", tf.boolean_mask(episode["class_ids"], wrong_label),
             "labels found:", tf.boolean_mask(labels, wrong_label),
             "record numbers:", tf.boolean_mask(episode["record_ids"], wrong_label)],
            summarize=10),
    ]


@gin.configurable
def make_episode_dataset(sources, split, *, image_size: int, datasets: Optional[Sequence[str]] = None,
                         sampler_kwargs: Optional[dict] = None,
                         support_augmentation: Optional[Augmentation] = None,
                         query_augmentation: Optional[Augmentation] = None,
                         seed: Optional[int] = 0, image_dtype=tf.float32, resize_method: str = "bilinear",
                         antialias: bool = False, index: str = "eager", prefetch: int = 1,
                         read_ahead: int = 2) -> tf.data.Dataset:
    """An infinite dataset of episode dicts (``lite_tf.episode.episode_signature(image_size)``).

    sources: a dataset folder (holding ``dataset_spec.json`` and the class files), a spec, or a list
      of them; or a records root folder together with ``datasets`` (names of its sub-folders).
      With several sources every episode comes from one source picked uniformly at random.
    split: TRAIN/VALID/TEST (a ``spec.Split`` or its name).
    sampler_kwargs: arguments of :class:`~lite_tf.data.metadataset.sampling.EpisodeSampler` (num_ways,
      num_support, num_query, ...); anything not given comes from gin bindings or the defaults.
    seed: fixes episodes and augmentation; re-iterating the dataset replays the same episodes
      (None: a fresh random seed).
    image_dtype: tf.float32 (pixels in [-1, 1]) or tf.uint8 ([0, 255], 4x less memory).
    index: "eager" reads every record header of the split up front (fails fast on any mismatch),
      "lazy" indexes a class when it is first drawn.
    prefetch: episodes decoded ahead; read_ahead: episodes read from disk ahead of decoding.
    """
    image_size = check_image_size(image_size)
    image_dtype = decode_lib.check_options(resize_method, image_dtype)
    split = spec_lib.Split.of(split)
    specs = _as_specs(sources, datasets)
    kwargs = dict(sampler_kwargs or {})
    kwargs.pop("seed", None)
    # Built once here so bad specs and records fail now, not inside the tf.data runtime.
    for spec in specs:
        sampling.EpisodeSampler(spec, split, seed=0, **kwargs)
    stores = [_RecordStore(spec, spec.classes(split), index=index) for spec in specs]
    names = tf.constant([f"dataset {s.name!r} ({s.path})" for s in specs])
    support_aug = support_augmentation or Augmentation()
    query_aug = query_augmentation or Augmentation()
    for aug in (support_aug, query_aug):
        aug.check_image_size(image_size)
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])

    def generate():
        seeds = np.random.SeedSequence(seed).spawn(len(specs) + 1)
        samplers = [sampling.EpisodeSampler(spec, split, seed=s, **kwargs) for spec, s in zip(specs, seeds)]
        pick = np.random.default_rng(seeds[-1])
        episode_number = 0
        while True:
            source = int(pick.integers(len(specs))) if len(specs) > 1 else 0
            description = samplers[source].sample()
            store = stores[source]
            raw, labels, class_ids, record_ids = {}, {}, {}, {}
            for part in ("support", "query"):
                raw[part], labels[part], class_ids[part], record_ids[part] = [], [], [], []
            for label, (class_id, s_idx, q_idx) in enumerate(
                    zip(description.class_ids, description.support, description.query)):
                data = store.read(class_id, np.concatenate([s_idx, q_idx]))  # one open per class
                for part, idx, chunk in (("support", s_idx, data[:len(s_idx)]), ("query", q_idx, data[len(s_idx):])):
                    raw[part] += chunk
                    labels[part].append(np.full(len(idx), label, np.int32))
                    class_ids[part].append(np.full(len(idx), class_id, np.int64))
                    record_ids[part].append(idx.astype(np.int64))
            yield {
                "records": np.array(raw["support"] + raw["query"], dtype=object),
                "labels": np.concatenate(labels["support"] + labels["query"]),
                "class_ids": np.concatenate(class_ids["support"] + class_ids["query"]),
                "record_ids": np.concatenate(record_ids["support"] + record_ids["query"]),
                "num_support": np.int32(description.num_support),
                "way": np.int32(description.way),
                "source": np.int32(source),
                "seed": np.array([seed, episode_number], dtype=np.int64),
            }
            episode_number += 1

    signature = {
        "records": tf.TensorSpec([None], tf.string),
        "labels": tf.TensorSpec([None], tf.int32),
        "class_ids": tf.TensorSpec([None], tf.int64),
        "record_ids": tf.TensorSpec([None], tf.int64),
        "num_support": tf.TensorSpec([], tf.int32),
        "way": tf.TensorSpec([], tf.int32),
        "source": tf.TensorSpec([], tf.int32),
        "seed": tf.TensorSpec([2], tf.int64),
    }
    options = dict(dtype=image_dtype, method=resize_method, antialias=antialias)
    augments = {"support": support_aug.pixel_function(image_size), "query": query_aug.pixel_function(image_size)}

    def decode_episode(episode):
        images, record_labels = records.parse_examples(episode["records"])
        with tf.control_dependencies(_check_records(images, record_labels, episode, names)):
            images = tf.identity(images)
        count = tf.shape(images, out_type=tf.int64)[0]
        # Stateless seed of every image: (episode seed, episode number * 2^20 + position).
        image_seeds = tf.stack([tf.fill([count], episode["seed"][0]),
                                episode["seed"][1] * 2**20 + tf.range(count, dtype=tf.int64)], axis=1)
        n = episode["num_support"]
        name = tf.gather(names, episode["source"])

        def decoded(part, rows):
            return decode_lib.decode_batch(
                images[rows], image_size, what=name, augment=augments[part], seeds=image_seeds[rows],
                names=[("class ids:", episode["class_ids"][rows]),
                       ("record numbers in their class file:", episode["record_ids"][rows])], **options)

        labels = episode["labels"]
        meta = tf.data.Dataset.from_tensors({
            "support_labels": labels[:n], "query_labels": labels[n:], "way": episode["way"]})
        return tf.data.Dataset.zip((decoded("support", slice(None, n)), decoded("query", slice(n, None)), meta))

    def assemble(support_images, query_images, meta):
        return {"support_images": support_images, "query_images": query_images, **meta}

    dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
    dataset = dataset.prefetch(read_ahead)
    dataset = dataset.flat_map(decode_episode)
    dataset = dataset.map(assemble)
    dataset = dataset.prefetch(prefetch)
    expected = episode_signature(image_size, image_dtype)
    spec = dataset.element_spec
    for key, value in expected.items():
        if not value.is_compatible_with(spec[key]):
            raise AssertionError(f"Pipeline output {key} {spec[key]} does not match {value}.")
    return dataset


def verify_dataset(dataset_dir_or_spec, decode: bool = True, verify_checksums: bool = True) -> int:
    """Reads every record of a dataset and raises naming the first bad class file and record.

    Checks the spec counts, record checksums, the label feature and (``decode``) that every image
    decodes. Slow (a full read); meant for diagnosing a pipeline failure. Returns the record count.
    """
    spec = dataset_dir_or_spec
    if not isinstance(spec, spec_lib.DatasetSpec):
        spec = spec_lib.load_spec(os.fspath(spec))
    total = 0
    for split in spec_lib.SPLITS:
        classes = spec.classes(split)
        store = _RecordStore(spec, classes, index="eager")
        for class_id in classes:
            path = spec.class_file(class_id)
            if verify_checksums:
                try:
                    records.count_records(path, verify_checksums=True)
                except records.RecordFileError as error:
                    raise PipelineError(f"Dataset {spec.name!r} class {class_id}: {error}") from None
            raw = store.read(class_id, np.arange(spec.images_per_class[class_id]))
            for number, serialized in enumerate(raw):
                where = f"Dataset {spec.name!r} class {class_id} file {path} record {number}"
                image, label = records.parse_example(tf.constant(serialized))
                if int(label) != class_id:
                    raise PipelineError(f"{where}: label feature is {int(label)}, expected {class_id}.")
                if decode:
                    try:
                        tf.io.decode_image(image, channels=3, expand_animations=False)
                    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
                        raise PipelineError(f"{where}: image does not decode: {error.message}") from None
            total += len(raw)
    return total
