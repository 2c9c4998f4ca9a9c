"""mode='exact' (chunked exact gradients at flat memory) against full back-propagation, every learner."""
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf import EpisodicModel, LiteConfig
from tests.learner_helpers import IMAGE_SIZE, LEARNERS, build, make_episode, relative_error, relative_errors

# support size -> (shots per class, chunk sizes that divide N and that do not)
SUPPORTS = {1: ([1], (1, 4)), 7: ([2, 2, 3], (7, 3)), 50: ([10] * 5, (10, 7))}


def gradients(model, episode, **config):
    model.lite_config = LiteConfig(**config)
    loss, _, grads = model.episode_gradients(episode)
    return float(loss), [np.asarray(g) for g in grads]


@pytest.mark.parametrize("support_size", sorted(SUPPORTS))
@pytest.mark.parametrize("name", LEARNERS)
def test_exact_equals_full_backprop(name, support_size):
    shots, chunk_sizes = SUPPORTS[support_size]
    model = EpisodicModel(build(name), IMAGE_SIZE, seed=0)
    episode = make_episode(shots, queries=2, seed=support_size)
    full_loss, full = gradients(model, episode, mode="full")
    if support_size > 1:  # one image means one class: the cross-entropy and its gradient are zero
        assert sum(np.abs(g).max() > 0 for g in full) >= 2
    for chunk_size in chunk_sizes:
        loss, exact = gradients(model, episode, mode="exact", chunk_size=chunk_size)
        assert loss == pytest.approx(full_loss, rel=1e-6)
        if support_size > 1:
            assert relative_error(full, exact) < 1e-5, (chunk_size, relative_error(full, exact))
        else:
            np.testing.assert_allclose(np.concatenate([g.ravel() for g in exact]),
                                       np.concatenate([g.ravel() for g in full]), atol=1e-7)


@pytest.mark.parametrize("name", LEARNERS)
def test_exact_in_graph_mode_with_query_batches_equals_full(name):
    model = EpisodicModel(build(name), IMAGE_SIZE, query_batch_size=2, seed=0)
    episode = make_episode([2, 3, 2], queries=3, seed=4)  # 9 queries: batches of 2, 2, 2, 2, 1
    spec = {k: tf.TensorSpec([None] * np.ndim(v), tf.as_dtype(np.asarray(v).dtype)) for k, v in episode.items()}
    results = {}
    for mode in ("full", "exact"):  # both traced: graph rewrites change float32 round-off alike
        model.lite_config = LiteConfig(mode=mode, chunk_size=3)
        step = tf.function(lambda ep: model.episode_gradients(ep)[2], input_signature=[spec])
        results[mode] = [np.asarray(g) for g in step(episode)]
    assert relative_error(results["full"], results["exact"]) < 1e-5, relative_error(results["full"], results["exact"])


def test_exact_training_accumulates_and_matches_full_training():
    """fit with gradient accumulation: exact and full give the same weights after the same episodes."""
    episodes = [make_episode([2, 1, 3], queries=2, seed=s) for s in range(4)]
    data = tf.data.Dataset.from_tensor_slices({k: np.stack([e[k] for e in episodes]) for k in episodes[0]})
    weights = []
    for mode in ("full", "exact"):
        keras.utils.set_random_seed(3)
        model = EpisodicModel(build("simple_cnaps"), IMAGE_SIZE, lite=LiteConfig(mode=mode, chunk_size=4),
                              query_batch_size=4, seed=0)
        model.compile(keras.optimizers.SGD(0.5, gradient_accumulation_steps=2))
        model.fit(data, epochs=1, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["simple_cnaps", "cnaps"])
def test_set_encoder_gradient_is_exact_and_lite_expectation_is_not(name):
    """The nested task-embedding term: exact equals full; LITE's average over every subset does not."""
    learner = build(name)
    model = EpisodicModel(learner, IMAGE_SIZE, seed=0)
    episode = make_episode([2, 2, 1], queries=2, seed=9)
    encoder = {id(v) for v in learner.set_encoder.trainable_variables}
    rows = [i for i, v in enumerate(model.trainable_variables) if id(v) in encoder]
    assert rows
    _, full = gradients(model, episode, mode="full")
    _, exact = gradients(model, episode, mode="exact", chunk_size=2)
    assert relative_error(full, exact, rows) < 1e-5, relative_error(full, exact, rows)
    model.lite_config = LiteConfig(mode="lite", h=1, chunk_size=2)
    subsets = list(itertools.combinations(range(5), 1))
    average = None
    for subset in subsets:
        g = [np.asarray(x) for x in model.episode_gradients(episode, subset=subset)[2]]
        average = g if average is None else [a + x for a, x in zip(average, g)]
    average = [a / len(subsets) for a in average]
    bias = relative_error(full, average, rows)
    print(f"{name}: LITE (h=1, N=5) set-encoder expected-gradient relative error {bias:.3f}")
    assert bias > 1e-2, bias  # LITE's nested term is biased at small h


