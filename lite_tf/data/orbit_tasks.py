"""User-centric ORBIT task sampling (NumPy; no TensorFlow): which frames form a task.

A task holds one user's objects; object ``i`` of ``OrbitTask.object_names`` has label ``i``.
Context frames always come from clean videos and no target video is ever in the context.

Frames are picked by clips: a video's frame positions are sub-sampled (every
``subsample_factor``-th frame), then cut into consecutive, non-overlapping clips of
``clip_length`` positions (the tail that does not fill a clip is dropped; a video shorter than one
clip is a single short clip). A clip count is an int (at most that many, drawn without
replacement), "max" (all clips) or "random" (uniform in 1..all), then capped by
``max_clips_per_video`` when set.

Training tasks (``TrainTaskSampler``): a user is drawn (every user ``tasks_per_user`` times per
epoch, in shuffled order), way ~ U[2, min(eligible objects, way_cap)], objects drawn without
replacement. Targets come from ``target_video_type`` videos: "clutter" (ORBIT's default), or
"clean", in which case each object's clean videos are split into context and target videos.
An object is eligible when it has a context and a target video; users with fewer than two eligible
objects are skipped and counted (``skipped``).

Evaluation tasks (``eval_tasks``): all of a user's objects (up to ``way_cap``, drawn per task when
capped); CLE-VE ("clean" targets): ``clean_target_videos`` clean videos per object are held out as
targets and the other clean videos are context; an object with a single clean video stays in the
context with no target video (counted). CLU-VE ("clutter"): every clean video is context and every
clutter video a target. Every target frame is scored, unless ``max_target_frames`` caps it (then
evenly spaced frames are kept).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from lite_tf.data.orbit.index import VIDEO_TYPES, SplitIndex, Video

ClipCount = Union[int, str]


@dataclasses.dataclass
class TargetVideo:
    """One target video of a task: every scored frame with its frame number."""

    label: int
    object_name: str
    video: str
    video_type: str
    paths: List[str]
    frame_numbers: List[int]


@dataclasses.dataclass
class OrbitTask:
    user: str
    task: int
    target_type: str  # "clean" (CLE-VE) or "clutter" (CLU-VE) or a training task's target type
    object_names: List[str]
    context_paths: List[str]
    context_labels: np.ndarray  # int32 [N]
    context_videos: List[str]  # directories of the videos the context frames come from
    targets: List[TargetVideo]

    @property
    def way(self) -> int:
        return len(self.object_names)

    def target_arrays(self):
        """(paths, labels) of every target frame, video after video."""
        paths = [p for t in self.targets for p in t.paths]
        labels = np.asarray([t.label for t in self.targets for _ in t.paths], dtype=np.int32)
        return paths, labels


# ---------------------------------------------------------------- clips
def video_clips(num_frames: int, clip_length: int, subsample_factor: int) -> List[np.ndarray]:
    """Frame positions of every clip of a video (see module docstring)."""
    if clip_length < 1 or subsample_factor < 1:
        raise ValueError(f"clip_length and subsample_factor must be >= 1; got {clip_length}, {subsample_factor}.")
    positions = np.arange(0, num_frames, subsample_factor, dtype=np.int64)
    if positions.size <= clip_length:
        return [positions]
    count = positions.size // clip_length
    return [positions[i * clip_length:(i + 1) * clip_length] for i in range(count)]


def _check_clip_count(name: str, count: ClipCount) -> None:
    if isinstance(count, str):
        if count not in ("max", "random"):
            raise ValueError(f"{name} must be a positive int, 'max' or 'random'; got {count!r}.")
    elif isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"{name} must be a positive int, 'max' or 'random'; got {count!r}.")


def choose_clips(rng: np.random.Generator, clips: Sequence[np.ndarray], count: ClipCount,
                 cap: Optional[int] = None) -> np.ndarray:
    """Sorted frame positions of the chosen clips."""
    available = len(clips)
    if count == "max":
        k = available
    elif count == "random":
        k = int(rng.integers(1, available + 1))
    else:
        k = min(int(count), available)
    if cap is not None:
        k = min(k, cap)
    chosen = np.sort(rng.choice(available, size=k, replace=False))
    return np.sort(np.concatenate([clips[i] for i in chosen]))


# ---------------------------------------------------------------- sampler
@dataclasses.dataclass
class ClipSpec:
    clip_length: int = 8
    subsample_factor: int = 30
    clips_per_video: ClipCount = "max"
    max_clips_per_video: Optional[int] = None

    def __post_init__(self):
        _check_clip_count("clips_per_video", self.clips_per_video)
        video_clips(1, self.clip_length, self.subsample_factor)  # validates the numbers
        if self.max_clips_per_video is not None and self.max_clips_per_video < 1:
            raise ValueError(f"max_clips_per_video must be >= 1 or None; got {self.max_clips_per_video}.")

    def positions(self, rng: np.random.Generator, video: Video) -> np.ndarray:
        clips = video_clips(video.num_frames, self.clip_length, self.subsample_factor)
        return choose_clips(rng, clips, self.clips_per_video, self.max_clips_per_video)


def _context(index: SplitIndex, rng, videos: Sequence[Video], label: int, spec: ClipSpec, paths, labels, dirs):
    for video in videos:
        positions = spec.positions(rng, video)
        paths.extend(video.frame_paths(index.split_dir, positions))
        labels.extend([label] * positions.size)
        dirs.append(video.directory)


def _target(index: SplitIndex, rng, video: Video, label: int, obj: str, kind: str,
            spec: Optional[ClipSpec], max_frames: Optional[int]) -> TargetVideo:
    if spec is None:  # evaluation: every frame, or evenly spaced ones up to max_frames
        positions = np.arange(video.num_frames)
        if max_frames is not None and positions.size > max_frames:
            positions = np.unique(np.linspace(0, video.num_frames - 1, max_frames).round().astype(np.int64))
    else:
        positions = spec.positions(rng, video)
    return TargetVideo(label, obj, video.directory, kind, video.frame_paths(index.split_dir, positions),
                       [int(n) for n in video.numbers[positions]])


def _shuffled(rng, videos: Sequence[Video]) -> List[Video]:
    return [videos[i] for i in rng.permutation(len(videos))]


class TrainTaskSampler:
    """Draws training tasks from one split (see module docstring)."""

    def __init__(self, index: SplitIndex, way_cap: int = 15, target_video_type: str = "clutter",
                 context: Optional[ClipSpec] = None, target: Optional[ClipSpec] = None,
                 context_videos_per_object: Optional[int] = None, target_videos_per_object: Optional[int] = 2,
                 tasks_per_user: int = 50, seed: int = 0):
        if target_video_type not in VIDEO_TYPES:
            raise ValueError(f"target_video_type must be one of {VIDEO_TYPES}; got {target_video_type!r}.")
        if way_cap < 2:
            raise ValueError(f"way_cap must be >= 2 (a task needs two objects); got {way_cap}.")
        self.index, self.way_cap, self.target_video_type = index, way_cap, target_video_type
        self.context = context or ClipSpec(clips_per_video="max")
        self.target = target or ClipSpec(clips_per_video="random")
        self.context_videos_per_object = context_videos_per_object
        self.target_videos_per_object = target_videos_per_object
        self.tasks_per_user = tasks_per_user
        self.rng = np.random.default_rng(seed)
        self.skipped: Dict[str, int] = collections.Counter()
        self.eligible: Dict[str, List[str]] = {}
        minimum = 2 if target_video_type == "clean" else 1
        for user in index.user_names:
            objects = []
            for obj in index.objects(user):
                if len(index.users[user][obj][target_video_type]) >= minimum:
                    objects.append(obj)
                else:
                    self.skipped["objects_without_target_video"] += 1
            if len(objects) >= 2:
                self.eligible[user] = objects
            else:
                self.skipped["users_with_fewer_than_two_eligible_objects"] += 1
        if not self.eligible:
            raise ValueError(
                f"No user in {index.split_dir} has two objects with a clean context video and a "
                f"{target_video_type} target video; cannot sample training tasks ({dict(self.skipped)}).")

    def sample(self, user: str, task: int = 0) -> OrbitTask:
        rng, index = self.rng, self.index
        objects = self.eligible[user]
        way = int(rng.integers(2, min(len(objects), self.way_cap) + 1))
        chosen = [objects[i] for i in rng.choice(len(objects), size=way, replace=False)]
        paths, labels, dirs, targets = [], [], [], []
        for label, obj in enumerate(chosen):
            types = index.users[user][obj]
            clean = _shuffled(rng, types["clean"])
            if self.target_video_type == "clean":
                limit = len(clean) - 1
                count = int(rng.integers(1, limit + 1))
                if self.target_videos_per_object is not None:
                    count = min(count, self.target_videos_per_object)
                target_videos, context_videos = clean[:count], clean[count:]
            else:
                clutter = _shuffled(rng, types["clutter"])
                count = int(rng.integers(1, len(clutter) + 1))
                if self.target_videos_per_object is not None:
                    count = min(count, self.target_videos_per_object)
                target_videos, context_videos = clutter[:count], clean
            if self.context_videos_per_object is not None:
                context_videos = context_videos[:self.context_videos_per_object]
            _context(index, rng, context_videos, label, self.context, paths, labels, dirs)
            targets.extend(_target(index, rng, v, label, obj, self.target_video_type, self.target, None)
                           for v in target_videos)
        return OrbitTask(user, task, self.target_video_type, chosen, paths, np.asarray(labels, np.int32), dirs,
                         targets)

    def __iter__(self) -> Iterator[OrbitTask]:
        """Endless: epochs of ``tasks_per_user`` tasks per user in shuffled order."""
        users = sorted(self.eligible)
        counter = 0
        while True:
            order = np.repeat(np.arange(len(users)), self.tasks_per_user)
            for position in self.rng.permutation(order):
                yield self.sample(users[position], counter)
                counter += 1


def eval_tasks(index: SplitIndex, target_types: Sequence[str] = ("clean", "clutter"), tasks_per_user: int = 5,
               context: Optional[ClipSpec] = None, clean_target_videos: int = 1,
               max_target_frames: Optional[int] = None, way_cap: Optional[int] = None,
               seed: int = 0, skipped: Optional[Dict[str, int]] = None) -> Iterator[OrbitTask]:
    """Every user's evaluation tasks, ``tasks_per_user`` per user and target type.

    Deterministic: task t of user u and type k depends only on (seed, u's position, t, k).
    """
    context = context or ClipSpec(clips_per_video="max")
    for kind in target_types:
        if kind not in VIDEO_TYPES:
            raise ValueError(f"Evaluation target types must be among {VIDEO_TYPES}; got {kind!r}.")
    if clean_target_videos < 1:
        raise ValueError(f"clean_target_videos must be >= 1; got {clean_target_videos}.")
    skipped = skipped if skipped is not None else collections.Counter()
    for kind in target_types:
        for position, user in enumerate(index.user_names):
            for task in range(tasks_per_user):
                rng = np.random.default_rng([seed, position, task, VIDEO_TYPES.index(kind)])
                objects = index.objects(user)
                if way_cap is not None and len(objects) > way_cap:
                    objects = sorted(objects[i] for i in rng.choice(len(objects), way_cap, replace=False))
                paths, labels, dirs, targets = [], [], [], []
                for label, obj in enumerate(objects):
                    types = index.users[user][obj]
                    clean = _shuffled(rng, types["clean"])
                    if kind == "clean":
                        held = min(clean_target_videos, len(clean) - 1)
                        if held == 0 and task == 0:
                            skipped["cle_objects_without_target_video"] += 1
                        target_videos, context_videos = clean[:held], clean[held:]
                    else:
                        target_videos, context_videos = types["clutter"], clean
                        if not target_videos and task == 0:
                            skipped["clu_objects_without_target_video"] += 1
                    _context(index, rng, context_videos, label, context, paths, labels, dirs)
                    targets.extend(_target(index, rng, v, label, obj, kind, None, max_target_frames)
                                   for v in target_videos)
                if not targets:
                    skipped[f"{kind}_tasks_without_targets"] += 1
                    continue
                yield OrbitTask(user, task, kind, list(objects), paths, np.asarray(labels, np.int32), dirs,
                                targets)
