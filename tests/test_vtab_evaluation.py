"""Large-task evaluation end to end on mock TFDS data (ProtoNets via the command's code path,
FineTuner via the library call), resumability, the binomial interval and the table's averages."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from lite_tf.data.synthetic import fake
from lite_tf.errors import ConfigError
from lite_tf.eval import large_task
from tests import vtab_mock

VTAB_TASKS = ["oxford_flowers102", "dsprites_location"]


def _records(root):
    """A tiny Meta-Dataset record set named like an MD-v2 test source."""
    path = os.path.join(root, "omniglot")
    fake.write_fake_dataset(fake.flat_toy_spec("omniglot", path, classes=(2, 2, 6), images=6), path, image_size=24)
    return root


def _check_rows(results, test_images):
    tasks = results["tasks"]
    assert set(tasks) == set(VTAB_TASKS) | {"omniglot"}
    for name in VTAB_TASKS:
        row = tasks[name]
        assert row["test_images"] == test_images[name]
        assert row["correct"] == round(row["accuracy"] * row["test_images"])
        assert row["ci95"] == pytest.approx(1.96 * math.sqrt(row["accuracy"] * (1 - row["accuracy"]) / row["test_images"]))
        assert row["support_images"] == 1000 and row["support_classes"] == 3
        assert row["personalization_macs"] > 0 and row["personalization_seconds"] > 0
        assert row["images_per_second"] > 0 and row["peak_resident_bytes"] > 0
    # the hand-written classes are colour / position coded: an untrained conv net separates them
    assert tasks["oxford_flowers102"]["accuracy"] > 0.9
    assert tasks["omniglot"]["episodes"] == 3 and 0 <= tasks["omniglot"]["accuracy"] <= 1
    averages = results["averages"]
    assert averages["overall"]["accuracy"] == pytest.approx(np.mean([r["accuracy"] for r in tasks.values()]))
    assert averages["MD-v2"]["accuracy"] == pytest.approx(tasks["omniglot"]["accuracy"])


def test_the_command_evaluates_a_trained_protonets_run_on_mock_vtab_and_md(tmp_path):
    model_dir = vtab_mock.make_run(tmp_path / "run")
    data_dir = str(tmp_path / "tfds")
    with vtab_mock.mock_tiny(data_dir):
        results = large_task.evaluate_run(model_dir, tasks=VTAB_TASKS + ["omniglot"],
                                            records=_records(str(tmp_path / "records")), tfds_data_dir=data_dir,
                                            md_episodes=3, batch_size=32)
    _check_rows(results, {"oxford_flowers102": 60, "dsprites_location": 106})
    output = tmp_path / "run" / "vtab_md_vtab1k"
    saved = json.loads((output / "results.json").read_text())
    assert saved["tasks"]["oxford_flowers102"]["accuracy"] == results["tasks"]["oxford_flowers102"]["accuracy"]
    table = (output / "results.md").read_text()
    assert "| VTAB natural | oxford_flowers102 |" in table and "**overall**" in table
    assert sorted(os.listdir(output / "tasks")) == sorted(f"{n}.json" for n in VTAB_TASKS + ["omniglot"])


def test_finetuner_is_evaluated_through_personalize_with_its_own_macs(tmp_path):
    from lite_tf.backbones.conv import conv4
    from lite_tf.model import EpisodicModel
    from learners.finetuner import FineTuner

    learner = FineTuner(conv4(16, filters=8, blocks=2), steps=5, learning_rate=0.1)
    model = EpisodicModel(learner, 16)
    data_dir = str(tmp_path / "tfds")
    with vtab_mock.mock_tiny(data_dir):
        results = large_task.evaluate_vtab_md(model, str(tmp_path / "out"), tasks=VTAB_TASKS + ["omniglot"],
                                              records=_records(str(tmp_path / "records")), tfds_data_dir=data_dir,
                                              md_episodes=3, batch_size=50, count_macs=False, log=lambda _: None)
    _check_rows(results, {"oxford_flowers102": 60, "dsprites_location": 106})
    assert results["tasks"]["dsprites_location"]["personalization_macs"] == learner.last_personalization_cost["macs"]


def _row(name, accuracy):
    return {"task": name, "accuracy": accuracy, "ci95": 0.01, "test_images": 100, "images_per_second": 1.0}


def test_a_killed_run_keeps_finished_tasks_and_a_rerun_does_only_the_rest(tmp_path):
    calls = []

    def failing(name):
        calls.append(name)
        if name == "svhn":
            raise KeyboardInterrupt  # as if the run were killed during the second task
        return _row(name, 0.5)

    fingerprint = {"weights": "a.h5"}
    with pytest.raises(KeyboardInterrupt):
        large_task.run_benchmark(["cifar100", "svhn", "dmlab"], failing, str(tmp_path), fingerprint, log=lambda _: None)
    assert os.listdir(tmp_path / "tasks") == ["cifar100.json"]
    assert list(json.loads((tmp_path / "results.json").read_text())["tasks"]) == ["cifar100"]
    calls.clear()
    results = large_task.run_benchmark(["cifar100", "svhn", "dmlab"], lambda n: calls.append(n) or _row(n, 0.25),
                                       str(tmp_path), fingerprint, log=lambda _: None)
    assert calls == ["svhn", "dmlab"]
    assert results["tasks"]["cifar100"]["accuracy"] == 0.5 and results["tasks"]["dmlab"]["accuracy"] == 0.25
    with pytest.raises(ConfigError, match="different evaluation"):
        large_task.run_benchmark(["cifar100"], failing, str(tmp_path), {"weights": "b.h5"}, log=lambda _: None)


def test_binomial_interval():
    assert large_task.binomial_interval(80, 100) == pytest.approx((0.8, 1.96 * 0.04))
    assert large_task.binomial_interval(7, 7) == (1.0, 0.0)
    with pytest.raises(ValueError):
        large_task.binomial_interval(0, 0)


def test_table_averages_are_plain_means_per_section_and_overall():
    rows = {name: _row(name, accuracy) for name, accuracy in {
        "omniglot": 0.90, "aircraft": 0.70,                     # MD-v2: (0.9 + 0.7) / 2 = 0.80
        "caltech101": 0.80, "cifar100": 0.50, "svhn": 0.20,     # natural: 1.5 / 3 = 0.50
        "eurosat": 0.95,                                        # specialized: 0.95
        "dmlab": 0.40, "kitti_distance": 0.60,                  # structured: 0.50
    }.items()}
    averages = large_task.summarize(rows)
    assert averages["MD-v2"] == {"accuracy": pytest.approx(0.80), "tasks": 2, "of": 8}
    assert averages["VTAB natural"]["accuracy"] == pytest.approx(0.50)
    assert averages["VTAB specialized"] == {"accuracy": pytest.approx(0.95), "tasks": 1, "of": 4}
    assert averages["VTAB structured"]["accuracy"] == pytest.approx(0.50)
    assert averages["VTAB all"]["accuracy"] == pytest.approx((0.8 + 0.5 + 0.2 + 0.95 + 0.4 + 0.6) / 6)
    assert averages["overall"]["accuracy"] == pytest.approx(5.05 / 8)
    table = large_task.format_table(rows, averages)
    lines = table.splitlines()
    assert lines.index("| MD-v2 | omniglot | 90.0 | 1.0 | 100 | - | - | 1.0 |") < lines.index(
        "| **MD-v2** | **average** (2 of 8 tasks) | **80.0** | | | | | |")
    assert "| **VTAB structured** | **average** (2 of 8 tasks) | **50.0** | | | | | |" in lines
    assert lines[-1] == "| **overall** | **average** (8 of 26 tasks) | **63.1** | | | | | |"


def test_personalised_scoring_matches_the_episodic_path_over_the_sources_episodes(tmp_path):
    """ProtoNets on KITTI (all 4 classes in the support set): adapting once and scoring every test
    image gives the same count right as the model's episode inference over the ``vtab`` source."""
    from lite_tf.backbones.conv import conv4
    from lite_tf.data import vtab
    from lite_tf.model import EpisodicModel
    from lite_tf.sources.vtab import VtabSource
    from learners.protonets import ProtoNets

    model = EpisodicModel(ProtoNets(conv4(16, filters=8, blocks=2)), 16)
    data_dir = str(tmp_path / "tfds")
    with vtab_mock.mock_tiny(data_dir, ["kitti"]):
        task = vtab.open_task("kitti_distance", data_dir, 16)
        row = large_task.evaluate_large_task(model.learner, task, 16, batch_size=16)
        episodes = VtabSource(query_batch_size=16).episodes("test", image_size=16, seed=0, data_root=data_dir,
                                                                 datasets=["kitti_distance"])
        correct = 0.0
        for episode in episodes:
            _, accuracy = model.evaluate_episode(episode)
            correct += float(accuracy) * int(episode["query_labels"].shape[0])
    assert row["support_classes"] == 4 and row["test_images"] == 40
    assert abs(row["correct"] - correct) < 1e-3
