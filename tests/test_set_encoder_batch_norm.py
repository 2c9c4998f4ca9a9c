"""The set encoder's batch norm as the official code runs it: batch statistics of the context set.

Official LITE (cambridge-mlg/LITE ``src/run.py`` ``init_model`` leaves the set encoder in train mode;
``model.py`` ``build_task_representation_by_batch`` / ``_get_batch_indices``) and official ORBIT
(``_set_model_state``) normalise the set encoder with the mean and biased variance of the images each
call sees. A tiny encoder is checked against a NumPy re-implementation of that rule, chunk by chunk.
"""
import numpy as np
import pytest
import tensorflow as tf

from lite_tf.backbones.set_encoder import (BatchNormalization, context_chunk, context_chunk_bounds, set_encoder,
                                           task_embedding)
from lite_tf.errors import ConfigError
from lite_tf.lite import LiteConfig, SupportMapper

SIZE, FILTERS, BLOCKS, CHUNK = 8, 4, 2, 3


def official_bounds(count, chunk):
    """FewShotClassifier._get_batch_indices over ceil(count / chunk) batches, as in the official code."""
    bounds = []
    for index in range(int(np.ceil(count / chunk))):
        start, end = index * chunk, index * chunk + chunk
        if end == count - 1:  # avoid batch size of 1
            end = count
        bounds.append((start, min(end, count)))
    return bounds


def numpy_encoder(encoder, images, statistics="batch"):
    """[n, FILTERS] codes of ``images`` [n, S, S, 3] in [-1, 1]: conv3x3 'same' + bias, batch norm
    (this batch's mean and biased variance, or the moving ones), ReLU, floor max-pool 2, mean."""
    x = np.asarray(images, np.float64)
    for block in range(BLOCKS):
        kernel, bias = (np.asarray(w, np.float64) for w in encoder.get_layer(f"conv{block}").weights)
        gamma, beta, moving_mean, moving_var = (np.asarray(w, np.float64)
                                                for w in encoder.get_layer(f"bn{block}").weights)
        padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
        h, w = x.shape[1:3]
        x = sum(np.einsum("nhwc,cd->nhwd", padded[:, i:i + h, j:j + w], kernel[i, j])
                for i in range(3) for j in range(3)) + bias
        if statistics == "batch":
            mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))  # biased, as torch train mode
        else:
            mean, var = moving_mean, moving_var
        x = np.maximum((x - mean) / np.sqrt(var + 1e-5) * gamma + beta, 0.0)
        h2, w2 = h // 2, w // 2
        x = x[:, :2 * h2, :2 * w2].reshape(len(x), h2, 2, w2, 2, -1).max(axis=(2, 4))
    return x.mean(axis=(1, 2))


@pytest.fixture(scope="module")
def encoder():
    tf.keras.utils.set_random_seed(3)
    model = set_encoder(SIZE, filters=FILTERS, blocks=BLOCKS, context_chunk=CHUNK)
    for block in range(BLOCKS):  # non-trivial moving statistics and affine parameters
        bn = model.get_layer(f"bn{block}")
        rng = np.random.default_rng(block)
        bn.set_weights([1 + 0.3 * rng.standard_normal(FILTERS), 0.3 * rng.standard_normal(FILTERS),
                        rng.standard_normal(FILTERS), 0.5 + rng.random(FILTERS)])
    return model


def images(count, seed=0):
    rng = np.random.default_rng(seed)  # per-image offsets, so batch statistics differ from chunk to chunk
    return (rng.uniform(-1, 1, [count, SIZE, SIZE, 3]) * rng.uniform(0.2, 1, [count, 1, 1, 1])
            + rng.uniform(-0.5, 0.5, [count, 1, 1, 3])).astype(np.float32)


def reference_embedding(encoder, x):
    """The official test-time task representation: mean over the codes of every official chunk."""
    codes = [numpy_encoder(encoder, x[start:end]) for start, end in official_bounds(len(x), CHUNK)]
    return np.concatenate(codes).mean(axis=0)


def test_chunks_are_the_official_ones():
    for count in range(1, 12):
        starts, ends = context_chunk_bounds(count, CHUNK)
        assert list(zip(starts.numpy().tolist(), ends.numpy().tolist())) == official_bounds(count, CHUNK)


