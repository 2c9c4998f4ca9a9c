"""Converters (lite_tf/data/writing/convert.py, lite_tf/data/writing/request.py, tools/convert.py): round trips, splits, resume, bad input, TFDS."""
import functools
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from lite_tf.data.metadataset import records
from lite_tf.data.writing import convert
from lite_tf.data.writing import writer
from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing import convert, writer


def _smooth_image(seed: int, height: int = 24, width: int = 32, channels: int = 3) -> np.ndarray:
    """A smooth colour field: JPEG keeps it within a few grey levels, unlike noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [rng.uniform(40, 200) + rng.uniform(-50, 50) * xx + rng.uniform(-50, 50) * yy for _ in range(channels)]
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)


def _write(path, pixels, fmt, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = Image.fromarray(pixels if pixels.shape[-1] != 1 else pixels[..., 0])
    if mode:
        image = image.convert(mode)
    image.save(path, format=fmt)


def _read_dataset(folder):
    """class id -> list of (decoded RGB pixels, label, raw bytes) read back with TensorFlow."""
    import tensorflow as tf

    spec = spec_lib.load_spec(folder)
    out = {}
    for class_id in range(sum(spec.classes_per_split.values())):
        items = []
        for serialized in tf.data.TFRecordDataset(spec.class_file(class_id)):
            image, label = records.parse_example(serialized)
            pixels = tf.io.decode_jpeg(image, channels=3).numpy()
            items.append((pixels, int(label), image.numpy()))
        out[class_id] = items
    return spec, out


@pytest.fixture
def image_folder(tmp_path):
    """Five classes x 3 images: RGB JPEG, RGB PNG, and a grey PNG or RGBA PNG; plus the originals."""
    root = tmp_path / "animals"
    originals = {}
    for c, name in enumerate(["cat", "cow", "dog", "emu", "yak"]):
        jpeg, png = _smooth_image(10 * c), _smooth_image(10 * c + 1, 20, 28)
        _write(root / name / "a.jpg", jpeg, "JPEG")
        _write(root / name / "b.png", png, "PNG")
        if c % 2:
            grey = _smooth_image(10 * c + 2, channels=1)
            _write(root / name / "sub" / "c.png", grey, "PNG")
            third = np.repeat(grey, 3, -1)
        else:
            rgba = np.concatenate([_smooth_image(10 * c + 2), np.full((24, 32, 1), 255, np.uint8)], -1)
            rgba[:4, :4, 3] = 0  # a transparent corner becomes white
            _write(root / name / "c.png", rgba, "PNG")
            third = rgba[..., :3].copy()
            third[:4, :4] = 255
        originals[name] = [("a.jpg", jpeg), ("b.png", png), ("c.png", third)]
    return root, originals


def test_image_folder_round_trip(tmp_path, image_folder):
    root, originals = image_folder
    report = convert.convert_image_folder(root, tmp_path / "out", split_fractions=(0.6, 0.2, 0.2), seed=3,
                                          progress=False)
    folder = tmp_path / "out" / "animals"
    spec, contents = _read_dataset(folder)
    assert report.written == 5 and spec.name == "animals"
    assert [spec.num_classes(s) for s in spec_lib.SPLITS] == [3, 1, 1]
    # Class ids are contiguous TRAIN, VALID, TEST; within a split classes are sorted by name.
    train_names = [spec.class_names[c] for c in spec.classes("TRAIN")]
    assert train_names == sorted(train_names)
    assert sorted(spec.class_names.values()) == sorted(originals)
    for class_id, items in contents.items():
        name = spec.class_names[class_id]
        assert spec.images_per_class[class_id] == len(items) == 3
        assert [label for _, label, _ in items] == [class_id] * 3
        for (pixels, _, raw), (file_name, original) in zip(items, originals[name]):
            assert pixels.shape == original.shape
            assert np.abs(pixels.astype(float) - original).mean() < 3.0, (name, file_name)
        # An RGB JPEG is stored byte for byte.
        assert items[0][2] == (root / name / "a.jpg").read_bytes()
    assert "animals" in report.summary() and "TRAIN" in report.summary()


def test_fraction_split_is_deterministic(tmp_path, image_folder):
    root, _ = image_folder
    names = ["c%02d" % i for i in range(20)]
    a = convert.split_by_fractions(names, (0.5, 0.25, 0.25), seed=1)
    assert a == convert.split_by_fractions(list(reversed(names)), (0.5, 0.25, 0.25), seed=1)
    assert [len(a[s]) for s in spec_lib.SPLITS] == [10, 5, 5]
    assert a != convert.split_by_fractions(names, (0.5, 0.25, 0.25), seed=2)
    assert sorted(sum(a.values(), [])) == names
    with pytest.raises(convert.ConvertError, match="sum to 1"):
        convert.split_by_fractions(names, (0.5, 0.5, 0.5))


@pytest.mark.parametrize("kind", ["json", "text"])
def test_split_file(tmp_path, image_folder, kind):
    root, _ = image_folder
    split_file = tmp_path / f"splits.{kind}"
    if kind == "json":
        split_file.write_text(json.dumps({"train": ["yak", "cat"], "validation": ["dog"], "test": ["emu"]}))
    else:
        split_file.write_text("# my split\n[train]\nyak\ncat\n\nvalid:\ndog\ntest:\nemu\n")
    convert.convert_image_folder(root, tmp_path / "out", split_file=str(split_file), progress=False)
    spec = spec_lib.load_spec(tmp_path / "out" / "animals")
    named = {s.value: [spec.class_names[c] for c in spec.classes(s)] for s in spec_lib.SPLITS}
    assert named == {"TRAIN": ["yak", "cat"], "VALID": ["dog"], "TEST": ["emu"]}  # cow is left out


def test_split_file_errors(tmp_path, image_folder):
    root, _ = image_folder
    cases = {
        "unknown.json": (json.dumps({"train": ["cat", "lion", "tiger"]}), r"names 2 class\(es\).*'lion', 'tiger'"),
        "twice.txt": ("train:\ncat\ntest:\ncat\n", "'cat' is listed in both TRAIN and TEST"),
        "header.txt": ("[holdout]\ncat\n", "unknown split 'holdout'"),
        "orphan.txt": ("cat\ntrain:\ndog\n", "line 1: class 'cat' comes before any split header"),
        "bad.json": ("{not json", "not valid JSON"),
    }
    for file_name, (text, message) in cases.items():
        path = tmp_path / file_name
        path.write_text(text)
        with pytest.raises(convert.ConvertError, match=message) as error:
            convert.convert_image_folder(root, tmp_path / "out", split_file=str(path), progress=False)
        assert file_name in str(error.value)
    assert not (tmp_path / "out").exists()


def test_bad_image_is_named_or_skipped(tmp_path, image_folder):
    root, _ = image_folder
    (root / "dog" / "notes.txt").write_text("not an image")
    truncated = (root / "cow" / "a.jpg").read_bytes()
    (root / "cow" / "z.jpg").write_bytes(truncated[: len(truncated) // 2])
    with pytest.raises(convert.BadImageError, match=r"(notes\.txt|z\.jpg) is not a readable image.*--skip_bad_images"):
        convert.convert_image_folder(root, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "animals" / spec_lib.SPEC_FILE).exists()
    report = convert.convert_image_folder(root, tmp_path / "out", skip_bad_images=True, progress=False)
    skipped = sorted(os.path.basename(path) for path, _ in report.skipped_images)
    assert skipped == ["notes.txt", "z.jpg"]
    assert "skipped 2 bad image(s)" in report.summary()
    spec = spec_lib.load_spec(tmp_path / "out" / "animals")
    assert sum(spec.images_per_class.values()) == 15


def test_empty_and_small_classes(tmp_path, image_folder):
    root, _ = image_folder
    os.makedirs(root / "gnu")
    with pytest.raises(convert.ConvertError, match=r"Class folder .*gnu is empty"):
        convert.convert_image_folder(root, tmp_path / "out", progress=False)
    _write(root / "gnu" / "only.png", _smooth_image(0), "PNG")
    with pytest.raises(convert.ConvertError, match=r"gnu has 1 file\(s\); every class needs at least 2"):
        convert.convert_image_folder(root, tmp_path / "out", progress=False)
    (root / "gnu" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(writer.DatasetWriteError, match=r"class 'gnu' .* has 1 usable image"):
        convert.convert_image_folder(root, tmp_path / "out", skip_bad_images=True, progress=False)
    assert not (tmp_path / "out" / "animals" / spec_lib.SPEC_FILE).exists()
    with pytest.raises(convert.ConvertError, match="no class sub-folders"):
        convert.convert_image_folder(tmp_path / "out" / "animals", tmp_path / "o2", progress=False)
    with pytest.raises(convert.ConvertError, match="does not exist"):
        convert.convert_image_folder(tmp_path / "missing", tmp_path / "o2", progress=False)


def test_interrupted_conversion_resumes(tmp_path, image_folder, monkeypatch):
    root, _ = image_folder
    real = convert._load_folder_class
    seen = []

    def interrupted(paths, *args, **kwargs):
        seen.append(paths[0])
        if len(seen) == 3:
            raise KeyboardInterrupt
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(convert, "_load_folder_class", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        convert.convert_image_folder(root, out, workers=1, progress=False)
    folder = out / "animals"
    assert not (folder / spec_lib.SPEC_FILE).exists()
    assert sorted(f for f in os.listdir(folder) if f.endswith(".tfrecords")) == ["0.tfrecords", "1.tfrecords"]
    kept = (folder / "0.tfrecords").stat().st_mtime_ns
    report = convert.convert_image_folder(root, out, workers=1, progress=False)
    assert (report.resumed, report.written) == (2, 3)
    assert (folder / "0.tfrecords").stat().st_mtime_ns == kept
    monkeypatch.setattr(convert, "_load_folder_class", real)
    convert.convert_image_folder(root, tmp_path / "fresh", progress=False)
    for c in range(5):
        fresh = tmp_path / "fresh" / "animals" / f"{c}.tfrecords"
        assert (folder / f"{c}.tfrecords").read_bytes() == fresh.read_bytes()


def test_changed_input_is_not_mixed(tmp_path, image_folder):
    root, _ = image_folder
    convert.convert_image_folder(root, tmp_path / "out", progress=False)
    again = convert.convert_image_folder(root, tmp_path / "out", progress=False)
    assert again.already_complete
    _write(root / "cat" / "d.jpg", _smooth_image(99), "JPEG")
    with pytest.raises(writer.DatasetWriteError, match="files_per_class"):
        convert.convert_image_folder(root, tmp_path / "out", progress=False)
    with pytest.raises(writer.DatasetWriteError, match="seed"):
        convert.convert_image_folder(root, tmp_path / "out", seed=5, progress=False)


def test_max_side_shrinks(tmp_path, image_folder):
    root, _ = image_folder
    convert.convert_image_folder(root, tmp_path / "out", max_side=16, progress=False)
    _, contents = _read_dataset(tmp_path / "out" / "animals")
    assert {items[0][0].shape for items in contents.values()} == {(12, 16, 3)}


# ----------------------------------------------------------------------------- TFDS
TFDS_NAMES = ["ant", "bee", "cat", "dog", "eel", "fox"]


def _tfds_image(label: int, index: int) -> np.ndarray:
    return _smooth_image(100 * label + index, 12, 16)


@functools.lru_cache(maxsize=None)
def _tiny_builder_class():
    """Defined once: TFDS registers a builder class by name when the class is created."""
    import tensorflow_datasets as tfds

    class LiteTfTinyAnimals(tfds.core.GeneratorBasedBuilder):
        """Six classes; 'train' has 3 images per class, 'test' 1 (fox: none in train, 2 in test)."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3)),
                "label": tfds.features.ClassLabel(names=TFDS_NAMES),
                "id": tfds.features.Text(),
            }))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(range(3), skip=True), "test": self._generate_examples([3])}

        def _generate_examples(self, indices, skip=False):
            for label in range(len(TFDS_NAMES)):
                if skip and label == 5:
                    continue
                for index in (list(indices) + [4] if label == 5 else indices):
                    yield f"{label}-{index}", {"image": _tfds_image(label, index), "label": label,
                                               "id": f"{label}-{index}"}

    return LiteTfTinyAnimals


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """Prepares the tiny dataset offline (its generator downloads nothing)."""
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = _tiny_builder_class()(data_dir=str(data_dir))
    builder.download_and_prepare()
    return data_dir


