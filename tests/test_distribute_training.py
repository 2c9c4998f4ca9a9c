"""Training.strategy through the launch path: lite_tf.experiment.train under MirroredStrategy.

Runs in a fresh process (logical CPU devices must be configured before TensorFlow starts): two
replicas train the tiny experiment with 2 tasks per update, checkpoint every epoch and resume.
"""
import json
import os
import subprocess
import sys
import textwrap

from launch_helpers import REPOSITORY, TINY_CONFIG, data_root, launcher_env  # noqa: F401  (fixture)

CHILD = textwrap.dedent("""
    import json, sys
    from lite_tf import distribute
    distribute.local_cpu_devices(2)
    from lite_tf.experiment import train
    from lite_tf.errors import LiteTfError
    config, model_dir, data_root, epochs = sys.argv[1:5]
    bindings = ["Training.strategy = 'mirrored'", "Training.tasks_per_update = 2", f"Training.epochs = {epochs}"]
    try:
        logs = train(model_dir, [config], bindings, data_root=data_root, verbose=0, resume_with_changes=True)
    except LiteTfError as error:
        print(json.dumps({"error": str(error)}))
        sys.exit(0)
    import tensorflow as tf
    print(json.dumps({"logs": {k: float(v) for k, v in logs.items()},
                      "replicas": tf.distribute.get_strategy().num_replicas_in_sync}))
""")


def _run(config, model_dir, data_root, epochs):
    result = subprocess.run([sys.executable, "-c", CHILD, config, model_dir, data_root, str(epochs)],
                            cwd=REPOSITORY, env=launcher_env(quiet=False), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_mirrored_training_checkpoints_and_resumes(tmp_path, data_root):  # noqa: F811
    config = tmp_path / "tiny.gin"
    config.write_text(TINY_CONFIG)
    model_dir = str(tmp_path / "run")
    first = _run(str(config), model_dir, data_root, 1)
    assert "error" not in first, first
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(first["logs"])
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert latest is not None and tf.train.load_checkpoint(latest).get_tensor(
        "epoch/.ATTRIBUTES/VARIABLE_VALUE") == 1
    assert os.path.isfile(os.path.join(model_dir, "best.weights.h5"))
    second = _run(str(config), model_dir, data_root, 2)  # resumes at epoch 1, trains epoch 2
    assert "error" not in second, second
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert tf.train.load_checkpoint(latest).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 2


def test_tasks_per_update_must_divide_among_the_replicas(tmp_path, data_root):  # noqa: F811
    config = tmp_path / "tiny.gin"
    config.write_text(TINY_CONFIG + "\nTraining.tasks_per_update = 3\n")
    child = CHILD.replace('"Training.tasks_per_update = 2", ', "")
    result = subprocess.run([sys.executable, "-c", child, str(config), str(tmp_path / "run"), data_root, "1"],
                            cwd=REPOSITORY, env=launcher_env(quiet=False), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    error = json.loads(result.stdout.strip().splitlines()[-1])["error"]
    assert "tasks_per_update = 3 must be a positive multiple of the 2 replicas" in error
    assert not os.path.exists(str(tmp_path / "run" / "experiment.gin"))
