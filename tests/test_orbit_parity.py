"""Official parity for ORBIT: the official ORBIT ProtoNets (ResNet-18 at 84 px), imported with
``--from=orbit`` and run through lite_tf's ORBIT evaluation path, gives the official test loop's tensors.

The fixture (shared/parity/official_orbit_protonets_as_run.npz, see its README) was made by running
microsoft/ORBIT-Dataset at tag results-neurips21-paper (``single-step-learner.py`` ``Learner.test``) on
one 3-way task of clips of 8 frames: frame and mean-pooled clip features (``MeanPooler``), prototypes,
logits (``PrototypicalClassifier``: 2 p.x - |p|^2) of the plain target clips, and the 48 per-frame
logits of one target video scored with its clip history (``attach_frame_history``). Official rules
checked: the ``resnet18_84`` stem (5x5/2 conv, padding 1, no max-pool), ImageNet mean/std input
normalisation of ToTensor pixels, clip features as the mean of the clip's frame features, prototypes
as class means of clip features, the linear ProtoNets logits, and frames before a video's start
repeated from its first frame. Every tensor must agree to a relative error below 1e-4.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.data.orbit.tasks import TargetVideo
from lite_tf.eval.orbit_evaluation import history_batches, personalize_task
from lite_tf.images import to_float_images
from tests.helpers import parity_fixture_path, relative_error

FIXTURE = "official_orbit_protonets_as_run.npz"
TOLERANCE = 1e-4
CLIP = 8
# What lite_tf_import_weights --from=orbit is given for this checkpoint (README "Official checkpoints").
BINDINGS = ["FRAME_SIZE = 84", "learners.protonets.backbone = 'resnet18_film_84'"]


def fixture_path() -> str:
    return parity_fixture_path(FIXTURE)


def assert_parity(errors: dict) -> None:
    bad = {name: error for name, error in errors.items() if not error < TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


@pytest.fixture(scope="module")
def official():
    with np.load(fixture_path()) as data:
        return {key: data[key] for key in data.files if not key.startswith("param/")}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The README's flow: lite_tf_import_weights --from=orbit writes a run folder; evaluation rebuilds
    the model from its experiment.gin and best.weights.h5."""
    import gin

    from lite_tf import experiment
    from lite_tf.weights.runs import import_run

    run = str(tmp_path_factory.mktemp("orbit_protonets") / "run")
    try:
        import_run("orbit", fixture_path(), run, ["gin/experiments/orbit_protonets.gin"], BINDINGS)
        model, _ = experiment.load_run(run)
        experiment.load_weights(model, run, "best")
    finally:
        gin.clear_config()
    return model


def target_video(official) -> tuple:
    """The 6 target clips as one 48-frame video and its TargetVideo (clip history of every frame)."""
    frames = official["input/target_clips_uint8"].reshape(-1, 84, 84, 3)
    video = TargetVideo(0, "object", "video", "clean", [str(i) for i in range(len(frames))],
                        list(range(len(frames))), clip_length=CLIP)
    return frames, video


def personalized(official, model):
    """The evaluator's path (OrbitEvaluator._score_task): personalise on the task's context frames
    (clip after clip, a label per frame) into a model that scores clips."""
    context = official["input/context_clips_uint8"]
    labels = np.repeat(official["input/context_clip_labels"], CLIP)
    return personalize_task(model, context.reshape(-1, 84, 84, 3), labels, 3, clip_length=CLIP)


def test_imported_orbit_protonets_gives_the_official_features_prototypes_and_logits(official, imported):
    assert imported.learner.logits == "linear"  # the import binds the official ProtoNets logit form
    adapted = personalized(official, imported)
    head = adapted.head.get_layer("prototypes")
    prototypes = head.prototypes.numpy()
    errors = {"prototypes": relative_error(prototypes, official["output/prototypes"]),
              "classifier_weight": relative_error(2 * prototypes, official["output/classifier_weight"]),
              "classifier_bias": relative_error(-np.sum(prototypes ** 2, -1), official["output/classifier_bias"])}
    # One pass of the 6 target clips through the personalised model, reading its frame features too.
    model = adapted.head
    probe = keras.Model(model.inputs, [model.get_layer("clip_pooler").input, model.get_layer("clip_pooler").output,
                                       model.outputs[0]])
    target_frames, target_clips, logits = (t.numpy() for t in probe(to_float_images(official["input/target_clips_uint8"])))
    errors["target_frame_features"] = relative_error(target_frames, official["output/target_frame_features"])
    errors["target_clip_features"] = relative_error(target_clips, official["output/target_clip_features"])
    errors["logits"] = relative_error(logits, official["output/logits"])  # the values, not only their softmax
    # Each frame of the 48-frame video with its clip history, pooled from these frame features (the
    # slow test runs every history clip through the personalised model, as the evaluator does).
    _, video = target_video(official)
    history = video.history()
    history_features = tf.reduce_mean(tf.gather(target_frames, history), axis=1)
    errors["frame_history_clip_features"] = relative_error(
        history_features, official["output/target_video_frame_history_clip_features"])
    errors["frame_history_logits"] = relative_error(head(history_features),
                                                    official["output/target_video_frame_history_logits"])
    assert_parity(errors)
    assert (np.argmax(logits, -1) == np.argmax(official["output/logits"], -1)).all()
    # the rule that made the history: frames before the start repeat frame 0
    assert history[0].tolist() == [0] * CLIP and history[7].tolist() == list(range(8))


@pytest.mark.slow
def test_frame_features_and_frame_history_logits_through_the_evaluator(official, imported):
    """Context frame and clip features, and the 48 per-frame clip-history logits as OrbitEvaluator scores
    them (each frame embedded once, histories pooled: _Personalized.history_logits) and with every
    history clip (384 frames) run whole through the personalised model (history_batches)."""
    learner = imported.learner
    context = official["input/context_clips_uint8"]
    errors = {"context_frame_features": relative_error(learner.features(to_float_images(context.reshape(-1, 84, 84, 3))),
                                                       official["output/context_frame_features"]),
              "context_clip_features": relative_error(learner.embed_support(learner.features, context),
                                                      official["output/context_clip_features"])}
    adapted = personalized(official, imported)
    frames, video = target_video(official)
    expected = official["output/target_video_frame_history_logits"]
    logits = adapted.history_logits(frames, video.history(), 64)
    whole = np.concatenate([adapted.logits(batch) for batch in history_batches(frames, video.history(), 64)])
    errors["frame_history_logits"] = relative_error(logits, expected)
    errors["frame_history_logits_whole_clips"] = relative_error(whole, expected)
    assert_parity(errors)
    assert (np.argmax(logits, -1) == np.argmax(expected, -1)).all()
