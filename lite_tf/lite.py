"""The LITE estimator: map a per-image network over a support set, back-propagating a subset.

Learners never call their networks on the support set directly; they call
``mapper.map(fn, support_images)`` (or ``mapper.map(fn, support_images, context=c)`` when ``fn``
also depends on set-level tensors ``c``, e.g. CNAPs' FiLM parameters: ``fn(images, c)``), or
``mapper.map_with_queries(fn, support_images, query_images, ...)`` to embed the queries with the same
``fn`` in the same pass (one forward and one backward in the step's graph). The mapper's mode decides
what that costs:

- ``lite``: a random subset H of ``h`` images is embedded with gradients; the other images come
  from a no-gradient pass, run in chunks of ``chunk_size`` outside gradient recording, so memory
  does not grow with the support size. Values equal a full forward pass. Gradient scaling:
    ``unbiased`` (default) row i of H gets e_i = sg(e_i) + (1/p_i) (e_i - sg(e_i)), p_i its
                  inclusion probability (h/N for uniform subsets): an unbiased estimate of the
                  full support gradient, exact query-path gradient;
    ``none``      no factor (as the official VTAB+MD code: h/N of the support term in expectation);
    ``loss``      the whole loss is multiplied by N/h (as the official ORBIT code; this also
                  inflates the exact query-path gradient).
  ``sampling``: ``uniform`` subsets, or ``stratified`` (at least one image of every class in H when
  h >= way: one random image per class, the other h - way uniform among the rest; needs
  ``unbiased`` scaling). ``redraw``: a new H for every ``query_batch`` (default) or one H per
  ``episode``, shared by all its query batches. With h >= N every image is in H and the step
  equals full back-propagation.
- ``exact``: the exact full-support gradient at LITE's memory (GradCache-style). Pass 1 embeds
  every image without gradients, in chunks; the loss is computed with those embeddings e watched,
  giving the exact query and head gradients and dL/de. Pass 2 recomputes one chunk at a time under
  a tape and back-propagates it with output gradient dL/de_chunk (a ``tf.while_loop``, so the
  chunk count may be dynamic). Maps are processed in reverse call order: a later map's gradient
  with respect to its ``context`` (e.g. FiLM parameters generated from the task embedding
  z = mean_n s(x_n)) is pushed back through the recorded set-level computation into the earlier
  maps' dL/de (dL/dz / N per image for z), whose own chunked pass follows. Memory is one chunk's
  activations plus the embeddings; ``chunk_size`` is the only memory knob. Cost: about one forward
  plus one forward-backward over N (LITE: a forward over N, a backward over h).
- ``full``: every support image back-propagated in one pass (exact gradient, memory grows with N).
- ``inference``: no gradients, chunked.

``remat=True`` recomputes the networks' activations block by block during back-propagation instead
of storing them (lite_tf/remat.py): the gradient passes (H and the queries, exact's pass 2, full)
keep only block boundaries plus one block, for about one more forward pass of the back-propagated
images. Values and gradients are unchanged.

``jit_compile=True`` compiles the chunked no-gradient passes (lite's rest of the set, exact's pass
1, inference) with XLA: every chunk is padded to ``chunk_size`` images so the compiled function has
one shape and is traced once, while the episode-level step stays dynamic (support size, way, query
size vary). The padded images are dropped after the map, so this, too, needs per-image maps (batch
norm in inference mode). Gradient passes (H, exact pass 2, full) are not compiled.

The no-gradient pass is computed once per episode and reused by every query batch; H is shared by
every ``map`` call within a query batch. To force H (studies, tests) pass ``subset=`` to
``SupportMapper`` or ``EpisodicModel.episode_gradients``; to record the drawn H ask
``episode_gradients(..., return_subsets=True)``.

Exactness (``exact``, and ``lite`` with h >= N) needs per-image maps whose outputs do not interact
across images, so keep batch norm in inference mode (frozen statistics) in mapped networks, and
pass every set-level tensor a mapped function depends on as ``context`` (a tensor it only closes
over gets no gradient in ``exact`` mode). When the mapped function depends on a set-level
quantity computed from the support set (CNAPs-style FiLM from a task embedding), LITE's nested
term is not exactly unbiased; ``exact`` and the h >= N equality still hold.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import gin
import keras
import tensorflow as tf

from lite_tf.clips import chunk_in_clips, pool_clips
from lite_tf.errors import ConfigError
from lite_tf.images import to_float_images

MODES = ("lite", "exact", "full", "inference")
GRADIENT_SCALINGS = ("unbiased", "none", "loss")
SAMPLINGS = ("uniform", "stratified")
REDRAWS = ("query_batch", "episode")


@gin.configurable
class LiteConfig:
    """How support sets are mapped during training (``mode``) and evaluation (inference, chunked).

    See the module docstring for ``mode``, ``gradient_scaling``, ``sampling``, ``redraw`` and
    ``remat``. ``h='auto'`` with ``memory_budget`` (e.g. '12GiB') lets the memory planner pick the
    largest h that fits when the experiment is built from gin (lite_tf/plan.py).
    """

    def __init__(self, mode: str = "lite", h: int = 40, chunk_size: int = 40,
                 gradient_scaling: str = "unbiased", sampling: str = "uniform", redraw: str = "query_batch",
                 jit_compile: bool = False, remat: bool = False,
                 memory_budget=None):
        for name, value, allowed in (("mode", mode, MODES), ("gradient_scaling", gradient_scaling, GRADIENT_SCALINGS),
                                     ("sampling", sampling, SAMPLINGS), ("redraw", redraw, REDRAWS)):
            if value not in allowed:
                raise ConfigError(f"Unknown LITE {name} {value!r}; expected one of {allowed}.")
        for name, value in (("h", h), ("chunk_size", chunk_size)):
            if name == "h" and value == "auto":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"LITE {name} must be a positive integer{' or auto' if name == 'h' else ''}; "
                                  f"got {value!r}.")
        if memory_budget is not None:
            from lite_tf.memory import parse_budget

            parse_budget(memory_budget)
        if h == "auto" and memory_budget is None:
            raise ConfigError("LITE h='auto' needs memory_budget (e.g. LiteConfig.memory_budget = '12GiB').")
        self.memory_budget = memory_budget
        if sampling == "stratified" and gradient_scaling != "unbiased":
            raise ConfigError(f"LITE sampling='stratified' needs gradient_scaling='unbiased'; got "
                              f"{gradient_scaling!r}.")
        self.mode, self.h, self.chunk_size, self.gradient_scaling = mode, h, chunk_size, gradient_scaling
        self.sampling, self.redraw = sampling, redraw
        if not isinstance(jit_compile, bool):
            raise ConfigError(f"LITE jit_compile must be True or False; got {jit_compile!r}.")
        self.jit_compile = jit_compile
        if not isinstance(remat, bool):
            raise ConfigError(f"LITE remat must be True or False; got {remat!r}.")
        self.remat = remat

    def __repr__(self):
        return (f"LiteConfig(mode={self.mode!r}, h={self.h}, chunk_size={self.chunk_size}, "
                f"gradient_scaling={self.gradient_scaling!r}, sampling={self.sampling!r}, "
                f"redraw={self.redraw!r}, jit_compile={self.jit_compile}, remat={self.remat}, "
                f"memory_budget={self.memory_budget!r})")


def _num_chunks(count, chunk_size: int):
    return (count + chunk_size - 1) // chunk_size


def padded_chunks(fn: Callable, chunk_size: int) -> Callable:
    """``fn`` on a chunk zero-padded to ``chunk_size`` images, the padding's outputs dropped: every
    call of ``fn`` then has one shape (what an XLA-compiled ``fn`` needs to be traced once)."""
    def padded(chunk):
        count = tf.shape(chunk)[0]
        padding = tf.concat([[[0, chunk_size - count]], tf.zeros([chunk.shape.rank - 1, 2], tf.int32)], 0)
        full = tf.pad(chunk, padding)
        full.set_shape(tf.TensorShape([chunk_size]).concatenate(chunk.shape[1:]))
        return fn(full)[:count]

    return padded


def chunked_map(fn: Callable, images: tf.Tensor, chunk_size: int, jit_compile: bool = False) -> tf.Tensor:
    """``fn`` over ``images`` in chunks (the last one may be shorter), concatenated.

    Runs as a ``tf.while_loop`` so that, with no gradient recorded, only one chunk's activations
    are alive at a time, and the support size may be unknown when traced. Needs at least one image.
    ``jit_compile``: ``fn`` is compiled with XLA and fed chunks padded to ``chunk_size``
    (``padded_chunks``); ``fn`` may also be a ``tf.function(jit_compile=True)`` already.
    """
    if jit_compile:
        if not isinstance(fn, tf.types.experimental.PolymorphicFunction):
            fn = tf.function(fn, jit_compile=True)
        fn = padded_chunks(fn, chunk_size)
    if images.shape[0] is not None and 0 < images.shape[0] <= chunk_size:
        return fn(images)  # one chunk, known when traced: no loop (lite_tf/macs.py counts it too)
    num_chunks = _num_chunks(tf.shape(images)[0], chunk_size)
    if tf.executing_eagerly():
        first = fn(images[:chunk_size])
        dtype, element_shape, start_index = first.dtype, first.shape[1:], 1
    else:
        # Traced once: a function of one chunk (its output's dtype and shape are known before the
        # loop), called by every iteration; the first chunk outside the loop traced ``fn`` twice.
        fn = once_per_chunk_shape(fn, images)
        dtype, element_shape, start_index = fn.output_dtypes, fn.output_shapes[1:], 0
    outputs = tf.TensorArray(dtype, size=num_chunks, infer_shape=False,
                             element_shape=tf.TensorShape([None]).concatenate(element_shape))
    if start_index:
        outputs = outputs.write(0, first)

    def body(index, outputs):
        start = index * chunk_size
        # After the previous chunk: one chunk alive at a time.
        with tf.control_dependencies([outputs.flow]):
            chunk = tf.identity(images[start:start + chunk_size])
        return index + 1, outputs.write(index, fn(chunk))

    _, outputs = tf.while_loop(lambda index, _: index < num_chunks, body, (tf.constant(start_index), outputs),
                               parallel_iterations=1)
    result = outputs.concat()
    result.set_shape(tf.TensorShape([None]).concatenate(element_shape))
    return result


def once_per_chunk_shape(fn: Callable, images: tf.Tensor):
    """``fn`` traced once as a function of a chunk of ``images`` (any length): a concrete function
    whose ``output_dtypes`` / ``output_shapes`` are known before any call. TensorFlow inlines its
    calls when the graph runs, so values and memory are those of ``fn`` traced in place."""
    spec = tf.TensorSpec(tf.TensorShape([None]).concatenate(images.shape[1:]), images.dtype)
    concrete = tf.function(fn, autograph=False).get_concrete_function(spec)  # as when traced in place: unconverted
    if not isinstance(concrete.structured_outputs, tf.Tensor):
        raise ConfigError(f"A chunked map's function must return one tensor per chunk; it returned "
                          f"{type(concrete.structured_outputs).__name__}.")
    return concrete


def dense_gradients(tape: tf.GradientTape, target, sources: list, output_gradients=None) -> list:
    """``tape.gradient`` as dense tensors, zeros for unconnected sources (Keras variables included)."""
    gradients = tape.gradient(target, sources, output_gradients=output_gradients)
    return [tf.zeros_like(tf.convert_to_tensor(s)) if g is None else tf.convert_to_tensor(g)
            for s, g in zip(sources, gradients)]


def chunked_backprop(fn: Callable, images: tf.Tensor, output_gradients: tf.Tensor, variables: list,
                     inputs: list, chunk_size: int) -> tuple:
    """Sums over chunks of d<fn(chunk, inputs), output_gradients[chunk]>/d(variables, inputs).

    ``fn(chunk, inputs)`` is recomputed under a fresh tape one chunk at a time, in a
    ``tf.while_loop``: only one chunk's activations are alive and the chunk count may be dynamic.
    ``inputs`` are tensors ``fn`` takes explicitly. Returns (variable gradients, input gradients).
    """
    def chunk_gradients(index, after=()):
        start = index * chunk_size
        # After the previous chunk's gradients: the first chunk (outside the loop) and the loop's
        # first iteration would otherwise run at once, two chunks' activations alive.
        with tf.control_dependencies([tf.group(after)] if after else []):  # one gate op, not an edge per gradient
            chunk = tf.identity(images[start:start + chunk_size])
        with tf.GradientTape() as tape:
            copies = [tf.identity(t) for t in inputs]  # in-graph copies the tape can watch
            tape.watch(copies)
            values = fn(chunk, copies)
        upstream = tf.cast(output_gradients[start:start + chunk_size], values.dtype)
        return dense_gradients(tape, values, list(variables) + copies, output_gradients=upstream)

    num_chunks = _num_chunks(tf.shape(images)[0], chunk_size)
    _, total = tf.while_loop(
        lambda index, _: index < num_chunks,
        lambda index, total: (index + 1, [t + g for t, g in zip(total, chunk_gradients(index, total))]),
        (tf.constant(1), chunk_gradients(0)), parallel_iterations=1)
    return total[:len(variables)], total[len(variables):]


# ---------------------------------------------------------------------- subsets
def draw_subset(support_size: tf.Tensor, h: int, seed: keras.random.SeedGenerator) -> tf.Tensor:
    """Indices of a uniform random subset of min(h, N) support images (sorted, without replacement)."""
    with tf.control_dependencies([support_size]):  # the seed advances only when data arrived
        keys = keras.random.uniform(tf.reshape(support_size, [1]), seed=seed)
    subset = tf.argsort(keys)[: tf.minimum(h, support_size)]
    return tf.sort(subset)


def _stratified_applies(counts: tf.Tensor, h: int) -> tf.Tensor:
    """True where stratification changes anything: way <= h < N."""
    way, support_size = tf.size(counts), tf.reduce_sum(counts)
    return tf.logical_and(h >= way, h < support_size)


def draw_stratified_subset(labels: tf.Tensor, way, h: int, seed: keras.random.SeedGenerator) -> tf.Tensor:
    """Sorted indices of min(h, N) images holding at least one image of every class when h >= way.

    One uniformly chosen image per class, then h - way drawn uniformly without replacement from the
    other N - way images; a plain uniform subset when h < way or h >= N.
    """
    labels = tf.convert_to_tensor(labels, tf.int32)
    support_size = tf.shape(labels)[0]
    counts = tf.math.bincount(labels, minlength=way, maxlength=way)
    with tf.control_dependencies([support_size]):
        keys = keras.random.uniform(tf.reshape(support_size, [1]), seed=seed)
        rest_keys = keras.random.uniform(tf.reshape(support_size, [1]), seed=seed)

    def stratified():
        by_key = tf.argsort(keys)
        by_class = tf.gather(by_key, tf.argsort(tf.gather(labels, by_key), stable=True))  # class, then key
        starts = tf.cumsum(counts, exclusive=True)
        representatives = tf.gather(by_class, starts)  # the smallest key of each class
        chosen = tf.tensor_scatter_nd_update(rest_keys, representatives[:, None],
                                             tf.fill(tf.shape(representatives), 2.0))
        rest = tf.argsort(chosen)[: h - tf.size(counts)]
        return tf.sort(tf.concat([representatives, rest], 0))

    def uniform():
        return tf.sort(tf.argsort(keys)[: tf.minimum(h, support_size)])

    subset = tf.cond(_stratified_applies(counts, h), stratified, uniform)
    subset.set_shape([None])
    return subset


def inclusion_probabilities(config: LiteConfig, support_size, labels=None, way=None) -> tf.Tensor:
    """[N] probability that each support image is in H under ``config``'s sampling."""
    support_size = tf.convert_to_tensor(support_size, tf.int32)
    subset_size = tf.cast(tf.minimum(config.h, support_size), tf.float32)
    uniform = tf.fill(tf.reshape(support_size, [1]), subset_size / tf.cast(support_size, tf.float32))
    if config.sampling == "uniform":
        return uniform
    counts = tf.math.bincount(labels, minlength=way, maxlength=way)
    way_f, count_f = tf.cast(tf.size(counts), tf.float32), tf.cast(support_size, tf.float32)
    class_counts = tf.cast(tf.gather(counts, labels), tf.float32)
    extra = (float(config.h) - way_f) / tf.maximum(count_f - way_f, 1.0)
    stratified = 1.0 / class_counts + (1.0 - 1.0 / class_counts) * extra
    return tf.where(_stratified_applies(counts, config.h), stratified, uniform)


