"""ORBIT end to end on a generated folder: tf.data tasks, LITE training, CLE-VE/CLU-VE evaluation,
results file, MACs, the gin experiment file and the evaluation tool."""
import dataclasses
import json

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from learners.protonets import ProtoNets
from lite_tf.data.orbit import orbit_eval_tasks, orbit_train_dataset
from lite_tf.data.orbit.pipeline import orbit_eval_tasks, orbit_train_dataset
from lite_tf.data.orbit.protocol import NEURIPS21
from lite_tf.data.orbit.synthetic import make_orbit_folder
from lite_tf.episode import episode_signature
from lite_tf.errors import ConfigError
from lite_tf.eval.macs import PersonalizationMacs
from lite_tf.eval.orbit_evaluation import evaluate_orbit, write_results
from lite_tf.eval.orbit_metrics import summarize, VideoResult
from lite_tf.lite import LiteConfig
from lite_tf.model import EpisodicModel

SIZE = 32
PROTOCOL = dataclasses.replace(NEURIPS21, clip_length=4, train_context_clips=2, train_target_clips=2,
                               test_context_clips=2)
SAMPLING = dict(protocol=PROTOCOL)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("orbit_e2e")
    root = make_orbit_folder(str(base / "orbit"), users={"train": 3, "test": 2}, objects_per_user=3,
                             clean_videos=3, clutter_videos=2, frames_per_video=10, frame_size=SIZE)
    return root, str(base / "cache"), base


@pytest.fixture(scope="module")
def trained(data):
    root, cache, base = data
    keras.utils.set_random_seed(0)
    dataset = orbit_train_dataset(root, frame_size=SIZE, num_tasks=6, cache_dir=cache, seed=0, **SAMPLING)
    model = EpisodicModel(ProtoNets(backbone="conv4"), SIZE, lite=LiteConfig(mode="lite", h=4, chunk_size=8), seed=0)
    model.compile(keras.optimizers.Adam(1e-3))
    history = model.fit(dataset, epochs=1, verbose=0)
    weights = str(base / "model.weights.h5")
    model.save_weights(weights)
    return model, history, weights


def test_train_dataset_episodes(data):
    root, cache, _ = data
    dataset = orbit_train_dataset(root, frame_size=SIZE, num_tasks=3, cache_dir=cache, **SAMPLING)
    expected = episode_signature(SIZE, tf.uint8)
    for key, spec in expected.items():
        assert dataset.element_spec[key].is_compatible_with(spec), key
    for episode in dataset:
        way = int(episode["way"])
        assert 2 <= way <= 3
        assert episode["support_images"].dtype == tf.uint8
        assert sorted(set(episode["support_labels"].numpy().tolist())) == list(range(way))
        assert set(episode["query_labels"].numpy().tolist()) <= set(range(way))
        assert episode["support_images"].shape[0] == episode["support_labels"].shape[0]
    floats = next(iter(orbit_train_dataset(root, frame_size=16, num_tasks=1, cache_dir=cache, image_dtype="float32",
                                           **SAMPLING)))
    images = floats["support_images"].numpy()
    assert images.shape[1:] == (16, 16, 3) and images.min() >= -1.0 and images.max() <= 1.0  # resized frames
    with pytest.raises(ConfigError, match="ORBIT_ROOT"):
        orbit_train_dataset(None)


def test_train_and_evaluate(data, trained, tmp_path):
    root, cache, _ = data
    model, history, _ = trained
    assert np.isfinite(history.history["loss"][-1])
    tasks = orbit_eval_tasks(root, split="test", frame_size=SIZE, tasks_per_user=2, cache_dir=cache, **SAMPLING)
    assert len(tasks) == len(list(tasks)) == 8
    results = evaluate_orbit(model, tasks, SIZE, batch_size=7, progress=False)
    assert set(results["metrics"]) == {"CLE-VE", "CLU-VE"}
    rows = results["tasks"]
    assert len(rows) == 2 * 2 * 2  # target types x users x tasks
    assert {(r["user"], r["task"]) for r in rows} == {(u, t) for u in ("P003", "P004") for t in (0, 1)}
    for row in rows:
        assert len(row["videos"]) == (3 if row["target_type"] == "clean" else 6)
        for video in row["videos"]:
            # every frame scored, padded with the last frame to whole clips of 4 (the official rule)
            assert len(video["predictions"]) == len(video["frame_numbers"]) == 12
            assert video["frame_numbers"] == list(range(1, 11)) + [10, 10]
            assert set(video["predictions"]) <= set(range(len(row["objects"])))
        assert row["personalization_seconds"] > 0
    # the summary is the one recomputed from the per-frame predictions in the results
    for name, kind in (("CLE-VE", "clean"), ("CLU-VE", "clutter")):
        videos = [VideoResult(r["user"], r["task"], v["object"], v["label"], v["video"], kind, v["predictions"])
                  for r in rows if r["target_type"] == kind for v in r["videos"]]
        assert results["metrics"][name] == summarize(videos)
        assert results["metrics"][name]["per_user"]["frame_accuracy"]["n"] == 2
    # clean videos of distinct coloured shapes are easy; clutter is harder
    clean = results["metrics"]["CLE-VE"]["per_video"]["frame_accuracy"]["mean"]
    clutter = results["metrics"]["CLU-VE"]["per_video"]["frame_accuracy"]["mean"]
    assert clean > 0.8 and clean > clutter
    path = str(tmp_path / "results.json")
    write_results(path, results)
    assert json.load(open(path))["metrics"] == json.loads(json.dumps(results["metrics"]))


