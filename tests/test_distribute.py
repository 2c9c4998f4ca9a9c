"""Data parallelism over tasks (lite_tf/distribute.py): 2 replicas x 1 task = 1 replica x 2 tasks,
per-replica seeds, and multi-worker training with checkpoints and resume after a killed worker.

Devices must be configured before TF initialises, so each scenario runs in a fresh process
(tests/distribute_children.py).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lite_tf import distribute
from lite_tf.errors import ConfigError
from tests.launch_helpers import free_ports

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "distribute_children.py")
ROOT = os.path.dirname(HERE)


def _environment(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", **extra)
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _result(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, f"child printed no result:\n{output[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def mirrored():
    run = subprocess.run([sys.executable, CHILD, "mirrored"], env=_environment(), capture_output=True,
                         text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    return _result(run.stdout)


@pytest.mark.parametrize("mode", ["full", "exact", "lite"])
def test_two_replicas_equal_one_replica_accumulating_two_tasks(mirrored, mode):
    assert mirrored["replicas"] == 2
    result = mirrored[mode]
    assert result["iterations"] == 1  # one update
    assert result["moved"] > 1e-4  # the update did something
    assert result["difference"] < 1e-5  # and the same thing (full/exact via fit; lite with H forced)


def test_replica_seeds_differ_and_repeat(mirrored):
    first, second = mirrored["seeds"]
    assert first == [5, 5 + distribute.SEED_STRIDE]
    assert first == second


def test_replicas_draw_different_subsets_reproducibly(mirrored):
    first, second = mirrored["subsets"]
    assert first[0] != first[1]  # the subset seed's state is mirrored; the replica id is folded in
    assert first == second


def test_tasks_per_update_counts_tasks_across_replicas():
    class Two:
        num_replicas_in_sync = 2

    assert distribute.accumulation_steps(None, Two()) == 1
    assert distribute.accumulation_steps(6, Two()) == 3
    with pytest.raises(ConfigError, match="multiple of the 2 replicas"):
        distribute.accumulation_steps(3, Two())


def test_bad_strategy_names_and_cluster(monkeypatch):
    with pytest.raises(ConfigError, match="Unknown Training.strategy 'tpu'"):
        distribute.make_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs TF_CONFIG"):
        distribute.make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid"):
        distribute.make_strategy("multi_worker")
    assert distribute.make_strategy(None).num_replicas_in_sync == 1


# ------------------------------------------------------------------ multi-worker
def _start_workers(directory: str, steps: int) -> list:
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen([sys.executable, CHILD, "worker", directory, str(steps)],
                                          env=_environment(TF_CONFIG=json.dumps(config)),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def _finish(processes: list, timeout: float) -> list:
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, err[-3000:]
            results.append(_result(out))
    finally:
        _kill(processes)
    return results


def _kill(processes: list) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)


def _checkpoints(directory: str) -> list:
    return sorted(int(name.split("-")[1].split(".")[0]) for name in os.listdir(directory)
                  if name.startswith("ckpt-") and name.endswith(".index"))


def test_multi_worker_trains_and_checkpoints(tmp_path):
    directory = str(tmp_path)
    results = _finish(_start_workers(directory, 3), timeout=240)
    assert [r["chief"] for r in results] == [True, False]
    assert all(r["replicas"] == 2 and r["restored"] == 0 and r["iterations"] == 3 for r in results)
    assert results[0]["checksum"] == pytest.approx(results[1]["checksum"], rel=1e-6)  # in sync
    assert _checkpoints(directory)[-1] == 3  # the chief's checkpoints; the worker's went to scratch


@pytest.mark.slow
def test_multi_worker_resumes_after_a_worker_is_killed(tmp_path):
    directory = str(tmp_path)
    processes = _start_workers(directory, 1000)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (os.path.isdir(directory) and len(_checkpoints(directory)) >= 2):
            assert all(p.poll() is None for p in processes), processes[0].stderr.read()[-3000:]
            time.sleep(0.5)
        saved = _checkpoints(directory)
        assert len(saved) >= 2, "no checkpoint within 240 s"
        processes[1].send_signal(signal.SIGKILL)  # a worker dies; the chief is stuck in a collective
    finally:
        _kill(processes)
    latest = _checkpoints(directory)[-1]
    results = _finish(_start_workers(directory, latest + 2), timeout=240)
    assert all(r["restored"] == latest and r["iterations"] == latest + 2 for r in results)
    assert results[0]["checksum"] == pytest.approx(results[1]["checksum"], rel=1e-6)
