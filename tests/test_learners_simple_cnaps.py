"""Simple CNAPs head: Mahalanobis logits and covariance regularisation against NumPy references."""
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.heads import (class_statistics, mahalanobis_logits, regularized_covariances,
                           simple_cnaps_logits)


def official_estimate_cov(examples):
    """The official ``_estimate_cov``: a single row is one variable with D observations (a scalar)."""
    if examples.shape[0] == 1:
        return np.full((examples.shape[1],) * 2, np.var(examples[0], ddof=1))
    return np.cov(examples, rowvar=False, ddof=1)


def numpy_reference(support, labels, way, query, one_shot="zero"):
    """Straight from the formula, with explicit inverses (fine at this size)."""
    dim = support.shape[1]
    single = (lambda m: official_estimate_cov(m)) if one_shot == "official" else (lambda m: np.zeros((dim, dim)))
    task_cov = np.cov(support, rowvar=False, ddof=1) if len(support) > 1 else single(support)
    logits = np.zeros((len(query), way))
    for c in range(way):
        members = support[labels == c]
        n = len(members)
        class_cov = np.cov(members, rowvar=False, ddof=1) if n > 1 else single(members)
        shrink = n / (n + 1.0)
        q = shrink * class_cov + (1 - shrink) * task_cov + np.eye(dim)
        diff = query - members.mean(0)
        logits[:, c] = -np.einsum("qd,de,qe->q", diff, np.linalg.inv(q), diff)
    return logits, task_cov


@pytest.mark.parametrize("shots", [[3, 5, 2], [1, 4, 1, 2]])
def test_logits_match_numpy(shots):
    rng = np.random.default_rng(0)
    dim, way = 6, len(shots)
    labels = np.repeat(np.arange(way), shots).astype(np.int32)
    support = rng.normal(size=(len(labels), dim)) + labels[:, None]
    query = rng.normal(size=(7, dim))
    for one_shot in ("zero", "official"):
        expected, _ = numpy_reference(support, labels, way, query, one_shot)
        got = simple_cnaps_logits(tf.constant(support, tf.float32), labels, way, tf.constant(query, tf.float32),
                                  one_shot)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_official_one_shot_covariance_is_the_broadcast_variance_of_the_single_vector():
    rng = np.random.default_rng(5)
    support = rng.normal(size=(4, 6)).astype(np.float32)
    _, _, class_cov, _ = class_statistics(support, np.array([0, 0, 1, 2], np.int32), 3, "official")
    for c, row in ((1, 2), (2, 3)):
        np.testing.assert_allclose(class_cov.numpy()[c], np.full((6, 6), np.var(support[row], ddof=1)), rtol=1e-5)
    np.testing.assert_allclose(class_cov.numpy()[0], np.cov(support[:2], rowvar=False), rtol=1e-5, atol=1e-6)
    _, _, _, task_cov = class_statistics(support[:1], np.array([0], np.int32), 1, "official")
    np.testing.assert_allclose(task_cov.numpy(), official_estimate_cov(support[:1]), rtol=1e-5)
    with pytest.raises(ValueError, match="one_shot_covariance must be one of"):
        class_statistics(support, np.array([0, 0, 1, 2], np.int32), 3, "ignore")


def test_covariance_regularisation_formula():
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 0, 1, 1, 2], np.int32)
    support = rng.normal(size=(6, 4)).astype(np.float32)
    means, counts, class_cov, task_cov = class_statistics(support, labels, 3, one_shot="zero")
    np.testing.assert_allclose(counts.numpy(), [3, 2, 1])
    np.testing.assert_allclose(task_cov.numpy(), np.cov(support, rowvar=False), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(class_cov.numpy()[0], np.cov(support[:3], rowvar=False), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(class_cov.numpy()[2], 0.0)  # one-shot class: S_c defined as zero
    q = regularized_covariances(counts, class_cov, task_cov).numpy()
    for c, n in enumerate([3, 2, 1]):
        expected = n / (n + 1) * class_cov.numpy()[c] + 1 / (n + 1) * task_cov.numpy() + np.eye(4)
        np.testing.assert_allclose(q[c], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("one_shot", ["official", "zero"])
def test_one_shot_everywhere_is_finite(one_shot):
    support = tf.random.normal([3, 5])
    logits = simple_cnaps_logits(support, tf.constant([0, 1, 2]), 3, tf.random.normal([4, 5]), one_shot)
    assert np.all(np.isfinite(logits.numpy()))
    single = simple_cnaps_logits(support[:1], tf.constant([0]), 1, tf.random.normal([2, 5]), one_shot)
    assert np.all(np.isfinite(single.numpy()))


def test_mahalanobis_uses_cholesky_factor():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(2, 3, 3))
    q = a @ np.transpose(a, (0, 2, 1)) + np.eye(3)
    means, query = rng.normal(size=(2, 3)), rng.normal(size=(4, 3))
    got = mahalanobis_logits(tf.constant(query), tf.constant(means), tf.linalg.cholesky(tf.constant(q)))
    expected = np.stack([-np.einsum("qd,de,qe->q", query - means[c], np.linalg.inv(q[c]), query - means[c])
                         for c in range(2)], 1)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-8)


def test_dynamic_way_and_support_size_in_tf_function():
    fn = tf.function(simple_cnaps_logits, input_signature=[
        tf.TensorSpec([None, 4]), tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
        tf.TensorSpec([None, 4])])
    for way, count in ((2, 5), (4, 9)):
        labels = np.arange(count) % way
        logits = fn(tf.random.normal([count, 4]), labels, way, tf.random.normal([3, 4]))
        assert logits.shape == (3, way)
    assert len(fn._list_all_concrete_functions()) == 1
