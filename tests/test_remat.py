"""LiteConfig(remat=True): recomputed activations give the stored-activation gradients, every learner."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf import EpisodicModel, LiteConfig, remat
from lite_tf.backbones.film import identity_film
from lite_tf.errors import ConfigError
from lite_tf.registry import get_backbone
from tests.learner_helpers import IMAGE_SIZE, make_episode
from tests.learner_helpers import LEARNERS, build, relative_error

SHOTS = [3, 2, 4]


def episode_gradients(model, episode, graph=False, **config):
    """Episode gradients under ``config`` with H forced, eagerly or traced (where remat saves memory)."""
    model.lite_config = LiteConfig(chunk_size=4, h=4, **config)
    run = lambda ep: model.episode_gradients(ep, subset=[0, 2, 5, 7])[2]  # noqa: E731
    if graph:
        spec = {k: tf.TensorSpec([None] * np.ndim(v), tf.as_dtype(np.asarray(v).dtype)) for k, v in episode.items()}
        run = tf.function(run, input_signature=[spec])
    return [np.asarray(g) for g in run(episode)]


def networks(model):
    return [layer for layer in model.learner._flatten_layers(include_self=False, recursive=False)
            if remat.is_functional(layer)]


@pytest.mark.parametrize("name", LEARNERS)
def test_remat_gradients_equal_stored_activations(name):
    """LITE (H and the queries back-propagated) for every learner; exact (pass 2 and the FiLM
    context pushed back through the set encoder) for Simple CNAPs."""
    model = EpisodicModel(build(name), IMAGE_SIZE, query_batch_size=3, seed=0)
    episode = make_episode(SHOTS, queries=2, seed=3)
    for mode in ("lite", "exact") if name == "simple_cnaps" else ("lite",):
        stored = episode_gradients(model, episode, mode=mode)
        assert sum(np.abs(g).max() > 0 for g in stored) >= 2
        recomputed = episode_gradients(model, episode, mode=mode, remat=True)
        assert all(remat._ORIGINAL_CALL in n.__dict__ for n in networks(model))  # remat really ran
        assert relative_error(stored, recomputed) < 1e-5, (mode, relative_error(stored, recomputed))
    episode_gradients(model, episode, mode="lite")
    assert not any(remat._ORIGINAL_CALL in n.__dict__ for n in networks(model))  # and is switched off again


@pytest.mark.slow
def test_remat_in_graph_mode_equals_stored_activations():
    model = EpisodicModel(build("protonets"), IMAGE_SIZE, seed=0)
    episode = make_episode(SHOTS, queries=2, seed=5)
    stored = episode_gradients(model, episode, graph=True, mode="lite")
    recomputed = episode_gradients(model, episode, graph=True, mode="lite", remat=True)
    assert relative_error(stored, recomputed) < 1e-5


@pytest.mark.parametrize("backbone,size", [
    ("film_conv4", 32), pytest.param("resnet18_film_84", 32, marks=pytest.mark.slow),
    pytest.param("efficientnet_b0_film", 32, marks=pytest.mark.slow),
    pytest.param("efficientnet_b0", 32, marks=pytest.mark.slow)])  # nested keras.applications model
def test_segmented_call_equals_plain_call(backbone, size):
    """Values, FiLM-parameter and weight gradients of every segmented backbone equal the plain call's."""
    network = get_backbone(backbone)(image_size=size)
    segments = remat.plan(network)
    assert len(segments) >= 2 and all(len(s.outputs) == 1 for s in segments)
    images = tf.random.stateless_uniform([2, size, size, 3], [1, 2], -1.0, 1.0)
    film = [(tf.Variable(1.0 + 0.1 * tf.random.stateless_normal(g.shape, [3, i])), tf.Variable(b))
            for i, (g, b) in enumerate(identity_film(network))]
    inputs = [images] + [t for pair in film for t in pair] if film else images
    sources = [t for pair in film for t in pair] + network.trainable_variables

    def run(segmented):
        with tf.GradientTape() as tape:
            tape.watch(images)
            out = remat.call(network, inputs, training=False) if segmented else network(inputs, training=False)
            loss = tf.reduce_sum(tf.sin(out))
        return [out] + tape.gradient(loss, [images] + sources)

    for plain, segmented in zip(run(False), run(True)):
        np.testing.assert_allclose(segmented, plain, rtol=1e-5, atol=1e-6)


def test_remat_config_is_checked():
    with pytest.raises(ConfigError, match="remat"):
        LiteConfig(remat="yes")
    with pytest.raises(ConfigError, match="not a functional"):
        remat.enable(keras.layers.Dense(2))


def test_set_encoder_is_cut_after_its_first_block_and_backbones_as_planned():
    """The set encoder's gradient comes last, so remat keeps only a quarter-size map of it (one cut,
    after the first block's pool); a backbone is cut as planned."""
    encoder, backbone = get_backbone("set_encoder")(image_size=32), get_backbone("film_conv4")(image_size=32)
    first, rest = remat.plan(encoder)
    assert first.nodes[-1].operation.name == "pool0" and first.wrapped and rest.wrapped
    assert rest.nodes[-1].operation.name == "avg_pool" and len(first.outputs) == 1
    assert len(remat.plan(backbone)) >= 2


def test_a_cut_naming_no_layer_is_a_one_line_error():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D(name="gap")(
        keras.layers.Conv2D(4, 3, name="conv")(inputs)), name="tiny")
    model.remat_cut_after = ("conv", "pool9")
    with pytest.raises(ConfigError, match=r"'tiny'.remat_cut_after names \['pool9'\]"):
        remat.plan(model)