def _pixels_by_class(folder):
    spec, contents = _read_dataset(folder)
    return spec, {spec.class_names[c]: [p for p, _, _ in items] for c, items in contents.items()}


def _matches(pixels, label, indices):
    """Every converted image is close to one original of its class, each original used once."""
    originals = [_tfds_image(label, i) for i in indices]
    assert len(pixels) == len(originals)
    used = set()
    for image in pixels:
        errors = [np.abs(image.astype(float) - o).mean() for o in originals]
        best = int(np.argmin(errors))
        assert errors[best] < 3.0 and best not in used
        used.add(best)


def test_tfds_round_trip(tmp_path, tfds_dir):
    report = convert.convert_tfds("lite_tf_tiny_animals", tmp_path / "out", data_dir=str(tfds_dir),
                                  split_fractions=(0.6, 0.2, 0.2), seed=0, progress=False)
    spec, pixels = _pixels_by_class(tmp_path / "out" / "lite_tf_tiny_animals")
    assert [spec.num_classes(s) for s in spec_lib.SPLITS] == [4, 1, 1]
    assert sorted(pixels) == TFDS_NAMES
    for name, images in pixels.items():
        label = TFDS_NAMES.index(name)
        _matches(images, label, [3, 4] if name == "fox" else [0, 1, 2, 3])
    assert report.written == 6


