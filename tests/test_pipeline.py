"""Episode pipeline: structure, pixel range, label consistency, no duplicates, determinism,
multi-source, augmentation, and a clear error for every kind of bad input."""
import os

import numpy as np
import pytest
import tensorflow as tf

from lite_tf.data.metadataset import pipeline, records, sampling, store
from lite_tf.data.metadataset import spec as S
from lite_tf.episode import episode_signature, validate_episode
from lite_tf.errors import ConfigError

SIZE = 16


def code_image(source, class_id, index):
    """A solid PNG whose colour encodes (source, class, index) exactly; resizing keeps it."""
    value = class_id * 10 + index
    image = np.zeros((20, 24, 3), np.uint8)
    image[..., 0] = value // 4 * 4
    image[..., 1] = value % 4 * 60
    image[..., 2] = 40 + 160 * source
    return tf.io.encode_png(image).numpy()


def decode_code(pixel):
    """(source, class, index) back from a [-1, 1] or uint8 pixel."""
    v = np.asarray(pixel, np.float64)
    if v.max() <= 1.0:
        v = (v + 1.0) * 127.5
    v = np.round(v).astype(int)
    value = v[0] + int(round(v[1] / 60))
    return (int(v[2] > 120), value // 10, value % 10)


def make_source(root, name, counts=None, splits=(8, 0, 0), source=0):
    total = sum(splits)
    counts = counts or [10] * total
    folder = os.path.join(root, name)
    spec = S.make_flat_spec(name, folder, dict(zip(("TRAIN", "VALID", "TEST"), splits)), dict(enumerate(counts)))
    for c, n in enumerate(counts):
        records.write_class_file(records.class_file_path(folder, c),
                                 [code_image(source, c, i) for i in range(n)], c)
    S.write_spec(spec, folder)
    return folder


def take(dataset, n):
    return [{k: v.numpy() for k, v in e.items()} for e in dataset.take(n)]


def test_structure_range_labels_and_no_duplicates(tmp_path):
    folder = make_source(str(tmp_path), "toy", counts=[10, 10, 4, 10, 7, 10, 10, 2])
    dataset = pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, seed=1)
    expected = episode_signature(SIZE)
    for key, value in expected.items():
        assert dataset.element_spec[key].is_compatible_with(value)
    for e in take(dataset, 6):
        validate_episode(e, image_size=SIZE)
        way = int(e["way"])
        assert 5 <= way <= 8
        assert e["support_images"].shape[1:] == (SIZE, SIZE, 3) and e["support_images"].dtype == np.float32
        assert -1.0 <= e["support_images"].min() and e["query_images"].max() <= 1.0
        assert set(e["support_labels"]) == set(range(way)) == set(e["query_labels"])
        seen, class_of_label = set(), {}
        for part in ("support", "query"):
            for image, label in zip(e[f"{part}_images"], e[f"{part}_labels"]):
                assert np.ptp(image.reshape(-1, 3), axis=0).max() < 1e-5  # solid colour survived decode and resize
                code = decode_code(image[0, 0])
                assert code not in seen, "an image appears twice in one episode"
                seen.add(code)
                assert class_of_label.setdefault(int(label), code[1]) == code[1]
        assert len(set(class_of_label.values())) == way
        q = np.bincount(e["query_labels"])
        assert np.all(q == q[0]) and q[0] == 1  # the 2-image class (if drawn) or min count // 2


def test_same_seed_same_episodes(tmp_path):
    folder = make_source(str(tmp_path), "toy")
    a = take(pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, seed=4), 3)
    b = take(pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, seed=4), 3)
    c = take(pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, seed=5), 3)
    for x, y in zip(a, b):
        assert all(np.array_equal(x[k], y[k]) for k in x)
    assert any(x["support_images"].shape != z["support_images"].shape
               or not np.array_equal(x["support_images"], z["support_images"]) for x, z in zip(a, c))


