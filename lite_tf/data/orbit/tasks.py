"""ORBIT task sampling (NumPy; no TensorFlow): which videos, clips and frames form a task.

Every rule comes from an ``OrbitProtocol`` (lite_tf/data/orbit/protocol.py), implemented as the
official code does it (microsoft/ORBIT-Dataset ``data/datasets.py`` at the protocol's tag):

- Video pools per object: CLE-VE ("clean" targets) splits the sorted clean videos once, the first
  min(5, n - 1) are context, the rest targets; CLU-VE ("clutter") uses every clean video as
  context and every clutter video as target. Annotation filters then keep the frames that satisfy
  a criterion, and a video stays only with at least ``min_*_video_frames`` kept frames.
- Per task: objects (way method, object cap), per object its videos (shot method, shot cap, the
  training shot caps), per video its clips (clip method; frames capped at ``frame_cap``,
  sub-sampled, padded with the last frame to whole clips).
- Labels are the positions of the objects in the task's sorted object list.

Evaluation tasks (``eval_tasks``) are deterministic per (seed, user, task, target type). With
``targets_once_per_user`` (NeurIPS) the target videos drawn for a user's first task are scored again
in every later task (only the context is redrawn). Every drawn task is yielded, as the official code
scores it; a task identical to an earlier task of the same user (same objects, context frames and
target frames) carries ``repeat_of`` (that task's number), so an evaluator need not compute it again,
or is not yielded at all with ``dedupe_identical_tasks``.

A user left with one valid object gets 1-way evaluation tasks (``test_way_method`` 'max'), as the
official code gives them (tag: every user is kept, way = all objects; HEAD ``__load_all_users`` keeps a
user with at least one valid object, ``compute_way`` gives min(objects, cap)). Training tasks need two
objects (the official ``random.choice(range(2, objects + 1))`` has nothing to draw from with one).
"""
from __future__ import annotations

import collections
import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from lite_tf.data.orbit.annotations import Annotations
from lite_tf.data.orbit.index import VIDEO_TYPES, SplitIndex, Video
from lite_tf.data.orbit.protocol import ClipMethod, OrbitProtocol
from lite_tf.errors import DataError

OBJECT_CENTRIC_USER = "*"  # OrbitTask.user of an object-centric task (its objects come from many users)


@dataclasses.dataclass
class TargetVideo:
    """One target video of a task: the scored frames (in order) and, for clip history, the clip length."""

    label: int
    object_name: str
    video: str
    video_type: str
    paths: List[str]
    frame_numbers: List[int]
    clip_length: int = 1

    def history(self) -> np.ndarray:
        """[frames, clip_length] positions into ``paths``: each frame with its clip_length - 1 previous
        frames, the first frame repeated before the start (official ``attach_frame_history``)."""
        steps = np.arange(len(self.paths))[:, None] + np.arange(1 - self.clip_length, 1)[None, :]
        return np.maximum(steps, 0)


@dataclasses.dataclass
class OrbitTask:
    user: str
    task: int
    target_type: str  # "clean" (CLE-VE) or "clutter" (CLU-VE)
    object_names: List[str]
    context_paths: List[str]  # clip after clip: clip c is context_paths[c * clip_length:(c + 1) * clip_length]
    context_labels: np.ndarray  # int32 [N], one per context frame
    context_videos: List[str]  # directories of the videos the context frames come from
    targets: List[TargetVideo]
    clip_length: int = 1
    repeat_of: Optional[int] = None  # number of an earlier identical task of the same user (eval_tasks)

    @property
    def way(self) -> int:
        return len(self.object_names)

    @property
    def num_context_clips(self) -> int:
        return len(self.context_paths) // self.clip_length

    def target_arrays(self):
        """(paths, labels) of every target frame, video after video."""
        paths = [p for t in self.targets for p in t.paths]
        labels = np.asarray([t.label for t in self.targets for _ in t.paths], dtype=np.int32)
        return paths, labels

    def key(self) -> tuple:
        """What makes two tasks the same task (the order of frames within the context is irrelevant)."""
        return (tuple(self.object_names), tuple(sorted(self.context_paths)),
                tuple(sorted((t.video, tuple(t.paths)) for t in self.targets)))


