"""On-device export (lite_tf/export): the exported SavedModel and .tflite (run in the LiteRT
interpreter) give the Keras path's logits, refuse bad input with a clear error, and FineTuner's
FiLM tuning is refused in one line."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from lite_tf.errors import ConfigError, DataError
from lite_tf.export import build_recognizer, export_learner, read_image_folder, runner, write
from lite_tf.export.linalg import spd_inverse
from lite_tf.export.recognizer import MASKED_LOGIT
from lite_tf.registry import get_backbone, get_learner
from tests.learner_helpers import IMAGE_SIZE, make_episode, tiny_learner

MAX_WAY, MAX_CONTEXT, CHUNK = 5, 12, 4
SHOTS = [2, 1, 4]  # 7 context images: two chunks, a one-shot class (Simple CNAPs' official covariance)


def uint8(images):
    return np.round((np.asarray(images) + 1.0) * 127.5).astype(np.uint8)


def learner_named(name, size=IMAGE_SIZE):
    if name == "protonets":
        return get_learner("protonets")(backbone=get_backbone("conv4")(image_size=size, filters=8, blocks=2))
    return tiny_learner(name)


def keras_logits(learner, episode):
    """The Keras path: learner.personalize's model on the same (uint8) pixels."""
    context, queries = uint8(episode["support_images"]), uint8(episode["query_images"])
    personal = learner.personalize(context, episode["support_labels"], len(SHOTS))
    return context, queries, personal(tf.cast(queries, tf.float32) / 127.5 - 1.0).numpy()


@pytest.fixture(scope="module", params=["protonets", "simple_cnaps", "cnaps"])
def exported(request, tmp_path_factory):
    """One learner written in both formats from one recogniser, with its Keras reference logits."""
    tf.keras.utils.set_random_seed(7)
    learner = learner_named(request.param)
    learner.build_for(IMAGE_SIZE)
    context, queries, reference = keras_logits(learner, make_episode(SHOTS, queries=3, seed=4))
    recognizer = build_recognizer(learner, IMAGE_SIZE, MAX_WAY, MAX_CONTEXT, CHUNK)
    folder = tmp_path_factory.mktemp(request.param)
    paths = {"saved_model": str(folder / "recognizer"), "tflite": str(folder / "recognizer.tflite")}
    for format, path in paths.items():
        write(recognizer, path, format)
    labels = make_episode(SHOTS, queries=3, seed=4)["support_labels"]
    return {"name": request.param, "paths": paths, "context": context, "labels": labels, "queries": queries,
            "reference": reference}


