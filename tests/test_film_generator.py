"""FiLM generator (official architecture) starts at identity; its regulariser; FiLM parameter checks;
the batched call equals one Keras call per MLP (values, gradients, dtypes) with a much smaller graph."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.backbones.film_generator import FilmGenerator
from lite_tf.backbones.film import FiLM, call_backbone, film_conv4, identity_film
from tests.learner_helpers import tiny_learner


def test_generated_film_starts_near_identity():
    generator = FilmGenerator([8, 16, 1280], hidden=64)
    generator.build((1, 64))
    film = generator(tf.random.normal([64]))
    for gamma, beta in film:
        np.testing.assert_allclose(gamma.numpy(), 1.0, atol=0.02)
        np.testing.assert_allclose(beta.numpy(), 0.0, atol=0.02)
        assert np.any(gamma.numpy() != 1.0)  # generated, not a constant


def test_regularizer_is_weighted_l2_of_scales():
    learner = tiny_learner("simple_cnaps")
    learner.build_for(16)
    scales = learner.film_generator.gamma_regularizers + learner.film_generator.beta_regularizers
    expected = 0.001 * sum(float(np.sum(np.square(s.numpy()))) for s in scales)
    np.testing.assert_allclose(float(learner.regularization_loss()), expected, rtol=1e-5)
    assert all(s.trainable for s in scales)


def test_regularizer_init_is_n0_0001_and_l2_is_the_plain_sum_of_squares():
    generator = FilmGenerator([4096, 2048], hidden=8)
    generator.build((1, 8))
    values = np.concatenate([r.numpy() for r in generator.gamma_regularizers + generator.beta_regularizers])
    assert abs(values.mean()) < 1e-4 and 0.9e-3 < values.std() < 1.1e-3
    np.testing.assert_allclose(float(generator.l2()), float(np.sum(values.astype(np.float64) ** 2)), rtol=1e-5)


def test_generator_is_the_official_per_site_mlp():
    """gamma = 1 + W2 relu(LN(W1 z + b1)) + b2) * r_gamma; no layer shared between gamma and beta."""
    rng = np.random.default_rng(0)
    generator = FilmGenerator([3, 5], hidden=4)
    generator.build((1, 4))
    assert len(generator.gamma_generators) == 2 and len(generator.beta_generators) == 2
    assert not {id(w) for w in generator.gamma_generators[0].weights} & {id(w) for w in generator.beta_generators[0].weights}
    for w in generator.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    z = rng.normal(size=(4,)).astype(np.float32)

    def mlp(layer):
        w1, b1 = layer.linear1.kernel.numpy(), layer.linear1.bias.numpy()
        scale, offset = layer.layernorm.gamma.numpy(), layer.layernorm.beta.numpy()
        h = z @ w1 + b1
        h = (h - h.mean()) / np.sqrt(h.var() + 1e-5) * scale + offset
        return np.maximum(h, 0) @ layer.linear2.kernel.numpy() + layer.linear2.bias.numpy()

    for i, (gamma, beta) in enumerate(generator(z)):
        expected_gamma = 1 + mlp(generator.gamma_generators[i]) * generator.gamma_regularizers[i].numpy()
        expected_beta = mlp(generator.beta_generators[i]) * generator.beta_regularizers[i].numpy()
        np.testing.assert_allclose(gamma.numpy()[0], expected_gamma, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(beta.numpy()[0], expected_beta, rtol=1e-5, atol=1e-5)


def test_film_layer_modulates_per_channel():
    x = tf.random.normal([2, 3, 3, 4])
    gamma, beta = tf.constant([[1.0, 2.0, 0.5, -1.0]]), tf.constant([[0.0, 1.0, 0.0, 3.0]])
    np.testing.assert_allclose(FiLM()([x, gamma, beta]).numpy(), x.numpy() * gamma.numpy() + beta.numpy(), rtol=1e-6)


def test_identity_film_equals_no_film_and_other_film_differs():
    backbone = film_conv4(16, filters=4, blocks=2)
    images = tf.random.uniform([3, 16, 16, 3], -1, 1)
    plain = call_backbone(backbone, images)
    np.testing.assert_array_equal(call_backbone(backbone, images, identity_film(backbone)).numpy(), plain.numpy())
    doubled = [(2.0 * g, b + 0.5) for g, b in identity_film(backbone)]
    assert not np.allclose(call_backbone(backbone, images, doubled).numpy(), plain.numpy())


def test_film_list_that_does_not_match_the_backbone_is_named():
    backbone = film_conv4(16, filters=4, blocks=2)
    images = tf.zeros([1, 16, 16, 3])
    with pytest.raises(ValueError, match="has 2 FiLM sites .* length 1"):
        call_backbone(backbone, images, identity_film(backbone)[:1])
    with pytest.raises(ValueError, match=r"site 'film1' .* shape \[1 or batch, 4\]"):
        call_backbone(backbone, images, [(tf.ones([4]), tf.zeros([4])), (tf.ones([5]), tf.zeros([5]))])


def test_plain_backbone_rejects_film():
    from lite_tf.backbones.conv import conv4
    with pytest.raises(ValueError, match="no FiLM sites"):
        call_backbone(conv4(16, filters=4, blocks=2), tf.zeros([1, 16, 16, 3]), [(tf.ones([4]), tf.zeros([4]))])


# ---------------------------------------------------------------- batched call vs one call per MLP
MIXED_WIDTHS = [3, 5, 3, 7, 5, 3, 1]  # repeated widths, in and out of order, and a width-1 site


class PerMlpGenerator(FilmGenerator):
    """The reference: each FilmMlp called as a Keras layer, ``1 + g(z) * r`` and ``b(z) * r`` per site."""

    def call(self, z):
        z = tf.reshape(z, [1, -1])
        return [(1.0 + self.gamma_generators[i](z) * self.gamma_regularizers[i],
                 self.beta_generators[i](z) * self.beta_regularizers[i]) for i in range(len(self.channels))]


def _generators(channels=MIXED_WIDTHS, hidden=16, dim=6, seed=0):
    """A batched generator with O(1) random weights and a per-MLP one holding the same values."""
    rng = np.random.default_rng(seed)
    batched, reference = FilmGenerator(channels, hidden=hidden), PerMlpGenerator(channels, hidden=hidden)
    for generator in (batched, reference):
        generator.build((1, dim))
    for w, v in zip(batched.weights, reference.weights):
        assert w.path == v.path.replace("per_mlp_generator", "film_generator")
        value = rng.normal(size=w.shape).astype(np.float32)
        w.assign(value)
        v.assign(value)
    return batched, reference, tf.constant(rng.normal(size=(dim,)).astype(np.float32))


def _loss(film, seed=1):
    """A loss that weights every output element differently, so every gradient entry is tested."""
    rng = np.random.default_rng(seed)
    terms = [tf.reduce_sum(tf.cast(t, tf.float32) * rng.normal(size=t.shape).astype(np.float32))
             for pair in film for t in pair]
    return tf.add_n(terms)


def test_batched_call_equals_one_call_per_mlp():
    batched, reference, z = _generators()
    film, expected = batched(z), reference(z)
    assert len(film) == len(MIXED_WIDTHS)
    for (gamma, beta), (ref_gamma, ref_beta), c in zip(film, expected, MIXED_WIDTHS):
        assert gamma.shape == (1, c) and beta.shape == (1, c)
        np.testing.assert_allclose(gamma.numpy(), ref_gamma.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(beta.numpy(), ref_beta.numpy(), rtol=1e-6, atol=1e-6)
    assert not np.allclose(film[0][0].numpy(), film[2][0].numpy())  # equal widths, different sites


def test_batched_call_is_bit_identical_to_the_per_mlp_path_on_cpu_eager_and_in_a_graph():
    """What keeps the official-parity errors where they were. The batched LayerNorm has to avoid the CPU's
    vectorised Rsqrt and Grappler's regrouping of same-shape Adds (film_generator._layer_norm_rows)."""
    batched, reference, z = _generators()
    with tf.device("/CPU:0"):
        for call in (lambda f: f, tf.function):
            film, expected = call(batched)(z), call(reference)(z)
            for got, want in zip([t for pair in film for t in pair], [t for pair in expected for t in pair]):
                np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_batched_gradients_equal_the_per_mlp_gradients_for_every_variable():
    batched, reference, z = _generators()
    gradients = []
    for generator in (batched, reference):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = _loss(generator(z))
        gradients.append(tape.gradient(loss, [z] + generator.trainable_variables))
    assert len(gradients[0]) == 1 + 7 * 2 * len(MIXED_WIDTHS)  # z; 6 MLP weights and r, gamma and beta
    for got, expected, variable in zip(*gradients, [z] + batched.trainable_variables):
        assert got is not None and expected is not None, getattr(variable, "path", "z")
        assert np.any(expected.numpy() != 0), getattr(variable, "path", "z")
        np.testing.assert_allclose(tf.convert_to_tensor(got).numpy(), tf.convert_to_tensor(expected).numpy(),
                                   rtol=1e-5, atol=1e-6, err_msg=getattr(variable, "path", "z"))


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_batched_call_keeps_the_dtypes_of_a_mixed_policy(policy):
    """Same compute dtype as before (and LayerNorm in float32 from float32 gamma/beta, as Keras does)."""
    keras.config.set_dtype_policy(policy)
    try:
        batched, reference, z = _generators()
    finally:
        keras.config.set_dtype_policy("float32")
    assert batched.compute_dtype == reference.compute_dtype != "float32"
    for generator in (batched, reference):
        assert all(w.dtype == "float32" for w in generator.weights)
    film, expected = batched(z), reference(z)
    for got, want in zip([t for pair in film for t in pair], [t for pair in expected for t in pair]):
        assert got.dtype == want.dtype == batched.compute_dtype
        # Same ops in the same dtypes, each result rounded to the compute dtype: equal here (reading the
        # LayerNorm gamma/beta in the compute dtype, as autocast would, differs by 0.03 / 0.008).
        np.testing.assert_array_equal(tf.cast(got, tf.float32).numpy(), tf.cast(want, tf.float32).numpy())
    with tf.GradientTape() as tape:
        loss = _loss(batched(z))
    assert all(g.dtype == tf.float32 for g in tape.gradient(loss, batched.trainable_variables))


