"""ORBIT folder index: caching, invalidation, and every kind of bad input."""
import json
import os
import shutil

import pytest

from lite_tf.data.orbit import index as orbit_index
from lite_tf.data.orbit.index import OrbitDataError, index_cache_path, load_split, scan_split
from lite_tf.data.orbit.synthetic import make_orbit_folder


def make(root, **kwargs):
    options = dict(users={"train": 2}, objects_per_user=3, clean_videos=2, clutter_videos=1, frames_per_video=5,
                   frame_size=16)
    options.update(kwargs)
    return make_orbit_folder(str(root), **options)


def first_video(root, user=None, kind="clean"):
    split = os.path.join(root, "train")
    user = user or sorted(os.listdir(split))[0]
    obj = sorted(os.listdir(os.path.join(split, user)))[0]
    folder = os.path.join(split, user, obj, kind)
    video = sorted(os.listdir(folder))[0]
    return os.path.join(folder, video), video, user, obj


def test_index_contents(tmp_path):
    root = make(tmp_path / "orbit")
    index = load_split(root, "train", cache_dir=str(tmp_path / "cache"))
    assert len(index.users) == 2 and all(len(objects) == 3 for objects in index.users.values())
    assert index.num_frames() == 2 * 3 * 3 * 5
    assert index.problems == {}
    video = index.users[index.user_names[0]][index.objects(index.user_names[0])[0]]["clean"][0]
    paths = video.frame_paths(index.split_dir)
    assert [os.path.basename(p) for p in paths] == [f"{video.name}-{i:05d}.jpg" for i in range(1, 6)]
    assert all(os.path.isfile(p) for p in paths)


def test_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    root = make(tmp_path / "orbit")
    cache = str(tmp_path / "cache")
    first = load_split(root, "train", cache_dir=cache)
    path = index_cache_path(os.path.join(root, "train"), cache)
    assert os.path.isfile(path) and json.load(open(path))["fingerprint"]
    assert not [name for name in os.listdir(cache) if name.endswith(".tmp")]  # atomic write left no temp file

    calls = []
    real_scan = orbit_index.scan_split
    monkeypatch.setattr(orbit_index, "scan_split", lambda *a, **k: calls.append(1) or real_scan(*a, **k))
    again = load_split(root, "train", cache_dir=cache)
    assert calls == [] and again.num_frames() == first.num_frames()

    folder, video, *_ = first_video(root)
    shutil.copy(os.path.join(folder, f"{video}-00005.jpg"), os.path.join(folder, f"{video}-00006.jpg"))
    changed = load_split(root, "train", cache_dir=cache)
    assert calls == [1] and changed.num_frames() == first.num_frames() + 1

    with open(path, "w") as stream:
        stream.write("{ not json")
    assert load_split(root, "train", cache_dir=cache).num_frames() == first.num_frames() + 1
    assert calls == [1, 1]


def test_missing_split_folder(tmp_path):
    root = make(tmp_path / "orbit")
    with pytest.raises(FileNotFoundError, match="validation"):
        load_split(root, "validation", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="Unknown ORBIT split"):
        load_split(root, "training", cache_dir=str(tmp_path / "cache"))


def test_user_with_single_object_is_kept_and_counted(tmp_path):
    """The official code keeps a user with one valid object (tag: every user; HEAD __load_all_users:
    user_valid = len(obj_ids) > 0) and evaluates them on 1-way tasks (tests/test_orbit_official_rules.py)."""
    root = make(tmp_path / "orbit", objects_per_user=1, users={"train": 1})
    make(tmp_path / "other", users={"train": 1}, seed=3)
    shutil.copytree(tmp_path / "other" / "train" / "P000", os.path.join(root, "train", "P001"))
    index = scan_split(os.path.join(root, "train"))
    assert index.user_names == ["P000", "P001"]
    assert index.problems == {"users_with_one_object": 1}
    assert scan_split(os.path.join(root, "train"), strict=True).user_names == ["P000", "P001"]
    folder, _, _, _ = first_video(root)  # P000's only object loses its clean video: the user has no object
    shutil.rmtree(os.path.dirname(folder))
    index = scan_split(os.path.join(root, "train"))
    assert index.user_names == ["P001"]
    assert index.examples["users_without_objects"] == ["P000"]
    with pytest.raises(OrbitDataError, match="P000"):
        scan_split(os.path.join(root, "train"), strict=True)


