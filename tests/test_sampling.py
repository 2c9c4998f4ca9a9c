"""Episode sampler: every rule's bounds over many seeded episodes, fixed mode, hierarchies, determinism,
and the statistics of the reference sampler on the real specs (DESIGN.md)."""
import math
import os

import numpy as np
import pytest

from lite_tf.data.metadataset import sampling
from lite_tf.data.metadataset import spec as S
from tests.helpers import meta_dataset_spec_dir

SPEC_DIR = meta_dataset_spec_dir()
needs_specs = pytest.mark.skipif(not os.path.isdir(SPEC_DIR), reason="real Meta-Dataset specs not available")


def real(name):
    return S.load_spec(os.path.join(SPEC_DIR, f"{name}_dataset_spec.json"), records_dir="/nowhere")


def toy(counts, splits=None):
    n = len(counts)
    splits = splits or {"TRAIN": n, "VALID": 0, "TEST": 0}
    return S.make_flat_spec("toy", "/nowhere", splits, dict(enumerate(counts)))


def check_variable_rules(spec, split, episodes, max_support=500, max_query=10, max_ways=50, min_ways=5):
    counts_all = spec.images_per_class
    split_classes = set(spec.classes(split))
    for e in episodes:
        counts = np.array([counts_all[int(c)] for c in e.class_ids])
        assert min_ways <= e.way <= min(max_ways, len(split_classes))
        assert len(set(e.class_ids.tolist())) == e.way and set(e.class_ids.tolist()) <= split_classes
        query = e.queries
        assert np.all(query == query[0])  # same query count for every class
        assert query[0] == min(max_query, (counts // 2).min())
        assert e.way <= e.num_support <= max_support
        assert np.all(e.shots >= 1)
        assert np.all(e.shots + query <= counts)
        for c, s, q in zip(e.class_ids, e.support, e.query):
            picked = np.concatenate([s, q])
            assert len(np.unique(picked)) == len(picked)  # no image twice
            assert picked.min() >= 0 and picked.max() < counts_all[int(c)]


def test_variable_rules_on_imbalanced_toy():
    rng = np.random.default_rng(0)
    spec = toy(list(rng.integers(2, 400, size=80)))
    sampler = sampling.EpisodeSampler(spec, "TRAIN", seed=3)
    episodes = [sampler.sample() for _ in range(600)]
    check_variable_rules(spec, S.TRAIN, episodes)
    ways = [e.way for e in episodes]
    assert min(ways) == 5 and max(ways) == 50  # the whole range is reached
    assert max(e.num_support for e in episodes) > 450
    assert min(q for e in episodes for q in e.queries) == 1  # a 2- or 3-image class limits the query


def test_support_budget_shrinks_with_tight_limits():
    spec = toy([30] * 20)
    sampler = sampling.EpisodeSampler(spec, "TRAIN", max_support_set_size=12, max_num_query=3, seed=1)
    for _ in range(200):
        e = sampler.sample()
        assert 5 <= e.way <= e.num_support <= 12 and np.all(e.queries == 3)


@needs_specs
@pytest.mark.parametrize("name,split", [("aircraft", "TRAIN"), ("fungi", "TEST"), ("quickdraw", "VALID"),
                                        ("mscoco", "VALID"), ("traffic_sign", "TEST")])
def test_variable_rules_on_real_specs(name, split):
    spec = real(name)
    sampler = sampling.EpisodeSampler(spec, split, seed=0)
    check_variable_rules(spec, S.Split.of(split), [sampler.sample() for _ in range(300)])


def test_fixed_mode():
    spec = toy([20] * 12)
    sampler = sampling.EpisodeSampler(spec, "TRAIN", num_ways=5, num_support=(1, 5), num_query=15, seed=2)
    shots = set()
    for _ in range(200):
        e = sampler.sample()
        assert e.way == 5 and np.all(e.queries == 15)
        assert len(set(e.shots.tolist())) == 1  # one shot count per episode, as Meta-Dataset
        shots.add(int(e.shots[0]))
    assert shots == {1, 2, 3, 4, 5}
    e = sampling.EpisodeSampler(spec, "TRAIN", num_ways=7, num_support=3, seed=0).sample()
    assert e.way == 7 and np.all(e.shots == 3) and np.all(e.queries == 10)  # query: min(10, 20 - 3)
    with pytest.raises(sampling.SamplerError, match="fewer than 21 images"):
        sampling.EpisodeSampler(spec, "TRAIN", num_ways=5, num_support=6, num_query=15)


def test_determinism():
    spec = toy(list(range(2, 102)))
    a = [sampling.EpisodeSampler(spec, "TRAIN", seed=11).sample() for _ in range(1)]
    runs = []
    for _ in range(2):
        sampler = sampling.EpisodeSampler(spec, "TRAIN", seed=11)
        runs.append([sampler.sample() for _ in range(30)])
    for x, y in zip(*runs):
        assert np.array_equal(x.class_ids, y.class_ids)
        assert all(np.array_equal(p, q) for p, q in zip(x.support + x.query, y.support + y.query))
    other = sampling.EpisodeSampler(spec, "TRAIN", seed=12)
    assert any(not np.array_equal(other.sample().class_ids, e.class_ids) for e in runs[0])
    assert np.array_equal(a[0].class_ids, runs[0][0].class_ids)


def test_bad_splits_and_classes_fail_fast():
    with pytest.raises(sampling.SamplerError, match="split TRAIN has 4 classes; .*min_ways=5"):
        sampling.EpisodeSampler(toy([10] * 4), "TRAIN")
    with pytest.raises(sampling.SamplerError, match=r"split VALID has 0 classes"):
        sampling.EpisodeSampler(toy([10] * 6), "VALID")
    with pytest.raises(sampling.SamplerError, match=r"fewer than 2 images.*class 3 \(1 images, /nowhere/3.tfrecords\)"):
        sampling.EpisodeSampler(toy([10, 10, 10, 1, 10, 10]), "TRAIN")


@needs_specs
def test_omniglot_alphabets():
    spec = real("omniglot")
    alphabet_of = {c: a for a in range(50) for c in spec.classes_of_superclass(a)}
    for split in S.SPLITS:
        sampler = sampling.EpisodeSampler(spec, split, seed=5)
        alphabets = set()
        for _ in range(300):
            e = sampler.sample()
            owners = {alphabet_of[int(c)] for c in e.class_ids}
            assert len(owners) == 1  # every episode inside one alphabet
            (owner,) = owners
            alphabets.add(owner)
            assert 5 <= e.way <= min(50, spec.classes_per_superclass[owner])
            assert owner in spec.superclasses(split)
            assert np.all(e.shots <= 10) and np.all(e.queries == 10)  # 20 images per character
        assert len(alphabets) == len(spec.superclasses(split))
    flat = sampling.EpisodeSampler(spec, "TRAIN", use_hierarchy=False, seed=0)
    assert any(len({alphabet_of[int(c)] for c in flat.sample().class_ids}) > 1 for _ in range(20))


@needs_specs
def test_imagenet_dag():
    spec = real("ilsvrc_2012")
    for split in S.SPLITS:
        leaves = spec.leaves_under(split)
        spans = {tuple(v) for v in leaves.values() if 5 <= len(v) <= 392}
        sampler = sampling.EpisodeSampler(spec, split, seed=9)
        big = 0
        for _ in range(300):
            e = sampler.sample()
            assert 5 <= e.way <= 50
            ids = sorted(e.class_ids.tolist())
            # the classes are all the leaves of one eligible node, or 50 of them
            assert any(set(ids) <= set(s) and (len(s) == len(ids) or len(ids) == 50) for s in spans)
            big += e.way == 50
        assert big > 0
    fixed = sampling.EpisodeSampler(spec, "TEST", num_ways=20, num_support=1, num_query=5, seed=0)
    assert fixed.sample().way == 20


STATS = {  # DESIGN.md, reference sampler on the real specs (mean, std)
    ("aircraft", "TRAIN"): {"ways": (27.8, 13.3), "support": (416, 130), "query": (278, 133)},
    ("omniglot", "TRAIN"): {"ways": (20.1, 10.5), "support": (96, 75)},
}


@needs_specs
@pytest.mark.parametrize("name,split", sorted(STATS))
def test_statistics_match_reference_sampler(name, split):
    sampler = sampling.EpisodeSampler(real(name), split, seed=0)
    episodes = [sampler.sample() for _ in range(2000)]
    values = {"ways": [e.way for e in episodes], "support": [e.num_support for e in episodes],
              "query": [e.num_query for e in episodes]}
    for key, (mean, std) in STATS[(name, split)].items():
        # Loose: 2000 episodes give a standard error of about std / 45; allow 5% + 4 standard errors.
        assert abs(np.mean(values[key]) - mean) < 0.05 * mean + 4 * std / math.sqrt(2000), key
        assert abs(np.std(values[key]) - std) < 0.12 * std, key
    assert max(values["support"]) <= 500
