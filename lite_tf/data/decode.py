"""Encoded image bytes -> square pixel tensors, shared by every pipeline (Meta-Dataset, ORBIT).

One image: :func:`decode_image` (decode, resize to ``image_size`` x ``image_size``, optional
augmentation, output dtype). Many: :func:`decode_batch`, a one-element ``tf.data.Dataset`` that
decodes in parallel and, if an image does not decode, fails naming it (TensorFlow's own decoder
error cannot say which file or record was bad).

Output: float32 in [-1, 1] (through ``lite_tf.images.scale_pixels``) or uint8 in [0, 255].

Resize methods (``method``):
- ``"bilinear"`` (default) and the other ``tf.image.resize`` methods (``"bicubic"``, ``"area"``,
  ``"lanczos3"``, ``"nearest"``, ...), with ``antialias``: TF2 resizing (half-pixel centres).
- ``"reference"``: bilinear with ``align_corners=True``, the resize of Google's Meta-Dataset
  decoder (TF1 ``resize_images``); pixel-identical to ``tf.compat.v1.image.resize(...,
  align_corners=True)`` on the same decoded image. Use it to see the pixels a model trained on the
  reference pipeline saw; it differs from ``"bilinear"`` by up to ~21/255 when upsampling.
- ``"pil_lanczos"`` / ``"pil_bilinear"``: PIL's ``Image.resize((s, s), Image.LANCZOS / BILINEAR)``
  (:func:`pil_resize`), in TensorFlow ops (no Python in the tf.data graph). The official LITE code
  resizes VTAB images with PIL's Lanczos (``src/tf_dataset_reader.py``) and SUN397 with torchvision's
  ``Resize``, which is PIL's bilinear on PIL images.
Every method leaves an image already at ``image_size`` x ``image_size`` unchanged (kernel weights
are 1 and 0 at a scale of 1), so there is no size check per image.

JPEG decoding is exact libjpeg output by default (``dct_method=""``); ``dct_method="INTEGER_FAST"``
is a faster, slightly different IDCT (not pixel-identical to other decoders). ``dct_method`` only
applies to JPEG; PNG, GIF and BMP decode the same either way.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from lite_tf.errors import ConfigError
from lite_tf.images import scale_pixels

REFERENCE = "reference"
PIL_FILTERS = ("pil_lanczos", "pil_bilinear")
RESIZE_METHODS = ("bilinear", REFERENCE, "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic",
                  "nearest", *PIL_FILTERS)
_PIL_PRECISION_BITS = 22  # Pillow's fixed-point coefficients for 8-bit images (32 - 8 - 2 bits)
DCT_METHODS = ("", "INTEGER_FAST", "INTEGER_ACCURATE")
OUTPUT_DTYPES = (tf.float32, tf.uint8)
# An augmentation: (pixels float32 [S, S, 3] in [0, 255], stateless seed [2] int64) -> same.
Augment = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
# What names an image in an error message: (title, [N] tensor) pairs, e.g. ("frames:", paths).
Names = Sequence[Tuple[str, tf.Tensor]]
_JPEG = b"\xff\xd8\xff"


def check_options(method: str = "bilinear", dtype=tf.float32, dct_method: str = "") -> tf.DType:
    """Checks decode options before anything is built; returns the output dtype as a ``tf.DType``."""
    if method not in RESIZE_METHODS:
        raise ConfigError(f"Resize method must be one of {RESIZE_METHODS}; got {method!r}.")
    if dct_method not in DCT_METHODS:
        raise ConfigError(f"dct_method must be one of {DCT_METHODS}; got {dct_method!r}.")
    try:
        dtype = tf.as_dtype(dtype)
    except TypeError:
        raise ConfigError(f"Image dtype must be float32 or uint8; got {dtype!r}.") from None
    if dtype not in OUTPUT_DTYPES:
        raise ConfigError(f"Image dtype must be float32 or uint8; got {dtype.name}.")
    return dtype


def decode_pixels(encoded: tf.Tensor, dct_method: str = "") -> tf.Tensor:
    """One encoded JPEG/PNG/GIF/BMP (scalar string) -> uint8 [H, W, 3] (greyscale made RGB)."""
    if dct_method:
        image = tf.cond(tf.equal(tf.strings.substr(encoded, 0, len(_JPEG)), _JPEG),
                        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method=dct_method),
                        lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))
    else:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize(image: tf.Tensor, image_size: int, method: str = "bilinear", antialias: bool = False) -> tf.Tensor:
    """uint8/float [H, W, 3] -> float32 [S, S, 3] pixel values in [0, 255] (not clipped for
    methods that overshoot: bicubic, lanczos)."""
    size = [image_size, image_size]
    if method in PIL_FILTERS:
        return pil_resize(image, image_size, method)
    if method == REFERENCE:
        return tf.cast(tf.compat.v1.image.resize(image, size, method=tf.compat.v1.image.ResizeMethod.BILINEAR,
                                                 align_corners=True), tf.float32)
    return tf.cast(tf.image.resize(image, size, method=method, antialias=antialias), tf.float32)


def _pil_kernel(method: str, x: tf.Tensor) -> tf.Tensor:
    """Pillow's filter at ``x`` (float64): Lanczos-3 (sinc(x) sinc(x / 3) on [-3, 3)) or the triangle."""
    if method == "pil_bilinear":
        return tf.maximum(1.0 - tf.abs(x), 0.0)
    sinc = lambda t: tf.where(tf.equal(t, 0.0), tf.ones_like(t), tf.sin(t * np.pi) / (t * np.pi))
    return tf.where((x >= -3.0) & (x < 3.0), sinc(x) * sinc(x / 3.0), tf.zeros_like(x))


