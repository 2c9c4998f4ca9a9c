"""EpisodicModel: a keras.Model whose train_step and test_step each run one few-shot episode.

Works with ``model.fit`` / ``model.evaluate``, Keras callbacks, optimizers (use the optimizer's own
``gradient_accumulation_steps`` for several tasks per update) and ``keras.metrics``. Episodes are
dicts (lite_tf/episode.py) whose support size, query size and way vary; the step uses only dynamic
shapes and explicit TF control flow, so a dataset declaring those sizes unknown is traced once.
"""
from __future__ import annotations

from typing import Optional

import gin
import keras
import tensorflow as tf

from lite_tf.episode import unpack_episode, validate_episode
from lite_tf.learner import Learner
from lite_tf.images import to_float_images
from lite_tf.lite import LiteConfig, SupportMapper


@gin.configurable
class EpisodicModel(keras.Model):
    """Meta-trains ``learner`` episode by episode with the LITE support mapping in ``lite``.

    Args:
      learner: a Learner (see lite_tf/learner.py and lite_tf/registry.py).
      image_size: square image size the learner is built for.
      lite: a LiteConfig (mode, h, chunk_size, gradient_scaling) used while training.
      query_batch_size: queries scored per forward/backward pass; None scores all at once. H is
        re-drawn for each batch; the support no-gradient pass is shared by all batches.
      eval_chunk_size: chunk size of the support pass in evaluation (defaults to lite.chunk_size).
      seed: seed of the subset draws.
    """

    def __init__(self, learner: Learner, image_size: int, lite: Optional[LiteConfig] = None,
                 query_batch_size: Optional[int] = None, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(learner, Learner):
            raise TypeError(f"EpisodicModel needs a lite_tf Learner; got {type(learner).__name__}.")
        if query_batch_size is not None and (not isinstance(query_batch_size, int) or query_batch_size <= 0):
            raise ValueError(f"query_batch_size must be a positive integer or None; got {query_batch_size!r}.")
        self.learner = learner
        self.image_size = int(image_size)
        self.lite_config = lite or LiteConfig()
        self.query_batch_size = query_batch_size
        self.subset_seed = keras.random.SeedGenerator(seed, name="subset_seed")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="accuracy")
        self.trace_count = 0  # incremented each time a step is traced (eager: each call)
        learner.build_for(self.image_size)
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    # ------------------------------------------------------------------ steps
    def _prepare(self, data):
        episode, checks = validate_episode(unpack_episode(data), self.image_size)
        with tf.control_dependencies(checks):
            episode = {key: tf.identity(value) for key, value in episode.items()}
        return episode

    def _query_batches(self, episode):
        query_count = tf.shape(episode["query_labels"])[0]
        batch_size = query_count if self.query_batch_size is None else tf.constant(self.query_batch_size)
        num_batches = (query_count + batch_size - 1) // batch_size

        def batch(index):
            start = index * batch_size
            return (to_float_images(episode["query_images"][start:start + batch_size]),
                    episode["query_labels"][start:start + batch_size])

        return query_count, num_batches, batch

    def _score_batch(self, episode, mapper, images, labels, query_count, training):
        """Loss share and number correct for one query batch; the loss is the episode mean's share."""
        mapper.start_batch()
        logits = self.learner(episode["support_images"], episode["support_labels"], images,
                              episode["way"], mapper=mapper, training=training)
        logits = tf.cast(logits, tf.float32)
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        batch_share = tf.cast(tf.shape(labels)[0], tf.float32) / tf.cast(query_count, tf.float32)
        loss = tf.reduce_sum(cross_entropy) / tf.cast(query_count, tf.float32)
        if training:
            loss += batch_share * tf.cast(self.learner.regularization_loss(), tf.float32)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))
        return loss, correct

    def episode_gradients(self, data, mapper_hook=None):
        """(loss, accuracy, gradients) for one episode, without applying them.

        ``mapper_hook`` (tests) may adjust the SupportMapper, e.g. force the subset H.
        """
        self.trace_count += 1
        episode = self._prepare(data)
        variables = self.trainable_variables
        query_count, num_batches, batch = self._query_batches(episode)
        support_size = tf.shape(episode["support_labels"])[0]
        mapper = SupportMapper(self.lite_config, support_size, training=True, seed=self.subset_seed)
        if mapper_hook is not None:
            mapper_hook(mapper)

        def batch_gradients(index):
            images, labels = batch(index)
            with tf.GradientTape() as tape:
                mapper.tape = tape
                loss, correct = self._score_batch(episode, mapper, images, labels, query_count, True)
                scaled_loss = loss * mapper.loss_scale
            gradients = tape.gradient(scaled_loss, variables,
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
            mapper.tape = None
            return loss, correct, [tf.convert_to_tensor(g) for g in gradients]

        # The first batch runs outside the loop so its no-gradient support pass is cached for the rest.
        loss, correct, gradients = batch_gradients(0)
        if self.query_batch_size is None:  # one batch: no loop to trace
            return loss, correct / tf.cast(query_count, tf.float32), gradients

        def body(index, loss, correct, gradients):
            batch_loss, batch_correct, batch_grads = batch_gradients(index)
            return (index + 1, loss + batch_loss, correct + batch_correct,
                    [g + bg for g, bg in zip(gradients, batch_grads)])

        _, loss, correct, gradients = tf.while_loop(
            lambda index, *_: index < num_batches, body, (tf.constant(1), loss, correct, gradients),
            parallel_iterations=1)
        return loss, correct / tf.cast(query_count, tf.float32), gradients

    def train_step(self, data):
        loss, accuracy, gradients = self.episode_gradients(data)
        # Data dependency: keeps the optimizer's iteration count exact when an iterator runs out.
        with tf.control_dependencies([loss]):
            self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))
        logs = self._update_metrics(loss, accuracy)
        # This episode's size, for TensorBoard (lite_tf.callbacks.EpisodeStatistics).
        episode = unpack_episode(data)
        logs.update(way=tf.cast(episode["way"], tf.float32),
                    support_size=tf.cast(tf.shape(episode["support_labels"])[0], tf.float32),
                    query_size=tf.cast(tf.shape(episode["query_labels"])[0], tf.float32))
        return logs

    def _update_metrics(self, loss, accuracy):
        # The control dependency matters in graph mode: a Mean's count update does not otherwise
        # depend on the data, so Keras's last call on an exhausted iterator would still bump it.
        with tf.control_dependencies([loss, accuracy]):
            self.loss_tracker.update_state(loss)
            self.accuracy_tracker.update_state(accuracy)
        return {"loss": self.loss_tracker.result(), "accuracy": self.accuracy_tracker.result()}

    def evaluate_episode(self, data):
        """(loss, accuracy) of one episode with the support set mapped in inference mode."""
        self.trace_count += 1
        episode = self._prepare(data)
        query_count, num_batches, batch = self._query_batches(episode)
        mapper = SupportMapper(self.lite_config, tf.shape(episode["support_labels"])[0], training=False)

        def batch_score(index):
            images, labels = batch(index)
            return self._score_batch(episode, mapper, images, labels, query_count, False)

        loss, correct = batch_score(0)
        if self.query_batch_size is None:
            return loss, correct / tf.cast(query_count, tf.float32)

        def body(index, loss, correct):
            batch_loss, batch_correct = batch_score(index)
            return index + 1, loss + batch_loss, correct + batch_correct

        _, loss, correct = tf.while_loop(lambda index, *_: index < num_batches, body,
                                         (tf.constant(1), loss, correct), parallel_iterations=1)
        return loss, correct / tf.cast(query_count, tf.float32)

    def test_step(self, data):
        return self._update_metrics(*self.evaluate_episode(data))

    def predict_step(self, data):
        """Query logits of one episode (inference mapping)."""
        episode = self._prepare(data)
        mapper = SupportMapper(self.lite_config, tf.shape(episode["support_labels"])[0], training=False)
        mapper.start_batch()
        return self.learner(episode["support_images"], episode["support_labels"],
                            to_float_images(episode["query_images"]), episode["way"], mapper=mapper, training=False)

    def call(self, data, training=False):
        return self.predict_step(data)

    def compile(self, optimizer="adam", jit_compile=False, **kwargs):
        """Like keras.Model.compile; XLA is off by default because episode shapes vary.

        The optimizer's slots are created here: created inside the first traced step instead, they
        would make tf.function trace the step a second time.
        """
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        if not self.optimizer.built:
            self.optimizer.build(self.trainable_variables)
