"""Writes a Meta-Dataset record set (one class file per class + ``dataset_spec.json``), resumably,
and keeps only what it has verified.

Shared by the synthetic-data generator and the converters. Guarantees:
- atomic: every class file is written under a temporary name and renamed (records.write_class_file),
  the manifest (manifest.py) is rewritten atomically after each class file, and ``dataset_spec.json``
  is written last, so an interrupted run never leaves a spec that points at missing or half-written
  files;
- verified resume: a later run with the same identity checks every existing class file (framing,
  data checksums, labels, record count against its manifest entry and the spec, and whether its
  source files changed since: sizes and modification times) and rewrites the ones that are missing,
  damaged or stale; only when all are good and the spec matches is the set "already complete";
- no mixing: a folder whose manifest has another identity, or that holds records or a spec this
  writer did not produce, is refused with an error naming the folder and what differs.
Class ids follow Meta-Dataset: contiguous, ordered TRAIN, VALID, TEST, in the order jobs are given.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import sys
import time
from concurrent import futures
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from lite_tf.data.metadataset import records
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing import check
from lite_tf.data.writing import manifest as manifest_lib
from lite_tf.data.writing.errors import DatasetWriteError
from lite_tf.data.writing.manifest import MANIFEST_FILE
from lite_tf.errors import ConfigError

MIN_IMAGES_PER_CLASS = 2  # one support and one query image at least

log = logging.getLogger(__name__)

__all__ = ["ClassImages", "ClassJob", "DatasetPlan", "DatasetWriteError", "MANIFEST_FILE", "WriteReport",
           "write_dataset"]

SpecMaker = Callable[[str, str, Dict[int, str], Dict[int, int]], spec_lib.AnySpec]


@dataclasses.dataclass
class ClassImages:
    """What loading one class produced: encoded images, the inputs skipped as bad (path, why), the
    digest of the source files as read (manifest.sources_digest; None without files) and the
    stored image sizes (width, height), if known."""

    images: List[bytes]
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    sources: Optional[str] = None
    sizes: Optional[List[check.Size]] = None


@dataclasses.dataclass(frozen=True)
class ClassJob:
    """One class to write: its name, split, a callable returning ClassImages or a list of bytes, and
    optionally a callable giving the digest of its source files as they are now (to detect a class
    file made from files that changed since).

    With a process pool ``load`` must be picklable (e.g. functools.partial of a module function).
    """

    name: str
    split: spec_lib.Split
    load: Callable[[], Union[ClassImages, Sequence[bytes]]]
    fingerprint: Optional[Callable[[], Optional[str]]] = None


@dataclasses.dataclass
class WriteReport:
    """What a write did; ``summary()`` is the text the tools print at the end, ``warnings`` go to stderr."""

    dataset_dir: str
    spec: spec_lib.DatasetSpec
    written: int = 0  # class files written in this run
    resumed: int = 0  # class files found good and kept
    already_complete: bool = False
    skipped_images: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    rewritten: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, why it was bad)
    warnings: List[str] = dataclasses.field(default_factory=list)
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
            lines.append(f"  already complete: {self.resumed} class files verified, nothing written")
        else:
            lines.append(f"  class files written {self.written}, kept from an earlier run {self.resumed} "
                         f"(verified), {self.seconds:.1f} s")
        if self.rewritten:
            path, why = self.rewritten[0]
            lines.append(f"  rewrote {len(self.rewritten)} damaged or stale file(s), e.g. {os.path.basename(path)} "
                         f"({why})")
        if self.skipped_images:
            lines.append(f"  skipped {len(self.skipped_images)} bad image(s), e.g. "
                         f"{self.skipped_images[0][0]} ({self.skipped_images[0][1]})")
        return "\n".join(lines)


# ----------------------------------------------------------------------------- folder state
def check_folder(dataset_dir: str, manifest: dict) -> Optional[dict]:
    """The folder's manifest if it holds this dataset, None if there is nothing yet; raises
    DatasetWriteError if writing there would mix datasets."""
    dataset_dir = os.fspath(dataset_dir)
    if not os.path.exists(dataset_dir):
        return None
    if not os.path.isdir(dataset_dir):
        raise DatasetWriteError(f"Output path {dataset_dir} exists and is not a folder.")
    existing = manifest_lib.read_manifest(dataset_dir)
    if existing is not None:
        old, new = manifest_lib.identity(existing), manifest_lib.identity(manifest)
        if old != new:
            raise DatasetWriteError(
                f"Refusing to mix datasets: {dataset_dir} already holds a different dataset "
                f"({manifest_lib.describe_difference(old, new)}). Use another output folder, or delete "
                "this one to replace it.")
        return existing
    foreign = sorted(e for e in os.listdir(dataset_dir)
                     if not e.startswith(".") and (e.endswith(records.FILE_SUFFIX) or e == spec_lib.SPEC_FILE))
    if foreign:
        raise DatasetWriteError(
            f"Refusing to mix datasets: {dataset_dir} already holds {foreign[0]} (and {len(foreign) - 1} "
            f"more record/spec file(s)) not written by lite_tf. Use another output folder.")
    return None


def _remove_stale_temporaries(dataset_dir: str) -> None:
    """Temporary files of a run that was killed before it could clean up (records/spec/manifest)."""
    for entry in os.listdir(dataset_dir):
        if entry.startswith(".tmp-"):
            os.remove(os.path.join(dataset_dir, entry))


@dataclasses.dataclass
class _Assessment:
    """Which class files can be kept (verified) and which must be (re)written, and why."""

    kept: Dict[int, int]  # class id -> record count
    sizes: Dict[int, List[check.Size]]
    pending: List[int]
    bad: List[Tuple[int, str]]  # (class id, problem) of files that exist but cannot be kept
    upgraded: Dict[int, int]  # kept files verified against the spec only (no manifest entry yet)


def _spec_counts(dataset_dir: str, jobs: Sequence[ClassJob]) -> Dict[int, int]:
    """Per-class counts of the folder's spec, if it has one naming the same classes."""
    spec, _ = check.load_spec_or_problem(dataset_dir)
    if spec is None or [spec.class_names.get(i) for i in range(len(jobs))] != [j.name for j in jobs] \
            or sum(spec.classes_per_split.values()) != len(jobs):
        return {}
    return dict(spec.images_per_class)