def scale_subset_gradient(values: tf.Tensor, factor) -> tf.Tensor:
    """Same values; gradients flowing back through them are multiplied by ``factor`` (per row or scalar)."""
    stopped = tf.stop_gradient(values)
    factor = tf.cast(factor, values.dtype)
    if factor.shape.rank == 1:
        factor = tf.reshape(factor, tf.concat([tf.shape(factor), tf.ones([values.shape.rank - 1], tf.int32)], 0))
    return stopped + factor * (values - stopped)


# ---------------------------------------------------------------------- the mapper
def _per_image(fn: Callable, context=None) -> Callable:
    """``fn`` on a batch of images (uint8 or float, lite_tf/images.py) or of clips (their frames'
    mean), with ``context`` passed on as ``fn(images, context)`` when given."""
    if context is None:
        return pool_clips(lambda batch: fn(to_float_images(batch)))
    return pool_clips(lambda batch: fn(to_float_images(batch), context))


class SupportMapper:
    """Maps per-image functions over one episode's support set according to a ``LiteConfig``.

    One mapper serves one episode. ``start_batch`` begins a query batch (re-drawing H unless
    ``redraw='episode'``); within it the k-th ``map`` call reuses the k-th no-gradient pass
    computed in the episode's first batch.

    Args:
      config: the LiteConfig.
      support_size: N.
      training: False maps in inference mode whatever the config says.
      seed: draws H (lite mode, unless ``subset`` is given).
      tape: the GradientTape of the current query batch (set by the model per batch).
      labels, way: support labels and way; needed by stratified sampling.
      subset: force H to these support indices in every query batch (the config's sampling still
        sets each row's scaling).
    """

    def __init__(self, config: LiteConfig, support_size, training: bool,
                 seed: Optional[keras.random.SeedGenerator] = None, tape: Optional[tf.GradientTape] = None,
                 labels=None, way=None, subset=None):
        self.config = config
        self.mode = config.mode if training else "inference"
        self.support_size = tf.convert_to_tensor(support_size, tf.int32)
        self.seed = seed
        self.tape = tape
        self.labels = None if labels is None else tf.convert_to_tensor(labels, tf.int32)
        self.way = way
        if config.h == "auto" and self.mode == "lite":
            raise ConfigError("LiteConfig h='auto' is not resolved: build the experiment from gin "
                              "(lite_tf.experiment.build runs the memory planner) or set h.")
        if config.sampling == "stratified" and self.mode == "lite" and (labels is None or way is None):
            raise ConfigError("A SupportMapper with sampling='stratified' needs the support labels and way.")
        self._forced_subset = None if subset is None else tf.sort(tf.convert_to_tensor(subset, tf.int32))
        self.subset = None  # indices of H in the current query batch (lite mode)
        self.watched = []  # exact mode: this batch's embeddings, watched on ``tape``
        self._records = []  # exact mode: (fn, images, context) of each map in the first batch
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
        self.watched = []
        if self.mode != "lite":
            return
        if self._forced_subset is not None:
            self.subset = self._forced_subset
        elif self.subset is None or self.config.redraw == "query_batch":
            if self.seed is None:
                raise ConfigError("A lite SupportMapper needs a keras.random.SeedGenerator to draw H.")
            if self.config.sampling == "stratified":
                self.subset = draw_stratified_subset(self.labels, self.way, self.config.h, self.seed)
            else:
                self.subset = draw_subset(self.support_size, self.config.h, self.seed)

    def _no_gradient(self):
        return self.tape.stop_recording() if self.tape is not None else contextlib.nullcontext()

    def map(self, fn: Callable, images: tf.Tensor, context=None, chunked: Optional[Callable] = None) -> tf.Tensor:
        """``fn`` applied to every support image, with gradients as the mode prescribes.

        ``context`` (any nest of tensors) is passed on as ``fn(images, context)``; pass every
        set-level tensor ``fn`` depends on this way so ``exact`` mode can differentiate through it.
        Clips ([clips, T, H, W, 3], lite_tf/clips.py) are mapped as one example each: ``fn`` embeds
        their frames and the clip's value is the mean (H and the chunks count clips).
        ``chunked(per_image, images) -> [N, ...]`` replaces the no-gradient pass of ``lite`` and
        ``inference`` modes (chunks of ``chunk_size``) for an ``fn`` whose values depend on the chunk
        it sees (batch statistics: lite_tf/backbones/set_encoder.py); ``exact`` mode keeps its chunks.
        """
        index, self._call_index = self._call_index, self._call_index + 1
        per_image = _per_image(fn, context)
        if self.mode == "full":
            return per_image(images)
        no_gradient = (lambda: self._chunked(per_image, images)) if chunked is None else (
            lambda: chunked(per_image, images))
        if self.mode == "inference":
            return self._cached(index, no_gradient)
        if self.mode == "exact":
            return self._map_exact(index, fn, images, context, per_image)
        return self._map_lite(index, images, per_image, no_gradient)

    def map_with_queries(self, fn: Callable, images: tf.Tensor, queries: tf.Tensor, context=None,
                         joint: bool = True) -> tuple:
        """(``map(fn, images, context)``, ``fn`` on the ``queries``): the support values as ``map``
        gives them and the queries' values, with gradients.

        ``joint``: ``fn`` treats every image on its own (batch norm in inference mode), so in ``lite``
        and ``full`` modes the back-propagated support images (H, or all of them) and the queries
        go through ``fn`` as one batch: one forward and one backward pass in the step's graph
        instead of two (a smaller graph to trace and optimise; the same values up to float
        rounding). Clips, other modes, ``joint=False`` and ``remat`` embed the queries on their own:
        with remat, one batch would recompute each segment for both at once, twice the activations
        alive (Simple CNAPs, 224 px, h=40, 40 queries: +1.2 GiB).
        """
        joinable = (joint and not self.config.remat and self.mode in ("lite", "full") and images.shape.rank == 4
                    and tf.convert_to_tensor(queries).shape.rank == 4)
        per_image = _per_image(fn, context)
        if not joinable:
            return self.map(fn, images, context=context), per_image(queries)
        queries = to_float_images(queries)
        if self.mode == "full":
            self._call_index += 1
            values = per_image(tf.concat([to_float_images(images), queries], 0))
            return values[:self.support_size], values[self.support_size:]
        index, self._call_index = self._call_index, self._call_index + 1
        self._require_subset()
        values = per_image(tf.concat([to_float_images(tf.gather(images, self.subset)), queries], 0))
        count = tf.size(self.subset)
        support = self._map_lite(index, images, per_image, lambda: self._chunked(per_image, images),
                                 subset_values=values[:count])
        return support, values[count:]

    def _require_subset(self):
        if self.subset is None:
            raise RuntimeError("SupportMapper.start_batch() must be called before map() in lite mode.")

    def _map_lite(self, index, images, per_image, no_gradient, subset_values=None):
        self._require_subset()
        if subset_values is None:
            subset_values = per_image(tf.gather(images, self.subset))
        support_size, subset_size = self.support_size, self.subset_size

        def no_gradient_pass():
            # Skipped when H covers the whole set (h >= N): nothing is left to embed.
            return tf.cond(
                support_size > subset_size,
                no_gradient,
                lambda: tf.zeros(tf.concat([[support_size], tf.shape(subset_values)[1:]], 0),
                                 subset_values.dtype),
            )

        rest = self._cached(index, no_gradient_pass)
        if self.config.gradient_scaling == "unbiased":
            probabilities = inclusion_probabilities(self.config, support_size, self.labels, self.way)
            subset_values = scale_subset_gradient(subset_values, 1.0 / tf.gather(probabilities, self.subset))
        return tf.tensor_scatter_nd_update(rest, self.subset[:, None], subset_values)

    def _map_exact(self, index, fn, images, context, per_image):
        values = self._cached(index, lambda: self._chunked(per_image, images))
        if index == len(self._records):
            self._records.append((fn, images, context))
        if self.tape is None:
            return values
        values = tf.identity(values)  # an in-graph tensor of this batch, so the tape can watch it
        self.tape.watch(values)
        self.watched.append(values)
        return values

    def _chunked(self, per_image: Callable, images: tf.Tensor) -> tf.Tensor:
        """The no-gradient pass: ``per_image`` over the set in chunks (XLA-compiled if configured)."""
        return chunked_map(per_image, images, chunk_in_clips(self.config.chunk_size, images),
                           jit_compile=self.config.jit_compile)

    def _cached(self, index: int, compute: Callable) -> tf.Tensor:
        if index < len(self._cache):
            return self._cache[index]
        if index != len(self._cache):
            raise RuntimeError("SupportMapper.map calls must happen in the same order in every query batch.")
        with self._no_gradient():
            values = tf.stop_gradient(compute())
        self._cache.append(values)
        return values

    def backpropagate_support(self, support_gradients: list, variables: list, first_tape: tf.GradientTape,
                              first_watched: list) -> list:
        """Exact mode: the support set's share of the variables' gradients (pass 2 and after).

        ``support_gradients[k]`` is dL/de_k summed over the query batches; ``first_tape`` (persistent)
        recorded the first query batch, where ``first_watched`` were the watched embeddings. Maps
        are back-propagated last to first; a map's context gradient is pushed back through the
        first tape into the variables and the earlier maps' dL/de.
        """
        gradients = [tf.zeros(v.shape, v.dtype) for v in variables]
        support_gradients = list(support_gradients)
        for k in reversed(range(len(self._records))):
            fn, images, context = self._records[k]
            flat_context = tf.nest.flatten(context) if context is not None else []
            if context is None:
                per_image = pool_clips(lambda batch, _, fn=fn: fn(to_float_images(batch)))
            else:
                per_image = pool_clips(lambda batch, inputs, fn=fn, context=context: fn(
                    to_float_images(batch), tf.nest.pack_sequence_as(context, inputs)))
            variable_grads, context_grads = chunked_backprop(per_image, images, support_gradients[k], variables,
                                                             flat_context, chunk_in_clips(self.config.chunk_size,
                                                                                          images))
            gradients = [g + r for g, r in zip(gradients, variable_grads)]
            if flat_context:
                upstream = dense_gradients(first_tape, flat_context, list(variables) + first_watched[:k],
                                           output_gradients=context_grads)
                gradients = [g + u for g, u in zip(gradients, upstream[:len(variables)])]
                for j, extra in enumerate(upstream[len(variables):]):
                    support_gradients[j] = support_gradients[j] + extra
        return gradients
