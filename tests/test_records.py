"""Record files: round trip with TensorFlow's reader, index, atomic write, truncation and corruption errors."""
import os

import numpy as np
import pytest
import tensorflow as tf

from lite_tf.data.metadataset import records


def _write(tmp_path, n=5, label=3):
    path = records.class_file_path(str(tmp_path), label)
    payloads = [bytes([i]) * (10 + 7 * i) for i in range(n)]
    assert records.write_class_file(path, payloads, label) == n
    return path, payloads


def test_class_file_path():
    assert records.class_file_path("/r/aircraft", 7) == "/r/aircraft/7.tfrecords"


def test_round_trip_with_tensorflow_reader(tmp_path):
    path, payloads = _write(tmp_path)
    assert os.listdir(tmp_path) == ["3.tfrecords"]  # no temporary file left behind
    parsed = [records.parse_example(s) for s in tf.data.TFRecordDataset(path)]
    assert [p[0].numpy() for p in parsed] == payloads
    assert all(int(p[1]) == 3 and p[1].dtype == tf.int64 for p in parsed)
    assert records.count_records(path) == 5
    assert records.count_records(path, verify_checksums=True) == 5


def test_examples_written_by_plain_tensorflow_are_read(tmp_path):
    # What Meta-Dataset's converter writes: a plain TFRecordWriter with image/label features.
    path = str(tmp_path / "0.tfrecords")
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(3):
            example = tf.train.Example(features=tf.train.Features(feature={
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"img%d" % i])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[0])),
            }))
            writer.write(example.SerializeToString())
    offsets, lengths = records.record_index(path)
    raw = records.read_records(path, offsets[::-1], lengths[::-1])
    images, labels = records.parse_examples(tf.constant(raw))
    assert list(images.numpy()) == [b"img2", b"img1", b"img0"]
    assert list(labels.numpy()) == [0, 0, 0]


def test_index_matches_reader(tmp_path):
    path, payloads = _write(tmp_path, n=7)
    offsets, lengths = records.record_index(path)
    raw = records.read_records(path, offsets, lengths)
    assert raw == [r.numpy() for r in tf.data.TFRecordDataset(path)]
    assert np.all(np.diff(offsets) > 0)


def test_truncated_file_is_named(tmp_path):
    path, _ = _write(tmp_path)
    size = os.path.getsize(path)
    with open(path, "rb+") as f:
        f.truncate(size - 3)
    with pytest.raises(records.RecordFileError, match=r"3\.tfrecords is truncated: record 4"):
        records.count_records(path)


def test_garbage_file_is_named(tmp_path):
    path = str(tmp_path / "1.tfrecords")
    with open(path, "wb") as f:
        f.write(b"this is not a tfrecord file at all" * 3)
    with pytest.raises(records.RecordFileError, match=r"1\.tfrecords is corrupt"):
        records.count_records(path)


def test_corrupt_data_found_by_checksum(tmp_path):
    path, _ = _write(tmp_path)
    with open(path, "rb+") as f:
        f.seek(20)
        f.write(b"\x00\xff\x00")
    assert records.count_records(path) == 5  # headers are intact
    with pytest.raises(records.RecordFileError, match="corrupt"):
        records.count_records(path, verify_checksums=True)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(records.RecordFileError, match="does not exist"):
        records.count_records(str(tmp_path / "9.tfrecords"))
    empty = str(tmp_path / "8.tfrecords")
    assert records.write_class_file(empty, [], 8) == 0
    assert records.count_records(empty) == 0


def test_masked_crc_known_value():
    # CRC-32C check value from RFC 3720: crc32c(b"123456789") == 0xE3069283.
    assert records._crc32c(b"123456789") == 0xE3069283
