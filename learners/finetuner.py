"""FineTuner: the transfer-learning baseline. Fits a fresh linear head on frozen support features.

At test time (``call`` in evaluation, and ``personalize``) it embeds the support set once, then runs
``steps`` Adam steps of softmax cross-entropy on a zero-initialised linear head. The steps are
written out with their closed-form gradients inside a ``tf.while_loop``, so the fit works in graph
mode with dynamic way and support size, and stays differentiable: with ``backbone_trainable=True``
the EpisodicModel can meta-train the backbone through the fit (with LITE as for any learner).
``personalize`` can additionally tune the FiLM parameters of a FiLM backbone (``tune_film``),
back-propagating through the backbone on the whole support set each step. Each personalisation
records its wall-clock time and an estimate of its multiply-accumulates in
``last_personalization_cost``.
"""
from __future__ import annotations

import time
from typing import Union

import keras
import tensorflow as tf

from lite_tf.backbones.film import FilmConstants, call_backbone, film_sites, identity_film
from lite_tf.clips import clip_inputs, clip_length_of, pool_clips, pool_output
from lite_tf.errors import ConfigError
from lite_tf.macs import image_macs
from lite_tf.heads import LinearHead, linear_logits
from lite_tf.images import to_float_images
from lite_tf.learner import Learner
from lite_tf.registry import register_learner

ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-8


def fit_linear_head(features, labels, way, steps: int, learning_rate: float, weight_decay: float = 0.0):
    """(weights [K, D], biases [K]) after ``steps`` Adam steps from zero on mean cross-entropy."""
    features = tf.cast(features, tf.float32)
    count = tf.cast(tf.shape(features)[0], tf.float32)
    targets = tf.one_hot(labels, way)
    dim = tf.shape(features)[1]
    zeros_w = tf.zeros(tf.stack([way, dim]))
    zeros_b = tf.zeros(tf.reshape(way, [1]))
    state = (zeros_w, zeros_b, zeros_w, zeros_b, zeros_w, zeros_b)  # params, first and second moments

    def body(step, weights, biases, m_w, m_b, v_w, v_b):
        logits = tf.matmul(features, weights, transpose_b=True) + biases
        error = (tf.nn.softmax(logits) - targets) / count  # d(mean CE)/d logits
        grad_w = tf.matmul(error, features, transpose_a=True) + weight_decay * weights
        grad_b = tf.reduce_sum(error, 0)
        t = tf.cast(step + 1, tf.float32)
        new = []
        for param, m, v, g in ((weights, m_w, v_w, grad_w), (biases, m_b, v_b, grad_b)):
            m = ADAM_BETA_1 * m + (1 - ADAM_BETA_1) * g
            v = ADAM_BETA_2 * v + (1 - ADAM_BETA_2) * tf.square(g)
            m_hat, v_hat = m / (1 - ADAM_BETA_1 ** t), v / (1 - ADAM_BETA_2 ** t)
            # epsilon inside the root keeps the step differentiable where a gradient is exactly zero
            new.append((param - learning_rate * m_hat / tf.sqrt(v_hat + ADAM_EPSILON ** 2), m, v))
        (weights, m_w, v_w), (biases, m_b, v_b) = new
        return step + 1, weights, biases, m_w, m_b, v_w, v_b

    result = tf.while_loop(lambda step, *_: step < steps, body, (tf.constant(0), *state))
    return result[1], result[2]


