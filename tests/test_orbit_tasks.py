"""ORBIT task sampling: clip and video rules, clean context, disjoint targets, way bounds, determinism."""
import collections
import dataclasses
import os

import numpy as np
import pytest

from lite_tf.data.orbit.index import load_split
from lite_tf.data.orbit.protocol import CHALLENGE, NEURIPS21, OrbitProtocol
from lite_tf.data.orbit.synthetic import make_orbit_folder
from lite_tf.data.orbit.tasks import OBJECT_CENTRIC_USER, TrainTaskSampler, choose_videos, clip_positions, eval_tasks
from lite_tf.errors import ConfigError, DataError

NO_FILTERS = dataclasses.replace(CHALLENGE, test_filter_target=(), min_target_video_frames=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("orbit")
    return make_orbit_folder(str(path / "data"), users={"train": 2, "validation": 1, "test": 2},
                             objects_per_user=5, clean_videos=3, clutter_videos=2, frames_per_video=20,
                             frame_size=8)


@pytest.fixture(scope="module")
def train_index(root, tmp_path_factory):
    return load_split(root, "train", cache_dir=str(tmp_path_factory.mktemp("cache")))


def video_of(path):
    return os.path.dirname(path)


def positions(method, frames, protocol, seed=0):
    return clip_positions(np.random.default_rng(seed), np.arange(frames), method, protocol)


def test_clip_positions_neurips21():
    protocol = dataclasses.replace(NEURIPS21, clip_length=4, frame_subsample_factor=2)
    # frames 0,2,..,18 (10), padded with the last frame to whole clips of 4
    assert positions("max", 20, protocol).tolist() == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18, 18, 18]]
    # the official code pads a whole clip even when the count is a multiple of clip_length
    assert positions("max", 16, NEURIPS21).tolist() == [list(range(8)), list(range(8, 16)), [15] * 8]
    long = positions("max", 2000, NEURIPS21)  # only the first 1000 frames
    assert long.shape == (126, 8) and long.max() == 999 and (long.reshape(-1)[1000:] == 999).all()
    # k clips from a short video: random duplicates of its frames fill them
    short = positions(2, 3, NEURIPS21)
    assert short.shape == (2, 8) and set(short.reshape(-1).tolist()) <= {0, 1, 2}
    assert (np.diff(short.reshape(-1)) >= 0).all()  # sorted, as the official code sorts the paths
    many = positions(3, 200, NEURIPS21)
    assert many.shape == (3, 8) and all((np.diff(clip) == 1).all() for clip in many)  # contiguous clips


def test_clip_positions_challenge():
    assert positions("max", 16, CHALLENGE).shape == (16, 1)  # no padding when nothing is spare
    assert positions("uniform", 100, CHALLENGE).reshape(-1).tolist() == [0, 30, 60, 90]
    assert positions("uniform", 10, CHALLENGE).reshape(-1).tolist() == [0]  # step = min(30, clips)
    chosen = positions("random_200", 300, CHALLENGE).reshape(-1)
    assert chosen.size == 200 and np.unique(chosen).size == 200
    assert positions("random_200", 150, CHALLENGE).size == 150
    sizes = {positions("random", 7, CHALLENGE, seed).size for seed in range(200)}
    assert sizes == set(range(1, 8))
    assert max(positions("random", 900, CHALLENGE, seed).size for seed in range(50)) <= 200  # clip_cap


def test_choose_videos():
    rng = np.random.default_rng(0)
    videos = list("abcdefgh")
    assert choose_videos(rng, videos, 3, "specific", 15) == ["a", "b", "c"]
    assert len(choose_videos(rng, videos, 3, "fixed", 15)) == 3
    assert choose_videos(rng, videos, 3, "max", 15) == videos
    assert len(choose_videos(rng, videos, 3, "max", 5)) == 5
    assert {len(choose_videos(rng, videos, 3, "random", 15)) for _ in range(300)} == set(range(1, 9))