def test_tfds_split_selection_and_split_file(tmp_path, tfds_dir):
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": ["bee", "ant"], "valid": ["cat"], "test": ["dog"]}))
    convert.convert_tfds("lite_tf_tiny_animals", tmp_path / "out", data_dir=str(tfds_dir), tfds_splits=["train"],
                         split_file=str(split_file), dataset_name="animals_train", progress=False)
    spec, pixels = _pixels_by_class(tmp_path / "out" / "animals_train")
    assert [spec.class_names[c] for c in range(4)] == ["bee", "ant", "cat", "dog"]
    for name in ("bee", "ant", "cat", "dog"):
        _matches(pixels[name], TFDS_NAMES.index(name), [0, 1, 2])
    # fox has no image in the train split: naming it is an error that says so.
    split_file.write_text(json.dumps({"train": ["fox", "ant"], "test": ["dog"]}))
    with pytest.raises(convert.ConvertError, match=r"\['fox'\] that have no images"):
        convert.convert_tfds("lite_tf_tiny_animals", tmp_path / "o2", data_dir=str(tfds_dir), tfds_splits=["train"],
                             split_file=str(split_file), progress=False)
    # Only one image per class in 'test' (except fox): too few.
    with pytest.raises(convert.ConvertError, match="fewer than 2 images"):
        convert.convert_tfds("lite_tf_tiny_animals", tmp_path / "o3", data_dir=str(tfds_dir), tfds_splits=["test"],
                             progress=False)
    with pytest.raises(convert.ConvertError, match=r"no split\(s\) \['validation'\]"):
        convert.convert_tfds("lite_tf_tiny_animals", tmp_path / "o4", data_dir=str(tfds_dir),
                             tfds_splits=["validation"], progress=False)


