"""Learner.personalize: adapt once, classify any queries, save and reload with identical logits."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf import EpisodicModel, LiteConfig
from lite_tf.registry import get_backbone, get_learner
from tests.learner_helpers import IMAGE_SIZE, make_episode, tiny_learner

LEARNERS = ["protonets", "simple_cnaps", "cnaps", "finetuner"]


def build(name, **overrides):
    if name == "protonets":
        return get_learner("protonets")(backbone=get_backbone("conv4")(image_size=IMAGE_SIZE, filters=8, blocks=2))
    return tiny_learner(name, **overrides)


@pytest.mark.parametrize("name", LEARNERS)
def test_personalized_model_matches_episode_and_survives_keras_save(name, tmp_path):
    learner = build(name)
    model = EpisodicModel(learner, IMAGE_SIZE, lite=LiteConfig(chunk_size=2))
    episode = make_episode([2, 1, 3], queries=3)
    personal = learner.personalize(episode["support_images"], episode["support_labels"], 3)
    logits = personal.predict(episode["query_images"], verbose=0)
    assert logits.shape == (9, 3)
    np.testing.assert_allclose(logits, model.predict_step(episode).numpy(), rtol=1e-4, atol=1e-4)
    path = os.path.join(tmp_path, "personal.keras")
    personal.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.predict(episode["query_images"], verbose=0), logits)


def test_personalized_model_exports_a_savedmodel(tmp_path):
    learner = build("simple_cnaps")
    learner.build_for(IMAGE_SIZE)
    episode = make_episode([2, 2], queries=2)
    personal = learner.personalize(episode["support_images"], episode["support_labels"], 2)
    path = os.path.join(tmp_path, "saved")
    personal.export(path, verbose=False)
    loaded = tf.saved_model.load(path)  # keep a reference: its variables die with it
    served = loaded.serve(tf.constant(episode["query_images"]))
    np.testing.assert_allclose(served.numpy(), personal(episode["query_images"]).numpy(), rtol=1e-6)


def test_finetuner_reports_cost_and_can_tune_film():
    episode = make_episode([2, 2, 2], queries=2)
    for tune_film in (False, True):
        learner = tiny_learner("finetuner", tune_film=tune_film, steps=3)
        learner.build_for(IMAGE_SIZE)
        personal = learner.personalize(episode["support_images"], episode["support_labels"], 3)
        cost = learner.last_personalization_cost
        assert cost["seconds"] > 0 and cost["macs"] > 0 and cost["steps"] == 3
        assert personal(episode["query_images"]).shape == (6, 3)
        film = personal.get_layer("task_film").get_weights()
        assert tune_film == (not np.allclose(film[0], 1.0))  # FiLM gammas moved only when tuned


def test_cnaps_family_records_personalization_cost():
    learner = build("simple_cnaps")
    learner.build_for(IMAGE_SIZE)
    episode = make_episode([1, 2], queries=1)
    learner.personalize(episode["support_images"], episode["support_labels"], 2)
    assert learner.last_personalization_cost["macs"] > 0
