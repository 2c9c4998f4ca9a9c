"""VTAB tasks read from data dirs that TFDS's own builders prepared (synthetic examples, nothing
patched at read time): on-disk format, split slicing, label functions, the evaluation command in a
subprocess, and the missing-dataset error."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lite_tf.data import vtab
from lite_tf.errors import DataError
from tests import tfds_prepared, vtab_mock

KITTI_DEPTHS = (3.0, 12.0, 40.0)   # the closest vehicle's depth: label 0, 1, 2 (3: no vehicle)


def _cifar(split, index, rng):
    return {"label": index % 100, "id": f"{split}-{index}"}


def _retina(split, index, rng):
    return {"label": index % 5, "name": f"{split}-{index}"}


def _sprite(split, index, rng):
    # pixels stored 0/1 as in the real dSprites; value_scale carries the index (exact in float32)
    return {"image": rng.integers(0, 2, (64, 64, 1)).astype(np.uint8), "label_x_position": (7 * index) % 32,
            "label_orientation": (11 * index) % 40, "value_scale": float(index)}


def _kitti(split, index, rng):
    kind = index % 4
    vehicle = {"type": 1, "location": np.array([0.0, 0.0, KITTI_DEPTHS[kind % 3]], np.float32)}
    pedestrian = {"type": 4, "location": np.array([0.0, 0.0, 1.0], np.float32)}  # nearer, but no vehicle
    other = {"alpha": 0.0, "bbox": tfds.features.BBox(0.1, 0.2, 0.6, 0.7), "dimensions": np.ones(3, np.float32),
             "occluded": 0, "rotation_y": 0.0, "truncated": 0.0}
    objects = [dict(other, **vehicle), dict(other, **pedestrian)] if kind < 3 else [dict(other, **pedestrian)]
    return {"objects": objects, "image/file_name": f"{split}-{index}"}


CLEVR_DEPTHS = (7.0, 8.2, 8.7, 9.2, 9.7, 12.0)   # the closest object's depth: distance label 0..5


def _clevr(split, index, rng):
    count = 3 + index % 8   # count label index % 8
    depths = np.full(count, 20.0, np.float32)
    depths[index % count] = CLEVR_DEPTHS[index % 6]
    objects = [{"3d_coords": np.zeros(3, np.float32), "color": 0, "material": 0, "rotation": 0.0, "shape": 0,
                "size": 0, "pixel_coords": np.array([0.0, 0.0, depth], np.float32)} for depth in depths]
    return {"objects": objects, "file_name": f"{split}-{index}"}


def _norb(split, index, rng):
    # image2's first pixels carry the split and index (PNG is lossless)
    marker = np.zeros((96, 96, 1), np.uint8)
    marker[0, :3, 0] = [split == "test", index % 256, index // 256]
    return {"label_azimuth": index % 18, "label_elevation": index % 9, "image2": marker}


def _norb_id(example):
    flag, low, high = example["image2"][0, :3, 0]
    return f"{'test' if flag else 'train'}-{int(low) + 256 * int(high)}"


# dataset -> (split sizes: the smallest that give VTAB-1k its 1000 support images, example maker,
#             the id a raw example carries, the label its maker meant for each VTAB task)
DATASETS = {
    "cifar100": ({"train": 2000, "test": 20}, _cifar, lambda e: e["id"].decode(),
                 {"cifar100": lambda split, i: i % 100}),
    "dsprites": ({"train": 1000}, _sprite, lambda e: f"train-{int(e['value_scale'])}",
                 {"dsprites_location": lambda split, i: (7 * i) % 32 // 2,
                  "dsprites_orientation": lambda split, i: (11 * i) % 40 * 16 // 40}),
    "diabetic_retinopathy_detection/btgraham-300": (
        {"train": 800, "validation": 200, "test": 20}, _retina, lambda e: e["name"].decode(),
        {"diabetic_retinopathy": lambda split, i: i % 5}),
    "kitti": ({"train": 800, "validation": 200, "test": 16}, _kitti, lambda e: e["image/file_name"].decode(),
              {"kitti_distance": lambda split, i: i % 4}),
    "clevr": ({"train": 2000, "validation": 10, "test": 5}, _clevr, lambda e: e["file_name"].decode(),
              {"clevr_count": lambda split, i: i % 8, "clevr_distance": lambda split, i: i % 6}),
    "smallnorb": ({"train": 1000, "test": 400}, _norb, _norb_id,
                  {"smallnorb_azimuth": lambda split, i: i % 18, "smallnorb_elevation": lambda split, i: i % 9}),
}
TASKS = {task: dataset for dataset, (*_, labels) in DATASETS.items() for task in labels}
# test images per task: the test split; dSprites train[80% + 10%:]; CLEVR validation; smallNORB test[50%:]
TEST_IMAGES = {"cifar100": 20, "dsprites_location": 100, "dsprites_orientation": 100, "diabetic_retinopathy": 20,
               "kitti_distance": 16, "clevr_count": 10, "clevr_distance": 10, "smallnorb_azimuth": 200,
               "smallnorb_elevation": 200}
# where the 1000 support images come from (train800 + val200 of each task's cut)
SUPPORT_SPLITS = {"diabetic_retinopathy": {"train": 800, "validation": 200},
                  "kitti_distance": {"train": 800, "validation": 200},
                  "smallnorb_azimuth": {"train": 800, "test": 200}, "smallnorb_elevation": {"train": 800, "test": 200}}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tfds"))
    for dataset, (sizes, make, _, _) in DATASETS.items():
        tfds_prepared.prepare(root, dataset, sizes, make)
    return root


def test_the_data_dir_is_the_tfds_on_disk_format_and_read_unpatched(data_dir):
    for dataset, (sizes, *_) in DATASETS.items():
        builder = tfds.builder(dataset, data_dir=data_dir)
        files = tfds_prepared.prepared_files(builder)
        assert {"dataset_info.json", "features.json"} <= set(files), dataset
        name = dataset.split("/")[0]
        assert {f"{name}-{split}.tfrecord-00000-of-00001" for split in sizes} <= set(files), dataset
        with open(os.path.join(builder.data_dir, "dataset_info.json")) as handle:
            info = json.load(handle)
        assert {s["name"]: int(s["shardLengths"][0]) for s in info["splits"]} == sizes, dataset
        assert {split: builder.info.splits[split].num_examples for split in sizes} == sizes
        for split, count in sizes.items():  # the shards themselves hold the examples
            shard = os.path.join(builder.data_dir, f"{name}-{split}.tfrecord-00000-of-00001")
            assert sum(1 for _ in tf.data.TFRecordDataset(shard)) == count, (dataset, split)
    # reading is TFDS's own (tfds.testing.mock_data would have replaced it)
    assert tfds.core.DatasetBuilder._as_dataset.__module__ == "tensorflow_datasets.core.dataset_builder"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_open_task_slices_the_splits_and_labels_the_written_fields(data_dir, name):
    dataset = TASKS[name]
    sizes, _, example_id, labels = DATASETS[dataset]
    task = vtab.open_task(name, data_dir, 64)
    assert (task.num_support, task.num_queries) == (1000, TEST_IMAGES[name])
    images, support_labels = next(iter(task.support()))
    assert images.shape == (1000, 64, 64, 3) and images.dtype == np.uint8
    # which written examples the support split holds, read straight from the shards
    raw = tfds.builder(dataset, data_dir=data_dir).as_dataset(split=task.description["support_split"])
    ids = [example_id(example) for example in tfds.as_numpy(raw)]
    assert len(set(ids)) == 1000
    splits = [i.split("-")[0] for i in ids]
    assert {s: splits.count(s) for s in set(splits)} == SUPPORT_SPLITS.get(name, {"train": 1000})
    expected = [labels[name](split, int(index)) for split, index in (i.split("-") for i in ids)]
    np.testing.assert_array_equal(support_labels.numpy(), expected)
    query_labels = np.concatenate([labels.numpy() for _, labels in task.queries(7)])
    assert len(query_labels) == TEST_IMAGES[name] and query_labels.min() >= 0 and query_labels.max() < task.way
    if dataset == "dsprites":  # stored 0/1, read as 0/255 (64 px: bilinear resizing is the identity)
        assert set(np.unique(images.numpy())) == {0, 255}


def test_a_dataset_absent_from_the_data_dir_names_the_tfds_build_command(data_dir):
    with pytest.raises(DataError) as error:
        vtab.open_task("dmlab", data_dir, 16)
    message = str(error.value)
    assert "\n" not in message and "'dmlab' is not prepared" in message
    assert f"Prepare it with: tfds build dmlab --data_dir={data_dir}" in message


def test_the_command_evaluates_a_run_on_the_prepared_data_dir(data_dir, tmp_path):
    tasks = ["cifar100", "diabetic_retinopathy", "dsprites_location", "kitti_distance"]
    model_dir = vtab_mock.make_run(tmp_path / "run")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "tools.evaluate_vtab_md", f"--model_dir={model_dir}",
               f"--tfds_data_dir={data_dir}", f"--tasks={','.join(tasks)}", "--batch_size=64", "--count_macs=false"]
    done = subprocess.run(command, cwd=root, env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    output = tmp_path / "run" / "vtab_md_vtab1k"
    results = json.loads((output / "results.json").read_text())
    rows = results["datasets"]
    assert list(rows) == tasks
    for name, row in rows.items():
        assert row["support_images"] == 1000 and row["test_images"] == TEST_IMAGES[name], name
        assert row["correct"] == round(row["accuracy"] * row["test_images"]), name
        assert row["version"] == str(tfds.builder(TASKS[name], data_dir=data_dir).version), name
    accuracy = {name: row["accuracy"] for name, row in rows.items()}
    averages = results["averages"]
    assert averages["VTAB natural"]["accuracy"] == pytest.approx(accuracy["cifar100"])
    assert averages["VTAB specialized"]["accuracy"] == pytest.approx(accuracy["diabetic_retinopathy"])
    assert averages["VTAB structured"]["accuracy"] == pytest.approx(
        (accuracy["dsprites_location"] + accuracy["kitti_distance"]) / 2)
    assert averages["overall"]["accuracy"] == pytest.approx(np.mean(list(accuracy.values())))
    assert averages["MD-v2"]["tasks"] == 0
    table = (output / "results.md").read_text()
    for name, section in zip(tasks, ["natural", "specialized", "structured", "structured"]):
        assert f"| VTAB {section} | {name} | {100 * accuracy[name]:.1f} | " in table, name
    overall = f"| **overall** | **average** (4 of 26 tasks) | **{100 * averages['overall']['accuracy']:.1f}** |"
    assert overall in table and results["table"] in done.stdout


@pytest.mark.parametrize("name, queries", [("cifar100", 20), ("clevr_count", 10), ("smallnorb_azimuth", 400)])
def test_the_lite_protocol_takes_train_1000_and_the_whole_test_split(data_dir, name, queries):
    task = vtab.open_task(name, data_dir, 16, protocol="lite")
    assert (task.num_support, task.num_queries) == (1000, queries)
    assert task.description["support_split"] == "train[:1000]"
    _, support_labels = next(iter(task.support()))
    sizes, _, example_id, labels = DATASETS[TASKS[name]]
    raw = tfds.builder(TASKS[name], data_dir=data_dir).as_dataset(split="train[:1000]")
    expected = [labels[name]("train", int(example_id(example).split("-")[1])) for example in tfds.as_numpy(raw)]
    np.testing.assert_array_equal(support_labels.numpy(), expected)


def test_the_lite_protocol_on_a_train_only_dataset_of_1000_images_has_no_queries(data_dir):
    with pytest.raises(DataError, match=r"query split 'train\[1000:\]' of 'dsprites' is empty"):
        vtab.open_task("dsprites_location", data_dir, 16, protocol="lite")


def test_a_dataset_with_too_few_images_is_a_data_error_naming_the_task(tmp_path):
    """A partly prepared dataset (e.g. ``tfds build --max_examples_per_split``): the support slice
    runs past a split's end. TFDS's own error names neither task nor dataset."""
    root = str(tmp_path)
    tfds_prepared.prepare(root, "oxford_flowers102", {"train": 800, "validation": 150, "test": 3},
                          lambda split, index, rng: {})
    for protocol, split in (("vtab1k", "train[:800]+validation[:200]"), ("lite", "train[:1000]")):
        expected = f"VTAB task 'oxford_flowers102': split '{split}' cannot be cut from 'oxford_flowers102'"
        with pytest.raises(DataError, match=re.escape(expected) + r".*is the dataset fully prepared\?"):
            vtab.open_task("oxford_flowers102", root, 16, protocol=protocol)


def test_pil_lanczos_gives_the_official_lite_pixels(data_dir):
    """``vtab.open_task.resize_method = 'pil_lanczos'``: LITE's ``_prepare_image`` (dSprites: ``image * 255.0``,
    PIL mode 'F', Lanczos, ``convert('RGB')``), within one grey level."""
    from PIL import Image

    task = vtab.open_task("dsprites_location", data_dir, 48, resize_method="pil_lanczos")
    assert task.description["resize_method"] == "pil_lanczos"
    images, _ = next(iter(task.queries(20)))  # the query split: fewer images to read than the support set
    raw = tfds.builder("dsprites", data_dir=data_dir).as_dataset(split=task.description["query_split"])
    for got, example in zip(images.numpy(), tfds.as_numpy(raw.take(20))):
        picture = Image.fromarray(np.squeeze(example["image"]) * 255.0).resize((48, 48), Image.LANCZOS)
        expected = np.asarray(picture.convert("RGB"), np.int32)
        assert np.abs(got.astype(np.int32) - expected).max() <= 1
