"""End to end through the absl launchers on tiny generated data: train, TensorBoard, resume, evaluate."""
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.launch_helpers import REPOSITORY, TINY_CONFIG, config, data_root, launch, start  # noqa: F401 (fixtures)


def scalar_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for root, _, files in os.walk(log_dir):
        if any(name.startswith("events.out") for name in files):
            accumulator = EventAccumulator(root, size_guidance={"tensors": 0, "images": 0})
            accumulator.Reload()
            tags |= {f"{os.path.basename(root)}/{tag}" for tag in accumulator.Tags()["tensors"]}
            tags |= {f"{os.path.basename(root)}/{tag}" for tag in accumulator.Tags()["images"]}
    return tags


def test_train_and_evaluate_through_the_command_line(tmp_path, config, data_root):
    model_dir = str(tmp_path / "run")
    result = launch("tools.train", f"--gin_config={config}", f"--data_root={data_root}", f"--model_dir={model_dir}",
                    "--verbose=0")
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("experiment.gin", "operative_config.gin", "best.weights.h5", "best.json", "checkpoints/checkpoint"):
        assert os.path.exists(os.path.join(model_dir, name)), name
    tags = scalar_tags(os.path.join(model_dir, "logs"))
    for tag in ("train/epoch_loss", "train/epoch_accuracy", "validation/epoch_loss", "validation/epoch_accuracy",
                "train/episode/way", "train/episode/support_size", "train/speed/images_per_second",
                "train/speed/episodes_per_second", "train/learning_rate", "train/memory/peak_resident_gib",
                "train/episode/support_by_class"):
        assert tag in tags, f"{tag} missing from TensorBoard logs ({sorted(tags)})"

    result = launch("tools.evaluate", f"--model_dir={model_dir}", f"--data_root={data_root}", "--episodes=5")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(os.path.join(model_dir, "eval_test.json")) as handle:
        report = json.load(handle)
    assert set(report["datasets"]) == {"glyphs", "shapes"}
    for entry in report["datasets"].values():
        assert 0.0 <= entry["accuracy"] <= 1.0 and entry["ci95"] >= 0.0 and entry["episodes"] == 5
    assert "| glyphs |" in result.stdout


def test_list_plugins_and_help():
    result = launch("tools.train", "--list_plugins")
    assert result.returncode == 0 and "protonets" in result.stdout and "efficientnet_b0" in result.stdout
    result = launch("tools.train", "--helpfull")
    assert "--gin_config" in result.stdout and "--model_dir" in result.stdout


def test_same_seed_gives_the_same_first_episode_loss(tmp_path, config, data_root):
    from lite_tf.experiment import train

    bindings = ["Training.epochs = 1", "Training.episodes_per_epoch = 1"]
    first = train(str(tmp_path / "a"), [config], bindings, data_root, verbose=0)
    second = train(str(tmp_path / "b"), [config], bindings, data_root, verbose=0)
    assert first["loss"] == pytest.approx(second["loss"], rel=1e-6)
    other = train(str(tmp_path / "c"), [config], bindings + ["Training.seed = 5"], data_root, verbose=0)
    assert other["loss"] != pytest.approx(first["loss"], rel=1e-6)


