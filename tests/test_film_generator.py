"""FiLM generator (official architecture) starts at identity; its regulariser; FiLM parameter checks."""
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
