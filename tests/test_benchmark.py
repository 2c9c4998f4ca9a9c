"""The benchmark harness (lite_tf/bench, tools/benchmark.py, tools/benchmark_gpu.sh) at tiny sizes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lite_tf.bench import harness, results, runner
from lite_tf.bench.episodes import synthetic_episode
from lite_tf.errors import ConfigError, DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "gin", "benchmarks", "tiny.gin")


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
                PYTHON=sys.executable)


def test_lite_case_in_fresh_processes_writes_a_schema_valid_file(tmp_path):
    settings = harness.Settings(case=["lite"], learner=["protonets"], backbone="conv4", support_sizes=[8],
                                query_size=4, h=[4], chunk_size=4, image_size=32, steps=1, gin_files=[TINY])
    document = harness.run(settings, log=lambda line: None)
    json_path, markdown_path = results.write(str(tmp_path / "out" / "lite.json"), document)
    with open(json_path) as stream:
        loaded = json.load(stream)
    results.validate(loaded)
    rows = loaded["rows"]
    assert [(row["mode"], row["h"], row["status"]) for row in rows] == [("lite", 4, "ok"), ("full", None, "ok")]
    lite, full = rows
    assert lite["device"].startswith("CPU") and lite["gpu_peak_gib"] is None and lite["dtype_policy"] == "float32"
    assert lite["overhead_ratio"] == pytest.approx(lite["step_s"] / (lite["inference_s"] + lite["small_step_s"]))
    assert 0 < lite["host_peak_above_baseline_gib"] < 2 and lite["images_per_s"] == pytest.approx(12 / lite["step_s"])
    assert "overhead_ratio" not in full and full["backbone"] == "conv4"
    assert lite["optimizer"] == "adam" and 0 < lite["trace_s"] < lite["first_step_s"]  # the first step's split
    table = open(markdown_path).read()
    assert "| protonets | conv4 | 8 | 4 | lite | 4 | float32 |" in table and "overhead ratio" in table


@pytest.mark.slow  # ~90 s of fresh processes; the harness cases it runs are each tested above and below
def test_gpu_script_dry_run(tmp_path):
    """tools/benchmark_gpu.sh's plan at tiny sizes on the CPU: every row present, one JSON + table."""
    stem = str(tmp_path / "gpu")
    process = subprocess.run(["bash", os.path.join(ROOT, "tools", "benchmark_gpu.sh"), "--dry_run", stem],
                             capture_output=True, text=True, env=_env(), timeout=900)
    assert process.returncode == 0, process.stderr[-3000:]
    with open(stem + ".json") as stream:
        document = json.load(stream)
    results.validate(document)
    steps = [row for row in document["rows"] if row["part"] == "step"]
    plan = {(row["learner"], row["mode"], row["dtype_policy"]) for row in steps}
    expected = {(learner, mode, policy) for learner in ("protonets", "simple_cnaps")
                for mode in ("lite", "exact", "full") for policy in ("float32", "mixed_bfloat16")}
    assert plan == expected
    with open(stem + "_remat.json") as stream:
        remat_rows = [row for row in json.load(stream)["rows"] if row["part"] == "step"]
    assert {(row["learner"], row["mode"], row["dtype_policy"]) for row in remat_rows} == expected
    assert all("LiteConfig.remat=True" in row["gin_bindings"] for row in remat_rows)
    assert all(row["status"] == "ok" for row in steps if row["dtype_policy"] == "float32")
    assert [row["status"] for row in document["rows"] if row["part"] == "pipeline"] == ["ok"]
    assert {row["backbone"] for row in steps if row["status"] == "ok"} <= {"conv4", "film_conv4"}
    assert any(line.startswith("pipeline delivers") for line in document["summary"])
    assert "mixed_bfloat16" in open(stem + ".md").read()


def test_a_killed_child_is_reported_by_signal_name():
    row = runner.run_in_child("tests.bench_children:kill_self", {"case": "lite"})
    assert row["status"] == "killed" and row["error"].startswith("killed by SIGKILL") and row["case"] == "lite"


