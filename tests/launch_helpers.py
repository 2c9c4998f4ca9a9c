"""A tiny experiment (conv4 on 32 px generated data) and a launcher runner, shared by launcher tests."""
import os
import subprocess
import sys

import pytest

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_CONFIG = """
EpisodicModel.learner = @learners.protonets()
EpisodicModel.image_size = 32
EpisodicModel.lite = @LiteConfig()
EpisodicModel.seed = 0
learners.protonets.backbone = 'conv4'
backbones.conv4.filters = 8
backbones.conv4.blocks = 2
LiteConfig.h = 3
LiteConfig.chunk_size = 4
Training.source = @sources.metadataset()
EpisodeSampler.num_ways = 3
EpisodeSampler.num_support = 2
EpisodeSampler.num_query = 2
Training.epochs = 2
Training.episodes_per_epoch = 3
Training.validation_episodes = 2
Training.image_log_every = 1
Training.statistics_every = 1
"""


def make_tiny_data(root: str, sources=("glyphs", "shapes"), classes_per_split=(4, 3, 3), images_per_class=6) -> str:
    from lite_tf.data.synthetic.demo import make_demo_data

    make_demo_data(root, list(sources), image_size=32, classes_per_split=list(classes_per_split),
                   images_per_class=images_per_class, seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """Two tiny generated record sets (glyphs, shapes: 4/3/3 classes of 6 images at 32 px)."""
    return make_tiny_data(str(tmp_path_factory.mktemp("demo")))


@pytest.fixture
def config(tmp_path):
    """TINY_CONFIG as a gin file."""
    path = tmp_path / "tiny.gin"
    path.write_text(TINY_CONFIG)
    return str(path)


def launcher_env(quiet: bool = True) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the launchers quiet TensorFlow themselves
    if not quiet:
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env


def launch(*args, timeout=600, **kwargs):
    """Runs ``python -m <args>`` from the repository (a failure case must end within ``timeout``)."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPOSITORY, env=launcher_env(), capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def start(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPOSITORY, env=launcher_env(), **kwargs)


def run_tool(module, *argv) -> int:
    """Runs a tools/ launcher's ``main`` in this process, as its console script would (flags on absl's
    FLAGS, errors through lite_tf.cli); returns the exit status. Its flags are removed afterwards."""
    from absl import flags

    from lite_tf import cli

    before = set(flags.FLAGS)
    module.define_flags()
    added = set(flags.FLAGS) - before
    try:
        remaining = flags.FLAGS(["tool", *argv])
        with pytest.raises(SystemExit) as exit:
            cli.main_or_error(module.main)(remaining)
        return exit.value.code
    finally:
        flags.FLAGS.unparse_flags()
        for name in added:
            delattr(flags.FLAGS, name)


def assert_complete(model_dir, config_text=None):
    """What a model dir may hold at any moment: complete files only, finite weights, no blocking leftovers."""
    import json

    import numpy as np
    import tensorflow as tf

    from lite_tf import experiment

    model_dir = str(model_dir)
    if not os.path.isdir(model_dir):
        return
    names = os.listdir(model_dir)
    if "experiment.gin" in names and config_text is not None:
        assert open(os.path.join(model_dir, "experiment.gin")).read() == config_text
    checkpoints = os.path.join(model_dir, "checkpoints")
    latest = tf.train.latest_checkpoint(checkpoints) if os.path.isdir(checkpoints) else None
    if latest is not None:
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            if np.issubdtype(np.asarray(value).dtype, np.floating):
                assert np.all(np.isfinite(value)), f"{latest}: {name} is not finite"
    if "best.weights.h5" in names:
        model, _ = experiment.load_run(model_dir)
        experiment.load_weights(model, model_dir, "best")  # complete, loadable and finite
    if "best.json" in names:
        json.load(open(os.path.join(model_dir, "best.json")))


def free_ports(count: int) -> list:
    """``count`` loopback ports free right now (for a local TF_CONFIG cluster)."""
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
