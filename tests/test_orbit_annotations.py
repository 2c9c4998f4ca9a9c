"""ORBIT extra annotations: filter criteria as the official code reads them, bad files named, the
challenge filter on the training path, and ``sources.orbit``."""
import dataclasses
import json
import os

import gin
import pytest

from lite_tf.data.orbit.annotations import (FRAME_ISSUES, NEGATED_ISSUES, Annotations, expand_filters, matches,
                                            scale_box)
from lite_tf.data.orbit.index import load_split
from lite_tf.data.orbit.protocol import CHALLENGE
from lite_tf.data.orbit.synthetic import make_orbit_folder
from lite_tf.data.orbit.tasks import TrainTaskSampler
from lite_tf.errors import ConfigError, DataError


def test_expand_filters():
    assert expand_filters(["no_issues"]) == NEGATED_ISSUES
    assert expand_filters(["mixed_issues", "blur_issue"]) == FRAME_ISSUES
    assert expand_filters(["blur_issue", "framing_issue", "blur_issue"]) == ("blur_issue", "framing_issue")
    with pytest.raises(ConfigError, match="blurry"):
        expand_filters(["blurry"])
    with pytest.raises(ConfigError, match="list"):
        expand_filters("blur_issue")


def test_matches_any_criterion_and_null_matches_nothing():
    frame = {"object_not_present_issue": False, "blur_issue": True, "framing_issue": None}
    assert matches(frame, ("no_object_not_present_issue",))
    assert matches(frame, ("blur_issue",)) and not matches(frame, ("no_blur_issue",))
    assert not matches(frame, ("framing_issue",)) and not matches(frame, ("no_framing_issue",))
    assert matches(frame, ("framing_issue", "blur_issue"))  # any criterion keeps the frame


def test_scale_box_clamps_into_the_frame():
    assert scale_box({"x": 1079, "y": 0, "w": 1080, "h": 2}, 84).tolist() == [83, 0, 84, 1]
    assert scale_box({"x": 540, "y": 270, "w": 108, "h": 216}, 224).tolist() == [112, 56, 22, 44]


def test_bad_annotation_files_are_named(tmp_path):
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"train": 1}, objects_per_user=2, clean_videos=2,
                             clutter_videos=1, frames_per_video=3, frame_size=8, annotations=True)
    index = load_split(root, "train", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="annotations"):
        Annotations(str(tmp_path / "elsewhere"), "train")
    video = index.users[index.user_names[0]][index.objects(index.user_names[0])[0]]["clean"][0]
    path = os.path.join(root, "annotations", "train", f"{video.name}.json")
    data = json.load(open(path))
    del data[f"{video.name}-00002.jpg"]
    json.dump(data, open(path, "w"))
    with pytest.raises(DataError, match="00002.jpg"):
        Annotations(root, "train").keep(video, ("no_blur_issue",))
    open(path, "w").write("{not json")
    with pytest.raises(DataError, match="not readable JSON"):
        Annotations(root, "train").keep(video, ("no_blur_issue",))
    os.remove(path)
    with pytest.raises(DataError, match="is missing"):
        Annotations(root, "train").keep(video, ("no_blur_issue",))
    # a protocol with filters and no annotations is refused, naming the criteria
    with pytest.raises(DataError, match="no_blur_issue"):
        TrainTaskSampler(index, dataclasses.replace(CHALLENGE, train_filter_context=("no_blur_issue",)))


def test_training_context_filter(tmp_path):
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"train": 2}, objects_per_user=3, clean_videos=3,
                             clutter_videos=1, frames_per_video=60, frame_size=8, annotations=True,
                             not_present_rate=0.3)
    index = load_split(root, "train", cache_dir=str(tmp_path / "cache"))
    annotations = Annotations(root, "train")
    protocol = dataclasses.replace(CHALLENGE, train_filter_context=("no_object_not_present_issue",),
                                   train_context_clips="max")
    iterator = iter(TrainTaskSampler(index, protocol, annotations=annotations))
    seen = 0
    for _ in range(10):
        for path in next(iterator).context_paths:
            video = os.path.basename(os.path.dirname(path))
            assert annotations.frame(video, os.path.basename(path))["object_not_present_issue"] is False
            seen += 1
    assert seen > 0


def test_orbit_source(tmp_path):
    from lite_tf.registry import get_source

    root = make_orbit_folder(str(tmp_path / "orbit"), users={"train": 1, "validation": 1}, objects_per_user=2,
                             clean_videos=2, clutter_videos=1, frames_per_video=3, frame_size=8)
    source = get_source("orbit")()
    with gin.unlock_config():
        gin.bind_parameter("orbit_train_dataset.cache_dir", str(tmp_path / "cache"))
    episode = next(iter(source.episodes("valid", image_size=8, seed=0, data_root=root)))
    # neurips21 pools clip features: support images are clips [clips, 8 frames, 8, 8, 3]
    assert episode["support_images"].shape[-3:] == (8, 8, 3) and int(episode["way"]) == 2
    assert tuple(source.dataset_names()) == ("clean", "clutter")
    with pytest.raises(ConfigError, match="unknown target type\\(s\\) 'x'; expected clean or clutter"):
        source.episodes("train", image_size=8, seed=0, data_root=root, datasets=["x"])
    with pytest.raises(ConfigError, match="one target video type"):
        source.episodes("train", image_size=8, seed=0, data_root=root, datasets=["clean", "clutter"])
    clean = next(iter(source.episodes("valid", image_size=8, seed=0, data_root=root, datasets=["clean"])))
    assert int(clean["way"]) == 2


def test_annotations_needed_only_where_the_protocol_filters(tmp_path):
    from lite_tf.data.orbit.pipeline import orbit_eval_tasks, orbit_train_dataset

    root = make_orbit_folder(str(tmp_path / "orbit"), users={"train": 1, "test": 1}, objects_per_user=2,
                             clean_videos=2, clutter_videos=1, frames_per_video=3, frame_size=8)
    protocol = dataclasses.replace(CHALLENGE, min_target_video_frames=1)  # filters test targets only
    episode = next(iter(orbit_train_dataset(root, frame_size=8, protocol=protocol, num_tasks=1,
                                            cache_dir=str(tmp_path / "cache"))))
    assert int(episode["way"]) == 2
    with pytest.raises(DataError, match=os.path.join("annotations", "test")):
        orbit_eval_tasks(root, split="test", frame_size=8, protocol=protocol, cache_dir=str(tmp_path / "cache"))