def test_task_embedding_uses_each_official_chunks_batch_statistics(encoder):
    for count in (2, 5, 7):  # 7 % 3 == 1: the last image is encoded twice
        x = images(count)
        np.testing.assert_allclose(task_embedding(encoder, x).numpy(), reference_embedding(encoder, x),
                                   rtol=1e-5, atol=1e-6)
    # the same through the evaluation mapper (inference mode), in a graph, with uint8 images too
    count = 7
    x = images(count)
    expected = reference_embedding(encoder, x)
    mapper = SupportMapper(LiteConfig(chunk_size=2), count, training=False)
    graph = tf.function(lambda x: task_embedding(encoder, x, mapper))
    np.testing.assert_allclose(graph(tf.constant(x)).numpy(), expected, rtol=1e-5, atol=1e-6)
    pixels = np.round((x + 1) * 127.5).clip(0, 255).astype(np.uint8)
    np.testing.assert_allclose(task_embedding(encoder, pixels).numpy(),
                               reference_embedding(encoder, pixels / 127.5 - 1), rtol=1e-5, atol=1e-6)
    # moving statistics would give something else (the old behaviour)
    moving = numpy_encoder(encoder, x, statistics="moving").mean(axis=0)
    assert np.abs(moving - expected).max() > 1e-2


def test_batch_statistics_never_touch_the_moving_statistics(encoder):
    before = [w.numpy().copy() for w in encoder.weights]
    encoder(images(5), training=True)
    task_embedding(encoder, images(7), training=True)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(task_embedding(encoder, images(4), training=True) ** 2)
    gradients = tape.gradient(loss, encoder.trainable_weights)
    assert all(g is not None for g in gradients)
    for old, new in zip(before, encoder.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_lite_training_encodes_h_as_one_batch_and_the_rest_in_official_chunks(encoder):
    """train_lite: H's codes come from one batch of H, the others from the cached official chunks."""
    count, subset = 7, [1, 4, 5]
    x = images(count, seed=1)
    mapper = SupportMapper(LiteConfig(mode="lite", h=3, chunk_size=2), count, training=True, subset=subset)
    mapper.start_batch()
    got = task_embedding(encoder, tf.constant(x), mapper, training=True).numpy()
    rest = np.concatenate([numpy_encoder(encoder, x[start:end]) for start, end in official_bounds(count, CHUNK)])
    codes = rest[:count].copy()  # the repeated code of the last image is not used in training
    codes[subset] = numpy_encoder(encoder, x[subset])
    np.testing.assert_allclose(got, codes.mean(axis=0), rtol=1e-5, atol=1e-6)
    # full back-propagation (the official train_task): the whole set is one batch
    full = SupportMapper(LiteConfig(mode="full"), count, training=True)
    full.start_batch()
    np.testing.assert_allclose(task_embedding(encoder, tf.constant(x), full, training=True).numpy(),
                               numpy_encoder(encoder, x).mean(axis=0), rtol=1e-5, atol=1e-6)


def test_moving_mode_is_the_eval_mode_encoder(encoder):
    moving = set_encoder(SIZE, filters=FILTERS, blocks=BLOCKS, batch_norm="moving")
    moving.set_weights(encoder.get_weights())
    assert context_chunk(moving) is None and context_chunk(encoder) == CHUNK
    assert not any(isinstance(layer, BatchNormalization) for layer in moving.layers)
    x = images(7)
    np.testing.assert_allclose(task_embedding(moving, x).numpy(),
                               numpy_encoder(encoder, x, statistics="moving").mean(axis=0), rtol=1e-5, atol=1e-6)


def test_a_weights_file_loads_in_either_mode(encoder, tmp_path):
    """Weights files address layers by class name: a run switched between modes (or saved before the
    'context' mode existed, with Keras's own batch norm) still loads."""
    for source_mode, target_mode in (("context", "moving"), ("moving", "context")):
        source = set_encoder(SIZE, filters=FILTERS, blocks=BLOCKS, batch_norm=source_mode)
        source.set_weights(encoder.get_weights())
        path = str(tmp_path / f"{source_mode}.weights.h5")
        source.save_weights(path)
        target = set_encoder(SIZE, filters=FILTERS, blocks=BLOCKS, batch_norm=target_mode)
        target.load_weights(path)
        for expected, got in zip(encoder.get_weights(), target.get_weights()):
            np.testing.assert_array_equal(got, expected)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="batch_norm"):
        set_encoder(SIZE, blocks=BLOCKS, batch_norm="train")
    with pytest.raises(ConfigError, match="context_chunk"):
        set_encoder(SIZE, blocks=BLOCKS, context_chunk=0)
