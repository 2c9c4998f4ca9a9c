"""FineTuner's in-graph head fit against a NumPy Adam reference; learner-level bad input."""
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.learners.finetuner import fit_linear_head
from lite_tf import EpisodicModel
from lite_tf.registry import UnknownPluginError, get_backbone, get_learner


def numpy_adam_head(features, labels, way, steps, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    n, d = features.shape
    w, b = np.zeros((way, d)), np.zeros(way)
    state = {"w": [np.zeros_like(w), np.zeros_like(w)], "b": [np.zeros_like(b), np.zeros_like(b)]}
    targets = np.eye(way)[labels]
    for t in range(1, steps + 1):
        logits = features @ w.T + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        err = (p - targets) / n
        grads = {"w": err.T @ features, "b": err.sum(0)}
        for key in ("w", "b"):
            m, v = state[key]
            m[:] = beta1 * m + (1 - beta1) * grads[key]
            v[:] = beta2 * v + (1 - beta2) * grads[key] ** 2
            step = lr * (m / (1 - beta1 ** t)) / np.sqrt(v / (1 - beta2 ** t) + eps ** 2)
            if key == "w":
                w = w - step
            else:
                b = b - step
    return w, b


def test_head_fit_matches_numpy_adam():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(10, 5))
    # No class holds exactly N/way images: its first bias gradient would be exactly zero, where
    # Adam's normalised step turns float32 round-off into a full step.
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    w, b = fit_linear_head(tf.constant(features, tf.float32), labels, 3, steps=10, learning_rate=0.1)
    ref_w, ref_b = numpy_adam_head(features, labels, 3, 10, 0.1)
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.numpy(), ref_b, rtol=1e-4, atol=1e-5)
    w, b = fit_linear_head(tf.constant(features, tf.float32), labels, 3, steps=100, learning_rate=0.1)
    assert np.mean(np.argmax(features @ w.numpy().T + b.numpy(), 1) == labels) == 1.0


def test_bad_configuration_is_named():
    with pytest.raises(UnknownPluginError, match="Unknown backbone 'no_such_net'"):
        EpisodicModel(get_learner("finetuner")(backbone="no_such_net"), 32)
    with pytest.raises(ValueError, match="tune_film=True\\) needs a FiLM backbone"):
        EpisodicModel(get_learner("finetuner")(backbone=get_backbone("conv4")(image_size=16, blocks=2),
                                               tune_film=True), 16)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        get_learner("finetuner")(steps=0)
    with pytest.raises(ValueError, match="SimpleCnaps needs a FiLM backbone"):
        EpisodicModel(get_learner("simple_cnaps")(backbone=get_backbone("conv4")(image_size=16, blocks=2)), 16)


def test_image_macs_counts_convolutions_and_matches_published_figures():
    from lite_tf.backbones.film import call_backbone
    from lite_tf.macs import image_macs
    from lite_tf.backbones.film import film_conv4
    from lite_tf.backbones.resnet import resnet18_film
    # conv0: 16x16 outputs x 3x3x3x8; conv1: 8x8 outputs x 3x3x8x8
    forward_macs = lambda backbone, size: image_macs(lambda x: call_backbone(backbone, x), size)
    assert forward_macs(film_conv4(16, filters=8, blocks=2), 16) == 16 * 16 * 3 * 3 * 3 * 8 + 8 * 8 * 3 * 3 * 8 * 8
    assert abs(forward_macs(resnet18_film(224), 224) / 1.82e9 - 1) < 0.02  # ResNet-18: ~1.8 GMACs at 224 px
