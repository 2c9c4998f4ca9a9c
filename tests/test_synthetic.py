"""Procedural synthetic data: determinism, distinct sources and classes, sizes, records/spec agreement."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from lite_tf.data.metadataset import records
from lite_tf.data.synthetic import procedural as synthetic
from lite_tf.data.writing import writer
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.synthetic import procedural as synthetic

SOURCES = synthetic.available_sources()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB"))


def _read_class(path):
    import tensorflow as tf

    out = []
    for serialized in tf.data.TFRecordDataset(path):
        image, label = records.parse_example(serialized)
        out.append((image.numpy(), int(label)))
    return out


def test_sources_listed():
    assert SOURCES == ["glyphs", "shapes", "textures"]
    with pytest.raises(ValueError, match="Unknown synthetic source 'nope'"):
        synthetic.class_images("nope", 0, 0, 1, 16)


@pytest.mark.parametrize("source", SOURCES)
def test_same_seed_same_bytes_other_seed_other_bytes(source):
    first = synthetic.class_images(source, 3, 5, 3, 32)
    again = synthetic.class_images(source, 3, 5, 3, 32)
    other_seed = synthetic.class_images(source, 4, 5, 3, 32)
    assert first == again
    assert all(a != b for a, b in zip(first, other_seed))


@pytest.mark.parametrize("size", [16, 64, 224, 320])
def test_image_sizes(size):
    for source in SOURCES:
        pixels = synthetic.render_image(source, 0, 1, 0, size)
        assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
        assert _decode(synthetic.encode_jpeg(pixels)).shape == (size, size, 3)


@pytest.mark.parametrize("bad", [0, 7, 5000, 32.0, True])
def test_bad_image_size_is_rejected(bad):
    with pytest.raises(ValueError, match="image_size"):
        synthetic.render_image("glyphs", 0, 0, 0, bad)


def test_images_vary_within_a_class():
    for source in SOURCES:
        images = np.stack([synthetic.render_image(source, 0, 2, i, 48) for i in range(4)]).astype(np.float32)
        pairwise = [np.abs(images[i] - images[j]).mean() for i in range(4) for j in range(i + 1, 4)]
        assert min(pairwise) > 5.0, (source, pairwise)


def test_classes_have_different_prototypes():
    for source in SOURCES:
        prototypes = [synthetic.class_prototype(source, 0, c) for c in range(6)]
        for key in prototypes[0]:
            values = [np.asarray(p[key], dtype=np.float64).ravel() for p in prototypes]
            # Every pair of classes differs in this parameter (shape or value).
            for i in range(6):
                for j in range(i + 1, 6):
                    assert values[i].shape != values[j].shape or not np.allclose(values[i], values[j]), \
                        (source, key, i, j)


def _gray_edges_and_spectrum(source):
    """Mean gradient energy and share of spectral power at high frequency, over a few images."""
    edges, high = [], []
    for c in range(3):
        for i in range(3):
            gray = synthetic.render_image(source, 0, c, i, 64).astype(np.float32).mean(-1)
            edges.append(np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean())
            power = np.abs(np.fft.fftshift(np.fft.fft2(gray - gray.mean()))) ** 2
            yy, xx = np.mgrid[-32:32, -32:32]
            radius = np.hypot(yy, xx)
            high.append(power[(radius > 4) & (radius < 24)].sum() / power.sum())
    return float(np.mean(edges)), float(np.mean(high))


def test_sources_look_different():
    # Textures fill the frame with periodic structure; glyphs and shapes are objects on a smooth
    # background, so they have fewer edges and less of their power away from the lowest frequencies.
    stats = {source: _gray_edges_and_spectrum(source) for source in SOURCES}
    for other in ("glyphs", "shapes"):
        assert stats["textures"][0] > 1.5 * stats[other][0], stats  # gradient energy
        assert stats["textures"][1] > 1.3 * stats[other][1], stats  # share of mid/high frequencies
    # Same seed and class id in two sources never give similar images.
    for a in SOURCES:
        for b in SOURCES:
            if a < b:
                diff = np.abs(synthetic.render_image(a, 0, 0, 0, 64).astype(np.float32)
                              - synthetic.render_image(b, 0, 0, 0, 64).astype(np.float32)).mean()
                assert diff > 10.0, (a, b, diff)


def test_written_dataset_matches_spec_and_is_byte_identical(tmp_path):
    kwargs = dict(image_size=24, classes_per_split=(3, 2, 1), images_per_class=4, seed=7, progress=False)
    report = synthetic.write_synthetic_dataset(tmp_path / "a", "shapes", workers=2, **kwargs)
    synthetic.write_synthetic_dataset(tmp_path / "b", "shapes", workers=1, **kwargs)
    folder = tmp_path / "a" / "shapes"
    spec = spec_lib.load_spec(folder)
    assert report.written == 6 and report.resumed == 0
    assert spec.name == "shapes"
    assert [spec.num_classes(s) for s in spec_lib.SPLITS] == [3, 2, 1]
    assert spec.classes("VALID") == [3, 4]
    assert spec.class_names[4] == "shapes_0004"
    for class_id in range(6):
        path = records.class_file_path(folder, class_id)
        assert records.count_records(path, verify_checksums=True) == spec.images_per_class[class_id] == 4
        contents = _read_class(path)
        assert [label for _, label in contents] == [class_id] * 4
        expected = synthetic.class_images("shapes", 7, class_id, 4, 24)
        assert [image for image, _ in contents] == expected
        assert _decode(contents[0][0]).shape == (24, 24, 3)
        with open(path, "rb") as fa, open(tmp_path / "b" / "shapes" / f"{class_id}.tfrecords", "rb") as fb:
            assert fa.read() == fb.read()


def test_write_is_idempotent_and_refuses_other_settings(tmp_path):
    kwargs = dict(image_size=16, classes_per_split=(2, 1, 1), images_per_class=3, progress=False, workers=1)
    synthetic.write_synthetic_dataset(tmp_path, "glyphs", **kwargs)
    mtime = os.path.getmtime(records.class_file_path(tmp_path / "glyphs", 0))
    again = synthetic.write_synthetic_dataset(tmp_path, "glyphs", **kwargs)
    assert again.already_complete and again.written == 0
    assert os.path.getmtime(records.class_file_path(tmp_path / "glyphs", 0)) == mtime
    with pytest.raises(writer.DatasetWriteError, match=r"glyphs already holds a different dataset .*seed"):
        synthetic.write_synthetic_dataset(tmp_path, "glyphs", seed=1, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(classes_per_split=(0, 0, 0)), "classes_per_split"),
    (dict(classes_per_split=(2, 1)), "classes_per_split"),
    (dict(images_per_class=1), "images_per_class"),
    (dict(seed=-1), "seed"),
    (dict(jpeg_quality=0), "jpeg_quality"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic.write_synthetic_dataset(tmp_path, "glyphs", **{"image_size": 16, "progress": False, **kwargs})
    assert not (tmp_path / "glyphs").exists()


@pytest.mark.slow
def test_protonets_learns_glyphs(tmp_path):
    """A conv4 ProtoNets starts near chance (20% in 5-way) and clearly improves with meta-training."""
    import keras
    import tensorflow as tf

    from lite_tf.learners.protonets import ProtoNets
    from lite_tf import EpisodicModel, LiteConfig
    from lite_tf.data.metadataset.pipeline import make_episode_dataset

    size = 32
    folder = synthetic.write_synthetic_dataset(tmp_path, "glyphs", image_size=size, classes_per_split=(20, 0, 8),
                                               images_per_class=20, progress=False).dataset_dir
    kwargs = dict(image_size=size, sampler_kwargs=dict(num_ways=5, num_support=5, num_query=5),
                  image_dtype=tf.uint8)
    model = EpisodicModel(ProtoNets("conv4"), size, lite=LiteConfig(mode="lite", h=10), seed=0)
    model.compile(keras.optimizers.Adam(1e-3))
    test = make_episode_dataset(folder, "TEST", seed=1, **kwargs).take(60)
    before = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    model.fit(make_episode_dataset(folder, "TRAIN", seed=2, **kwargs), steps_per_epoch=200, epochs=1, verbose=0)
    after = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    assert before < 0.35, before
    assert after > before + 0.2, (before, after)


def test_gin_file_binds_the_writer(tmp_path):
    import gin

    path = os.path.join(os.path.dirname(__file__), "..", "gin", "data", "synthetic.gin")
    with gin.unlock_config():
        gin.parse_config_files_and_bindings([path], ["lite_tf.data.write_synthetic_dataset.image_size = 16",
                                                     "lite_tf.data.write_synthetic_dataset.images_per_class = 2"])
    try:
        assert gin.query_parameter("lite_tf.data.write_synthetic_dataset.classes_per_split") == (20, 8, 8)
        report = synthetic.write_synthetic_dataset(tmp_path, "textures", progress=False, workers=1)
        spec = spec_lib.load_spec(report.dataset_dir)
        assert [spec.num_classes(s) for s in spec_lib.SPLITS] == [20, 8, 8]
        assert set(spec.images_per_class.values()) == {2}
        assert _decode(_read_class(records.class_file_path(report.dataset_dir, 0))[0][0]).shape == (16, 16, 3)
    finally:
        gin.clear_config()