def test_a_failing_child_reports_its_error_line_and_a_slow_one_times_out():
    failed = runner.run_in_child("tests.bench_children:fail", {"value": 7})
    assert failed["status"] == "error" and failed["error"].endswith("ValueError: bad spec 7")
    slow = runner.run_in_child("tests.bench_children:sleep", {"seconds": 600}, timeout_s=20)
    assert slow["status"] == "timeout" and "20 s" in slow["error"]


def test_bad_case_name_is_a_one_line_error():
    process = subprocess.run([sys.executable, "-m", "tools.benchmark", "--case=lite,nope"], capture_output=True,
                             text=True, env=_env(), cwd=ROOT, timeout=300)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines()[-1] == (
        "error: Unknown benchmark case nope; expected one or more of lite, learner, pipeline, orbit, export.")
    assert "Traceback" not in process.stderr


@pytest.mark.parametrize("overrides, message", [
    ({"case": []}, "Unknown benchmark case (none)"),
    ({"dtype_policy": ["float64"]}, "Unknown --dtype_policy float64"),
    ({"modes": ["lite", "sideways"]}, "--modes: Unknown LITE mode 'sideways'"),
    ({"gin_files": ["no/such.gin"]}, "--gin_file 'no/such.gin' does not exist"),
    ({"support_sizes": [0]}, "--support_sizes must be positive"),
    ({"image_dtype": "float16"}, "--image_dtype must be uint8 or float32"),
    ({"optimizer": ["adam", "lamb"]}, "Unknown --optimizer lamb; expected one or more of adam, keras_adam"),
])
def test_settings_are_validated(overrides, message):
    with pytest.raises(ConfigError) as error:
        harness.validate(harness.Settings(**{"case": ["lite"], **overrides}))
    assert message in str(error.value)


def test_records_dir_must_hold_specs(tmp_path):
    settings = harness.Settings(case=["pipeline"], records_dir=str(tmp_path))
    with pytest.raises(DataError, match="holds no dataset_spec.json"):
        harness.run(settings, log=lambda line: None)


def _row(mode, n, gib, **extra):
    return {"case": "lite", "part": "step", "status": "ok", "error": None, "learner": "protonets", "backbone": "b",
            "mode": mode, "h": 40 if mode == "lite" else None, "support_size": n, "query_size": 40,
            "dtype_policy": "float32", "host_peak_above_baseline_gib": gib, "gpu_peak_gib": None, **extra}


def test_full_rows_predicted_over_the_memory_limit_are_skipped():
    settings = harness.Settings(case=["lite"], memory_limit_gb=20.0, time_budget_s=60.0)
    done = [_row("full", 100, 7.0)]  # 7 GiB for 140 images: 0.05 GiB per image
    spec = {key: value for key, value in _row("full", 400, 0).items() if key in (
        "case", "part", "learner", "dtype_policy", "query_size", "mode", "support_size")}
    assert harness._skip_reason(spec, done, settings, None) == "predicted 22.0 GiB > 20 GiB limit"
    assert harness._skip_reason({**spec, "support_size": 300}, done, settings, None) is None
    assert harness._skip_reason({**spec, "mode": "lite"}, done, settings, None) is None
    assert harness._skip_reason(spec, done, settings, deadline=0.0).startswith("time budget")


def test_schema_rejects_incomplete_rows():
    document = {"schema": results.SCHEMA, "machine": {}, "settings": {}, "summary": [],
                "rows": [_row("lite", 8, 1.0, first_step_s=1.0, step_s=0.5, images_per_s=96.0, query_size=40,
                              image_size=32, host_baseline_gib=1.0, device="CPU")]}
    results.validate(document)
    for broken, message in ((dict(step_s=None), "'step_s' must be present and finite"),
                            (dict(status="killed"), "status 'killed' needs an 'error' line"),
                            (dict(case="speed"), "case/part/status must be in"),
                            (dict(images_per_s=float("nan")), "'images_per_s' must be present and finite")):
        bad = {**document, "rows": [{**document["rows"][0], **broken}]}
        with pytest.raises(DataError, match=message):
            results.validate(bad)
    del document["rows"][0]["gpu_peak_gib"]
    with pytest.raises(DataError, match="'gpu_peak_gib' must be present"):
        results.validate(document)
    assert results.output_paths("a/b.md") == results.output_paths("a/b") == ("a/b.json", "a/b.md")


