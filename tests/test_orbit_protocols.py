"""Conformance of the ORBIT presets to the official rules, on a folder in the real ORBIT naming.

For each preset, the context/target videos, clips and frames of its tasks must follow the rule it
implements (microsoft/ORBIT-Dataset at results-neurips21-paper and at HEAD): exact counts where the
rule is deterministic, means within 3 standard errors of the rule's expectation where it is random.
"""
import collections
import dataclasses
import json
import os

import gin
import numpy as np
import pytest

from lite_tf.data.orbit.annotations import Annotations
from lite_tf.data.orbit.index import load_split
from lite_tf.data.orbit.protocol import CHALLENGE, NEURIPS21, PRESETS
from lite_tf.data.orbit.synthetic import make_orbit_folder
from lite_tf.data.orbit.tasks import TrainTaskSampler, eval_tasks


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("orbit_conformance")
    root = make_orbit_folder(str(base / "orbit"), users={"train": 2, "test": 2}, objects_per_user=4,
                             clean_videos=(2, 7), clutter_videos=(1, 3), frames_per_video=(10, 300), frame_size=8,
                             annotations=True, not_present_rate=0.1, seed=3)
    cache = str(base / "cache")
    return root, {split: load_split(root, split, cache_dir=cache) for split in ("train", "test")}


def by_video(index):
    return {v.directory: v for objects in index.users.values() for types in objects.values()
            for videos in types.values() for v in videos}


def frame_names(paths):
    return [os.path.basename(p) for p in paths]


def split_contexts(task, index):
    """{video directory: [frame numbers]} of the task's context, in order."""
    result = collections.defaultdict(list)
    for path in task.context_paths:
        directory = os.path.relpath(os.path.dirname(path), index.split_dir)
        result[directory].append(int(os.path.splitext(path)[0].rsplit("-", 1)[1]))
    return result


def pools(index, user, obj, kind):
    clean = sorted(index.users[user][obj]["clean"], key=lambda v: v.name)
    if kind == "clean":
        split = min(5, len(clean) - 1)
        return clean[:split], clean[split:]
    return clean, sorted(index.users[user][obj]["clutter"], key=lambda v: v.name)


def padded(numbers, length, cap=1000, full=True):
    numbers = list(numbers[:cap])
    spare = len(numbers) % length
    return numbers + [numbers[-1]] * (length - spare) if (spare or full) else numbers


def assert_mean_matches(residuals):
    """Mean of (value - its expectation) is 0 within 3 standard errors."""
    residuals = np.asarray(residuals, dtype=np.float64)
    assert residuals.size >= 30
    se = residuals.std(ddof=1) / np.sqrt(residuals.size)
    assert abs(residuals.mean()) <= 3 * se + 1e-12, (residuals.mean(), se)


# ---------------------------------------------------------------- neurips21
def test_neurips21_eval_tasks(folder):
    root, indexes = folder
    index = indexes["test"]
    videos = by_video(index)
    tasks = list(eval_tasks(index, NEURIPS21, seed=0))
    counts = collections.Counter((t.user, t.target_type) for t in tasks)
    assert counts == {(u, k): 5 for u in index.user_names for k in ("clean", "clutter")}  # 5 test tasks per user
    for (user, kind), _ in counts.items():
        user_tasks = [t for t in tasks if (t.user, t.target_type) == (user, kind)]
        objects = [o for o in index.objects(user) if pools(index, user, o, kind)[0]]
        for task in user_tasks:
            assert task.object_names == objects  # test way 'max', no object cap
            context = split_contexts(task, index)
            for label, obj in enumerate(objects):
                context_videos, target_videos = pools(index, user, obj, kind)
                # fixed CLE-VE split / every clean video; 'max' shots
                assert sorted(d for d in context if d.split(os.sep)[1] == obj) == \
                    sorted(v.directory for v in context_videos)
                for video in context_videos:  # 8 random clips of 8 frames per context video
                    frames = context[video.directory]
                    assert len(frames) == 64
                    assert all(np.all(np.diff(frames[c * 8:(c + 1) * 8]) >= 0) for c in range(8))
                targets = [t for t in task.targets if t.object_name == obj]
                assert sorted(t.video for t in targets) == sorted(v.directory for v in target_videos)
                for target in targets:  # first 1000 frames, padded to whole clips, each with its clip history
                    video = videos[target.video]
                    assert target.frame_numbers == padded(video.numbers.tolist(), 8)
                    assert target.clip_length == 8 and target.history().shape == (len(target.paths), 8)
        # target videos drawn once per user and scored in each task; contexts redrawn per task
        assert len({tuple(p for t in task.targets for p in t.paths) for task in user_tasks}) == 1
        assert len({tuple(task.context_paths) for task in user_tasks}) == 5


