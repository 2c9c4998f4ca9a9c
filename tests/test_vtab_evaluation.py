"""Large-task evaluation end to end on mock TFDS data (ProtoNets via the command's code path,
FineTuner via the large-task evaluator on ``sources.vtab_md``), the evaluator shape and its files, resumability, the binomial
interval and the table's averages."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from lite_tf.data.synthetic import fake
from lite_tf.errors import ConfigError
from lite_tf.eval import large_task
from lite_tf.sources.vtab import VtabMdSource
from tests import vtab_mock

VTAB_TASKS = ["oxford_flowers102", "dsprites_location"]


def _records(root):
    """A tiny Meta-Dataset record set named like an MD-v2 test source."""
    path = os.path.join(root, "omniglot")
    fake.write_fake_dataset(fake.flat_toy_spec("omniglot", path, classes=(2, 2, 6), images=6), path, image_size=24)
    return root


def _check_rows(results, test_images):
    tasks = results["datasets"]
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
        from lite_tf import experiment

        source = VtabMdSource(records=_records(str(tmp_path / "records")), tfds_data_dir=data_dir)
        results = experiment.evaluate(model_dir, datasets=VTAB_TASKS + ["omniglot"], source=source,
                                      evaluator="large_task", episodes=3, options={"batch_size": 32}, progress=False)
    _check_rows(results, {"oxford_flowers102": 60, "dsprites_location": 106})
    output = tmp_path / "run" / "vtab_md_vtab1k"
    saved = json.loads((output / "results.json").read_text())
    assert saved["datasets"]["oxford_flowers102"]["accuracy"] == results["datasets"]["oxford_flowers102"]["accuracy"]
    # results name the weights file; finished tasks are keyed on the weights' content (issue 22)
    assert saved["weights"] == os.path.join(model_dir, "best.weights.h5")
    assert len(saved["fingerprint"]["weights_sha256"]) == 64
    table = (output / "results.md").read_text()
    assert table.startswith("VTAB+MD: ProtoNets at 16 px") and table.endswith(results["table"] + "\n")
    assert "| VTAB natural | oxford_flowers102 |" in table and "**overall**" in table
    assert sorted(os.listdir(output / "tasks")) == sorted(f"{n}.json" for n in VTAB_TASKS + ["omniglot"])


def test_finetuner_is_evaluated_through_personalize_with_its_own_macs(tmp_path):
    from lite_tf.backbones.conv import conv4
    from lite_tf.model import EpisodicModel
    from lite_tf.learners.finetuner import FineTuner

    # 20 head steps: with 5, one hand-coded class was sometimes not yet separated (order-dependent init)
    learner = FineTuner(conv4(16, filters=8, blocks=2), steps=20, learning_rate=0.1)
    model = EpisodicModel(learner, 16)
    data_dir = str(tmp_path / "tfds")
    with vtab_mock.mock_tiny(data_dir):
        evaluator = large_task.LargeTaskEvaluator(episodes=3, batch_size=50, count_macs=False, log=lambda _: None)
        source = VtabMdSource(records=_records(str(tmp_path / "records")), tfds_data_dir=data_dir)
        results = evaluator.evaluate(model, source, "test", datasets=VTAB_TASKS + ["omniglot"],
                                     output=str(tmp_path / "out" / "results"))
    _check_rows(results, {"oxford_flowers102": 60, "dsprites_location": 106})
    assert results["datasets"]["dsprites_location"]["personalization_macs"] == learner.last_personalization_cost["macs"]


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
    evaluator = large_task.LargeTaskEvaluator(log=lambda _: None)
    output = str(tmp_path / "results")
    with pytest.raises(KeyboardInterrupt):
        evaluator.resume(["cifar100", "svhn", "dmlab"], failing, fingerprint, "title", output)
    assert os.listdir(tmp_path / "tasks") == ["cifar100.json"]
    assert list(json.loads((tmp_path / "results.json").read_text())["datasets"]) == ["cifar100"]
    calls.clear()
    results = evaluator.resume(["cifar100", "svhn", "dmlab"], lambda n: calls.append(n) or _row(n, 0.25),
                               fingerprint, "title", output)
    assert calls == ["svhn", "dmlab"]
    assert results["datasets"]["cifar100"]["accuracy"] == 0.5 and results["datasets"]["dmlab"]["accuracy"] == 0.25
    with pytest.raises(ConfigError, match="different evaluation"):
        evaluator.resume(["cifar100"], failing, {"weights": "b.h5"}, "title", output)


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
    table = large_task.markdown_table(rows, averages)
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
    from lite_tf.learners.protonets import ProtoNets

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


def test_the_evaluator_shape_rows_with_accuracy_and_ci95_and_files_written_atomically(tmp_path, monkeypatch):
    from lite_tf import atomic

    evaluator = large_task.LargeTaskEvaluator(log=lambda _: None)
    written = []
    real = atomic.write_text
    monkeypatch.setattr(atomic, "write_text", lambda path, text: written.append(path) or real(path, text))
    results = evaluator.resume(["omniglot", "svhn"], lambda n: _row(n, {"omniglot": 0.9, "svhn": 0.3}[n]),
                               {"weights": "w"}, "VTAB+MD title", str(tmp_path / "results"))
    assert results["split"] == "test" and list(results["datasets"]) == ["omniglot", "svhn"]
    for row in results["datasets"].values():
        assert set(row) >= {"accuracy", "ci95", "test_images"}
    assert results["averages"]["overall"]["accuracy"] == pytest.approx(0.6)
    assert "| VTAB natural | svhn | 30.0 | 1.0 |" in results["table"] and "**VTAB natural**" in results["table"]
    assert written and all(path == str(tmp_path / "results.md") for path in written)
    assert (tmp_path / "results.md").read_text() == "VTAB+MD title\n\n" + results["table"] + "\n"
    assert json.loads((tmp_path / "results.json").read_text())["datasets"] == json.loads(
        json.dumps(results["datasets"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md", "tasks"]  # no temp files
    # a results file that cannot be written completely leaves the previous one, and no partial file
    before = (tmp_path / "results.json").read_text()
    with pytest.raises(TypeError):
        evaluator.write({**results, "datasets": {"svhn": {"accuracy": object()}}}, str(tmp_path / "results"), "t")
    assert (tmp_path / "results.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md", "tasks"]


def test_the_evaluator_needs_an_output_and_vtab_md_checks_its_data_and_split(tmp_path):
    from lite_tf.sources.vtab import VtabSource

    with pytest.raises(ConfigError, match="needs an output path"):
        large_task.LargeTaskEvaluator().evaluate(object(), VtabMdSource(tfds_data_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="only a 'test' split"):
        VtabSource().large_task("svhn", "valid", image_size=16)
    with pytest.raises(ConfigError, match="Meta-Dataset source: give --records"):
        VtabMdSource(tfds_data_dir=str(tmp_path)).check_tasks(["omniglot"])
    with pytest.raises(ConfigError, match="not both"):
        VtabMdSource(records="a", md_tfds_data_dir="b")


def test_the_resume_guard_refuses_weights_overwritten_in_place(tmp_path):
    """Issue 22: the guard is keyed on the weights' content, not their path."""
    from lite_tf.backbones.conv import conv4
    from lite_tf.learners.protonets import ProtoNets
    from lite_tf.model import EpisodicModel

    model = EpisodicModel(ProtoNets(conv4(16, filters=8, blocks=2)), 16)
    evaluator = large_task.LargeTaskEvaluator(log=lambda _: None)
    output = str(tmp_path / "results")
    before = large_task.weights_digest(model)
    evaluator.resume(["svhn"], lambda n: _row(n, 0.5), {"weights_sha256": before}, "t", output)
    model.weights[0].assign(model.weights[0] + 1.0)  # the same file name, other weights
    after = large_task.weights_digest(model)
    assert after != before
    with pytest.raises(ConfigError, match="changed: weights_sha256"):
        evaluator.resume(["svhn"], lambda n: _row(n, 0.5), {"weights_sha256": after}, "t", output)