def _pil_coefficients(in_size: tf.Tensor, out_size: int, method: str, fixed_point: bool) -> tf.Tensor:
    """[out_size, in_size] float64 resampling weights, as Pillow's ``precompute_coeffs`` (and, for
    8-bit images, ``normalize_coeffs_8bpc``: rounded to 22 fractional bits, half away from zero)."""
    support = 1.0 if method == "pil_bilinear" else 3.0
    in_size_f = tf.cast(in_size, tf.float64)
    scale = in_size_f / out_size
    filter_scale = tf.maximum(scale, 1.0)
    radius = support * filter_scale
    centers = (tf.range(out_size, dtype=tf.float64) + 0.5) * scale
    first = tf.maximum(tf.floor(centers - radius + 0.5), 0.0)  # C's (int) then the bound; same values
    last = tf.minimum(tf.floor(centers + radius + 0.5), in_size_f)
    inputs = tf.range(in_size, dtype=tf.float64)[None, :]
    inside = (inputs >= first[:, None]) & (inputs < last[:, None])
    weights = tf.where(inside, _pil_kernel(method, (inputs - centers[:, None] + 0.5) * (1.0 / filter_scale)), 0.0)
    total = tf.reduce_sum(weights, axis=1, keepdims=True)
    weights = tf.where(tf.equal(total, 0.0), weights, weights / total)
    if fixed_point:
        scaled = weights * float(1 << _PIL_PRECISION_BITS)
        weights = tf.sign(scaled) * tf.floor(tf.abs(scaled) + 0.5)
    return weights


