"""A personalised recogniser as a ``tf.Module`` with two signatures, for SavedModel and TFLite.

``personalize(context_images uint8 [N, S, S, 3], context_labels int32 [N]) -> state`` runs the
learner's gradient-free adaptation once; ``classify(images uint8 [B, S, S, 3], **state) -> logits``
scores camera frames against it. The state is a fixed set of named tensors sized to ``max_way``
classes (TFLite has static shapes per signature output): a class slot without context images is
masked by ``class_mask`` and its logit is ``MASKED_LOGIT``. The image conversion (uint8 [0, 255] to
the [-1, 1] every backbone expects, lite_tf/images.py) is inside, so a phone hands in pixels; the
resize to S is the caller's.

Personalisation embeds the context set in chunks of ``chunk_size`` images inside a ``tf.while_loop``
(the learner's personalisation chunk by default: the run's LiteConfig.chunk_size), so activation memory
is one chunk's whatever N is; only the [N, D] features are kept (Simple CNAPs needs them centred for
its covariances).

Bad input is refused inside the graph (``tf.debugging`` asserts: no context image, more than
``max_context`` images, a label outside [0, max_way), a class below the largest label with no
image), so a SavedModel signature raises InvalidArgumentError naming the problem. The TFLite
converter drops asserts; ``lite_tf.export.runner`` checks the same rules in Python before invoking
the interpreter (the SavedModel signature itself also refuses a wrong image size or dtype).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict

import numpy as np
import tensorflow as tf

from lite_tf.backbones.film import call_backbone, film_sites
from lite_tf.errors import ConfigError
from lite_tf.export.linalg import precision_logits, spd_inverse
from lite_tf.heads import class_statistics, linear_logits, negative_squared_distances, regularized_covariances
from lite_tf.images import to_float_images

MASKED_LOGIT = float(np.finfo(np.float32).min)  # logit of a class slot the context did not fill


def _counts(labels, max_way):
    return tf.reduce_sum(tf.one_hot(labels, max_way, dtype=tf.float32), axis=0)


def _class_sums(features, labels, max_way):
    """[max_way, D] sum of each class's features (a matmul: TFLite builtin, no segment op)."""
    return tf.matmul(tf.one_hot(labels, max_way, dtype=tf.float32), features, transpose_a=True)


class _Adapter:
    """One learner's state and logits; the recogniser does the checks, chunking and masking."""

    def __init__(self, learner, max_way: int):
        self.learner, self.max_way = learner, max_way

    def state_spec(self) -> "OrderedDict[str, tf.TensorSpec]":
        raise NotImplementedError

    def adapt(self, recognizer, images, labels, way) -> Dict[str, tf.Tensor]:
        raise NotImplementedError

    def logits(self, images, state) -> tf.Tensor:
        raise NotImplementedError


class _ProtoNets(_Adapter):
    def state_spec(self):
        dim = int(self.learner.backbone.outputs[0].shape[-1])
        return OrderedDict(prototypes=tf.TensorSpec([self.max_way, dim], tf.float32, "prototypes"))

    def adapt(self, recognizer, images, labels, way):
        sums = recognizer.chunked_sum(lambda x, y: _class_sums(self.learner.features(x), y, self.max_way),
                                      images, labels, self.state_spec()["prototypes"].shape)
        return {"prototypes": sums / tf.expand_dims(tf.maximum(_counts(labels, self.max_way), 1.0), -1)}

    def logits(self, images, state):
        return negative_squared_distances(self.learner.features(images), state["prototypes"])


class _Film(_Adapter):
    """Shared by the CNAPs family: FiLM parameters from the mean set-encoder code."""

    def film_spec(self):
        spec = OrderedDict()
        for index, (_, channels) in enumerate(film_sites(self.learner.backbone)):
            for part in ("gamma", "beta"):
                name = f"film_{index}_{part}"
                spec[name] = tf.TensorSpec([1, channels], tf.float32, name)
        return spec

    def film(self, recognizer, images, labels):
        encoder = self.learner.set_encoder
        total = recognizer.chunked_sum(lambda x, _: tf.reduce_sum(encoder(x, training=False), 0), images, labels,
                                       encoder.outputs[0].shape[-1:])
        film = self.learner.film_generator(total / tf.cast(tf.shape(images)[0], tf.float32))
        state = OrderedDict()
        for index, (gamma, beta) in enumerate(film):
            state[f"film_{index}_gamma"], state[f"film_{index}_beta"] = gamma, beta
        return film, state

    @staticmethod
    def film_of(state):
        count = sum(1 for name in state if name.startswith("film_") and name.endswith("_gamma"))
        return [(state[f"film_{i}_gamma"], state[f"film_{i}_beta"]) for i in range(count)]

    def features(self, images, film):
        return tf.cast(call_backbone(self.learner.backbone, images, film), tf.float32)


