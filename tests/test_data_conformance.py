"""Conformance with the real Meta-Dataset specs: fake record sets with the real class structure of
omniglot, aircraft and ilsvrc_2012 (per-class counts shrunk, splits and hierarchy kept) go through
the whole pipeline, and the episodes respect the structure (alphabets, DAG nodes, splits)."""
import os

import numpy as np
import pytest

from lite_tf.data.metadataset import pipeline, sampling
from lite_tf.data.synthetic import fake
from lite_tf.data.metadataset import spec as S
from lite_tf.episode import validate_episode
from tests.helpers import meta_dataset_spec_dir

SPEC_DIR = meta_dataset_spec_dir()
pytestmark = pytest.mark.skipif(not os.path.isdir(SPEC_DIR), reason="real Meta-Dataset specs not available")
SIZE = 16


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("records"))
    specs = {}
    for name, images in (("omniglot", 3), ("aircraft", 4), ("ilsvrc_2012", 3)):
        real = S.load_spec(os.path.join(SPEC_DIR, f"{name}_dataset_spec.json"))
        # Shrunk counts that still differ between classes, so the query rule is exercised.
        counts = {c: images + (c % 3) for c in real.images_per_class}
        specs[name] = fake.write_fake_dataset(real, os.path.join(root, name), counts, image_size=12, pool=16)
    return root, specs


@pytest.mark.parametrize("name", ["omniglot", "aircraft", "ilsvrc_2012"])
def test_fake_records_keep_the_real_structure(fake_root, name):
    root, specs = fake_root
    loaded = S.load_spec(os.path.join(root, name))
    real = S.load_spec(os.path.join(SPEC_DIR, f"{name}_dataset_spec.json"))
    assert type(loaded) is type(real)
    assert [loaded.classes(s) for s in S.SPLITS] == [real.classes(s) for s in S.SPLITS]
    if isinstance(real, S.HierarchicalDatasetSpec):
        assert loaded.leaves_under("TRAIN") == real.leaves_under("TRAIN")


@pytest.mark.parametrize("name,split", [("omniglot", "TRAIN"), ("omniglot", "TEST"), ("aircraft", "VALID"),
                                        ("ilsvrc_2012", "TRAIN"), ("ilsvrc_2012", "TEST")])
def test_pipeline_on_real_structure(fake_root, name, split):
    root, specs = fake_root
    dataset = pipeline.make_episode_dataset(os.path.join(root, name), split, image_size=SIZE, seed=3)
    for e in dataset.take(3):
        validate_episode(e, image_size=SIZE)
        way = int(e["way"])
        assert 5 <= way <= 50
        assert e["support_images"].shape[1:] == (SIZE, SIZE, 3)
        q = np.bincount(e["query_labels"].numpy(), minlength=way)
        s = np.bincount(e["support_labels"].numpy(), minlength=way)
        smallest = 3 if name != "aircraft" else 4  # shrunk counts are smallest + (class % 3)
        assert np.all(q == q[0]) and smallest // 2 <= q[0] <= (smallest + 2) // 2 and np.all(s >= 1)
        assert int(e["support_images"].shape[0]) <= 500


def test_multi_source_over_real_structures(fake_root):
    root, _ = fake_root
    dataset = pipeline.make_episode_dataset(root, "TEST", datasets=["omniglot", "aircraft", "ilsvrc_2012"],
                                            image_size=SIZE, seed=0)
    ways = [int(e["way"]) for e in dataset.take(6)]
    assert all(5 <= w <= 50 for w in ways)


def test_sampler_structure_on_fake_specs(fake_root):
    _, specs = fake_root
    omniglot = specs["omniglot"]
    alphabet_of = {c: a for a in range(50) for c in omniglot.classes_of_superclass(a)}
    sampler = sampling.EpisodeSampler(omniglot, "VALID", seed=0)
    for _ in range(50):
        e = sampler.sample()
        assert len({alphabet_of[int(c)] for c in e.class_ids}) == 1
        assert all(alphabet_of[int(c)] in omniglot.superclasses("VALID") for c in e.class_ids)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_no_class_files_left_open(fake_root):
    root, _ = fake_root
    before = len(os.listdir("/proc/self/fd"))
    dataset = pipeline.make_episode_dataset(os.path.join(root, "ilsvrc_2012"), "TRAIN", image_size=SIZE, seed=1)
    iterator = iter(dataset)
    for _ in range(4):
        next(iterator)
        # 712 class files indexed and dozens read per episode; none stays open.
        assert len(os.listdir("/proc/self/fd")) - before < 8