def test_multi_source_uniform(tmp_path):
    first = make_source(str(tmp_path), "one", source=0)
    second = make_source(str(tmp_path), "two", source=1)
    dataset = pipeline.make_episode_dataset(str(tmp_path), "TRAIN", datasets=["one", "two"], image_size=SIZE,
                                            image_dtype=tf.uint8, seed=0)
    sources = []
    for e in take(dataset, 16):
        assert e["support_images"].dtype == np.uint8
        codes = {decode_code(i[0, 0])[0] for i in np.concatenate([e["support_images"], e["query_images"]])}
        assert len(codes) == 1  # one source per episode
        sources.append(codes.pop())
    assert 3 <= sum(sources) <= 13
    same = pipeline.make_episode_dataset([first, S.load_spec(second)], "TRAIN", image_size=SIZE,
                                         image_dtype=tf.uint8, seed=0)
    assert all(np.array_equal(x["query_images"], y["query_images"]) for x, y in zip(take(same, 4), take(dataset, 4)))


def test_fixed_mode_and_augmentation(tmp_path):
    folder = make_source(str(tmp_path), "toy")
    kwargs = dict(sampler_kwargs={"num_ways": 5, "num_support": 2, "num_query": 3}, image_size=SIZE, seed=2)
    plain = take(pipeline.make_episode_dataset(folder, "TRAIN", **kwargs), 2)
    jitter = pipeline.Augmentation(brightness=0.3, contrast=0.3, flip=True, crop_padding=2)
    augmented = take(pipeline.make_episode_dataset(folder, "TRAIN", support_augmentation=jitter, **kwargs), 2)
    for p, a in zip(plain, augmented):
        assert p["support_images"].shape == (10, SIZE, SIZE, 3) and p["query_images"].shape[0] == 15
        assert np.array_equal(p["query_images"], a["query_images"])  # query not augmented
        assert not np.allclose(p["support_images"], a["support_images"], atol=1e-3)
        assert -1.0 <= a["support_images"].min() and a["support_images"].max() <= 1.0
        assert np.array_equal(p["support_labels"], a["support_labels"])


@pytest.mark.parametrize("size", [0, 4, 2000, 224.0, True])
def test_image_size_out_of_range(tmp_path, size):
    with pytest.raises(ValueError, match="image_size"):
        pipeline.make_episode_dataset(str(tmp_path), "TRAIN", image_size=size)


def test_missing_and_empty_class_files(tmp_path):
    folder = make_source(str(tmp_path), "toy")
    os.remove(os.path.join(folder, "3.tfrecords"))
    with pytest.raises(store.PipelineError, match=r"'toy'.*class 3: .*3\.tfrecords is missing"):
        pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE)
    open(os.path.join(folder, "3.tfrecords"), "wb").close()
    with pytest.raises(store.PipelineError, match=r"class 3: .*3\.tfrecords is empty"):
        pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE)


def test_truncated_file_and_count_mismatch(tmp_path):
    folder = make_source(str(tmp_path), "toy")
    path = os.path.join(folder, "5.tfrecords")
    with open(path, "rb+") as f:
        f.truncate(os.path.getsize(path) - 10)
    with pytest.raises(store.PipelineError, match=r"'toy' class 5: .*5\.tfrecords is truncated"):
        pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE)
    records.write_class_file(path, [code_image(0, 5, i) for i in range(9)], 5)
    with pytest.raises(store.PipelineError, match=r"class 5: the spec says 10 images but .*5\.tfrecords holds 9"):
        pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE)
    # Lazy indexing reports the same problem when a planned episode draws the class (all 8 here) ...
    with pytest.raises(store.PipelineError, match=r"class 5: the spec says 10 images"):
        pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, index="lazy",
                                      sampler_kwargs={"num_ways": 8})
    # ... and never reads the headers of a class no planned episode draws.
    lazy = pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, index="lazy", num_episodes=1,
                                         sampler_kwargs={"num_ways": 5}, seed=0)
    drawn = {decode_code(image[0, 0])[1] for image in take(lazy, 1)[0]["support_images"]}
    assert 5 not in drawn and len(drawn) == 5