def pil_resize(image: tf.Tensor, image_size: int, method: str = "pil_lanczos") -> tf.Tensor:
    """[H, W, C] -> float32 [S, S, C]: PIL's ``Image.resize((S, S), LANCZOS or BILINEAR)``.

    As Pillow's ``ImagingResample``: a horizontal pass, then a vertical one, each with the filter
    stretched by the downscaling factor (antialiasing). That is every Pillow up to 12 (the official
    LITE runs of 2021); Pillow 13 runs the vertical pass first when the height shrinks by more than
    twice what the width does (h - S > 2 (w - S)), which, as each pass rounds, moves some pixels of
    such tall images by a grey level or more. Integer images take PIL's 8-bit path (modes
    'L', 'RGB'): fixed-point weights, each pass rounded and clipped to 0..255, computed exactly in
    float64, so the result is PIL's pixels. Float images take PIL's mode 'F' path: float weights,
    float32 between passes, no rounding or clipping (``Image.convert`` from 'F' to 8 bits then clips
    and truncates: ``tf.floor(tf.clip_by_value(x, 0, 255))``).
    """
    if method not in PIL_FILTERS:
        raise ConfigError(f"pil_resize method must be one of {PIL_FILTERS}; got {method!r}.")
    fixed_point = image.dtype.is_integer
    shape = tf.shape(image)
    rows = _pil_coefficients(shape[0], image_size, method, fixed_point)
    columns = _pil_coefficients(shape[1], image_size, method, fixed_point)
    pixels = tf.cast(image, tf.float64)

    def finish_pass(values):
        if not fixed_point:
            return tf.cast(tf.cast(values, tf.float32), tf.float64)
        half = float(1 << (_PIL_PRECISION_BITS - 1))
        return tf.clip_by_value(tf.floor((values + half) / float(1 << _PIL_PRECISION_BITS)), 0.0, 255.0)

    pixels = finish_pass(tf.einsum("hwc,sw->hsc", pixels, columns))  # horizontal pass first
    pixels = finish_pass(tf.einsum("hsc,rh->rsc", pixels, rows))
    return tf.cast(pixels, tf.float32)


def to_output(pixels: tf.Tensor, dtype) -> tf.Tensor:
    """float pixel values in [0, 255] -> uint8 (rounded, clipped) or float32 in [-1, 1]."""
    if tf.as_dtype(dtype) == tf.uint8:
        return tf.cast(tf.round(tf.clip_by_value(pixels, 0.0, 255.0)), tf.uint8)
    return scale_pixels(pixels)


def decode_image(encoded: tf.Tensor, image_size: int, *, dtype=tf.float32, method: str = "bilinear",
                 antialias: bool = False, dct_method: str = "", augment: Optional[Augment] = None,
                 seed: Optional[tf.Tensor] = None, raw: bool = False) -> tf.Tensor:
    """One encoded image (scalar string) -> [image_size, image_size, 3] of ``dtype``.

    ``augment(pixels, seed)`` (pixels float32 [S, S, 3] in [0, 255]) runs after the resize.
    ``raw``: stop after the resize (float32 in [0, 255]; :func:`finish_pixels` does the rest).
    """
    pixels = resize(decode_pixels(encoded, dct_method), image_size, method, antialias)
    pixels.set_shape([image_size, image_size, 3])
    return pixels if raw else finish_pixels(pixels, dtype, augment, seed)


def finish_pixels(pixels: tf.Tensor, dtype, augment: Optional[Augment] = None,
                  seed: Optional[tf.Tensor] = None) -> tf.Tensor:
    """Resized pixels (float or uint8 [S, S, 3], values in [0, 255]) -> augmented, output ``dtype``."""
    pixels = tf.cast(pixels, tf.float32)
    if augment is not None:
        pixels = augment(pixels, seed)
    return to_output(pixels, dtype)


