"""SUN397 as the official LITE code read it: an image-folder copy, split 70/10/20 by torch's
``random_split`` with seed 15, and a support set that holds every class.

cambridge-mlg/LITE ``src/image_folder_reader.py`` (``ImageFolderReader``), reproduced without torch:

- the folder is read as torchvision's ``ImageFolder`` lists it (:func:`list_image_folder`): classes are
  the sorted sub-folder names, labelled 0..n-1; samples class by class, each class's tree walked in
  sorted order with its file names sorted, keeping the image extensions torchvision accepts;
- the split (:func:`random_split_indices`): ``train = int(round(0.7 N))``, ``val = int(round(0.1 N))``,
  ``test`` the rest; ``torch.utils.data.random_split(..., generator=torch.Generator().manual_seed(15))``
  takes consecutive slices of ``torch.randperm(N)``, and torch's CPU ``randperm`` (:func:`torch_randperm`)
  is a Fisher-Yates pass that swaps item ``i`` with item ``i + r_i % (N - i)``, ``r_i`` the ``i``-th
  32-bit output of MT19937 seeded by ``init_genrand(seed)`` (``numpy.random.MT19937`` legacy seeding);
- queries: the whole test part, in split order (``DataLoader(test_set, shuffle=False)``);
- support (:func:`lite_support_order`, ``_get_sun397_context_batch``): the train part is shuffled, then
  taken one image at a time, keeping an image while its class has fewer than 2 kept, until all 397
  classes are kept (or 10,000 images were looked at); then the next ``1000 - kept`` images are added
  whatever their class. LITE shuffled with an unseeded ``DataLoader(shuffle=True)`` (torch's global
  generator after the model's initialisation), which no other run reproduces: here the shuffle is a
  seeded NumPy permutation (``support_seed``), so the support set follows LITE's rule, not its draw;
- pixels: PIL opens the file and converts it to RGB; torchvision ``Resize((s, s))`` is PIL's bilinear
  resize (lite_tf.images.pil_resize).

:func:`export_tfds_sun397` writes such a folder from TFDS ``sun397`` (the LITE README's Google Drive
copy has the same role; its file order decides the split, so use the same folder every time).
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from lite_tf.errors import ConfigError, DataError

# torchvision.datasets.folder.IMG_EXTENSIONS (matched case-insensitively, as torchvision does).
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLIT_FRACTIONS = (0.7, 0.1)   # train, validation; test is the rest
SPLIT_SEED = 15                # torch.Generator().manual_seed(15)
SUN397_CLASSES = 397
SUPPORT_SIZE = 1000
PER_CLASS_FIRST = 2            # label_counts[index] < 2
LOOK_LIMIT = 10000             # count == 10000

EXPORT_COMMAND = "lite_tf_prepare_lite_data --dataset=sun397 --tfds_data_dir=<tfds_data_dir> --output_dir=<folder>"


def list_image_folder(root: str) -> Tuple[List[str], List[Tuple[str, int]]]:
    """(class names, [(path, label)]) as torchvision's ``ImageFolder(root)`` orders them."""
    if not os.path.isdir(root):
        raise DataError(f"SUN397 image folder {root!r} does not exist; make it from TFDS sun397 with: "
                        f"{EXPORT_COMMAND}.")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    samples, empty = [], []
    for label, name in enumerate(classes):
        found = 0
        for folder, _, files in sorted(os.walk(os.path.join(root, name), followlinks=True)):
            for file in sorted(files):
                if file.lower().endswith(IMG_EXTENSIONS):
                    samples.append((os.path.join(folder, file), label))
                    found += 1
        if not found:
            empty.append(name)
    if empty:
        raise DataError(f"Image folder {root!r}: no image files in class folder(s) {empty[:5]} (torchvision's "
                        f"ImageFolder refuses it too); extensions accepted: {', '.join(IMG_EXTENSIONS)}.")
    return classes, samples


def torch_randperm(n: int, seed: int) -> np.ndarray:
    """``torch.randperm(n, generator=torch.Generator().manual_seed(seed))`` on the CPU, without torch
    (checked against torch 2.13 in tests/test_vtab_lite_protocol.py; the path for n < 2**32 / 20,
    which torch keeps as its "old behaviour")."""
    if n >= (2 ** 32 - 1) // 20:
        raise ConfigError(f"torch_randperm reproduces torch's small-n path only (n < {(2 ** 32 - 1) // 20}); "
                          f"got n={n}.")
    bits = np.random.MT19937(0)
    bits._legacy_seeding(int(seed))
    draws = bits.random_raw(n - 1).astype(np.int64) if n > 1 else np.zeros(0, np.int64)
    perm = np.arange(n, dtype=np.int64)
    for i, draw in enumerate(draws.tolist()):
        j = i + draw % (n - i)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def split_sizes(n: int) -> Tuple[int, int, int]:
    """(train, val, test) as ``ImageFolderReader`` computes them (Python's ``round``, ties to even)."""
    train = int(round(SPLIT_FRACTIONS[0] * n))
    val = int(round(SPLIT_FRACTIONS[1] * n))
    return train, val, n - train - val


