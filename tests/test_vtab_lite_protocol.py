"""VTAB+MD ``--protocol=lite`` as the official LITE code runs it (cambridge-mlg/LITE): SUN397's image
folder, split and support rule; the PIL Lanczos resize; MD-v2's per-source hierarchy; the MNIST
records. Each test names the official rule it checks (file and function of the LITE code).

torch is not needed: the permutations below were stored from torch 2.13 (CPU), and the tests that
compare with torch itself skip without it."""
from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from PIL import Image

from lite_tf.data.vtab import image_folder
from lite_tf.errors import ConfigError, DataError

# torch.randperm(20, generator=torch.Generator().manual_seed(15)).tolist(), torch 2.13.0+cpu
TORCH_RANDPERM_20_SEED_15 = [12, 11, 2, 5, 1, 14, 6, 17, 19, 4, 13, 10, 8, 9, 0, 15, 3, 18, 7, 16]
# random_split(range(108754), [76128, 10875, 21751], generator=torch.Generator().manual_seed(15)), torch 2.13.0:
# the first 6 train indices, the first 6 and last 3 test indices, and sum((k + 1) * test[k]) % 1000003.
SUN397_SIZE = 108754
TORCH_TRAIN_HEAD = [101398, 67540, 19262, 79522, 2001, 35762]
TORCH_TEST_HEAD = [79393, 97921, 8650, 12266, 31104, 34088]
TORCH_TEST_TAIL = [102466, 56912, 57677]
TORCH_TEST_CHECKSUM = 303179


# ---------------------------------------------------- LITE src/image_folder_reader.py ImageFolderReader.__init__
def test_randperm_is_torchs_cpu_randperm_stored():
    """``torch.utils.data.random_split(..., generator=torch.Generator().manual_seed(15))`` draws
    ``torch.randperm``: reproduced without torch, against torch 2.13's output."""
    np.testing.assert_array_equal(image_folder.torch_randperm(20, 15), TORCH_RANDPERM_20_SEED_15)
    train, val, test = image_folder.random_split_indices(SUN397_SIZE)
    assert (len(train), len(val), len(test)) == (76128, 10875, 21751)
    assert train[:6].tolist() == TORCH_TRAIN_HEAD
    assert test[:6].tolist() == TORCH_TEST_HEAD and test[-3:].tolist() == TORCH_TEST_TAIL
    assert int(np.sum((np.arange(len(test)) + 1) * test) % 1000003) == TORCH_TEST_CHECKSUM
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(SUN397_SIZE))
    # train_size = int(round(0.7 * N)), val_size = int(round(0.1 * N)), test the rest
    assert image_folder.split_sizes(5) == (4, 0, 1)       # round(3.5) = 4, round(0.5) = 0 (ties to even)
    assert image_folder.split_sizes(15) == (10, 2, 3)     # 0.7 * 15 = 10.499999999999998


def test_randperm_equals_torch_itself_when_installed():
    torch = pytest.importorskip("torch")
    for n, seed in ((1, 15), (2, 15), (97, 15), (1500, 15), (5000, 3)):
        expected = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
        np.testing.assert_array_equal(image_folder.torch_randperm(n, seed), expected)
    for n in (5, 1500, 2001):
        sizes = image_folder.split_sizes(n)
        parts = torch.utils.data.random_split(range(n), list(sizes), generator=torch.Generator().manual_seed(15))
        for ours, theirs in zip(image_folder.random_split_indices(n), parts):
            assert ours.tolist() == list(theirs.indices)