# ---------------------------------------------------------------- clips and videos
def clip_positions(rng: np.random.Generator, frames: np.ndarray, method: ClipMethod,
                   protocol: OrbitProtocol) -> np.ndarray:
    """[clips, clip_length] frame positions of ``frames`` (a video's usable frame positions)."""
    length = protocol.clip_length
    all_frames = np.asarray(frames, dtype=np.int64)
    if all_frames.size == 0:
        raise DataError("clip_positions got a video with no usable frame.")
    frames = all_frames[:protocol.frame_cap:protocol.frame_subsample_factor]
    spare = frames.size % length
    if spare or protocol.pad_full_clip:
        frames = np.concatenate([frames, np.repeat(frames[-1], length - spare)])
    if not isinstance(method, str):  # k random clips; missing frames are random duplicates (NeurIPS)
        missing = int(method) * length - frames.size
        if missing > 0:
            extra = rng.choice(all_frames, size=missing, replace=missing > all_frames.size)
            frames = np.sort(np.concatenate([frames, extra]))
    clips = frames.reshape(-1, length)
    count = len(clips)
    if method == "max":
        chosen = np.arange(count)
    elif method == "random":
        chosen = rng.choice(count, size=int(rng.integers(1, min(count, protocol.clip_cap) + 1)), replace=False)
    elif method == "random_200":
        chosen = rng.choice(count, size=min(count, 200), replace=False)
    elif method == "uniform":
        chosen = np.arange(0, count, min(protocol.uniform_step, count))[:protocol.clip_cap]
    else:
        chosen = rng.choice(count, size=int(method), replace=False)
    return clips[np.sort(chosen)]


def choose_videos(rng: np.random.Generator, videos: Sequence, shots: int, method: str, cap: int) -> list:
    """The videos an object contributes (official ``choose_videos``), in their sorted order."""
    available = min(shots, cap, len(videos))
    if method == "specific":
        return list(videos[:available])
    if method == "fixed":
        count = available
    elif method == "random":
        count = int(rng.integers(1, min(len(videos), cap) + 1))
    else:  # "max"
        count = min(len(videos), cap)
    return [videos[i] for i in np.sort(rng.choice(len(videos), size=count, replace=False))]


@dataclasses.dataclass
class _Pool:
    """One object's usable videos, each with the positions of its usable frames."""

    context: List[Tuple[Video, np.ndarray]]
    target: List[Tuple[Video, np.ndarray]]