def _assess(dataset_dir: str, jobs: Sequence[ClassJob], existing: Optional[dict], measure: bool) -> _Assessment:
    result = _Assessment({}, {}, [], [], {})
    if existing is None:
        result.pending = list(range(len(jobs)))
        return result
    spec_counts = _spec_counts(dataset_dir, jobs)
    for class_id, job in enumerate(jobs):
        path = records.class_file_path(dataset_dir, class_id)
        entry = manifest_lib.class_entry(existing, class_id)
        if not os.path.exists(path):
            result.pending.append(class_id)
            if entry is not None or spec_counts:
                result.bad.append((class_id, "is missing"))
            continue
        problem = None
        # The manifest entry is written after its class file, so it is the authority; the spec, written
        # last, only vouches for files of a set without entries (an older lite_tf) and is rewritten
        # below whenever it does not match the files.
        expected = entry["records"] if entry is not None else spec_counts.get(class_id)
        if expected is None:
            problem = "has no manifest entry (written by a run that was interrupted)"
        elif entry is not None and entry.get("sources") is not None and job.fingerprint is not None \
                and job.fingerprint() != entry["sources"]:
            problem = "is stale: its source files changed since it was written (size or modification time)"
        scan = None
        if problem is None:
            problem, scan = check.check_class_file(path, class_id, expected, measure)
        if problem is not None:
            result.pending.append(class_id)
            result.bad.append((class_id, problem))
            continue
        result.kept[class_id] = scan.records
        if scan.sizes is not None:
            result.sizes[class_id] = scan.sizes
        if entry is None:
            result.upgraded[class_id] = scan.records
    return result


def _spec_json_without_path(spec: spec_lib.AnySpec) -> dict:
    data = spec.to_json_dict()
    data.pop("path", None)
    return data


def _flat_spec(name: str, path: str, class_names: Dict[int, str], counts: Dict[int, int],
               classes_per_split: Dict[spec_lib.Split, int]) -> spec_lib.DatasetSpec:
    return spec_lib.make_flat_spec(name, path, classes_per_split, counts, class_names)


def _small_image_warning(name: str, sizes: Iterable[check.Size], target_size: int) -> Optional[str]:
    sizes = list(sizes)
    small = [s for s in sizes if min(s) < target_size]
    if not small:
        return None
    smallest = min(small, key=lambda s: (min(s), s))
    return (f"Dataset {name!r}: {len(small)} of {len(sizes)} images are smaller than the target size "
            f"{target_size} px (smallest {smallest[0]}x{smallest[1]} px); training upsamples them.")


