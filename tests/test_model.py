"""EpisodicModel: fit/evaluate, query batching, eager vs graph, retracing, bad episodes."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf import LiteConfig, episode_signature
from tests.helpers import IMAGE_SIZE, assert_gradients_close, episode_dataset, make_episode, protonets_model


def test_fit_lowers_loss_and_beats_chance():
    keras.utils.set_random_seed(0)  # initial weights independent of the test order's seed
    model = protonets_model(LiteConfig(h=4, chunk_size=3), query_batch_size=4)
    model.compile(keras.optimizers.Adam(3e-3))
    before = model.evaluate(episode_dataset(99, 20), verbose=0, return_dict=True)
    history = model.fit(episode_dataset(1, 60).repeat(), epochs=3, steps_per_epoch=40, verbose=0)
    after = model.evaluate(episode_dataset(99, 20), verbose=0, return_dict=True)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after["loss"] < before["loss"]
    # Way is 2-5 (chance about 0.35 on average); the learnt metric must be clearly better.
    assert after["accuracy"] > 0.6
    assert after["accuracy"] > before["accuracy"]


def test_query_batches_give_the_same_loss_and_gradients():
    episode = make_episode(np.random.default_rng(2), way=3, shots=[2, 1, 3], queries=3)
    whole = protonets_model(LiteConfig(mode="full"))
    loss, accuracy, gradients = whole.episode_gradients(episode)
    for batch_size in (1, 2, 4):
        batched = protonets_model(LiteConfig(mode="full"), query_batch_size=batch_size)
        batched.set_weights(whole.get_weights())
        b_loss, b_accuracy, b_gradients = batched.episode_gradients(episode)
        assert float(b_loss) == pytest.approx(float(loss), rel=1e-5)
        assert float(b_accuracy) == pytest.approx(float(accuracy))
        assert_gradients_close(b_gradients, gradients, rtol=1e-4, atol=1e-6)  # near-zero entries: float32 summation noise
    # LITE with h >= N and several query batches (re-drawn H, cached no-gradient pass) is exact too.
    lite = protonets_model(LiteConfig(h=50, chunk_size=2), query_batch_size=2)
    lite.set_weights(whole.get_weights())
    assert_gradients_close(lite.episode_gradients(episode)[2], gradients, rtol=1e-4, atol=1e-6)


def test_eager_and_graph_give_the_same_numbers():
    histories = []
    for eager in (True, False):
        keras.utils.set_random_seed(5)
        model = protonets_model(LiteConfig(h=3, chunk_size=2), query_batch_size=3, seed=11)
        model.compile(keras.optimizers.Adam(1e-3), run_eagerly=eager)
        histories.append(model.fit(episode_dataset(4, 8), epochs=2, verbose=0).history)
        histories[-1]["eval"] = model.evaluate(episode_dataset(5, 4), verbose=0)
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=1e-4)
    np.testing.assert_allclose(histories[0]["accuracy"], histories[1]["accuracy"], rtol=1e-4)
    np.testing.assert_allclose(histories[0]["eval"], histories[1]["eval"], rtol=1e-4)


def test_varying_episode_shapes_do_not_retrace():
    """50 episodes with different N, M and way: the train step is traced a constant number of times."""
    model = protonets_model(LiteConfig(h=4, chunk_size=3), query_batch_size=5)
    model.compile(keras.optimizers.Adam(1e-3))
    data = episode_dataset(6, 50)
    shapes = {(int(e["support_labels"].shape[0]), int(e["query_labels"].shape[0]), int(e["way"]))
              for e in data}
    assert len(shapes) > 30
    model.fit(data, epochs=1, verbose=0)
    traces_after_50 = model.trace_count
    model.fit(episode_dataset(7, 50), epochs=1, verbose=0)
    assert traces_after_50 == 1
    assert model.trace_count == 1


def test_steps_are_traced_without_autograph(monkeypatch):
    """Keras never converts its step functions; a plain tf.function of a step (the benchmark
    harness, the planner's probes) must not either: AutoGraph's source transformations were ~1.4 s
    of each trace of a FiLM learner's step."""
    from tensorflow.python.autograph.impl import api  # internal: the one place conversions happen

    converted, convert = [], api._convert_actual
    monkeypatch.setattr(api, "_convert_actual", lambda entity, ctx: (
        converted.append(getattr(entity, "__module__", "") or ""), convert(entity, ctx))[1])
    model = protonets_model(LiteConfig(h=4, chunk_size=3), query_batch_size=5)
    model.compile(keras.optimizers.Adam(1e-3))
    signature = episode_signature(IMAGE_SIZE)
    for step in (model.train_step, model.test_step, model.predict_step):
        tf.function(step, input_signature=[signature]).get_concrete_function()
    assert model.trace_count == 2  # train and test steps (predict_step does not count)
    assert not [m for m in converted if m.startswith("lite_tf")], converted


def test_optimizer_gradient_accumulation_applies_every_k_tasks():
    model = protonets_model(LiteConfig(h=4))
    model.compile(keras.optimizers.SGD(0.1, gradient_accumulation_steps=3))
    start = [w.copy() for w in model.get_weights()]
    model.fit(episode_dataset(8, 2), epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(start, model.get_weights())), "updated before 3 tasks"
    model.fit(episode_dataset(9, 1), epochs=1, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(start, model.get_weights()))


def test_callbacks_and_uint8_episodes(tmp_path):
    model = protonets_model(LiteConfig(h=4))
    model.compile(keras.optimizers.Adam(1e-3))

    def to_uint8(episode):
        episode = dict(episode)
        for key in ("support_images", "query_images"):
            episode[key] = tf.cast(tf.round((episode[key] + 1.0) * 127.5), tf.uint8)
        return episode

    data = episode_dataset(3, 6).map(to_uint8)
    callbacks = [keras.callbacks.TerminateOnNaN(), keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))]
    history = model.fit(data, epochs=2, verbose=0, callbacks=callbacks)
    assert np.isfinite(history.history["loss"]).all()
    assert (tmp_path / "log.csv").read_text().count("\n") == 3


