"""The Meta-Dataset episode pipeline: records -> episodes in ``lite_tf.episode`` structure.

How it works (and why it is faster and leaner than the reference pipeline):
1. Each source's class files are indexed once: the byte offset and length of every record, read
   from the 12-byte record headers only (``store.ClassTable``, 20 bytes/image). Google's TFDS
   build is indexed the same way (``lite_tf.data.md_tfds``: a class's slice of its shards).
2. The NumPy :class:`~lite_tf.data.metadataset.sampling.EpisodeSampler` plans ``episodes_ahead``
   episodes when the dataset is built (``plan.py``: which classes, which records); they are served
   from tensors and, beyond the block, reused with freshly drawn records. No Python runs while the
   dataset is iterated (a Python generator there can deadlock when an iterator is torn down), and
   no per-class streams, shuffle buffers or padded slots: memory does not grow with the classes.
3. Records are read with TensorFlow ops (``reading.py``): from memory when the class files fit in
   ``cache_bytes`` (read once), else each record from its own byte range of its file.
4. Examples are parsed in one vectorised op and checked; then support and query are each decoded
   and resized by a parallel map batched whole (``lite_tf.data.decode``), ``parallel_episodes``
   episodes at a time, and finished episodes are prefetched.
5. Decoded-image cache: episodes draw the same images again and again (30 classes x 40 images
   give ~6 draws per image in 20 episodes), and decoding plus resizing is almost all of the cost.
   When every record of the table, decoded and resized, fits ``decoded_cache_bytes``, all records
   are decoded once, on the first episode, into one tensor, and an episode is a ``gather`` from it
   (plus augmentation, which stays per episode). The cache holds exactly the pixels the decoder
   produces at that point, so episodes are bit-identical to decoded ones. Sources too large for
   the budget (ImageNet) are decoded per episode as in 4.

Pixels are in [-1, 1] (float32) or [0, 255] (uint8, 4x smaller; EpisodicModel converts per chunk).
Resizing: ``resize_method="bilinear"`` (TF2 ``tf.image.resize``, the default) or ``"reference"``
(bilinear with ``align_corners=True``, pixel-identical to Google's reference decoder); see
lite_tf/data/decode.py for every method and ``dct_method``.
Augmentation (flip, colour jitter, pad-and-crop) is set separately for support and query and uses
stateless random ops seeded per episode and image, so a seed fixes the episodes and their pixels.

Bad input, and what happens (every case fails fast; every message names the dataset and its
folder, the class(es) and the file or record numbers):
- a class file missing or empty: fails when the dataset is built (one ``stat`` per file);
- a truncated or corrupt record file, or a record count that disagrees with the spec: fails when
  the dataset is built (``index="eager"``, the default: headers of every class file of the split
  are read; ``index="lazy"``: only the classes the planned episodes draw, for very large sets);
- a record whose bytes are not an encoded JPEG/PNG/GIF/BMP image (checked by signature), whose
  image data is damaged (the decoder fails), or whose ``label`` is not its class id: the episode
  fails with an assertion naming the dataset, the class ids and the record numbers. Damage that
  the JPEG decoder tolerates (e.g. flipped bits mid-stream) is not detectable this way;
  :func:`~lite_tf.data.metadataset.store.verify_dataset` also checks the record checksums.
- split too small for the minimum way, a class with fewer than 2 images (variable mode) or too few
  for the fixed shots + query: fails when the dataset is built (``sampling.SamplerError``);
- ``image_size`` outside [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE], ``num_episodes`` or
  ``episodes_ahead`` not a positive integer: ``lite_tf.errors.ConfigError`` at once.
Nothing is skipped: a corrupt benchmark silently shrunk would bias results, so every case stops.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from lite_tf.data import decode as decode_lib
from lite_tf.data.augment import Augmentation
from lite_tf.data.metadataset import plan as plan_lib
from lite_tf.data.metadataset import reading, records
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.metadataset.store import ClassFiles, build_table
from lite_tf.episode import episode_signature
from lite_tf.errors import ConfigError

MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 1024
DEFAULT_DECODED_CACHE_BYTES = 2**30
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"BM")


def _as_record_sets(sources, datasets: Optional[Sequence[str]]) -> list:
    """``store.ClassFiles`` for folders and specs; other record sets (``class_records``) as they are."""
    if isinstance(sources, (str, os.PathLike, spec_lib.DatasetSpec)) or hasattr(sources, "class_records"):
        sources = [sources]
    sources = list(sources)
    if datasets:
        if len(sources) != 1 or not isinstance(sources[0], (str, os.PathLike)):
            raise ConfigError("With `datasets`, `sources` must be the one records root folder.")
        sources = [os.path.join(os.fspath(sources[0]), name) for name in datasets]
    if not sources:
        raise ConfigError("make_episode_dataset needs at least one source (a dataset folder or spec).")
    return [s if hasattr(s, "class_records") else
            ClassFiles(s if isinstance(s, spec_lib.DatasetSpec) else spec_lib.load_spec(os.fspath(s)))
            for s in sources]


def check_image_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ConfigError(f"image_size must be an integer number of pixels; got {image_size!r}.")
    if not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise ConfigError(f"image_size must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] pixels; got {image_size}.")
    return int(image_size)


def _non_negative(name: str, value, unit: str = " (bytes)") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"make_episode_dataset.{name} must be a non-negative integer{unit}; got {value!r}.")
    return int(value)


def _positive(name: str, value, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"make_episode_dataset.{name} must be a positive integer; got {value!r}.")
    return int(value)


def _check_records(images, labels, class_ids, record_ids, names):
    """Assertions on parsed records: encoded-image signature and label == class id. ``names`` (the
    dataset of each record, or one for all) are printed for the bad records only."""
    names = tf.broadcast_to(names, tf.shape(labels))
    signature_ok = tf.zeros_like(labels, dtype=tf.bool)
    for signature in _SIGNATURES:
        prefix = tf.strings.substr(images, 0, len(signature))
        signature_ok = tf.logical_or(signature_ok, tf.equal(prefix, signature))
    not_image = tf.logical_not(signature_ok)
    wrong_label = tf.not_equal(labels, class_ids)

    def where(bad):
        return tf.unique(tf.boolean_mask(names, bad))[0]

    return [
        tf.debugging.Assert(
            tf.reduce_all(signature_ok),
            ["Record(s) whose image bytes are not an encoded JPEG/PNG/GIF/BMP image, in", where(not_image),
             "class ids:", tf.boolean_mask(class_ids, not_image),
             "record numbers in their class file:", tf.boolean_mask(record_ids, not_image)],
            summarize=10),
        tf.debugging.Assert(
            tf.reduce_all(tf.logical_not(wrong_label)),
            ["Record(s) whose label feature is not the id of their class, in", where(wrong_label),
             "class ids:", tf.boolean_mask(class_ids, wrong_label),
             "labels found:", tf.boolean_mask(labels, wrong_label),
             "record numbers:", tf.boolean_mask(record_ids, wrong_label)],
            summarize=10),
    ]


def _image_seeds(seed, count):
    """Stateless seed of every image of an episode: (episode seed, episode number * 2^20 + position)."""
    return tf.stack([tf.fill([count], seed[0]), seed[1] * 2**20 + tf.range(count, dtype=tf.int64)], axis=1)


class _EpisodeBuilder:
    """The tf.data stages of one pipeline, each a small function of one episode.

    Two paths: records read, parsed and decoded per episode (:meth:`read`, :meth:`parse`,
    :meth:`decode`); or, with the decoded-image cache, every record decoded and resized once
    (:meth:`decoded_cache`) and episodes gathered from it (:meth:`gather`, :meth:`finish`).
    """

    def __init__(self, names, reader: reading.RecordReader, plan: plan_lib.EpisodePlan, seed: int,
                 image_size: int, decode_options: dict, augments: dict):
        self.reader, self.seed, self.image_size = reader, seed, image_size
        self.decode_options, self.augments = decode_options, augments
        self.names = tf.constant(list(names))
        self.plan = {field: tf.constant(getattr(plan, field)) for field in
                     ("slots", "records", "labels", "starts", "num_support", "way", "source")}

    def describe(self, number):
        return reading.describe(number, self.plan, self.reader.counts, self.seed)

    def read(self, episode, contents=None):
        episode = dict(episode)
        episode["records"] = self.reader.read(episode["slots"], episode["record_ids"], contents)
        return episode

    def checked(self, serialized, slots, record_ids, names):
        """Parses records (one op) and checks them (``_check_records``): (image bytes, class ids)."""
        images, record_labels = records.parse_examples(serialized)
        class_ids = tf.gather(self.reader.class_ids, slots)
        with tf.control_dependencies(_check_records(images, record_labels, class_ids, record_ids, names)):
            return tf.identity(images), class_ids

    def parse(self, episode):
        name = tf.gather(self.names, episode["source"])
        images, class_ids = self.checked(episode["records"], episode["slots"], episode["record_ids"], name)
        return {"images": images, "seeds": _image_seeds(episode["seed"], tf.shape(images, out_type=tf.int64)[0]),
                "class_ids": class_ids, "name": name,
                **{key: episode[key] for key in ("labels", "record_ids", "num_support", "way")}}

    def _decoded(self, episode, part: str, rows: slice) -> tf.data.Dataset:
        return decode_lib.decode_batch(
            episode["images"][rows], self.image_size, what=episode["name"], augment=self.augments[part],
            seeds=episode["seeds"][rows],
            names=[("class ids:", episode["class_ids"][rows]),
                   ("record numbers in their class file:", episode["record_ids"][rows])],
            **self.decode_options)

    def decode(self, episode) -> tf.data.Dataset:
        parts = (self._decoded(episode, "support", slice(None, episode["num_support"])),
                 self._decoded(episode, "query", slice(episode["num_support"], None)))
        return _with_labels(parts, episode)

    @property
    def cache_finished(self) -> bool:
        """The decoded-image cache holds finished pixels (output dtype) when nothing is augmented,
        else the resized float32 pixels in [0, 255] that augmentation starts from; either way an
        episode is exactly what decoding it afresh gives."""
        return self.augments["support"] is None and self.augments["query"] is None

    @property
    def cache_dtype(self) -> tf.DType:
        return self.decode_options["dtype"] if self.cache_finished else tf.float32

    def cache_bytes_per_image(self) -> int:
        return self.image_size * self.image_size * 3 * self.cache_dtype.size

    def decoded_cache(self) -> tf.data.Dataset:
        """One element, forever: every record of the table decoded and resized once, [R, S, S, 3] of
        ``cache_dtype`` in the table's flat record order. A bad record fails naming its dataset,
        class and record number."""
        def parse_all(slots, numbers, serialized):
            names = tf.gather(self.names, tf.gather(self.reader.sources, slots))
            return (*self.checked(serialized, slots, numbers, names), numbers, names)

        def decode_all(images, class_ids, numbers, names):
            return decode_lib.decode_batch(
                images, self.image_size, what="the decoded-image cache", raw=not self.cache_finished,
                names=[("datasets:", names), ("class ids:", class_ids),
                       ("record numbers in their class file:", numbers)], **self.decode_options)

        return self.reader.every_record().map(parse_all).flat_map(decode_all).cache().repeat()

    def gather(self, episode, cache):
        """An episode's pixels from the cache."""
        flat = tf.gather(self.reader.record_starts, episode["slots"]) + episode["record_ids"]
        return {"pixels": tf.gather(cache, flat), **{key: episode[key] for key in ("labels", "num_support", "way",
                                                                                     "seed")}}

    def finish(self, episode) -> tf.data.Dataset:
        """Augments and scales cached raw pixels (only when augmentation is on)."""
        n = episode["num_support"]
        seeds = _image_seeds(episode["seed"], tf.shape(episode["pixels"], out_type=tf.int64)[0])
        parts = tuple(decode_lib.finish_batch(episode["pixels"][rows], dtype=self.decode_options["dtype"],
                                              augment=self.augments[part], seeds=seeds[rows])
                      for part, rows in (("support", slice(None, n)), ("query", slice(n, None))))
        return _with_labels(parts, episode)

    def split(self, episode) -> dict:
        """A gathered episode whose cached pixels are already finished -> the episode dict."""
        n = episode["num_support"]
        return _episode_dict(episode["pixels"][:n], episode["pixels"][n:], episode)


