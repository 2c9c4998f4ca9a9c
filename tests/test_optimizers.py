"""lite_tf.optimizers.Adam: Keras's Adam update, fused per variable (same values, fewer graph ops)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf import optimizers


def _variables(seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 2, 3, 5), (1,)] * 3
    return [keras.Variable(rng.normal(size=s).astype("float32"), name=f"w{i}") for i, s in enumerate(shapes)]


def _train(optimizer, steps=5, seed=0):
    variables = _variables(seed)
    optimizer.build(variables)

    @tf.function
    def step(k):
        grads = [tf.sin(v.value * k) + 0.1 * k for v in variables]
        optimizer.apply_gradients(zip(grads, variables))

    for k in range(steps):
        step(tf.constant(float(k + 1)))
    return [v.numpy() for v in variables], optimizer


@pytest.mark.parametrize("kwargs", [{}, {"gradient_accumulation_steps": 2}, {"amsgrad": True},
                                    {"beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-3, "clipnorm": 0.5}])
def test_fused_adam_equals_keras_adam(kwargs):
    expected, reference = _train(keras.optimizers.Adam(0.05, **kwargs))
    fused, optimizer = _train(optimizers.Adam(0.05, **kwargs))
    for want, got in zip(expected, fused):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float32 rounding of the same formula
    assert int(optimizer.iterations.numpy()) == int(reference.iterations.numpy()) > 0
    assert any(not np.allclose(v, w) for v, w in zip(fused, [v.numpy() for v in _variables()]))  # it moved


def test_fused_adam_inside_a_loss_scale_optimizer():
    expected, _ = _train(keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.05)))
    fused, _ = _train(keras.optimizers.LossScaleOptimizer(optimizers.Adam(0.05)))
    for want, got in zip(expected, fused):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float32 rounding of the same formula


def test_fused_adam_is_a_fraction_of_the_graph():
    """Why it exists: the update of many small variables is a few ops each, not ~40."""
    counts = {}
    for name, optimizer in (("keras", keras.optimizers.Adam(0.01)), ("fused", optimizers.Adam(0.01))):
        variables = _variables()
        optimizer.build(variables)
        graph = tf.function(lambda: optimizer.apply_gradients([(tf.ones_like(v.value), v) for v in variables]))
        counts[name] = len(graph.get_concrete_function().graph.get_operations())
    assert counts["fused"] < counts["keras"] / 2, counts


def test_adam_by_name_is_fused_and_serialises():
    optimizer = optimizers.get("adam")
    assert isinstance(optimizer, optimizers.Adam)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizers.Adam(0.003, beta_1=0.8)))
    assert isinstance(restored, optimizers.Adam)
    assert restored.beta_1 == 0.8 and np.isclose(float(restored.learning_rate), 0.003)
    assert isinstance(optimizers.get("sgd"), keras.optimizers.SGD)
