"""Keras callbacks for episodic training: crash-safe resume, best-model saving, episode statistics."""
from __future__ import annotations

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from lite_tf import atomic, memory


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer and subset-seed state every epoch with tf.train.CheckpointManager.

    TF checkpoints are written under new names and the index file is replaced atomically, so a
    process killed at any moment (even SIGKILL) leaves the previous checkpoint intact. ``restore``
    returns the epoch to resume from (pass it to ``fit(initial_epoch=...)``).
    """

    def __init__(self, directory: str, model: keras.Model, max_to_keep: int = 2):
        super().__init__()
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=self.epoch,
                                              subset_seed=model.subset_seed.state.value)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)

    def restore(self) -> int:
        if self.manager.latest_checkpoint is None:
            return 0
        self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.epoch.numpy())

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights with the best validation accuracy, written atomically (temp file + rename).

    The best value so far lives in a JSON file beside the weights, so a resumed run keeps comparing
    against it instead of overwriting a better model.
    """

    def __init__(self, weights_path: str, monitor: str = "val_accuracy"):
        super().__init__()
        self.weights_path, self.monitor = weights_path, monitor
        self.info_path = os.path.splitext(os.path.splitext(weights_path)[0])[0] + ".json"
        self.best = -math.inf
        if os.path.exists(self.info_path):
            with open(self.info_path) as handle:
                self.best = json.load(handle)["value"]

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not value > self.best:
            return
        self.best = float(value)
        temporary = self.weights_path[: -len(".weights.h5")] + ".tmp.weights.h5"
        self.model.save_weights(temporary, overwrite=True)
        os.replace(temporary, self.weights_path)
        atomic.write_json(self.info_path, {"monitor": self.monitor, "value": self.best, "epoch": epoch + 1})


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


class EpisodeStatistics(keras.callbacks.Callback):
    """Writes per-episode way, support and query sizes, episodes/s, images/s, learning rate and
    peak memory to TensorBoard (train writer), every ``every`` episodes."""

    def __init__(self, log_dir: str, every: int = 1):
        super().__init__()
        self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        self.every = every
        self._started = None
        self._images = 0
        self._episodes = 0

    def on_train_batch_begin(self, batch, logs=None):
        if self._started is None:
            self._started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._episodes += 1
        self._images += int(logs.get("support_size", 0)) + int(logs.get("query_size", 0))
        step = int(self.model.optimizer.iterations.numpy())
        if self._episodes % self.every:
            return
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        with self.writer.as_default(step=step):
            for key in ("way", "support_size", "query_size"):
                if key in logs:
                    tf.summary.scalar(f"episode/{key}", float(logs[key]))
            tf.summary.scalar("speed/episodes_per_second", self._episodes / elapsed)
            tf.summary.scalar("speed/images_per_second", self._images / elapsed)
            tf.summary.scalar("learning_rate", float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))
            tf.summary.scalar("memory/peak_resident_gib", memory.peak_resident_bytes() / 1024 ** 3)
        self._started, self._images, self._episodes = time.perf_counter(), 0, 0


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
