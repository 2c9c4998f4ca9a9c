"""Converters to Meta-Dataset records: image folders and TFDS image-classification datasets.

Both produce ``<output_dir>/<name>/{<class_id>.tfrecords, dataset_spec.json}`` through
lite_tf/data/writer.py (atomic class files, spec written last, resume by skipping complete class
files, refusal to mix with another dataset).

Class splits: Meta-Dataset splits *classes* (not images) into TRAIN/VALID/TEST. Either give
fractions (the sorted class names are shuffled with ``seed``; the same seed gives the same split)
or a split file naming the classes of each split:
  JSON:  {"train": ["cat", "dog"], "valid": ["cow"], "test": ["emu"]}
  text:  a header line per split (``train:`` or ``[train]``; also valid/validation/test), then one
         class name per line; blank lines and lines starting with ``#`` are ignored.
Classes the split file does not name are left out (a warning lists them).

Images: JPEG files in RGB are stored byte for byte; any other image (PNG, GIF, BMP, grey or CMYK
JPEG...) is decoded, converted to RGB (transparent areas on white) and stored as JPEG. Every image
is fully decoded once to check it. ``max_side`` optionally shrinks large images.

Bad input (errors name the file, folder or class):
- a file that is not a readable image: ``BadImageError`` naming the file; with
  ``skip_bad_images=True`` it is skipped instead, logged, and counted in the summary;
- an empty class folder, or a class with fewer than 2 images (before or after skipping): error;
- a split file naming unknown classes, a class in two splits, an unknown split header: error;
- fractions that are negative or do not sum to 1: error.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import threading
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data import writer

log = logging.getLogger(__name__)

DEFAULT_SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
DEFAULT_JPEG_QUALITY = 95
_SPLIT_ALIASES = {"train": spec_lib.TRAIN, "valid": spec_lib.VALID, "validation": spec_lib.VALID,
                  "val": spec_lib.VALID, "test": spec_lib.TEST}


class ConvertError(ValueError):
    """Input that cannot be converted; the message names the file, folder, class or key."""


class BadImageError(ConvertError):
    """A file or record that is not a readable image."""


# ----------------------------------------------------------------------------- images
def prepare_image(data: bytes, origin: str, max_side: Optional[int] = None,
                  jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """Encoded image bytes -> RGB JPEG bytes (unchanged if already an RGB JPEG small enough).

    Raises BadImageError naming ``origin`` if the bytes do not decode completely.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # full decode: a truncated or corrupt body fails here, not later in training
            too_large = max_side is not None and max(image.size) > max_side
            if image.format == "JPEG" and image.mode == "RGB" and not too_large:
                return bytes(data)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                rgb = Image.new("RGB", rgba.size, (255, 255, 255))
                rgb.paste(rgba, mask=rgba.getchannel("A"))
            elif image.mode.startswith("I") or image.mode == "F":
                # 16-bit or float greyscale: PIL's convert would clip at 255, so rescale to 8 bits.
                values = np.asarray(image, dtype=np.float32)
                top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
                grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
                rgb = Image.fromarray(grey, "L").convert("RGB")
            else:
                rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise BadImageError(f"{origin} is not a readable image: {error}") from None
    if too_large:
        rgb.thumbnail((max_side, max_side), Image.BICUBIC)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=jpeg_quality)
    return buffer.getvalue()


def _prepare_all(items: Iterable[Tuple[str, bytes]], skip_bad_images: bool, max_side: Optional[int],
                 jpeg_quality: int) -> writer.ClassImages:
    """(origin, bytes) pairs -> ClassImages; bad images raise, or are skipped and listed."""
    result = writer.ClassImages([])
    for origin, data in items:
        try:
            if isinstance(data, OSError):
                raise BadImageError(f"{origin} cannot be read: {data}")
            result.images.append(prepare_image(data, origin, max_side, jpeg_quality))
        except BadImageError as error:
            if not skip_bad_images:
                raise BadImageError(f"{error} (pass skip_bad_images / --skip_bad_images to skip such files)") \
                    from None
            result.skipped.append((origin, str(error)))
    return result


