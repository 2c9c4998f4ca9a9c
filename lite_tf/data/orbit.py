"""ORBIT for lite_tf: training tasks as a tf.data.Dataset of episodes, evaluation tasks, frame decoding.

- ``orbit_train_dataset``: endless (or ``num_tasks``) user-centric training tasks as episode dicts
  (lite_tf/episode.py): context frames are the support set, target frames the query set, labels are
  object indices within the task. Sampling (which frames) runs in NumPy and yields only file paths;
  reading, decoding and resizing run in a parallel ``map`` (``num_parallel_calls`` tasks at a time,
  ``decode_threads`` frames at a time within a task) followed by ``prefetch``.
- ``orbit_eval_tasks``: CLE-VE and CLU-VE tasks of a split, lazily, with every target frame, for
  lite_tf/eval/orbit_evaluation.py.

Both are gin-configurable so a launcher binds them from gin/data/orbit.gin. The folder index is
built once and cached (lite_tf/data/orbit_index.py); task rules are in lite_tf/data/orbit_tasks.py.
Frames are returned as uint8 (the model converts chunk by chunk to [-1, 1]) unless
``image_dtype="float32"``.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Dict, Iterator, Optional, Sequence

import gin
import numpy as np
import tensorflow as tf

from lite_tf.data.orbit.index import OrbitDataError, SplitIndex, load_split
from lite_tf.data.orbit.tasks import ClipSpec, OrbitTask, TrainTaskSampler, eval_tasks

AUTOTUNE = tf.data.AUTOTUNE


def decode_frame(path: tf.Tensor, frame_size: int, image_dtype=tf.uint8) -> tf.Tensor:
    """Reads one JPEG/PNG frame -> [frame_size, frame_size, 3] (resized only if its size differs)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    shape = tf.shape(image)
    image = tf.cond(
        tf.logical_and(tf.equal(shape[0], frame_size), tf.equal(shape[1], frame_size)),
        lambda: image,
        lambda: tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, [frame_size, frame_size])), 0, 255),
                        tf.uint8),
    )
    image.set_shape([frame_size, frame_size, 3])
    if image_dtype == tf.float32:
        return tf.cast(image, tf.float32) / 127.5 - 1.0
    return image


def decode_frames(paths: tf.Tensor, frame_size: int, image_dtype=tf.uint8, parallel: int = 16) -> tf.Tensor:
    """[len(paths), S, S, 3] frames, ``parallel`` decoded at a time."""
    return tf.map_fn(lambda p: decode_frame(p, frame_size, image_dtype), paths,
                     fn_output_signature=tf.TensorSpec([frame_size, frame_size, 3], image_dtype),
                     parallel_iterations=parallel)


def load_frames(paths: Sequence[str], frame_size: int, batch_size: int = 256,
                image_dtype=tf.uint8) -> Iterator[np.ndarray]:
    """Batches of decoded frames (NumPy) for ``paths`` in order, decoded in parallel."""
    paths = list(paths)
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
    dataset = dataset.map(lambda p: decode_frame(p, frame_size, image_dtype), num_parallel_calls=AUTOTUNE)
    iterator = iter(dataset.batch(batch_size).prefetch(2))
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
            raise OrbitDataError(f"Could not read an ORBIT frame: {_unreadable(paths) or 'unknown file'} "
                                 f"({error.message.splitlines()[0]})") from error
        yield batch.numpy()


def _unreadable(paths: Sequence[str]) -> Optional[str]:
    """The first of ``paths`` that TensorFlow cannot decode (names the file in error messages)."""
    for path in paths:
        try:
            tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            return path
    return None


def _check_root(root, caller: str) -> str:
    if not root:
        raise ValueError(f"{caller} needs the ORBIT root folder: pass root=..., or in gin bind "
                         "ORBIT_ROOT = '/path/to/orbit' (gin/data/orbit.gin).")
    return root


def _check_dtype(image_dtype) -> tf.DType:
    dtype = tf.as_dtype(image_dtype)
    if dtype not in (tf.uint8, tf.float32):
        raise ValueError(f"image_dtype must be uint8 or float32; got {image_dtype!r}.")
    return dtype