class _SimpleCnaps(_Film):
    """State: FiLM, class means and precision matrices P_c = Q_c^-1 (builtin-op sweep, linalg.py)."""

    def state_spec(self):
        dim = self.learner.feature_dim
        return OrderedDict(**self.film_spec(),
                           means=tf.TensorSpec([self.max_way, dim], tf.float32, "means"),
                           precisions=tf.TensorSpec([self.max_way, dim, dim], tf.float32, "precisions"))

    def adapt(self, recognizer, images, labels, way):
        film, state = self.film(recognizer, images, labels)
        support = recognizer.chunked_features(lambda x: self.features(x, film), images, self.learner.feature_dim)
        # Every slot, filled or not (an empty slot's Q is S_task + I): static shapes keep LiteRT's
        # XNNPACK delegate able to plan the batched matmuls; the mask hides the empty slots' logits.
        means, counts, class_cov, task_cov = class_statistics(support, labels, self.max_way,
                                                              self.learner.one_shot_covariance)
        state["means"] = means
        state["precisions"] = spd_inverse(regularized_covariances(counts, class_cov, task_cov))
        return state

    def logits(self, images, state):
        features = self.features(images, self.film_of(state))
        return precision_logits(features, state["means"], state["precisions"])


class _Linear(_Adapter):
    def linear_spec(self, dim):
        return OrderedDict(weights=tf.TensorSpec([self.max_way, dim], tf.float32, "weights"),
                           biases=tf.TensorSpec([self.max_way], tf.float32, "biases"))

    def padded(self, state, weights, biases, way):
        state["weights"] = tf.pad(weights, [[0, self.max_way - way], [0, 0]])
        state["biases"] = tf.pad(biases, [[0, self.max_way - way]])
        return state


class _Cnaps(_Film, _Linear):
    """State: FiLM and the hyper-network's classifier weights and biases."""

    def state_spec(self):
        return OrderedDict(**self.film_spec(), **self.linear_spec(self.learner.feature_dim))

    def adapt(self, recognizer, images, labels, way):
        film, state = self.film(recognizer, images, labels)
        sums = recognizer.chunked_sum(lambda x, y: _class_sums(self.features(x, film), y, self.max_way),
                                      images, labels, [self.max_way, self.learner.feature_dim])
        means = sums / tf.expand_dims(tf.maximum(_counts(labels, self.max_way), 1.0), -1)
        state["weights"], state["biases"] = self.learner.hypernet(means)  # every slot: static shapes
        return state

    def logits(self, images, state):
        return linear_logits(self.features(images, self.film_of(state)), state["weights"], state["biases"])


class _FineTuner(_Linear):
    """State: the linear head after the learner's Adam steps (closed-form gradients: no training
    signature needed). FiLM tuning (``tune_film``) back-propagates through the backbone and is refused."""

    def __init__(self, learner, max_way):
        if learner.tune_film:
            raise ConfigError("FineTuner(tune_film=True) personalises by back-propagating through the backbone, "
                              "which needs TFLite training signatures; export it with tune_film=False.")
        super().__init__(learner, max_way)

    def state_spec(self):
        return self.linear_spec(int(self.learner.backbone.outputs[0].shape[-1]))

    def features(self, images):
        return tf.cast(self.learner.features(images), tf.float32)

    def adapt(self, recognizer, images, labels, way):
        from lite_tf.learners.finetuner import fit_linear_head

        support = recognizer.chunked_features(self.features, images, self.state_spec()["weights"].shape[-1])
        weights, biases = fit_linear_head(support, labels, way, self.learner.steps, self.learner.learning_rate,
                                          self.learner.weight_decay)
        return self.padded(OrderedDict(), weights, biases, way)

    def logits(self, images, state):
        return linear_logits(self.features(images), state["weights"], state["biases"])


ADAPTERS = {"ProtoNets": _ProtoNets, "SimpleCnaps": _SimpleCnaps, "Cnaps": _Cnaps, "FineTuner": _FineTuner}


def adapter_for(learner, max_way: int) -> _Adapter:
    """The export adapter of a learner class (or of its nearest registered base class)."""
    for cls in type(learner).__mro__:
        if cls.__name__ in ADAPTERS:
            return ADAPTERS[cls.__name__](learner, max_way)
    raise ConfigError(f"No on-device export for learner {type(learner).__name__}; exportable: "
                      f"{', '.join(ADAPTERS)}.")