def test_resume_after_sigkill_continues_from_the_checkpoint(tmp_path, config, data_root, monkeypatch):
    from lite_tf import callbacks
    from lite_tf.experiment import train

    model_dir = str(tmp_path / "run")
    bindings = ["Training.epochs = 40", "Training.episodes_per_epoch = 2", "Training.validate_every = 20"]
    process = start("tools.train", f"--gin_config={config}", f"--data_root={data_root}",
                    f"--model_dir={model_dir}", "--verbose=0", *[f"--gin_bindings={b}" for b in bindings],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = os.path.join(model_dir, "checkpoints", "checkpoint")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        latest = tf.train.latest_checkpoint(os.path.dirname(index)) if os.path.exists(index) else None
        if latest and int(latest.rsplit("-", 1)[1]) >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    saved_epoch = int(saved.rsplit("-", 1)[1])
    assert 2 <= saved_epoch < 40
    reader = tf.train.load_checkpoint(saved)
    saved_iterations = reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")
    assert saved_iterations == 2 * saved_epoch

    # What the resumed run must start from: the saved weights, not a fresh initialisation.
    from lite_tf import experiment

    experiment.parse_gin([config], bindings)
    fresh, _ = experiment.build()
    initial_weights = [np.array(w) for w in fresh.get_weights()]
    tf.train.Checkpoint(model=fresh).restore(saved).expect_partial()
    saved_weights = [np.array(w) for w in fresh.get_weights()]
    assert any(not np.array_equal(a, b) for a, b in zip(saved_weights, initial_weights))

    restored = {}
    original_restore = callbacks.ResumableCheckpoint.restore

    def spy(self):
        epoch = original_restore(self)
        restored["epoch"] = epoch
        restored["iterations"] = int(self.checkpoint.optimizer.iterations.numpy())
        restored["weights"] = [np.array(w) for w in self.checkpoint.model.get_weights()]
        return epoch

    monkeypatch.setattr(callbacks.ResumableCheckpoint, "restore", spy)
    train(model_dir, [config], bindings, data_root, verbose=0)
    assert restored["epoch"] == saved_epoch
    assert restored["iterations"] == saved_iterations
    for got, expected in zip(restored["weights"], saved_weights):
        np.testing.assert_array_equal(got, expected)
    final = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")))
    assert final.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 80
    assert final.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 40


@pytest.mark.parametrize("binding,match", [
    ("Training.epochs = ", "Bad gin configuration"),
    ("Trainin.epochs = 3", "Bad gin configuration.*Trainin"),
    ("Training.epoch = 3", "Bad gin configuration.*epoch"),
    ("Training.epochs = 0", "Training.epochs must be a positive integer"),
])
def test_bad_configuration_fails_before_anything_is_written(tmp_path, config, data_root, binding, match):
    from lite_tf.experiment import ExperimentError
    from lite_tf.experiment import train

    model_dir = tmp_path / "run"
    with pytest.raises(ExperimentError, match=match):
        train(str(model_dir), [config], [binding], data_root, verbose=0)
    assert not model_dir.exists()


def test_missing_data_root_and_foreign_model_dir(tmp_path, config, data_root):
    from lite_tf.errors import DataError
    from lite_tf.experiment import ExperimentError
    from lite_tf.experiment import train

    with pytest.raises(DataError, match="does not exist"):
        train(str(tmp_path / "run"), [config], [], str(tmp_path / "nowhere"), verbose=0)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ExperimentError, match="Gin config file 'missing.gin' not found"):
        train(str(tmp_path / "run"), ["missing.gin"], [], data_root, verbose=0)

    model_dir = tmp_path / "existing"
    train(str(model_dir), [config], ["Training.epochs = 1", "Training.episodes_per_epoch = 1"], data_root, verbose=0)
    before = (model_dir / "experiment.gin").read_text()
    weights = (model_dir / "best.weights.h5").read_bytes()
    with pytest.raises(ExperimentError, match="holds a different experiment"):
        train(str(model_dir), [config], ["Training.epochs = 1", "Training.episodes_per_epoch = 1",
                                         "LiteConfig.h = 2"], data_root, verbose=0)
    assert (model_dir / "experiment.gin").read_text() == before
    assert (model_dir / "best.weights.h5").read_bytes() == weights


def test_nan_loss_stops_with_a_clear_message(tmp_path, config, data_root):
    from lite_tf.experiment import train

    with pytest.raises(FloatingPointError, match=r"Training stopped: the loss became (nan|inf) at episode \d+"):
        train(str(tmp_path / "run"), [config], ["Training.learning_rate = 1e30", "Training.optimizer = 'sgd'",
                                                "Training.episodes_per_epoch = 3"], data_root, verbose=0)


@pytest.mark.parametrize("path", sorted(
    os.path.relpath(os.path.join(root, name), REPOSITORY)
    for root, _, names in os.walk(os.path.join(REPOSITORY, "gin", "experiments")) for name in names
) + ["gin/quickstart.gin"])
def test_every_experiment_file_parses(path):
    """Each experiment file names only real configurables and parameters (checked without building,
    which for the paper's files would fetch ImageNet weights)."""
    from lite_tf.experiment import parse_gin

    text = parse_gin([path], [])
    assert "EpisodicModel.learner" in text and "Training." in text


PLUGIN_SOURCE = '''
from lite_tf.registry import register_source
from lite_tf.source import Source
from tests.helpers import episode_dataset


@register_source("generated_test_source")
class Generated(Source):
    """Learnable in-memory episodes: no data root needed."""

    def __init__(self, count=4):
        self.count = count

    def episodes(self, split, *, image_size, seed, data_root=None, datasets=None):
        return episode_dataset(seed, self.count, image_size=image_size).repeat()
'''


def test_a_source_from_an_installed_package_is_bound_by_name(tmp_path, monkeypatch):
    """A third-party source loads through the lite_tf.sources entry point and trains at the model's size."""
    from lite_tf import registry
    from lite_tf.experiment import train

    (tmp_path / "my_sources.py").write_text(PLUGIN_SOURCE)
    info = tmp_path / "my_sources-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-sources\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lite_tf.sources]\ngenerated = my_sources\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._PLUGINS_LOADED, "source", False)
    assert "generated_test_source" in registry.list_sources()
    config = tmp_path / "plugin.gin"
    config.write_text(TINY_CONFIG.replace("@sources.metadataset()", "@sources.generated_test_source()")
                      + "sources.generated_test_source.count = 3\nEpisodicModel.image_size = 16\n")
    logs = train(str(tmp_path / "run"), [str(config)], ["Training.epochs = 1"], None, verbose=0)
    assert 0.0 <= logs["accuracy"] <= 1.0 and np.isfinite(logs["loss"])
    setup = open(os.path.join(REPOSITORY, "setup.py")).read()
    assert '"metadataset = lite_tf.sources.metadataset"' in setup and '"orbit = lite_tf.sources.orbit"' in setup