@gin.configurable
def orbit_train_dataset(root: Optional[str] = None, split: str = "train", frame_size: int = 84,
                        way_cap: int = 15, target_video_type: str = "clutter", clip_length: int = 8,
                        context_subsample_factor: int = 30, target_subsample_factor: int = 30,
                        context_clips_per_video="max", target_clips_per_video="random",
                        max_context_clips_per_video: Optional[int] = None,
                        max_target_clips_per_video: Optional[int] = None,
                        context_videos_per_object: Optional[int] = None, target_videos_per_object: Optional[int] = 2,
                        tasks_per_user: int = 50, num_tasks: Optional[int] = None, image_dtype="uint8",
                        seed: int = 0, cache_dir: Optional[str] = None, num_parallel_calls: int = AUTOTUNE,
                        decode_threads: int = 16, prefetch: int = AUTOTUNE,
                        index: Optional[SplitIndex] = None) -> tf.data.Dataset:
    """Training tasks of ``<root>/<split>`` as episode dicts (see module docstring).

    The episode sizes vary from task to task; the dataset's element spec leaves them unknown (it
    matches lite_tf.episode.episode_signature(frame_size, image_dtype)), so EpisodicModel traces its
    step once.
    """
    dtype = _check_dtype(image_dtype)
    index = index or load_split(_check_root(root, "orbit_train_dataset"), split, cache_dir=cache_dir)
    sampler = TrainTaskSampler(
        index, way_cap=way_cap, target_video_type=target_video_type,
        context=ClipSpec(clip_length, context_subsample_factor, context_clips_per_video, max_context_clips_per_video),
        target=ClipSpec(clip_length, target_subsample_factor, target_clips_per_video, max_target_clips_per_video),
        context_videos_per_object=context_videos_per_object, target_videos_per_object=target_videos_per_object,
        tasks_per_user=tasks_per_user, seed=seed)

    def tasks():
        for count, task in enumerate(sampler):
            if num_tasks is not None and count >= num_tasks:
                return
            target_paths, target_labels = task.target_arrays()
            yield {"support_paths": np.asarray(task.context_paths, dtype=object),
                   "support_labels": task.context_labels,
                   "query_paths": np.asarray(target_paths, dtype=object),
                   "query_labels": target_labels, "way": np.int32(task.way)}

    signature = {"support_paths": tf.TensorSpec([None], tf.string), "support_labels": tf.TensorSpec([None], tf.int32),
                 "query_paths": tf.TensorSpec([None], tf.string), "query_labels": tf.TensorSpec([None], tf.int32),
                 "way": tf.TensorSpec([], tf.int32)}

    def load(task):
        return {"support_images": decode_frames(task["support_paths"], frame_size, dtype, decode_threads),
                "support_labels": task["support_labels"],
                "query_images": decode_frames(task["query_paths"], frame_size, dtype, decode_threads),
                "query_labels": task["query_labels"], "way": task["way"]}

    dataset = tf.data.Dataset.from_generator(tasks, output_signature=signature)
    dataset = dataset.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    return dataset.prefetch(prefetch)


@dataclasses.dataclass
class OrbitEvalTasks:
    """Lazily generated evaluation tasks of one split; iterate it (again) for the tasks."""

    index: SplitIndex
    split: str
    frame_size: int
    target_types: Sequence[str]
    tasks_per_user: int
    options: Dict
    skipped: Dict[str, int] = dataclasses.field(default_factory=collections.Counter)

    def __iter__(self) -> Iterator[OrbitTask]:
        self.skipped.clear()
        return eval_tasks(self.index, self.target_types, self.tasks_per_user, skipped=self.skipped, **self.options)

    def __len__(self) -> int:
        """Number of tasks, without generating them (an upper bound when ``way_cap`` drops objects)."""
        def has_target(user, kind):
            objects = self.index.users[user].values()
            if kind == "clean":
                return any(len(types["clean"]) >= 2 for types in objects)
            return any(types["clutter"] for types in objects)

        return self.tasks_per_user * sum(has_target(user, kind) for kind in self.target_types
                                         for user in self.index.user_names)


@gin.configurable
def orbit_eval_tasks(root: Optional[str] = None, split: str = "validation", frame_size: int = 84,
                     target_types: Sequence[str] = ("clean", "clutter"), tasks_per_user: int = 5,
                     clip_length: int = 8, context_subsample_factor: int = 30, context_clips_per_video="max",
                     max_context_clips_per_video: Optional[int] = None, clean_target_videos: int = 1,
                     max_target_frames: Optional[int] = None, way_cap: Optional[int] = None, seed: int = 0,
                     cache_dir: Optional[str] = None) -> OrbitEvalTasks:
    """CLE-VE ("clean") and CLU-VE ("clutter") evaluation tasks of ``<root>/<split>``."""
    index = load_split(_check_root(root, "orbit_eval_tasks"), split, cache_dir=cache_dir)
    context = ClipSpec(clip_length, context_subsample_factor, context_clips_per_video, max_context_clips_per_video)
    options = dict(context=context, clean_target_videos=clean_target_videos, max_target_frames=max_target_frames,
                   way_cap=way_cap, seed=seed)
    return OrbitEvalTasks(index, split, frame_size, tuple(target_types), tasks_per_user, options)
