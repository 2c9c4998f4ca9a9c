"""The budgeted training study (lite_tf/bench/training_study.py, tools/training_study.py) on a tiny budget."""
import json
import math
import sys

import pytest

from lite_tf.bench import results, studies, training_study
from lite_tf.errors import ConfigError


def test_t_quantiles_match_the_tables():
    for dof, value in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)):
        assert studies.t_quantile(0.975, dof) == pytest.approx(value, abs=2e-4)
    assert studies.t_quantile(0.95, 3) == pytest.approx(2.3534, abs=2e-4)
    with pytest.raises(ValueError):
        studies.t_quantile(0.975, 0)


def test_seed_interval_is_the_student_t_interval():
    mean, half = studies.seed_interval([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6)
    assert half == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)  # sd 0.1 across 3 seeds
    assert studies.seed_interval([0.4, 0.4]) == (pytest.approx(0.4), pytest.approx(0.0))
    assert studies.seed_interval([0.7]) == (0.7, None)


def test_configuration_strings_parse_into_lite_config_arguments():
    assert studies.parse_config("full") == {"mode": "full"}
    assert studies.parse_config("lite:h=10:scaling=none") == {"mode": "lite", "h": 10, "gradient_scaling": "none"}
    assert studies.parse_config("lite:h=4:sampling=stratified:redraw=episode") == {
        "mode": "lite", "h": 4, "sampling": "stratified", "redraw": "episode"}
    for bad, message in (("lite", "needs h"), ("lite:h=4:colour=red", "key=value"), ("exact:h=4", "lite. only"),
                         ("lite:h=0", "positive"), ("sgd", "Unknown LITE mode"),
                         ("lite:h=4:scaling=loss:sampling=stratified", "stratified")):
        with pytest.raises(ConfigError, match=message):
            studies.parse_config(bad)


def test_a_configuration_may_carry_its_own_budget(tmp_path):
    settings = training_study.Settings(data_dir=str(tmp_path), configs=["full", "lite:h=10@1600"], seeds=[0],
                                       episodes=800)
    full, lite = training_study.specs(settings, ["folder"])
    assert (full["episodes"], lite["episodes"]) == (800, 1600)
    assert lite["config"] == "lite:h=10@1600" and lite["lite"] == {"mode": "lite", "h": 10}


def test_groups_give_each_configuration_its_across_seed_interval():
    rows = [{"config": config, "status": "ok", "test_accuracy": accuracy, "train_s": seconds, "step_s": seconds / 10,
             "host_peak_above_baseline_gib": 0.1, "gpu_peak_gib": None}
            for config, accuracy, seconds in (("full", 0.8, 10), ("lite:h=2", 0.5, 4), ("full", 0.9, 12),
                                              ("lite:h=2", 0.7, 6), ("full", 0.7, 14))]
    rows.append({"config": "lite:h=2", "status": "killed", "error": "killed by SIGKILL"})
    full, lite = training_study.groups(rows)
    assert (full["config"], full["seeds"], full["failed"]) == ("full", 3, 0)
    assert full["accuracy"] == pytest.approx(0.8) and full["train_s"] == pytest.approx(12)
    assert full["interval"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert (lite["seeds"], lite["failed"]) == (2, 1)
    assert lite["interval"] == pytest.approx(12.7062 * math.sqrt(0.02) / math.sqrt(2), rel=1e-4)


def test_tiny_study_runs_every_seed_and_configuration_and_writes_schema_valid_results(tmp_path):
    settings = training_study.Settings(
        data_dir=str(tmp_path / "data"), configs=["full", "lite:h=2"], seeds=[0, 1], sources=["shapes"],
        image_size=16, way=2, shots=2, queries=2, episodes=3, eval_episodes=2, chunk_size=2,
        classes_per_split=[3, 0, 2], images_per_class=4)
    lines = []
    document = training_study.run(settings, log=lines.append)
    rows = document["rows"]
    assert [(row["config"], row["seed"], row["status"]) for row in rows] == [
        ("full", 0, "ok"), ("lite:h=2", 0, "ok"), ("full", 1, "ok"), ("lite:h=2", 1, "ok")]
    assert all(0 <= row["test_accuracy"] <= 1 and row["train_s"] > 0 and "folders" not in row for row in rows)
    for entry in document["groups"]:
        accuracies = [row["test_accuracy"] for row in rows if row["config"] == entry["config"]]
        mean, half = studies.seed_interval(accuracies)
        assert entry["accuracy"] == pytest.approx(mean) and entry["interval"] == pytest.approx(half)
    paths = training_study.write(str(tmp_path / "out" / "study"), document)
    loaded = json.load(open(paths[0]))
    results.validate(loaded)
    assert loaded["groups"] == document["groups"]
    table = open(paths[1]).read()
    assert "| full | 2 |" in table and "95% Student-t interval across seeds" in table
    bad = dict(loaded, rows=[dict(rows[0], test_accuracy=None)])
    with pytest.raises(Exception, match="test_accuracy"):
        results.validate(bad)


def test_settings_that_cannot_work_are_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="images_per_class"):
        training_study.validate(training_study.Settings(data_dir=str(tmp_path), shots=10, queries=10,
                                                        images_per_class=15))
    with pytest.raises(ConfigError, match="positive episode count"):
        training_study.validate(training_study.Settings(data_dir=str(tmp_path), configs=["full@0"]))
    with pytest.raises(ConfigError, match="lite needs h"):
        training_study.validate(training_study.Settings(data_dir=str(tmp_path), configs=["lite"]))


def test_plot_without_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    document = {"schema": results.SCHEMA, "machine": {}, "settings": {}, "rows": [], "summary": [], "groups": []}
    with pytest.raises(ConfigError, match=r"optional extra: pip install 'lite_tf\[plot\]'"):
        training_study.write(str(tmp_path / "s"), document, str(tmp_path / "s.png"))
    assert list(tmp_path.iterdir()) == []