def test_protocol_validation():
    for bad in (dict(test_context_clips=0), dict(train_target_clips="all"), dict(train_context_clips=True),
                dict(test_context_shot_method="some"), dict(train_object_cap=1), dict(clip_length=0),
                dict(test_filter_target=("blurry",)), dict(train_task_type="mixed")):
        with pytest.raises(ConfigError):
            OrbitProtocol(**bad)
    assert OrbitProtocol(test_filter_context=("no_issues",)).test_filter_context[0] == "no_object_not_present_issue"


@pytest.mark.parametrize("target_type", ["clutter", "clean"])
@pytest.mark.parametrize("protocol", [NEURIPS21, NO_FILTERS], ids=["neurips21", "challenge"])
def test_train_tasks_context_clean_and_disjoint_from_targets(train_index, target_type, protocol):
    sampler = TrainTaskSampler(train_index, protocol, target_video_type=target_type, seed=1)
    iterator = iter(sampler)
    for _ in range(30):
        task = next(iterator)
        assert all(f"{os.sep}clean{os.sep}" in p for p in task.context_paths)
        assert all(t.video_type == target_type for t in task.targets)
        context_videos = {video_of(p) for p in task.context_paths}
        target_videos = {video_of(p) for t in task.targets for p in t.paths}
        assert not context_videos & target_videos
        # one user's objects only, labels = object index within the task (sorted objects)
        assert all(f"{os.sep}{task.user}{os.sep}" in p for p in task.context_paths)
        assert sorted(set(task.context_labels.tolist())) == list(range(task.way))
        assert task.object_names == sorted(task.object_names)
        for t in task.targets:
            assert task.object_names[t.label] == t.object_name
            assert all(f"{os.sep}{t.object_name}{os.sep}" in p for p in t.paths)
        for path, label in zip(task.context_paths, task.context_labels):
            assert f"{os.sep}{task.object_names[label]}{os.sep}" in path


def test_way_bounds(train_index):
    def way(protocol, seed):
        return next(iter(TrainTaskSampler(train_index, protocol, seed=seed))).way

    ways = collections.Counter(way(dataclasses.replace(NEURIPS21, train_object_cap=4), s) for s in range(150))
    assert set(ways) == {2, 3, 4}
    ways = {way(dataclasses.replace(NEURIPS21, train_object_cap=50), s) for s in range(150)}
    assert min(ways) == 2 and max(ways) == 5  # capped by the user's 5 objects
    assert {way(dataclasses.replace(NEURIPS21, train_way_method="max"), s) for s in range(10)} == {5}


def test_train_determinism(train_index):
    def tasks(seed):
        iterator = iter(TrainTaskSampler(train_index, NEURIPS21, seed=seed))
        return [next(iterator) for _ in range(5)]

    a, b, c = tasks(7), tasks(7), tasks(8)
    assert [t.context_paths for t in a] == [t.context_paths for t in b]
    assert [t.target_arrays()[0] for t in a] == [t.target_arrays()[0] for t in b]
    assert [t.context_paths for t in a] != [t.context_paths for t in c]


def test_epoch_visits_every_user_equally(train_index):
    iterator = iter(TrainTaskSampler(train_index, dataclasses.replace(NEURIPS21, train_tasks=3), seed=0))
    users = collections.Counter(next(iterator).user for _ in range(6))
    assert users == {u: 3 for u in train_index.user_names}


def test_object_centric_tasks_mix_users(train_index):
    for per, length in (("user", 2 * 4), ("object", 10 * 4)):
        protocol = dataclasses.replace(NEURIPS21, train_task_type="object_centric", train_tasks=4,
                                       object_centric_tasks_per=per, train_object_cap=10)
        sampler = TrainTaskSampler(train_index, protocol, seed=0)
        assert sampler.epoch_length() == length
    iterator = iter(sampler)
    owners = set()
    for _ in range(40):
        task = next(iterator)
        assert task.user == OBJECT_CENTRIC_USER and 2 <= task.way <= 10
        owners |= {name.split(os.sep)[0] for name in task.object_names}
        for path, label in zip(task.context_paths, task.context_labels):
            assert f"{os.sep}{task.object_names[label]}{os.sep}" in path  # user/object in the path
    assert owners == set(train_index.user_names)


