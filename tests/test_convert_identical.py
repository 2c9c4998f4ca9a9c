"""Identical inputs give identical files: two conversions of one folder, in two processes, are byte-identical.

Protobuf orders a ``tf.train.Example``'s feature map by a hash seeded per process, so the same
record could be serialized two ways; the spec stored the absolute output folder. Both are checked
here across processes (within one process the hash order never changes).
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.convert_helpers import make_folder
from tests.launch_helpers import REPOSITORY, launcher_env


def _canonical_example(image: bytes, label: int) -> bytes:
    """The wire bytes of Example{features{feature: {"image": ..., "label": ...}}}, keys in sorted order."""
    def varint(n):
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    def field(number, payload):  # length-delimited
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    image_feature = field(1, field(1, image))  # Feature.bytes_list{value}
    label_feature = field(3, field(1, varint(label)))  # Feature.int64_list{value: packed}
    entries = field(1, field(1, b"image") + field(2, image_feature)) + \
        field(1, field(1, b"label") + field(2, label_feature))
    return field(1, entries)


def _records(path):
    """Raw record payloads of a TFRecord file (framing read by hand: no TensorFlow needed)."""
    data, out, at = open(path, "rb").read(), [], 0
    while at < len(data):
        length = int.from_bytes(data[at:at + 8], "little")
        out.append(data[at + 12:at + 12 + length])
        at += 12 + length + 4
    return out


def test_records_are_canonical_and_the_spec_stores_no_absolute_path(tmp_path):
    """In-process (cheap): catches the per-process order whenever this process's hash is not sorted."""
    import tensorflow as tf

    from lite_tf.data.writing import convert

    make_folder(str(tmp_path / "birds"), classes=[f"c{i}" for i in range(4)], per_class=2)
    convert.convert_image_folder(str(tmp_path / "birds"), str(tmp_path / "out"), split_fractions=(0.5, 0.25, 0.25),
                                 progress=False)
    assert json.load(open(tmp_path / "out" / "birds" / "dataset_spec.json"))["path"] == "."
    for class_id in range(4):
        payloads = _records(tmp_path / "out" / "birds" / f"{class_id}.tfrecords")
        assert len(payloads) == 2
        for payload in payloads:
            image = tf.train.Example.FromString(payload).features.feature["image"].bytes_list.value[0]
            assert payload == _canonical_example(image, class_id)


@pytest.mark.slow  # two converter processes: ~25 s on the shared 2-core VM
def test_two_conversions_in_two_processes_are_byte_identical(tmp_path):
    make_folder(str(tmp_path / "birds"), classes=[f"c{i}" for i in range(8)], per_class=3)
    outputs = [tmp_path / "a", tmp_path / "b"]
    processes = [subprocess.Popen([sys.executable, "-m", "lite_tf.tools.convert", f"--image_folder={tmp_path / 'birds'}",
                                   f"--output_dir={out}", "--progress=false", "--workers=1"],
                                  cwd=REPOSITORY, env=launcher_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for out in outputs]
    for process in processes:
        assert process.wait(timeout=300) == 0, process.stdout.read()

    def digests(root):
        return {name: hashlib.sha256(open(root / "birds" / name, "rb").read()).hexdigest()
                for name in sorted(os.listdir(root / "birds")) if name != "lite_tf_manifest.json"}

    first, second = digests(outputs[0]), digests(outputs[1])
    assert len(first) == 9 and first == second  # 8 class files and the spec
    spec = json.load(open(outputs[0] / "birds" / "dataset_spec.json"))
    assert spec["path"] == "."  # no absolute path: readers use the folder the spec is in
    import tensorflow as tf

    for out in outputs:  # every record in the canonical (sorted-key) layout, whatever the process's hash
        for class_id in range(8):
            for payload in _records(out / "birds" / f"{class_id}.tfrecords"):
                image = tf.train.Example.FromString(payload).features.feature["image"].bytes_list.value[0]
                assert payload == _canonical_example(image, class_id)
    # the manifest differs only if the input moved: same folder, same flags -> the same manifest too
    assert open(outputs[0] / "birds" / "lite_tf_manifest.json").read() == \
        open(outputs[1] / "birds" / "lite_tf_manifest.json").read()