@register_learner("finetuner")
class FineTuner(Learner):
    """Linear-head fine-tuning on any registered backbone.

    Args:
      backbone: registered backbone name or a built model (FiLM or not).
      steps: optimiser steps of the head fit (and of FiLM tuning in ``personalize``).
      learning_rate: Adam learning rate of the head (and FiLM) fit.
      weight_decay: L2 penalty on the head weights.
      tune_film: in ``personalize``, also optimise the FiLM parameters (needs a FiLM backbone).
      backbone_trainable: let meta-training update the backbone (through the differentiable fit).
      bn_training: batch norm in training mode while meta-training (breaks LITE exactness).
    """

    def __init__(self, backbone: Union[str, keras.Model] = "efficientnet_b0", steps: int = 50,
                 learning_rate: float = 0.1, weight_decay: float = 0.0, tune_film: bool = False,
                 backbone_trainable: bool = False, bn_training: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"FineTuner steps must be a positive integer; got {steps!r}.")
        self.backbone_spec, self.steps, self.learning_rate = backbone, steps, float(learning_rate)
        self.weight_decay, self.tune_film = float(weight_decay), tune_film
        self.backbone_trainable, self.bn_training = backbone_trainable, bn_training
        self.last_personalization_cost = None

    def build_for(self, image_size: int) -> None:
        self.backbone = self.build_backbone(self.backbone_spec, image_size)
        if self.tune_film and not film_sites(self.backbone):
            raise ConfigError(f"FineTuner(tune_film=True) needs a FiLM backbone; {self.backbone.name!r} has no "
                             f"FiLM sites.")
        self.backbone.trainable = self.backbone_trainable
        self.image_size = image_size
        self.built = True

    def features(self, images, film=None, training=False):
        return call_backbone(self.backbone, images, film, training=bool(training and self.bn_training))

    def call(self, support_images, support_labels, query_images, way, mapper, training=False):
        support, query = mapper.map_with_queries(lambda x: self.features(x, training=training), support_images,
                                                 query_images, joint=not (training and self.bn_training))
        weights, biases = fit_linear_head(support, support_labels, way, self.steps, self.learning_rate,
                                          self.weight_decay)
        return linear_logits(query, weights, biases)

    def _tune_film(self, images, labels, way):
        """Joint Adam fit of FiLM parameters and head on the whole support set; returns (film, W, b)."""
        film = [(tf.Variable(g), tf.Variable(b)) for g, b in identity_film(self.backbone)]
        dim = int(self.backbone.outputs[0].shape[-1])
        weights, biases = tf.Variable(tf.zeros([way, dim])), tf.Variable(tf.zeros([way]))
        variables = [v for pair in film for v in pair] + [weights, biases]
        optimizer = keras.optimizers.Adam(self.learning_rate)
        images = to_float_images(images)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                logits = linear_logits(pool_clips(self.features)(images, film), weights, biases)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
                loss += 0.5 * self.weight_decay * tf.reduce_sum(tf.square(weights))
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

        for _ in range(self.steps):
            step()
        return [(g.value(), b.value()) for g, b in film], weights.value(), biases.value()

    def personalize(self, support_images, support_labels, way) -> keras.Model:
        start = time.perf_counter()
        images = tf.convert_to_tensor(support_images)
        labels = tf.convert_to_tensor(support_labels, tf.int32)
        clip_length = clip_length_of(images)
        way, count = int(way), int(images.shape[0]) * (clip_length or 1)  # frames embedded
        if self.tune_film:
            film, weights, biases = self._tune_film(images, labels, way)
            # forward + backward (about twice the forward) through the backbone, every step
            macs = 3 * self.steps * count * image_macs(lambda x: self.features(x, film), self.image_size)
        else:
            film = identity_film(self.backbone) or None
            support = self.embed_support(lambda x: self.features(x, film), images)
            weights, biases = fit_linear_head(support, labels, way, self.steps, self.learning_rate,
                                              self.weight_decay)
            dim = int(support.shape[-1])
            macs = (count * image_macs(lambda x: self.features(x, film), self.image_size)
                    + 3 * self.steps * int(images.shape[0]) * dim * way)  # the head sees one row per example
        head = LinearHead.from_weights(weights, biases, name="linear_classifier")
        inputs, frames = clip_inputs(self.image_size, clip_length)
        if film:
            constants = FilmConstants([int(g.shape[-1]) for g, _ in film], name="task_film")
            constants.set_film(film)
            features = self.backbone([frames, *constants(frames)], training=False)
        else:
            features = self.backbone(frames, training=False)
        features = pool_output(features, clip_length)
        model = keras.Model(inputs, head(features), name=f"personalized_{self.name}")
        self.last_personalization_cost = {"seconds": time.perf_counter() - start, "macs": int(macs),
                                          "steps": self.steps}
        return model