# ------------------------------------------------------- torchvision ImageFolder (ImageFolderReader's dataset)
def _touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def test_image_folder_lists_files_as_torchvision_does(tmp_path):
    """``ImageFolder``: sorted class folders labelled 0.., each tree walked sorted, names sorted, image
    extensions only (any case); files at the top level are not classes."""
    for name in ("b/2.jpg", "b/10.JPG", "b/sub/1.png", "b/notes.txt", "a/x.jpeg", "a/a_sub/z.webp", "top.jpg"):
        _touch(tmp_path / name)
    classes, samples = image_folder.list_image_folder(str(tmp_path))
    assert classes == ["a", "b"]
    assert [(os.path.relpath(path, tmp_path), label) for path, label in samples] == [
        ("a/x.jpeg", 0), ("a/a_sub/z.webp", 0), ("b/10.JPG", 1), ("b/2.jpg", 1), ("b/sub/1.png", 1)]
    _touch(tmp_path / "c" / "readme.txt")   # a class folder without images: refused, as torchvision does
    with pytest.raises(DataError, match=r"no image files in class folder\(s\) \['c'\]"):
        image_folder.list_image_folder(str(tmp_path))


# --------------------------------------------------- LITE src/image_folder_reader.py _get_sun397_context_batch
def test_support_rule_fills_every_class_then_takes_the_next_images():
    """Keep an image while its class has < 2 kept; stop when all classes are kept; then the next
    ``1000 - kept`` images whatever their class."""
    labels = np.array([0, 0, 0, 1, 0, 2, 1, 1, 2, 0, 0])
    # 0 kept, 0 kept, 0 skipped (2 kept), 1 kept, 0 skipped, 2 kept -> all 3 present after 6 looked at
    np.testing.assert_array_equal(image_folder.lite_support_order(labels, num_classes=3, size=7),
                                  [0, 1, 3, 5, 6, 7, 8])
    # ... or after 10,000 images were looked at (``count == 10000``)
    labels = np.zeros(11000, np.int64)     # class 1 never appears
    order = image_folder.lite_support_order(labels, num_classes=2, size=1000)
    np.testing.assert_array_equal(order, [0, 1] + list(range(10000, 10998)))
    with pytest.raises(DataError, match="ran out"):
        image_folder.lite_support_order(np.zeros(50, np.int64), num_classes=2, size=10)


def _sun397_folder(root, per_class=(8, 7)):
    """397 class folders of tiny PNGs (their colour encodes the index within the class)."""
    import io

    encoded = []
    for index in range(max(per_class)):
        pixels = np.zeros((6, 5, 3), np.uint8)
        pixels[..., 0], pixels[..., 1], pixels[:3, :, 2] = index * 30, 255 - index * 30, 200
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    count = 0
    for label in range(image_folder.SUN397_CLASSES):
        folder = os.path.join(root, f"c{label:03d}")
        os.makedirs(folder)
        for index in range(per_class[label % 2]):
            with open(os.path.join(folder, f"{index}.png"), "wb") as handle:
                handle.write(encoded[index])
            count += 1
    return count


def test_sun397_split_support_and_queries_follow_lite(monkeypatch, tmp_path):
    """The folder's samples (as ImageFolder lists them) -> LITE's test part as queries, in order, and
    a 1000-image support set from the train part holding all 397 classes."""
    per_class = [8 if label % 2 == 0 else 7 for label in range(397)]
    samples = [(f"c{label:03d}/{index}.png", label) for label in range(397) for index in range(per_class[label])]
    monkeypatch.setattr(image_folder, "list_image_folder",
                        lambda root: ([f"c{label:03d}" for label in range(397)], samples))
    folder = image_folder.Sun397Folder("unused", support_seed=3)
    train, _, test = image_folder.random_split_indices(len(samples))
    support_paths, support_labels = folder.support()
    assert len(support_paths) == 1000 and len(set(support_paths.tolist())) == 1000
    assert set(folder.support_indices.tolist()) <= set(train.tolist()) and len(np.unique(support_labels)) == 397
    # the first images of the support set are the rule's: at most 2 per class until all are present
    shuffled = train[np.random.default_rng(3).permutation(len(train))]
    np.testing.assert_array_equal(folder.support_indices,
                                  shuffled[image_folder.lite_support_order(folder.labels[shuffled])])
    query_paths, query_labels = folder.queries()
    assert query_paths.tolist() == [samples[i][0] for i in test]
    np.testing.assert_array_equal(query_labels, [samples[i][1] for i in test])
    # pixels: PIL opens, converts to RGB, torchvision Resize((s, s)) = PIL bilinear
    path = str(tmp_path / "x.png")
    rgba = np.random.default_rng(0).integers(0, 256, (13, 9, 4)).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(path)
    expected = np.asarray(Image.open(path).convert("RGB").resize((8, 8), Image.BILINEAR))
    np.testing.assert_array_equal(image_folder.load_image(path, 8), expected)


