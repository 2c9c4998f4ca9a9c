"""Scaling out through the launcher: ``tools.train --cpu_devices=N`` gives 'mirrored' N replicas on a
CPU-only machine; two ``tools.train`` processes with TF_CONFIG on loopback ports train one
multi-worker run, only the chief writes the model dir, a killed worker or chief stops the other with
one line (no hang), and rerunning both resumes to exactly the uninterrupted run's files.

Multi-process runs are slow on a 2-core machine: only the one-process flag check runs by default.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from launch_helpers import REPOSITORY, TINY_CONFIG, data_root, launch, launcher_env  # noqa: F401 (fixture)
from resume_helpers import assert_same_run, run_killed, train_flags
from tests.launch_helpers import free_ports

MIRRORED = ["Training.strategy = 'mirrored'", "Training.tasks_per_update = 2", "Training.epochs = 3",
            "Training.episodes_per_epoch = 2"]
MULTI_WORKER = ["Training.strategy = 'multi_worker'", "Training.tasks_per_update = 2", "Training.epochs = 3",
                "Training.episodes_per_epoch = 2"]
STOP_SECONDS = 120  # a dead peer is noticed by TF's coordination-service heartbeat (about 10 s)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "tiny.gin"
    path.write_text(TINY_CONFIG)
    return str(path)


def test_cpu_devices_gives_mirrored_that_many_replicas(tmp_path, config, data_root):  # noqa: F811
    from lite_tf import distribute
    from lite_tf.errors import ConfigError

    # 3 tasks per update cannot be split over the 2 replicas --cpu_devices=2 made: the launcher says so.
    result = launch("tools.train", "--cpu_devices=2",
                    *train_flags(config, data_root, tmp_path / "run", MIRRORED[:1] + ["Training.tasks_per_update = 3"]),
                    timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "error: Training.tasks_per_update = 3 must be a positive multiple of the 2 replicas in sync (each replica "
        "trains on one task per step)."], result.stderr[-3000:]
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match=r"^--cpu_devices must be an integer from 1 to 64; got 0\.$"):
        distribute.local_cpu_devices(0)


@pytest.mark.slow
def test_mirrored_on_cpu_devices_resumes_to_the_uninterrupted_run(tmp_path, config, data_root):  # noqa: F811
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    result = launch("tools.train", "--cpu_devices=2", *train_flags(config, data_root, reference, MIRRORED))
    assert result.returncode == 0, result.stderr[-3000:]
    flags = ["--cpu_devices=2", *train_flags(config, data_root, killed, MIRRORED)]
    assert run_killed("checkpoint", 2, flags)
    result = launch("tools.train", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(killed, reference)


# ------------------------------------------------------------------ multi-worker
def start_cluster(config, data_root, model_dir, bindings) -> list:  # noqa: F811
    """Two tools.train processes, worker 0 the chief, on fresh loopback ports."""
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        env = dict(launcher_env(), TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                                         "task": {"type": "worker", "index": index}}))
        processes.append(subprocess.Popen([sys.executable, "-m", "tools.train",
                                           *train_flags(config, data_root, model_dir, bindings)],
                                          cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
    return processes


def finish(processes, timeout=600) -> list:
    """(status, stderr) of each process; kills every one still running after ``timeout`` seconds."""
    deadline, results = time.time() + timeout, []
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=max(deadline - time.time(), 1))
            results.append((process.returncode, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    return results


def run_cluster(config, data_root, model_dir, bindings):  # noqa: F811
    results = finish(start_cluster(config, data_root, model_dir, bindings))
    assert [status for status, _ in results] == [0, 0], [stderr[-3000:] for _, stderr in results]


@pytest.fixture(scope="module")
def multi_worker_reference(tmp_path_factory, data_root):  # noqa: F811
    folder = tmp_path_factory.mktemp("multi_worker")
    config = folder / "tiny.gin"
    config.write_text(TINY_CONFIG)
    run_cluster(str(config), data_root, str(folder / "run"), MULTI_WORKER)
    return str(config), str(folder / "run")


@pytest.mark.slow
def test_two_launcher_workers_train_and_only_the_chief_writes(multi_worker_reference, data_root):  # noqa: F811
    _, model_dir = multi_worker_reference
    names = sorted(os.listdir(model_dir))
    assert names == [".lock", "best.json", "best.weights.h5", "checkpoints", "experiment.gin", "logs",
                     "operative_config.gin"], names
    assert sorted(os.listdir(os.path.join(model_dir, "checkpoints"))) == [
        "checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index", "ckpt-3.data-00000-of-00001", "ckpt-3.index"]
    assert open(os.path.join(model_dir, ".lock")).read().strip().isdigit()


@pytest.mark.slow
@pytest.mark.parametrize("victim", [1, 0], ids=["worker-killed", "chief-killed"])
def test_a_killed_worker_stops_the_other_with_one_line_and_a_rerun_ends_as_the_uninterrupted_run(
        tmp_path, multi_worker_reference, data_root, victim):  # noqa: F811
    config, reference = multi_worker_reference
    model_dir = str(tmp_path / "run")
    processes = start_cluster(config, data_root, model_dir, MULTI_WORKER)
    index = os.path.join(model_dir, "checkpoints", "checkpoint")
    deadline = time.time() + 600
    while time.time() < deadline and not os.path.exists(index) and all(p.poll() is None for p in processes):
        time.sleep(0.2)
    assert os.path.exists(index), [p.communicate(timeout=60)[1][-2000:] for p in processes]
    processes[victim].send_signal(signal.SIGKILL)
    killed_at = time.time()
    survivor = processes[1 - victim]
    (status, stderr), = finish([survivor], timeout=STOP_SECONDS)
    finish(processes, timeout=30)
    assert time.time() - killed_at < STOP_SECONDS
    lines = stderr.strip().splitlines()
    assert status == 2 and len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith(f"error: Training stopped: /job:worker/replica:0/task:{victim} of the TF_CONFIG "
                               "cluster stopped ("), lines
    assert lines[0].endswith("Restart every worker with the same command to resume."), lines
    run_cluster(config, data_root, model_dir, MULTI_WORKER)
    assert_same_run(model_dir, reference)
