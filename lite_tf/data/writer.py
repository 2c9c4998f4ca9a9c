"""Writes a Meta-Dataset record set (one class file per class + ``dataset_spec.json``), resumably.

Shared by the synthetic-data generator and the converters. Guarantees:
- atomic: every class file is written under a temporary name and renamed (records.write_class_file),
  and ``dataset_spec.json`` is written last, so an interrupted run never leaves a spec that points
  at missing or half-written files;
- resumable: a manifest (``lite_tf_manifest.json``: dataset name, class list with splits, and a
  description of the input) is written first; a later run with the same manifest skips the class
  files already present (they are complete by construction) and writes the rest;
- no mixing: a folder whose manifest differs, or that holds records or a spec this writer did not
  produce, is refused with an error naming the folder and what differs.
Class ids follow Meta-Dataset: contiguous, ordered TRAIN, VALID, TEST, in the order jobs are given.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import sys
import time
from concurrent import futures
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from lite_tf.data.metadataset import records
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf import atomic

MANIFEST_FILE = "lite_tf_manifest.json"
MANIFEST_FORMAT = 1
MIN_IMAGES_PER_CLASS = 2  # one support and one query image at least

log = logging.getLogger(__name__)


class DatasetWriteError(ValueError):
    """The output folder cannot be written as asked; the message names the folder and the reason."""


@dataclasses.dataclass
class ClassImages:
    """What loading one class produced: encoded images, and the inputs skipped as bad (path, why)."""

    images: List[bytes]
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class ClassJob:
    """One class to write: its name, split, and a callable returning ClassImages or a list of bytes.

    With a process pool ``load`` must be picklable (e.g. functools.partial of a module function).
    """

    name: str
    split: spec_lib.Split
    load: Callable[[], Union[ClassImages, Sequence[bytes]]]


@dataclasses.dataclass
class WriteReport:
    """What a write did; ``summary()`` is the text the tools print at the end."""

    dataset_dir: str
    spec: spec_lib.DatasetSpec
    written: int = 0  # class files written in this run
    resumed: int = 0  # class files found complete and kept
    already_complete: bool = False
    skipped_images: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        spec = self.spec
        counts = [spec.images_per_class[c] for c in range(sum(spec.classes_per_split.values()))]
        lines = [f"Dataset {spec.name!r} in {self.dataset_dir}:"]
        for split in spec_lib.SPLITS:
            ids = spec.classes(split)
            images = sum(spec.images_per_class[c] for c in ids)
            lines.append(f"  {split.value:<5} {len(ids):5d} classes {images:8d} images")
        if counts:
            lines.append(f"  images per class: min {min(counts)}, mean {sum(counts) / len(counts):.1f}, "
                         f"max {max(counts)}")
        if self.already_complete:
            lines.append("  already complete: nothing written")
        else:
            lines.append(f"  class files written {self.written}, kept from an earlier run {self.resumed}, "
                         f"{self.seconds:.1f} s")
        if self.skipped_images:
            lines.append(f"  skipped {len(self.skipped_images)} bad image(s), e.g. "
                         f"{self.skipped_images[0][0]} ({self.skipped_images[0][1]})")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- manifest
def make_manifest(name: str, jobs: Sequence[ClassJob], provenance: dict) -> dict:
    """The JSON description that decides whether an existing folder holds the same dataset."""
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "provenance": json.loads(json.dumps(provenance)),  # normalised (tuples -> lists)
        "classes": [[job.name, spec_lib.Split.of(job.split).value] for job in jobs],
    }


def _short(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...}"


def _describe_difference(old: dict, new: dict) -> str:
    if old.get("name") != new.get("name"):
        return f"dataset name {old.get('name')!r} != {new.get('name')!r}"
    old_p, new_p = old.get("provenance", {}), new.get("provenance", {})
    keys = sorted(k for k in set(old_p) | set(new_p) if old_p.get(k) != new_p.get(k))
    if keys:
        return "; ".join(f"{k}: existing {_short(old_p.get(k))}, requested {_short(new_p.get(k))}"
                         for k in keys[:5])
    old_c, new_c = old.get("classes", []), new.get("classes", [])
    if len(old_c) != len(new_c):
        return f"{len(old_c)} classes existing, {len(new_c)} requested"
    for i, (a, b) in enumerate(zip(old_c, new_c)):
        if list(a) != list(b):
            return f"class {i} is {a} existing, {b} requested"
    return "manifest format differs"


def check_folder(dataset_dir: str, manifest: dict) -> str:
    """'new', 'same' (manifest matches; resume or done) or raises DatasetWriteError (would mix)."""
    dataset_dir = os.fspath(dataset_dir)
    if not os.path.exists(dataset_dir):
        return "new"
    if not os.path.isdir(dataset_dir):
        raise DatasetWriteError(f"Output path {dataset_dir} exists and is not a folder.")
    manifest_path = os.path.join(dataset_dir, MANIFEST_FILE)
    if os.path.exists(manifest_path):
        try:
            with open(manifest_path) as f:
                existing = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetWriteError(f"Cannot read {manifest_path} ({error}); delete {dataset_dir} to start "
                                    "again.") from None
        if existing != manifest:
            raise DatasetWriteError(
                f"Refusing to mix datasets: {dataset_dir} already holds a different dataset "
                f"({_describe_difference(existing, manifest)}). Use another output folder, or delete "
                "this one to replace it.")
        return "same"
    foreign = sorted(e for e in os.listdir(dataset_dir)
                     if not e.startswith(".") and (e.endswith(records.FILE_SUFFIX) or e == spec_lib.SPEC_FILE))
    if foreign:
        raise DatasetWriteError(
            f"Refusing to mix datasets: {dataset_dir} already holds {foreign[0]} (and {len(foreign) - 1} "
            f"more record/spec file(s)) not written by lite_tf. Use another output folder.")
    return "new"


def is_complete(dataset_dir: str, manifest: dict) -> bool:
    """True when the folder holds this manifest, its spec and every class file."""
    if check_folder(dataset_dir, manifest) != "same":
        return False
    if not os.path.exists(os.path.join(dataset_dir, spec_lib.SPEC_FILE)):
        return False
    return all(os.path.exists(records.class_file_path(dataset_dir, i)) for i in range(len(manifest["classes"])))


def _remove_stale_temporaries(dataset_dir: str) -> None:
    """Temporary files of a run that was killed before it could clean up (records/spec/manifest)."""
    for entry in os.listdir(dataset_dir):
        if entry.startswith(".tmp-"):
            os.remove(os.path.join(dataset_dir, entry))


# ----------------------------------------------------------------------------- execution
def _ordered_map(fn: Callable, items: Sequence, workers: int, parallel: str) -> Iterator:
    """fn over items, results in order, at most 2 * workers computed ahead (bounded memory)."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    if parallel not in ("thread", "process"):
        raise ValueError(f"parallel must be 'thread' or 'process'; got {parallel!r}.")
    if parallel == "process" and sys.platform.startswith("linux"):
        import multiprocessing

        # fork: workers inherit the imported modules; they only run NumPy/PIL, never TensorFlow.
        # (Elsewhere fork is unsafe with TensorFlow loaded and spawn re-imports it: threads instead.)
        executor = futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    else:
        executor = futures.ThreadPoolExecutor(workers)
    with executor:
        pending = collections.deque()
        iterator = iter(items)
        try:
            for item in iterator:
                pending.append(executor.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _call_load(load: Callable) -> ClassImages:
    result = load()
    return result if isinstance(result, ClassImages) else ClassImages(list(result))


def _order_jobs(jobs: Iterable[ClassJob]) -> List[ClassJob]:
    jobs = [dataclasses.replace(job, split=spec_lib.Split.of(job.split)) for job in jobs]
    names = collections.Counter(job.name for job in jobs)
    duplicates = [name for name, count in names.items() if count > 1]
    if duplicates:
        raise DatasetWriteError(f"Class name(s) {duplicates[:5]} appear more than once; class names must be unique.")
    order = {split: i for i, split in enumerate(spec_lib.SPLITS)}
    return sorted(jobs, key=lambda job: order[job.split])  # stable: keeps the order within a split


def write_dataset(dataset_dir: str, name: str, jobs: Iterable[ClassJob], provenance: dict,
                  workers: int = 1, parallel: str = "thread", progress: bool = True,
                  min_images_per_class: int = MIN_IMAGES_PER_CLASS,
                  before_load: Optional[Callable[[List[Tuple[int, ClassJob]]], None]] = None) -> WriteReport:
    """Writes (or completes) a flat Meta-Dataset record set in ``dataset_dir``.

    jobs: the classes, each with its split; ids are assigned TRAIN, VALID, TEST in the given order.
    provenance: JSON-able description of the input (sizes, seed, source folder...) recorded in the
      manifest; a folder written with a different one is refused.
    workers / parallel: load classes concurrently in threads or (fork) processes.
    before_load: called with the (class id, job) pairs still to write, before any is loaded (lets a
      converter read its input once for exactly those classes).
    Raises DatasetWriteError (folder conflicts, a class with too few images); errors raised by a
    job's ``load`` propagate unchanged after the classes written so far are kept for a resume.
    """
    start = time.time()
    dataset_dir = os.fspath(dataset_dir)
    jobs = _order_jobs(jobs)
    if not jobs:
        raise DatasetWriteError(f"Dataset {name!r}: no classes to write to {dataset_dir}.")
    manifest = make_manifest(name, jobs, provenance)
    state = check_folder(dataset_dir, manifest)
    classes_per_split = {split: sum(job.split == split for job in jobs) for split in spec_lib.SPLITS}
    class_names = {i: job.name for i, job in enumerate(jobs)}
    spec_path = os.path.join(dataset_dir, spec_lib.SPEC_FILE)
    if state == "same" and is_complete(dataset_dir, manifest):
        spec = spec_lib.load_spec(spec_path)
        return WriteReport(dataset_dir, spec, already_complete=True, seconds=time.time() - start)
    os.makedirs(dataset_dir, exist_ok=True)
    _remove_stale_temporaries(dataset_dir)
    if state == "new":
        atomic.write_json(os.path.join(dataset_dir, MANIFEST_FILE), manifest)
    elif os.path.exists(spec_path):
        os.remove(spec_path)  # a class file went missing: the spec is only valid once all are back

    counts: Dict[int, int] = {}
    pending = []
    for class_id, job in enumerate(jobs):
        path = records.class_file_path(dataset_dir, class_id)
        if os.path.exists(path):
            counts[class_id] = records.count_records(path)
        else:
            pending.append((class_id, job))
    report = WriteReport(dataset_dir, spec=None, resumed=len(counts))  # type: ignore[arg-type]
    if counts:
        log.info("%s: resuming, %d of %d class files already written.", dataset_dir, len(counts), len(jobs))
    if before_load is not None and pending:
        before_load(pending)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), initial=len(counts), unit="class", desc=f"{name}", dynamic_ncols=True)
    results = _ordered_map(_call_load, [job.load for _, job in pending], workers, parallel)
    try:
        for (class_id, job), result in zip(pending, results):
            report.skipped_images.extend(result.skipped)
            for path, why in result.skipped:
                log.warning("Skipped bad image %s (class %r): %s", path, job.name, why)
            if len(result.images) < min_images_per_class:
                raise DatasetWriteError(
                    f"Dataset {name!r}: class {job.name!r} ({job.split.value}) has {len(result.images)} usable "
                    f"image(s); every class needs at least {min_images_per_class} (a support and a query "
                    "image). Remove the class or add images.")
            path = records.class_file_path(dataset_dir, class_id)
            counts[class_id] = records.write_class_file(path, result.images, class_id)
            report.written += 1
            if bar is not None:
                bar.update(1)
    finally:
        results.close()  # stops the workers at once if a class failed
        if bar is not None:
            bar.close()
    spec = spec_lib.make_flat_spec(name, os.path.abspath(dataset_dir), classes_per_split, counts, class_names)
    spec_lib.write_spec(spec, dataset_dir)
    report.spec = spec_lib.load_spec(spec_path)
    report.seconds = time.time() - start
    return report


@dataclasses.dataclass
class DatasetPlan:
    """A dataset to write: lets tools check every output folder before writing any of them."""

    dataset_dir: str
    name: str
    jobs: List[ClassJob]
    provenance: dict

    @property
    def manifest(self) -> dict:
        return make_manifest(self.name, _order_jobs(self.jobs), self.provenance)

    def state(self) -> str:
        """'new', 'partial' (an interrupted run to complete) or 'complete'; raises on a conflict."""
        manifest = self.manifest
        if check_folder(self.dataset_dir, manifest) == "new":
            return "new"
        return "complete" if is_complete(self.dataset_dir, manifest) else "partial"

    def write(self, **kwargs) -> WriteReport:
        """write_dataset(...) for this plan; kwargs: workers, parallel, progress, before_load, ..."""
        return write_dataset(self.dataset_dir, self.name, self.jobs, self.provenance, **kwargs)
