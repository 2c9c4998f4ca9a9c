"""The LITE estimator: map a per-image network over a support set, back-propagating a subset.

Learners never call their networks on the support set directly; they call
``mapper.map(fn, support_images)``. The mapper's mode decides what that costs:

- ``lite``: a uniform random subset H of ``h`` images is embedded with gradients; the other images
  come from a no-gradient pass, run in chunks of ``chunk_size`` outside gradient recording, so
  memory does not grow with the support size. Values equal a full forward pass. Gradient scaling:
    ``unbiased`` (default) e_H = sg(e_H) + (N/h) (e_H - sg(e_H)): an unbiased estimate of the
                  full support gradient, exact query-path gradient;
    ``none``      no factor (as the official VTAB+MD code: h/N of the support term in expectation);
    ``loss``      the whole loss is multiplied by N/h (as the official ORBIT code; this also
                  inflates the exact query-path gradient).
  With h >= N every image is in H and the step equals full back-propagation.
- ``full``: every support image back-propagated (exact gradient, memory grows with N).
- ``inference``: no gradients, chunked.

The no-gradient pass is computed once per episode and reused by every query batch; H is re-drawn
for each query batch and shared by every ``map`` call within it.

Exactness needs per-image maps whose outputs do not interact across images, so keep batch norm in
inference mode (frozen statistics) in mapped networks. When the mapped function itself depends on a
set-level quantity computed from the support set (CNAPs-style FiLM from a task embedding), the
nested term is no longer exactly unbiased; the h >= N equality still holds.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import gin
import keras
import tensorflow as tf

from lite_tf.images import to_float_images

MODES = ("lite", "full", "inference")
GRADIENT_SCALINGS = ("unbiased", "none", "loss")


@gin.configurable
class LiteConfig:
    """How support sets are mapped during training (``mode``) and evaluation (inference, chunked)."""

    def __init__(self, mode: str = "lite", h: int = 40, chunk_size: int = 40,
                 gradient_scaling: str = "unbiased"):
        if mode not in MODES:
            raise ValueError(f"Unknown LITE mode {mode!r}; expected one of {MODES}.")
        if gradient_scaling not in GRADIENT_SCALINGS:
            raise ValueError(
                f"Unknown LITE gradient_scaling {gradient_scaling!r}; expected one of {GRADIENT_SCALINGS}."
            )
        for name, value in (("h", h), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"LITE {name} must be a positive integer; got {value!r}.")
        self.mode, self.h, self.chunk_size, self.gradient_scaling = mode, h, chunk_size, gradient_scaling

    def __repr__(self):
        return (f"LiteConfig(mode={self.mode!r}, h={self.h}, chunk_size={self.chunk_size}, "
                f"gradient_scaling={self.gradient_scaling!r})")


def chunked_map(fn: Callable, images: tf.Tensor, chunk_size: int) -> tf.Tensor:
    """``fn`` over ``images`` in chunks (the last one may be shorter), concatenated.

    Runs as a ``tf.while_loop`` so that, with no gradient recorded, only one chunk's activations
    are alive at a time, and the support size may be unknown when traced. Needs at least one image.
    """
    count = tf.shape(images)[0]
    first = fn(images[:chunk_size])
    num_chunks = (count + chunk_size - 1) // chunk_size
    outputs = tf.TensorArray(first.dtype, size=num_chunks, infer_shape=False,
                             element_shape=tf.TensorShape([None]).concatenate(first.shape[1:]))
    outputs = outputs.write(0, first)

    def body(index, outputs):
        start = index * chunk_size
        return index + 1, outputs.write(index, fn(images[start:start + chunk_size]))

    _, outputs = tf.while_loop(lambda index, _: index < num_chunks, body, (tf.constant(1), outputs),
                               parallel_iterations=1)
    result = outputs.concat()
    result.set_shape(tf.TensorShape([None]).concatenate(first.shape[1:]))
    return result


def draw_subset(support_size: tf.Tensor, h: int, seed: keras.random.SeedGenerator) -> tf.Tensor:
    """Indices of a uniform random subset of min(h, N) support images (sorted, without replacement)."""
    with tf.control_dependencies([support_size]):  # the seed advances only when data arrived
        keys = keras.random.uniform(tf.reshape(support_size, [1]), seed=seed)
    subset = tf.argsort(keys)[: tf.minimum(h, support_size)]
    return tf.sort(subset)


def scale_subset_gradient(values: tf.Tensor, factor) -> tf.Tensor:
    """Same values; gradients flowing back through them are multiplied by ``factor``."""
    stopped = tf.stop_gradient(values)
    return stopped + tf.cast(factor, values.dtype) * (values - stopped)


class SupportMapper:
    """Maps per-image functions over one episode's support set according to a ``LiteConfig``.

    One mapper serves one episode. ``start_batch`` begins a query batch (re-drawing H); within it
    the k-th ``map`` call reuses the k-th no-gradient pass computed in the episode's first batch.
    """

    def __init__(self, config: LiteConfig, support_size, training: bool,
                 seed: Optional[keras.random.SeedGenerator] = None, tape: Optional[tf.GradientTape] = None):
        self.config = config
        self.mode = config.mode if training else "inference"
        self.support_size = tf.convert_to_tensor(support_size, tf.int32)
        self.seed = seed
        self.tape = tape
        self.subset = None  # indices of H in the current query batch (lite mode)
        self.forced_subset = None  # for tests: use these indices instead of drawing
        self._cache = []
        self._call_index = 0

    @property
    def subset_size(self) -> tf.Tensor:
        return tf.minimum(tf.constant(self.config.h, tf.int32), self.support_size)

    @property
    def loss_scale(self) -> tf.Tensor:
        """Factor on the loss for gradients: N/h in ``loss`` scaling, 1 otherwise."""
        if self.mode == "lite" and self.config.gradient_scaling == "loss":
            return tf.cast(self.support_size, tf.float32) / tf.cast(self.subset_size, tf.float32)
        return tf.constant(1.0)

    def start_batch(self) -> None:
        self._call_index = 0
        if self.mode != "lite":
            return
        if self.forced_subset is not None:
            self.subset = tf.sort(tf.convert_to_tensor(self.forced_subset, tf.int32))
        else:
            if self.seed is None:
                raise ValueError("A lite SupportMapper needs a keras.random.SeedGenerator to draw H.")
            self.subset = draw_subset(self.support_size, self.config.h, self.seed)

    def _no_gradient(self):
        return self.tape.stop_recording() if self.tape is not None else contextlib.nullcontext()

    def map(self, fn: Callable, images: tf.Tensor) -> tf.Tensor:
        """``fn`` applied to every support image, with gradients as the mode prescribes."""
        index, self._call_index = self._call_index, self._call_index + 1
        per_image = lambda batch: fn(to_float_images(batch))
        if self.mode == "full":
            return per_image(images)
        if self.mode == "inference":
            return self._cached(index, lambda: chunked_map(per_image, images, self.config.chunk_size))
        if self.subset is None:
            raise RuntimeError("SupportMapper.start_batch() must be called before map() in lite mode.")
        subset_values = per_image(tf.gather(images, self.subset))
        support_size, subset_size = self.support_size, self.subset_size

        def no_gradient_pass():
            # Skipped when H covers the whole set (h >= N): nothing is left to embed.
            return tf.cond(
                support_size > subset_size,
                lambda: chunked_map(per_image, images, self.config.chunk_size),
                lambda: tf.zeros(tf.concat([[support_size], tf.shape(subset_values)[1:]], 0),
                                 subset_values.dtype),
            )

        rest = self._cached(index, no_gradient_pass)
        if self.config.gradient_scaling == "unbiased":
            factor = tf.cast(support_size, tf.float32) / tf.cast(subset_size, tf.float32)
            subset_values = scale_subset_gradient(subset_values, factor)
        return tf.tensor_scatter_nd_update(rest, self.subset[:, None], subset_values)

    def _cached(self, index: int, compute: Callable) -> tf.Tensor:
        if index < len(self._cache):
            return self._cache[index]
        if index != len(self._cache):
            raise RuntimeError("SupportMapper.map calls must happen in the same order in every query batch.")
        with self._no_gradient():
            values = tf.stop_gradient(compute())
        self._cache.append(values)
        return values