def test_personalization_macs_match_hand_count(trained):
    model, _, _ = trained
    macs = PersonalizationMacs(model.learner, SIZE)
    # conv4 (32 filters, 3x3, same padding, max-pool 2) on 32 px: MACs per frame
    per_frame = 32 * 32 * 32 * 27 + 16 * 16 * 32 * 288 + 8 * 8 * 32 * 288 + 4 * 4 * 32 * 288
    assert macs.coefficients()["per_context_frame"] == per_frame
    assert macs(40, 3) == 40 * per_frame
    assert macs.per_query_macs == per_frame + 2 * 32  # one frame + distances to 2 prototypes


class NoPersonalizeProtoNets(ProtoNets):
    def personalize(self, support_images, support_labels, way):
        raise NotImplementedError


def test_learner_without_personalize_uses_inference_path(data, trained):
    root, cache, _ = data
    model, _, weights = trained
    plain = EpisodicModel(NoPersonalizeProtoNets(backbone="conv4"), SIZE, lite=LiteConfig(h=4, chunk_size=8))
    plain.learner.backbone.set_weights(model.learner.backbone.get_weights())
    tasks = orbit_eval_tasks(root, split="test", frame_size=SIZE, tasks_per_user=1, cache_dir=cache,
                             target_types=("clutter",), **SAMPLING)
    a = evaluate_orbit(model, tasks, SIZE, count_macs=False, progress=False)
    b = evaluate_orbit(plain, tasks, SIZE, count_macs=False, progress=False)
    assert [v["predictions"] for r in a["tasks"] for v in r["videos"]] == \
           [v["predictions"] for r in b["tasks"] for v in r["videos"]]
    assert all(r["personalization_seconds"] is None for r in b["tasks"])


def test_evaluate_tool_with_gin_experiment(data, trained, tmp_path):
    from tools import orbit_evaluate

    root, cache, _ = data
    model, _, weights = trained
    gin.clear_config()
    try:
        orbit_evaluate.parse_gin(["gin/experiments/orbit_protonets.gin"], [
            f"ORBIT_ROOT = '{root}'", f"ORBIT_CACHE_DIR = '{cache}'", f"FRAME_SIZE = {SIZE}",
            "learners.protonets.backbone = 'conv4'", "OrbitProtocol.clip_length = 4",
            "OrbitProtocol.train_context_clips = 2", "OrbitProtocol.train_target_clips = 2",
            "OrbitProtocol.test_context_clips = 2"])
        assert gin.query_parameter("LiteConfig.h") == 16
        assert gin.query_parameter("OrbitProtocol.train_object_cap") == 15
        output = str(tmp_path / "out" / "results.json")
        results = orbit_evaluate.build_and_evaluate(tasks_per_user=1, checkpoint=weights, output=output,
                                                    count_macs=False, progress=False)
    finally:
        gin.clear_config()
    saved = json.load(open(output))
    assert saved["split"] == "test" and saved["frame_size"] == SIZE and saved["learner"] == "ProtoNets"
    tasks = orbit_eval_tasks(root, split="test", frame_size=SIZE, tasks_per_user=1, cache_dir=cache, **SAMPLING)
    direct = evaluate_orbit(model, tasks, SIZE, count_macs=False, progress=False)
    assert [v["predictions"] for r in saved["tasks"] for v in r["videos"]] == \
           [v["predictions"] for r in direct["tasks"] for v in r["videos"]]
    assert results["metrics"] == direct["metrics"]


def test_challenge_protocol_counts_each_distinct_task_once(trained, tmp_path):
    from lite_tf.data.orbit.protocol import CHALLENGE

    model, _, _ = trained
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"test": 2}, objects_per_user=3, clean_videos=2,
                             clutter_videos=1, frames_per_video=80, frame_size=SIZE, annotations=True,
                             not_present_rate=0.1, seed=1)
    tasks = orbit_eval_tasks(root, split="test", frame_size=SIZE, protocol=CHALLENGE, cache_dir=str(tmp_path / "c"))
    results = evaluate_orbit(model, tasks, SIZE, count_macs=False, progress=False)
    # 50 test tasks per user, all identical here (deterministic context, <= 200 target frames): scored once
    assert len(results["tasks"]) == 2 * 2
    assert dict(tasks.skipped) == {"clean_identical_tasks": 2 * 49, "clutter_identical_tasks": 2 * 49}
    for name in ("CLE-VE", "CLU-VE"):
        assert results["metrics"][name]["per_video"]["frame_accuracy"]["n"] == 2 * 3  # not 50x that
        assert results["metrics"][name]["per_task"]["frame_accuracy"]["n"] == 2
    for row in results["tasks"]:
        assert row["clip_length"] == 1 and row["context_clips"] == row["context_frames"]
        for video in row["videos"]:
            assert 50 <= len(video["predictions"]) <= 80
    assert results["clip_features_pooled"] is None