def test_neurips21_train_tasks(folder):
    _, indexes = folder
    index = indexes["train"]
    videos = by_video(index)
    iterator = iter(TrainTaskSampler(index, NEURIPS21, target_video_type="clutter", seed=0))
    way_residuals, context_residuals, target_residuals = [], [], []
    for _ in range(200):
        task = next(iterator)
        n_objects = len(index.objects(task.user))
        way_residuals.append(task.way - (2 + min(n_objects, 15)) / 2)  # way ~ U[2, min(n, 15)]
        context = split_contexts(task, index)
        for obj in task.object_names:
            clean = index.users[task.user][obj]["clean"]
            used = [d for d in context if d.split(os.sep)[1] == obj]
            context_residuals.append(len(used) - (1 + min(len(clean), 15)) / 2)  # 'random' shots
            assert all(len(context[d]) == 4 * 8 for d in used)  # 4 clips of 8 frames per video
            clutter = index.users[task.user][obj]["clutter"]
            targets = [t for t in task.targets if t.object_name == obj]
            target_residuals.append(len(targets) - (1 + min(len(clutter), 15)) / 2)
            assert all(len(t.paths) == 4 * 8 for t in targets)
    for residuals in (way_residuals, context_residuals, target_residuals):
        assert_mean_matches(residuals)


# ---------------------------------------------------------------- challenge
def present_positions(annotations, video):
    names = frame_names(video.frame_paths(""))
    return [i for i, name in enumerate(names) if annotations.frame(video.name, name)["object_not_present_issue"] is False]


def test_challenge_eval_tasks(folder):
    root, indexes = folder
    index = indexes["test"]
    annotations = Annotations(root, "test")
    videos = by_video(index)
    undeduped = list(eval_tasks(index, CHALLENGE, annotations=annotations, seed=0))
    tasks = list(eval_tasks(index, dataclasses.replace(CHALLENGE, dedupe_identical_tasks=True),
                            annotations=annotations, seed=0))
    keys = collections.defaultdict(set)
    for task in undeduped:
        keys[(task.user, task.target_type)].add(task.key())
    # 50 test tasks per user; each task that differs is counted exactly once
    assert collections.Counter((t.user, t.target_type) for t in undeduped) == {k: 50 for k in keys}
    assert collections.Counter((t.user, t.target_type) for t in tasks) == {k: len(v) for k, v in keys.items()}
    assert len({t.key() for t in tasks}) == len(tasks)
    for task in tasks:
        valid = {}
        for obj in index.objects(task.user):
            context_videos, target_videos = pools(index, task.user, obj, task.target_type)
            targets = [v for v in target_videos if len(present_positions(annotations, v)) >= 50]
            if context_videos and targets:
                valid[obj] = (context_videos, targets)
        assert task.object_names == sorted(valid) and task.way == min(len(valid), 15)
        context = split_contexts(task, index)
        for obj, (context_videos, target_videos) in valid.items():
            for video in context_videos:  # 'uniform': every 30th frame of the first 1000 (at most 200)
                n = min(video.num_frames, 1000)
                expected = video.numbers[np.arange(0, n, min(30, n))[:200]].tolist()
                assert context[video.directory] == expected
            targets = {t.video: t for t in task.targets if t.object_name == obj}
            assert sorted(targets) == sorted(v.directory for v in target_videos)  # < 50 valid frames: excluded
            for video in target_videos:
                present = set(video.numbers[present_positions(annotations, video)[:1000]].tolist())
                numbers = targets[video.directory].frame_numbers
                assert len(numbers) == min(len(present), 200) == len(set(numbers))  # 200 random frames
                assert set(numbers) <= present  # object_not_present frames filtered
    lengths = [len(t.paths) for task in tasks for t in task.targets]
    assert 200 in lengths and min(lengths) < 200  # both sides of the 200-frame rule are exercised


