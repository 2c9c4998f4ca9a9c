"""Where every record of a split lives: class files checked against the spec, record offsets indexed.

:class:`ClassTable` numbers the classes of all sources of a pipeline with one "slot" each and holds,
as flat NumPy arrays, each slot's record count and every record's file, byte offset and
length (from the 12-byte record headers only, ``records.record_index``; 20 bytes
per image). The tf.data side (``reading.py``) turns (slot, record number) into record bytes with
these arrays alone, so no Python runs while a pipeline is iterated.

:func:`verify_dataset` is the slow, thorough check (every record read, checksums, labels, decoding).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from lite_tf.data.metadataset import records
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.errors import ConfigError, DataError
from lite_tf.faults import clean_tf_message

INDEX_MODES = ("eager", "lazy")


class PipelineError(DataError):
    """Records that disagree with their spec, or are missing or damaged."""


def check_class_files(spec, classes: Sequence[int]) -> None:
    """Every class file exists and is not empty (one ``stat`` each); raises naming all bad ones."""
    if spec.path is None:
        raise PipelineError(f"Dataset {spec.name!r}: the spec has no records path.")
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


def index_class(spec, class_id: int):
    """(offsets, lengths) of one class file's records, checked against the spec's image count."""
    path = spec.class_file(class_id)
    try:
        offsets, lengths = records.record_index(path)
    except records.RecordFileError as error:
        raise PipelineError(f"Dataset {spec.name!r} class {class_id}: {error}") from None
    expected = spec.images_per_class[class_id]
    if len(offsets) != expected:
        raise PipelineError(
            f"Dataset {spec.name!r} class {class_id}: the spec says {expected} images but "
            f"{path} holds {len(offsets)} records; re-run the converter or fix dataset_spec.json.")
    return offsets, lengths


class ClassFiles:
    """A record set stored as Meta-Dataset class files (one TFRecord file per class, ``spec.path``).

    A record set is what a :class:`ClassTable` is built from: a ``spec`` (for the sampler), a
    ``name`` (for messages), ``check(classes)`` (cheap checks of many classes at once) and
    ``class_records(class_id)``: the class's records as runs of ``(file, offsets, lengths)``, in
    record-number order. ``lite_tf.data.md_tfds.TfdsClassStore`` is the other kind (TFDS shards).
    """

    def __init__(self, spec):
        self.spec = spec
        self.name = f"dataset {spec.name} ({spec.path})"  # no quotes: TF escapes them in assertion messages

    def check(self, classes: Sequence[int]) -> None:
        check_class_files(self.spec, classes)

    def class_records(self, class_id: int):
        return [(self.spec.class_file(class_id), *index_class(self.spec, class_id))]


class ClassTable:
    """Slots for the (source, class) pairs of a pipeline, with their files and record offsets.

    ``record_sets[s]`` is source ``s`` (a :class:`ClassFiles` or another record set) and
    ``classes[s]`` its class ids that get a slot (all of the split, or with ``index="lazy"`` only
    those the planned episodes draw). Per slot: ``counts``, ``class_ids``, ``sources`` (the
    slot's source), ``record_starts`` (into the per-record arrays); per record: ``offsets``, ``lengths`` and ``record_files`` (into the
    per-file ``paths`` / ``file_sizes``; a class may span several files).
    """

    def __init__(self, record_sets: Sequence, classes: Sequence[Sequence[int]]):
        self.record_sets = list(record_sets)
        self._slot: Dict[tuple, int] = {}
        files: Dict[str, int] = {}
        counts, class_ids, sources, record_files, offsets, lengths = [], [], [], [], [], []
        for source, (record_set, ids) in enumerate(zip(self.record_sets, classes)):
            record_set.check(ids)
            for class_id in ids:
                self._slot[(source, int(class_id))] = len(counts)
                count = 0
                for path, run_offsets, run_lengths in record_set.class_records(int(class_id)):
                    record_files.append(np.full(len(run_offsets), files.setdefault(path, len(files)), np.int32))
                    offsets.append(run_offsets)
                    lengths.append(run_lengths)
                    count += len(run_offsets)
                counts.append(count)
                class_ids.append(int(class_id))
                sources.append(source)
        self.paths = np.asarray(list(files), dtype=object)
        self.file_sizes = np.asarray([os.path.getsize(path) for path in files], np.int64)
        self.counts = np.asarray(counts, np.int64)
        self.class_ids = np.asarray(class_ids, np.int64)
        self.sources = np.asarray(sources, np.int64)
        self.record_starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.record_files = _joined(record_files, np.int32)
        self.offsets = _joined(offsets, np.int64)
        self.lengths = _joined(lengths, np.int64)

    def __len__(self) -> int:
        return len(self.counts)

    def slot(self, source: int, class_id: int) -> int:
        return self._slot[(int(source), int(class_id))]

    @property
    def total_bytes(self) -> int:
        return int(self.file_sizes.sum())

    @property
    def num_records(self) -> int:
        return len(self.offsets)

    def every_record(self):
        """(slots, record numbers) of every record, in flat order (the order of ``offsets``)."""
        slots = np.repeat(np.arange(len(self), dtype=np.int64), self.counts)
        return slots, np.arange(self.num_records, dtype=np.int64) - np.repeat(self.record_starts, self.counts)


def _joined(arrays: list, dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros([0], dtype)


def build_table(record_sets: Sequence, split, index: str, drawn: Optional[List[set]] = None) -> ClassTable:
    """A :class:`ClassTable` for every class of ``split`` (``index="eager"``: every problem in the
    split is found now) or only the ``drawn`` classes per source (``"lazy"``, for very large sets)."""
    if index not in INDEX_MODES:
        raise ConfigError(f"index must be one of {INDEX_MODES}; got {index!r}.")
    if index == "eager" or drawn is None:
        classes = [record_set.spec.classes(split) for record_set in record_sets]
    else:
        classes = [sorted(ids) for ids in drawn]
    return ClassTable(record_sets, classes)


def verify_dataset(dataset_dir_or_spec, decode: bool = True, verify_checksums: bool = True) -> int:
    """Reads every record of a dataset and raises naming the first bad class file and record.

    Checks the spec counts, record checksums, the label feature and (``decode``) that every image
    decodes. Slow (a full read); meant for diagnosing a pipeline failure. Returns the record count.
    """
    import tensorflow as tf

    spec = dataset_dir_or_spec
    if not isinstance(spec, spec_lib.DatasetSpec):
        spec = spec_lib.load_spec(os.fspath(spec))
    total = 0
    for split in spec_lib.SPLITS:
        classes = spec.classes(split)
        check_class_files(spec, classes)
        for class_id in classes:
            path = spec.class_file(class_id)
            offsets, lengths = index_class(spec, class_id)
            if verify_checksums:
                try:
                    records.count_records(path, verify_checksums=True)
                except records.RecordFileError as error:
                    raise PipelineError(f"Dataset {spec.name!r} class {class_id}: {error}") from None
            for number, serialized in enumerate(records.read_records(path, offsets, lengths)):
                where = f"Dataset {spec.name!r} class {class_id} file {path} record {number}"
                image, label = records.parse_example(tf.constant(serialized))
                if int(label) != class_id:
                    raise PipelineError(f"{where}: label feature is {int(label)}, expected {class_id}.")
                if decode:
                    try:
                        tf.io.decode_image(image, channels=3, expand_animations=False)
                    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
                        raise PipelineError(f"{where}: image does not decode: {clean_tf_message(error.message)}") from None
            total += len(offsets)
    return total