def finish_batch(pixels: tf.Tensor, *, dtype=tf.float32, augment: Optional[Augment] = None,
                 seeds: Optional[tf.Tensor] = None) -> tf.data.Dataset:
    """A dataset of one element: raw resized pixels (float32 [N, S, S, 3] in [0, 255], e.g. from a
    cache filled by ``decode_batch(..., raw=True)``) augmented image by image (``seeds`` [N, 2]) and
    in output ``dtype``: exactly what :func:`decode_batch` gives, by the same parallel map."""
    dtype = check_options(dtype=dtype)
    count = tf.shape(pixels, out_type=tf.int64)[0]
    if seeds is None:
        seeds = tf.zeros([count, 2], tf.int64)
    return (tf.data.Dataset.from_tensor_slices((pixels, seeds))
            .map(lambda image, seed: finish_pixels(image, dtype, augment, seed),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(count))


def decode_batch(encoded: tf.Tensor, image_size: int, *, names: Optional[Names] = None, what="the batch",
                 dtype=tf.float32, method: str = "bilinear", antialias: bool = False, dct_method: str = "",
                 augment: Optional[Augment] = None, seeds: Optional[tf.Tensor] = None,
                 read: Optional[Callable[[tf.Tensor], tf.Tensor]] = None, raw: bool = False) -> tf.data.Dataset:
    """A dataset of one element: ``encoded`` ([N] strings) decoded to [N, S, S, 3], in order.

    ``read`` turns each string into the encoded bytes first, in the same parallel map (e.g.
    ``tf.io.read_file``: ``encoded`` are then file paths, and a missing file is named like a bad one).

    Images are decoded by a parallel map batched whole (map and batch fuse, so pixels go straight
    into the output tensor). If any image fails to decode, the element is instead an assertion
    failure whose message names every bad image: ``what`` (a string or scalar string tensor, e.g.
    the dataset) and, per ``(title, values)`` pair of ``names``, the bad images' entries of
    ``values`` ([N], e.g. ``("frames:", paths)`` or class ids and record numbers; default: their
    positions).
    ``seeds`` ([N, 2] int64) feed ``augment``. ``raw``: resized float32 pixels in [0, 255] instead
    (no augmentation or scaling), e.g. for a cache that :func:`finish_batch` completes per episode.
    """
    dtype = check_options(method, dtype, dct_method)
    if raw:
        dtype, augment = tf.float32, None
    count = tf.shape(encoded, out_type=tf.int64)[0]
    if seeds is None:
        seeds = tf.zeros([count, 2], tf.int64)

    def one(data, seed):
        if read is not None:
            data = read(data)
        return decode_image(data, image_size, dtype=dtype, method=method, antialias=antialias,
                            dct_method=dct_method, augment=augment, seed=seed, raw=raw)

    fast = (tf.data.Dataset.from_tensor_slices((encoded, seeds))
            .map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(count)
            .ignore_errors()
            # After a failed image, ignore_errors lets the rest through as a short batch: drop it.
            .filter(lambda images: tf.equal(tf.shape(images, out_type=tf.int64)[0], count)))
    diagnose = _diagnose(encoded, seeds, one, count, image_size, dtype, names, what)
    return fast.concatenate(diagnose).take(1)


def _diagnose(encoded, seeds, one, count, image_size, dtype, names, what) -> tf.data.Dataset:
    """Decodes image by image, keeping the ones that work; fails naming the ones that did not.

    Only runs when the fast path produced nothing (some image failed).
    """
    if names is None:
        names = [("positions:", tf.range(count))]
    kept = (tf.data.Dataset.from_tensor_slices((encoded, seeds, tf.range(count)))
            .map(lambda data, seed, position: (one(data, seed), position),
                 num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .ignore_errors(log_warning=True)
            .batch(count))
    # If every image failed there is no batch at all: the empty sentinel reaches the check.
    sentinel = tf.data.Dataset.from_tensors(
        (tf.zeros([0, image_size, image_size, 3], dtype), tf.zeros([0], tf.int64)))

    def check(batch, positions):
        present = tf.scatter_nd(positions[:, None], tf.ones_like(positions, tf.int32), [count]) > 0
        message = ["Image(s) that could not be decoded (damaged image data) in", what]
        for title, values in names:
            message += [title, tf.boolean_mask(values, tf.logical_not(present))]
        failed = tf.debugging.Assert(tf.equal(tf.size(positions, out_type=tf.int64), count), message,
                                     summarize=10)
        with tf.control_dependencies([failed]):
            return tf.identity(batch)

    return kept.concatenate(sentinel).take(1).map(check)