def test_challenge_train_tasks(folder):
    root, indexes = folder
    index = indexes["train"]
    videos = by_video(index)
    iterator = iter(TrainTaskSampler(index, CHALLENGE, target_video_type="clutter", seed=0,
                                     annotations=Annotations(root, "train")))
    target_residuals = []
    for _ in range(100):
        task = next(iterator)
        assert task.clip_length == 1
        context = split_contexts(task, index)
        for directory, numbers in context.items():
            video = videos[directory]
            n = min(video.num_frames, 1000)
            assert numbers == video.numbers[np.arange(0, n, min(30, n))[:200]].tolist()
        for target in task.targets:
            video = videos[target.video]
            assert video.num_frames >= 50  # min_video_frames of target videos
            n = min(video.num_frames, 1000)
            target_residuals.append(len(target.paths) - (1 + min(n, 200)) / 2)  # 'random' clips
    assert_mean_matches(target_residuals)


# ---------------------------------------------------------------- the identical-task bug
@pytest.mark.parametrize("protocol", [
    dataclasses.replace(CHALLENGE, test_filter_target=(), min_target_video_frames=1),
    dataclasses.replace(NEURIPS21, test_context_clips="max", targets_once_per_user=False)],
    ids=["challenge_short_videos", "max_context_clips"])
def test_identical_tasks_are_all_yielded_and_marked(tmp_path, protocol):
    """Official rule: every drawn task is scored (the test loops run num_test_tasks per user whatever
    they draw); lite_tf marks repeats (repeat_of) and drops them only with dedupe_identical_tasks."""
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"test": 2}, objects_per_user=3, clean_videos=2,
                             clutter_videos=2, frames_per_video=(8, 40), frame_size=8)
    index = load_split(root, "test", cache_dir=str(tmp_path / "cache"))
    skipped = collections.Counter()
    tasks = list(eval_tasks(index, dataclasses.replace(protocol, dedupe_identical_tasks=True), skipped=skipped))
    per_task = protocol.test_tasks
    assert collections.Counter((t.user, t.target_type) for t in tasks) == {
        (u, k): 1 for u in index.user_names for k in ("clean", "clutter")}
    assert skipped == {"clean_identical_tasks": 2 * (per_task - 1), "clutter_identical_tasks": 2 * (per_task - 1)}
    repeated = list(eval_tasks(index, protocol))
    assert len(repeated) == 4 * per_task and len({(t.user, t.key()) for t in repeated}) == 4
    assert [t.repeat_of for t in repeated] == [None, *[0] * (per_task - 1)] * 4


# ---------------------------------------------------------------- presets
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_gin_preset_is_the_python_preset(name):
    from lite_tf.data.orbit.pipeline import configured_protocol

    gin.clear_config()
    try:
        gin.parse_config_file(os.path.join("gin", "orbit", f"{name}.gin"))
        assert configured_protocol() == PRESETS[name]
    finally:
        gin.clear_config()
    assert configured_protocol() == NEURIPS21  # the default without bindings


def test_annotation_layout_and_filters(folder):
    root, indexes = folder
    index = indexes["test"]
    annotations = Annotations(root, "test")
    video = by_video(index)[next(d for d in by_video(index) if f"{os.sep}clutter{os.sep}" in d)]
    data = json.load(open(os.path.join(root, "annotations", "test", f"{video.name}.json")))
    assert sorted(data) == frame_names(video.frame_paths(""))
    kept = annotations.keep(video, ("no_object_not_present_issue",))
    assert kept.tolist() == present_positions(annotations, video)
    name = frame_names(video.frame_paths(""))[kept[0]]
    box = annotations.bounding_box(video.name, name, 224)
    raw = data[name]["object_bounding_box"]
    assert box.tolist() == [min(int(raw["x"] / 1080 * 224), 223), min(int(raw["y"] / 1080 * 224), 223),
                            max(1, min(int(raw["w"] / 1080 * 224), 224)), max(1, min(int(raw["h"] / 1080 * 224), 224))]