def test_batched_call_falls_back_when_a_sub_layer_has_another_policy():
    batched, reference, z = _generators()
    batched.gamma_generators[1].linear2.dtype_policy = "mixed_bfloat16"
    reference.gamma_generators[1].linear2.dtype_policy = "mixed_bfloat16"
    film, expected = batched(z), reference(z)
    assert film[1][0].dtype == expected[1][0].dtype
    np.testing.assert_allclose(film[1][0].numpy(), expected[1][0].numpy(), rtol=1e-6, atol=1e-6)


def _graph_ops(generator, dim):
    def step(z):
        with tf.GradientTape() as tape:
            loss = tf.add_n([tf.reduce_sum(g) + tf.reduce_sum(b) for g, b in generator(z)])
        return tape.gradient(loss, generator.trainable_variables)
    graph = tf.function(step).get_concrete_function(tf.TensorSpec([dim], tf.float32)).graph
    return graph.get_operations()


def test_batched_forward_and_gradient_graph_is_much_smaller():
    """Counted without what every form needs per variable: its captured handle and its read."""
    channels = [8, 8, 16, 24, 24, 40, 40, 80, 80, 80, 112, 112]
    batched, reference, _ = _generators(channels, hidden=8, dim=8)
    per_variable = {"Placeholder", "ReadVariableOp", "Identity"}
    counts = [len([op for op in _graph_ops(g, 8) if op.type not in per_variable]) for g in (batched, reference)]
    assert counts[0] < counts[1] / 3, counts
