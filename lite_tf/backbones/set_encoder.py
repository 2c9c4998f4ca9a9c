"""The CNAPs set encoder: per-image embedding, averaged over the support set into a task embedding.

Only the per-image part is a network; the mean is taken by the learner through :func:`task_embedding`,
mapped through LITE in training so the set encoder's back-propagation is subsampled like the
feature extractor's.

Batch norm (``batch_norm``). The official LITE code (cambridge-mlg/LITE ``src/run.py`` ``init_model``:
"set encoder is always in train mode") and the official ORBIT code (``_set_model_state`` at tag
results-neurips21-paper) never put the set encoder in eval mode: its batch norms always normalise with
the mean and biased variance of the images they are given, in training and at test time, and the
moving statistics in a checkpoint are never used. ``'context'`` (the default) does that, and never
updates the moving statistics (a Keras ``BatchNormalization(training=True)`` would); ``'moving'``
normalises with the moving statistics (Keras inference mode, lite_tf's behaviour before; the
``official_lite_simple_cnaps_224.npz`` eval-mode fixture).

With batch statistics the chunks the context set is encoded in matter; :func:`task_embedding`
forms them as the official LITE code does (``context_chunk``, its ``--batch_size`` of 40):
- evaluation (``build_task_representation_by_batch``): ceil(N / chunk) chunks of ``chunk`` images; a
  chunk that would end one image short of the set takes that image too, so when N % chunk == 1 and
  N > chunk the last image is encoded twice, inside that chunk and alone in a final chunk, and the
  task embedding is the mean of those N + 1 codes (as the official code runs);
- LITE training (``train_lite``): the back-propagated subset H is encoded as one batch (its own
  statistics); the other images come from the same chunks as above, without the repeated code;
- full back-propagation (``mode='full'``, the official ``train_task``): the whole set as one batch.
``exact`` mode differentiates the function whose chunks are the mapper's ``chunk_size`` (the official
code has no such mode). Official ORBIT encodes clips in batches of 256 (2048 frames), which frame
counts divisible by 8 never leave one image short of: ``context_chunk=2048`` there.
"""
from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from lite_tf.backbones.input_normalization import check_input_normalization, normalize_input
from lite_tf.errors import ConfigError
from lite_tf.images import to_float_images
from lite_tf.registry import register_backbone

BATCH_NORM_EPSILON = 1e-5  # torch.nn.BatchNorm2d's default, used by the official set encoder
BATCH_NORM_MOMENTUM = 0.9  # = PyTorch momentum 0.1
BATCH_NORM_MODES = ("context", "moving")
CONTEXT_CHUNK = 40  # the official LITE --batch_size: context images encoded at a time


class BatchNormalization(keras.layers.BatchNormalization):
    """The set encoder's ``'context'`` batch norm: always normalises with the batch's own mean and
    biased variance (PyTorch's train-mode ``BatchNorm2d``), whatever ``training`` says, and never
    updates the moving statistics: they stay weights (checkpoints, imports) that a forward pass neither
    reads nor changes.

    It keeps Keras's class name because weights files address layers by class name: a run's
    ``.weights.h5`` then loads whichever ``batch_norm`` mode the run is rebuilt with (and runs saved
    before this mode existed load too).
    """

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            raise ConfigError(f"{self.name}: the set encoder's batch norm takes no mask.")
        if len(inputs.shape) == 4 and self.axis % 4 == 3:
            return self._fused(inputs)
        x = keras.ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        axes = [axis for axis in range(len(x.shape)) if axis != self.axis % len(x.shape)]
        mean = keras.ops.mean(x, axis=axes)
        variance = keras.ops.mean(keras.ops.square(x - mean), axis=axes)  # two-pass: exact for large means
        outputs = keras.ops.batch_normalization(
            x, mean, variance, axis=self.axis, epsilon=self.epsilon,
            offset=keras.ops.cast(self.beta, x.dtype) if self.center else None,
            scale=keras.ops.cast(self.gamma, x.dtype) if self.scale else None)
        return keras.ops.cast(outputs, self.compute_dtype)

    def _fused(self, inputs):
        """NHWC maps: TensorFlow's fused batch norm in training mode (the biased batch variance, as
        above). Its gradient needs only the input and two per-channel vectors, where the composed
        ops above keep about five full-size intermediates per layer for back-propagation: at 224 px
        the set encoder's back-propagated images cost less than half the memory."""
        x = tf.convert_to_tensor(inputs)
        if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            x = tf.cast(x, tf.float32)
        channels = x.shape[-1]
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
        outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(x, scale, offset, epsilon=self.epsilon,
                                                         data_format="NHWC", is_training=True)
        return keras.ops.cast(outputs, self.compute_dtype)


