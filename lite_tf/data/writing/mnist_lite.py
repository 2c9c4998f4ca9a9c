"""The ``mnist`` Meta-Dataset source the official LITE code trains MD-v2 with.

cambridge-mlg/LITE ``extras/prepare_extra_dataset.py`` (``process_mnist`` + ``ExtraDatasetConverter``)
and ``extras/mnist/dataset_spec.json``, reproduced:

- images: the 10,000 MNIST **test** images (``t10k``), all ten digits as classes ``class_0..class_9``
  (class id = digit), every class in the TRAIN split (LITE's replacement spec: TRAIN 10, VALID 0,
  TEST 0; 980, 1135, ... images per class);
- pixels: the 28 px grey image converted to RGB, ``resize((84, 84), Image.LANCZOS)``, saved as PNG,
  which Meta-Dataset's ``write_tfrecord_from_directory`` reads back and re-encodes as JPEG (PIL's
  defaults, quality 75) because it is not JPEG: the bytes stored are PIL's JPEG of that image;
- order within a class file: the PNG files ``image_<k>.png`` (k-th image of the class in source order)
  as ``sorted(listdir)`` lists them, i.e. by the text of k (0, 1, 10, 100, 1000, 1001, ...).

The source is TFDS ``mnist`` (its ``test`` split: the same 10,000 images, in TFDS's order, so the
order within a class differs from LITE's) or the original ``t10k-images-idx3-ubyte.gz`` /
``t10k-labels-idx1-ubyte.gz`` files (LITE's input: the same order too).
"""
from __future__ import annotations

import gzip
import io
import os
from typing import List, Optional, Tuple

import numpy as np

from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.errors import DataError

NAME = "mnist"
CLASSES = 10
IMAGE_SIZE = 84
IDX_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def lite_image_bytes(pixels: np.ndarray) -> bytes:
    """One MNIST image as LITE's records hold it (see the module docstring)."""
    from PIL import Image

    image = Image.fromarray(np.asarray(pixels, np.uint8).reshape(28, 28)).convert("RGB")
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.Resampling.LANCZOS)
    png = io.BytesIO()
    image.save(png, format="PNG")
    reopened = Image.open(io.BytesIO(png.getvalue()))   # what write_tfrecord_from_directory opens
    jpeg = io.BytesIO()
    reopened.save(jpeg, format="JPEG")
    return jpeg.getvalue()


def lite_class_order(count: int) -> List[int]:
    """Positions 0..count-1 as ``sorted(['image_0.png', 'image_1.png', ...])`` lists their files."""
    return sorted(range(count), key=lambda k: f"image_{k}.png")


def read_idx(folder: str) -> Tuple[np.ndarray, np.ndarray]:
    """(images [N, 28, 28] uint8, labels [N]) from the original t10k files in ``folder``."""
    paths = [os.path.join(folder, name) for name in IDX_FILES]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise DataError(f"MNIST idx file(s) {missing} not found (LITE reads {', '.join(IDX_FILES)}).")
    with gzip.open(paths[0]) as handle:
        pixels = np.frombuffer(handle.read(), np.uint8, offset=16)
    with gzip.open(paths[1]) as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    if pixels.size != labels.size * 28 * 28:
        raise DataError(f"{paths[0]} holds {pixels.size} pixels, {labels.size} labels x 784 expected.")
    return pixels.reshape(-1, 28, 28), labels.astype(np.int64)


def read_tfds(data_dir: Optional[str], split: str = "test") -> Tuple[np.ndarray, np.ndarray]:
    """(images, labels) of TFDS ``mnist``'s ``split`` as TFDS stores it (prepared: nothing downloads)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder(NAME, data_dir=data_dir)
    if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
        raise DataError(f"TFDS 'mnist' is not prepared in {data_dir or '~/tensorflow_datasets'}; prepare it with: "
                        f"tfds build mnist --data_dir={data_dir or '<tfds_data_dir>'}.")
    images, labels = [], []
    for example in builder.as_dataset(split=split, shuffle_files=False).as_numpy_iterator():
        images.append(example["image"][..., 0])
        labels.append(int(example["label"]))
    return np.stack(images), np.asarray(labels, np.int64)


def write_lite_mnist(output_dir: str, images: np.ndarray, labels: np.ndarray, provenance: dict,
                     progress: bool = True):
    """Writes ``<output_dir>/mnist`` (class files, ``dataset_spec.json``) as LITE's records."""
    from lite_tf.data.writing.writer import ClassJob, write_dataset

    present = sorted(set(int(label) for label in labels))
    if present != list(range(CLASSES)):
        raise DataError(f"MNIST labels must be the digits 0..9; got {present}.")

    def load(digit):
        rows = np.flatnonzero(labels == digit)
        return [lite_image_bytes(images[rows[k]]) for k in lite_class_order(len(rows))]

    jobs = [ClassJob(f"class_{digit}", spec_lib.Split.TRAIN, lambda digit=digit: load(digit))
            for digit in range(CLASSES)]
    return write_dataset(os.path.join(output_dir, NAME), NAME, jobs,
                         dict(provenance, recipe="cambridge-mlg/LITE extras/prepare_extra_dataset.py"),
                         progress=progress)