def test_object_without_clean_video_is_skipped(tmp_path):
    root = make(tmp_path / "orbit", objects_per_user=3)
    folder, video, user, obj = first_video(root)
    shutil.rmtree(os.path.dirname(folder))  # the object's whole clean/ folder
    index = scan_split(os.path.join(root, "train"))
    assert obj not in index.users[user] and len(index.users[user]) == 2
    assert index.problems["objects_without_clean_video"] == 1


def test_empty_video_and_non_image_files(tmp_path):
    root = make(tmp_path / "orbit")
    folder, video, user, obj = first_video(root)
    for name in ("notes.txt", "Thumbs.db", "cover.jpg", f"{video}-00002.txt"):
        open(os.path.join(folder, name), "w").close()
    os.makedirs(os.path.join(os.path.dirname(folder), "empty_video"))
    os.makedirs(os.path.join(root, "train", user, obj, "annotations"))
    index = scan_split(os.path.join(root, "train"))
    assert index.problems == {"ignored_files": 4, "empty_videos": 1, "unknown_folders": 1}
    videos = index.users[user][obj]["clean"]
    assert [v.name for v in videos] == [video, sorted(os.listdir(os.path.dirname(folder)))[1]]
    assert videos[0].num_frames == 5
    assert sorted(os.path.basename(p) for p in index.examples["ignored_files"]) == sorted(
        ["notes.txt", "Thumbs.db", "cover.jpg", f"{video}-00002.txt"])


def test_frame_numbering_gaps_are_kept_in_order_and_counted(tmp_path):
    root = make(tmp_path / "orbit")
    folder, video, user, obj = first_video(root)
    os.remove(os.path.join(folder, f"{video}-00003.jpg"))
    index = load_split(root, "train", cache_dir=str(tmp_path / "cache"))
    assert index.problems == {"frame_gaps": 1}
    clip = index.users[user][obj]["clean"][0]
    assert clip.numbers.tolist() == [1, 2, 4, 5]
    assert all(os.path.isfile(p) for p in clip.frame_paths(index.split_dir))
    # the compact JSON keeps the explicit numbers
    reloaded = load_split(root, "train", cache_dir=str(tmp_path / "cache"))
    assert reloaded.users[user][obj]["clean"][0].numbers.tolist() == [1, 2, 4, 5]
    with pytest.raises(OrbitDataError, match="gap"):
        load_split(root, "train", gaps="error")


def test_mixed_frame_formats_raise(tmp_path):
    root = make(tmp_path / "orbit")
    folder, video, *_ = first_video(root)
    shutil.copy(os.path.join(folder, f"{video}-00001.jpg"), os.path.join(folder, f"{video}-0000006.jpg"))
    with pytest.raises(OrbitDataError, match="mixes frame name formats"):
        scan_split(os.path.join(root, "train"))


def test_make_orbit_demo_tool(tmp_path):
    import subprocess
    import sys

    output = str(tmp_path / "demo")
    subprocess.run([sys.executable, "-m", "tools.make_orbit_demo", f"--output_dir={output}", "--frame_size=16",
                    "--train_users=2", "--validation_users=1", "--test_users=0", "--objects_per_user=2",
                    "--clean_videos=2", "--clutter_videos=1", "--frames_per_video=3", "--image_format=png"],
                   check=True, capture_output=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert sorted(os.listdir(output)) == ["train", "validation"]
    index = scan_split(os.path.join(output, "train"))
    assert len(index.users) == 2 and index.num_frames() == 2 * 2 * 3 * 3 and index.problems == {}
    video = index.users[index.user_names[0]][index.objects(index.user_names[0])[0]]["clutter"][0]
    assert video.ext == ".png"


def test_corrupt_frame_is_named(tmp_path):
    from lite_tf.data.orbit.pipeline import load_frames

    root = make(tmp_path / "orbit")
    folder, video, *_ = first_video(root)
    bad = os.path.join(folder, f"{video}-00004.jpg")
    with open(bad, "wb") as stream:
        stream.write(b"not a jpeg")
    paths = [os.path.join(folder, f"{video}-{i:05d}.jpg") for i in range(1, 6)]
    with pytest.raises(OrbitDataError, match="00004.jpg"):
        list(load_frames(paths, 16, batch_size=2))
