"""Keras callbacks for episodic training: crash-safe resume, best-model saving, episode statistics.

Nothing non-finite is ever saved: the checkpoint and best-weights callbacks check the loss and every
variable first, so after a NaN/Inf the last finite checkpoint stays the resume point.
"""
from __future__ import annotations

import json
import math
import os
import sys
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
    finite epoch. ``restore`` returns the epoch to resume from (``fit(initial_epoch=...)``).
    """

    def __init__(self, directory: str, model: keras.Model, max_to_keep: int = 2):
        super().__init__()
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=self.epoch,
                                              subset_seed=model.subset_seed.state.value)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)
        self.refused_epoch = None  # the epoch whose non-finite state was not saved

    def saved_epoch(self) -> int:
        """The epoch the latest checkpoint ends, read without restoring it (0 if none)."""
        latest = self.manager.latest_checkpoint
        if latest is None:
            return 0
        return int(tf.train.load_checkpoint(latest).get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE"))

    def restore(self) -> int:
        if self.manager.latest_checkpoint is None:
            return 0
        self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def on_epoch_end(self, epoch, logs=None):
        if not _finite_state(self.model, logs):
            self.refused_epoch = epoch + 1
            self.model.stop_training = True
            return
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights with the best validation accuracy, written atomically (temp file + rename).

    The best value so far lives in a JSON file beside the weights, so a resumed run keeps comparing
    against it instead of overwriting a better model. ``monitor=None`` (no validation) keeps the
    last finite weights. Non-finite weights are never written.
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


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, epoch scalars only, skipping an epoch a NaN/Inf cut short.

    Placed after the checkpoint callback, an epoch is logged only once it is saved: a resumed run
    (which redoes the unsaved epoch) never logs an epoch twice.
    """

    def __init__(self, log_dir: str, guard: "StopOnNaN"):
        super().__init__(log_dir=log_dir, update_freq="epoch", write_graph=False)
        self.guard = guard

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.failed_at is None and _finite_state(self.model, logs):
            super().on_epoch_end(epoch, logs)


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


class EpisodeStatistics(keras.callbacks.Callback):
    """Writes per-episode way, support and query sizes, episodes/s, images/s, learning rate and
    peak memory to TensorBoard (train writer), every ``every`` episodes; the step is the episode
    number (1, 2, ... across epochs; with several replicas, the training step).

    The points of an epoch are kept until it ends and written only if it was saved (placed after
    the checkpoint callback; not after a NaN/Inf, like :class:`EpochTensorBoard`): a resumed run
    redoes an unsaved epoch, and its episodes are then logged once, not twice.
    """

    def __init__(self, log_dir: str, guard: "StopOnNaN", every: int = 1):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        self.guard, self.every = guard, every
        self._started = None
        self._images = 0
        self._episodes = 0
        self._pending: list = []  # (step, {tag: value}) of the epoch under way
        self._first_step = 1

    def on_epoch_begin(self, epoch, logs=None):
        self._pending = []
        self._first_step = epoch * int(self.params.get("steps") or 0) + 1

    def on_train_batch_begin(self, batch, logs=None):
        if self._started is None:
            self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._episodes += 1
        self._images += int(logs.get("support_size", 0)) + int(logs.get("query_size", 0))
        if self._episodes % self.every:
            return
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        values = {f"episode/{key}": float(logs[key]) for key in ("way", "support_size", "query_size") if key in logs}
        values.update({
            "speed/episodes_per_second": self._episodes / elapsed,
            "speed/images_per_second": self._images / elapsed,
            "learning_rate": float(tf.convert_to_tensor(self.model.optimizer.learning_rate)),
            "memory/peak_resident_gib": memory.peak_resident_bytes() / 1024 ** 3,
        })
        self._pending.append((self._first_step + batch, values))
        self._started, self._images, self._episodes = time.perf_counter(), 0, 0

    def on_epoch_end(self, epoch, logs=None):
        pending, self._pending = self._pending, []
        if self.guard.failed_at is not None or not _finite_state(self.model, logs):
            return
        with self.writer.as_default():
            for step, values in pending:
                for tag, value in values.items():
                    tf.summary.scalar(tag, value, step=step)
        self.writer.flush()


class EpisodeImages(keras.callbacks.Callback):
    """Every ``every`` epochs, writes one episode's support images (grouped by class) to TensorBoard."""

    def __init__(self, log_dir: str, episode: dict, every: int = 1, max_images: int = 25):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        self.episode, self.every, self.max_images = episode, every, max_images

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        images = tf.convert_to_tensor(self.episode["support_images"])
        order = tf.argsort(self.episode["support_labels"], stable=True)[: self.max_images]
        images = tf.gather(images, order)
        if images.dtype == tf.uint8:
            images = tf.cast(images, tf.float32) / 255.0
        else:
            images = (images + 1.0) / 2.0
        with self.writer.as_default(step=int(self.model.optimizer.iterations.numpy())):
            tf.summary.image("episode/support_by_class", image_grid(images), max_outputs=1)


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