def test_a_vtab_source_run_is_scored_as_large_tasks_by_the_one_evaluate(tmp_path):
    """Issue 18: a run whose source is ``sources.vtab`` goes through ``experiment.evaluate`` (what
    lite_tf_evaluate calls) to the source's ``large_task`` evaluator, one row per task over its whole
    test split, instead of asking the episode evaluator for 600 episodes of a 1-episode task."""
    from lite_tf import experiment

    model_dir = vtab_mock.make_run(tmp_path / "run")
    data_dir = str(tmp_path / "tfds")
    with vtab_mock.mock_tiny(data_dir, ["oxford_flowers102"]):
        results = experiment.evaluate(model_dir, data_root=data_dir, bindings=["Training.source = @sources.vtab()"],
                                      datasets=["oxford_flowers102"], progress=False, options={"count_macs": False})
    row = results["datasets"]["oxford_flowers102"]
    assert row["test_images"] == 60 and row["support_images"] == 1000 and row["accuracy"] > 0.9
    assert results["output"] == os.path.join(model_dir, "vtab_md_vtab1k", "results")
    assert os.path.isfile(os.path.join(model_dir, "vtab_md_vtab1k", "tasks", "oxford_flowers102.json"))
    with pytest.raises(ConfigError, match="--tasks_per_user does not apply to the 'large_task' evaluator"):
        experiment.evaluate(model_dir, data_root=data_dir, bindings=["Training.source = @sources.vtab()"],
                            options={"tasks_per_user": 2}, progress=False)
