"""ORBIT tasks as tf.data: training episodes, evaluation tasks, frame decoding.

- ``orbit_train_dataset``: endless (or ``num_tasks``) training tasks as episode dicts
  (lite_tf/episode.py): context frames are the support set, target frames the query set, labels are
  object indices within the task. Sampling (which frames) runs in NumPy before the dataset is built
  and hands over (video, frame number) tables; paths are built, and the frames read, decoded and
  resized, by one parallel ``map`` per task part, batched whole (the fast path the Meta-Dataset
  pipeline uses; no ``tf.map_fn``, no Python generator), and tasks are prefetched.
  A frame that cannot be decoded fails the task with an error naming its file. With pooled clip
  features (``OrbitProtocol.pool_clip_features`` and clips longer than one frame: the neurips21
  preset) the support and query sets are clips [clips, T, S, S, 3] with one label per clip, each
  clip one example (lite_tf/clips.py; LITE's h counts clips).
- ``orbit_eval_tasks``: the CLE-VE and CLU-VE evaluation tasks of a split under a protocol, lazily.
- ``load_frames``: batches of decoded frames in order (evaluation), naming any unreadable file.

The task rules come from an ``OrbitProtocol`` (gin: bind ``OrbitProtocol.*``, presets in
gin/orbit/). Frames are uint8 (the model converts chunk by chunk, lite_tf/images.py) unless
``image_dtype="float32"`` ([-1, 1]).
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import os
from typing import Dict, Iterator, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from lite_tf.data import decode as decode_lib
from lite_tf.data.orbit.annotations import Annotations
from lite_tf.data.orbit.index import OrbitDataError, SplitIndex, load_split
from lite_tf.data.orbit.protocol import OrbitProtocol
from lite_tf.data.orbit.tasks import OrbitTask, TrainTaskSampler, eval_tasks
from lite_tf.errors import ConfigError

AUTOTUNE = tf.data.AUTOTUNE


def configured_protocol(protocol: Optional[OrbitProtocol] = None) -> OrbitProtocol:
    """``protocol``, or the gin-configured one (``OrbitProtocol.*`` bindings; defaults: neurips21)."""
    return protocol if protocol is not None else OrbitProtocol()


def _check_frame_size(frame_size, owner: str) -> int:
    """The frame size comes from the experiment (EpisodicModel.image_size, via the source), never a default."""
    if isinstance(frame_size, bool) or not isinstance(frame_size, int) or frame_size < 1:
        raise ConfigError(f"{owner} needs frame_size (a positive int: the model's image size, which "
                          f"sources.orbit passes); got {frame_size!r}.")
    return frame_size


# ---------------------------------------------------------------- decoding
FRAME_ERROR = "ORBIT frame(s) that could not be decoded:"


def decode_frames(paths: tf.Tensor, frame_size: int, image_dtype=tf.uint8) -> tf.data.Dataset:
    """A one-element dataset: every frame file of ``paths`` decoded, [len(paths), S, S, 3].

    The Meta-Dataset pipeline's decoder (lite_tf/data/decode.py: a parallel map batched whole,
    bilinear resize); a frame that cannot be read or decoded fails naming its file.
    """
    return decode_lib.decode_batch(paths, frame_size, dtype=image_dtype, read=tf.io.read_file,
                                   what="an ORBIT task", names=[(FRAME_ERROR, paths)])


def load_frames(paths: Sequence[str], frame_size: int, batch_size: int = 256,
                image_dtype=tf.uint8) -> Iterator[np.ndarray]:
    """Batches of decoded frames (NumPy) for ``paths`` in order; an unreadable frame raises
    ``OrbitDataError`` naming its file."""
    paths = list(paths)
    for start in range(0, len(paths), batch_size):
        batch = tf.constant(paths[start:start + batch_size], tf.string)
        try:
            frames = next(iter(decode_frames(batch, frame_size, tf.as_dtype(image_dtype))))
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
            raise OrbitDataError(_frame_error(error)) from None
        yield frames.numpy()


def _frame_error(error: tf.errors.OpError) -> str:
    message = error.message
    if FRAME_ERROR in message:
        return FRAME_ERROR + " " + message.split(FRAME_ERROR, 1)[1].strip().splitlines()[0]
    return f"Could not read an ORBIT frame: {message.splitlines()[0]}"


def _check_root(root, caller: str) -> str:
    if not root:
        raise ConfigError(f"{caller} needs the ORBIT root folder: pass root=..., or in gin bind "
                          "ORBIT_ROOT = '/path/to/orbit' (gin/data/orbit.gin).")
    return root


def _annotations(root: str, split: str, protocol: OrbitProtocol, training: bool) -> Optional[Annotations]:
    """The split's annotations when the protocol filters this kind of task by them, else None."""
    return Annotations(root, split) if any(protocol.filters(training)) else None