@pytest.mark.parametrize("format", ["saved_model", "tflite"])
def test_exported_logits_equal_the_keras_path(exported, format):
    model = runner.load(exported["paths"][format])
    state = model.personalize(exported["context"], exported["labels"])
    logits = model.classify(exported["queries"], state)
    reference = exported["reference"]
    assert logits.shape == (len(reference), MAX_WAY)
    np.testing.assert_array_equal(state["class_mask"], [1, 1, 1, 0, 0])
    assert np.abs(logits[:, :3] - reference).max() <= 1e-4 * np.abs(reference).max()
    np.testing.assert_array_equal(logits[:, 3:], MASKED_LOGIT)
    # the context order does not matter (labels travel with their images)
    order = np.random.default_rng(0).permutation(len(exported["labels"]))
    shuffled = model.classify(exported["queries"], model.personalize(exported["context"][order],
                                                                     exported["labels"][order]))
    np.testing.assert_allclose(shuffled[:, :3], logits[:, :3], rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_bad_input_is_refused_by_the_savedmodel_and_the_tflite_runner(exported):
    if exported["name"] != "simple_cnaps":
        pytest.skip("the checks are the learner-independent part of the recogniser: one learner is enough")
    context, labels = exported["context"], exported["labels"]
    bad = {
        "more context images than max_context": (np.concatenate([context, context]), np.concatenate([labels, labels])),
        "a context label is >= max_way": (context, np.where(labels == 2, MAX_WAY, labels).astype(np.int32)),
        "a context label is negative": (context, np.where(labels == 0, -1, labels).astype(np.int32)),
        "a class below the largest label has no context image": (context, np.where(labels == 1, 2, labels)
                                                                 .astype(np.int32)),
    }
    saved = tf.saved_model.load(exported["paths"]["saved_model"])
    for message, (images, values) in bad.items():
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            saved.signatures["personalize"](context_images=tf.constant(images), context_labels=tf.constant(values))
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"must be \\[N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3\\]"):
        saved.signatures["personalize"](context_images=tf.constant(context[:, :8]), context_labels=tf.constant(labels))
    with pytest.raises(tf.errors.InvalidArgumentError, match="classify: images must be"):
        saved.signatures["classify"](images=tf.constant(exported["queries"][:, :8]),
                                     **saved.signatures["personalize"](context_images=tf.constant(context),
                                                                       context_labels=tf.constant(labels)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="uint8"):  # the signature's own dtype check
        saved.signatures["personalize"](context_images=tf.constant(context, tf.float32),
                                        context_labels=tf.constant(labels))
    for format, path in exported["paths"].items():
        model = runner.load(path)
        for expected, (images, values) in [("max_context=12", bad["more context images than max_context"]),
                                           ("outside \\[0, max_way=5\\)", bad["a context label is >= max_way"]),
                                           ("outside", bad["a context label is negative"]),
                                           ("class 1 has no context image",
                                            bad["a class below the largest label has no context image"])]:
            with pytest.raises(DataError, match=expected):
                model.personalize(images, values)
        state = model.personalize(context, labels)
        with pytest.raises(DataError, match="uint8"):
            model.classify(exported["queries"].astype(np.float32), state)
        with pytest.raises(DataError, match=f"\\[N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3\\]"):
            model.classify(exported["queries"][:, :8, :8], state)
        with pytest.raises(DataError, match="no image"):
            model.personalize(context[:0], labels[:0])
        with pytest.raises(DataError, match="one per image"):
            model.personalize(context, labels[:-1])


def test_spd_inverse_matches_numpy():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 30, 12)) * [[[5.0]], [[0.1]], [[20.0]]]
    matrices = np.einsum("knd,kne->kde", features, features) / 29 + np.eye(12)
    expected = np.linalg.inv(matrices)
    got = spd_inverse(matrices.astype(np.float32)).numpy()
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_finetuner_film_tuning_is_refused_in_one_line():
    learner = tiny_learner("finetuner", tune_film=True)
    learner.build_for(IMAGE_SIZE)
    with pytest.raises(ConfigError, match="tune_film=True") as error:
        build_recognizer(learner, IMAGE_SIZE)
    assert "\n" not in str(error.value)


def test_unknown_format_and_quantization_are_config_errors(tmp_path):
    learner = learner_named("protonets")
    with pytest.raises(ConfigError, match="--format"):
        export_learner(learner, IMAGE_SIZE, str(tmp_path / "x"), format="onnx")
    with pytest.raises(ConfigError, match="tflite only"):
        export_learner(learner, IMAGE_SIZE, str(tmp_path / "x"), format="saved_model", quantize="dynamic")
    with pytest.raises(ConfigError, match="not written by lite_tf_export"):
        runner.load(str(tmp_path))


@pytest.mark.slow
def test_finetuner_head_exports_and_matches_keras(tmp_path):
    tf.keras.utils.set_random_seed(7)
    learner = learner_named("finetuner")
    learner.build_for(IMAGE_SIZE)
    context, queries, reference = keras_logits(learner, make_episode(SHOTS, queries=3, seed=4))
    labels = make_episode(SHOTS, queries=3, seed=4)["support_labels"]
    path = str(tmp_path / "finetuner.tflite")
    export_learner(learner, IMAGE_SIZE, path, "tflite", max_way=MAX_WAY, max_context=MAX_CONTEXT, chunk_size=CHUNK)
    model = runner.load(path)
    logits = model.classify(queries, model.personalize(context, labels))
    assert np.abs(logits[:, :3] - reference).max() <= 1e-4 * np.abs(reference).max()


def write_image_folder(root, classes=3, per_class=6, size=24, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in range(classes):
        colour = rng.integers(0, 255, 3)
        folder = os.path.join(root, f"object{label}", "clean")
        os.makedirs(folder)
        for index in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(os.path.join(folder, f"{index:03d}.png"))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["dynamic", "int8"])
def test_quantized_file_records_its_accuracy_beside_it(tmp_path, quantize):
    tf.keras.utils.set_random_seed(7)
    data = read_image_folder(write_image_folder(str(tmp_path / "images")), IMAGE_SIZE)
    assert data[0].shape == (18, IMAGE_SIZE, IMAGE_SIZE, 3) and data[1].tolist() == sorted(data[1].tolist())
    path = str(tmp_path / f"{quantize}.tflite")
    export_learner(learner_named("protonets"), IMAGE_SIZE, path, "tflite", quantize=quantize, representative=data,
                   evaluation=data, max_way=MAX_WAY, max_context=MAX_CONTEXT, chunk_size=CHUNK)
    with open(path + ".json") as stream:
        accuracy = json.load(stream)["accuracy"]
    assert accuracy["query_images"] == 9 and accuracy["float32"] >= 0.6  # colours are easy
    assert accuracy["drop"] == pytest.approx(accuracy["float32"] - accuracy["quantized"])
    assert abs(accuracy["drop"]) <= 0.34
    assert os.path.getsize(path) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simple_cnaps", "cnaps", "protonets"])
