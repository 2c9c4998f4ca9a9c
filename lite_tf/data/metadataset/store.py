"""Where every record of a split lives: class files checked against the spec, record offsets indexed.

:class:`ClassTable` numbers the classes of all sources of a pipeline with one "slot" each and holds,
as flat NumPy arrays, each slot's class file, file size, record count and the byte offset and
length of every record (from the 12-byte record headers only, ``records.record_index``; 16 bytes
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


class ClassTable:
    """Slots for the (source, class) pairs of a pipeline, with their files and record offsets.

    ``classes[s]`` are the class ids of source ``s`` that get a slot (all of the split, or with
    ``index="lazy"`` only those the planned episodes draw). Arrays, one entry per slot:
    ``paths``, ``file_sizes``, ``counts``, ``class_ids``, ``sources`` (the source of the slot),
    ``record_starts`` (into the flat ``offsets`` / ``lengths``, one entry per record).
    """

    def __init__(self, specs: Sequence, classes: Sequence[Sequence[int]]):
        self.specs = list(specs)
        self._slot: Dict[tuple, int] = {}
        paths, sizes, counts, class_ids, sources, offsets, lengths = [], [], [], [], [], [], []
        for source, (spec, ids) in enumerate(zip(self.specs, classes)):
            check_class_files(spec, ids)
            for class_id in ids:
                class_offsets, class_lengths = index_class(spec, int(class_id))
                self._slot[(source, int(class_id))] = len(paths)
                paths.append(spec.class_file(class_id))
                sizes.append(os.path.getsize(paths[-1]))
                counts.append(len(class_offsets))
                class_ids.append(int(class_id))
                sources.append(source)
                offsets.append(class_offsets)
                lengths.append(class_lengths)
        self.paths = np.asarray(paths, dtype=object)
        self.file_sizes = np.asarray(sizes, np.int64)
        self.counts = np.asarray(counts, np.int64)
        self.class_ids = np.asarray(class_ids, np.int64)
        self.sources = np.asarray(sources, np.int64)
        self.record_starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)
        self.offsets = np.concatenate(offsets).astype(np.int64) if offsets else np.zeros([0], np.int64)
        self.lengths = np.concatenate(lengths).astype(np.int64) if lengths else np.zeros([0], np.int64)

    def __len__(self) -> int:
        return len(self.paths)

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


def build_table(specs: Sequence, split, index: str, drawn: Optional[List[set]] = None) -> ClassTable:
    """A :class:`ClassTable` for every class of ``split`` (``index="eager"``: every problem in the
    split is found now) or only the ``drawn`` classes per source (``"lazy"``, for very large sets)."""
    if index not in INDEX_MODES:
        raise ConfigError(f"index must be one of {INDEX_MODES}; got {index!r}.")
    if index == "eager" or drawn is None:
        classes = [spec.classes(split) for spec in specs]
    else:
        classes = [sorted(ids) for ids in drawn]
    return ClassTable(specs, classes)


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
                        raise PipelineError(f"{where}: image does not decode: {error.message}") from None
            total += len(offsets)
    return total