def _episode_dict(support_images, query_images, episode) -> dict:
    n, labels = episode["num_support"], episode["labels"]
    return {"support_images": support_images, "query_images": query_images, "support_labels": labels[:n],
            "query_labels": labels[n:], "way": episode["way"]}


def _with_labels(parts, episode) -> tf.data.Dataset:
    """(support images, query images) datasets of one element -> the episode dict."""
    return tf.data.Dataset.zip(tuple(parts)).map(lambda support, query: _episode_dict(support, query, episode))


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.autotune.enabled = True
    options.experimental_optimization.map_and_batch_fusion = True
    options.threading.max_intra_op_parallelism = 1  # images are decoded in parallel, not each one
    return options


@gin.configurable
def make_episode_dataset(sources, split, *, image_size: int, datasets: Optional[Sequence[str]] = None,
                         sampler_kwargs: Optional[dict] = None,
                         support_augmentation: Optional[Augmentation] = None,
                         query_augmentation: Optional[Augmentation] = None,
                         seed: Optional[int] = 0, image_dtype=tf.float32, resize_method: str = "bilinear",
                         antialias: bool = False, dct_method: str = "", index: str = "eager",
                         num_episodes: Optional[int] = None, episodes_ahead: int = 2000,
                         cache_bytes: int = reading.DEFAULT_CACHE_BYTES,
                         decoded_cache_bytes: int = DEFAULT_DECODED_CACHE_BYTES, parallel_episodes: int = 2,
                         prefetch: int = 1, read_ahead: int = 2, first_episode: int = 0) -> tf.data.Dataset:
    """A dataset of episode dicts (``lite_tf.episode.episode_signature(image_size)``).

    sources: a dataset folder (holding ``dataset_spec.json`` and the class files), a spec, or a list
      of them; or a records root folder together with ``datasets`` (names of its sub-folders); or
      other record sets (``store.ClassFiles`` is the interface, e.g. ``md_tfds.TfdsClassStore``).
      With several sources every episode comes from one source picked uniformly at random.
    split: TRAIN/VALID/TEST (a ``spec.Split`` or its name).
    image_size: the side of the square output images; the caller passes the experiment's one value.
    sampler_kwargs: arguments of :class:`~lite_tf.data.metadataset.sampling.EpisodeSampler` (num_ways,
      num_support, num_query, ...); anything not given comes from gin bindings or the defaults.
    seed: fixes episodes and augmentation; re-iterating the dataset replays the same episodes
      (None: a fresh random seed).
    image_dtype: tf.float32 (pixels in [-1, 1]) or tf.uint8 ([0, 255], 4x less memory).
    resize_method / antialias / dct_method: see lite_tf/data/decode.py ("reference" = Google's).
    index: "eager" reads every record header of the split up front (fails fast on any mismatch),
      "lazy" only those of the classes the planned episodes draw.
    num_episodes: the dataset ends after this many episodes (None: endless).
    episodes_ahead: episodes planned when the dataset is built (at most num_episodes); later
      episodes reuse their class structures with fresh records (see plan.py).
    cache_bytes: class files totalling at most this are read into memory once; larger record
      sets are read record by record from the files.
    decoded_cache_bytes: when every record of the table, decoded and resized, fits in this
      (image_size^2 x 3 values each: uint8 or float32 as the output, float32 when augmenting), the
      records are decoded once, on the first episode, and episodes are gathered from memory
      (several times faster: episodes draw the same images again and again). Episodes are exactly
      the uncached ones. 0 turns it off.
    parallel_episodes: episodes decoded at once; prefetch: finished episodes kept ready;
    read_ahead: episodes read (record bytes) ahead of decoding.
    first_episode: the dataset starts at this episode of the seed's stream (episode ``n`` is a
      function of the seed and ``n`` alone), without reading the ones before: a resumed training
      run continues exactly where it stopped. ``num_episodes`` still counts from episode 0.
    """
    image_size = check_image_size(image_size)
    image_dtype = decode_lib.check_options(resize_method, image_dtype, dct_method)
    num_episodes = _positive("num_episodes", num_episodes, allow_none=True)
    ahead = min(_positive("episodes_ahead", episodes_ahead), num_episodes or episodes_ahead)
    parallel_episodes = _positive("parallel_episodes", parallel_episodes)
    first_episode = _non_negative("first_episode", first_episode, unit="")
    decoded_cache_bytes = _non_negative("decoded_cache_bytes", decoded_cache_bytes)
    split = spec_lib.Split.of(split)
    record_sets = _as_record_sets(sources, datasets)
    specs = [record_set.spec for record_set in record_sets]
    kwargs = dict(sampler_kwargs or {})
    kwargs.pop("seed", None)
    support_aug = support_augmentation or Augmentation()
    query_aug = query_augmentation or Augmentation()
    augments = {"support": support_aug.pixel_function(image_size), "query": query_aug.pixel_function(image_size)}
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    planned = plan_lib.sample_episodes(specs, split, kwargs, seed, ahead)  # checks every source's split
    table = build_table(record_sets, split, index, plan_lib.drawn_classes(planned, len(specs)))
    reader = reading.RecordReader(table, cache_bytes)
    builder = _EpisodeBuilder([s.name for s in record_sets], reader, plan_lib.EpisodePlan.build(planned, table),
                              seed, image_size, dict(dtype=image_dtype, method=resize_method, antialias=antialias,
                                                     dct_method=dct_method), augments)
    cached = table.num_records * builder.cache_bytes_per_image() <= decoded_cache_bytes
    dataset = _episode_dataset(builder, num_episodes, parallel_episodes, prefetch, read_ahead, cached, first_episode)
    _check_signature(dataset, image_size, image_dtype)
    return dataset


