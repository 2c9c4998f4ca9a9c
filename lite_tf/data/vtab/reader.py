"""Reads one VTAB task from a prepared TFDS data dir as a large task: 1000 support images, and the
whole test split as batches of queries.

Nothing is downloaded unless ``download=True``: a dataset that is not prepared under
``data_dir`` raises ``DataError`` naming it and the ``tfds build`` command that prepares it (and,
for datasets TFDS cannot fetch by itself, which files to place by hand).
Images are decoded, made 3-channel, resized to the model's ``image_size`` and kept as uint8 (4x
smaller than float; networks convert per chunk with ``lite_tf.images``). The resize is each
protocol's own: ``vtab1k`` TF bilinear (task_adaptation's), ``lite`` PIL Lanczos on the decoded array as
the official LITE code does it (``src/tf_dataset_reader.py`` ``_prepare_image``,
``lite_tf.images.pil_lanczos_resize``). Under ``lite``, SUN397 comes from an image folder
(lite_tf/data/vtab/image_folder.py).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import tensorflow as tf

from lite_tf.data.vtab import image_folder
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


def prepare_command(task: VtabTask, data_dir: Optional[str], protocol: str = "vtab1k") -> str:
    dir_flag = f" --data_dir={data_dir}" if data_dir else ""
    return f"tfds build {task.dataset_for(protocol)}{dir_flag}"


def _builder(task: VtabTask, data_dir: Optional[str], download: bool, protocol: str = "vtab1k"):
    """The TFDS builder of ``task``: VTAB's pinned version if prepared, else the newest prepared one.

    (TFDS has moved some datasets past VTAB's versions, e.g. oxford_iiit_pet 4.0.0; their splits
    are unchanged. The version used is reported with every result.)
    """
    import tensorflow_datasets as tfds

    builders, errors = [], []
    tfds_name, dataset = task.tfds_name_for(protocol), task.dataset_for(protocol)
    for name in (tfds_name, dataset):  # VTAB's version pattern first, then the code's version
        try:
            builders.append(tfds.builder(name, data_dir=data_dir))
        except Exception as error:  # TFDS raises several types for an unknown name or version
            errors.append(str(error))
    for builder in builders:
        if tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
            return builder
    manual = f" Note: {task.manual_download}." if task.manual_download else ""
    if not builders:
        raise DataError(f"VTAB task {task.name!r}: TFDS cannot open {tfds_name!r} in {data_dir!r}: "
                        f"{errors[-1]}. Prepare it with: {prepare_command(task, data_dir, protocol)}.{manual}")
    if not download:
        raise DataError(f"VTAB task {task.name!r}: TFDS dataset {dataset!r} is not prepared in "
                        f"{data_dir or '~/tensorflow_datasets'} (no {builders[-1].data_dir}/dataset_info.json). "
                        f"Prepare it with: {prepare_command(task, data_dir, protocol)} (or pass --download).{manual}")
    builder = builders[0]
    try:
        builder.download_and_prepare()
    except Exception as error:
        raise DataError(f"VTAB task {task.name!r}: preparing {dataset!r} failed: {error}.{manual}") from None
    return builder


def _lite_image_fn(task: VtabTask, image_size: int):
    """LITE's ``_prepare_image``: the decoded array to PIL (dSprites' 0/1 pixels times 255.0, a float
    image, as LITE passes it), ``Image.resize((s, s), Image.LANCZOS)``, RGB."""
    from lite_tf.images import pil_lanczos_resize

    def resize(pixels):
        if task.binary_image:
            pixels = pixels * 255.0
        return pil_lanczos_resize(pixels, image_size)

    def image(example):
        resized = tf.numpy_function(resize, [example["image"]], tf.uint8, stateful=False)
        return tf.ensure_shape(resized, [image_size, image_size, 3])

    return image


def _image_fn(task: VtabTask, image_size: int, protocol: str = "vtab1k"):
    if protocol == "lite":
        return _lite_image_fn(task, image_size)

    def image(example):
        pixels = example["image"]
        if task.binary_image:
            pixels = pixels * 255
        if pixels.shape.rank == 3 and pixels.shape[-1] == 1:
            pixels = tf.tile(pixels, [1, 1, 3])
        resized = tf.image.resize(tf.cast(pixels, tf.float32), [image_size, image_size], method="bilinear")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    return image


def _labelled(task: VtabTask, image_size: int, protocol: str = "vtab1k"):
    image_fn = _image_fn(task, image_size, protocol)

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


def open_task(name_or_task, data_dir: Optional[str], image_size: int, protocol: str = "vtab1k",
              download: bool = False, sun397_dir: Optional[str] = None, support_seed: int = 0) -> LargeTask:
    """The VTAB task as a :class:`LargeTask` at ``image_size`` (see the module docstring).

    ``sun397_dir``: the SUN397 image folder the ``lite`` protocol reads (``support_seed``: its shuffle
    of the train part, see lite_tf/data/vtab/image_folder.py).
    """
    task = get_task(name_or_task) if isinstance(name_or_task, str) else name_or_task
    if protocol not in PROTOCOLS:
        raise ConfigError(f"Unknown VTAB protocol {protocol!r}; expected one of {PROTOCOLS}.")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise ConfigError(f"VTAB image_size must be a positive integer (the model's); got {image_size!r}.")
    if protocol == "lite" and task.lite_image_folder:
        return open_image_folder_task(task, sun397_dir, image_size, support_seed)
    builder = _builder(task, data_dir, download, protocol)
    sizes = {name: info.num_examples for name, info in builder.info.splits.items()}
    support_split, query_split = task.splits(sizes, protocol)
    num_support = _split_size(task, builder, support_split, sizes)
    num_queries = _split_size(task, builder, query_split, sizes)
    if num_support != SUPPORT_SIZE:
        raise DataError(f"VTAB task {task.name!r}: support split {support_split!r} of {task.dataset!r} has "
                        f"{num_support} images, expected {SUPPORT_SIZE} (is the dataset fully prepared?).")
    if num_queries == 0:
        raise DataError(f"VTAB task {task.name!r}: query split {query_split!r} of {task.dataset!r} is empty.")
    convert = _labelled(task, image_size, protocol)

    def read(split):
        return builder.as_dataset(split=split, shuffle_files=False)

    def support():
        data = read(support_split).map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return data.batch(SUPPORT_SIZE).take(1)

    def queries(batch_size: int):
        data = read(query_split).map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return data.batch(batch_size).prefetch(2)

    return LargeTask(task.name, task.num_classes, num_support, num_queries, support, queries,
                     {"dataset": task.dataset_for(protocol), "tfds_name": task.tfds_name_for(protocol),
                      "version": str(builder.version), "group": task.group, "protocol": protocol,
                      "support_split": support_split, "query_split": query_split,
                      "resize": "pil_lanczos" if protocol == "lite" else "tf_bilinear"})


def open_image_folder_task(task: VtabTask, root: Optional[str], image_size: int, support_seed: int = 0
                           ) -> LargeTask:
    """SUN397 as the LITE code reads it (lite_tf/data/vtab/image_folder.py) as a :class:`LargeTask`."""
    if not root:
        raise DataError(f"VTAB task {task.name!r} under --protocol=lite reads an image-folder copy of SUN397 (as "
                        f"cambridge-mlg/LITE src/image_folder_reader.py); give --sun397_dir, made from TFDS with: "
                        f"{image_folder.EXPORT_COMMAND}.")
    folder = image_folder.Sun397Folder(root, support_seed)
    if folder.support_indices.size != SUPPORT_SIZE:
        raise DataError(f"SUN397 image folder {root!r}: the support set has {folder.support_indices.size} images, "
                        f"expected {SUPPORT_SIZE}.")

    def read(paths, labels):
        def load(path):
            return image_folder.load_image(path, image_size)

        def convert(path, label):
            image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
            return tf.ensure_shape(image, [image_size, image_size, 3]), label

        data = tf.data.Dataset.from_tensor_slices((paths, labels))
        return data.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def support():
        return read(*folder.support()).batch(SUPPORT_SIZE).take(1)

    def queries(batch_size: int):
        return read(*folder.queries()).batch(batch_size).prefetch(2)

    return LargeTask(task.name, task.num_classes, SUPPORT_SIZE, int(folder.query_indices.size), support, queries,
                     {"dataset": "image_folder", "group": task.group, "protocol": "lite",
                      "split": "random_split(0.7, 0.1, 0.2), seed 15", "support_rule": "every class, then to 1000",
                      "support_seed": support_seed, "images": int(folder.labels.size),
                      "resize": "pil_bilinear"})