def test_split_too_small_and_tiny_class(tmp_path):
    folder = make_source(str(tmp_path), "toy", counts=[10] * 7 + [1], splits=(4, 4, 0))
    with pytest.raises(sampling.SamplerError, match="'toy' split TRAIN has 4 classes"):
        pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE)
    with pytest.raises(sampling.SamplerError, match=r"'toy' split VALID: 1 class\(es\) have fewer than 2 images.*class 7"):
        pipeline.make_episode_dataset(folder, "VALID", image_size=SIZE, sampler_kwargs={"min_ways": 3})


CACHE_ON_OFF = pytest.mark.parametrize("decoded_cache_bytes", [0, pipeline.DEFAULT_DECODED_CACHE_BYTES],
                                       ids=["decoded_per_episode", "decoded_cache"])


@CACHE_ON_OFF
def test_non_image_bytes_and_wrong_label(tmp_path, decoded_cache_bytes):
    folder = make_source(str(tmp_path), "toy", counts=[3] * 5, splits=(5, 0, 0))
    good = [code_image(0, 2, i) for i in range(3)]
    records.write_class_file(os.path.join(folder, "2.tfrecords"), good[:2] + [b"<html>not an image</html>"], 2)
    dataset = pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, sampler_kwargs={"num_ways": 5},
                                            decoded_cache_bytes=decoded_cache_bytes)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"not an encoded JPEG.*toy.*class ids:\] \[2\] \[record numbers in their class file:\] \[2\]"):
        take(dataset, 1)
    records.write_class_file(os.path.join(folder, "2.tfrecords"), good, 4)
    dataset = pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, sampler_kwargs={"num_ways": 5},
                                            decoded_cache_bytes=decoded_cache_bytes)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label feature is not the id of their class.*toy.*\[labels found:\] \[4( 4)*\]"):
        take(dataset, 1)
    with pytest.raises(store.PipelineError, match=r"'toy' class 2 file .*2\.tfrecords record 0: label feature is 4"):
        store.verify_dataset(folder)


def test_verify_dataset_finds_damaged_image(tmp_path):
    folder = make_source(str(tmp_path), "toy", counts=[3] * 5, splits=(5, 0, 0))
    assert store.verify_dataset(folder) == 15
    broken = code_image(0, 1, 0)[:30]  # right signature, body cut off
    records.write_class_file(os.path.join(folder, "1.tfrecords"), [broken] + [code_image(0, 1, i) for i in (1, 2)], 1)
    with pytest.raises(store.PipelineError, match=r"class 1 file .*1\.tfrecords record 0: image does not decode"):
        store.verify_dataset(folder)


def test_augmentation_arguments_checked(tmp_path):
    with pytest.raises(ValueError, match="Augmentation.hue"):
        pipeline.Augmentation(hue=0.7)
    with pytest.raises(ValueError, match="Augmentation.contrast"):
        pipeline.Augmentation(contrast=-0.1)
    folder = make_source(str(tmp_path), "toy")
    with pytest.raises(ValueError, match="crop_padding"):
        pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE,
                                      query_augmentation=pipeline.Augmentation(crop_padding=SIZE))


@CACHE_ON_OFF
@pytest.mark.parametrize("damage", ["png", "jpeg", "all"])
def test_damaged_image_data_is_named(tmp_path, damage, decoded_cache_bytes):
    from lite_tf.data.synthetic import fake

    folder = make_source(str(tmp_path), "toy", counts=[3] * 5, splits=(5, 0, 0))
    good = [code_image(0, 1, i) for i in range(3)]
    if damage == "png":
        images = [good[0], good[1][:40], good[2]]  # right signature, body cut off
    elif damage == "jpeg":
        jpeg = fake.random_jpeg(np.random.default_rng(0), 32)
        images = [good[0], good[1], jpeg[:len(jpeg) // 3]]
    else:
        images = [g[:40] for g in good]
    records.write_class_file(os.path.join(folder, "1.tfrecords"), images, 1)
    dataset = pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, sampler_kwargs={"num_ways": 5},
                                            decoded_cache_bytes=decoded_cache_bytes)
    record = {"png": "1", "jpeg": "2", "all": "[0-2]"}[damage]
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"could not be decoded.*toy.*class ids:\] \[1.*record numbers in their class file:\] \[.*{record}"):
        take(dataset, 1)


