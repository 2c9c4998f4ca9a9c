"""Planned episodes -> serialized records, with TensorFlow ops only (no Python while iterating).

:func:`describe` turns an episode number into its images' (slot, record number, label) from an
``plan.EpisodePlan`` (rotating record numbers beyond the planned block, see plan.py).
:class:`RecordReader` turns (slot, record number) into the serialized example, one of two ways:
- in memory (the default when all record files of the pipeline total at most ``cache_bytes``): the
  files are read once, on the first episode, into one string; a record is then one ``substr`` of
  it (offsets from the record headers). Costs nothing per episode beyond copying the records.
- from the files: each record is read by a ``FixedLengthRecordDataset`` placed at its offset, so
  only the record's own bytes are read; about 0.25 ms of CPU per record, for record sets larger
  than the cache (ImageNet's class files are ~140 MB: reading whole files would be far slower).
:meth:`RecordReader.every_record` reads all records once (whole files), to fill the pipeline's
decoded-image cache.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

DEFAULT_CACHE_BYTES = 512 * 2**20


def _constant(values, dtype):
    return tf.constant(values, dtype=dtype)


class RecordReader:
    """Reads records of a ``store.ClassTable`` by (slot, record number)."""

    def __init__(self, table, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.table = table
        self.in_memory = table.total_bytes <= int(cache_bytes)
        self.paths = _constant(list(table.paths), tf.string)
        self.file_sizes = _constant(table.file_sizes, tf.int64)
        self.counts = _constant(table.counts, tf.int64)
        self.class_ids = _constant(table.class_ids, tf.int64)
        self.sources = _constant(table.sources, tf.int64)
        self.record_starts = _constant(table.record_starts, tf.int64)
        self.lengths = _constant(table.lengths, tf.int64)
        # Each record's offset in its file, and in the concatenated files (:meth:`contents`).
        self.offsets = _constant(table.offsets, tf.int64)
        file_starts = np.concatenate([[0], np.cumsum(table.file_sizes)[:-1]]).astype(np.int64)
        self.memory_offsets = _constant(file_starts[table.record_files] + table.offsets, tf.int64)
        self.record_files = _constant(table.record_files, tf.int32)

    def _concatenated(self) -> tf.data.Dataset:
        """One element: every record file, read whole and concatenated."""
        return (tf.data.Dataset.from_tensor_slices(self.paths)
                .map(tf.io.read_file, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(len(self.table.paths))
                .map(lambda contents: tf.strings.reduce_join(contents)))

    def contents(self) -> tf.data.Dataset:
        """One element, forever: every record file concatenated (read once, then cached)."""
        return self._concatenated().cache().repeat()

    def every_record(self) -> tf.data.Dataset:
        """One element: (slots, record numbers, serialized examples) of every record of the table, in
        flat order; the files are read whole once and nothing is kept afterwards."""
        slots, numbers = (_constant(values, tf.int64) for values in self.table.every_record())
        return self._concatenated().map(lambda contents: (slots, numbers, self.read(slots, numbers, contents)))

    def read(self, slots, record_numbers, contents=None):
        """[K] serialized examples; ``contents`` is the element of :meth:`contents` when in memory."""
        flat = tf.gather(self.record_starts, slots) + tf.cast(record_numbers, tf.int64)
        lengths = tf.gather(self.lengths, flat)
        if contents is not None:
            return tf.strings.substr(contents, tf.gather(self.memory_offsets, flat), lengths)
        files = tf.gather(self.record_files, flat)
        return self._read_files(tf.gather(self.paths, files), tf.gather(self.offsets, flat), lengths,
                                tf.gather(self.file_sizes, files))

    @staticmethod
    def _read_files(paths, offsets, lengths, sizes):
        def record(path, offset, length, size):
            return tf.data.FixedLengthRecordDataset(path, length, header_bytes=offset,
                                                    footer_bytes=size - offset - length, buffer_size=length)

        count = tf.shape(paths, out_type=tf.int64)[0]
        return (tf.data.Dataset.from_tensor_slices((paths, offsets, lengths, sizes))
                .interleave(record, cycle_length=8, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(count)
                .get_single_element())


def describe(number, plan_tensors: dict, counts, seed: int) -> dict:
    """Episode ``number`` (int64 scalar) of a plan (``plan_tensors``: the ``EpisodePlan`` fields as
    tensors): per image its slot, record number and label; and its num_support, way, source, seed."""
    block = tf.shape(plan_tensors["way"], out_type=tf.int64)[0]
    index, repeat = number % block, number // block
    begin, end = plan_tensors["starts"][index], plan_tensors["starts"][index + 1]
    slots = plan_tensors["slots"][begin:end]
    record_numbers = tf.cast(plan_tensors["records"][begin:end], tf.int64)
    class_counts = tf.gather(counts, slots)
    # Repeat r > 0: rotate each class's record numbers by a random offset of (seed, r, slot).
    uniform = tf.random.stateless_uniform(tf.shape(counts), seed=tf.stack([tf.constant(seed, tf.int64), repeat]),
                                          dtype=tf.float64)
    rotation = tf.cast(tf.floor(tf.gather(uniform, slots) * tf.cast(class_counts, tf.float64)), tf.int64)
    rotation = tf.where(repeat > 0, rotation, tf.zeros_like(rotation))
    return {
        "slots": slots,
        "record_ids": (record_numbers + rotation) % class_counts,
        "labels": plan_tensors["labels"][begin:end],
        "num_support": plan_tensors["num_support"][index],
        "way": plan_tensors["way"][index],
        "source": plan_tensors["source"][index],
        "seed": tf.stack([tf.constant(seed, tf.int64), number]),
    }
