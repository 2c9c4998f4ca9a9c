"""ORBIT under faults: a corrupt frame is named in training and evaluation, ``--strict`` from the
command line, and single-sample intervals print "n/a" rather than a zero-width interval."""
import dataclasses
import os
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from lite_tf.learners.protonets import ProtoNets
from lite_tf.data.orbit.index import OrbitDataError
from lite_tf.data.orbit.pipeline import orbit_eval_tasks, orbit_train_dataset
from lite_tf.data.orbit.protocol import NEURIPS21
from lite_tf.data.orbit.synthetic import make_orbit_folder
from lite_tf.eval.orbit_evaluation import OrbitEvaluator, markdown_table
from lite_tf.eval.orbit_metrics import VideoResult, summarize
from lite_tf.lite import LiteConfig
from lite_tf.model import EpisodicModel
from tests.launch_helpers import launch

SIZE = 16
# every context frame of every object in every task: the corrupt frame is always drawn
EVERYTHING = dataclasses.replace(NEURIPS21, clip_length=2, train_way_method="max", train_context_shot_method="max",
                                 train_context_clips="max", train_target_clips=1, test_context_clips=1)
REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def broken(tmp_path):
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"train": 1, "test": 1}, objects_per_user=2,
                             clean_videos=2, clutter_videos=1, frames_per_video=4, frame_size=SIZE)
    paths = []
    for split in ("train", "test"):
        user = sorted(os.listdir(os.path.join(root, split)))[0]
        obj = sorted(os.listdir(os.path.join(root, split, user)))[0]
        video = sorted(os.listdir(os.path.join(root, split, user, obj, "clean")))[0]
        path = os.path.join(root, split, user, obj, "clean", video, f"{video}-00002.jpg")
        with open(path, "r+b") as stream:  # a JPEG header followed by garbage
            stream.seek(20)
            stream.write(b"\x00" * 200)
            stream.truncate(300)
        paths.append(path)
    return root, str(tmp_path / "cache"), paths


def test_corrupt_frame_named_in_training(broken):
    root, cache, (bad, _) = broken
    dataset = orbit_train_dataset(root, frame_size=SIZE, protocol=EVERYTHING, num_tasks=2, cache_dir=cache)
    with pytest.raises(tf.errors.InvalidArgumentError, match=os.path.basename(bad)) as error:
        list(dataset)
    assert "ORBIT frame(s) that could not be decoded" in error.value.message
    model = EpisodicModel(ProtoNets(backbone="conv4"), SIZE, lite=LiteConfig(mode="lite", h=2, chunk_size=4))
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(tf.errors.InvalidArgumentError, match=os.path.basename(bad)):
        model.fit(orbit_train_dataset(root, frame_size=SIZE, protocol=EVERYTHING, num_tasks=2, cache_dir=cache),
                  epochs=1, verbose=0)


def test_corrupt_frame_named_in_evaluation(broken):
    root, cache, (_, bad) = broken
    model = EpisodicModel(ProtoNets(backbone="conv4"), SIZE, lite=LiteConfig(mode="lite", h=2, chunk_size=4))
    protocol = dataclasses.replace(EVERYTHING, test_context_clips="max")
    tasks = orbit_eval_tasks(root, split="test", frame_size=SIZE, protocol=protocol, tasks_per_user=1,
                             cache_dir=cache, target_types=("clutter",))
    with pytest.raises(OrbitDataError, match=os.path.basename(bad)):
        OrbitEvaluator(count_macs=False, progress=False).evaluate_tasks(model, tasks)


def test_strict_on_the_command_line(tmp_path):
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"test": 1}, objects_per_user=2, clean_videos=2,
                             clutter_videos=1, frames_per_video=2, frame_size=SIZE)
    user = os.listdir(os.path.join(root, "test"))[0]
    obj = sorted(os.listdir(os.path.join(root, "test", user)))[0]
    video = os.listdir(os.path.join(root, "test", user, obj, "clean"))[0]
    stray = os.path.join(root, "test", user, obj, "clean", video, "notes.txt")
    open(stray, "w").write("not a frame")
    command = [sys.executable, "-m", "tools.orbit_evaluate", "--gin_config=gin/experiments/orbit_protonets.gin",
               f"--gin_bindings=ORBIT_ROOT = '{root}'", f"--gin_bindings=ORBIT_CACHE_DIR = '{tmp_path / 'cache'}'",
               f"--gin_bindings=FRAME_SIZE = {SIZE}", "--gin_bindings=learners.protonets.backbone = 'conv4'",
               "--checkpoint=init", "--count_macs=false", "--tasks_per_user=1", f"--output={tmp_path / 'r'}"]
    strict = subprocess.run(command + ["--strict"], capture_output=True, text=True, cwd=REPOSITORY, timeout=300)
    assert strict.returncode != 0 and "notes.txt" in strict.stderr
    assert not os.path.exists(tmp_path / "r.json") and not os.path.exists(tmp_path / "r.md")
    lenient = subprocess.run(command, capture_output=True, text=True, cwd=REPOSITORY, timeout=300)
    assert lenient.returncode == 0, lenient.stderr[-2000:]
    assert os.path.exists(tmp_path / "r.json") and os.path.exists(tmp_path / "r.md")
    assert "| clean (CLE-VE) | per video |" in lenient.stdout and "| clutter (CLU-VE) | per video |" in lenient.stdout


