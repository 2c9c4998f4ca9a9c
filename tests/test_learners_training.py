"""Every learner: LITE with h >= N equals full back-propagation; meta-training lowers the loss."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf import EpisodicModel, LiteConfig, episode_signature
from lite_tf.registry import get_backbone, get_learner
from tests.learner_helpers import IMAGE_SIZE, class_templates, make_episode, tiny_learner

LEARNERS = ["protonets", "simple_cnaps", "cnaps", "finetuner"]


def build(name, **overrides):
    if name == "protonets":
        return get_learner("protonets")(backbone=get_backbone("conv4")(image_size=IMAGE_SIZE, filters=8,
                                                                           blocks=2), **overrides)
    return tiny_learner(name, **overrides)


def max_relative_error(expected, got):
    return max(float(tf.reduce_max(tf.abs(a - b)) / (tf.reduce_max(tf.abs(a)) + 1e-30)) for a, b in zip(expected, got))


@pytest.mark.parametrize("name", LEARNERS)
def test_lite_with_h_at_least_n_equals_full_backprop(name):
    model = EpisodicModel(build(name), IMAGE_SIZE, lite=LiteConfig(mode="full"), query_batch_size=3, seed=0)
    episode = make_episode([1, 3, 2], queries=2)
    full_loss, _, full = model.episode_gradients(episode)
    assert any(float(tf.reduce_max(tf.abs(g))) > 0 for g in full)
    model.lite_config = LiteConfig(mode="lite", h=8, chunk_size=2)
    lite_loss, _, lite = model.episode_gradients(episode)
    np.testing.assert_allclose(float(lite_loss), float(full_loss), rtol=1e-6)
    assert max_relative_error(full, lite) < 1e-5
    # The comparison can fail: with h < N the estimate differs from the full gradient.
    model.lite_config = LiteConfig(mode="lite", h=2, chunk_size=2)
    _, _, subset = model.episode_gradients(episode)
    assert max_relative_error(full, subset) > 1e-3


def test_cnaps_family_freezes_the_backbone_and_trains_the_adaptation():
    for name in ("simple_cnaps", "cnaps"):
        learner = build(name)
        learner.build_for(IMAGE_SIZE)
        trainable = {id(v) for v in learner.trainable_variables}
        assert not any(id(v) in trainable for v in learner.backbone.weights)
        assert all(id(v) in trainable for v in learner.set_encoder.trainable_weights)
        assert all(id(v) in trainable for v in learner.film_generator.trainable_weights)
    protonets = build("protonets")
    protonets.build_for(IMAGE_SIZE)
    assert protonets.backbone.trainable_weights


def episode_dataset(count, seed):
    templates = class_templates(6, seed=0)
    rng = np.random.default_rng(seed)
    episodes = [make_episode(list(rng.integers(1, 4, size=int(rng.integers(2, 4)))), queries=2,
                             seed=int(rng.integers(1 << 30)), templates=templates) for _ in range(count)]
    return tf.data.Dataset.from_generator(lambda: iter(episodes), output_signature=episode_signature(IMAGE_SIZE))


@pytest.mark.parametrize("name", LEARNERS)
def test_meta_training_lowers_the_loss(name):
    keras.utils.set_random_seed(3)
    model = EpisodicModel(build(name), IMAGE_SIZE, lite=LiteConfig(mode="lite", h=3, chunk_size=2), seed=0)
    model.compile(keras.optimizers.Adam(1e-2))
    evaluation = episode_dataset(6, seed=100)
    before = model.evaluate(evaluation, verbose=0, return_dict=True)["loss"]
    model.fit(episode_dataset(10, seed=1).repeat(10), verbose=0)  # variable way and N, one trace
    after = model.evaluate(evaluation, verbose=0, return_dict=True)["loss"]
    assert after < 0.9 * before, (before, after)