def _episode_dataset(builder: _EpisodeBuilder, num_episodes, parallel_episodes, prefetch, read_ahead,
                     cached: bool, first_episode: int = 0):
    numbers = tf.data.Dataset.counter(start=first_episode)
    if num_episodes is not None:
        numbers = numbers.take(max(num_episodes - first_episode, 0))
    episodes = numbers.map(builder.describe)
    if cached:
        episodes = tf.data.Dataset.zip((episodes, builder.decoded_cache())).map(
            builder.gather, num_parallel_calls=parallel_episodes, deterministic=True)
        if builder.cache_finished:
            episodes = episodes.map(builder.split, num_parallel_calls=parallel_episodes, deterministic=True)
        else:
            episodes = episodes.interleave(builder.finish, cycle_length=parallel_episodes, block_length=1,
                                           num_parallel_calls=parallel_episodes, deterministic=True)
        return episodes.prefetch(prefetch).with_options(_options())
    if builder.reader.in_memory:
        episodes = tf.data.Dataset.zip((episodes, builder.reader.contents())).map(builder.read)
    else:
        episodes = episodes.map(builder.read)
    episodes = episodes.map(builder.parse).prefetch(read_ahead)
    episodes = episodes.interleave(builder.decode, cycle_length=parallel_episodes, block_length=1,
                                   num_parallel_calls=parallel_episodes, deterministic=True)
    return episodes.prefetch(prefetch).with_options(_options())


def _check_signature(dataset, image_size, image_dtype):
    expected = episode_signature(image_size, image_dtype)
    spec = dataset.element_spec
    for key, value in expected.items():
        if not value.is_compatible_with(spec[key]):
            raise AssertionError(f"Pipeline output {key} {spec[key]} does not match {value}.")
