"""EpisodicModel: a keras.Model whose train_step and test_step each run one few-shot episode.

Works with ``model.fit`` / ``model.evaluate``, Keras callbacks, optimizers (use the optimizer's own
``gradient_accumulation_steps`` for several tasks per update; the loss goes through
``optimizer.scale_loss``, so a ``keras.optimizers.LossScaleOptimizer`` works) and
``keras.metrics``. Keras's own hooks carry the loss (``compute_loss``: query cross-entropy plus the
learner's regularisation; ``compile(loss=...)`` is refused) and the metrics (``compute_metrics``):
``compile(metrics=[...])`` adds metrics updated on each episode's query labels and logits (e.g. ``keras.metrics.SparseTopKCategoricalAccuracy(3)``), next to the per-episode
``loss`` and ``accuracy`` that are always reported. Episodes are dicts (lite_tf/episode.py) whose
support size, query size and way vary; the step uses only dynamic shapes and explicit TF control
flow, so a dataset declaring those sizes unknown is traced once. The steps are never converted by
AutoGraph, also when wrapped in a plain ``tf.function`` (the benchmark harness, the planner's probes):
Keras's own step functions are not converted, and AutoGraph's source transformations were ~1.4 s of
each such trace. Tensor-dependent control flow in ``compute_loss`` or a learner's
``regularization_loss`` is written with ``tf.cond`` / ``tf.while_loop``, as in a learner's ``call``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import gin
import keras
import tensorflow as tf

from lite_tf.clips import chunk_in_clips
from lite_tf.episode import unpack_episode, validate_episode
from lite_tf.errors import ConfigError, WrongTypeError
from lite_tf.images import to_float_images
from lite_tf.learner import Learner
from lite_tf.lite import LiteConfig, SupportMapper, dense_gradients
from lite_tf import optimizers, remat
from lite_tf.precision import apply_policy, is_float16, resolve_policy


_UNCONVERTED = tf.autograph.experimental.do_not_convert


class EpisodeResult(NamedTuple):
    """What one training episode computed (``EpisodicModel.train_episode``)."""
    loss: tf.Tensor  # mean query cross-entropy (+ the learner's regularisation)
    accuracy: tf.Tensor  # fraction of queries classified correctly
    gradients: list  # of the (optimizer-scaled) loss, one per trainable variable
    labels: tf.Tensor  # [M] query labels
    logits: tf.Tensor  # [M, way] query logits, in query order
    subsets: Optional[tf.Tensor]  # [query batches, min(h, N)] indices of H per batch (lite mode), else None


def _query_metric(identifier) -> keras.metrics.Metric:
    try:
        metric = keras.metrics.get(identifier)
    except ValueError as error:
        raise ConfigError(f"EpisodicModel.compile: unknown metric {identifier!r} ({error}).") from None
    if isinstance(metric, keras.metrics.Metric):
        return metric
    if callable(metric):  # a function f(labels, logits) -> per-query values
        return keras.metrics.MeanMetricWrapper(metric, name=getattr(metric, "__name__", str(identifier)))
    raise ConfigError(f"EpisodicModel.compile: metric {identifier!r} is neither a keras Metric nor a function.")


class ReplicaSeedGenerator(keras.random.SeedGenerator):
    """A SeedGenerator whose draws differ per replica: under tf.distribute the state is mirrored, so
    plain draws would give every replica the same subset; the replica id is folded into the seed."""

    REPLICA_STRIDE = 7919

    def next(self, ordered=True):
        value = super().next(ordered)
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return value
        replica = tf.cast(context.replica_id_in_sync_group, value.dtype)
        return value + tf.stack([replica * self.REPLICA_STRIDE, tf.zeros_like(replica)])


def _for_reduction(logs: dict) -> dict:
    """Logs as Keras reduces them across workers: under MultiWorkerMirroredStrategy Keras takes a
    mean over axis 0 (scalars would fail), so each scalar becomes [1] there; it comes back a scalar."""
    strategy = tf.distribute.get_strategy()
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.num_replicas_in_sync > 1:
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


@gin.configurable
class EpisodicModel(keras.Model):
    """Meta-trains ``learner`` episode by episode with the LITE support mapping in ``lite``.

    Args:
      learner: a Learner (see lite_tf/learner.py and lite_tf/registry.py).
      image_size: square image size the learner is built for.
      lite: a LiteConfig (mode, h, chunk_size, gradient scaling, subset sampling) used while
        training; evaluation maps the support set in inference mode in chunks of its chunk_size.
      query_batch_size: queries scored per forward/backward pass (clips: about this many frames, at
        least one clip; lite_tf/clips.py); None scores all at once. H is
        re-drawn for each batch unless ``lite.redraw='episode'``; the support no-gradient pass is
        shared by all batches.
      seed: seed of the subset draws.
      dtype_policy: 'float32', 'mixed_bfloat16' or 'mixed_float16' (None: the Keras global policy);
        mixed runs the backbone (and set encoder) in low precision and the heads in float32
        (lite_tf/precision.py); with 'mixed_float16' ``compile`` wraps the optimizer in a
        ``keras.optimizers.LossScaleOptimizer``.

    To force or record H (studies, tests) use ``episode_gradients(data, subset=..., return_subsets=True)``.
    """

    def __init__(self, learner: Learner, image_size: int, lite: Optional[LiteConfig] = None,
                 query_batch_size: Optional[int] = None, seed: Optional[int] = None,
                 dtype_policy: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(learner, Learner):
            raise WrongTypeError(f"EpisodicModel needs a lite_tf Learner; got {type(learner).__name__}.")
        if query_batch_size is not None and (not isinstance(query_batch_size, int) or query_batch_size <= 0):
            raise ConfigError(f"query_batch_size must be a positive integer or None; got {query_batch_size!r}.")
        self.learner = learner
        self.image_size = int(image_size)
        self.lite_config = lite or LiteConfig()
        learner.support_chunk_size = self.lite_config.chunk_size  # personalisation chunks as training does
        self.query_batch_size = query_batch_size
        self.subset_seed = ReplicaSeedGenerator(seed, name="subset_seed")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.query_metrics = []  # from compile(metrics=...)
        self.trace_count = 0  # incremented each time a step is traced (eager: each call)
        learner.build_for(self.image_size)
        self.precision = resolve_policy(dtype_policy)
        apply_policy(learner, self.precision)
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker, *self.query_metrics]

    # ------------------------------------------------------------------ steps
    def _prepare(self, data):
        episode, checks = validate_episode(unpack_episode(data), self.image_size)
        with tf.control_dependencies(checks):
            episode = {key: tf.identity(value) for key, value in episode.items()}
        return episode

    def _mapper(self, episode, training, subset=None):
        return SupportMapper(self.lite_config, tf.shape(episode["support_labels"])[0], training=training,
                             seed=self.subset_seed if training else None, labels=episode["support_labels"],
                             way=episode["way"], subset=subset)

    def _query_batches(self, episode):
        query_count = tf.shape(episode["query_labels"])[0]
        batch_size = (query_count if self.query_batch_size is None
                      else tf.constant(chunk_in_clips(self.query_batch_size, episode["query_images"])))
        num_batches = (query_count + batch_size - 1) // batch_size

        def batch(index):
            start = index * batch_size
            return (to_float_images(episode["query_images"][start:start + batch_size]),
                    episode["query_labels"][start:start + batch_size])

        return query_count, num_batches, batch

    def _score_batch(self, episode, mapper, images, labels, query_count, training):
        """Loss share, number correct and logits of one query batch; the loss is the episode mean's share."""
        mapper.start_batch()
        logits = self.learner(episode["support_images"], episode["support_labels"], images,
                              episode["way"], mapper=mapper, training=training)
        logits = tf.cast(logits, tf.float32)
        # Each query weighs 1 / (the episode's query count): the batches' losses add up to the episode mean.
        weights = tf.fill(tf.shape(labels), 1.0 / tf.cast(query_count, tf.float32))
        loss = self.compute_loss(y=labels, y_pred=logits, sample_weight=weights, training=training)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return loss, correct, logits

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras's loss hook: the query cross-entropy of ``y_pred`` (logits) against ``y``, weighted per
        query by ``sample_weight`` (default: the mean), plus, when training, the learner's
        regularisation times the weights' sum (the batch's share of the episode)."""
        del x
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=y_pred)
        if sample_weight is None:
            sample_weight = tf.fill(tf.shape(y), 1.0 / tf.cast(tf.shape(y)[0], tf.float32))
        loss = tf.reduce_sum(cross_entropy * sample_weight)
        if training:
            loss += tf.reduce_sum(sample_weight) * tf.cast(self.learner.regularization_loss(), tf.float32)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras's metrics hook: updates the ``compile(metrics=...)`` metrics on the episode's query
        labels ``y`` and logits ``y_pred``; returns every metric's result (loss and accuracy first)."""
        del x
        for metric in self.query_metrics:
            metric.update_state(y, y_pred, sample_weight=sample_weight)
        return {metric.name: metric.result() for metric in self.metrics}

    def _scale_loss(self, loss):
        """The optimizer's loss scaling (identity unless e.g. a LossScaleOptimizer); none before compile."""
        optimizer = getattr(self, "optimizer", None)
        return loss if optimizer is None else optimizer.scale_loss(loss)

    def _over_batches(self, num_batches, batch_result, first=None):
        """Runs ``batch_result(index) -> (sums list, per-batch outputs list)`` over the query batches.

        Sums are added; per-batch outputs (logits, subsets) are concatenated / stacked. Batch 0 runs
        outside the loop (``first`` is its result when already computed), so cached support passes
        are made there.
        """
        sums, outputs = first if first is not None else batch_result(0)
        arrays = [tf.TensorArray(o.dtype, size=num_batches, infer_shape=False,
                                 element_shape=tf.TensorShape([None] * o.shape.rank)).write(0, o) for o in outputs]
        if self.query_batch_size is not None:
            def body(index, sums, arrays):
                batch_sums, batch_outputs = batch_result(index)
                return (index + 1, [s + b for s, b in zip(sums, batch_sums)],
                        [a.write(index, o) for a, o in zip(arrays, batch_outputs)])

            def loop():
                _, loop_sums, loop_arrays = tf.while_loop(lambda index, *_: index < num_batches, body,
                                                          (tf.constant(1), sums, arrays), parallel_iterations=1)
                return loop_sums, loop_arrays

            # Only with a second batch: grappler's memory optimiser can break the body of a loop that
            # runs no iteration (lite_tf/faults.py, grappler_tmp_var_clash).
            sums, arrays = tf.cond(num_batches > 1, loop, lambda: (sums, arrays))
        return sums, arrays

    def train_episode(self, data, subset=None) -> EpisodeResult:
        """One training episode's loss, accuracy, gradients (not applied), query logits and subsets.

        ``subset`` forces H to these support indices in every query batch (lite mode).
        """
        self.trace_count += 1
        remat.configure_learner(self.learner, self.lite_config.remat)
        episode = self._prepare(data)
        variables = self.trainable_variables
        query_count, num_batches, batch = self._query_batches(episode)
        mapper = self._mapper(episode, training=True, subset=subset)
        exact, lite = mapper.mode == "exact", mapper.mode == "lite"
        # The optimizer sums the replicas' gradients (tf.distribute): R replicas x 1 task is then
        # one update on the mean over R tasks, as with gradient_accumulation_steps=R on one replica.
        replicas = float(tf.distribute.get_strategy().num_replicas_in_sync)

        def batch_result(index, tape=None):
            images, labels = batch(index)
            tape = tape or tf.GradientTape()
            with tape:
                mapper.tape = tape
                loss, correct, logits = self._score_batch(episode, mapper, images, labels, query_count, True)
                scaled_loss = self._scale_loss(loss * mapper.loss_scale / replicas)
            # Exact mode: also dL/de of the watched support embeddings (summed over batches).
            gradients = dense_gradients(tape, scaled_loss, variables + mapper.watched)
            mapper.tape = None
            subset_indices = mapper.subset if lite else tf.zeros([0], tf.int32)
            return [loss, correct, *gradients], [logits, subset_indices]

        # Exact mode keeps the first batch's tape: the support set's gradient is pushed back through it.
        first_tape = tf.GradientTape(persistent=exact)
        first = batch_result(0, first_tape)
        first_watched = list(mapper.watched)
        sums, (logits, subsets) = self._over_batches(num_batches, batch_result, first)
        loss, correct, gradients = sums[0], sums[1], sums[2:]
        variable_gradients, support_gradients = gradients[:len(variables)], gradients[len(variables):]
        subsets = subsets.stack()  # read even when unused: an unread TensorArray warns
        if exact:
            # Pass 2 after the query batches' backward: their activations are freed before any
            # chunk's are made (otherwise the two overlap and exact needs more than LITE). One gate
            # op: a control edge from every gradient to every op of pass 2 made 1.7 M graph edges
            # (Grappler's dependency optimiser alone then took 16 s of the first step).
            with tf.control_dependencies([tf.group(variable_gradients)]):
                support_share = mapper.backpropagate_support(support_gradients, variables, first_tape, first_watched)
            variable_gradients = [g + s for g, s in zip(variable_gradients, support_share)]
        return EpisodeResult(loss, correct / tf.cast(query_count, tf.float32), variable_gradients,
                             episode["query_labels"], logits.concat(), subsets if lite else None)

    def episode_gradients(self, data, subset=None, return_subsets: bool = False):
        """(loss, accuracy, gradients) for one episode, without applying them.

        Args:
          subset: force H (lite mode) to these support indices in every query batch; rows are
            still scaled as the config's sampling prescribes (1 / inclusion probability).
          return_subsets: also return the H drawn in each query batch, [batches, min(h, N)]
            (None outside lite mode).
        """
        result = self.train_episode(data, subset=subset)
        if return_subsets:
            return result.loss, result.accuracy, result.gradients, result.subsets
        return result.loss, result.accuracy, result.gradients

    @_UNCONVERTED
    def train_step(self, data):
        result = self.train_episode(data)
        # Data dependency: keeps the optimizer's iteration count exact when an iterator runs out.
        with tf.control_dependencies([result.loss]):
            self.optimizer.apply_gradients(zip(result.gradients, self.trainable_variables))
        logs = self._update_metrics(result.loss, result.accuracy, result.labels, result.logits)
        # This episode's size, for TensorBoard (lite_tf.callbacks.EpochEvents).
        episode = unpack_episode(data)
        logs.update(way=tf.cast(episode["way"], tf.float32),
                    support_size=tf.cast(tf.shape(episode["support_labels"])[0], tf.float32),
                    query_size=tf.cast(tf.shape(episode["query_labels"])[0], tf.float32))
        return _for_reduction(logs)

    def _update_metrics(self, loss, accuracy, labels, logits):
        # The control dependency matters in graph mode: a Mean's count update does not otherwise
        # depend on the data, so Keras's last call on an exhausted iterator would still bump it.
        with tf.control_dependencies([loss, accuracy]):
            self.loss_tracker.update_state(loss)
            self.accuracy_tracker.update_state(accuracy)
            return self.compute_metrics(None, labels, logits)

    def evaluate_episode(self, data, return_logits: bool = False):
        """(loss, accuracy) of one episode with the support set mapped in inference mode.

        With ``return_logits`` also the query labels and logits.
        """
        self.trace_count += 1
        episode = self._prepare(data)
        query_count, num_batches, batch = self._query_batches(episode)
        mapper = self._mapper(episode, training=False)

        def batch_result(index):
            images, labels = batch(index)
            loss, correct, logits = self._score_batch(episode, mapper, images, labels, query_count, False)
            return [loss, correct], [logits]

        (loss, correct), (logits,) = self._over_batches(num_batches, batch_result)
        accuracy = correct / tf.cast(query_count, tf.float32)
        if return_logits:
            return loss, accuracy, episode["query_labels"], logits.concat()
        return loss, accuracy

    @_UNCONVERTED
    def test_step(self, data):
        return _for_reduction(self._update_metrics(*self.evaluate_episode(data, return_logits=True)))

    @_UNCONVERTED
    def predict_step(self, data):
        """Query logits of one episode (inference mapping)."""
        episode = self._prepare(data)
        mapper = self._mapper(episode, training=False)
        mapper.start_batch()
        return self.learner(episode["support_images"], episode["support_labels"],
                            to_float_images(episode["query_images"]), episode["way"], mapper=mapper, training=False)

    def call(self, data, training=False):
        return self.predict_step(data)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Nothing to build: the model is built in __init__ and its optimizer in compile.

        Under a tf.distribute strategy Keras would otherwise pull a first episode and reduce it
        across replicas to build symbolically, which fails for episode dicts under
        MultiWorkerMirroredStrategy.
        """

    def compile(self, optimizer="adam", metrics=None, jit_compile=False, **kwargs):
        """Like keras.Model.compile; XLA is off by default because episode shapes vary.

        ``metrics``: a list of keras metrics (objects, names, or functions of (labels, logits)),
        updated on every episode's query labels and logits, beside the per-episode ``loss`` and
        ``accuracy``. The name ``'adam'`` (the default) is ``lite_tf.optimizers.Adam``: Keras's Adam
        with TensorFlow's fused kernel (a keras.optimizers.Adam object is used as given). Under ``dtype_policy='mixed_float16'`` the optimizer is wrapped in a
        ``keras.optimizers.LossScaleOptimizer`` (unless it is one). The optimizer's slots are created here: created inside the first traced
        step instead, they would make tf.function trace the step a second time.
        """
        for name in ("loss", "loss_weights", "weighted_metrics"):
            if kwargs.get(name) is not None:
                raise ConfigError(f"EpisodicModel.compile({name}=...) is not used: the loss is the query "
                                  "cross-entropy plus the learner's regularisation (EpisodicModel.compute_loss; "
                                  "override it to change the loss); drop the argument.")
            kwargs.pop(name, None)
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise ConfigError(f"EpisodicModel.compile metrics must be a list; got {type(metrics).__name__}.")
        query_metrics = [_query_metric(m) for m in (metrics or [])]
        names = [m.name for m in self.metrics[:2]] + [m.name for m in query_metrics]
        clashes = sorted({name for name in names if names.count(name) > 1})
        if clashes:
            raise ConfigError(f"EpisodicModel.compile: metric name(s) {clashes} used twice (loss and accuracy "
                              f"are always reported); give the metric another name.")
        optimizer = optimizers.get(optimizer)  # 'adam': the fused Adam (lite_tf/optimizers.py)
        if is_float16(self.precision):
            if not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        self.query_metrics = query_metrics
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