@pytest.mark.parametrize("support_size,chunk_size", [(1, 1), (1, 3), (7, 7), (7, 3), (50, 10), (50, 7)])
def test_exact_mapper_with_a_nested_set_embedding_equals_direct_gradients(support_size, chunk_size):
    """z = mean_n s(x_n) feeds a second map f(x, z); the loss uses both maps and a query term."""
    from lite_tf.lite import SupportMapper

    rng = np.random.default_rng(support_size)
    images = tf.constant(rng.uniform(-1, 1, size=(support_size, 2, 2, 3)), tf.float32)
    w_s = tf.Variable(rng.normal(size=(12, 4)), dtype=tf.float32)
    w_f = tf.Variable(rng.normal(size=(12, 5)), dtype=tf.float32)
    w_z = tf.Variable(rng.normal(size=(4, 5)), dtype=tf.float32)
    variables = [w_s, w_f, w_z]
    s = lambda x: tf.tanh(tf.matmul(tf.reshape(x, [-1, 12]), w_s))
    f = lambda x, z: tf.tanh(tf.matmul(tf.reshape(x, [-1, 12]), w_f) * (1.0 + tf.matmul(z[None], w_z)))
    weights = tf.constant(rng.normal(size=(support_size, 5)), tf.float32)

    def loss_of(codes, features, z):
        return (tf.reduce_sum(weights * features ** 2) + tf.reduce_sum(tf.sin(codes))
                + tf.reduce_sum(tf.matmul(z[None], w_z) ** 2))

    with tf.GradientTape() as tape:
        codes = s(images)
        z = tf.reduce_mean(codes, 0)
        direct = loss_of(codes, f(images, z), z)
    expected = tape.gradient(direct, variables)

    mapper = SupportMapper(LiteConfig(mode="exact", chunk_size=chunk_size), support_size, training=True)
    with tf.GradientTape(persistent=True) as tape:
        mapper.tape = tape
        mapper.start_batch()
        codes = mapper.map(s, images)
        z = tf.reduce_mean(codes, 0)
        loss = loss_of(codes, mapper.map(f, images, context=z), z)
    first = tape.gradient(loss, variables + mapper.watched, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    support = mapper.backpropagate_support(first[3:], variables, tape, list(mapper.watched))
    got = [a + b for a, b in zip(first[:3], support)]
    np.testing.assert_allclose(float(loss), float(direct), rtol=1e-6)
    assert max(relative_errors(expected, got)) < 1e-5, relative_errors(expected, got)
    # Without the pushed-back context term the set-encoder gradient would be wrong (the test can fail).
    assert relative_errors([expected[0]], [first[0] + mapper.backpropagate_support(
        [first[3], tf.zeros_like(first[4])], variables, tape, list(mapper.watched))[0]])[0] > 1e-3


def test_exact_graph_gates_pass_two_with_one_control_input_per_op():
    """Pass 2 waits for the query batches' gradients through one barrier op: gating every op of
    pass 2 on each gradient gave hundreds of control inputs per op (at 224 px a 129 MB graph, 1 GiB
    more to trace and optimise, README "Memory")."""
    model = EpisodicModel(build("simple_cnaps"), IMAGE_SIZE, lite=LiteConfig(mode="exact", chunk_size=3), seed=0)
    episode = make_episode([2, 3, 2], queries=3, seed=4)
    spec = {k: tf.TensorSpec([None] * np.ndim(v), tf.as_dtype(np.asarray(v).dtype)) for k, v in episode.items()}
    graph = tf.function(lambda ep: model.episode_gradients(ep)[2]).get_concrete_function(spec).graph.as_graph_def()
    controls = [sum(name.startswith("^") for name in node.input) for node in graph.node]
    variables = len(model.trainable_variables)
    assert variables > 20
    # Barriers (the group op, loop entries) may wait on every gradient; other ops on a few tensors.
    assert sum(c > 8 for c in controls) <= 10, sorted(controls)[-20:]