def _measured(result: "ClassImages") -> List[check.Size]:
    if result.sizes is not None:
        return list(result.sizes)
    return [check.image_size(data) for data in result.images]


# ----------------------------------------------------------------------------- execution
def _ordered_map(fn: Callable, items: Sequence, workers: int, parallel: str) -> Iterator:
    """fn over items, results in order, at most 2 * workers computed ahead (bounded memory)."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    if parallel not in ("thread", "process"):
        raise ConfigError(f"parallel must be 'thread' or 'process'; got {parallel!r}.")
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
                  before_load: Optional[Callable[[List[Tuple[int, ClassJob]]], None]] = None,
                  make_spec: Optional[SpecMaker] = None, target_size: Optional[int] = None) -> WriteReport:
    """Writes, completes or repairs a Meta-Dataset record set in ``dataset_dir``.

    jobs: the classes, each with its split; ids are assigned TRAIN, VALID, TEST in the given order.
    provenance: JSON-able description of the input and options (sizes, seed, source folder,
      hierarchy...) recorded in the manifest; a folder written with a different one is refused.
    workers / parallel: load classes concurrently in threads or (fork) processes.
    before_load: called with the (class id, job) pairs still to write, before any is loaded (lets a
      converter read its input once for exactly those classes).
    make_spec: (name, path, class_names, images_per_class) -> spec, for two-level and hierarchical
      sets (hierarchy.py); default: a flat spec.
    target_size: the image size training will use; a one-line warning (``report.warnings``) counts
      the images smaller than it on a side.
    Raises DatasetWriteError (folder conflicts, a class with too few images); errors raised by a
    job's ``load`` propagate unchanged after the classes written so far are kept for a resume.
    """
    start = time.time()
    dataset_dir = os.fspath(dataset_dir)
    jobs = _order_jobs(jobs)
    if not jobs:
        raise DatasetWriteError(f"Dataset {name!r}: no classes to write to {dataset_dir}.")
    new_manifest = manifest_lib.make_manifest(name, [(job.name, job.split) for job in jobs], provenance)
    existing = check_folder(dataset_dir, new_manifest)
    measure = target_size is not None
    assessment = _assess(dataset_dir, jobs, existing, measure)
    class_names = {i: job.name for i, job in enumerate(jobs)}
    classes_per_split = {split: sum(job.split == split for job in jobs) for split in spec_lib.SPLITS}
    spec_path = os.path.join(dataset_dir, spec_lib.SPEC_FILE)

    def build_spec(counts):
        path = os.path.abspath(dataset_dir)
        if make_spec is None:
            return _flat_spec(name, path, class_names, counts, classes_per_split)
        return make_spec(name, path, class_names, counts)

    report = WriteReport(dataset_dir, spec=None, resumed=len(assessment.kept))  # type: ignore[arg-type]
    for class_id, why in assessment.bad:
        path = records.class_file_path(dataset_dir, class_id)
        report.rewritten.append((path, why))
        log.warning("%s %s (class %r); rewriting it.", path, why, jobs[class_id].name)
    sizes = dict(assessment.sizes)
    if not assessment.pending:
        spec = build_spec(dict(assessment.kept))
        current, _ = check.load_spec_or_problem(dataset_dir)
        if current is not None and _spec_json_without_path(current) == _spec_json_without_path(spec):
            if assessment.upgraded:  # a set from an older lite_tf: record the verified counts
                for class_id, count in assessment.upgraded.items():
                    manifest_lib.set_class_entry(existing, class_id, count, None, 0)
                existing["format"] = manifest_lib.MANIFEST_FORMAT
                manifest_lib.write_manifest(dataset_dir, existing)
            report.spec, report.already_complete = current, True
            _finish(report, name, sizes, target_size, start)
            return report
        report.rewritten.append((spec_path, "is missing or does not match the class files"))

    os.makedirs(dataset_dir, exist_ok=True)
    _remove_stale_temporaries(dataset_dir)
    manifest = existing if existing is not None else new_manifest
    manifest["format"] = manifest_lib.MANIFEST_FORMAT
    for class_id in assessment.pending:
        manifest.get("written", {}).pop(str(class_id), None)
    for class_id, count in assessment.upgraded.items():
        manifest_lib.set_class_entry(manifest, class_id, count, None, 0)
    if os.path.exists(spec_path):
        os.remove(spec_path)  # the spec is only valid once every class file is good again
    manifest_lib.write_manifest(dataset_dir, manifest)

    counts: Dict[int, int] = dict(assessment.kept)
    pending = [(class_id, jobs[class_id]) for class_id in assessment.pending]
    if counts and pending:
        log.info("%s: resuming, %d of %d class files verified and kept.", dataset_dir, len(counts), len(jobs))
    if before_load is not None and pending:
        before_load(pending)

    bar = None
    if progress and pending:
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
            manifest_lib.set_class_entry(manifest, class_id, counts[class_id], result.sources, len(result.skipped))
            manifest_lib.write_manifest(dataset_dir, manifest)
            if measure:
                sizes[class_id] = _measured(result)
            report.written += 1
            if bar is not None:
                bar.update(1)
    finally:
        results.close()  # stops the workers at once if a class failed
        if bar is not None:
            bar.close()
    spec_lib.write_spec(build_spec(counts), dataset_dir)
    report.spec = spec_lib.load_spec(spec_path)
    _finish(report, name, sizes, target_size, start)
    return report


def _finish(report: WriteReport, name: str, sizes: Dict[int, List[check.Size]], target_size: Optional[int],
            start: float) -> None:
    if target_size is not None:
        warning = _small_image_warning(name, (s for c in sorted(sizes) for s in sizes[c]), target_size)
        if warning:
            report.warnings.append(warning)
            log.warning(warning)
    report.seconds = time.time() - start


def verify_dataset(dataset_dir: str, name: str, jobs: Iterable[ClassJob], provenance: dict,
                   make_spec: Optional[SpecMaker] = None) -> check.VerifyReport:
    """What a rerun of :func:`write_dataset` would find, without writing anything: every class file
    that is missing, damaged or stale, and a spec that is missing or does not match."""
    dataset_dir = os.fspath(dataset_dir)
    jobs = _order_jobs(jobs)
    new_manifest = manifest_lib.make_manifest(name, [(job.name, job.split) for job in jobs], provenance)
    existing = check_folder(dataset_dir, new_manifest)
    report = check.VerifyReport(dataset_dir, [])
    if existing is None:
        report.problems.append((dataset_dir, "holds no record set written by lite_tf (nothing to verify)"))
        return report
    assessment = _assess(dataset_dir, jobs, existing, measure=False)
    for class_id, why in assessment.bad:
        report.problems.append((records.class_file_path(dataset_dir, class_id), why))
    for class_id in assessment.pending:
        if all(class_id != bad for bad, _ in assessment.bad):
            report.problems.append((records.class_file_path(dataset_dir, class_id), "is missing"))
    spec, why = check.load_spec_or_problem(dataset_dir)
    spec_path = os.path.join(dataset_dir, spec_lib.SPEC_FILE)
    if spec is None:
        report.problems.append((spec_path, why))
    elif not assessment.pending:
        class_names = {i: job.name for i, job in enumerate(jobs)}
        classes_per_split = {split: sum(job.split == split for job in jobs) for split in spec_lib.SPLITS}
        path = os.path.abspath(dataset_dir)
        expected = (make_spec(name, path, class_names, assessment.kept) if make_spec is not None
                    else _flat_spec(name, path, class_names, assessment.kept, classes_per_split))
        if _spec_json_without_path(spec) != _spec_json_without_path(expected):
            report.problems.append((spec_path, "does not match the class files"))
    report.classes = len(assessment.kept)
    report.records = sum(assessment.kept.values())
    return report


@dataclasses.dataclass
class DatasetPlan:
    """A dataset to write: lets tools check every output folder before writing any of them."""

    dataset_dir: str
    name: str
    jobs: List[ClassJob]
    provenance: dict
    make_spec: Optional[SpecMaker] = None

    @property
    def manifest(self) -> dict:
        jobs = _order_jobs(self.jobs)
        return manifest_lib.make_manifest(self.name, [(job.name, job.split) for job in jobs], self.provenance)

    def state(self) -> str:
        """'new', 'partial' (files to write or repair) or 'complete' (all verified); raises on a conflict.

        Verifies every existing class file (a full read)."""
        if check_folder(self.dataset_dir, self.manifest) is None:
            return "new"
        return "complete" if self.verify().ok else "partial"

    def verify(self) -> check.VerifyReport:
        return verify_dataset(self.dataset_dir, self.name, self.jobs, self.provenance, self.make_spec)

    def write(self, **kwargs) -> WriteReport:
        """write_dataset(...) for this plan; kwargs: workers, parallel, progress, before_load, target_size..."""
        return write_dataset(self.dataset_dir, self.name, self.jobs, self.provenance, make_spec=self.make_spec,
                             **kwargs)
