"""ORBIT protocols: every rule that decides which videos, clips and frames form a task, in one value.

The official ORBIT code (microsoft/ORBIT-Dataset) changed its rules between the tag the LITE paper
used (``results-neurips21-paper``) and the challenge code (HEAD). ``OrbitProtocol`` names each rule
after the official argument it implements, so a preset (gin/orbit/neurips21.gin,
gin/orbit/challenge.gin) is a list of official arguments. ``NEURIPS21`` and ``CHALLENGE`` are the
same presets in Python.

Clip methods (how many clips of ``clip_length`` contiguous frames a video gives):
- an int k (NeurIPS ``--*_num_clips``): k random clips; when the video has fewer frames than k
  clips need, random frames of the video are duplicated to fill them (as the official code does);
- "max": every non-overlapping clip;
- "random" (HEAD): a random number in 1..min(clips, clip_cap) of random clips;
- "random_200" (HEAD): min(clips, 200) random clips;
- "uniform" (HEAD): every ``uniform_step``-th clip (at most clip_cap).
Shot methods (how many videos of an object): "specific" (the first n), "fixed" (n random),
"random" (a random number in 1..min(videos, cap)), "max" (min(videos, cap) videos).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

import gin

from lite_tf.data.orbit.annotations import expand_filters
from lite_tf.errors import ConfigError

ClipMethod = Union[int, str]
CLIP_METHODS = ("max", "random", "random_200", "uniform")
SHOT_METHODS = ("specific", "fixed", "random", "max")
WAY_METHODS = ("random", "max")
TASK_TYPES = ("user_centric", "object_centric")


@gin.configurable
@dataclasses.dataclass(frozen=True)
class OrbitProtocol:
    """The rules of one ORBIT protocol (defaults: the LITE paper's, tag results-neurips21-paper)."""

    name: str = "neurips21"
    # frames and clips
    clip_length: int = 8                        # --clip_length
    frame_cap: int = 1000                       # ORBITDataset.frame_cap: only the first 1000 frames
    frame_subsample_factor: int = 1             # neurips21 --subsample_factor (frames, before clips)
    uniform_step: int = 30                      # HEAD --subsample_factor (clip method 'uniform')
    clip_cap: int = 200                         # HEAD ORBITDataset.clip_cap ('random', 'uniform')
    pad_full_clip: bool = True                  # neurips21 pads a whole clip of the last frame even
    #                                             when the frame count is a multiple of clip_length
    frame_history: bool = True                  # neurips21 attach_frame_history: each target frame is
    #                                             scored with its clip_length - 1 previous frames
    pool_clip_features: bool = True             # neurips21 MeanPooler: a clip is one example, the mean of
    #                                             its frames' features (False: frames one by one)
    # training tasks
    train_task_type: str = "user_centric"       # --train_task_type
    train_way_method: str = "random"            # --train_way_method
    train_object_cap: int = 15                  # --train_object_cap
    train_context_shot_method: str = "random"   # --train_context_shot_method
    train_target_shot_method: str = "random"    # --train_target_shot_method
    train_context_clips: ClipMethod = 4         # --train_context_num_clips / --train_context_clip_method
    train_target_clips: ClipMethod = 4          # --train_target_num_clips / --train_target_clip_method
    train_tasks: int = 50                       # --train_tasks_per_user / --num_train_tasks
    object_centric_tasks_per: str = "user"      # object-centric epoch: tasks x users (neurips21) or x objects (HEAD)
    with_train_shot_caps: bool = False          # --with_train_shot_caps (5/10 context, 4/8 target videos)
    context_shot: int = 5                       # --context_shot ('specific'/'fixed')
    target_shot: int = 2                        # --target_shot ('specific'/'fixed')
    shot_cap: int = 15                          # ORBITDataset.context_shot_cap / target_shot_cap
    # evaluation tasks
    test_way_method: str = "max"                # --test_way_method
    test_object_cap: Optional[int] = None       # neurips21: 'max' (all objects); HEAD --test_object_cap 15
    test_context_shot_method: str = "max"       # --test_context_shot_method
    test_target_shot_method: str = "max"        # --test_target_shot_method
    test_context_clips: ClipMethod = 8          # --test_context_num_clips / --test_context_clip_method
    test_target_clips: ClipMethod = "max"       # --test_target_num_clips / --test_target_clip_method
    test_tasks: int = 5                         # --test_tasks_per_user / --num_test_tasks
    validation_tasks: int = 5                   # neurips21 reuses --test_tasks_per_user; HEAD --num_val_tasks
    targets_once_per_user: bool = True          # neurips21 TaskSampler: targets drawn for a user's first
    #                                             task and scored again in every later task
    drop_objects_without_targets: bool = False  # HEAD: an object needs a valid context and target video
    # annotations (HEAD; orbit_extra_annotations.zip)
    train_filter_context: Tuple[str, ...] = ()  # --train_filter_context
    train_filter_target: Tuple[str, ...] = ()   # --train_filter_target
    test_filter_context: Tuple[str, ...] = ()   # --test_filter_context
    test_filter_target: Tuple[str, ...] = ()    # --test_filter_target
    min_context_video_frames: int = 1           # HEAD filter_params['context']['min_video_frames']
    min_target_video_frames: int = 1            # HEAD filter_params['target']['min_video_frames'] (50)
    # lite_tf's own rule (not in the official code; see README)
    dedupe_identical_tasks: bool = False        # True: a user's repeated identical task is not scored again
    #                                             (the official code scores every drawn task)

    def __post_init__(self):
        for field in ("clip_length", "frame_cap", "frame_subsample_factor", "uniform_step", "clip_cap",
                      "train_object_cap", "train_tasks", "context_shot", "target_shot", "shot_cap", "test_tasks",
                      "validation_tasks", "min_context_video_frames", "min_target_video_frames"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"OrbitProtocol.{field} must be a positive int; got {value!r}.")
        if self.train_object_cap < 2:
            raise ConfigError(f"OrbitProtocol.train_object_cap must be >= 2 (a task needs two objects); "
                              f"got {self.train_object_cap}.")
        if self.test_object_cap is not None and (not isinstance(self.test_object_cap, int) or self.test_object_cap < 2):
            raise ConfigError(f"OrbitProtocol.test_object_cap must be None or an int >= 2; got {self.test_object_cap!r}.")
        for field in ("train_context_clips", "train_target_clips", "test_context_clips", "test_target_clips"):
            check_clip_method(f"OrbitProtocol.{field}", getattr(self, field))
        for field in ("train_context_shot_method", "train_target_shot_method", "test_context_shot_method",
                      "test_target_shot_method"):
            _check_choice(field, getattr(self, field), SHOT_METHODS)
        _check_choice("train_way_method", self.train_way_method, WAY_METHODS)
        _check_choice("test_way_method", self.test_way_method, WAY_METHODS)
        _check_choice("train_task_type", self.train_task_type, TASK_TYPES)
        _check_choice("object_centric_tasks_per", self.object_centric_tasks_per, ("user", "object"))
        for field in ("pad_full_clip", "frame_history", "pool_clip_features", "with_train_shot_caps",
                      "targets_once_per_user", "drop_objects_without_targets", "dedupe_identical_tasks"):
            if not isinstance(getattr(self, field), bool):
                raise ConfigError(f"OrbitProtocol.{field} must be True or False; got {getattr(self, field)!r}.")
        for field in ("train_filter_context", "train_filter_target", "test_filter_context", "test_filter_target"):
            object.__setattr__(self, field, expand_filters(getattr(self, field), f"OrbitProtocol.{field}"))

    def tasks_per_user(self, split: str) -> int:
        return self.validation_tasks if split == "validation" else self.test_tasks

    def filters(self, training: bool) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
        """(context criteria, target criteria) of training or evaluation tasks."""
        if training:
            return self.train_filter_context, self.train_filter_target
        return self.test_filter_context, self.test_filter_target


def check_clip_method(name: str, method: ClipMethod) -> None:
    if isinstance(method, str):
        if method not in CLIP_METHODS:
            raise ConfigError(f"{name} must be a positive int or one of {CLIP_METHODS}; got {method!r}.")
    elif isinstance(method, bool) or not isinstance(method, int) or method < 1:
        raise ConfigError(f"{name} must be a positive int or one of {CLIP_METHODS}; got {method!r}.")


def _check_choice(field: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"OrbitProtocol.{field} must be one of {choices}; got {value!r}.")


NEURIPS21 = OrbitProtocol()
CHALLENGE = OrbitProtocol(
    name="challenge", clip_length=1, frame_subsample_factor=1, uniform_step=30, pad_full_clip=False,
    frame_history=False, train_context_clips="uniform", train_target_clips="random", test_object_cap=15,
    test_context_clips="uniform", test_target_clips="random_200", test_tasks=50, validation_tasks=30,
    object_centric_tasks_per="object", targets_once_per_user=False, drop_objects_without_targets=True,
    test_filter_target=("no_object_not_present_issue",), min_target_video_frames=50)
PRESETS = {"neurips21": NEURIPS21, "challenge": CHALLENGE}