# ----------------------------------------------------------------------------- class splits
def split_by_fractions(class_names: Sequence[str], fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                       seed: int = 0) -> Dict[spec_lib.Split, List[str]]:
    """Deterministic class split: sorted names shuffled with ``seed``; VALID and TEST sizes rounded.

    Within a split the classes are kept in sorted order.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConvertError(f"Split fractions must be three non-negative numbers (TRAIN, VALID, TEST) that sum "
                           f"to 1; got {list(fractions)}.")
    names = sorted(class_names)
    order = np.random.default_rng(seed).permutation(len(names))
    num_valid = int(round(fractions[1] * len(names)))
    num_test = min(int(round(fractions[2] * len(names))), len(names) - num_valid)
    num_train = len(names) - num_valid - num_test
    shuffled = [names[i] for i in order]
    groups = (shuffled[:num_train], shuffled[num_train:num_train + num_valid], shuffled[num_train + num_valid:])
    return {split: sorted(group) for split, group in zip(spec_lib.SPLITS, groups)}


def _split_of_key(key: str, where: str) -> spec_lib.Split:
    split = _SPLIT_ALIASES.get(key.strip().lower())
    if split is None:
        raise ConvertError(f"{where}: unknown split {key!r}; expected train, valid (or validation) or test.")
    return split


def read_split_file(path: str) -> Dict[spec_lib.Split, List[str]]:
    """Parses a JSON or text split file (see the module docstring) into split -> class names."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as error:
        raise ConvertError(f"Cannot read split file {path}: {error}") from None
    splits: Dict[spec_lib.Split, List[str]] = {split: [] for split in spec_lib.SPLITS}
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConvertError(f"Split file {path} is not valid JSON: {error}") from None
        for key, names in data.items():
            split = _split_of_key(key, f"Split file {path}")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConvertError(f"Split file {path}: {key!r} must list class names (strings).")
            splits[split].extend(names)
        return splits
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = line[1:-1] if line.startswith("[") and line.endswith("]") else (
            line[:-1] if line.endswith(":") else None)
        if header is not None and header.strip().lower() in _SPLIT_ALIASES:
            current = _SPLIT_ALIASES[header.strip().lower()]
            continue
        if line.startswith("[") and line.endswith("]"):
            _split_of_key(line[1:-1], f"Split file {path} line {number}")
        if current is None:
            raise ConvertError(f"Split file {path} line {number}: class {line!r} comes before any split header "
                               "(train:, valid: or test:).")
        splits[current].append(line)
    return splits


def check_splits(splits: Mapping[spec_lib.Split, Sequence[str]], known: Sequence[str], where: str,
                 source: str) -> Dict[spec_lib.Split, List[str]]:
    """Every named class must exist and appear once; unnamed classes are dropped with a warning."""
    known_set = set(known)
    seen: Dict[str, spec_lib.Split] = {}
    unknown = []
    for split in spec_lib.SPLITS:
        for name in splits.get(split, []):
            if name not in known_set:
                unknown.append(name)
            elif name in seen:
                raise ConvertError(f"{where}: class {name!r} is listed in both {seen[name].value} and "
                                   f"{split.value}.")
            else:
                seen[name] = split
    if unknown:
        raise ConvertError(f"{where} names {len(unknown)} class(es) that {source} does not have: "
                           f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}.")
    if not seen:
        raise ConvertError(f"{where} assigns no class to any split.")
    left_out = [name for name in known if name not in seen]
    if left_out:
        log.warning("%s does not name %d class(es) of %s; they are left out: %s%s", where, len(left_out), source,
                    left_out[:10], " ..." if len(left_out) > 10 else "")
    return {split: list(splits.get(split, [])) for split in spec_lib.SPLITS}


