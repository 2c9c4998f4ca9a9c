"""Meta-Dataset record files: one TFRecord file per class, one ``tf.train.Example`` per image.

Layout: ``<records_root>/<dataset>/<class_id>.tfrecords``; each example holds ``image`` (the encoded
image bytes, usually JPEG) and ``label`` (int64, the absolute class id). This is the layout Google's
Meta-Dataset tools write and read, so files move freely between them and this project.

Besides writing and parsing, this module indexes a class file (the byte offset and length of every
record) by reading only the 12-byte record headers. The pipeline then reads exactly the records an
episode needs with ``os.pread`` instead of streaming every class file through a shuffle buffer.

TFRecord framing (per record): uint64 length, uint32 masked CRC-32C of the length, the data,
uint32 masked CRC-32C of the data; all little-endian.

Bad input: a truncated file (a header or body that runs past the end of the file) or a record whose
length checksum does not match raises :class:`RecordFileError` naming the file, the record number and
the byte offset. Data checksums are only checked on request (``verify_checksums=True``, which streams
the file through TensorFlow's own reader) because that costs a full read.
"""
from __future__ import annotations

import mmap
import os
import struct
from typing import Iterable, List, Sequence, Tuple

import numpy as np

from lite_tf import atomic
from lite_tf.errors import DataError, WrongTypeError

FILE_SUFFIX = ".tfrecords"
_HEADER_BYTES = 12  # uint64 length + uint32 masked crc of the length
_FOOTER_BYTES = 4  # uint32 masked crc of the data


class RecordFileError(DataError):
    """A record file that is missing, truncated or corrupt; the message names the file."""


def class_file_path(dataset_dir: str, class_id: int) -> str:
    """``<dataset_dir>/<class_id>.tfrecords``, the Meta-Dataset file for one class."""
    return os.path.join(os.fspath(dataset_dir), f"{int(class_id)}{FILE_SUFFIX}")


def serialize_example(image_bytes: bytes, label: int) -> bytes:
    """A serialized ``tf.train.Example`` with features ``image`` (bytes) and ``label`` (int64)."""
    import tensorflow as tf

    if not isinstance(image_bytes, (bytes, bytearray)):
        raise WrongTypeError(f"image_bytes must be encoded image bytes, got {type(image_bytes).__name__}.")
    example = tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[bytes(image_bytes)])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }))
    return example.SerializeToString()


def write_class_file(path: str, encoded_images: Iterable[bytes], label: int) -> int:
    """Writes one class file atomically and returns the number of records.

    The records go to a temporary name in the same folder, are flushed to disk, and the file is then
    renamed over ``path``, so a reader never sees a half-written class file.
    """
    import tensorflow as tf

    count = 0
    with atomic.atomic_path(path) as temporary:
        with tf.io.TFRecordWriter(temporary) as writer:
            for image_bytes in encoded_images:
                writer.write(serialize_example(image_bytes, label))
                count += 1
    return count


def feature_spec() -> dict:
    import tensorflow as tf

    return {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }


def parse_example(serialized):
    """(image bytes, label) tensors from one serialized example (a scalar string tensor)."""
    import tensorflow as tf

    features = tf.io.parse_single_example(serialized, feature_spec())
    return features["image"], features["label"]


def parse_examples(serialized):
    """(image bytes [K], label [K]) from a vector of serialized examples, parsed in one op."""
    import tensorflow as tf

    features = tf.io.parse_example(serialized, feature_spec())
    return features["image"], features["label"]


# CRC-32C (Castagnoli), only used on the 8-byte length fields, so a table in Python is fast enough.
def _crc32c_table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The checksum TFRecord stores: CRC-32C rotated right by 15 bits plus a constant."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record_index(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Byte offsets (of the data, after the header) and lengths of every record in a TFRecord file.

    Reads only the headers. Raises :class:`RecordFileError` if the file is missing, truncated or has
    a corrupt length field.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        f = open(path, "rb")
    except FileNotFoundError:
        raise RecordFileError(f"Record file {path} does not exist.") from None
    offsets, lengths = [], []
    if size == 0:
        f.close()
        return np.zeros([0], np.int64), np.zeros([0], np.int64)
    # mmap: headers are read without a system call each; only the pages holding headers are touched.
    with f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
        position = 0
        while position < size:
            number = len(offsets)
            header = view[position:position + _HEADER_BYTES]
            if len(header) < _HEADER_BYTES:
                raise RecordFileError(
                    f"Record file {path} is truncated: record {number} at byte {position} has an "
                    f"incomplete header ({len(header)} of {_HEADER_BYTES} bytes; file size {size})."
                )
            length_bytes = header[:8]
            if masked_crc32c(length_bytes) != struct.unpack("<I", header[8:])[0]:
                raise RecordFileError(
                    f"Record file {path} is corrupt: record {number} at byte {position} has a length "
                    "field whose checksum does not match (not a TFRecord file, or damaged)."
                )
            length = struct.unpack("<Q", length_bytes)[0]
            end = position + _HEADER_BYTES + length + _FOOTER_BYTES
            if end > size:
                raise RecordFileError(
                    f"Record file {path} is truncated: record {number} at byte {position} needs "
                    f"{length} data bytes and ends at byte {end}, but the file has {size} bytes."
                )
            offsets.append(position + _HEADER_BYTES)
            lengths.append(length)
            position = end
    return np.asarray(offsets, dtype=np.int64), np.asarray(lengths, dtype=np.int64)


def count_records(path: str, verify_checksums: bool = False) -> int:
    """Number of records in a TFRecord file; raises :class:`RecordFileError` naming a bad file.

    With ``verify_checksums`` the file is also read through TensorFlow's reader, which checks the
    data checksum of every record (a full read of the file).
    """
    offsets, _ = record_index(path)
    if verify_checksums:
        import tensorflow as tf

        try:
            for _ in tf.data.TFRecordDataset(path):
                pass
        except tf.errors.DataLossError as error:
            raise RecordFileError(f"Record file {path} is corrupt: {error.message}") from None
    return int(len(offsets))


def read_records(path: str, offsets: Sequence[int], lengths: Sequence[int]) -> List[bytes]:
    """The raw record bytes at the given offsets (from :func:`record_index`), one open file."""
    fd = os.open(os.fspath(path), os.O_RDONLY)
    try:
        out = []
        for offset, length in zip(offsets, lengths):
            data = os.pread(fd, int(length), int(offset))
            if len(data) != int(length):
                raise RecordFileError(
                    f"Record file {path} is truncated: wanted {int(length)} bytes at byte {int(offset)}, "
                    f"got {len(data)} (was the file changed after it was indexed?)."
                )
            out.append(data)
        return out
    finally:
        os.close(fd)
