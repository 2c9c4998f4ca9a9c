"""User-centric ORBIT task sampling: clean context, held-out targets, way bounds, determinism."""
import collections
import os

import numpy as np
import pytest

from lite_tf.data.orbit.index import load_split
from lite_tf.data.orbit.synthetic import make_orbit_folder
from lite_tf.data.orbit.tasks import ClipSpec, TrainTaskSampler, choose_clips, eval_tasks, video_clips


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("orbit")
    return make_orbit_folder(str(path / "data"), users={"train": 2, "validation": 1, "test": 2},
                             objects_per_user=5, clean_videos=3, clutter_videos=2, frames_per_video=20,
                             frame_size=16)


@pytest.fixture(scope="module")
def train_index(root, tmp_path_factory):
    return load_split(root, "train", cache_dir=str(tmp_path_factory.mktemp("cache")))


def video_of(path):
    return os.path.dirname(path)


def test_video_clips_and_choice():
    clips = video_clips(20, clip_length=4, subsample_factor=2)  # positions 0,2,..,18 -> 2 clips, tail dropped
    assert [c.tolist() for c in clips] == [[0, 2, 4, 6], [8, 10, 12, 14]]
    assert [c.tolist() for c in video_clips(3, 8, 1)] == [[0, 1, 2]]  # shorter than a clip: one short clip
    rng = np.random.default_rng(0)
    clips = video_clips(40, 4, 1)
    assert choose_clips(rng, clips, "max").tolist() == list(range(40))
    assert choose_clips(rng, clips, 3).size == 12
    assert choose_clips(rng, clips, "max", cap=2).size == 8
    sizes = {choose_clips(rng, clips, "random").size for _ in range(200)}
    assert sizes == {4 * k for k in range(1, 11)}
    for bad in (0, -1, "all", 1.5, True):
        with pytest.raises(ValueError):
            ClipSpec(clips_per_video=bad)
    with pytest.raises(ValueError):
        ClipSpec(clip_length=0)


@pytest.mark.parametrize("target_type", ["clutter", "clean"])
def test_train_tasks_context_clean_and_disjoint_from_targets(train_index, target_type):
    sampler = TrainTaskSampler(train_index, target_video_type=target_type, context=ClipSpec(4, 2, "max"),
                               target=ClipSpec(4, 1, "random"), seed=1)
    iterator = iter(sampler)
    for _ in range(30):
        task = next(iterator)
        assert all(f"{os.sep}clean{os.sep}" in p for p in task.context_paths)
        assert all(t.video_type == target_type for t in task.targets)
        context_videos = {video_of(p) for p in task.context_paths}
        target_videos = {video_of(p) for t in task.targets for p in t.paths}
        assert not context_videos & target_videos
        # one user's objects only, labels = object index within the task
        assert all(f"{os.sep}{task.user}{os.sep}" in p for p in task.context_paths)
        assert sorted(set(task.context_labels.tolist())) == list(range(task.way))
        for t in task.targets:
            assert task.object_names[t.label] == t.object_name
            assert all(f"{os.sep}{t.object_name}{os.sep}" in p for p in t.paths)
        for path, label in zip(task.context_paths, task.context_labels):
            assert f"{os.sep}{task.object_names[label]}{os.sep}" in path


def test_way_bounds(train_index):
    ways = collections.Counter(next(iter(TrainTaskSampler(train_index, way_cap=4, seed=s))).way for s in range(150))
    assert set(ways) == {2, 3, 4}
    ways = {next(iter(TrainTaskSampler(train_index, way_cap=50, seed=s))).way for s in range(150)}
    assert min(ways) == 2 and max(ways) == 5  # capped by the user's 5 objects
    with pytest.raises(ValueError, match="way_cap"):
        TrainTaskSampler(train_index, way_cap=1)


def test_train_determinism(train_index):
    def tasks(seed):
        iterator = iter(TrainTaskSampler(train_index, seed=seed, context=ClipSpec(4, 2, "random")))
        return [next(iterator) for _ in range(5)]

    a, b, c = tasks(7), tasks(7), tasks(8)
    assert [t.context_paths for t in a] == [t.context_paths for t in b]
    assert [t.target_arrays()[0] for t in a] == [t.target_arrays()[0] for t in b]
    assert [t.context_paths for t in a] != [t.context_paths for t in c]


def test_epoch_visits_every_user_equally(train_index):
    iterator = iter(TrainTaskSampler(train_index, tasks_per_user=3, seed=0))
    users = collections.Counter(next(iterator).user for _ in range(6))
    assert users == {u: 3 for u in train_index.user_names}


def test_user_splits_disjoint(root, tmp_path):
    users = {split: set(load_split(root, split, cache_dir=str(tmp_path)).user_names)
             for split in ("train", "validation", "test")}
    assert not users["train"] & users["validation"] and not users["train"] & users["test"]
    assert not users["validation"] & users["test"]


def test_eval_tasks(root, tmp_path):
    index = load_split(root, "test", cache_dir=str(tmp_path))
    tasks = list(eval_tasks(index, tasks_per_user=3, context=ClipSpec(4, 2, "max"), seed=5))
    assert len(tasks) == 2 * 2 * 3  # types x users x tasks
    for task in tasks:
        assert task.object_names == index.objects(task.user)  # all of the user's objects
        assert all(f"{os.sep}clean{os.sep}" in p for p in task.context_paths)
        context_videos = {video_of(p) for p in task.context_paths}
        assert not context_videos & {video_of(t.paths[0]) for t in task.targets}
        for target in task.targets:  # every frame of every target video is scored
            video = next(v for v in index.users[task.user][target.object_name][target.video_type]
                         if v.directory == target.video)
            assert target.frame_numbers == video.numbers.tolist() and len(target.paths) == video.num_frames
        if task.target_type == "clean":
            assert collections.Counter(t.label for t in task.targets) == {i: 1 for i in range(task.way)}
        else:
            assert len(task.targets) == 2 * task.way and len(context_videos) == 3 * task.way
    again = list(eval_tasks(index, target_types=("clutter",), tasks_per_user=3, context=ClipSpec(4, 2, "random"),
                            seed=5))
    assert [t.context_paths for t in again] == [
        t.context_paths for t in eval_tasks(index, tasks_per_user=3, context=ClipSpec(4, 2, "random"), seed=5)
        if t.target_type == "clutter"]
    capped = next(eval_tasks(index, tasks_per_user=1, max_target_frames=7))
    assert all(len(t.paths) == 7 for t in capped.targets)


def test_cle_ve_object_with_one_clean_video_has_no_target(tmp_path):
    root = make_orbit_folder(str(tmp_path / "d"), users={"test": 1}, objects_per_user=2, clean_videos=1,
                             clutter_videos=1, frames_per_video=4, frame_size=16)
    index = load_split(root, "test", cache_dir=str(tmp_path))
    skipped = collections.Counter()
    tasks = list(eval_tasks(index, tasks_per_user=1, skipped=skipped))
    assert [t.target_type for t in tasks] == ["clutter"]  # no CLE-VE task can be formed
    assert skipped == {"cle_objects_without_target_video": 2, "clean_tasks_without_targets": 1}
    with pytest.raises(ValueError, match="clean target video"):
        TrainTaskSampler(index, target_video_type="clean")