# ---------------------------------------------------------------- training
class _FrameTable:
    """Every video of a split by id, so a frame is (video id, frame number) and its path is built
    by TensorFlow ops: ``<split>/<video dir>/<name>-<number, zero-padded>.<ext>``."""

    def __init__(self, index: SplitIndex):
        videos = [v for objects in index.users.values() for types in objects.values()
                  for kind in types.values() for v in kind]
        self.ids = {v.directory: i for i, v in enumerate(videos)}
        self.prefixes = tf.constant([os.path.join(index.split_dir, v.directory, v.name) + "-" for v in videos])
        self.digits = tf.constant([v.digits for v in videos], tf.int64)
        self.extensions = tf.constant([v.ext for v in videos])

    def paths(self, video_ids: tf.Tensor, numbers: tf.Tensor) -> tf.Tensor:
        digits = tf.gather(self.digits, video_ids)
        padded = tf.strings.substr(tf.strings.as_string(numbers + tf.pow(tf.constant(10, tf.int64), digits)),
                                   tf.ones_like(digits), digits)  # "1" + zero-padded number, minus the "1"
        return tf.strings.join([tf.gather(self.prefixes, video_ids), padded, tf.gather(self.extensions, video_ids)])


def _task_tables(draws, count: int, table: _FrameTable) -> dict:
    """``count`` drawn tasks as ragged tensors of (video id, frame number, label) per frame."""
    columns = {key: [] for key in ("support_videos", "support_numbers", "support_labels",
                                   "query_videos", "query_numbers", "query_labels")}
    lengths, ways = {"support": [], "query": []}, []
    for drawn in itertools.islice(draws, count):
        for part, rows in (("support", drawn.context), ("query", drawn.targets)):
            total = 0
            for video, positions, label, *_ in rows:
                columns[f"{part}_videos"].append(np.full(positions.size, table.ids[video.directory], np.int32))
                columns[f"{part}_numbers"].append(video.numbers[positions])
                columns[f"{part}_labels"].append(np.full(positions.size, label, np.int32))
                total += positions.size
            lengths[part].append(total)
        ways.append(len(drawn.names))
    tables = {}
    for key, pieces in columns.items():
        values = np.concatenate(pieces) if pieces else np.zeros([0], np.int64 if "numbers" in key else np.int32)
        tables[key] = tf.RaggedTensor.from_row_lengths(values, np.asarray(lengths[key.split("_")[0]], np.int64))
    tables["way"] = tf.constant(ways, tf.int32)
    return tables


