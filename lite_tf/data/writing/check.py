"""Verification of class files: what the writer runs on every existing class file before keeping it,
and what ``lite_tf_convert --verify`` runs on a finished set.

A class file is good when its TFRecord framing is intact (no truncated record), every record's data
checksum matches (a full read through TensorFlow's reader), every record is an Example whose
``label`` is the class id, and its record count is the expected one (the manifest's, and the spec's).
"""
from __future__ import annotations

import dataclasses
import io
import os
from typing import List, Optional, Tuple

from lite_tf.data.metadataset import records
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing.errors import DatasetWriteError
from lite_tf.faults import clean_tf_message

Size = Tuple[int, int]  # (width, height)


@dataclasses.dataclass
class ClassScan:
    """What reading a class file found: its record count, and the image sizes if asked for."""

    records: int
    sizes: Optional[List[Size]] = None


class ClassFileProblem(Exception):
    """Internal: why a class file is not good (the message is a phrase, the caller names the file)."""


def image_size(data: bytes) -> Size:
    """(width, height) of encoded image bytes, from the header alone."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            return image.size
    except Exception:  # noqa: BLE001 - any undecodable header is reported as such
        raise ClassFileProblem("holds a record whose image cannot be read") from None


def scan_class_file(path: str, class_id: int, measure_sizes: bool = False) -> ClassScan:
    """Reads a class file completely; raises ClassFileProblem saying what is wrong."""
    import tensorflow as tf

    if not os.path.exists(path):
        raise ClassFileProblem("is missing")
    try:
        offsets, _ = records.record_index(path)  # precise messages for a truncated file
    except records.RecordFileError as error:
        raise ClassFileProblem(str(error).replace(f"Record file {path} ", "")) from None
    count, sizes = 0, [] if measure_sizes else None
    try:
        for batch in tf.data.TFRecordDataset(path).batch(256):
            image, label = records.parse_examples(batch)
            bad = [(count + i, int(v)) for i, v in enumerate(label.numpy()) if int(v) != class_id]
            if bad:
                raise ClassFileProblem(f"has label {bad[0][1]} in record {bad[0][0]}, expected {class_id}")
            if sizes is not None:
                sizes.extend(image_size(data) for data in image.numpy())
            count += int(label.shape[0])
    except tf.errors.DataLossError as error:
        raise ClassFileProblem(f"is corrupt (a record checksum does not match): {clean_tf_message(error.message)}") from None
    except tf.errors.InvalidArgumentError as error:
        raise ClassFileProblem(f"holds a record that is not an image Example: {clean_tf_message(error.message)}") from None
    if count != len(offsets):
        raise ClassFileProblem(f"has {len(offsets)} record headers but {count} readable records")
    return ClassScan(count, sizes)


def check_class_file(path: str, class_id: int, expected: Optional[int], measure_sizes: bool = False
                     ) -> Tuple[Optional[str], Optional[ClassScan]]:
    """(None, scan) for a good file, else (the problem, None); ``expected``: the record count it must have."""
    try:
        scan = scan_class_file(path, class_id, measure_sizes)
    except ClassFileProblem as problem:
        return str(problem), None
    if expected is not None and scan.records != expected:
        return f"holds {scan.records} records, expected {expected}", None
    return None, scan


def load_spec_or_problem(dataset_dir: str) -> Tuple[Optional[spec_lib.AnySpec], Optional[str]]:
    """The folder's spec, or (None, why it cannot be used)."""
    path = os.path.join(os.fspath(dataset_dir), spec_lib.SPEC_FILE)
    if not os.path.exists(path):
        return None, "is missing"
    try:
        return spec_lib.load_spec(path), None
    except (spec_lib.SpecError, OSError, ValueError) as error:
        return None, f"cannot be read: {error}"


@dataclasses.dataclass
class VerifyReport:
    """--verify's findings for one folder: (file, problem) pairs; empty when the set is good."""

    dataset_dir: str
    problems: List[Tuple[str, str]]
    classes: int = 0
    records: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> List[str]:
        if self.ok:
            return [f"{self.dataset_dir}: OK, {self.classes} class files, {self.records} records verified."]
        out = [f"{path}: {problem}" for path, problem in self.problems]
        out.append(f"{self.dataset_dir}: {len(self.problems)} problem(s) found; rerun the converter to rewrite "
                   "the bad class files.")
        return out


def verify_records(dataset_dir: str) -> VerifyReport:
    """Checks a finished set against its own spec (no input needed); writes nothing."""
    dataset_dir = os.fspath(dataset_dir)
    if not os.path.isdir(dataset_dir):
        raise DatasetWriteError(f"Cannot verify {dataset_dir}: no such folder.")
    spec, why = load_spec_or_problem(dataset_dir)
    report = VerifyReport(dataset_dir, [])
    if spec is None:
        report.problems.append((os.path.join(dataset_dir, spec_lib.SPEC_FILE), why))
        return report
    for class_id in range(sum(spec.classes_per_split.values())):
        path = spec.class_file(class_id)
        problem, scan = check_class_file(path, class_id, spec.images_per_class[class_id])
        if problem:
            report.problems.append((path, problem))
        else:
            report.classes += 1
            report.records += scan.records
    return report