class TaskBuilder:
    """Video pools of one split for one target type, and the task assembly shared by all samplers."""

    def __init__(self, index: SplitIndex, protocol: OrbitProtocol, target_type: str, training: bool,
                 annotations: Optional[Annotations] = None, skipped: Optional[Dict[str, int]] = None):
        if target_type not in VIDEO_TYPES:
            raise DataError(f"ORBIT target video type must be one of {VIDEO_TYPES}; got {target_type!r}.")
        self.index, self.protocol, self.target_type, self.training = index, protocol, target_type, training
        self.skipped = skipped if skipped is not None else collections.Counter()
        criteria = protocol.filters(training)
        if any(criteria) and annotations is None:
            raise DataError(f"ORBIT protocol {protocol.name!r} filters frames by annotations "
                            f"{[c for c in criteria if c]}; pass the annotations (<root>/annotations/<split>).")
        self.pools: Dict[str, Dict[str, _Pool]] = {}
        for user in index.user_names:
            objects = {}
            for obj in index.objects(user):
                pool = self._pool(index.users[user][obj], annotations, criteria)
                needs_target = training or protocol.drop_objects_without_targets
                if not pool.context or (needs_target and not pool.target):
                    self.skipped[f"{target_type}_objects_without_{'context' if not pool.context else 'target'}"] += 1
                    continue
                objects[obj] = pool
            # Evaluation ('max' way) keeps a one-object user: a 1-way task, as the official code.
            fewest = 1 if not training and protocol.test_way_method == "max" else 2
            if len(objects) < fewest:
                self.skipped[f"{target_type}_users_with_{'no_object' if fewest == 1 else 'fewer_than_two_objects'}"] += 1
                continue
            if len(objects) == 1:  # counted, not skipped
                self.skipped[f"{target_type}_users_with_one_object_given_1_way_tasks"] += 1
            self.pools[user] = objects

    def _pool(self, types, annotations, criteria) -> _Pool:
        clean = sorted(types["clean"], key=lambda v: v.name)
        if self.target_type == "clean":
            split = min(5, len(clean) - 1)
            context, target = clean[:split], clean[split:]
        else:
            context, target = clean, sorted(types["clutter"], key=lambda v: v.name)
        protocol = self.protocol

        def usable(videos, rule, minimum):
            kept = []
            for video in videos:
                positions = annotations.keep(video, rule) if rule else np.arange(video.num_frames)
                if positions.size >= minimum:
                    kept.append((video, positions))
                else:
                    self.skipped["videos_with_too_few_frames"] += 1
            return kept

        return _Pool(usable(context, criteria[0], protocol.min_context_video_frames),
                     usable(target, criteria[1], protocol.min_target_video_frames))

    def way(self, rng, available: int) -> int:
        protocol = self.protocol
        method = protocol.train_way_method if self.training else protocol.test_way_method
        cap = protocol.train_object_cap if self.training else protocol.test_object_cap
        most = available if cap is None else min(available, cap)
        return int(rng.integers(2, most + 1)) if method == "random" else most

    def draw(self, rng, user: str, objects: Sequence[Tuple[str, str]],
             cached_targets: Optional[Dict[str, List[TargetVideo]]] = None) -> "Draw":
        """Which frames of which videos form the task of ``objects`` ((user, object) pairs, sorted:
        labels are their positions); cached targets (by object name) are reused, not drawn."""
        protocol = self.protocol
        way = len(objects)
        context_cap = target_cap = protocol.shot_cap
        if self.training and protocol.with_train_shot_caps:
            context_cap, target_cap = (5, 4) if way >= 6 else (10, 8)
        if self.training:
            methods = (protocol.train_context_shot_method, protocol.train_target_shot_method,
                       protocol.train_context_clips, protocol.train_target_clips)
        else:
            methods = (protocol.test_context_shot_method, protocol.test_target_shot_method,
                       protocol.test_context_clips, protocol.test_target_clips)
        names = [obj if owner == user else f"{owner}{os.sep}{obj}" for owner, obj in objects]
        context, targets = [], []
        for label, ((owner, obj), name) in enumerate(zip(objects, names)):
            pool = self.pools[owner][obj]
            for video, frames in choose_videos(rng, pool.context, protocol.context_shot, methods[0], context_cap):
                context.append((video, clip_positions(rng, frames, methods[2], protocol).reshape(-1), label))
            if cached_targets is not None and name in cached_targets:
                targets.extend(dataclasses.replace(t, label=label) for t in cached_targets[name])
                continue
            for video, frames in choose_videos(rng, pool.target, protocol.target_shot, methods[1], target_cap):
                targets.append((video, clip_positions(rng, frames, methods[3], protocol).reshape(-1), label, name))
        return Draw(names, context, targets)

    def task(self, rng, user: str, number: int, objects: Sequence[Tuple[str, str]],
             cached_targets: Optional[Dict[str, List[TargetVideo]]] = None) -> OrbitTask:
        """The task of ``objects`` with its frame paths (see ``draw``)."""
        protocol, split_dir = self.protocol, self.index.split_dir
        drawn = self.draw(rng, user, objects, cached_targets)
        history = protocol.clip_length if (protocol.frame_history and not self.training) else 1
        paths, labels = [], []
        for video, positions, label in drawn.context:
            paths.extend(video.frame_paths(split_dir, positions))
            labels.extend([label] * positions.size)
        targets = [t if isinstance(t, TargetVideo) else TargetVideo(
            t[2], t[3], t[0].directory, self.target_type, t[0].frame_paths(split_dir, t[1]),
            [int(n) for n in t[0].numbers[t[1]]], history) for t in drawn.targets]
        return OrbitTask(user, number, self.target_type, drawn.names, paths, np.asarray(labels, np.int32),
                         [video.directory for video, _, _ in drawn.context], targets, protocol.clip_length)


@dataclasses.dataclass
class Draw:
    """A task as frame references: context (video, positions, label), targets (video, positions,
    label, object name) or cached ``TargetVideo``s."""

    names: List[str]
    context: list
    targets: list