@gin.configurable(denylist=["frame_size", "split"])
def orbit_train_dataset(root: Optional[str] = None, split: str = "train", frame_size: Optional[int] = None,
                        protocol: Optional[OrbitProtocol] = None, target_video_type: str = "clutter",
                        num_tasks: Optional[int] = None, sampled_epochs: int = 10, image_dtype="uint8",
                        seed: int = 0, cache_dir: Optional[str] = None, strict: bool = False,
                        prefetch: int = AUTOTUNE, index: Optional[SplitIndex] = None,
                        first_episode: int = 0) -> tf.data.Dataset:
    """Training tasks of ``<root>/<split>`` as episode dicts (see module docstring).

    The tasks are drawn before the dataset is built (NumPy, as frame references: 8 bytes a frame), so
    no Python code runs inside tf.data and dropping an iterator cannot deadlock: ``num_tasks`` tasks,
    or, when None, ``sampled_epochs`` epochs of the protocol (10: the official ``--epochs``), repeated
    in the same order after that. Episode sizes vary from task to task; the element spec leaves them
    unknown (it matches lite_tf.episode.episode_signature(frame_size, image_dtype), with
    ``clip_length`` when clips are pooled), so EpisodicModel traces its step once. ``first_episode``
    starts the stream at that task (a resumed run; the tasks before it are skipped as frame
    references, no frame is read).
    """
    dtype = decode_lib.check_options(dtype=image_dtype)
    protocol = configured_protocol(protocol)
    root = _check_root(root, "orbit_train_dataset") if index is None else root
    frame_size = _check_frame_size(frame_size, "orbit_train_dataset")
    index = index or load_split(root, split, cache_dir=cache_dir, strict=strict)
    annotations = _annotations(root, split, protocol, True) if root else None
    sampler = TrainTaskSampler(index, protocol, target_video_type, seed=seed, annotations=annotations)
    if num_tasks is None and (isinstance(sampled_epochs, bool) or not isinstance(sampled_epochs, int)
                              or sampled_epochs < 1):
        raise ConfigError(f"orbit_train_dataset.sampled_epochs must be a positive int; got {sampled_epochs!r}.")
    count = num_tasks if num_tasks is not None else sampled_epochs * sampler.epoch_length()
    frames = _FrameTable(index)
    tasks = tf.data.Dataset.from_tensor_slices(_task_tables(sampler.draws(), count, frames))
    if num_tasks is None:
        tasks = tasks.repeat()
    if isinstance(first_episode, bool) or not isinstance(first_episode, int) or first_episode < 0:
        raise ConfigError(f"orbit_train_dataset.first_episode must be a non-negative int; got {first_episode!r}.")
    if first_episode:
        tasks = tasks.skip(first_episode)

    def load(task):
        meta = tf.data.Dataset.from_tensors({"support_labels": task["support_labels"],
                                             "query_labels": task["query_labels"], "way": task["way"]})
        support = frames.paths(task["support_videos"], task["support_numbers"])
        query = frames.paths(task["query_videos"], task["query_numbers"])
        return tf.data.Dataset.zip((decode_frames(support, frame_size, dtype),
                                    decode_frames(query, frame_size, dtype), meta))

    clip_length = protocol.clip_length if protocol.pool_clip_features and protocol.clip_length > 1 else None

    def assemble(support_images, query_images, meta):
        episode = {"support_images": support_images, "query_images": query_images, **meta}
        if clip_length is not None:  # frames come clip after clip: [clips * T] -> [clips, T]
            for part in ("support", "query"):
                images = episode[f"{part}_images"]
                episode[f"{part}_images"] = tf.reshape(
                    images, tf.concat([[-1, clip_length], tf.shape(images)[1:]], 0))
                episode[f"{part}_images"].set_shape([None, clip_length, frame_size, frame_size, 3])
                episode[f"{part}_labels"] = episode[f"{part}_labels"][::clip_length]
        return episode

    return tasks.flat_map(load).map(assemble).prefetch(prefetch)


# ---------------------------------------------------------------- evaluation
@dataclasses.dataclass
class OrbitEvalTasks:
    """Lazily generated evaluation tasks of one split; iterate it (again) for the tasks."""

    index: SplitIndex
    split: str
    frame_size: int
    protocol: OrbitProtocol
    target_types: Sequence[str]
    tasks_per_user: Optional[int]
    seed: int = 0
    annotations: Optional[Annotations] = None
    skipped: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)

    def __iter__(self) -> Iterator[OrbitTask]:
        self.skipped.clear()
        return eval_tasks(self.index, self.protocol, self.target_types, self.tasks_per_user, seed=self.seed,
                          annotations=self.annotations, skipped=self.skipped)

    def __len__(self) -> int:
        """Number of tasks (sampled without decoding anything; identical tasks counted once)."""
        return sum(1 for _ in eval_tasks(self.index, self.protocol, self.target_types, self.tasks_per_user,
                                         seed=self.seed, annotations=self.annotations))


@gin.configurable(denylist=["frame_size", "split"])
def orbit_eval_tasks(root: Optional[str] = None, split: str = "validation", frame_size: Optional[int] = None,
                     protocol: Optional[OrbitProtocol] = None, target_types: Sequence[str] = ("clean", "clutter"),
                     tasks_per_user: Optional[int] = None, seed: int = 0, cache_dir: Optional[str] = None,
                     strict: bool = False) -> OrbitEvalTasks:
    """CLE-VE ("clean") and CLU-VE ("clutter") tasks of ``<root>/<split>``; ``tasks_per_user``
    defaults to the protocol's (test or validation tasks); ``strict`` raises on any layout problem."""
    protocol = configured_protocol(protocol)
    root = _check_root(root, "orbit_eval_tasks")
    frame_size = _check_frame_size(frame_size, "orbit_eval_tasks")
    index = load_split(root, split, cache_dir=cache_dir, strict=strict)
    return OrbitEvalTasks(index, split, frame_size, protocol, tuple(target_types), tasks_per_user, seed,
                          _annotations(root, split, protocol, False))
