"""Pipelines are built, iterated and dropped, and processes exit, without ever hanging.

The old pipeline read records in a Python generator (``from_generator``); tearing down an iterator
could then deadlock (the destructor holds the GIL the generator thread waits for). Now no Python
runs inside the tf.data runtime: the graph holds no generator or py_function op, and fresh
processes that build, iterate and drop pipelines (and exit with one still mid-stream) all finish
within a timeout; both for Meta-Dataset class files and for Google's TFDS build (lite_tf.data.md_tfds)."""
import os
import subprocess
import sys
import textwrap

import pytest

from lite_tf.data.metadataset import pipeline
from lite_tf.data.synthetic import fake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON_OPS = (b"GeneratorDataset", b"PyFunc", b"EagerPyFunc", b"PyFuncStateless")

WORKER = textwrap.dedent("""
    import gc, sys
    from lite_tf.data import md_tfds
    from lite_tf.data.metadataset import pipeline
    layout, folder, pipelines, episodes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    def make(**options):
        if layout == "tfds":
            return md_tfds.make_tfds_episode_dataset(folder, ["aircraft"], "TRAIN", 16, **options)
        return pipeline.make_episode_dataset(folder, "TRAIN", image_size=16, **options)

    for number in range(pipelines):
        dataset = make(seed=number, episodes_ahead=8, cache_bytes=0 if number % 2 else 2**30,
                       decoded_cache_bytes=0 if number % 4 < 2 else 2**30)
        iterator = iter(dataset)
        for _ in range(episodes):
            next(iterator)
        del iterator, dataset
        gc.collect()
    left_running = iter(make(seed=99))
    next(left_running)  # the process exits with this iterator mid-stream (where the old code hung)
    print("done", flush=True)
""")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("records") / "toy")
    fake.write_fake_dataset(fake.flat_toy_spec("toy", path, classes=(30, 0, 0), images=6), path, image_size=20)
    return path


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    from tests.md_tfds_mock import build

    return build(str(tmp_path_factory.mktemp("tfds")))


@pytest.fixture(params=["records", "tfds"])
def layout(request):
    """(layout, its folder): class files, or Google's TFDS build read by lite_tf.data.md_tfds."""
    return request.param, request.getfixturevalue("folder" if request.param == "records" else "tfds_dir")


def _run_workers(layout, processes, pipelines, episodes, timeout):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="3")
    for number in range(processes):
        try:
            result = subprocess.run([sys.executable, "-c", WORKER, *layout, str(pipelines), str(episodes)],
                                    capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            pytest.fail(f"process {number} did not finish within {timeout} s (pipeline teardown hung)")
        assert result.returncode == 0 and "done" in result.stdout, result.stderr[-2000:]


def test_graph_runs_no_python(folder, tfds_dir):
    from lite_tf.data import md_tfds

    for cache, decoded_cache in ((0, 0), (2**30, 0), (2**30, 2**30)):
        options = dict(cache_bytes=cache, decoded_cache_bytes=decoded_cache, episodes_ahead=4)
        for dataset in (pipeline.make_episode_dataset(folder, "TRAIN", image_size=16, **options),
                        md_tfds.make_tfds_episode_dataset(tfds_dir, ["aircraft"], "TRAIN", 16, **options)):
            graph = dataset._as_serialized_graph().numpy()
            assert b"TensorSliceDataset" in graph or b"CounterDataset" in graph or b"RangeDataset" in graph
            assert not [op for op in PYTHON_OPS if op in graph]


def test_fifty_pipelines_in_fresh_processes(layout):
    # The TFDS layout shares every tf.data stage with the class files; only its reader differs, so a
    # shorter loop covers it by default (--runslow: 50 fresh processes of each layout).
    processes, pipelines = (2, 25) if layout[0] == "records" else (1, 12)
    _run_workers(layout, processes=processes, pipelines=pipelines, episodes=2, timeout=300)


@pytest.mark.slow
def test_fifty_fresh_processes(layout):
    _run_workers(layout, processes=50, pipelines=1, episodes=45, timeout=240)
