"""Child processes of tests/test_distribute.py: each configures its devices before TF initialises.

``python tests/distribute_children.py mirrored`` prints one JSON line comparing 2 replicas x 1 task
with 1 replica accumulating 2 tasks (full, exact and lite modes) and the replicas' episode seeds.
``python tests/distribute_children.py worker DIR STEPS`` is one multi-worker worker (TF_CONFIG set by
the parent): restores DIR's checkpoint if any, trains to STEPS optimizer steps one epoch (one step)
at a time, checkpointing after each, and prints one JSON line.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tensorflow as tf  # noqa: E402

from lite_tf import distribute  # noqa: E402

if sys.argv[1] == "mirrored":
    DEVICES = distribute.local_cpu_devices(2)

import keras  # noqa: E402
keras.config.disable_traceback_filtering()
import numpy as np  # noqa: E402

from helpers import IMAGE_SIZE, make_episode  # noqa: E402
from lite_tf import EpisodicModel, LiteConfig, episode_signature  # noqa: E402
from lite_tf.backbones.conv import conv4  # noqa: E402
from lite_tf.learners.protonets import ProtoNets  # noqa: E402

H = 3


def build(mode: str) -> EpisodicModel:
    keras.utils.set_random_seed(1)
    return EpisodicModel(ProtoNets(conv4(IMAGE_SIZE, filters=8, blocks=2)), IMAGE_SIZE,
                         lite=LiteConfig(mode=mode, h=H, chunk_size=4), seed=3)


def episodes(seed: int, count: int) -> list:
    rng = np.random.default_rng(seed)
    return [make_episode(rng, 3, 2, 2) for _ in range(count)]


def dataset(items: list) -> tf.data.Dataset:
    return tf.data.Dataset.from_generator(lambda: iter(items), output_signature=episode_signature(IMAGE_SIZE))


def weights(model) -> list:
    return [v.numpy() for v in model.trainable_variables]


def max_difference(a: list, b: list) -> float:
    return float(max(np.abs(x - y).max() for x, y in zip(a, b)))


def one_replica_fit(mode: str, tasks: list) -> list:
    model = build(mode)
    model.compile(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
    model.fit(dataset(tasks), epochs=1, steps_per_epoch=2, verbose=0)
    return weights(model)


def two_replica_fit(strategy, mode: str, tasks: list):
    model = distribute.build_in_scope(strategy, lambda: build(mode), lambda: keras.optimizers.SGD(0.1))
    initial = weights(model)
    # Replica i gets task i: its pipeline seed says which (distribute_episodes' seeds are 0 and 1009).
    data = distribute.distribute_episodes(
        strategy, lambda seed: dataset([tasks[seed // distribute.SEED_STRIDE]]), seed=0)
    model.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    return initial, weights(model), int(model.optimizer.iterations.numpy())


def lite_forced(strategy, tasks: list, subsets: list):
    """Lite mode with H forced per task (the subset draw is random): 1 replica x 2 vs 2 x 1."""
    single = build("lite")
    single.compile(keras.optimizers.SGD(0.1, gradient_accumulation_steps=2))
    for task, subset in zip(tasks, subsets):
        _, _, gradients = single.episode_gradients(task, subset=tf.constant(subset))
        single.optimizer.apply_gradients(zip(gradients, single.trainable_variables))

    model = distribute.build_in_scope(strategy, lambda: build("lite"), lambda: keras.optimizers.SGD(0.1))
    replica_tasks = strategy.experimental_distribute_values_from_function(
        lambda context: tasks[context.replica_id_in_sync_group])
    replica_subsets = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(subsets[context.replica_id_in_sync_group]))

    @tf.function
    def step(task, subset):
        def replica_step(task, subset):
            _, _, gradients = model.episode_gradients(task, subset=subset)
            model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        strategy.run(replica_step, args=(task, subset))

    step(replica_tasks, replica_subsets)
    return weights(single), weights(model)


def replica_subsets(strategy, tasks: list) -> list:
    """The H each replica drew (lite mode, same support size on both): they must differ."""
    model = distribute.build_in_scope(strategy, lambda: build("lite"), lambda: keras.optimizers.SGD(0.1))
    replica_tasks = strategy.experimental_distribute_values_from_function(
        lambda context: tasks[context.replica_id_in_sync_group])

    @tf.function
    def draw(task):
        return strategy.run(lambda task: model.episode_gradients(task, return_subsets=True)[3], args=(task,))

    return [v.numpy().tolist() for v in strategy.experimental_local_results(draw(replica_tasks))]


def replica_seeds(strategy) -> list:
    """The seed each replica's pipeline was built with, read back from its first element."""
    data = distribute.distribute_episodes(
        strategy, lambda seed: tf.data.Dataset.from_tensors(tf.constant(seed, tf.int64)).repeat(), seed=5)
    first = next(iter(data))
    return [int(v.numpy()) for v in strategy.experimental_local_results(first)]


def mirrored() -> dict:
    strategy = distribute.make_strategy("mirrored", DEVICES)
    tasks = episodes(0, 2)
    report = {"replicas": strategy.num_replicas_in_sync}
    for mode in ("full", "exact"):
        reference = one_replica_fit(mode, tasks)
        initial, replicated, iterations = two_replica_fit(strategy, mode, tasks)
        report[mode] = {"difference": max_difference(reference, replicated),
                        "moved": max_difference(initial, replicated), "iterations": iterations}
    # Lite mode: H forced (different per task); and a plain fit under the strategy runs and trains.
    reference, replicated = lite_forced(strategy, tasks, [[0, 2, 5], [1, 3, 4]])
    initial, lite_fit, iterations = two_replica_fit(strategy, "lite", tasks)
    report["lite"] = {"difference": max_difference(reference, replicated),
                      "moved": max_difference(initial, lite_fit), "iterations": iterations}
    report["seeds"] = [replica_seeds(strategy), replica_seeds(strategy)]
    report["subsets"] = [replica_subsets(strategy, tasks), replica_subsets(strategy, tasks)]
    return report


def worker(directory: str, total_steps: int) -> dict:
    strategy = distribute.make_strategy("multi_worker")
    model = distribute.build_in_scope(strategy, lambda: build("lite"), lambda: keras.optimizers.SGD(0.05))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
    manager = tf.train.CheckpointManager(checkpoint, distribute.checkpoint_dir(directory, strategy), max_to_keep=2)
    # Every worker restores the chief's latest checkpoint (shared file system in a real cluster).
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        checkpoint.restore(latest)
    restored = int(model.optimizer.iterations.numpy())

    def make_dataset(seed: int) -> tf.data.Dataset:
        return dataset(episodes(seed, 4)).repeat()

    data = distribute.distribute_episodes(strategy, make_dataset, seed=100)
    # One step per epoch, so the checkpoint after every epoch is after every step.
    save = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: manager.save(
        checkpoint_number=int(model.optimizer.iterations.numpy())))
    if restored < total_steps:
        model.fit(data, initial_epoch=restored, epochs=total_steps, steps_per_epoch=1, verbose=0, callbacks=[save])
    return {"restored": restored, "iterations": int(model.optimizer.iterations.numpy()),
            "checksum": float(sum(np.abs(w).sum() for w in weights(model))),
            "chief": distribute.is_chief(strategy), "replicas": strategy.num_replicas_in_sync}


if __name__ == "__main__":
    if sys.argv[1] == "mirrored":
        result = mirrored()
    else:
        result = worker(sys.argv[2], int(sys.argv[3]))
    print("RESULT " + json.dumps(result), flush=True)
