"""Linear algebra from TFLite builtin ops only, for exported models.

TFLite has no Cholesky, triangular-solve or matrix-inverse builtin; those would need the Flex
delegate (TensorFlow ops inside LiteRT), which a phone build usually lacks. Simple CNAPs' Q_c is
symmetric with every eigenvalue >= 1 (it is a covariance plus the identity), so every pivot of
Gauss-Jordan elimination without pivoting is >= 1 (a Schur complement of Q >= I is >= I): the
sweep below is stable, and its precision matrices give the Cholesky path's logits to float
tolerance (tests/test_export.py).
"""
from __future__ import annotations

import tensorflow as tf


BLOCK = 64  # pivots swept together: the work becomes D / BLOCK batched matmuls (BLAS-speed in LiteRT)


def spd_inverse(matrices: tf.Tensor, block: int = BLOCK) -> tf.Tensor:
    """[K, D, D] inverses of symmetric matrices with eigenvalues >= 1, by blocked sweeps.

    Sweeping a block P of pivots at once (the same as sweeping its pivots one by one): with
    C = A[:, P] and B = A[P, P]^-1 (a small ``_sweep_inverse``, stable because every Schur
    complement of A >= I is >= I), entries off P become A - C B C^T, row and column P become
    C B, and the block itself -B. After every block the matrix is -A^-1. The blocks are unrolled
    with static slices (D / block of them), so the graph is TFLite builtins only.
    """
    a = tf.convert_to_tensor(matrices, tf.float32)
    dim = a.shape[-1]
    for start in range(0, dim, block):
        stop = min(start + block, dim)
        cols = a[:, :, start:stop]  # [K, D, b]
        inverse = _sweep_inverse(cols[:, start:stop, :])  # [K, b, b]
        scaled = tf.matmul(cols, inverse)  # C B
        rest = a - tf.matmul(scaled, cols, transpose_b=True)
        new_cols = tf.concat([scaled[:, :start], -inverse, scaled[:, stop:]], axis=1)  # [K, D, b]
        rest = tf.concat([rest[:, :, :start], new_cols, rest[:, :, stop:]], axis=2)
        a = tf.concat([rest[:, :start], tf.transpose(new_cols, [0, 2, 1]), rest[:, stop:]], axis=1)
    return -a


def _sweep_inverse(matrices: tf.Tensor) -> tf.Tensor:
    """[K, b, b] inverses of symmetric matrices with eigenvalues >= 1, by b Gauss-Jordan sweeps.

    Sweeping pivot k of A: off-row/column entries A_ij - A_ik A_kj / A_kk, row and column k
    A_ik / A_kk, pivot -1 / A_kk. After sweeping every pivot the matrix is -A^-1. One
    ``tf.while_loop`` over D (a TFLite WHILE), each step O(K D^2), no gather of a whole matrix.
    """
    matrices = tf.convert_to_tensor(matrices, tf.float32)
    dim = matrices.shape[-1]
    eye = tf.eye(dim, dtype=matrices.dtype)

    def body(k, a):
        pick = tf.gather(eye, k)  # [D] one-hot of the pivot
        col = tf.reduce_sum(a * pick, axis=-1)  # [K, D] column k (== row k: symmetric)
        pivot = tf.reduce_sum(col * pick, axis=-1, keepdims=True)  # [K, 1]
        keep = 1.0 - pick
        new_col = (col * keep - pick) / pivot  # A_ik / A_kk off the pivot, -1 / A_kk on it
        swept = a - col[:, :, None] * (col / pivot)[:, None, :]
        swept = swept * (keep[:, None] * keep[None, :])
        swept += new_col[:, :, None] * pick + (new_col * keep)[:, None, :] * pick[:, None]
        return k + 1, swept

    _, swept = tf.while_loop(lambda k, _: k < dim, body, (tf.constant(0), matrices))
    return -swept


def precision_logits(query: tf.Tensor, means: tf.Tensor, precisions: tf.Tensor) -> tf.Tensor:
    """[Q, K] logits -(x - mu_c)^T P_c (x - mu_c) from precision matrices P_c [K, D, D]."""
    diff = query[None, :, :] - means[:, None, :]  # [K, Q, D]
    return -tf.transpose(tf.reduce_sum(tf.matmul(diff, precisions) * diff, axis=-1))