# ---------------------------------------------------------------- training
class TrainTaskSampler:
    """Endless training tasks of one split: user-centric or object-centric (``train_task_type``)."""

    def __init__(self, index: SplitIndex, protocol: Optional[OrbitProtocol] = None, target_video_type: str = "clutter",
                 seed: int = 0, annotations: Optional[Annotations] = None):
        self.protocol = protocol or OrbitProtocol()
        self.skipped: Dict[str, int] = collections.Counter()
        self.builder = TaskBuilder(index, self.protocol, target_video_type, True, annotations, self.skipped)
        if not self.builder.pools:
            raise DataError(
                f"No user in {index.split_dir} has two objects with a clean context video and a "
                f"{target_video_type} target video; cannot sample training tasks ({dict(self.skipped)}).")
        self.rng = np.random.default_rng(seed)
        self.users = sorted(self.builder.pools)
        self.objects = [(u, o) for u in self.users for o in sorted(self.builder.pools[u])]

    def _objects(self, user: str) -> list:
        rng, builder = self.rng, self.builder
        candidates = self.objects if user == OBJECT_CENTRIC_USER else [(user, o) for o in sorted(builder.pools[user])]
        way = builder.way(rng, len(candidates))
        return sorted(candidates[i] for i in rng.choice(len(candidates), size=way, replace=False))

    def sample(self, user: str, number: int = 0) -> OrbitTask:
        """A user-centric task of ``user``, or an object-centric one (objects of every user) for "*"."""
        return self.builder.task(self.rng, user, number, self._objects(user))

    def order(self) -> Iterator[str]:
        """Endless task owners: epochs of ``train_tasks`` per user in shuffled order, or "*"."""
        while True:
            if self.protocol.train_task_type == "object_centric":
                yield from [OBJECT_CENTRIC_USER] * self.epoch_length()
            else:
                yield from (self.users[i] for i in self.rng.permutation(
                    np.repeat(np.arange(len(self.users)), self.protocol.train_tasks)))

    def draws(self) -> Iterator[Draw]:
        """The same endless task sequence as iterating the sampler, as frame references (no paths)."""
        for user in self.order():
            yield self.builder.draw(self.rng, user, self._objects(user))

    def epoch_length(self) -> int:
        protocol = self.protocol
        if protocol.train_task_type == "object_centric" and protocol.object_centric_tasks_per == "object":
            return protocol.train_tasks * len(self.objects)
        return protocol.train_tasks * len(self.users)

    def __iter__(self) -> Iterator[OrbitTask]:
        """Epochs of ``epoch_length()`` tasks (user-centric: ``train_tasks`` per user, shuffled)."""
        for counter, user in enumerate(self.order()):
            yield self.sample(user, counter)


# ---------------------------------------------------------------- evaluation
def eval_tasks(index: SplitIndex, protocol: Optional[OrbitProtocol] = None,
               target_types: Sequence[str] = ("clean", "clutter"), tasks_per_user: Optional[int] = None,
               seed: int = 0, annotations: Optional[Annotations] = None,
               skipped: Optional[Dict[str, int]] = None) -> Iterator[OrbitTask]:
    """Every user's evaluation tasks (see module docstring); ``tasks_per_user`` defaults to the protocol's."""
    protocol = protocol or OrbitProtocol()
    split = os.path.basename(os.path.normpath(index.split_dir))
    tasks_per_user = protocol.tasks_per_user(split) if tasks_per_user is None else tasks_per_user
    if tasks_per_user < 1:
        raise DataError(f"tasks_per_user must be >= 1; got {tasks_per_user}.")
    skipped = skipped if skipped is not None else collections.Counter()
    for kind in target_types:
        builder = TaskBuilder(index, protocol, kind, False, annotations, skipped)
        for position, user in enumerate(index.user_names):
            if user not in builder.pools:
                continue
            objects = [(user, o) for o in sorted(builder.pools[user])]
            seen, cached = {}, None
            for number in range(tasks_per_user):
                rng = np.random.default_rng([seed, position, number, VIDEO_TYPES.index(kind)])
                way = builder.way(rng, len(objects))
                chosen = objects if way == len(objects) else sorted(
                    objects[i] for i in rng.choice(len(objects), size=way, replace=False))
                task = builder.task(rng, user, number, chosen, cached)
                if protocol.targets_once_per_user and cached is None:
                    cached = collections.defaultdict(list)
                    for target in task.targets:
                        cached[target.object_name].append(target)
                    cached = {name: cached.get(name, []) for name in task.object_names}
                if not task.targets:
                    skipped[f"{kind}_tasks_without_targets"] += 1
                    continue
                key = task.key()
                if key in seen:
                    skipped[f"{kind}_identical_tasks"] += 1
                    if protocol.dedupe_identical_tasks:
                        continue
                    task.repeat_of = seen[key]
                else:
                    seen[key] = number
                yield task