@pytest.mark.slow
def test_sun397_task_reads_the_folder_with_lites_split_support_and_pixels(tmp_path):
    from lite_tf.data import vtab

    root = str(tmp_path / "sun397")
    total = _sun397_folder(root)
    task = vtab.open_task("sun397", None, 8, protocol="lite", sun397_dir=root)
    classes, samples = image_folder.list_image_folder(root)
    train, _, test = image_folder.random_split_indices(total)
    assert (task.num_support, task.num_queries, task.way) == (1000, len(test), 397)
    images, labels = next(iter(task.support()))
    labels = labels.numpy()
    assert images.shape == (1000, 8, 8, 3) and len(np.unique(labels)) == 397
    # every support image is from the train part, none twice, with its folder's label and pixels
    folder = image_folder.Sun397Folder(root)
    assert set(folder.support_indices.tolist()) <= set(train.tolist())
    assert len(set(folder.support_indices.tolist())) == 1000
    np.testing.assert_array_equal(labels, [samples[i][1] for i in folder.support_indices])
    first = samples[folder.support_indices[0]][0]
    expected = np.asarray(Image.open(first).convert("RGB").resize((8, 8), Image.BILINEAR))   # torchvision Resize
    np.testing.assert_array_equal(images[0].numpy(), expected)
    # the queries: the whole test part in split order (DataLoader(test_set, shuffle=False))
    query_labels = np.concatenate([batch_labels.numpy() for _, batch_labels in task.queries(128)])
    np.testing.assert_array_equal(query_labels, [samples[i][1] for i in test])
    assert task.description["resize"] == "pil_bilinear"


def test_sun397_lite_without_a_folder_names_the_command(tmp_path):
    from lite_tf.data import vtab

    with pytest.raises(DataError) as error:
        vtab.open_task("sun397", str(tmp_path), 8, protocol="lite")
    message = str(error.value)
    assert "\n" not in message and "--sun397_dir" in message
    assert "lite_tf_prepare_lite_data --dataset=sun397 --tfds_data_dir=" in message
    (tmp_path / "few" / "a").mkdir(parents=True)
    _touch(tmp_path / "few" / "a" / "x.jpg")
    with pytest.raises(DataError, match="has 1 class folders, expected 397"):
        vtab.open_task("sun397", None, 8, protocol="lite", sun397_dir=str(tmp_path / "few"))


def test_export_from_tfds_sun397_writes_an_image_folder_of_the_stored_bytes(tmp_path):
    from tests import tfds_prepared

    data_dir = str(tmp_path / "tfds")
    names = {}

    def make(split, index, rng):
        names[(split, index)] = f"sun_{split}_{index}.jpg"
        return {"label": index % 3, "file_name": f"SUN397/x/{names[(split, index)]}"}

    builder = tfds_prepared.prepare(data_dir, "sun397/tfds", {"train": 4, "test": 3}, make)
    out = str(tmp_path / "folder")
    result = image_folder.export_tfds_sun397(data_dir, out, log=lambda _: None)
    assert result["images"] == 7
    label_names = builder.info.features["label"].names
    for split, index in names:
        path = os.path.join(out, image_folder.folder_name(label_names[index % 3]), names[(split, index)])
        assert os.path.isfile(path), path
    assert sorted(os.listdir(out)) == sorted(image_folder.folder_name(label_names[k]) for k in range(3))
    assert image_folder.folder_name("/b/bakery/shop") == "b_bakery_shop"
    with pytest.raises(ConfigError, match="is not empty"):
        image_folder.export_tfds_sun397(data_dir, out, log=lambda _: None)


