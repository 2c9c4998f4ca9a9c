"""ORBIT end to end on a generated folder: tf.data tasks, LITE training, CLE-VE/CLU-VE evaluation,
results file, MACs, the gin experiment file and the evaluation tool."""
import dataclasses
import json

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.learners.protonets import ProtoNets
from lite_tf.data.orbit import orbit_eval_tasks, orbit_train_dataset
from lite_tf.data.orbit.pipeline import orbit_eval_tasks, orbit_train_dataset
from lite_tf.data.orbit.protocol import NEURIPS21
from lite_tf.data.orbit.synthetic import make_orbit_folder
from lite_tf.episode import episode_signature
from lite_tf.errors import ConfigError
from lite_tf.macs import PersonalizationMacs
from lite_tf.eval.orbit_evaluation import OrbitEvaluator
from lite_tf.eval.orbit_metrics import summarize, VideoResult
from lite_tf.lite import LiteConfig
from lite_tf.model import EpisodicModel

SIZE = 32
PROTOCOL = dataclasses.replace(NEURIPS21, clip_length=4, train_context_clips=2, train_target_clips=2,
                               test_context_clips=2)
SAMPLING = dict(protocol=PROTOCOL)


def evaluate_orbit(model, tasks, **options):
    return OrbitEvaluator(progress=False, **options).evaluate_tasks(model, tasks)


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
    # neurips21 clip features: clips of 4 frames, one label per clip (LITE's h counts clips)
    expected = episode_signature(SIZE, tf.uint8, clip_length=4)
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
    assert images.shape[1:] == (4, 16, 16, 3) and images.min() >= -1.0 and images.max() <= 1.0  # resized frames
    frames = next(iter(orbit_train_dataset(root, frame_size=SIZE, num_tasks=1, cache_dir=cache, seed=0,
                                           protocol=dataclasses.replace(PROTOCOL, pool_clip_features=False))))
    clips = next(iter(orbit_train_dataset(root, frame_size=SIZE, num_tasks=1, cache_dir=cache, seed=0, **SAMPLING)))
    for part in ("support", "query"):  # the same frames, clip after clip; a clip's label is its frames' label
        np.testing.assert_array_equal(clips[f"{part}_images"].numpy().reshape(-1, SIZE, SIZE, 3),
                                      frames[f"{part}_images"].numpy())
        np.testing.assert_array_equal(np.repeat(clips[f"{part}_labels"].numpy(), 4), frames[f"{part}_labels"].numpy())
    with pytest.raises(ConfigError, match="ORBIT_ROOT"):
        orbit_train_dataset(None)


