"""Reads one VTAB task from a prepared TFDS data dir as a large task: 1000 support images, and the
whole test split as batches of queries.

Nothing is downloaded unless ``download=True``: a dataset that is not prepared under
``data_dir`` raises ``DataError`` naming it and the ``tfds build`` command that prepares it (and,
for datasets TFDS cannot fetch by itself, which files to place by hand).
Images are decoded, made 3-channel, resized to the model's ``image_size`` (``resize_method``, gin
``vtab.open_task.resize_method``: TF ``'bilinear'`` by default, VTAB's own; ``'pil_lanczos'`` is the
official LITE code's PIL Lanczos, see ``lite_tf.data.decode``) and kept as uint8 (4x smaller than
float; networks convert per chunk with ``lite_tf.images``).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import gin
import tensorflow as tf

from lite_tf.data import decode
from lite_tf.data.vtab.tasks import PROTOCOLS, SUPPORT_SIZE, VtabTask, get_task
from lite_tf.errors import ConfigError, DataError


@dataclasses.dataclass
class LargeTask:
    """A task too large for one episode: a support set and a stream of query batches.

    ``support()`` is a dataset of one element (all support images, labels); ``queries(batch_size)``
    a finite dataset of (images, labels) batches covering every query once.
    """

    name: str
    way: int
    num_support: int
    num_queries: int
    support: Callable[[], tf.data.Dataset]
    queries: Callable[[int], tf.data.Dataset]
    description: dict = dataclasses.field(default_factory=dict)


def prepare_command(task: VtabTask, data_dir: Optional[str]) -> str:
    dir_flag = f" --data_dir={data_dir}" if data_dir else ""
    return f"tfds build {task.dataset}{dir_flag}"


def _builder(task: VtabTask, data_dir: Optional[str], download: bool):
    """The TFDS builder of ``task``: VTAB's pinned version if prepared, else the newest prepared one.

    (TFDS has moved some datasets past VTAB's versions, e.g. oxford_iiit_pet 4.0.0; their splits
    are unchanged. The version used is reported with every result.)
    """
    import tensorflow_datasets as tfds

    builders, errors = [], []
    for name in (task.tfds_name, task.dataset):  # VTAB's version pattern first, then the code's version
        try:
            builders.append(tfds.builder(name, data_dir=data_dir))
        except Exception as error:  # TFDS raises several types for an unknown name or version
            errors.append(str(error))
    for builder in builders:
        if tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
            return builder
    manual = f" Note: {task.manual_download}." if task.manual_download else ""
    if not builders:
        raise DataError(f"VTAB task {task.name!r}: TFDS cannot open {task.tfds_name!r} in {data_dir!r}: "
                        f"{errors[-1]}. Prepare it with: {prepare_command(task, data_dir)}.{manual}")
    if not download:
        raise DataError(f"VTAB task {task.name!r}: TFDS dataset {task.dataset!r} is not prepared in "
                        f"{data_dir or '~/tensorflow_datasets'} (no {builders[-1].data_dir}/dataset_info.json). "
                        f"Prepare it with: {prepare_command(task, data_dir)} (or pass --download).{manual}")
    builder = builders[0]
    try:
        builder.download_and_prepare()
    except Exception as error:
        raise DataError(f"VTAB task {task.name!r}: preparing {task.dataset!r} failed: {error}.{manual}") from None
    return builder


def _image_fn(task: VtabTask, image_size: int, resize_method: str = "bilinear"):
    def image(example):
        pixels = example["image"]
        if task.binary_image:
            pixels = pixels * 255
        if pixels.shape.rank == 3 and pixels.shape[-1] == 1:
            pixels = tf.tile(pixels, [1, 1, 3])
        # LITE's dSprites: ``image * 255.0`` is a float array, PIL mode 'F', whose 8-bit conversion
        # truncates; 8-bit images keep PIL's 8-bit path (pil_resize on uint8 gives whole values).
        pil_float = resize_method in decode.PIL_FILTERS and task.binary_image
        if resize_method == "bilinear" or pil_float:
            pixels = tf.cast(pixels, tf.float32)
        resized = decode.resize(pixels, image_size, resize_method)
        rounded = tf.floor(resized) if pil_float else tf.round(resized)
        return tf.cast(tf.clip_by_value(rounded, 0.0, 255.0), tf.uint8)

    return image


def _labelled(task: VtabTask, image_size: int, resize_method: str = "bilinear"):
    image_fn = _image_fn(task, image_size, resize_method)

    def convert(example):
        label = task.label_fn(example)
        check = tf.debugging.Assert(
            tf.logical_and(label >= 0, label < task.num_classes),
            [f"VTAB task {task.name!r}: a label outside [0, {task.num_classes}) (bad or unexpected TFDS data):",
             label])
        with tf.control_dependencies([check]):
            label = tf.cast(tf.identity(label), tf.int32)
        return image_fn(example), label

    return convert


def _split_size(task: VtabTask, builder, split: str, sizes) -> int:
    """Images in ``split``; a slice past a split's end (a partly prepared dataset) is a ``DataError``
    naming the task (TFDS itself raises a bare ValueError that names neither task nor dataset)."""
    try:
        return builder.info.splits[split].num_examples
    except ValueError as error:
        raise DataError(f"VTAB task {task.name!r}: split {split!r} cannot be cut from {task.dataset!r}, whose "
                        f"splits have {sizes} images ({error}); is the dataset fully prepared?") from None


@gin.configurable(module="vtab", allowlist=["resize_method"])
def open_task(name_or_task, data_dir: Optional[str], image_size: int, protocol: str = "vtab1k",
              download: bool = False, resize_method: str = "bilinear") -> LargeTask:
    """The VTAB task as a :class:`LargeTask` at ``image_size`` (see the module docstring)."""
    task = get_task(name_or_task) if isinstance(name_or_task, str) else name_or_task
    if protocol not in PROTOCOLS:
        raise ConfigError(f"Unknown VTAB protocol {protocol!r}; expected one of {PROTOCOLS}.")
    if resize_method not in decode.RESIZE_METHODS:
        raise ConfigError(f"vtab.open_task.resize_method must be one of {decode.RESIZE_METHODS}; got {resize_method!r}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"VTAB image_size must be a positive integer (the model's); got {image_size!r}.")
    builder = _builder(task, data_dir, download)
    sizes = {name: info.num_examples for name, info in builder.info.splits.items()}
    support_split, query_split = task.splits(sizes, protocol)
    num_support = _split_size(task, builder, support_split, sizes)
    num_queries = _split_size(task, builder, query_split, sizes)
    if num_support != SUPPORT_SIZE:
        raise DataError(f"VTAB task {task.name!r}: support split {support_split!r} of {task.dataset!r} has "
                        f"{num_support} images, expected {SUPPORT_SIZE} (is the dataset fully prepared?).")
    if num_queries == 0:
        raise DataError(f"VTAB task {task.name!r}: query split {query_split!r} of {task.dataset!r} is empty.")
    convert = _labelled(task, image_size, resize_method)

    def read(split):
        return builder.as_dataset(split=split, shuffle_files=False)

    def support():
        data = read(support_split).map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return data.batch(SUPPORT_SIZE).take(1)

    def queries(batch_size: int):
        data = read(query_split).map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return data.batch(batch_size).prefetch(2)

    return LargeTask(task.name, task.num_classes, num_support, num_queries, support, queries,
                     {"dataset": task.dataset, "tfds_name": task.tfds_name, "version": str(builder.version),
                      "group": task.group, "protocol": protocol, "support_split": support_split,
                      "query_split": query_split, "resize_method": resize_method})