def test_efficientnet_film_export_equals_keras(name, tmp_path):
    size = 32
    tf.keras.utils.set_random_seed(7)
    backbone_name = "efficientnet_b0" if name == "protonets" else "efficientnet_b0_film"
    backbone = get_backbone(backbone_name)(image_size=size)
    kwargs = {} if name == "protonets" else {
        "set_encoder": get_backbone("set_encoder")(image_size=size, filters=8, blocks=2), "generator_hidden": 8}
    learner = get_learner(name)(backbone=backbone, **kwargs)
    learner.build_for(size)
    episode = make_episode(SHOTS, queries=2, seed=4, size=size)
    context, queries, reference = keras_logits(learner, episode)
    recognizer = build_recognizer(learner, size, MAX_WAY, MAX_CONTEXT, CHUNK)
    for format, path in (("saved_model", str(tmp_path / "sm")), ("tflite", str(tmp_path / "m.tflite"))):
        write(recognizer, path, format)
        model = runner.load(path)
        logits = model.classify(queries, model.personalize(context, episode["support_labels"]))
        assert np.abs(logits[:, :3] - reference).max() <= 1e-4 * np.abs(reference).max(), format


@pytest.mark.slow
def test_export_launcher_writes_a_tflite_with_dynamic_quantization_and_its_accuracy(tmp_path):
    from tests.launch_helpers import TINY_CONFIG, run_tool
    from tools import export as export_tool

    config = tmp_path / "tiny.gin"
    config.write_text(TINY_CONFIG)
    images = write_image_folder(str(tmp_path / "images"), size=32)
    output = str(tmp_path / "recognizer.tflite")
    status = run_tool(export_tool, f"--gin_config={config}", "--checkpoint=init", "--format=tflite",
                      "--quantize=dynamic", f"--representative_data={images}", "--max_way=4", f"--output={output}")
    assert status == 0
    with open(output + ".json") as stream:
        meta = json.load(stream)
    assert meta["learner"] == "ProtoNets" and meta["image_size"] == 32 and meta["quantize"] == "dynamic"
    assert meta["accuracy"]["query_images"] == 9
    model = runner.load(output)
    data = read_image_folder(images, 32)
    assert model.predict(data[0], model.personalize(*data)).shape == (18,)
    assert run_tool(export_tool, "--format=tflite", "--quantize=int8", f"--gin_config={config}",
                    "--checkpoint=init", f"--output={output}") == 2  # int8 without --representative_data


def test_export_benchmark_rows_table_and_ratio():
    """The export case's specs (one per size and learner, paper backbones), table columns per N, and the
    FineTuner / meta-learner ratio lines (from rows, no process started)."""
    from lite_tf.bench import harness, results, targets

    specs = harness._export_specs(harness.Settings(case=["export"], learner=["protonets", "finetuner"]))
    assert [(s["learner"], s["backbone"], s["image_size"]) for s in specs] == [
        ("protonets", "efficientnet_b0", 84), ("finetuner", "efficientnet_b0", 84),
        ("protonets", "efficientnet_b0", 224), ("finetuner", "efficientnet_b0", 224)]
    assert specs[0]["support_sizes"] == [50, 200] and specs[0]["threads"] >= 1
    rows = [{**spec, "status": "ok", "error": None, "file_mib": 15.0, "classify_frame_ms": 20.0,
             "host_baseline_gib": 0.5, "host_peak_above_baseline_gib": 0.2, "gpu_peak_gib": None, "device": "CPU",
             "personalize_s": {"50": 1.0 if spec["learner"] == "protonets" else 3.0, "200": 2.0}} for spec in specs]
    document = {"schema": results.SCHEMA, "machine": {}, "settings": {}, "rows": rows,
                "summary": targets.summary(rows)}
    results.validate(document)
    table = results.table(rows)
    assert "personalise (s) N=50 | personalise (s) N=200" in table and "| 1.00 | 2.00 |" in table
    assert "personalisation at 84 px, N=50: finetuner (efficientnet_b0) / protonets (efficientnet_b0) = 3.00x" \
        in document["summary"]
    assert len(document["summary"]) == 4