def test_the_evaluate_command_scores_an_orbit_run_with_the_sources_evaluator(tmp_path):
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"test": 1}, objects_per_user=2, clean_videos=2,
                             clutter_videos=1, frames_per_video=2, frame_size=SIZE)
    run = tmp_path / "run"
    run.mkdir()
    (run / "experiment.gin").write_text(
        "include 'gin/experiments/orbit_protonets.gin'\n"
        f"ORBIT_ROOT = '{root}'\nORBIT_CACHE_DIR = '{tmp_path / 'cache'}'\nFRAME_SIZE = {SIZE}\n"
        "learners.protonets.backbone = 'conv4'\norbit_eval_tasks.tasks_per_user = 1\n")
    command = ["tools.evaluate", f"--model_dir={run}", "--checkpoint=init"]
    refused = launch(*command, "--episodes=5", timeout=300)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "error: sources.orbit is evaluated on every task of the protocol (tasks per user), not on a number of "
        "episodes; drop --episodes=5."), refused.stderr[-2000:]
    done = launch(*command, "--datasets=clutter", timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| clutter (CLU-VE) | per video | 2 |" in done.stdout and "clean (CLE-VE)" not in done.stdout
    assert sorted(os.listdir(run)) == ["experiment.gin", "orbit_test.json", "orbit_test.md"]


def test_single_sample_intervals_are_not_available():
    one = summarize([VideoResult("A", 0, "cup", 0, "v1", "clutter", [0, 1, 0])])
    assert one["per_video"]["frame_accuracy"] == {"mean": pytest.approx(2 / 3), "ci95": None, "n": 1}
    assert one["per_user"]["frame_accuracy"]["ci95"] is None
    two = summarize([VideoResult("A", 0, "cup", 0, "v1", "clutter", [0, 1, 0]),
                     VideoResult("A", 0, "key", 1, "v2", "clutter", [1, 1])])
    assert two["per_video"]["frame_accuracy"]["ci95"] == pytest.approx(1.96 * (1 / 6) / 2 ** 0.5)
    assert two["per_task"]["frame_accuracy"] == {"mean": pytest.approx(4 / 5), "ci95": None, "n": 1}
    assert two["per_object"]["frame_accuracy"]["n"] == 2
    rows = {"clutter": {"name": "CLU-VE", **one, "personalization": {
        "tasks": 1, "macs": {"mean": 2e9, "std": 0.0, "n": 1}, "seconds": None}}}
    text = markdown_table(rows)
    assert "| clutter (CLU-VE) | per video | 1 | 66.67 +- n/a | 100.00 +- n/a | 0.00 +- n/a |" in text
    assert "| clutter (CLU-VE) | per task | 1 | 66.67 +- n/a | - | - |" in text and "+- 0.00" not in text
    assert "| clutter (CLU-VE) | 1 | 2.000G (0.000G) | n/a |" in text


def test_evaluator_options_and_source_are_checked():
    from lite_tf.errors import ConfigError
    from lite_tf.sources.metadataset import MetaDataset

    for option in ({"batch_size": 0}, {"max_tasks": -1}, {"tasks_per_user": 1.5}):
        with pytest.raises(ConfigError, match="must be a positive integer"):
            OrbitEvaluator(**option)
    model = EpisodicModel(ProtoNets(backbone="conv4"), SIZE)
    with pytest.raises(ConfigError, match="needs an ORBIT source"):
        OrbitEvaluator().evaluate(model, MetaDataset(), "test")


TEARDOWN = """
import sys
from lite_tf.data.orbit.pipeline import orbit_train_dataset
iterator = iter(orbit_train_dataset(sys.argv[1], frame_size=16, cache_dir=sys.argv[2]))
for _ in range(3):
    next(iterator)
print("read")
"""


def _build_iterate_drop(tmp_path, runs):
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"train": 2}, objects_per_user=3, clean_videos=2,
                             clutter_videos=2, frames_per_video=12, frame_size=SIZE)
    script = tmp_path / "teardown.py"
    script.write_text(TEARDOWN)
    env = {**os.environ, "PYTHONPATH": REPOSITORY}
    for run in range(runs):  # the iterator is dropped mid-stream at exit, with tasks in flight
        done = subprocess.run([sys.executable, str(script), root, str(tmp_path / "cache")], capture_output=True,
                              text=True, timeout=120, env=env)
        assert done.returncode == 0 and "read" in done.stdout, (run, done.stderr[-2000:])


def test_pipeline_teardown_does_not_hang(tmp_path):
    _build_iterate_drop(tmp_path, 3)


@pytest.mark.slow
def test_pipeline_teardown_does_not_hang_50_times(tmp_path):
    _build_iterate_drop(tmp_path, 50)