@pytest.mark.parametrize("size", [84, 320])
def test_large_image_sizes(tmp_path, size):
    folder = make_source(str(tmp_path), "toy", counts=[3] * 5, splits=(5, 0, 0))
    episode = take(pipeline.make_episode_dataset(folder, "TRAIN", image_size=size, image_dtype=tf.uint8,
                                                 sampler_kwargs={"num_ways": 5, "num_support": 1, "num_query": 1}), 1)[0]
    assert episode["support_images"].shape == (5, size, size, 3) and episode["query_images"].shape == (5, size, size, 3)
    codes = {decode_code(image[size // 2, size // 2]) for image in episode["support_images"]}
    assert {code[1] for code in codes} == set(range(5))


@pytest.mark.parametrize("dtype", [tf.uint8, tf.float32])
@pytest.mark.parametrize("augmented", [False, True])
def test_decoded_cache_gives_exactly_the_decoded_episodes(tmp_path, dtype, augmented):
    """Cached or decoded per episode, episodes are bit-identical (JPEG noise, resized, augmented)."""
    from lite_tf.data.augment import Augmentation
    from lite_tf.data.synthetic import fake

    folder = os.path.join(str(tmp_path), "noise")
    fake.write_fake_dataset(fake.flat_toy_spec("noise", folder, classes=(8, 0, 0), images=6), folder, image_size=30)
    augmentation = Augmentation(flip=True, brightness=0.2, contrast=0.3, crop_padding=2) if augmented else None
    kwargs = dict(image_size=20, seed=1, image_dtype=dtype, support_augmentation=augmentation, episodes_ahead=2)
    cached = take(pipeline.make_episode_dataset(folder, "TRAIN", **kwargs), 4)  # beyond the plan too
    decoded = take(pipeline.make_episode_dataset(folder, "TRAIN", decoded_cache_bytes=0, **kwargs), 4)
    for a, b in zip(cached, decoded):
        assert a["support_images"].dtype == dtype.as_numpy_dtype
        assert all(np.array_equal(a[key], b[key]) for key in a)
    assert len({episode["support_images"].tobytes() for episode in cached}) == 4  # four different episodes


def test_decoded_cache_is_used_only_when_every_record_fits(tmp_path):
    """The cache decodes every record of the split on the first episode, so a damaged record of a
    class the episode does not draw fails with the cache and not without; the byte budget decides."""
    folder = make_source(str(tmp_path), "toy", counts=[4] * 8, splits=(8, 0, 0))
    kwargs = dict(image_size=SIZE, image_dtype=tf.uint8, seed=2, num_episodes=1,
                  sampler_kwargs={"num_ways": 5, "num_support": 1, "num_query": 1})
    episode = take(pipeline.make_episode_dataset(folder, "TRAIN", decoded_cache_bytes=0, **kwargs), 1)[0]
    drawn = {decode_code(image[0, 0])[1] for image in np.concatenate([episode["support_images"], episode["query_images"]])}
    spare = min(set(range(8)) - drawn)
    records.write_class_file(os.path.join(folder, f"{spare}.tfrecords"),
                             [code_image(0, spare, i) for i in range(3)] + [code_image(0, spare, 3)[:40]], spare)
    needed = 8 * 4 * SIZE * SIZE * 3  # every record of the split, uint8
    for budget in (0, needed - 1):
        take(pipeline.make_episode_dataset(folder, "TRAIN", decoded_cache_bytes=budget, **kwargs), 1)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"could not be decoded.*decoded-image cache.*toy.*class ids:\] \[{spare}\] "
                             rf"\[record numbers in their class file:\] \[3\]"):
        take(pipeline.make_episode_dataset(folder, "TRAIN", decoded_cache_bytes=needed, **kwargs), 1)


@pytest.mark.parametrize("value", [-1, 1.5, True, "1G"])
def test_bad_decoded_cache_bytes_raise(tmp_path, value):
    folder = make_source(str(tmp_path), "toy")
    with pytest.raises(ConfigError, match="make_episode_dataset.decoded_cache_bytes must be a non-negative integer"):
        pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, decoded_cache_bytes=value)


@pytest.mark.parametrize("name,value", [("num_episodes", -3), ("num_episodes", 0), ("num_episodes", 2.5),
                                        ("episodes_ahead", 0), ("parallel_episodes", True)])
def test_bad_episode_counts_raise(tmp_path, name, value):
    folder = make_source(str(tmp_path), "toy")
    with pytest.raises(ConfigError, match=rf"make_episode_dataset.{name} must be a positive integer"):
        pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, **{name: value})