# ------------------------------------------------------------ LITE src/tf_dataset_reader.py _prepare_image
def _lite_prepare_image(image, dataset, size):
    """The official code's lines, with torch's ToTensor/Normalize left out (uint8 out)."""
    if dataset in ("smallnorb", "dsprites"):
        image = np.squeeze(image)
    if dataset == "dsprites":
        image = image * 255.0
    im = Image.fromarray(image)
    im = im.resize((size, size), Image.LANCZOS)
    im = im.convert("RGB")
    return np.asarray(im)


def test_pil_lanczos_resize_equals_lites_prepare_image_within_one_grey_level():
    import tensorflow as tf

    from lite_tf.images import pil_lanczos_resize

    cases = [("cifar100", (32, 32, 3)), ("smallnorb", (96, 96, 1)), ("dsprites", (64, 64, 1)),
             ("caltech101", (51, 77, 3))]
    for dataset, shape in cases:
        for size in (24, 84, 224):
            rng = np.random.default_rng(size)
            high = 2 if dataset == "dsprites" else 256
            image = rng.integers(0, high, shape).astype(np.uint8)
            pixels = image * 255.0 if dataset == "dsprites" else image     # what the reader hands over
            ours = pil_lanczos_resize(pixels, size).astype(np.int32)
            theirs = _lite_prepare_image(image, dataset, size).astype(np.int32)
            assert ours.shape == (size, size, 3), (dataset, size)
            assert np.abs(ours - theirs).max() <= 1, (dataset, size)
            if shape[-1] == 3:   # and not TF's bilinear (the vtab1k resize): the two protocols differ
                bilinear = tf.image.resize(tf.cast(image, tf.float32), [size, size]).numpy()
                assert np.abs(np.round(bilinear) - ours).max() > 1, (dataset, size)


# ------------------------------------------ LITE src/meta_dataset_reader.py _init_multi_source_dataset
def test_per_source_hierarchy_imagenet_flat_omniglot_two_level():
    import gin

    from lite_tf import experiment
    from lite_tf.data.metadataset import sampling, spec as spec_lib
    from tests.helpers import meta_dataset_spec_dir

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    lite = {"ilsvrc_2012": False, "ilsvrc_2012_v2": False}
    experiment.parse_gin([os.path.join(root, "gin", "experiments", "mdv2_protonets.gin")], [])
    assert gin.query_parameter("EpisodeSampler.use_hierarchy") == lite   # every mdv2 experiment binds it

    spec_dir = meta_dataset_spec_dir()
    if not os.path.isdir(spec_dir):
        pytest.skip("real Meta-Dataset specs not available")
    omniglot = spec_lib.load_spec(os.path.join(spec_dir, "omniglot_dataset_spec.json"))
    imagenet = spec_lib.load_spec(os.path.join(spec_dir, "ilsvrc_2012_v2_dataset_spec.json"))
    assert sampling.EpisodeSampler(omniglot, "train", use_hierarchy=lite).hierarchy[0] == "bilevel"
    flat = sampling.EpisodeSampler(imagenet, "train", use_hierarchy=lite, seed=1)
    dag = sampling.EpisodeSampler(imagenet, "train", use_hierarchy=True, seed=1)
    assert flat.hierarchy is None and dag.hierarchy[0] == "dag"
    # DAG episodes take their classes under one node; flat ones from all 1000 classes at once
    nodes = [set(leaves.tolist()) for leaves in dag.hierarchy[1]]

    def under_one_node(sampler):
        episodes = [set(sampler.sample().class_ids.tolist()) for _ in range(100)]
        return np.mean([any(classes <= node for node in nodes) for classes in episodes])

    assert under_one_node(dag) == 1.0 and under_one_node(flat) < 0.3
    with pytest.raises(ConfigError, match="use_hierarchy must be a bool or a dict"):
        sampling.EpisodeSampler(omniglot, "train", use_hierarchy={"omniglot": "no"})


# --------------------------------------------------------- LITE extras/prepare_extra_dataset.py process_mnist
def _mnist_images(count):
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (count, 28, 28)).astype(np.uint8), np.arange(count) % 10


