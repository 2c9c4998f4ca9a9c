"""Small learnable episodes and models shared by the tests."""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from lite_tf import EpisodicModel, LiteConfig, episode_signature
from lite_tf.bench.episodes import synthetic_episode
from lite_tf.learners.protonets import ProtoNets

IMAGE_SIZE = 16


def make_episode(rng: np.random.Generator, way: int, shots, queries: int, image_size: int = IMAGE_SIZE,
                 centers: np.ndarray | None = None, noise: float = 0.8) -> dict:
    """A learnable episode: ``shots`` support and ``queries`` query images per class, each a noisy copy
    of its class's centre image (lite_tf.bench.episodes, the one synthetic episode builder)."""
    if centers is None:
        centers = rng.normal(size=(way, image_size, image_size, 3))
    return synthetic_episode(way, np.broadcast_to(shots, (way,)), [queries] * way, image_size, rng=rng,
                             templates=centers, noise=noise)


def episode_dataset(seed: int, count: int, num_centers: int = 20, image_size: int = IMAGE_SIZE) -> tf.data.Dataset:
    """``count`` episodes with varying way (2-5), shots (1-5) and queries (1-4) per class."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(size=(num_centers, image_size, image_size, 3))
    episodes = []
    for _ in range(count):
        way = int(rng.integers(2, 6))
        episodes.append(make_episode(rng, way, rng.integers(1, 6, size=way), int(rng.integers(1, 5)),
                                     image_size, centers))

    return tf.data.Dataset.from_generator(lambda: iter(episodes),
                                          output_signature=episode_signature(image_size))


def protonets_model(lite: LiteConfig | None = None, query_batch_size=None, seed: int = 7,
                    filters: int = 8) -> EpisodicModel:
    from lite_tf.backbones.conv import conv4

    backbone = conv4(IMAGE_SIZE, filters=filters, blocks=2)
    return EpisodicModel(ProtoNets(backbone), IMAGE_SIZE, lite=lite, query_batch_size=query_batch_size, seed=seed)


def meta_dataset_spec_dir() -> str:
    """The real Meta-Dataset spec files: $LITE_TF_MD_SPECS, or shared/meta_dataset_specs inside or
    beside the checkout (where CI puts it). Tests that need them skip, with this reason, otherwise."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.environ.get("LITE_TF_MD_SPECS", ""),
                      os.path.join(here, "..", "shared", "meta_dataset_specs"),
                      os.path.join(here, "..", "..", "shared", "meta_dataset_specs")):
        if candidate and os.path.isdir(candidate):
            return candidate
    return "/nonexistent"


def assert_gradients_close(actual, expected, rtol=1e-5, atol=1e-7):
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol, atol=atol * max(1.0, np.abs(e).max()))


def parity_fixture_path(name: str) -> str:
    """shared/parity/<name>: $LITE_TF_PARITY (a folder), or shared/parity inside or beside the checkout
    (where CI puts it); tests that need it skip, naming it, otherwise."""
    import pytest

    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (os.environ.get("LITE_TF_PARITY", ""), os.path.join(here, "..", "shared", "parity"),
                   os.path.join(here, "..", "..", "shared", "parity")):
        if folder and os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    pytest.skip(f"parity fixture {name} not found (set LITE_TF_PARITY to the folder holding it)")


def relative_error(got, expected) -> float:
    """||got - expected|| / ||expected|| in float64."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(got - expected) / max(np.linalg.norm(expected), 1e-12))
