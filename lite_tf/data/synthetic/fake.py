"""Small fake record sets with a given spec's class structure, for tests and benchmarks.

Images are smooth random colour fields with a little noise, encoded as JPEG: they decode like
photographs (similar file size and decode cost), unlike pure noise. Nothing here is meant to be
learnable; for learnable procedural data see ``lite_tf.data.synthetic.procedural``.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from lite_tf.data.metadataset import records
from lite_tf.data.metadataset import spec as spec_lib


def random_jpeg(rng: np.random.Generator, size: int = 256, quality: int = 90) -> bytes:
    import tensorflow as tf

    coarse = rng.uniform(0, 255, size=(1, 8, 8, 3)).astype(np.float32)
    image = tf.image.resize(coarse, [size, size], method="bicubic")[0].numpy()
    image += rng.normal(0, 6, size=image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return tf.io.encode_jpeg(image, quality=quality).numpy()


def write_fake_dataset(spec, dataset_dir: str, images_per_class: Optional[Mapping[int, int]] = None,
                       image_size: int = 32, seed: int = 0, pool: int = 0) -> "spec_lib.DatasetSpec":
    """Writes ``<class>.tfrecords`` for every class of ``spec`` plus ``dataset_spec.json``.

    ``images_per_class`` (default: the spec's own counts) shrinks the record sets; the returned
    spec has those counts and ``path == dataset_dir``. With ``pool > 0`` only that many distinct
    JPEGs are encoded and reused (fast set-up for large class structures).
    """
    rng = np.random.default_rng(seed)
    counts = dict(spec.images_per_class if images_per_class is None else images_per_class)
    new_spec = spec.with_images_per_class(counts, path=dataset_dir)
    cache = [random_jpeg(rng, image_size) for _ in range(pool)]
    for class_id, count in sorted(counts.items()):
        if cache:
            images = [cache[int(i)] for i in rng.integers(len(cache), size=count)]
        else:
            images = [random_jpeg(rng, image_size) for _ in range(count)]
        records.write_class_file(records.class_file_path(dataset_dir, class_id), images, class_id)
    spec_lib.write_spec(new_spec, dataset_dir)
    return new_spec


def flat_toy_spec(name: str, path: str, classes=(6, 3, 3), images: int = 8) -> "spec_lib.DatasetSpec":
    total = sum(classes)
    return spec_lib.make_flat_spec(
        name, path, dict(zip(("TRAIN", "VALID", "TEST"), classes)), {c: images for c in range(total)},
        {c: f"class_{c}" for c in range(total)})

