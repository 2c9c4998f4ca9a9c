"""Meta-Dataset in Google's TFDS format, read directly: a small dataset built by a TFDS builder
that writes what meta_dataset's builder writes (tests/md_tfds_mock.py), then episodes sampled from
it by the episode pipeline: the exact examples, stored labels checked, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from lite_tf.data import md_tfds
from lite_tf.errors import ConfigError, DataError
from lite_tf.registry import get_source
from tests.md_tfds_mock import CLASSES, IMAGES, build, colour

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return build(str(tmp_path_factory.mktemp("tfds")))


def _classes_of(images) -> list:
    """The class of every image, from its colour (JPEG keeps a flat colour within a few levels)."""
    pixels = ((images[:, 6, 6, :] + 1.0) * 127.5)
    table = np.stack([colour(c) for c in range(len(IMAGES))]).astype(np.float32)
    return [int(np.argmin(np.abs(table - p).sum(1))) for p in pixels]


def test_episodes_hold_the_sampled_classes_of_the_split_and_their_images(data_dir):
    test_ids = set(range(CLASSES["TRAIN"] + CLASSES["VALID"], len(IMAGES)))
    dataset = md_tfds.make_tfds_episode_dataset(data_dir, ["aircraft"], "test", image_size=8, seed=3)
    for episode in dataset.take(4):
        way = int(episode["way"])
        assert 5 <= way <= 6
        support = _classes_of(episode["support_images"].numpy())
        query = _classes_of(episode["query_images"].numpy())
        mapping = {}
        for labels, classes in ((episode["support_labels"].numpy(), support), (episode["query_labels"].numpy(), query)):
            for label, class_id in zip(labels, classes):
                assert mapping.setdefault(int(label), class_id) == class_id  # one class per episode label
        assert set(mapping.values()) <= test_ids and len(set(mapping.values())) == way
        # a class's support + query never exceed its images (no image twice in an episode)
        counts = np.bincount(support + query, minlength=len(IMAGES))
        assert all(counts[c] <= IMAGES[c] for c in range(len(IMAGES)))


def test_the_registered_source_reads_the_tfds_dir_and_lists_its_sources(data_dir):
    source = get_source("metadataset_tfds")(version="v2")
    assert list(source.dataset_names(data_dir)) == ["aircraft"]
    episode = next(iter(source.episodes("train", image_size=8, seed=0, data_root=data_dir)))
    classes = set(_classes_of(episode["support_images"].numpy()))
    assert classes <= set(range(CLASSES["TRAIN"]))
    assert episode["support_images"].dtype == tf.float32


def test_class_ranges_come_from_the_metadata_and_are_checked_against_the_spec(data_dir):
    store = md_tfds.TfdsClassStore(md_tfds.source_dir(data_dir, "aircraft"), "v1")
    starts = np.cumsum([0] + IMAGES)
    first_test = CLASSES["TRAIN"] + CLASSES["VALID"]
    assert store.class_range("test", first_test) == (int(starts[first_test]), int(starts[first_test + 1]))
    assert store.class_range("train", 0) == (0, IMAGES[0])
    store.spec.images_per_class[first_test] += 1
    with pytest.raises(DataError, match=f"class {first_test} has {IMAGES[first_test]} examples in its slice but "
                                        f"{IMAGES[first_test] + 1} in the spec"):
        store.class_range("test", first_test)


def test_a_missing_source_names_the_build_command(data_dir):
    with pytest.raises(DataError, match="tfds build meta_dataset --config=fungi"):
        md_tfds.make_tfds_episode_dataset(data_dir, ["fungi"], "test", image_size=8)


def test_a_wrong_version_no_sources_or_a_bad_pipeline_option_fail_at_once(data_dir):
    with pytest.raises(ConfigError, match=r"protocol version must be one of \('v1', 'v2'\); got 'v3'"):
        md_tfds.make_tfds_episode_dataset(data_dir, ["aircraft"], "test", image_size=8, version="v3")
    with pytest.raises(ConfigError, match="needs at least one Meta-Dataset source name"):
        md_tfds.make_tfds_episode_dataset(data_dir, [], "test", image_size=8)
    with pytest.raises(ConfigError, match="num_episodes must be a positive integer; got 0"):
        md_tfds.make_tfds_episode_dataset(data_dir, ["aircraft"], "test", image_size=8, num_episodes=0)


def test_metadataset_v2_picks_the_protocol_sources_per_split_from_records_or_tfds(tmp_path, data_dir):
    from lite_tf.data.synthetic import fake

    root = str(tmp_path / "records")
    for name in ("omniglot", "mscoco"):
        path = f"{root}/{name}"
        fake.write_fake_dataset(fake.flat_toy_spec(name, path, classes=(5, 5, 5), images=4), path, image_size=16)
    from lite_tf.sources.metadataset_tfds import MetaDatasetV2

    with pytest.raises(DataError, match=r"lacks the MD-v2 source\(s\) \['ilsvrc_2012_v2', 'aircraft'"):
        MetaDatasetV2().episodes("train", image_size=8, seed=0, data_root=root)
    source = MetaDatasetV2(valid_datasets=["omniglot", "mscoco"], test_datasets=["aircraft"])
    episode = next(iter(source.episodes("valid", image_size=8, seed=0, data_root=root)))
    assert episode["support_images"].shape[1:] == (8, 8, 3)
    # the same source on a TFDS data dir reads Google's build
    episode = next(iter(source.episodes("test", image_size=8, seed=0, data_root=data_dir)))
    assert set(_classes_of(episode["query_images"].numpy())) <= set(range(7, len(IMAGES)))


def test_the_mdv2_experiment_files_bind_the_v2_sources():
    from lite_tf.experiment import parse_gin

    for learner in ("protonets", "simple_cnaps", "cnaps", "finetuner"):
        text = parse_gin([f"gin/experiments/mdv2_{learner}.gin"], [])
        assert "Training.source = @sources.metadataset_v2()" in text and "Training.tasks_per_update = 16" in text
        assert "LiteConfig.h = 40" in text and "LiteConfig.chunk_size = 40" in text
    assert md_tfds.MD_V2_TRAIN[0] == "ilsvrc_2012_v2" and "vgg_flower" not in md_tfds.MD_V2_TRAIN + md_tfds.MD_V2_TEST


@pytest.mark.parametrize("cache_bytes", [0, 2**30])  # each record's byte range / the shards in memory
def test_reads_the_exact_examples_across_shards_in_any_order(data_dir, cache_bytes):
    from lite_tf.data.metadataset import reading, records, store as store_lib

    store = md_tfds.TfdsClassStore(md_tfds.source_dir(data_dir, "aircraft"), "v2")
    assert len(store._files) == 3
    assert max(len(store.class_records(c)) for c in range(len(IMAGES))) == 2  # some class crosses a shard
    table = store_lib.ClassTable([store], [list(range(len(IMAGES)))])
    reader = reading.RecordReader(table, cache_bytes)
    assert reader.in_memory == bool(cache_bytes)
    expected = np.repeat(np.arange(len(IMAGES)), IMAGES)   # all_classes is sorted by class
    positions = np.random.default_rng(0).permutation(len(expected))
    starts = np.cumsum([0] + IMAGES)
    slots = np.array([table.slot(0, c) for c in expected[positions]], np.int32)
    numbers = positions - starts[expected[positions]]
    contents = next(iter(reader.contents())) if reader.in_memory else None
    _, labels = records.parse_examples(reader.read(tf.constant(slots), tf.constant(numbers), contents))
    np.testing.assert_array_equal(labels.numpy(), expected[positions])
    store._slices["test"]["5"] = [len(expected) - 1, len(expected) - 1 + IMAGES[12]]
    outside = rf"class 12's slice \[63, 67\) lies outside the split's {len(expected)} examples"
    with pytest.raises(DataError, match=outside):
        store.class_records(12)


def test_a_stored_label_that_is_not_its_class_stops_the_episode_naming_source_class_and_record(tmp_path):
    starts = np.cumsum([0] + IMAGES)
    root = build(str(tmp_path), wrong_labels={int(starts[9]) + 2: 10})  # class 9's third example says 10
    folder = md_tfds.source_dir(root, "aircraft")
    # every test class, 3 support + 1 query each: all 4 examples of class 9 are in every episode
    dataset = md_tfds.make_tfds_episode_dataset(root, ["aircraft"], "test", image_size=8, num_episodes=1,
                                                sampler_kwargs=dict(num_ways=6, num_support=3, num_query=1))
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        next(iter(dataset))
    line = error.value.message.splitlines()[0]  # TF's "{{function_node ...}} ... ParallelMapV2: " comes first
    assert line[line.index("assertion failed:"):] == (
        "assertion failed: [Record(s) whose label feature is not the id of their class, in] "
        f"[Meta-Dataset TFDS source aircraft ({folder})] [class ids:] [9] [labels found:] [10] "
        "[record numbers:] [2]")


def test_a_seed_fixes_the_episodes_and_their_pixels(data_dir):
    def episodes(seed, **options):
        dataset = md_tfds.make_tfds_episode_dataset(data_dir, ["aircraft"], "train", image_size=8, seed=seed,
                                                    num_episodes=3, episodes_ahead=2, **options)
        return [{k: v.numpy() for k, v in e.items()} for e in dataset]

    first = episodes(5)
    for again in (episodes(5), episodes(5, cache_bytes=0)):  # also when read from the files
        for a, b in zip(first, again, strict=True):
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    other = episodes(6)
    assert any(not np.array_equal(a["support_images"], b["support_images"]) or a["way"] != b["way"]
               for a, b in zip(first, other))
