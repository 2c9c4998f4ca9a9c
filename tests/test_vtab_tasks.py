"""VTAB-v2 task table: every task's label function, and its support/test split sizes on the real
TFDS split sizes (mocked TFDS: metadata only), in both protocols; missing data is a clear error."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from lite_tf.data import vtab
from lite_tf.data.vtab import labels
from lite_tf.errors import ConfigError, DataError

from tests import vtab_mock

# VTAB-1k test-set sizes (the VTAB paper / task_adaptation), written out independently of the code.
VTAB1K_TEST_SIZES = {
    "caltech101": 6084, "cifar100": 10000, "oxford_flowers102": 6149, "oxford_iiit_pet": 3669, "sun397": 21750,
    "svhn": 26032, "diabetic_retinopathy": 42670, "eurosat": 5400, "resisc45": 6300, "patch_camelyon": 32768,
    "clevr_count": 15000, "clevr_distance": 15000, "dmlab": 22735, "dsprites_location": 73728,
    "dsprites_orientation": 73728, "smallnorb_azimuth": 12150, "smallnorb_elevation": 12150, "kitti_distance": 711,
}
# The official LITE code: the whole TFDS test split (CLEVR: validation), else train[1000:].
LITE_TEST_SIZES = dict(VTAB1K_TEST_SIZES, eurosat=27000 - 1000, resisc45=31500 - 1000,
                       dsprites_location=737280 - 1000, dsprites_orientation=737280 - 1000,
                       smallnorb_azimuth=24300, smallnorb_elevation=24300)
NUM_CLASSES = {"caltech101": 102, "cifar100": 100, "oxford_flowers102": 102, "oxford_iiit_pet": 37, "sun397": 397,
               "svhn": 10, "diabetic_retinopathy": 5, "eurosat": 10, "resisc45": 45, "patch_camelyon": 2,
               "clevr_count": 8, "clevr_distance": 6, "dmlab": 6, "dsprites_location": 16,
               "dsprites_orientation": 16, "smallnorb_azimuth": 18, "smallnorb_elevation": 9, "kitti_distance": 4}


def test_the_table_has_the_18_vtab_v2_tasks_in_three_groups():
    assert set(vtab.TASK_NAMES) == set(VTAB1K_TEST_SIZES)
    assert [len(vtab.tasks_in(g)) for g in vtab.GROUPS] == [6, 4, 8]
    assert {name: task.num_classes for name, task in vtab.TASKS.items()} == NUM_CLASSES


@pytest.mark.parametrize("protocol, expected", [("vtab1k", VTAB1K_TEST_SIZES), ("lite", LITE_TEST_SIZES)])
def test_support_is_1000_images_and_queries_the_whole_test_split(tmp_path, protocol, expected):
    datasets = sorted({task.dataset_for(protocol) for task in vtab.TASKS.values()})
    with vtab_mock.mock_with_real_sizes(str(tmp_path), datasets):
        for name in vtab.TASK_NAMES:
            if protocol == "lite" and name == "sun397":
                continue   # an image folder under lite (tests/test_vtab_lite_protocol.py)
            task = vtab.open_task(name, str(tmp_path), 16, protocol=protocol)
            assert task.num_support == 1000, name
            assert task.num_queries == expected[name], name
            assert task.way == NUM_CLASSES[name]


def test_vtab1k_support_is_train800_plus_val200():
    sizes = {"train": 3060, "test": 6084}
    assert vtab.get_task("caltech101").splits(sizes) == ("train[:800]+train[2754:2954]", "test")
    assert vtab.get_task("eurosat").splits({"train": 27000}) == ("train[:800]+train[16200:16400]", "train[21600:]")
    assert vtab.get_task("dsprites_location").splits({"train": 737280}) == (
        "train[:800]+train[589824:590024]", "train[663552:]")
    assert vtab.get_task("clevr_count").splits({"train": 70000, "validation": 15000}) == (
        "train[:800]+train[63000:63200]", "validation")
    assert vtab.get_task("clevr_count").splits({"train": 70000, "validation": 15000}, "lite") == (
        "train[:1000]", "validation")


def _example(**features):
    return {key: tf.constant(value) if not isinstance(value, dict) else
            {k: tf.constant(v) for k, v in value.items()} for key, value in features.items()}


def test_clevr_labels_count_objects_and_bin_the_closest_depth():
    def scene(depths):
        depths = np.asarray(depths, np.float32)
        return _example(objects={"size": np.zeros(len(depths), np.int64),
                                 "pixel_coords": np.stack([np.zeros_like(depths)] * 2 + [depths], 1)})

    assert int(labels.clevr_count(scene([9.0] * 3))) == 0
    assert int(labels.clevr_count(scene([9.0] * 10))) == 7
    for depth, label in ((7.9, 0), (8.0, 0), (8.01, 1), (8.6, 2), (9.2, 3), (9.9, 4), (10.5, 5), (99.0, 5)):
        assert int(labels.clevr_closest_distance(scene([20.0, depth, 30.0]))) == label, depth


def test_kitti_label_bins_the_closest_vehicle_and_has_a_no_vehicle_class():
    def scene(types, depths):
        depths = np.asarray(depths, np.float32)
        return _example(objects={"type": np.asarray(types, np.int64),
                                 "location": np.stack([np.zeros_like(depths)] * 2 + [depths], 1)})

    assert int(labels.kitti_closest_vehicle_distance(scene([0, 4], [5.0, 1.0]))) == 0   # pedestrian ignored
    assert int(labels.kitti_closest_vehicle_distance(scene([1, 2], [30.0, 15.0]))) == 1  # van/truck count
    assert int(labels.kitti_closest_vehicle_distance(scene([0], [25.0]))) == 2
    assert int(labels.kitti_closest_vehicle_distance(scene([3, 4], [2.0, 3.0]))) == 3    # no vehicle
    assert int(labels.kitti_closest_vehicle_distance(scene([], []))) == 3


def test_dsprites_and_smallnorb_labels():
    location, orientation = vtab.get_task("dsprites_location").label_fn, vtab.get_task("dsprites_orientation").label_fn
    for x, label in ((0, 0), (1, 0), (2, 1), (31, 15)):
        assert int(location(_example(label_x_position=np.int64(x)))) == label
    for angle, label in ((0, 0), (2, 0), (3, 1), (39, 15)):  # 40 orientations into 16 bins of 2.5
        assert int(orientation(_example(label_orientation=np.int64(angle)))) == label
    example = _example(label_azimuth=np.int64(17), label_elevation=np.int64(8), label=np.int64(3))
    assert int(vtab.get_task("smallnorb_azimuth").label_fn(example)) == 17
    assert int(vtab.get_task("smallnorb_elevation").label_fn(example)) == 8
    assert int(vtab.get_task("cifar100").label_fn(example)) == 3


@pytest.mark.parametrize("name, expected", [
    ("clevr_count", lambda i: i % 8), ("clevr_distance", lambda i: i % 6), ("kitti_distance", lambda i: i % 4),
    ("dsprites_location", lambda i: (0, 6, 12)[i % 3]), ("oxford_flowers102", lambda i: i % 3)])
def test_labels_through_the_tfds_reader_on_hand_written_examples(tmp_path, name, expected):
    task_def = vtab.get_task(name)
    with vtab_mock.mock_tiny(str(tmp_path), [task_def.dataset]):
        task = vtab.open_task(name, str(tmp_path), 16)
        images, support_labels = next(iter(task.support()))
        assert images.shape == (1000, 16, 16, 3) and images.dtype == tf.uint8
        support_labels = support_labels.numpy()
        # support = the first 800 examples, then 200 more from the validation part
        np.testing.assert_array_equal(support_labels[:800], [expected(i) for i in range(800)])
        queries = np.concatenate([labels.numpy() for _, labels in task.queries(32)])
        assert len(queries) == task.num_queries


@pytest.mark.parametrize("name", ["smallnorb_azimuth", "dmlab", "svhn", "diabetic_retinopathy"])
def test_mocked_random_examples_decode_to_3_channel_images_and_valid_labels(tmp_path, name):
    task_def = vtab.get_task(name)
    with vtab_mock.mock_with_real_sizes(str(tmp_path), [task_def.dataset], num_examples=5):
        images, support_labels = next(iter(vtab.open_task(name, str(tmp_path), 16).support()))
    assert images.shape == (5, 16, 16, 3)
    assert np.all((support_labels.numpy() >= 0) & (support_labels.numpy() < task_def.num_classes))


def test_a_label_out_of_range_fails_naming_the_task(tmp_path):
    # Random mock scenes have dozens of objects: CLEVR's count label leaves [0, 8).
    with vtab_mock.mock_with_real_sizes(str(tmp_path), ["clevr"], num_examples=3):
        support = vtab.open_task("clevr_count", str(tmp_path), 16).support()
        with pytest.raises(tf.errors.InvalidArgumentError, match="clevr_count"):
            next(iter(support))


def test_an_unprepared_dataset_names_itself_and_the_command(tmp_path):
    with pytest.raises(DataError, match=r"'resisc45' is not prepared.*tfds build resisc45 --data_dir=.*by hand"):
        vtab.open_task("resisc45", str(tmp_path), 16)
    with pytest.raises(DataError, match=r"tfds build cifar100"):
        vtab.open_task("cifar100", str(tmp_path), 16)


def test_unknown_task_and_protocol_are_config_errors():
    with pytest.raises(ConfigError, match="Known tasks: caltech101"):
        vtab.get_task("dtd")
    with pytest.raises(ConfigError, match="protocol"):
        vtab.get_task("svhn").splits({"train": 10, "test": 5}, "vtab2k")


def test_the_registered_source_gives_each_task_as_episodes_sharing_its_support(tmp_path):
    from lite_tf.registry import get_source

    source = get_source("vtab")(query_batch_size=25)
    assert list(source.dataset_names()) == list(vtab.TASK_NAMES)
    with vtab_mock.mock_tiny(str(tmp_path), ["oxford_flowers102", "kitti"]):
        episodes = list(source.episodes("test", image_size=16, seed=0, data_root=str(tmp_path),
                                        datasets=["oxford_flowers102", "kitti_distance"]))
    assert [int(e["query_labels"].shape[0]) for e in episodes] == [25, 25, 10, 25, 15]  # 60 + 40 test images
    assert [int(e["way"]) for e in episodes] == [102] * 3 + [4] * 2
    np.testing.assert_array_equal(episodes[0]["support_images"], episodes[2]["support_images"])
    assert episodes[0]["support_images"].shape == (1000, 16, 16, 3)
    np.testing.assert_array_equal(episodes[3]["query_labels"][:8], [i % 4 for i in range(1000, 1008)])
    with pytest.raises(ConfigError, match="only a 'test' split"):
        source.episodes("train", image_size=16, seed=0)


def test_the_command_reports_missing_data_in_one_line(tmp_path, capsys):
    from tests.launch_helpers import run_tool
    from lite_tf.tools import evaluate_vtab_md

    model_dir = vtab_mock.make_run(tmp_path / "run")
    assert run_tool(evaluate_vtab_md, f"--model_dir={model_dir}", f"--tfds_data_dir={tmp_path}", "--tasks=svhn") == 2
    error = capsys.readouterr().err
    assert error.startswith("error: VTAB task 'svhn': TFDS dataset 'svhn_cropped' is not prepared")
    assert "tfds build svhn_cropped" in error and len(error.strip().splitlines()) == 1
