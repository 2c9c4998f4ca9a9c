"""The LITE estimator against its exact values."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.lite import LiteConfig, SupportMapper, chunked_map, draw_subset
from tests.helpers import assert_gradients_close, make_episode, protonets_model


def grads(model, episode, subset=None):
    loss, accuracy, gradients = model.episode_gradients(episode, subset=subset)
    return float(loss), [np.asarray(g) for g in gradients]


@pytest.fixture
def episode():
    return make_episode(np.random.default_rng(3), way=3, shots=[1, 2, 3], queries=2)


def with_mode(model, **config):
    model.lite_config = LiteConfig(**config)
    return model


@pytest.mark.parametrize("h", [6, 10])
def test_h_at_least_n_equals_full_backprop(episode, h):
    model = protonets_model()
    full_loss, full = grads(with_mode(model, mode="full"), episode)
    lite_loss, lite = grads(with_mode(model, mode="lite", h=h, chunk_size=2), episode)
    assert lite_loss == pytest.approx(full_loss, rel=1e-6)
    assert_gradients_close(lite, full)


def test_h_at_least_n_equals_full_backprop_in_graph_mode(episode):
    model = protonets_model()
    step = tf.function(lambda ep: model.episode_gradients(ep)[2], reduce_retracing=True)
    with_mode(model, mode="full")
    full = [np.asarray(g) for g in step(episode)]
    with_mode(model, mode="lite", h=6, chunk_size=4)
    step = tf.function(lambda ep: model.episode_gradients(ep)[2], reduce_retracing=True)
    assert_gradients_close([np.asarray(g) for g in step(episode)], full)


def test_unbiased_average_over_all_subsets_equals_full_gradient(episode):
    model = protonets_model()
    n, h = 6, 2
    _, full = grads(with_mode(model, mode="full"), episode)
    with_mode(model, mode="lite", h=h, chunk_size=4)
    subsets = list(itertools.combinations(range(n), h))
    total = None
    for subset in subsets:
        _, g = grads(model, episode, subset=subset)
        total = g if total is None else [t + x for t, x in zip(total, g)]
    assert len(subsets) == 15
    assert_gradients_close([t / len(subsets) for t in total], full, rtol=1e-5)
    # A single subset is a noisy estimate, not the full gradient (so the check above can fail).
    assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(g, full))


def query_only_gradient(model, episode):
    """The exact query-path gradient: the support set mapped with no gradient at all."""
    ep = {k: tf.convert_to_tensor(v) for k, v in episode.items()}
    with tf.GradientTape() as tape:
        mapper = SupportMapper(LiteConfig(), tf.shape(ep["support_labels"])[0], training=False)
        mapper.start_batch()
        logits = model.learner(ep["support_images"], ep["support_labels"], ep["query_images"], ep["way"],
                               mapper=mapper, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(ep["query_labels"], logits))
    gradients = tape.gradient(loss, model.trainable_variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [np.asarray(g) for g in gradients]


def test_none_and_loss_scalings_give_documented_expectations(episode):
    """Over all subsets: 'none' averages to q + (h/N) s, 'loss' to (N/h) q + s, 'unbiased' to q + s,
    where q is the exact query-path gradient and s = full - q the support term."""
    model = protonets_model()
    n, h = 6, 2
    _, full = grads(with_mode(model, mode="full"), episode)
    query = query_only_gradient(model, episode)
    support = [f - q for f, q in zip(full, query)]
    expected = {
        "none": [q + h / n * s for q, s in zip(query, support)],
        "loss": [n / h * q + s for q, s in zip(query, support)],
        "unbiased": full,
    }
    subsets = list(itertools.combinations(range(n), h))
    for scaling, target in expected.items():
        with_mode(model, mode="lite", h=h, chunk_size=4, gradient_scaling=scaling)
        total = None
        for subset in subsets:
            _, g = grads(model, episode, subset=subset)
            total = g if total is None else [t + x for t, x in zip(total, g)]
        assert_gradients_close([t / len(subsets) for t in total], target, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scaling", ["unbiased", "none", "loss"])
def test_rows_outside_subset_get_zero_gradient(scaling):
    """Per-row gradient w.r.t. the support images: zero outside H, factor x exact inside H."""
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(6, 4, 4, 3)), tf.float32)
    weights = tf.constant(rng.normal(size=(48, 5)), tf.float32)
    fn = lambda x: tf.tanh(tf.matmul(tf.reshape(x, [-1, 48]), weights))
    target = tf.constant(rng.normal(size=(6, 5)), tf.float32)

    def loss_of(features):
        return tf.reduce_sum((tf.reduce_mean(features, 0) - target) ** 2 * tf.range(1.0, 7.0)[:, None])

    with tf.GradientTape() as tape:
        tape.watch(images)
        exact = loss_of(fn(images))
    exact_grad = tape.gradient(exact, images).numpy()

    with tf.GradientTape() as tape:
        tape.watch(images)
        mapper = SupportMapper(LiteConfig(h=2, chunk_size=4, gradient_scaling=scaling), 6, training=True,
                               tape=tape, subset=(1, 4))
        mapper.start_batch()
        features = mapper.map(fn, images)
        loss = loss_of(features) * mapper.loss_scale
    lite_grad = tf.convert_to_tensor(tape.gradient(loss, images)).numpy()
    np.testing.assert_allclose(features.numpy(), fn(images).numpy(), rtol=1e-6)
    for row in range(6):
        if row in (1, 4):
            expected = exact_grad[row] * (3.0 if scaling in ("unbiased", "loss") else 1.0)
            np.testing.assert_allclose(lite_grad[row], expected, rtol=1e-5, atol=1e-7)
        else:
            assert np.all(lite_grad[row] == 0.0), f"row {row} outside H got a gradient"
    assert float(mapper.loss_scale) == pytest.approx(3.0 if scaling == "loss" else 1.0)


def test_values_equal_full_forward_pass_and_no_gradient_pass_is_not_recorded():
    rng = np.random.default_rng(1)
    images = tf.constant(rng.normal(size=(11, 4, 4, 3)), tf.float32)
    calls = []

    def fn(x):
        calls.append(int(x.shape[0]))
        return tf.reduce_sum(x, axis=[1, 2])

    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        mapper = SupportMapper(LiteConfig(h=3, chunk_size=4), 11, training=True,
                               seed=keras.random.SeedGenerator(0), tape=tape)
        mapper.start_batch()
        first = mapper.map(fn, images)
        mapper.start_batch()
        second = mapper.map(fn, images)  # new H, cached no-gradient pass
    np.testing.assert_allclose(first.numpy(), fn(images).numpy(), rtol=1e-6)
    np.testing.assert_allclose(second.numpy(), first.numpy(), rtol=1e-6)
    # one subset pass (3) and chunks 4+4+3 for the first batch; only the subset pass for the second.
    assert calls[:5] == [3, 4, 4, 3, 3]


@pytest.mark.parametrize("mode", ["lite", "full", "exact"])
def test_support_and_queries_in_one_batch_equal_separate_passes(mode):
    """map_with_queries: H (or the whole set) and the queries share one pass of fn in lite and full
    modes, with the values and gradients of separate passes; exact mode and joint=False keep two."""
    rng = np.random.default_rng(4)
    images = tf.constant(rng.normal(size=(7, 4, 4, 3)), tf.float32)
    queries = tf.constant(rng.normal(size=(3, 4, 4, 3)), tf.float32)
    weights = tf.Variable(rng.normal(size=(48, 5)), dtype=tf.float32)
    context = tf.constant(rng.normal(size=(5,)), tf.float32)

    def run(joint):
        calls = []

        def fn(x, c):
            calls.append(int(x.shape[0]))
            return tf.tanh(tf.matmul(tf.reshape(x, [-1, 48]), weights) * c)

        with tf.GradientTape() as tape:
            tape.watch(context)
            mapper = SupportMapper(LiteConfig(mode=mode, h=3, chunk_size=4), 7, training=True, tape=tape,
                                   subset=(0, 2, 5))
            mapper.start_batch()
            support, query = mapper.map_with_queries(fn, images, queries, context=context, joint=joint)
            loss = tf.reduce_sum(support ** 2 * tf.range(1.0, 8.0)[:, None]) + tf.reduce_sum(query ** 3)
            sources = [weights, context] + mapper.watched
        return support.numpy(), query.numpy(), [np.asarray(g) for g in tape.gradient(loss, sources)], calls

    joint, separate = run(True), run(False)
    np.testing.assert_allclose(joint[0], separate[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(joint[1], separate[1], rtol=1e-6, atol=1e-7)
    for a, b in zip(joint[2], separate[2]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    expected = {"lite": ([3 + 3, 4, 3], [3, 4, 3, 3]), "full": ([7 + 3], [7, 3]), "exact": ([4, 3, 3], [4, 3, 3])}
    assert joint[3] == expected[mode][0] and separate[3] == expected[mode][1]


def test_chunked_map_matches_direct_call_for_every_chunk_size():
    images = tf.random.normal([10, 3])
    for chunk in (1, 3, 4, 10, 32):
        np.testing.assert_allclose(chunked_map(lambda x: x * 2.0, images, chunk).numpy(), images.numpy() * 2.0)


def test_subset_is_uniform_without_replacement():
    seed = keras.random.SeedGenerator(5)
    counts = np.zeros(8)
    for _ in range(400):
        subset = draw_subset(tf.constant(8), 3, seed).numpy()
        assert len(set(subset)) == 3 and subset.min() >= 0 and subset.max() < 8
        counts[subset] += 1
    assert counts.sum() == 1200
    assert np.all(np.abs(counts / 400 - 3 / 8) < 0.1)
    assert draw_subset(tf.constant(2), 3, seed).numpy().tolist() == [0, 1]


@pytest.mark.parametrize("kwargs,match", [
    (dict(mode="fast"), "Unknown LITE mode 'fast'"),
    (dict(h=0), "h must be a positive integer"),
    (dict(h=-3), "h must be a positive integer"),
    (dict(chunk_size=0), "chunk_size must be a positive integer"),
    (dict(gradient_scaling="half"), "Unknown LITE gradient_scaling 'half'"),
    (dict(sampling="balanced"), "Unknown LITE sampling 'balanced'"),
    (dict(redraw="never"), "Unknown LITE redraw 'never'"),
    (dict(sampling="stratified", gradient_scaling="none"), "stratified' needs gradient_scaling='unbiased'"),
])
def test_bad_config_raises_clear_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LiteConfig(**kwargs)


def test_drawn_subsets_are_recorded_and_a_forced_subset_is_used_in_every_batch(episode):
    model = protonets_model(LiteConfig(h=2, chunk_size=4), query_batch_size=2)
    *_, subsets = model.episode_gradients(episode, return_subsets=True)
    subsets = subsets.numpy()
    assert subsets.shape == (3, 2)  # 6 queries in batches of 2; min(h, N) = 2 indices each
    assert all(len(set(row)) == 2 and row.min() >= 0 and row.max() < 6 for row in subsets)
    *_, forced = model.episode_gradients(episode, subset=[4, 1], return_subsets=True)
    assert forced.numpy().tolist() == [[1, 4]] * 3
    # The recorded subset is the one the gradient used: forcing it again reproduces the gradient.
    model = protonets_model(LiteConfig(h=2, chunk_size=4))
    _, _, drawn, recorded = model.episode_gradients(episode, return_subsets=True)
    _, _, replayed = model.episode_gradients(episode, subset=recorded[0])
    assert_gradients_close(replayed, drawn)
    assert model.episode_gradients(episode, return_subsets=True)[3] is not None
    model.lite_config = LiteConfig(mode="full")
    assert model.episode_gradients(episode, return_subsets=True)[3] is None


def stratified_subset_probability(subset, labels, way, h):
    """P(H = subset) for stratified sampling: one uniform image per class, then h - way uniform among the rest."""
    from math import comb

    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=way)
    inside = np.bincount(labels[list(subset)], minlength=way)
    if len(subset) != h or inside.min() == 0:
        return 0.0
    return float(np.prod(inside / counts)) / comb(len(labels) - way, h - way)


def test_stratified_draws_cover_every_class_with_the_stated_probabilities():
    from lite_tf.lite import draw_stratified_subset, inclusion_probabilities

    labels = tf.constant([0, 1, 1, 2, 2, 2, 2], tf.int32)
    seed, h = keras.random.SeedGenerator(3), 4
    draws = [tuple(draw_stratified_subset(labels, 3, h, seed).numpy()) for _ in range(1500)]
    assert all(len(set(d)) == h and {0, 1, 2} <= set(labels.numpy()[list(d)]) for d in draws)
    subsets = list(itertools.combinations(range(7), h))
    probabilities = np.array([stratified_subset_probability(s, labels, 3, h) for s in subsets])
    assert probabilities.sum() == pytest.approx(1.0)
    frequencies = np.array([draws.count(s) for s in subsets]) / len(draws)
    assert np.abs(frequencies - probabilities).max() < 0.04
    included = np.array([sum(p for s, p in zip(subsets, probabilities) if i in s) for i in range(7)])
    config = LiteConfig(h=h, sampling="stratified")
    np.testing.assert_allclose(inclusion_probabilities(config, 7, labels, 3).numpy(), included, rtol=1e-6)
    assert included[0] == pytest.approx(1.0)  # the only image of class 0 is always in H
    # h < way or h >= N: plain uniform subsets.
    assert sorted(draw_stratified_subset(labels, 3, 9, seed).numpy()) == list(range(7))
    assert len(draw_stratified_subset(labels, 3, 2, seed).numpy()) == 2


def test_stratified_subsets_are_unbiased(episode):
    """Average over every subset weighted by its probability = the full gradient (1/p_i row scaling)."""
    model = protonets_model()
    labels, h = episode["support_labels"], 4
    _, full = grads(with_mode(model, mode="full"), episode)
    with_mode(model, mode="lite", h=h, chunk_size=4, sampling="stratified")
    total, count = None, 0
    for subset in itertools.combinations(range(6), h):
        probability = stratified_subset_probability(subset, labels, 3, h)
        if probability == 0.0:
            continue
        _, g = grads(model, episode, subset=subset)
        total = [probability * x for x in g] if total is None else [t + probability * x for t, x in zip(total, g)]
        count += 1
    assert count == 9  # subsets of 4 holding all three classes
    assert_gradients_close(total, full, rtol=1e-5)
    # Uniform N/h scaling on these subsets, weighted the same way, is biased (the test can fail).
    with_mode(model, mode="lite", h=h, chunk_size=4)
    biased = None
    for subset in itertools.combinations(range(6), h):
        probability = stratified_subset_probability(subset, labels, 3, h)
        if probability:
            _, g = grads(model, episode, subset=subset)
            biased = [probability * x for x in g] if biased is None else [b + probability * x for b, x in zip(biased, g)]
    assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(biased, full))


def test_one_subset_per_episode_is_shared_by_query_batches_and_unbiased(episode):
    model = protonets_model(LiteConfig(h=2, chunk_size=4, redraw="episode"), query_batch_size=2)
    subsets = model.episode_gradients(episode, return_subsets=True)[3].numpy()
    assert subsets.shape == (3, 2) and (subsets == subsets[0]).all()
    model.lite_config = LiteConfig(h=2, chunk_size=4)  # default: re-drawn per batch
    redrawn = [model.episode_gradients(episode, return_subsets=True)[3].numpy() for _ in range(5)]
    assert any(not (r == r[0]).all() for r in redrawn)
    # Unbiased: with one H for every batch, the average over all H equals the full gradient.
    model.lite_config = LiteConfig(mode="full")
    _, full = grads(model, episode)
    model.lite_config = LiteConfig(h=2, chunk_size=4, redraw="episode")
    subsets = list(itertools.combinations(range(6), 2))
    total = None
    for subset in subsets:
        _, g = grads(model, episode, subset=subset)
        total = g if total is None else [t + x for t, x in zip(total, g)]
    assert_gradients_close([t / len(subsets) for t in total], full, rtol=1e-5)


def test_exact_mode_only_ever_runs_one_chunk_at_a_time():
    """Memory is bounded by a chunk: pass 1 and pass 2 both call the network on <= chunk_size images."""
    rng = np.random.default_rng(2)
    images = tf.constant(rng.normal(size=(11, 4, 4, 3)), tf.float32)
    weights = tf.Variable(rng.normal(size=(48, 5)), dtype=tf.float32)
    calls = []

    def fn(x):
        calls.append(int(x.shape[0]))
        return tf.tanh(tf.matmul(tf.reshape(x, [-1, 48]), weights))

    mapper = SupportMapper(LiteConfig(mode="exact", chunk_size=4), 11, training=True)
    with tf.GradientTape(persistent=True) as tape:
        mapper.tape = tape
        mapper.start_batch()
        loss = tf.reduce_sum(tf.reduce_mean(mapper.map(fn, images), 0) ** 2)
    first = tape.gradient(loss, [weights] + mapper.watched)
    assert first[0] is None  # the loss sees the support set only through the watched embeddings
    (gradient,) = mapper.backpropagate_support(first[1:], [weights], tape, list(mapper.watched))
    assert calls == [4, 4, 3, 4, 4, 3]  # pass 1 chunks, then pass 2 chunks (eager loop)
    with tf.GradientTape() as tape:
        direct = tf.reduce_sum(tf.reduce_mean(tf.tanh(tf.matmul(tf.reshape(images, [-1, 48]), weights)), 0) ** 2)
    np.testing.assert_allclose(gradient.numpy(), tape.gradient(direct, weights).numpy(), rtol=1e-5, atol=1e-7)