@register_backbone("set_encoder")
def set_encoder(image_size: int, filters: int = 64, blocks: int = 5, name: str = "set_encoder",
                input_normalization: Optional[str] = None, batch_norm: str = "context",
                context_chunk: int = CONTEXT_CHUNK) -> keras.Model:
    """``blocks`` x [conv3x3(filters) with bias, batch norm, ReLU, max-pool 2], global average pool.

    The official CNAPs / LITE set encoder: convolutions padded by 1 (= 'same' at stride 1), batch norm
    eps 1e-5, and floor ('valid') pooling, so 84 px images give 42, 21, 10, 5, 2 px maps exactly as
    the official code. Images need at least 2**blocks px (32 px for the default 5 blocks).
    ``input_normalization='imagenet'`` first maps [-1, 1] images to ImageNet-normalised pixels, as the
    official ORBIT code feeds its set encoder (LITE's feeds [-1, 1]: the default None).
    ``batch_norm``: ``'context'`` (batch statistics of the context images, as the official code runs;
    default) or ``'moving'`` (moving statistics); ``context_chunk``: context images per batch-statistics
    chunk (see the module docstring). The model records both as ``batch_norm`` / ``context_chunk``.
    """
    check_input_normalization(input_normalization, "set_encoder")
    if blocks < 1 or filters < 1:
        raise ConfigError(f"set_encoder needs blocks >= 1 and filters >= 1; got blocks={blocks}, filters={filters}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"set_encoder needs a positive integer image_size; got {image_size!r}.")
    if image_size < 2 ** blocks:
        raise ConfigError(f"set_encoder with {blocks} floor max-pools needs images of at least {2 ** blocks} px; "
                          f"got image_size={image_size} (use fewer blocks for smaller images).")
    if batch_norm not in BATCH_NORM_MODES:
        raise ConfigError(f"backbones.set_encoder.batch_norm must be one of {BATCH_NORM_MODES}; got {batch_norm!r}.")
    if isinstance(context_chunk, bool) or not isinstance(context_chunk, int) or context_chunk < 1:
        raise ConfigError(f"backbones.set_encoder.context_chunk must be a positive integer; got {context_chunk!r}.")
    norm = BatchNormalization if batch_norm == "context" else keras.layers.BatchNormalization
    inputs = keras.Input((image_size, image_size, 3), name="images")
    x = normalize_input(inputs, input_normalization)
    for block in range(blocks):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"conv{block}")(x)
        x = norm(epsilon=BATCH_NORM_EPSILON, momentum=BATCH_NORM_MOMENTUM, name=f"bn{block}")(x)
        x = keras.layers.ReLU(name=f"relu{block}")(x)
        x = keras.layers.MaxPooling2D(2, padding="valid", name=f"pool{block}")(x)
    outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    model = keras.Model(inputs, outputs, name=name)
    model.batch_norm, model.context_chunk = batch_norm, context_chunk
    # Remat (lite_tf/remat.py) cuts the set encoder after the first block's pool only: its gradient
    # comes last (through the task embedding, after every FiLM-adapted pass), so what its forward pass
    # keeps is alive through all the other back-propagation. The planned cuts kept a full-size map of
    # the first block; this keeps a quarter-size one, and the first block is still recomputed alone
    # (recomputed whole, the set encoder's own back-propagation peaked higher at large h).
    model.remat_cut_after = ("pool0",)
    return model


def context_chunk(encoder) -> Optional[int]:
    """The batch-statistics chunk of ``encoder`` (None when no layer uses batch statistics)."""
    layers = encoder._flatten_layers(include_self=False) if hasattr(encoder, "_flatten_layers") else []
    if not any(isinstance(layer, BatchNormalization) for layer in layers):
        return None
    return getattr(encoder, "context_chunk", CONTEXT_CHUNK)


def context_chunk_bounds(count, chunk: int):
    """(starts, ends) of the chunks the official LITE code encodes ``count`` context images in
    (``FewShotClassifier._get_batch_indices`` over ceil(count / chunk) chunks, see the module doc)."""
    count = tf.convert_to_tensor(count, tf.int32)
    starts = tf.range((count + chunk - 1) // chunk) * chunk
    ends = starts + chunk
    ends = tf.minimum(tf.where(tf.equal(ends, count - 1), count, ends), count)
    return starts, ends


def context_codes(fn, images, chunk: int) -> tf.Tensor:
    """``fn`` over the official chunks of ``images`` (uint8 or [-1, 1]), concatenated: [N, D], or
    [N + 1, D] when the last image is encoded twice (N % chunk == 1, N > chunk)."""
    images = tf.convert_to_tensor(images)
    starts, ends = context_chunk_bounds(tf.shape(images)[0], chunk)
    encode = lambda index: fn(to_float_images(images[starts[index]:ends[index]]))
    first = encode(0)
    codes = tf.TensorArray(first.dtype, size=tf.size(starts), infer_shape=False,
                           element_shape=tf.TensorShape([None]).concatenate(first.shape[1:])).write(0, first)
    _, codes = tf.while_loop(lambda index, _: index < tf.size(starts),
                             lambda index, codes: (index + 1, codes.write(index, encode(index))),
                             (tf.constant(1), codes), parallel_iterations=1)
    result = codes.concat()
    result.set_shape(tf.TensorShape([None]).concatenate(first.shape[1:]))
    return result


def task_embedding(encoder: keras.Model, support_images, mapper=None, training: bool = False) -> tf.Tensor:
    """[D] task embedding: the mean of the per-image set-encoder codes, mapped through ``mapper``
    when given; with batch statistics, over the official chunks (module docstring)."""
    fn = lambda images: encoder(images, training=training)
    chunk = context_chunk(encoder)
    if chunk is None:
        per_image = mapper.map(fn, support_images) if mapper is not None else fn(to_float_images(support_images))
        return tf.reduce_mean(per_image, axis=0)
    if mapper is None or mapper.mode == "inference":
        return tf.reduce_mean(context_codes(fn, support_images, chunk), axis=0)
    if mapper.mode == "exact" and mapper.config.jit_compile:
        raise ConfigError("LiteConfig.jit_compile pads the exact mode's chunks, which would change the set "
                          "encoder's batch statistics: bind LiteConfig.jit_compile = False or "
                          "backbones.set_encoder.batch_norm = 'moving'.")
    support_size = tf.shape(support_images)[0]
    rest = lambda per_image, images: context_codes(per_image, images, chunk)[:support_size]
    return tf.reduce_mean(mapper.map(fn, support_images, chunked=rest), axis=0)
