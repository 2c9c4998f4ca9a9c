"""Official parity as the official code runs: README's two commands give the official test loop's outputs.

``shared/parity/official_lite_simple_cnaps_224_as_run.npz`` (see its README) holds the official LITE
model's outputs computed the way ``src/run.py`` ``Learner.test`` runs it: the set encoder in train mode
(batch statistics of the context set), the feature extractor in eval mode; 5-way, shots [1, 2, 3, 2, 4]
(a one-shot class), 10 targets. The weights go through ``lite_tf_import_weights --from=official_lite``
(``import_run``) into a run folder, which is rebuilt as ``lite_tf_evaluate`` rebuilds it
(``experiment.load_run``, ``load_weights``); images go in as uint8, as the pipelines deliver them.
Every tensor must agree to a relative error below 1e-4. 224-px EfficientNet-B0: slow (--runslow).
The batch-statistics rule itself is in the default suite (tests/test_set_encoder_batch_norm.py).
"""
import ast

import gin
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.images import to_float_images
from tests.helpers import parity_fixture_path, relative_error

TOLERANCE = 1e-4

FIXTURE = "official_lite_simple_cnaps_224_as_run.npz"
WAY = 5


def as_run_fixture() -> str:
    return parity_fixture_path(FIXTURE)


@pytest.fixture(scope="module")
def official():
    with np.load(as_run_fixture()) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The run folder lite_tf_import_weights writes, rebuilt as lite_tf_evaluate rebuilds it."""
    from lite_tf import experiment
    from lite_tf.weights.runs import OFFICIAL_LITE_BINDINGS, import_run

    run = str(tmp_path_factory.mktemp("runs") / "official_lite")
    import_run("official_lite", as_run_fixture(), run)
    model, _ = experiment.load_run(run)
    for binding in OFFICIAL_LITE_BINDINGS:  # every evaluation binding of the official code is in the run
        name, value = (part.strip() for part in binding.split("="))
        assert gin.query_parameter(name) == ast.literal_eval(value), binding
    experiment.load_weights(model, run, "best")
    return model


def as_run_errors(official, model) -> dict:
    """Relative error of every official output, recomputed through lite_tf's evaluation code."""
    from lite_tf.backbones.set_encoder import task_embedding

    learner = model.learner
    context = official["input/context_images_uint8"]
    target = official["input/target_images_uint8"]
    labels = tf.constant(official["input/context_labels"], tf.int32)
    errors = {}
    z = task_embedding(learner.set_encoder, context)  # uint8 in, as the pipelines deliver
    errors["task_representation"] = relative_error(z[None], official["output/task_representation"])
    film = learner.film_generator(z)
    for layer, (gamma, beta) in enumerate(film):
        errors[f"film/layer{layer}/gamma"] = relative_error(gamma[0], official[f"output/film/layer{layer}/block0/gamma"])
        errors[f"film/layer{layer}/beta"] = relative_error(beta[0], official[f"output/film/layer{layer}/block0/beta"])
    errors["context_features"] = relative_error(learner.features(to_float_images(context), film),
                                                official["output/context_features"])
    errors["target_features"] = relative_error(learner.features(to_float_images(target), film),
                                               official["output/target_features"])
    # VTAB / ORBIT: personalise once (lite_tf.eval.large_task), classify the converted targets
    personalized = learner.personalize(context, labels, WAY)
    errors["logits (personalize)"] = relative_error(personalized(to_float_images(target), training=False),
                                                    official["output/logits"])
    # Meta-Dataset (lite_tf_evaluate's EpisodeEvaluator): one uint8 episode through evaluate_episode, in a graph
    episode = {"support_images": context, "support_labels": labels, "query_images": target,
               "query_labels": tf.zeros([len(target)], tf.int32), "way": WAY}
    step = tf.function(lambda episode: model.evaluate_episode(episode, return_logits=True)[3])
    errors["logits (episode)"] = relative_error(step(episode), official["output/logits"])
    return errors


@pytest.mark.slow
def test_imported_run_evaluates_as_the_official_code_runs(official, imported):
    errors = as_run_errors(official, imported)
    assert len(errors) == 1 + 36 + 2 + 2
    print("as-run parity, largest relative errors:",
          {k: f"{v:.1e}" for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:6]})
    bad = {name: error for name, error in errors.items() if not error < TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


@pytest.mark.slow
def test_moving_statistics_do_not_give_the_official_outputs(official, imported):
    """The old behaviour (the set encoder on its moving statistics) misses the official task representation."""
    from lite_tf.backbones.set_encoder import set_encoder, task_embedding

    encoder = imported.learner.set_encoder
    moving = set_encoder(224, batch_norm="moving")
    moving.set_weights(encoder.get_weights())
    z = task_embedding(moving, official["input/context_images_uint8"])
    learner = imported.learner
    film = learner.film_generator(z)
    context = to_float_images(official["input/context_images_uint8"])
    logits = learner.head_logits(learner.features(context, film), official["input/context_labels"], WAY,
                                 learner.features(to_float_images(official["input/target_images_uint8"]), film))
    errors = (relative_error(z[None], official["output/task_representation"]),
              relative_error(logits, official["output/logits"]))
    print(f"moving statistics: task representation {errors[0]:.2f}, logits {errors[1]:.2f} relative error")
    assert min(errors) > 0.1
