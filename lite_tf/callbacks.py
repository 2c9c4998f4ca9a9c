"""Keras callbacks for episodic training: crash-safe resume, best-model saving, episode statistics.

Nothing non-finite is ever saved: the checkpoint and best-weights callbacks check the loss and every
variable first, so after a NaN/Inf the last finite checkpoint stays the resume point.

Order at the end of an epoch: best weights, TensorBoard, then the checkpoint, which commits the
epoch. A run killed before the commit redoes the epoch on resume, bit for bit (same episodes,
same subset draws), and the redo rewrites the same best weights and the same events file; so a
killed and resumed run ends with the files of an uninterrupted one (README, "What a run writes").
"""
from __future__ import annotations

import glob
import json
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from lite_tf import atomic, memory


def all_finite(variables) -> bool:
    """True when no floating-point variable holds a NaN or Inf."""
    checks = [tf.reduce_all(tf.math.is_finite(value)) for value in map(tf.convert_to_tensor, variables)
              if value.dtype.is_floating]
    return bool(tf.reduce_all(checks)) if checks else True


def _finite_state(model, logs) -> bool:
    loss = (logs or {}).get("loss")
    if loss is not None and not np.isfinite(loss):
        return False
    return all_finite(model.variables) and all_finite(model.optimizer.variables)


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer and subset-seed state every epoch with tf.train.CheckpointManager.

    TF checkpoints are written under new names and the index file is replaced atomically, so a
    process killed at any moment (even SIGKILL) leaves the previous checkpoint intact. A state with a
    NaN/Inf loss or variable is not saved (and training stops), so the index always names the last
    finite epoch. ``restore`` returns the epoch to resume from (``fit(initial_epoch=...)``). The
    optimizer's state includes its iterations and gradient-accumulation sums, so an epoch that
    ends mid-update resumes mid-update. Place it after every callback that writes for the epoch.
    """

    def __init__(self, directory: str, model: keras.Model, max_to_keep: int = 2,
                 restore_from: Optional[str] = None):
        super().__init__()
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        state = dict(model=model, optimizer=model.optimizer, epoch=self.epoch,
                     subset_seed=model.subset_seed.state.value)
        self._without_seeds = tf.train.Checkpoint(**state)  # checkpoints written before seed_states
        seeds = layer_seed_states(model)
        self.checkpoint = tf.train.Checkpoint(**state, seed_states=seeds) if seeds else self._without_seeds
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)
        # A multi-worker worker saves to scratch but resumes from the chief's checkpoints.
        self.restore_from = restore_from or directory
        self.refused_epoch = None  # the epoch whose non-finite state was not saved

    def latest(self) -> Optional[str]:
        return tf.train.latest_checkpoint(self.restore_from)

    def saved_epoch(self) -> int:
        """The epoch the latest checkpoint ends, read without restoring it (0 if none)."""
        latest = self.latest()
        if latest is None:
            return 0
        return int(tf.train.load_checkpoint(latest).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))

    def restore(self) -> int:
        latest = self.latest()
        if latest is None:
            return 0
        saved = tf.train.load_checkpoint(latest).get_variable_to_shape_map()
        checkpoint = (self.checkpoint if any(name.startswith("seed_states/") for name in saved)
                      else self._without_seeds)
        checkpoint.restore(latest).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def on_epoch_end(self, epoch, logs=None):
        if not _finite_state(self.model, logs):
            self.refused_epoch = epoch + 1
            self.model.stop_training = True
            return
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


def layer_seed_states(model: keras.Model) -> list:
    """The states of the Keras seed generators inside the model's layers (e.g. ``Dropout`` in a
    backbone trained with ``training=True``), in a fixed order; the subset sampler's is not one.

    ``tf.train.Checkpoint(model=...)`` does not save them, and a resumed run must draw the same
    dropout masks as an uninterrupted one.
    """
    subset = model.subset_seed.state.path
    return [v.value for v in model.variables
            if v.path.endswith("seed_generator_state") and v.path != subset]


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights with the best validation accuracy, written atomically (temp file + rename).

    The best value so far lives in a JSON file beside the weights, so a resumed run keeps comparing
    against it instead of overwriting a better model. ``monitor=None`` (no validation) keeps the
    last finite weights. Non-finite weights are never written. The weights are replaced before the
    JSON: a kill in between leaves a JSON older than the weights, and the redone epoch (which
    beats the older value by the same margin) writes both again.
    """

    def __init__(self, weights_path: str, monitor: Optional[str] = "val_accuracy"):
        super().__init__()
        self.weights_path, self.monitor = weights_path, monitor
        self.info_path = os.path.splitext(os.path.splitext(weights_path)[0])[0] + ".json"
        self.best = -math.inf
        if os.path.exists(self.info_path):
            with open(self.info_path) as handle:
                info = json.load(handle)
            if info.get("monitor") == (monitor or "epoch"):  # a resumed run may switch validation on or off
                self.best = info["value"]

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor is None:
            value = float(epoch + 1)  # the latest epoch is the one kept
        else:
            value = (logs or {}).get(self.monitor)
            if value is None or not np.isfinite(value) or not value > self.best:
                return
        if not _finite_state(self.model, logs):
            return
        self.best = float(value)
        # Keras needs the .weights.h5 ending; the .tmp- prefix marks it as a leftover if killed.
        folder, name = os.path.split(self.weights_path)
        temporary = os.path.join(folder, f".tmp-{os.getpid()}-{name}")
        self.model.save_weights(temporary, overwrite=True)
        os.replace(temporary, self.weights_path)
        atomic.write_json(self.info_path, {"monitor": self.monitor or "epoch", "value": self.best, "epoch": epoch + 1})


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first non-finite loss and remembers where, for a clear message."""

    def __init__(self):
        super().__init__()
        self.failed_at = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.failed_at = (batch, float(loss))
            self.model.stop_training = True


class EpochSummary(keras.callbacks.Callback):
    """Prints one line per epoch: its metrics and the training speed in episodes per second."""

    def __init__(self, epochs: int, stream=None):
        super().__init__()
        self.epochs, self.stream = epochs, stream
        self._started, self._episodes = 0.0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._started, self._episodes = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self._episodes += 1

    def on_epoch_end(self, epoch, logs=None):
        seconds = max(time.perf_counter() - self._started, 1e-9)
        shown = [f"{key} {logs[key]:.4f}" for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                 if key in (logs or {})]
        print(f"epoch {epoch + 1}/{self.epochs}: " + ", ".join(shown)
              + f", {self._episodes / seconds:.1f} episodes/s ({seconds:.1f} s)",
              file=self.stream or sys.stdout, flush=True)


EVENTS_PREFIX = "events.out.tfevents.epoch-"


def write_events(folder: str, epoch: int, write) -> str:
    """Writes one epoch's TensorBoard events (``write()`` under a default writer) as one file.

    The file is written in a temporary folder and renamed to a name fixed by the epoch, so it
    appears whole or not at all, and a redone epoch (a resumed run) replaces it: TensorBoard
    never sees an epoch twice or half. Returns the file's path.
    """
    os.makedirs(folder, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=folder)
    try:
        writer = tf.summary.create_file_writer(temporary)
        with writer.as_default():
            write()
        writer.close()
        [written] = glob.glob(os.path.join(temporary, "events.out.tfevents.*"))
        path = os.path.join(folder, f"{EVENTS_PREFIX}{epoch:06d}.v2")
        os.replace(written, path)
        return path
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


class EpochEvents(keras.callbacks.Callback):
    """TensorBoard logs, written once per saved epoch, one events file per epoch and folder.

    Under ``log_dir/train``: the epoch's ``epoch_<metric>`` scalars and ``epoch_learning_rate``
    (step: the epoch, from 0, as Keras's TensorBoard callback names and numbers them); every
    ``statistics_every`` episodes its way, support and query sizes (``episode/*``), speed
    (``speed/*``), ``learning_rate`` and peak memory (step: the episode number, 1, 2, ... across
    epochs; with several replicas, the training step); every ``image_log_every`` epochs a grid of
    one episode's support images (step: the epoch's last episode number). Under ``log_dir/validation``:
    the epoch's ``epoch_<metric>`` validation scalars.

    Placed before the checkpoint callback, an epoch's file is written before the epoch is saved,
    and a resumed run, which redoes an unsaved epoch exactly, replaces that file by the same one
    (:func:`write_events`). Nothing is written for an epoch a NaN/Inf cut short.
    """

    def __init__(self, log_dir: str, guard: "StopOnNaN", statistics_every: int = 1,
                 episode: Optional[dict] = None, image_log_every: int = 1):
        super().__init__()
        self.log_dir, self.guard = log_dir, guard
        self.statistics_every, self.episode, self.image_log_every = statistics_every, episode, image_log_every
        self._pending: list = []  # (step, {tag: value}) of the epoch under way
        self._first_step = 1
        self._started, self._images, self._episodes = None, 0, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._pending = []
        self._first_step = epoch * int(self.params.get("steps") or 0) + 1
        self._started, self._images, self._episodes = time.perf_counter(), 0, 0

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._episodes += 1
        self._images += int(logs.get("support_size", 0)) + int(logs.get("query_size", 0))
        step = self._first_step + batch
        if step % self.statistics_every:  # by step number: a resumed run logs the same steps
            return
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        values = {f"episode/{key}": float(logs[key]) for key in ("way", "support_size", "query_size") if key in logs}
        values.update({
            "speed/episodes_per_second": self._episodes / elapsed,
            "speed/images_per_second": self._images / elapsed,
            "learning_rate": _learning_rate(self.model),
            "memory/peak_resident_gib": memory.peak_resident_bytes() / 1024 ** 3,
        })
        self._pending.append((step, values))
        self._started, self._images, self._episodes = time.perf_counter(), 0, 0

    def on_epoch_end(self, epoch, logs=None):
        pending, self._pending = self._pending, []
        logs = dict(logs or {})
        if self.guard.failed_at is not None or not _finite_state(self.model, logs):
            return
        train = {key: value for key, value in logs.items() if not key.startswith("val_")}
        train["learning_rate"] = _learning_rate(self.model)
        validation = {key[4:]: value for key, value in logs.items() if key.startswith("val_")}
        images = self.episode is not None and not (epoch + 1) % self.image_log_every
        last_step = (epoch + 1) * int(self.params.get("steps") or 0)

        def write_train():
            for name, value in train.items():
                tf.summary.scalar(f"epoch_{name}", value, step=epoch)
            for step, values in pending:
                for tag, value in values.items():
                    tf.summary.scalar(tag, value, step=step)
            if images:
                tf.summary.image("episode/support_by_class", support_grid(self.episode), step=last_step,
                                 max_outputs=1)

        def write_validation():
            for name, value in validation.items():
                tf.summary.scalar(f"epoch_{name}", value, step=epoch)

        write_events(os.path.join(self.log_dir, "train"), epoch, write_train)
        if validation:
            write_events(os.path.join(self.log_dir, "validation"), epoch, write_validation)


def _learning_rate(model) -> float:
    optimizer = getattr(model.optimizer, "inner_optimizer", model.optimizer)
    return float(tf.convert_to_tensor(optimizer.learning_rate))


def support_grid(episode: dict, max_images: int = 25) -> tf.Tensor:
    """One episode's support images sorted by class, as a [1, H, W, C] grid in [0, 1]."""
    images = tf.convert_to_tensor(episode["support_images"])
    order = tf.argsort(episode["support_labels"], stable=True)[:max_images]
    images = tf.gather(images, order)
    if images.dtype == tf.uint8:
        images = tf.cast(images, tf.float32) / 255.0
    else:
        images = (images + 1.0) / 2.0
    return image_grid(images)


def image_grid(images: tf.Tensor) -> tf.Tensor:
    """[N, H, W, C] in [0, 1] -> [1, rows*H, cols*W, C] grid (square-ish, padded with black)."""
    count = int(images.shape[0])
    cols = int(math.ceil(math.sqrt(count)))
    rows = int(math.ceil(count / cols))
    padded = tf.concat([images, tf.zeros([rows * cols - count, *images.shape[1:]], images.dtype)], 0)
    height, width, channels = images.shape[1:]
    grid = tf.reshape(padded, [rows, cols, height, width, channels])
    grid = tf.transpose(grid, [0, 2, 1, 3, 4])
    return tf.reshape(grid, [1, rows * height, cols * width, channels])