def random_split_indices(n: int, seed: int = SPLIT_SEED) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample indices of the train, val and test parts of ``random_split`` over ``n`` samples."""
    perm = torch_randperm(n, seed)
    train, val, _ = split_sizes(n)
    return perm[:train], perm[train:train + val], perm[train + val:]


def lite_support_order(labels: np.ndarray, num_classes: int = SUN397_CLASSES, size: int = SUPPORT_SIZE
                       ) -> np.ndarray:
    """Positions (into ``labels``, the train part in its shuffled order) of the LITE support set.

    ``_get_sun397_context_batch``: keep an image while its class has fewer than 2 kept, stop once every
    class is kept or 10,000 images were looked at; then add the next ``size - kept`` images.
    """
    labels = np.asarray(labels)
    counts = np.zeros(num_classes, np.int64)
    kept, seen, position = [], set(), 0
    while True:
        if position >= len(labels):
            raise DataError(f"SUN397 support: the train part ran out after {position} images with "
                            f"{len(seen)} of {num_classes} classes present.")
        label = int(labels[position])
        if counts[label] < PER_CLASS_FIRST:
            kept.append(position)
            counts[label] += 1
            seen.add(label)
        position += 1
        if len(seen) == num_classes or position == LOOK_LIMIT:
            break
    rest = size - len(kept)
    if position + rest > len(labels):
        raise DataError(f"SUN397 support: the train part has {len(labels)} images, {position + rest} needed.")
    return np.asarray(kept + list(range(position, position + rest)), np.int64)


class Sun397Folder:
    """The LITE SUN397 task's files: ``support`` and ``queries`` as (paths, labels) in LITE's order."""

    def __init__(self, root: str, support_seed: int = 0):
        self.root = root
        self.classes, samples = list_image_folder(root)
        if len(self.classes) != SUN397_CLASSES:
            raise DataError(f"SUN397 image folder {root!r} has {len(self.classes)} class folders, expected "
                            f"{SUN397_CLASSES} (one per SUN397 category); make it with: {EXPORT_COMMAND}.")
        self.paths = np.asarray([path for path, _ in samples])
        self.labels = np.asarray([label for _, label in samples], np.int32)
        train, _, test = random_split_indices(len(samples))
        shuffled = train[np.random.default_rng(support_seed).permutation(len(train))]
        self.support_indices = shuffled[lite_support_order(self.labels[shuffled])]
        self.query_indices = test
        self.support_seed = support_seed

    def support(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.paths[self.support_indices], self.labels[self.support_indices]

    def queries(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.paths[self.query_indices], self.labels[self.query_indices]


def load_image(path, size: int) -> np.ndarray:
    """PIL open, convert to RGB, torchvision ``Resize((size, size))`` (PIL bilinear) -> uint8 [size, size, 3]."""
    from PIL import Image

    from lite_tf.images import pil_resize

    path = path.decode() if isinstance(path, bytes) else str(path)
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError) as error:
        raise DataError(f"SUN397 image {path!r} cannot be read: {error}") from None
    return pil_resize(np.asarray(rgb), size, "bilinear")


def folder_name(label_name: str) -> str:
    """A TFDS SUN397 label ("/a/abbey", "/b/bakery/shop") as one folder name ("a_abbey", "b_bakery_shop")."""
    return label_name.strip("/").replace("/", "_")


def export_tfds_sun397(tfds_data_dir: Optional[str], output_dir: str, config: str = "tfds",
                       splits: Optional[Sequence[str]] = None, log=print) -> dict:
    """Writes TFDS ``sun397/<config>`` (every split, or ``splits``) as an image folder:
    ``<output_dir>/<class>/<file_name>`` with each image's bytes as TFDS stores them (no re-encoding).

    Refuses a non-empty ``output_dir`` (a folder's content and file order decide LITE's split).
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise ConfigError(f"--output_dir {output_dir!r} is not empty; give a new folder for the SUN397 copy.")
    name = f"sun397/{config}"
    try:
        builder = tfds.builder(name, data_dir=tfds_data_dir)
    except Exception as error:  # TFDS raises several types for an unknown name or version
        raise DataError(f"TFDS cannot open {name!r} in {tfds_data_dir!r}: {error}") from None
    if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
        raise DataError(f"TFDS {name!r} is not prepared in {tfds_data_dir or '~/tensorflow_datasets'}; prepare "
                        f"it with: tfds build {name} --data_dir={tfds_data_dir or '<tfds_data_dir>'}.")
    label_names = builder.info.features["label"].names
    splits = list(splits or builder.info.splits.keys())
    decoders = {"image": tfds.decode.SkipDecoding()}
    written = 0
    for split in splits:
        data = builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
        for example in data.as_numpy_iterator():
            label = int(example["label"])
            file_name = os.path.basename(example["file_name"].decode()) if "file_name" in example else \
                f"{split}_{written:06d}.jpg"
            folder = os.path.join(output_dir, folder_name(label_names[label]))
            os.makedirs(folder, exist_ok=True)
            target = os.path.join(folder, file_name)
            if os.path.exists(target):
                raise DataError(f"TFDS {name!r}: two examples named {file_name!r} in class {label_names[label]!r}.")
            with open(target, "wb") as handle:
                handle.write(example["image"])
            written += 1
            if written % 10000 == 0:
                log(f"{written} images written")
    log(f"{written} images of {len(label_names)} classes from {name} ({', '.join(splits)}) in {output_dir}")
    return {"images": written, "classes": len(label_names), "splits": splits}
