"""Data parallelism over tasks with ``tf.distribute``: one episode per replica, gradients all-reduced.

LITE makes one large task fit on one accelerator; with several, each replica trains on its own
episode and the optimizer all-reduces (sums) the replicas' gradients, so ``EpisodicModel`` divides
each replica's loss by ``num_replicas_in_sync``: R replicas x 1 task is then exactly one replica
accumulating R tasks. Keras ``fit`` runs unchanged inside ``strategy.scope()``.

Strategies by name (``Training.strategy``):
  None            the default (one device);
  'mirrored'      ``MirroredStrategy`` over this machine's GPUs (or the given devices; without a
                  GPU, the logical CPUs ``local_cpu_devices`` made: ``tools.train --cpu_devices``);
  'multi_worker'  ``MultiWorkerMirroredStrategy``; the cluster comes from ``TF_CONFIG``.

Input: ``distribute_episodes`` builds one pipeline per replica (per worker under multi-worker,
where a worker's local replicas take its episodes in turn), each seeded ``seed + 1009 * index`` so
the replicas see different, reproducible episodes.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import tempfile
from typing import Callable, Optional, Sequence

import tensorflow as tf

from lite_tf import runtime
from lite_tf.errors import ConfigError, LiteTfError


STRATEGIES = (None, "mirrored", "multi_worker")
SEED_STRIDE = 1009  # distinct, reproducible seeds per input pipeline


def make_strategy(name: Optional[str], devices: Optional[Sequence[str]] = None) -> tf.distribute.Strategy:
    """The ``tf.distribute`` strategy called ``name`` (see the module docstring)."""
    if name is None or name == "none":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if not devices and not tf.config.list_logical_devices("GPU"):
            devices = [device.name for device in tf.config.list_logical_devices("CPU")]  # --cpu_devices
        return tf.distribute.MirroredStrategy(list(devices) if devices else None)
    if name == "multi_worker":
        config = os.environ.get("TF_CONFIG")
        if not config:
            raise ConfigError("Training.strategy = 'multi_worker' needs TF_CONFIG (the cluster and this "
                              "worker's task); see README 'Scaling out'.")
        try:
            task = json.loads(config)["task"]
            task["type"], task["index"]
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"TF_CONFIG is not valid cluster JSON with a task type and index: {error}") from error
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"Unknown Training.strategy {name!r}; expected one of {STRATEGIES}.")


def pipeline_seed(seed: int, index: int) -> int:
    """The seed of input pipeline ``index`` (replica or worker)."""
    return int(seed) + SEED_STRIDE * int(index)


def distribute_episodes(strategy: tf.distribute.Strategy, make_dataset: Callable[..., tf.data.Dataset],
                        seed: int, first_step: int = 0):
    """Episodes for ``strategy``: ``make_dataset(seed)`` per replica (or worker), distinct seeds.

    With one replica this is just ``make_dataset(seed)`` (nothing changes for single-device runs).
    ``first_step`` > 0 (a resumed run) continues every pipeline where ``first_step`` training steps
    left it: ``make_dataset(seed, first_episode)`` is then called with the number of episodes that
    pipeline already gave (steps x its replicas), so the run sees what an uninterrupted one sees.
    """
    def make(seed: int, episodes_per_step: int = 1):
        if not first_step:
            return make_dataset(seed)
        return make_dataset(seed, int(first_step) * episodes_per_step)

    if strategy.num_replicas_in_sync == 1:
        return make(seed)
    per_replica = isinstance(strategy, tf.distribute.MirroredStrategy)
    mode = (tf.distribute.InputReplicationMode.PER_REPLICA if per_replica
            else tf.distribute.InputReplicationMode.PER_WORKER)
    options = tf.distribute.InputOptions(experimental_replication_mode=mode)
    return strategy.distribute_datasets_from_function(
        lambda context: make(pipeline_seed(seed, context.input_pipeline_id),
                             context.num_replicas_in_sync // context.num_input_pipelines), options=options)


def accumulation_steps(tasks_per_update: Optional[int], strategy: tf.distribute.Strategy) -> int:
    """Optimizer ``gradient_accumulation_steps`` giving ``tasks_per_update`` tasks across the replicas.

    None: one task per replica per update.
    """
    replicas = strategy.num_replicas_in_sync
    if tasks_per_update is None:
        return 1
    if not isinstance(tasks_per_update, int) or tasks_per_update <= 0 or tasks_per_update % replicas:
        raise ConfigError(f"Training.tasks_per_update = {tasks_per_update!r} must be a positive multiple of the "
                          f"{replicas} replicas in sync (each replica trains on one task per step).")
    return tasks_per_update // replicas


def build_in_scope(strategy: tf.distribute.Strategy, build_model: Callable[[], "keras.Model"],
                   make_optimizer: Callable[..., "keras.optimizers.Optimizer"],
                   tasks_per_update: Optional[int] = None,
                   **compile_kwargs):
    """``build_model()`` compiled with ``make_optimizer(gradient_accumulation_steps=...)``, both
    created inside ``strategy.scope()`` (variables must be made there to be mirrored).

    ``tasks_per_update`` counts tasks across replicas; ``make_optimizer`` receives the per-replica
    accumulation (omitted when 1), e.g. ``functools.partial(keras.optimizers.Adam, 1e-3)``.
    """
    steps = accumulation_steps(tasks_per_update, strategy)
    with strategy.scope():
        model = build_model()
        optimizer = make_optimizer(gradient_accumulation_steps=steps) if steps > 1 else make_optimizer()
        model.compile(optimizer, **compile_kwargs)
    return model


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the worker that writes checkpoints, TensorBoard and best weights (always off-cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def checkpoint_dir(directory: str, strategy: tf.distribute.Strategy) -> str:
    """Where this worker saves: ``directory`` on the chief, a private scratch folder elsewhere.

    Under ``MultiWorkerMirroredStrategy`` every worker must take part in a save (the variables'
    reads are collective), but only the chief's copy is kept: the others save to a folder of their
    machine's temporary directory (one per process, removed at exit), so nothing but the chief
    writes to the model dir. Every worker resumes from the chief's checkpoints.
    """
    if is_chief(strategy):
        return directory
    resolver = strategy.cluster_resolver
    scratch = tempfile.mkdtemp(prefix=f"lite_tf-{resolver.task_type}-{resolver.task_id}-")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    return scratch


class PeerFailure(LiteTfError):
    """A worker of a multi-worker cluster stopped; the message names it and the resume point."""


@contextlib.contextmanager
def peer_failures(strategy: tf.distribute.Strategy, resume_point: Callable[[], Optional[str]]):
    """Turns a dead peer's error into one line under ``MultiWorkerMirroredStrategy``.

    When a worker dies, TensorFlow's coordination service misses its heartbeats (about 10 s) and
    aborts the collectives the others wait in, so they raise instead of hanging; this names the
    dead task(s) and the checkpoint to resume from.
    """
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
            tf.errors.CancelledError, tf.errors.InternalError, tf.errors.FailedPreconditionError) as error:
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise
        resolver = strategy.cluster_resolver
        this_task = f"/job:{resolver.task_type}/replica:0/task:{resolver.task_id}"
        tasks = sorted(set(re.findall(r"/job:\w+/replica:\d+/task:\d+", str(error.message))) - {this_task})
        who = ", ".join(tasks) if tasks else "a worker"
        # TensorFlow's first words, without its op dump ({{function_node ...}}) and further lines.
        said = re.sub(r"\{\{[^}]*\}\}\s*", "", str(error.message)).strip().splitlines()
        said = (said[0][:160] if said else "").rstrip(". ")
        raise PeerFailure(
            f"Training stopped: {who} of the TF_CONFIG cluster stopped ({type(error).__name__}: {said}). Nothing "
            f"after the resume point was kept; it is {resume_point() or 'the start (no epoch finished)'}. "
            "Restart every worker with the same command to resume.") from None


def local_cpu_devices(count: int) -> list:
    """Splits this machine's CPU into ``count`` logical devices, so that ``'mirrored'`` runs
    ``count`` replicas without a GPU (``tools.train --cpu_devices``; tests). Must run before
    TensorFlow starts its runtime (before any op)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 64:
        raise ConfigError(f"--cpu_devices must be an integer from 1 to 64; got {count!r}.")
    runtime.apply()  # listing the devices below starts TensorFlow's runtime, which fixes its threads
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:  # the runtime already started
        raise ConfigError(f"Cannot split the CPU into {count} devices once TensorFlow has started: {error}") from None
    return [device.name for device in tf.config.list_logical_devices("CPU")]