def test_synthetic_episode_shapes_dtypes_and_labels():
    episode = synthetic_episode(3, 7, [2, 0, 1], 8, image_dtype="uint8", seed=1)
    assert episode["support_images"].shape == (7, 8, 8, 3) and episode["support_images"].dtype == np.uint8
    assert episode["support_labels"].tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert episode["query_labels"].tolist() == [0, 0, 2] and int(episode["way"]) == 3
    floats = synthetic_episode(3, 7, 3, 8, seed=1)
    assert floats["query_images"].dtype == np.float32 and -1 <= floats["query_images"].min() < 0 < floats[
        "query_images"].max() <= 1
    same = synthetic_episode(3, 7, 3, 8, seed=1)
    assert all(np.array_equal(floats[key], same[key]) for key in floats)
    with pytest.raises(ValueError, match="support counts must be 3"):
        synthetic_episode(3, [1, 2], 3, 8)


def test_templated_episodes_are_learnable():
    """With templates, nearest-template classification of the queries is (nearly) perfect."""
    templates = np.random.default_rng(0).uniform(-1, 1, (10, 8, 8, 3))
    episode = synthetic_episode(5, [3] * 5, 20, 8, templates=templates, noise=0.3, seed=2)
    support = episode["support_images"].reshape(15, -1)
    means = np.stack([support[episode["support_labels"] == c].mean(0) for c in range(5)])
    queries = episode["query_images"].reshape(20, -1)
    predicted = np.argmin(((queries[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (predicted == episode["query_labels"]).mean() == 1.0
    uint8 = synthetic_episode(5, 5, 5, 8, templates=templates, image_dtype="uint8", seed=2)
    assert uint8["support_images"].dtype == np.uint8


def test_orbit_case_times_the_task_pipeline_and_a_step(tmp_path):
    settings = harness.Settings(case=["orbit"], backbone="conv4", support_sizes=[8], query_size=4, h=[4],
                                chunk_size=4, image_size=32, steps=1, modes=["lite"], episodes=2,
                                frames_per_video=6, work_dir=str(tmp_path), gin_files=[TINY])
    document = harness.run(settings, log=lambda line: None)
    results.validate(document)
    pipeline, step = document["rows"]
    assert (pipeline["part"], pipeline["status"], step["part"], step["status"]) == ("pipeline", "ok", "step", "ok")
    assert pipeline["images_per_s"] > 0 and pipeline["mean_images_per_episode"] > 0 and step["support_size"] == 8
    assert os.path.isdir(tmp_path / "orbit32" / "train")  # generated once, kept in --work_dir


def test_pipeline_case_reads_any_records_folder(tmp_path):
    """A root of dataset folders or one dataset folder, given with --records_dir."""
    from lite_tf.bench.pipeline import generate_records, record_folders

    folders = generate_records(str(tmp_path / "records"), 2, classes=5, images_per_class=6, record_size=24)
    assert record_folders(str(tmp_path / "records")) == folders and record_folders(folders[1]) == [folders[1]]
    settings = harness.Settings(case=["pipeline"], records_dir=folders[1], sources=[1], image_size=24,
                                episodes=2, warmup=1)
    (row,) = harness.run(settings, log=lambda line: None)["rows"]
    assert row["status"] == "ok" and row["sources"] == 1 and row["images_per_s"] > 0 and "folders" not in row
    with pytest.raises(ConfigError, match="--sources asks for 3 sources but --records_dir"):
        harness.run(harness.Settings(case=["pipeline"], records_dir=str(tmp_path / "records"), sources=[3]))


STUB_REFERENCE = {
    "__init__.py": "",
    "data/__init__.py": "",
    "data/config.py": "class EpisodeDescriptionConfig:\n    def __init__(self, **kwargs):\n        self.kwargs = kwargs\n",
    "data/dataset_spec.py": "def load_dataset_spec(folder):\n    return folder\n",
    "data/learning_spec.py": "import enum\nclass Split(enum.Enum):\n    TRAIN = 0\n    VALID = 1\n    TEST = 2\n",
    "data/decoder.py": ("import gin.tf\n@gin.configurable\nclass ImageDecoder:\n"
                        "    def __init__(self, image_size=None, data_augmentation=None):\n"
                        "        self.image_size = image_size\n"
                        "@gin.configurable\nclass DataAugmentation:\n"
                        "    def __init__(self, enable_jitter=False, jitter_amount=0, enable_gaussian_noise=False,\n"
                        "                 gaussian_noise_std=0.0):\n        pass\n"),
    "data/pipeline.py": (
        "import gin.tf\nimport tensorflow as tf\nfrom simclr import data_util  # noqa: F401\n"
        "@gin.configurable\ndef process_episode(support_decoder=None, query_decoder=None):\n"
        "    return support_decoder, query_decoder\n"
        "def make_one_source_episode_pipeline(spec, use_dag_ontology, use_bilevel_ontology, split,\n"
        "                                     episode_descr_config, image_size=None):\n"
        "    support, _ = process_episode()\n"
        "    assert support.image_size == image_size\n"
        "    images = tf.zeros([7, image_size, image_size, 3])\n"
        "    episode = (images, tf.zeros([7]), tf.zeros([7]), images[:3], tf.zeros([3]), tf.zeros([3]))\n"
        "    return tf.data.Dataset.from_tensors((episode, 0)).repeat()\n"),
}


def _stub_reference(root):
    """Stands in for a google-research/meta-dataset checkout: the functions and gin names the
    reference rows call, with the imports (gin.tf, simclr) that need stand-ins under TF 2.16+."""
    for name, text in STUB_REFERENCE.items():
        path = os.path.join(root, "meta_dataset", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as stream:
            stream.write(text)
    return root


def test_pipeline_case_rows_with_and_without_cache_beside_the_reference(tmp_path):
    from lite_tf.bench.pipeline import generate_records

    folders = generate_records(str(tmp_path / "records"), 1, classes=5, images_per_class=6, record_size=24)
    settings = harness.Settings(case=["pipeline"], records_dir=folders[0], sources=[1], image_size=24, episodes=2,
                                warmup=1, decoded_cache=["on", "off"],
                                reference_dir=_stub_reference(str(tmp_path / "meta-dataset")))
    document = harness.run(settings, log=lambda line: None)
    results.validate(document)
    rows = document["rows"]
    assert [(row["pipeline"], row["status"]) for row in rows] == [
        ("lite_tf", "ok"), ("lite_tf, no decoded cache", "ok"), ("reference (standard decoders)", "ok"),
        ("reference (plain decoders)", "ok")], [row.get("error") for row in rows]
    assert [row["mean_images_per_episode"] for row in rows[2:]] == [10, 10]  # the stub's 7 + 3 images
    ratios = [line for line in document["summary"] if "/ reference" in line]
    assert len(ratios) == 4 and all("x images/s" in line and "target >= 4x" in line for line in ratios)
    expected = rows[0]["images_per_s"] / rows[2]["images_per_s"]
    assert f"{expected:.2f}x" in ratios[0]
    assert "| lite_tf, no decoded cache |" in results.markdown(document)


@pytest.mark.parametrize("overrides,message", [
    ({"decoded_cache": ["maybe"]}, "--decoded_cache must be one or more of on, off; got maybe."),
    ({"reference_dir": "/nonexistent"}, "--reference_dir '/nonexistent' is not a google-research/meta-dataset "
                                        "checkout: expected meta_dataset/data/pipeline.py inside it."),
])
def test_pipeline_comparison_settings_are_validated(overrides, message):
    with pytest.raises(ConfigError) as error:
        harness.validate(harness.Settings(case=["pipeline"], **overrides))
    assert str(error.value) == message


def test_reference_decoders_are_validated(tmp_path):
    stub = _stub_reference(str(tmp_path))
    with pytest.raises(ConfigError, match="--reference_decoders must be one or more of standard, plain; got fancy"):
        harness.validate(harness.Settings(case=["pipeline"], reference_dir=stub, reference_decoders=["fancy"]))