def test_num_episodes_ends_the_dataset(tmp_path):
    folder = make_source(str(tmp_path), "toy")
    assert len(take(pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, num_episodes=3), 10)) == 3


def test_memory_and_file_reading_agree(tmp_path):
    folder = make_source(str(tmp_path), "toy", counts=[10, 10, 4, 10, 7, 10, 10, 2])
    in_memory = take(pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, seed=3), 4)
    from_files = take(pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, seed=3, cache_bytes=0), 4)
    for a, b in zip(in_memory, from_files):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def codes_of(episode):
    return [[decode_code(image[0, 0]) for image in episode[f"{part}_images"]] for part in ("support", "query")]


def test_episodes_beyond_the_plan_draw_fresh_records(tmp_path):
    folder = make_source(str(tmp_path), "toy")
    short = take(pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, seed=6, episodes_ahead=3), 9)
    long = take(pipeline.make_episode_dataset(folder, "TRAIN", image_size=SIZE, seed=6, episodes_ahead=50), 3)
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(short[:3], long) for k in a)  # the plan's own episodes
    changed = 0
    for number, episode in enumerate(short):
        planned = short[number % 3]
        assert np.array_equal(episode["support_labels"], planned["support_labels"])  # same class structure
        assert np.array_equal(episode["query_labels"], planned["query_labels"])
        support, query = codes_of(episode)
        assert len(set(support + query)) == len(support) + len(query)  # no image twice
        classes = {}
        for code, label in zip(support + query, np.concatenate([episode["support_labels"], episode["query_labels"]])):
            assert classes.setdefault(int(label), code[1]) == code[1]
        assert [classes[label] for label in sorted(classes)] == \
            [codes_of(planned)[0][list(planned["support_labels"]).index(label)][1] for label in sorted(classes)]
        changed += codes_of(episode) != codes_of(planned)
    assert changed >= 5  # the 6 episodes beyond the plan drew other records


def test_reference_resize_matches_tf1_align_corners(tmp_path):
    folder = os.path.join(str(tmp_path), "noise")
    spec = S.make_flat_spec("noise", folder, {"TRAIN": 5, "VALID": 0, "TEST": 0}, {c: 2 for c in range(5)})
    rng = np.random.default_rng(0)
    pixels = [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(5)]
    for c in range(5):  # both images of a class are the same, so every image's class gives its pixels
        records.write_class_file(records.class_file_path(folder, c), [tf.io.encode_png(pixels[c]).numpy()] * 2, c)
    S.write_spec(spec, folder)
    reference = [(tf.compat.v1.image.resize(p, [126, 126], align_corners=True) / 127.5 - 1.0).numpy() for p in pixels]
    kwargs = dict(image_size=126, sampler_kwargs={"num_ways": 5, "num_support": 1, "num_query": 1}, seed=0)
    for method, expect_equal in (("reference", True), ("bilinear", False)):
        episode = take(pipeline.make_episode_dataset(folder, "TRAIN", resize_method=method, **kwargs), 1)[0]
        for image in np.concatenate([episode["support_images"], episode["query_images"]]):
            closest = min(np.abs(image - r).max() for r in reference)
            assert (closest == 0.0) == expect_equal and (expect_equal or closest * 127.5 > 10)