def _choose_splits(class_names: Sequence[str], split_file: Optional[str], fractions: Sequence[float],
                   seed: int, source: str) -> Tuple[Dict[spec_lib.Split, List[str]], dict]:
    """The class split and its description for the manifest."""
    if split_file is not None:
        with open(split_file, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        splits = check_splits(read_split_file(split_file), class_names, f"Split file {split_file}", source)
        return splits, {"split_file": os.path.abspath(split_file), "sha256": digest}
    return split_by_fractions(class_names, fractions, seed), {"fractions": [float(f) for f in fractions],
                                                              "seed": int(seed)}


def _dataset_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    if not cleaned:
        raise ConvertError(f"Cannot make a dataset name from {name!r}; pass one explicitly.")
    return cleaned


# ----------------------------------------------------------------------------- image folders
def list_image_folder(input_dir: str) -> Dict[str, List[str]]:
    """Class name -> sorted image paths, one sub-folder per class (images found recursively).

    Hidden entries (starting with '.') are ignored; files directly in ``input_dir`` are ignored with
    a warning. Raises ConvertError for a missing folder, no class folders, or an empty class folder.
    """
    input_dir = os.fspath(input_dir)
    if not os.path.isdir(input_dir):
        raise ConvertError(f"Input folder {input_dir} does not exist or is not a folder.")
    classes: Dict[str, List[str]] = {}
    loose = []
    for entry in sorted(os.listdir(input_dir)):
        if entry.startswith("."):
            continue
        path = os.path.join(input_dir, entry)
        if not os.path.isdir(path):
            loose.append(entry)
            continue
        files = []
        for folder, subfolders, names in os.walk(path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            files.extend(os.path.join(folder, n) for n in sorted(names) if not n.startswith("."))
        if not files:
            raise ConvertError(f"Class folder {path} is empty; every class needs at least "
                               f"{writer.MIN_IMAGES_PER_CLASS} images (remove the folder or add images).")
        classes[entry] = sorted(files)
    if loose:
        log.warning("Ignoring %d file(s) directly in %s (images must be in one sub-folder per class): %s",
                    len(loose), input_dir, loose[:5])
    if not classes:
        raise ConvertError(f"Input folder {input_dir} has no class sub-folders (expected one folder per class).")
    return classes


def _read_files(paths: Sequence[str]) -> Iterable[Tuple[str, object]]:
    """(path, bytes), or (path, the OSError) for a file that cannot be read."""
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as error:
            data = error
        yield path, data


def _load_folder_class(paths: Sequence[str], skip_bad_images: bool, max_side: Optional[int],
                       jpeg_quality: int) -> writer.ClassImages:
    return _prepare_all(_read_files(paths), skip_bad_images, max_side, jpeg_quality)


def plan_image_folder(input_dir: str, output_dir: str, name: Optional[str] = None,
                      split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, split_file: Optional[str] = None,
                      seed: int = 0, skip_bad_images: bool = False, max_side: Optional[int] = None,
                      jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> writer.DatasetPlan:
    """Checks the folder and the split, and returns what to write (nothing is written here)."""
    input_dir = os.path.abspath(os.fspath(input_dir))
    classes = list_image_folder(input_dir)
    small = [(c, len(p)) for c, p in classes.items() if len(p) < writer.MIN_IMAGES_PER_CLASS]
    if small:
        raise ConvertError(f"Class folder {os.path.join(input_dir, small[0][0])} has {small[0][1]} file(s); every "
                           f"class needs at least {writer.MIN_IMAGES_PER_CLASS} images ({len(small)} such class(es)).")
    splits, split_description = _choose_splits(list(classes), split_file, split_fractions, seed,
                                               f"input folder {input_dir}")
    name = _dataset_name(name or os.path.basename(input_dir.rstrip(os.sep)))
    load = functools.partial(_load_folder_class, skip_bad_images=skip_bad_images, max_side=max_side,
                             jpeg_quality=jpeg_quality)
    jobs = [writer.ClassJob(class_name, split, functools.partial(load, classes[class_name]))
            for split in spec_lib.SPLITS for class_name in splits[split]]
    provenance = {"converter": "image_folder", "input_dir": input_dir, "split": split_description,
                  "max_side": max_side, "jpeg_quality": int(jpeg_quality),
                  "files_per_class": {job.name: len(classes[job.name]) for job in jobs}}
    return writer.DatasetPlan(os.path.join(os.fspath(output_dir), name), name, jobs, provenance)


def convert_image_folder(input_dir: str, output_dir: str, name: Optional[str] = None,
                         split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                         split_file: Optional[str] = None, seed: int = 0, skip_bad_images: bool = False,
                         max_side: Optional[int] = None, jpeg_quality: int = DEFAULT_JPEG_QUALITY,
                         workers: int = 2, progress: bool = True) -> writer.WriteReport:
    """Converts ``input_dir/<class>/<images>`` to ``output_dir/<name>`` (default name: the folder's)."""
    plan = plan_image_folder(input_dir, output_dir, name, split_fractions, split_file, seed, skip_bad_images,
                             max_side, jpeg_quality)
    return plan.write(workers=workers, parallel="thread", progress=progress)


# ----------------------------------------------------------------------------- TFDS
def _only_feature(features, kind, key: Optional[str], what: str, dataset: str) -> str:
    items = dict(features.items())
    if key is not None:
        if key not in items:
            raise ConvertError(f"TFDS dataset {dataset} has no feature {key!r}; its features are {sorted(items)}.")
        if not isinstance(items[key], kind):
            raise ConvertError(f"TFDS dataset {dataset} feature {key!r} is a {type(items[key]).__name__}, "
                               f"not a {kind.__name__} ({what}).")
        return key
    found = [k for k, v in items.items() if isinstance(v, kind)]
    if len(found) != 1:
        raise ConvertError(f"TFDS dataset {dataset} has {len(found)} {kind.__name__} features {found}; name the "
                           f"{what} feature explicitly (--{what}_key).")
    return found[0]


class _TfdsReader:
    """Reads a prepared TFDS dataset once per group of classes, keeping only those classes' images."""

    def __init__(self, builder, splits: Sequence[str], image_key: str, label_key: str, classes_per_pass: int,
                 skip_bad_images: bool, max_side: Optional[int], jpeg_quality: int):
        self.builder, self.splits = builder, list(splits)
        self.image_key, self.label_key = image_key, label_key
        self.classes_per_pass = classes_per_pass
        self.skip_bad_images, self.max_side, self.jpeg_quality = skip_bad_images, max_side, jpeg_quality
        self.groups: List[List[int]] = []
        self.cache: Dict[int, List[Tuple[str, bytes]]] = {}
        self.lock = threading.Lock()

    def _examples(self):
        import tensorflow_datasets as tfds

        decoders = {self.image_key: tfds.decode.SkipDecoding()}
        for split in self.splits:
            dataset = self.builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
            for number, example in enumerate(dataset.as_numpy_iterator()):
                yield split, number, example

    def label_counts(self) -> Dict[int, int]:
        import tensorflow_datasets as tfds

        counts: Dict[int, int] = {}
        for split in self.splits:
            dataset = self.builder.as_dataset(split=split, decoders={self.image_key: tfds.decode.SkipDecoding()},
                                              shuffle_files=False)
            for label in dataset.map(lambda e: e[self.label_key]).as_numpy_iterator():
                counts[int(label)] = counts.get(int(label), 0) + 1
        return counts

    def plan(self, pending: List[Tuple[int, writer.ClassJob]], label_of: Mapping[str, int]) -> None:
        labels = [label_of[job.name] for _, job in pending]
        size = self.classes_per_pass if self.classes_per_pass > 0 else max(1, len(labels))
        self.groups = [labels[i:i + size] for i in range(0, len(labels), size)]

    def _read_group(self, group: Sequence[int]) -> None:
        wanted = set(group)
        found: Dict[int, List[Tuple[str, bytes]]] = {label: [] for label in group}
        name = self.builder.info.full_name
        for split, number, example in self._examples():
            label = int(example[self.label_key])
            if label in wanted:
                found[label].append((f"TFDS {name} split {split} example {number}", example[self.image_key]))
        self.cache.update(found)

    def load(self, label: int) -> writer.ClassImages:
        with self.lock:
            if label not in self.cache:
                group = next((g for g in self.groups if label in g), [label])
                self._read_group(group)
            items = self.cache.pop(label)
        return _prepare_all(items, self.skip_bad_images, self.max_side, self.jpeg_quality)


def _tfds_builder(name: str, data_dir: Optional[str], download: bool):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # tfds raises several types (DatasetNotFoundError, registry errors)
        raise ConvertError(f"Cannot open TFDS dataset {name!r} (data_dir={data_dir}): {error}") from None
    if not builder.is_prepared():
        if not download:
            raise ConvertError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir}. Prepare it first, point "
                "--tfds_data_dir at the folder holding it, or pass --download to download and prepare it "
                "(needs network access).")
        builder.download_and_prepare()
    return builder


def plan_tfds(name: str, output_dir: str, data_dir: Optional[str] = None, download: bool = False,
              tfds_splits: Optional[Sequence[str]] = None, image_key: Optional[str] = None,
              label_key: Optional[str] = None, dataset_name: Optional[str] = None,
              split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, split_file: Optional[str] = None,
              seed: int = 0, skip_bad_images: bool = False, max_side: Optional[int] = None,
              jpeg_quality: int = DEFAULT_JPEG_QUALITY, classes_per_pass: int = 0):
    """Checks a prepared TFDS dataset; returns (plan, before_load hook). Reads the labels once."""
    import tensorflow_datasets as tfds

    builder = _tfds_builder(name, data_dir, download)
    features = builder.info.features
    image_key = _only_feature(features, tfds.features.Image, image_key, "image", name)
    label_key = _only_feature(features, tfds.features.ClassLabel, label_key, "label", name)
    available = list(builder.info.splits.keys())
    tfds_splits = list(tfds_splits) if tfds_splits else sorted(available)
    unknown = [s for s in tfds_splits if s not in available]
    if unknown:
        raise ConvertError(f"TFDS dataset {name} has no split(s) {unknown}; it has {sorted(available)}.")
    label_feature = features[label_key]
    names = list(label_feature.names)
    if len(set(names)) != len(names):
        names = [f"{i}_{n}" for i, n in enumerate(names)]
    reader = _TfdsReader(builder, tfds_splits, image_key, label_key, int(classes_per_pass), skip_bad_images,
                         max_side, jpeg_quality)
    counts = reader.label_counts()
    bad_labels = sorted(label for label in counts if not 0 <= label < len(names))
    if bad_labels:
        raise ConvertError(f"TFDS dataset {name} has labels {bad_labels[:10]} outside [0, {len(names)}).")
    present = [n for i, n in enumerate(names) if counts.get(i, 0) > 0]
    absent = [n for i, n in enumerate(names) if counts.get(i, 0) == 0]
    if absent:
        log.warning("TFDS dataset %s has no images of %d class(es) in splits %s; they are left out: %s", name,
                    len(absent), tfds_splits, absent[:10])
    source = f"TFDS dataset {name} (splits {tfds_splits})"
    if split_file is not None:
        # A split file may name a class with no images in the chosen TFDS splits: say so precisely.
        listed = read_split_file(split_file)
        empty = [n for names_ in listed.values() for n in names_ if n in absent]
        if empty:
            raise ConvertError(f"Split file {split_file} names class(es) {empty[:10]} that have no images in "
                               f"{source}.")
    small = [n for i, n in enumerate(names) if 0 < counts.get(i, 0) < writer.MIN_IMAGES_PER_CLASS]
    splits, split_description = _choose_splits(present, split_file, split_fractions, seed, source)
    chosen_small = [n for n in small if any(n in group for group in splits.values())]
    if chosen_small:
        raise ConvertError(f"{source}: class(es) {chosen_small[:10]} have fewer than {writer.MIN_IMAGES_PER_CLASS} "
                           "images; every class needs at least 2 (leave them out with a split file).")
    label_of = {n: i for i, n in enumerate(names)}
    jobs = [writer.ClassJob(class_name, split, functools.partial(reader.load, label_of[class_name]))
            for split in spec_lib.SPLITS for class_name in splits[split]]
    out_name = _dataset_name(dataset_name or name)
    provenance = {"converter": "tfds", "tfds_name": builder.info.full_name, "tfds_splits": tfds_splits,
                  "image_key": image_key, "label_key": label_key, "split": split_description,
                  "max_side": max_side, "jpeg_quality": int(jpeg_quality),
                  "examples_per_class": {n: counts.get(label_of[n], 0) for split in spec_lib.SPLITS
                                         for n in splits[split]}}
    plan = writer.DatasetPlan(os.path.join(os.fspath(output_dir), out_name), out_name, jobs, provenance)
    return plan, functools.partial(reader.plan, label_of=label_of)


def convert_tfds(name: str, output_dir: str, data_dir: Optional[str] = None, download: bool = False,
                 progress: bool = True, **kwargs) -> writer.WriteReport:
    """Converts a prepared TFDS image-classification dataset; kwargs as :func:`plan_tfds`."""
    plan, before_load = plan_tfds(name, output_dir, data_dir, download, **kwargs)
    return plan.write(workers=1, progress=progress, before_load=before_load)