def _read_records(dataset_dir, class_id):
    import tensorflow as tf

    from lite_tf.data.metadataset import records

    path = records.class_file_path(dataset_dir, class_id)
    out = []
    for serialized in tf.data.TFRecordDataset(path):
        image, label = records.parse_example(serialized)
        out.append((image.numpy(), int(label)))
    return out


def test_mnist_records_from_the_idx_files_are_lites(tmp_path):
    """t10k test images, class_<digit> in TRAIN, 84 px RGB Lanczos, PNG then JPEG, files sorted by name."""
    from lite_tf.data.metadataset import spec as spec_lib
    from lite_tf.data.writing import mnist_lite

    images, labels = _mnist_images(120)
    raw = tmp_path / "raw"
    raw.mkdir()
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(b"\0" * 16 + images.tobytes())
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(b"\0" * 8 + labels.astype(np.uint8).tobytes())
    read_images, read_labels = mnist_lite.read_idx(str(raw))
    np.testing.assert_array_equal(read_images, images)
    mnist_lite.write_lite_mnist(str(tmp_path / "records"), read_images, read_labels, {"source": "test"},
                                progress=False)
    dataset_dir = str(tmp_path / "records" / "mnist")
    spec = spec_lib.load_spec(dataset_dir)
    assert spec.classes("TRAIN") == list(range(10)) and spec.classes("VALID") == spec.classes("TEST") == []
    assert [spec.class_names[c] for c in range(10)] == [f"class_{d}" for d in range(10)]
    digit = 3
    stored = _read_records(dataset_dir, digit)
    rows = np.flatnonzero(labels == digit)            # 12 images: image_0 .. image_11
    names = sorted(f"image_{k}.png" for k in range(len(rows)))   # LITE: sorted(listdir)
    order = [int(name[6:-4]) for name in names]
    assert order[:4] == [0, 1, 10, 11]
    for (data, label), k in zip(stored, order):
        assert label == digit
        # the official steps: fromarray, RGB, resize 84 LANCZOS, save PNG; Meta-Dataset re-encodes as JPEG
        import io

        im = Image.fromarray(images[rows[k]]).convert("RGB").resize((84, 84), resample=Image.LANCZOS)
        png = io.BytesIO()
        im.save(png, format="PNG")
        jpeg = io.BytesIO()
        Image.open(io.BytesIO(png.getvalue())).save(jpeg, format="JPEG")
        assert data == jpeg.getvalue()
    assert len(stored) == len(rows)


@pytest.fixture(scope="module")
def mnist_tfds(tmp_path_factory):
    from tests import tfds_prepared

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    tfds_prepared.prepare(data_dir, "mnist", {"train": 3, "test": 30}, lambda split, index, rng: {"label": index % 10})
    return data_dir


def test_mnist_records_from_tfds_take_mnists_test_split(mnist_tfds, tmp_path):
    from lite_tf.data.metadataset import spec as spec_lib
    from lite_tf.data.writing import mnist_lite

    images, labels = mnist_lite.read_tfds(mnist_tfds)
    assert images.shape == (30, 28, 28) and sorted(np.bincount(labels)) == [3] * 10
    mnist_lite.write_lite_mnist(str(tmp_path), images, labels, {"source": "test"}, progress=False)
    spec = spec_lib.load_spec(str(tmp_path / "mnist"))
    assert [spec.images_per_class[c] for c in range(10)] == [3] * 10   # the 30 test images, not the 3 train
    with pytest.raises(DataError, match="tfds build mnist"):
        mnist_lite.read_tfds(str(tmp_path / "none"))


@pytest.mark.slow
def test_mnist_command_writes_the_records(mnist_tfds, tmp_path):
    import subprocess
    import sys

    from lite_tf.data.metadataset import spec as spec_lib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "-m", "tools.prepare_lite_data", "--dataset=mnist", f"--tfds_data_dir={mnist_tfds}",
               f"--output_dir={tmp_path / 'records'}", "--progress=false"]
    done = subprocess.run(command, cwd=root, env=dict(os.environ, PYTHONPATH=root), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    spec = spec_lib.load_spec(str(tmp_path / "records" / "mnist"))
    assert spec.classes("TRAIN") == list(range(10))
