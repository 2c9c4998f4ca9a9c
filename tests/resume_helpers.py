"""What "a killed run ends where an uninterrupted one does" compares, and a trainer that kills itself
at a chosen point (``python tests/kill_child.py POINT N <train flags>``, see that file)."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from launch_helpers import REPOSITORY, launcher_env

KILL_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kill_child.py")
# Wall-clock values differ from run to run by nature; every other TensorBoard value is compared.
UNTIMED = ("speed/", "memory/")


def checkpoint_tensors(model_dir) -> dict:
    """Every tensor of the latest checkpoint (model, optimizer, epoch, subset-seed state) but the
    save counter (how many saves this process made, not state)."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(str(model_dir), "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if not name.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))}


def best_weights(model_dir) -> dict:
    """Every array of best.weights.h5 by its path in the file."""
    import h5py

    arrays = {}
    with h5py.File(os.path.join(str(model_dir), "best.weights.h5"), "r") as handle:
        handle.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                          if isinstance(item, h5py.Dataset) else None)
    return arrays


def scalars(model_dir) -> dict:
    """{(writer folder, tag, step): value} of every TensorBoard summary; a (folder, tag, step) seen
    twice fails (an epoch or episode logged twice)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(str(model_dir), "logs", "*", "events.out.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith(UNTIMED):
                    continue
                key = (os.path.basename(os.path.dirname(path)), value.tag, event.step)
                assert key not in found, f"{key} logged twice"
                found[key] = tf.make_ndarray(value.tensor).tolist()
    return found


def assert_same_run(model_dir, reference) -> None:
    """Bit for bit: checkpoint tensors, best weights, best.json and TensorBoard values."""
    got, expected = checkpoint_tensors(model_dir), checkpoint_tensors(reference)
    assert sorted(got) == sorted(expected)
    differ = [name for name in expected if not np.array_equal(got[name], expected[name])]
    assert not differ, f"{len(differ)} of {len(expected)} checkpoint tensors differ: {differ}"
    got, expected = best_weights(model_dir), best_weights(reference)
    assert sorted(got) == sorted(expected)
    assert all(np.array_equal(got[name], expected[name]) for name in expected), "best.weights.h5 differs"
    assert (json.load(open(os.path.join(str(model_dir), "best.json")))
            == json.load(open(os.path.join(str(reference), "best.json"))))
    got, expected = scalars(model_dir), scalars(reference)
    assert sorted(got) == sorted(expected), set(got) ^ set(expected)
    assert got == expected, [key for key in expected if got[key] != expected[key]]


def train_flags(config, data_root, model_dir, bindings) -> list:
    return [f"--gin_config={config}", f"--data_root={data_root}", f"--model_dir={model_dir}", "--verbose=0",
            *[f"--gin_bindings={b}" for b in bindings]]


def run_killed(point: str, occurrence: int, flags: list, timeout: float = 300) -> bool:
    """Runs the trainer until it kills itself at the ``occurrence``-th ``point``; True if it did
    (False: it finished first, with status 0)."""
    result = subprocess.run([sys.executable, KILL_CHILD, point, str(occurrence), *flags], cwd=REPOSITORY,
                            env=launcher_env(), capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode in (0, -9), (result.returncode, result.stderr[-3000:])
    return result.returncode == -9