def test_tfds_passes_give_identical_files(tmp_path, tfds_dir):
    for out, per_pass in (("one", 0), ("many", 2)):
        convert.convert_tfds("lite_tf_tiny_animals", tmp_path / out, data_dir=str(tfds_dir), classes_per_pass=per_pass,
                             tfds_splits=["train"], split_fractions=(0.5, 0.25, 0.25), progress=False)
    for c in range(5):
        name = f"lite_tf_tiny_animals/{c}.tfrecords"
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes()


def test_tfds_not_prepared_needs_download_flag(tmp_path, tfds_dir):
    with pytest.raises(convert.ConvertError, match=r"not prepared in .*--download"):
        convert.convert_tfds("lite_tf_tiny_animals", tmp_path / "out", data_dir=str(tmp_path / "empty"),
                             progress=False)
    with pytest.raises(convert.ConvertError, match="Cannot open TFDS dataset 'no_such_dataset_xyz'"):
        convert.convert_tfds("no_such_dataset_xyz", tmp_path / "out", data_dir=str(tfds_dir), progress=False)
    with pytest.raises(convert.ConvertError, match="no feature 'picture'"):
        convert.convert_tfds("lite_tf_tiny_animals", tmp_path / "out", data_dir=str(tfds_dir), image_key="picture",
                             progress=False)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- command line
@pytest.fixture
def run_tool():
    """tools/convert.py's main in this process; returns the exit status (errors: 2, a bad set: 1)."""
    from tests.launch_helpers import run_tool as run_launcher
    from lite_tf.tools import convert as tool

    return lambda *argv: run_launcher(tool, *argv)


def test_cli(tmp_path, image_folder, tfds_dir, run_tool, capsys):
    root, _ = image_folder
    assert run_tool(f"--image_folder={root}", f"--output_dir={tmp_path / 'out'}", "--name=zoo",
                    "--split_fractions=0.6,0.2,0.2", "--noprogress") == 0
    assert "Dataset 'zoo'" in capsys.readouterr().out
    assert spec_lib.load_spec(tmp_path / "out" / "zoo").num_classes("TRAIN") == 3
    assert run_tool("--tfds_name=lite_tf_tiny_animals", f"--tfds_data_dir={tfds_dir}",
                    f"--output_dir={tmp_path / 'out'}", "--noprogress") == 0
    assert spec_lib.load_spec(tmp_path / "out" / "lite_tf_tiny_animals").name == "lite_tf_tiny_animals"
    (root / "cat" / "bad.jpg").write_bytes(b"garbage")
    assert run_tool(f"--image_folder={root}", f"--output_dir={tmp_path / 'o2'}", "--noprogress") == 2
    assert "bad.jpg is not a readable image" in capsys.readouterr().err
    assert run_tool(f"--output_dir={tmp_path}", "--noprogress") == 2
    assert "exactly one input" in capsys.readouterr().err


def test_sixteen_bit_png_is_rescaled(tmp_path):
    values = (np.linspace(0, 65535, 24 * 32).reshape(24, 32)).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    pixels = np.asarray(Image.open(io.BytesIO(convert.prepare_image(buffer.getvalue(), "deep.png"))))
    expected = values.astype(float) / 65535 * 255
    assert pixels.shape == (24, 32, 3)
    assert np.abs(pixels[..., 0] - expected).mean() < 3.0