def _bad(episode, **changes):
    bad = dict(episode)
    bad.update(changes)
    return bad


@pytest.mark.parametrize("eager", [True, False])
@pytest.mark.parametrize("change,match", [
    (lambda e: _bad(e, support_labels=np.array([0, 0, 2, 2, 2, 2], np.int32)), "class with no support image"),
    (lambda e: _bad(e, support_labels=np.array([0, 1, 1, 3, 2, 2], np.int32)), "support_labels must be < way"),
    (lambda e: _bad(e, query_labels=np.array([0, 0, 1, 1, 2, -1], np.int32)), "query_labels must be >= 0"),
])
def test_bad_labels_raise_before_any_weight_changes(change, match, eager):
    episode = make_episode(np.random.default_rng(0), way=3, shots=[1, 2, 3], queries=2)
    model = protonets_model(LiteConfig(h=4))
    model.compile(keras.optimizers.SGD(0.5), run_eagerly=eager)
    weights = [w.copy() for w in model.get_weights()]
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        model.train_on_batch(change(episode))
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))


@pytest.mark.parametrize("change,error,match", [
    (lambda e: _bad(e, support_images=e["support_images"][:, :, :, 0]), ValueError, "must have rank 4"),
    (lambda e: _bad(e, query_images=e["query_images"].astype(np.float64)), TypeError, "float32 in \\[-1, 1\\] or uint8"),
    (lambda e: _bad(e, support_images=e["support_images"][:, :8, :8]), ValueError, "built for 16x16"),
    (lambda e: _bad(e, support_labels=e["support_labels"].astype(np.float32)), TypeError, "integer class ids"),
    (lambda e: {k: v for k, v in e.items() if k != "way"}, KeyError, "missing key"),
])
def test_bad_shapes_and_dtypes_raise_clear_errors(change, error, match):
    episode = make_episode(np.random.default_rng(0), way=3, shots=[1, 2, 3], queries=2)
    model = protonets_model(LiteConfig(h=4))
    model.compile(keras.optimizers.SGD(0.5))
    with pytest.raises(error, match=match):
        model.train_on_batch(change(episode))


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="query_batch_size must be a positive integer"):
        protonets_model(query_batch_size=0)
    from lite_tf import EpisodicModel

    with pytest.raises(TypeError, match="needs a lite_tf Learner"):
        EpisodicModel(keras.layers.Dense(3), 16)


def test_protonets_personalized_model_saves_and_reloads(tmp_path):
    episode = make_episode(np.random.default_rng(0), way=3, shots=[1, 2, 3], queries=2)
    model = protonets_model()
    personal = model.learner.personalize(episode["support_images"], episode["support_labels"], 3)
    logits = personal.predict(episode["query_images"], verbose=0)
    expected = model.predict_step(episode).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "personal.keras")
    personal.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(episode["query_images"], verbose=0), logits, rtol=1e-6)


