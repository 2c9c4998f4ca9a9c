"""The one synthetic episode builder: benchmarks time steps on it and tests train on it.

Images are uniform noise (nothing to learn: benchmarks only need the shapes), or, given class
``templates``, a template per class plus Gaussian noise clipped to the pixel range (learnable:
tests check that training helps). Numpy only, so a benchmark's parent process stays light.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from lite_tf.errors import ConfigError

Counts = Union[int, Sequence[int]]
IMAGE_DTYPES = ("uint8", "float32")


def _labels(counts: Counts, way: int, role: str) -> np.ndarray:
    """An int total is spread over the classes in turn; a sequence gives each class its count."""
    if np.ndim(counts) == 0:
        total = int(counts)
        if total < 1:
            raise ConfigError(f"synthetic_episode: {role} size must be >= 1; got {total}.")
        return (np.arange(total) % way).astype(np.int32)
    counts = np.asarray(counts, np.int64)
    if counts.shape != (way,) or (counts < 0).any():
        raise ConfigError(f"synthetic_episode: {role} counts must be {way} non-negative numbers (one per "
                         f"class); got {counts.tolist()}.")
    return np.repeat(np.arange(way), counts).astype(np.int32)


def synthetic_episode(way: int, support: Counts, query: Counts, image_size: int, *,
                      image_dtype: str = "float32", seed: int = 0, rng: Optional[np.random.Generator] = None,
                      templates: Optional[np.ndarray] = None, noise: float = 0.3) -> dict:
    """An episode dict (the keys of ``lite_tf.episode.episode_signature``) of numpy arrays.

    ``support`` / ``query``: a total (labels 0, 1, ..., way-1, 0, ...) or per-class counts.
    ``image_dtype``: 'float32' pixels in [-1, 1] or 'uint8' in [0, 255] (as the pipelines hand over).
    ``templates``: [C >= way, size, size, 3] floats in [-1, 1]; each episode picks ``way`` of them.
    ``rng`` (if given) is used instead of a new generator seeded with ``seed``.
    """
    if image_dtype not in IMAGE_DTYPES:
        raise ConfigError(f"synthetic_episode: image_dtype must be one of {IMAGE_DTYPES}; got {image_dtype!r}.")
    if way < 1:
        raise ConfigError(f"synthetic_episode: way must be >= 1; got {way}.")
    rng = np.random.default_rng(seed) if rng is None else rng
    shape = (image_size, image_size, 3)
    classes = None
    if templates is not None:
        templates = np.asarray(templates)
        if templates.ndim != 4 or templates.shape[1:] != shape or len(templates) < way:
            raise ConfigError(f"synthetic_episode: templates must be [>= {way}, {image_size}, {image_size}, 3]; "
                             f"got {list(templates.shape)}.")
        classes = rng.choice(len(templates), way, replace=False)

    def images(labels):
        if classes is not None:
            pixels = np.clip(templates[classes[labels]] + noise * rng.normal(size=(len(labels),) + shape), -1, 1)
            if image_dtype == "uint8":
                return np.round((pixels + 1) * 127.5).astype(np.uint8)
            return pixels.astype(np.float32)
        if image_dtype == "uint8":
            return rng.integers(0, 256, (len(labels),) + shape, dtype=np.uint8)
        return rng.uniform(-1, 1, (len(labels),) + shape).astype(np.float32)

    support_labels, query_labels = _labels(support, way, "support"), _labels(query, way, "query")
    return {"support_images": images(support_labels), "support_labels": support_labels,
            "query_images": images(query_labels), "query_labels": query_labels, "way": np.int32(way)}