class Recognizer(tf.Module):
    """``personalize`` and ``classify`` of a built learner (see the module docstring).

    Args:
      learner: a built lite_tf learner (``build_for`` called, weights loaded).
      image_size: S, the square frame size the learner was built for.
      max_way: class slots in the state (labels must be in [0, max_way)).
      max_context: most context images one personalisation accepts.
      chunk_size: context images embedded at a time (bounds activation memory).
    """

    def __init__(self, learner, image_size: int, max_way: int, max_context: int, chunk_size: int):
        super().__init__(name="recognizer")
        for name, value in (("max_way", max_way), ("max_context", max_context), ("chunk_size", chunk_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"export {name} must be a positive integer; got {value!r}.")
        self.learner, self.image_size = learner, int(image_size)
        self.max_way, self.max_context, self.chunk_size = max_way, max_context, chunk_size
        self.adapter = adapter_for(learner, max_way)
        self.state_spec = self.adapter.state_spec()
        self.state_spec["class_mask"] = tf.TensorSpec([max_way], tf.float32, "class_mask")
        images = tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.uint8)
        self.personalize = tf.function(self._personalize, input_signature=[
            tf.TensorSpec(images.shape, tf.uint8, "context_images"), tf.TensorSpec([None], tf.int32, "context_labels")])
        self.classify = tf.function(self._classify, input_signature=[
            tf.TensorSpec(images.shape, tf.uint8, "images"), *self.state_spec.values()])

    # ------------------------------------------------------------------ chunked maps
    def _chunks(self, images):
        count = tf.shape(images)[0]
        return count, (count + self.chunk_size - 1) // self.chunk_size

    def chunked_sum(self, fn, images, labels, shape):
        """Sum over chunks of ``fn(float chunk, chunk labels)``, a float32 tensor of static ``shape``."""
        count, chunks = self._chunks(images)

        def body(index, total):
            start = index * self.chunk_size
            stop = tf.minimum(start + self.chunk_size, count)
            return index + 1, total + fn(to_float_images(images[start:stop]), labels[start:stop])

        return tf.while_loop(lambda index, _: index < chunks, body, (tf.constant(0), tf.zeros(shape)))[1]

    def chunked_features(self, fn, images, dim: int):
        """[N, dim] ``fn`` over chunks, concatenated (only the features outlive a chunk).

        The loop starts from the first chunk's features, not from an empty [0, dim] tensor: TFLite
        would take the empty tensor's static shape for the loop variable.
        """
        count, chunks = self._chunks(images)
        first = fn(to_float_images(images[:self.chunk_size]))

        def body(index, features):
            start = index * self.chunk_size
            stop = tf.minimum(start + self.chunk_size, count)
            return index + 1, tf.concat([features, fn(to_float_images(images[start:stop]))], 0)

        return tf.while_loop(lambda index, _: index < chunks, body, (tf.constant(1), first),
                             shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, dim])))[1]

    # ------------------------------------------------------------------ signatures
    def _check_size(self, images, name):
        size = self.image_size
        return tf.debugging.assert_equal(tf.shape(images)[1:], tf.constant([size, size, 3]),
                                         message=f"{name} must be [N, {size}, {size}, 3] uint8 pixels")

    def _check(self, images, labels, way, counts):
        count = tf.shape(images)[0]
        return [
            self._check_size(images, "personalize: context_images"),
            tf.debugging.assert_positive(count, message="personalize: no context image"),
            tf.debugging.assert_less_equal(count, self.max_context,
                                           message=f"personalize: more context images than max_context={self.max_context}"),
            tf.debugging.assert_equal(tf.shape(labels)[0], count,
                                      message="personalize: context_labels must have one label per context image"),
            tf.debugging.assert_non_negative(labels, message="personalize: a context label is negative"),
            tf.debugging.assert_less(labels, self.max_way,
                                     message=f"personalize: a context label is >= max_way={self.max_way}"),
            tf.debugging.assert_positive(counts[:way], message="personalize: a class below the largest label "
                                                                "has no context image (labels must be 0..way-1)"),
        ]

    def _personalize(self, context_images, context_labels):
        way = tf.reduce_max(context_labels) + 1
        counts = _counts(context_labels, self.max_way)
        with tf.control_dependencies(self._check(context_images, context_labels, way, counts)):
            context_images, context_labels = tf.identity(context_images), tf.identity(context_labels)
        state = self.adapter.adapt(self, context_images, context_labels, way)
        state["class_mask"] = tf.cast(tf.range(self.max_way) < way, tf.float32)
        return dict(state)

    def _classify(self, images, *state):
        with tf.control_dependencies([self._check_size(images, "classify: images")]):
            images = tf.identity(images)
        values = dict(zip(self.state_spec, state))
        logits = self.adapter.logits(to_float_images(images), values)
        mask = values.get("class_mask")
        return {"logits": logits if mask is None else tf.where(mask[None, :] > 0, logits, MASKED_LOGIT)}