def test_train_shot_caps(tmp_path):
    root = make_orbit_folder(str(tmp_path / "d"), users={"train": 1}, objects_per_user=2, clean_videos=12,
                             clutter_videos=10, frames_per_video=2, frame_size=8)
    index = load_split(root, "train", cache_dir=str(tmp_path))
    capped = dataclasses.replace(NEURIPS21, with_train_shot_caps=True, train_context_shot_method="max",
                                 train_target_shot_method="max")
    task = next(iter(TrainTaskSampler(index, capped)))  # way 2 < 6: 10 context, 8 target videos per object
    assert len(set(map(video_of, task.context_paths))) == 20
    assert len(task.targets) == 16
    task = next(iter(TrainTaskSampler(index, dataclasses.replace(capped, with_train_shot_caps=False))))
    assert len(set(map(video_of, task.context_paths))) == 24 and len(task.targets) == 20


def test_user_splits_disjoint(root, tmp_path):
    users = {split: set(load_split(root, split, cache_dir=str(tmp_path)).user_names)
             for split in ("train", "validation", "test")}
    assert not users["train"] & users["validation"] and not users["train"] & users["test"]
    assert not users["validation"] & users["test"]


def test_eval_tasks(root, tmp_path):
    index = load_split(root, "test", cache_dir=str(tmp_path))
    tasks = list(eval_tasks(index, NEURIPS21, tasks_per_user=3, seed=5))
    assert len(tasks) == 2 * 2 * 3  # types x users x tasks
    for task in tasks:
        assert task.object_names == index.objects(task.user)  # all of the user's objects
        assert all(f"{os.sep}clean{os.sep}" in p for p in task.context_paths)
        context_videos = {video_of(p) for p in task.context_paths}
        assert not context_videos & {video_of(t.paths[0]) for t in task.targets}
        for target in task.targets:  # every frame of every target video is scored (padded to whole clips)
            video = next(v for v in index.users[task.user][target.object_name][target.video_type]
                         if v.directory == target.video)
            assert target.frame_numbers == video.numbers.tolist() + [video.numbers[-1]] * 4
        if task.target_type == "clean":  # 3 sorted clean videos: the first 2 are context, the last the target
            assert collections.Counter(t.label for t in task.targets) == {i: 1 for i in range(task.way)}
            assert len(context_videos) == 2 * task.way
        else:
            assert len(task.targets) == 2 * task.way and len(context_videos) == 3 * task.way
    again = list(eval_tasks(index, NEURIPS21, target_types=("clutter",), tasks_per_user=3, seed=5))
    assert [t.context_paths for t in again] == [t.context_paths for t in tasks if t.target_type == "clutter"]


def test_cle_ve_object_with_one_clean_video_has_no_context(tmp_path):
    root = make_orbit_folder(str(tmp_path / "d"), users={"test": 1}, objects_per_user=2, clean_videos=1,
                             clutter_videos=1, frames_per_video=4, frame_size=8)
    index = load_split(root, "test", cache_dir=str(tmp_path))
    skipped = collections.Counter()
    tasks = list(eval_tasks(index, NEURIPS21, tasks_per_user=1, skipped=skipped))
    assert [t.target_type for t in tasks] == ["clutter"]  # min(5, 1 - 1) = 0 context videos: no CLE-VE task
    assert skipped == {"clean_objects_without_context": 2, "clean_users_with_no_object": 1}
    with pytest.raises(DataError, match="clean target video"):
        TrainTaskSampler(index, NEURIPS21, target_video_type="clean")


def test_targets_drawn_once_per_user(root, tmp_path):
    index = load_split(root, "test", cache_dir=str(tmp_path))
    random_targets = dataclasses.replace(NEURIPS21, test_target_clips=1, clip_length=2)
    for once, distinct in ((True, 1), (False, 3)):
        protocol = dataclasses.replace(random_targets, targets_once_per_user=once)
        tasks = [t for t in eval_tasks(index, protocol, target_types=("clutter",), tasks_per_user=3)
                 if t.user == index.user_names[0]]
        assert len(tasks) == 3
        assert len({tuple(p for target in t.targets for p in target.paths) for t in tasks}) == distinct
        assert len({tuple(t.context_paths) for t in tasks}) == 3