def test_compile_metrics_are_updated_on_query_labels_and_logits():
    """User metrics see every query of every episode, also on an exhausted iterator in graph mode."""
    model = protonets_model(LiteConfig(h=4, chunk_size=3), query_batch_size=3)
    model.compile(keras.optimizers.Adam(1e-3), metrics=[
        keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2"), "sparse_categorical_accuracy"])
    data = episode_dataset(12, 5)
    history = model.fit(data, epochs=1, verbose=0)
    assert {"loss", "accuracy", "top2", "sparse_categorical_accuracy", "way"} <= set(history.history)
    total_queries = sum(int(e["query_labels"].shape[0]) for e in data)
    assert int(model.query_metrics[0].count.numpy()) == total_queries
    # Evaluation: the metric equals the accuracy pooled over all queries of all episodes.
    results = model.evaluate(data, verbose=0, return_dict=True)
    correct = top2 = 0
    for episode in data:
        logits = model.predict_step(episode).numpy()
        labels = episode["query_labels"].numpy()
        correct += int((logits.argmax(-1) == labels).sum())
        top2 += int((np.argsort(-logits, -1)[:, :2] == labels[:, None]).any(-1).sum())
    assert results["sparse_categorical_accuracy"] == pytest.approx(correct / total_queries, rel=1e-6)
    assert results["top2"] == pytest.approx(top2 / total_queries, rel=1e-6)
    assert results["top2"] > results["sparse_categorical_accuracy"]  # way >= 3 episodes exist


def test_compile_rejects_clashing_and_unknown_metrics():
    from lite_tf.errors import ConfigError

    model = protonets_model()
    with pytest.raises(ConfigError, match="used twice"):
        model.compile(metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    with pytest.raises(ConfigError, match="unknown metric 'no_such_metric'"):
        model.compile(metrics=["no_such_metric"])


def test_loss_goes_through_the_optimizer_loss_scaling():
    class ScalingSGD(keras.optimizers.SGD):
        def scale_loss(self, loss):
            return 4.0 * loss

    episode = make_episode(np.random.default_rng(2), way=3, shots=[2, 1, 3], queries=3)
    for config in (LiteConfig(h=3), LiteConfig(mode="exact", chunk_size=2)):
        plain = protonets_model(config)
        _, _, expected = plain.episode_gradients(episode, subset=[0, 2, 5])
        scaled = protonets_model(config)
        scaled.set_weights(plain.get_weights())
        scaled.compile(ScalingSGD(0.1))
        _, _, gradients = scaled.episode_gradients(episode, subset=[0, 2, 5])
        assert_gradients_close(gradients, [4.0 * np.asarray(g) for g in expected])
    # A LossScaleOptimizer (mixed-precision training) trains and keeps weights finite.
    model = protonets_model(LiteConfig(h=3))
    model.compile(keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.01)))
    model.fit(episode_dataset(3, 3), epochs=1, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_compile_refuses_a_loss_and_compute_loss_is_the_query_cross_entropy():
    """The loss is Keras's compute_loss hook (query cross-entropy, weighted per query, plus the learner's
    regularisation in training); compile(loss=...) would be ignored, so it is refused."""
    from lite_tf.errors import ConfigError

    model = protonets_model()
    with pytest.raises(ConfigError, match=r"compile\(loss=...\) is not used"):
        model.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    labels = tf.constant([0, 2, 1])
    logits = tf.constant([[2.0, 0.0, -1.0], [0.5, 0.1, 0.3], [0.0, 1.0, 0.0]])
    expected = -np.mean(np.log(tf.nn.softmax(logits).numpy()[np.arange(3), labels.numpy()]))
    assert float(model.compute_loss(y=labels, y_pred=logits, training=False)) == pytest.approx(expected, rel=1e-6)
    halves = tf.fill([3], 0.5)  # two query batches of the same episode each weigh their queries 1/6
    assert float(model.compute_loss(y=labels, y_pred=logits, sample_weight=halves / 3.0,
                                    training=False)) == pytest.approx(expected / 2, rel=1e-6)


def test_fit_still_calls_the_private_keras_hook_episodic_model_overrides(monkeypatch):
    """EpisodicModel overrides keras.Model._maybe_symbolic_build (a private method) so that fit does not
    pull an episode dict to build symbolically (that fails under MultiWorkerMirroredStrategy). This pins
    that Keras still calls it from fit: if Keras renames it, the override is dead and this fails."""
    from lite_tf.model import EpisodicModel

    assert "_maybe_symbolic_build" in vars(keras.Model) or hasattr(keras.Model, "_maybe_symbolic_build")
    calls = []
    original = EpisodicModel._maybe_symbolic_build
    monkeypatch.setattr(EpisodicModel, "_maybe_symbolic_build",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    model = protonets_model(LiteConfig(h=2, chunk_size=3))
    model.compile(keras.optimizers.SGD(0.01))
    model.fit(episode_dataset(3, 2), epochs=1, verbose=0)
    assert calls, "keras.Model.fit no longer calls _maybe_symbolic_build: remove or replace the override"
