"""Clip features (lite_tf/clips.py): a clip of T frames is one example whose value is the mean of its
frames' values, as the official ORBIT code computes it (models/poolers.py MeanPooler:
``x.view(-1, T, D).mean(dim=1)`` over clip-major frame features, few_shot_recognisers.py
``_pool_features``); LITE's subset and chunks count clips (``personalise_with_lite`` permutes and
back-propagates clips). Tiny conv nets, so these run in a few seconds."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.clips import mean_pool, pool_clips, split_clip_model, to_frames
from lite_tf.images import to_float_images
from lite_tf.learners.protonets import ProtoNets
from lite_tf.lite import LiteConfig, SupportMapper
from lite_tf.model import EpisodicModel
from tests.learner_helpers import tiny_learner

SIZE, T = 16, 3


def clip_episode(seed=0, clips=6, way=3, queries=4):
    rng = np.random.default_rng(seed)
    return {"support_images": rng.integers(0, 256, [clips, T, SIZE, SIZE, 3]).astype(np.uint8),
            "support_labels": np.arange(clips, dtype=np.int32) % way,
            "query_images": rng.integers(0, 256, [queries, T, SIZE, SIZE, 3]).astype(np.uint8),
            "query_labels": np.arange(queries, dtype=np.int32) % way, "way": np.int32(way)}


def test_mean_pool_is_the_official_mean_pooler():
    features = np.arange(2 * T * 4, dtype=np.float32).reshape(2 * T, 4)  # clip-major: row c*T + t
    expected = features.reshape(-1, T, 4).mean(axis=1)  # torch: x.view(-1, T, D).mean(dim=1)
    np.testing.assert_allclose(mean_pool(tf.constant(features), T), expected)
    clips = tf.reshape(tf.range(2 * T * 2 * 2 * 3, dtype=tf.float32), [2, T, 2, 2, 3])
    np.testing.assert_array_equal(to_frames(clips)[T + 1], clips[1, 1])
    fn = pool_clips(lambda x: tf.reduce_sum(x, [1, 2]))
    np.testing.assert_allclose(fn(clips), tf.reduce_mean(tf.reduce_sum(clips, [2, 3]), 1))
    np.testing.assert_allclose(fn(clips[0]), tf.reduce_sum(clips[0], [1, 2]))  # frames pass through
    with pytest.raises(Exception, match="static clip length"):  # a DataError, wrapped by autograph
        tf.function(fn, input_signature=[tf.TensorSpec([None, None, 2, 2, 3])]).get_concrete_function()


@pytest.mark.parametrize("mode", ["lite", "exact", "inference"])
def test_mapper_pools_clips_and_h_counts_clips(mode):
    episode = clip_episode()
    net = keras.Sequential([keras.layers.Conv2D(4, 3, strides=4), keras.layers.GlobalAveragePooling2D()])
    net.build((None, SIZE, SIZE, 3))
    config = LiteConfig(mode=mode, h=2, chunk_size=4)  # chunks of max(1, 4 // 3) = 1 clip
    images = tf.constant(episode["support_images"])
    mapper = SupportMapper(config, 6, training=mode != "inference", seed=keras.random.SeedGenerator(1))
    mapper.tape = tf.GradientTape()
    with mapper.tape:
        mapper.start_batch()
        values = mapper.map(net, images)
    expected = tf.reduce_mean(tf.reshape(net(to_float_images(to_frames(images))), [6, T, 4]), axis=1)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-6)
    if mode == "lite":
        assert mapper.subset.shape[0] == 2 and int(tf.reduce_max(mapper.subset)) < 6  # two clips of six


def test_lite_with_h_covering_every_clip_is_full_backprop_on_clips():
    episode = clip_episode()
    grads = {}
    for mode in ("full", "lite"):
        keras.utils.set_random_seed(3)
        model = EpisodicModel(ProtoNets(backbone="conv4"), SIZE, lite=LiteConfig(mode=mode, h=6, chunk_size=5), seed=0)
        loss, _, gradients = model.episode_gradients(episode)
        grads[mode] = (float(loss), [g.numpy() for g in gradients])
    assert grads["full"][0] == pytest.approx(grads["lite"][0], rel=1e-5)
    for a, b in zip(grads["full"][1], grads["lite"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("learner", [lambda: ProtoNets(backbone="conv4", logits="linear"),
                                     lambda: tiny_learner("simple_cnaps")], ids=["protonets", "simple_cnaps"])
def test_personalised_clip_model_equals_the_episode_path(learner):
    """A personalised model takes clips [n, T, S, S, 3]; it scores them as the learner's own forward
    pass with clip features does (support clips pooled by the mapper, query clips by pool_clips)."""
    keras.utils.set_random_seed(0)
    model = EpisodicModel(learner(), SIZE, lite=LiteConfig(chunk_size=4))
    episode = clip_episode(seed=2)
    personalised = model.learner.personalize(episode["support_images"], episode["support_labels"], 3)
    assert personalised.input_shape == (None, T, SIZE, SIZE, 3)
    got = personalised(to_float_images(episode["query_images"]))
    np.testing.assert_allclose(got, model.predict_step(episode), rtol=1e-4, atol=1e-4)
    frames, head = split_clip_model(personalised)
    features = frames(to_float_images(episode["query_images"].reshape(-1, SIZE, SIZE, 3)))
    np.testing.assert_allclose(head(mean_pool(features, T)), got, rtol=1e-5, atol=1e-5)
    reloaded = keras.Model.from_config(personalised.get_config())
    reloaded.set_weights(personalised.get_weights())
    np.testing.assert_allclose(reloaded(to_float_images(episode["query_images"])), got, rtol=1e-6)


def test_protonets_linear_logits_are_the_official_form_with_the_same_softmax():
    keras.utils.set_random_seed(0)
    episode = clip_episode(seed=4)
    logits = {}
    for form in ("squared_distance", "linear"):
        keras.utils.set_random_seed(0)
        model = EpisodicModel(ProtoNets(backbone="conv4", logits=form), SIZE)
        logits[form] = model.predict_step(episode).numpy()
        features = model.learner.embed_support(model.learner.features, episode["query_images"]).numpy()
    np.testing.assert_allclose(logits["linear"] - logits["squared_distance"],
                               np.repeat(np.sum(features ** 2, -1, keepdims=True), 3, axis=1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(tf.nn.softmax(logits["linear"]), tf.nn.softmax(logits["squared_distance"]), atol=1e-5)