def test_train_and_evaluate(data, trained, tmp_path):
    root, cache, _ = data
    model, history, _ = trained
    assert np.isfinite(history.history["loss"][-1])
    tasks = orbit_eval_tasks(root, split="test", frame_size=SIZE, tasks_per_user=2, cache_dir=cache, **SAMPLING)
    assert len(tasks) == len(list(tasks)) == 8
    results = evaluate_orbit(model, tasks, batch_size=7)
    assert set(results["datasets"]) == {"clean", "clutter"}
    assert {row["name"] for row in results["datasets"].values()} == {"CLE-VE", "CLU-VE"}
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
    for kind in ("clean", "clutter"):
        videos = [VideoResult(r["user"], r["task"], v["object"], v["label"], v["video"], kind, v["predictions"])
                  for r in rows if r["target_type"] == kind for v in r["videos"]]
        row = results["datasets"][kind]
        summary = summarize(videos)
        assert {level: row[level] for level in summary} == summary
        assert row["per_user"]["frame_accuracy"]["n"] == 2
        # the headline: frame accuracy over videos, with its interval
        assert (row["accuracy"], row["ci95"], row["videos"]) == (
            summary["per_video"]["frame_accuracy"]["mean"], summary["per_video"]["frame_accuracy"]["ci95"],
            len(videos))
        assert row["personalization"]["tasks"] == 4 and row["personalization"]["macs"]["mean"] > 0
    # clean videos of distinct coloured shapes are easy; clutter is harder
    clean, clutter = results["datasets"]["clean"]["accuracy"], results["datasets"]["clutter"]["accuracy"]
    assert clean > 0.8 and clean > clutter
    assert results["split"] == "test" and results["frame_size"] == SIZE and results["learner"] == "ProtoNets"
    assert results["protocol"]["clip_length"] == 4 and results["personalization_macs_model"]["per_target_frame"] > 0
    assert results["clip_features_pooled"] is True
    evaluator = OrbitEvaluator()
    path = str(tmp_path / "results")
    evaluator.write(results, path, evaluator.title(results, "w.h5"))
    assert json.load(open(path + ".json"))["datasets"] == json.loads(json.dumps(results["datasets"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json", "results.md"]  # no temporary left
    markdown = open(path + ".md").read()
    assert markdown.startswith("ORBIT evaluation of w.h5 (ProtoNets, ") and results["table"] in markdown
    assert "| clean (CLE-VE) | per video | 12 |" in results["table"]
    assert "| clutter (CLU-VE) | per user | 2 |" in results["table"]


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
    a = evaluate_orbit(model, tasks, count_macs=False)
    b = evaluate_orbit(plain, tasks, count_macs=False)
    assert [v["predictions"] for r in a["tasks"] for v in r["videos"]] == \
           [v["predictions"] for r in b["tasks"] for v in r["videos"]]
    assert all(r["personalization_seconds"] is None for r in b["tasks"])


def test_evaluate_with_gin_experiment_and_with_a_run(data, trained, tmp_path):
    """lite_tf.experiment.evaluate (what tools/orbit_evaluate.py and tools/evaluate.py call) from an
    experiment file, and from a run folder with the source's own evaluator."""
    from lite_tf import experiment

    root, cache, _ = data
    model, _, weights = trained
    bindings = [f"ORBIT_ROOT = '{root}'", f"ORBIT_CACHE_DIR = '{cache}'", f"FRAME_SIZE = {SIZE}",
                "learners.protonets.backbone = 'conv4'", "OrbitProtocol.clip_length = 4",
                "OrbitProtocol.train_context_clips = 2", "OrbitProtocol.train_target_clips = 2",
                "OrbitProtocol.test_context_clips = 2", "orbit_eval_tasks.tasks_per_user = 1"]
    gin.clear_config()
    try:
        output = str(tmp_path / "out" / "results")
        (tmp_path / "out").mkdir()
        results = experiment.evaluate(None, bindings=bindings, checkpoint=weights, output=output,
                                      configs=["gin/experiments/orbit_protonets.gin"],
                                      evaluator=OrbitEvaluator(count_macs=False, progress=False))
        assert gin.query_parameter("LiteConfig.h") == 16
        assert gin.query_parameter("OrbitProtocol.train_object_cap") == 15
    finally:
        gin.clear_config()
    saved = json.load(open(output + ".json"))
    assert saved["split"] == "test" and saved["frame_size"] == SIZE and saved["learner"] == "ProtoNets"
    assert saved["weights"] == weights and set(saved["datasets"]) == {"clean", "clutter"}
    assert "| clean (CLE-VE) | per video |" in open(output + ".md").read()
    tasks = orbit_eval_tasks(root, split="test", frame_size=SIZE, tasks_per_user=1, cache_dir=cache, **SAMPLING)
    direct = evaluate_orbit(model, tasks, count_macs=False)
    assert [v["predictions"] for r in saved["tasks"] for v in r["videos"]] == \
           [v["predictions"] for r in direct["tasks"] for v in r["videos"]]
    metrics = lambda r: {k: {m: v for m, v in row.items() if m != "personalization"}  # noqa: E731 (timed)
                         for k, row in r["datasets"].items()}
    assert metrics(results) == metrics(direct)

    # a run folder: the source (sources.orbit) picks OrbitEvaluator; --datasets are target types
    run = tmp_path / "run"
    run.mkdir()
    gin.clear_config()
    try:
        config = experiment.parse_gin(["gin/experiments/orbit_protonets.gin"], bindings)
    finally:
        gin.clear_config()
    (run / "experiment.gin").write_text(config)
    try:
        clutter = experiment.evaluate(str(run), checkpoint=weights, datasets=["clutter"], progress=False)
        with pytest.raises(ConfigError, match="not on a number of episodes"):
            experiment.evaluate(str(run), checkpoint=weights, episodes=5)
    finally:
        gin.clear_config()
    assert clutter["output"] == str(run / "orbit_test") and (run / "orbit_test.md").is_file()
    assert list(clutter["datasets"]) == ["clutter"]
    assert clutter["datasets"]["clutter"]["accuracy"] == direct["datasets"]["clutter"]["accuracy"]


def test_challenge_protocol_scores_every_task_as_the_official_code(trained, tmp_path):
    """Official rule (HEAD test loop): all 50 tasks per user are scored and pooled, repeated or not;
    lite_tf computes a repeat once and reports the distinct-task figure as an extra."""
    from lite_tf.data.orbit.protocol import CHALLENGE

    model, _, _ = trained
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"test": 2}, objects_per_user=3, clean_videos=2,
                             clutter_videos=1, frames_per_video=80, frame_size=SIZE, annotations=True,
                             not_present_rate=0.1, seed=1)
    tasks = orbit_eval_tasks(root, split="test", frame_size=SIZE, protocol=CHALLENGE, cache_dir=str(tmp_path / "c"))
    results = evaluate_orbit(model, tasks, count_macs=False)
    # 50 test tasks per user, all identical here (deterministic context, <= 200 target frames)
    assert len(results["tasks"]) == 2 * 2 * 50
    assert dict(tasks.skipped) == {"clean_identical_tasks": 2 * 49, "clutter_identical_tasks": 2 * 49}
    for kind in ("clean", "clutter"):
        row = results["datasets"][kind]
        assert row["per_video"]["frame_accuracy"]["n"] == 2 * 3 * 50
        assert row["per_task"]["frame_accuracy"]["n"] == 2 * 50
        assert row["identical_tasks_once"]["videos"] == 2 * 3 and row["identical_tasks_once"]["tasks"] == 2
        assert row["accuracy"] == pytest.approx(row["identical_tasks_once"]["per_video"]["frame_accuracy"]["mean"])
    assert sum(row["repeat_of"] is not None for row in results["tasks"]) == 2 * 2 * 49
    assert "| clean (CLE-VE) | per video, each distinct task once (lite_tf extra) | 6 |" in results["table"]
    for row in results["tasks"]:
        assert row["clip_length"] == 1 and row["context_clips"] == row["context_frames"]
        for video in row["videos"]:
            assert 50 <= len(video["predictions"]) <= 80
    assert results["clip_features_pooled"] is None
