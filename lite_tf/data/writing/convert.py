"""Converters to Meta-Dataset records: image folders and TFDS image-classification datasets.

Both produce ``<output_dir>/<name>/{<class_id>.tfrecords, dataset_spec.json, lite_tf_manifest.json}``
through writer.py (atomic class files, spec written last, a rerun verifies every class file and
rewrites what is missing, damaged or stale, refusal to mix with another dataset). ``verify_*``
checks a finished set the same way without writing.

Class splits: splits.py (fractions with a seed, or a split file). Hierarchies: hierarchy.py
(``superclass_file`` for a two-level set, ``parent_file`` for a DAG). Images: images.py
(``image_format`` 'jpeg' or lossless 'png', ``channels`` 3 or 1, ``max_side``). ``target_size``: the
image size training will use; the report warns, on one line, when images are smaller.

Bad input (errors name the file, folder or class):
- a file that is not a readable image: ``BadImageError`` naming the file; with
  ``skip_bad_images=True`` it is skipped instead, logged, and counted in the summary (fix it in place
  and rerun: its class is rewritten with it, since the file's size or time changed);
- an empty class folder, or a class with fewer than 2 images (before or after skipping): error;
- a split file naming unknown classes, a class in two splits, an unknown split header: error;
- fractions that are negative or do not sum to 1: error; a bad hierarchy file: error.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing import hierarchy
from lite_tf.data.writing import manifest as manifest_lib
from lite_tf.data.writing import writer
from lite_tf.data.writing.errors import BadImageError, ConvertError
from lite_tf.data.writing.images import DEFAULT_JPEG_QUALITY, ImageOptions, prepare, prepare_image
from lite_tf.data.writing.splits import (DEFAULT_SPLIT_FRACTIONS, check_splits, choose_splits, read_split_file,
                                         split_by_fractions)

log = logging.getLogger(__name__)

__all__ = ["BadImageError", "ConvertError", "DEFAULT_JPEG_QUALITY", "DEFAULT_SPLIT_FRACTIONS", "ImageOptions",
           "check_splits", "convert_image_folder", "convert_tfds", "list_image_folder", "plan_image_folder",
           "plan_tfds", "prepare_image", "read_split_file", "split_by_fractions"]


# ----------------------------------------------------------------------------- images
def _prepare_all(items: Iterable[Tuple[str, object]], skip_bad_images: bool,
                 options: ImageOptions) -> writer.ClassImages:
    """(origin, bytes or OSError) pairs -> ClassImages; bad images raise, or are skipped and listed."""
    result = writer.ClassImages([], sizes=[])
    for origin, data in items:
        try:
            if isinstance(data, OSError):
                raise BadImageError(f"{origin} cannot be read: {data}")
            prepared = prepare(data, origin, options)
            result.images.append(prepared.data)
            result.sizes.append(prepared.size)
        except BadImageError as error:
            if not skip_bad_images:
                raise BadImageError(f"{error} (pass skip_bad_images / --skip_bad_images to skip such files)") \
                    from None
            result.skipped.append((origin, str(error)))
    return result


# ----------------------------------------------------------------------------- splits and hierarchy
def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _plan_classes(class_names: Sequence[str], split_file: Optional[str], fractions: Sequence[float], seed: int,
                  source: str, superclass_file: Optional[str] = None, parent_file: Optional[str] = None
                  ) -> Tuple[Dict[spec_lib.Split, List[str]], dict, Optional[writer.SpecMaker]]:
    """Classes per split in class-id order, the manifest's description, and the spec maker (None: flat)."""
    if superclass_file is not None and parent_file is not None:
        raise ConvertError("Give at most one hierarchy: superclass_file (two-level) or parent_file (a DAG).")
    if superclass_file is not None:
        superclass_of = hierarchy.superclasses_of(hierarchy.read_parent_map(superclass_file), class_names,
                                                  superclass_file)
        superclasses = sorted(set(superclass_of.values()))
        super_splits, description = choose_splits(superclasses, split_file, fractions, seed,
                                                  f"the superclasses of {source}")
        kept = {c: s for c, s in superclass_of.items() if any(s in group for group in super_splits.values())}
        description = {**description, "superclass_file": os.path.abspath(superclass_file),
                       "superclass_sha256": _file_digest(superclass_file)}

        def make_bilevel(name, path, names, counts):
            return hierarchy.make_bilevel_spec(name, path, super_splits, kept, names, counts)
        return hierarchy.bilevel_order(super_splits, kept), description, make_bilevel
    if parent_file is not None:
        parents = hierarchy.read_parent_map(parent_file)
        hierarchy.check_dag(parents, class_names, parent_file)
        class_splits, description = choose_splits(class_names, split_file, fractions, seed, source,
                                                  expand=hierarchy.expand_nodes(parents, class_names))
        ordered = {split: sorted(class_splits[split]) for split in spec_lib.SPLITS}
        for split, nodes in hierarchy.split_subgraphs(parents, ordered).items():
            if ordered[spec_lib.Split.of(split)] and all(not node["children_ids"] for node in nodes):
                log.warning("%s: split %s keeps no node of the hierarchy above its classes (their ancestors lie "
                            "above TRAIN classes too), so its episodes cannot use the hierarchy; name subtree "
                            "roots in a split file to keep it.", parent_file, split)
        description = {**description, "parent_file": os.path.abspath(parent_file),
                       "parent_sha256": _file_digest(parent_file)}

        def make_hierarchical(name, path, names, counts):
            return hierarchy.make_hierarchical_spec(name, path, parents, ordered, names, counts)
        return ordered, description, make_hierarchical
    splits, description = choose_splits(class_names, split_file, fractions, seed, source)
    return splits, description, None


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


def _read_files(paths: Sequence[str], root: str) -> Tuple[List[Tuple[str, object]], List[manifest_lib.FileStat]]:
    """(path, bytes or the OSError) per file, and each file's (path, size, mtime) as it was read."""
    items, stats = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                stat = os.fstat(f.fileno())
                data = f.read()
        except OSError as error:
            data, stat = error, None
        items.append((path, data))
        stats.append(manifest_lib.file_stat(path, root, stat))
    return items, stats


def _load_folder_class(paths: Sequence[str], root: str, skip_bad_images: bool,
                       options: ImageOptions) -> writer.ClassImages:
    items, stats = _read_files(paths, root)
    result = _prepare_all(items, skip_bad_images, options)
    result.sources = manifest_lib.sources_digest(stats)
    return result


def plan_image_folder(input_dir: str, output_dir: str, name: Optional[str] = None,
                      split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS, split_file: Optional[str] = None,
                      seed: int = 0, skip_bad_images: bool = False, max_side: Optional[int] = None,
                      jpeg_quality: int = DEFAULT_JPEG_QUALITY, image_format: str = "jpeg", channels: int = 3,
                      superclass_file: Optional[str] = None, parent_file: Optional[str] = None) -> writer.DatasetPlan:
    """Checks the folder, the options, the split and the hierarchy; returns what to write (writes nothing)."""
    options = ImageOptions(image_format, channels, max_side, jpeg_quality)
    input_dir = os.path.abspath(os.fspath(input_dir))
    classes = list_image_folder(input_dir)
    small = [(c, len(p)) for c, p in classes.items() if len(p) < writer.MIN_IMAGES_PER_CLASS]
    if small:
        raise ConvertError(f"Class folder {os.path.join(input_dir, small[0][0])} has {small[0][1]} file(s); every "
                           f"class needs at least {writer.MIN_IMAGES_PER_CLASS} images ({len(small)} such class(es)).")
    splits, split_description, make_spec = _plan_classes(list(classes), split_file, split_fractions, seed,
                                                         f"input folder {input_dir}", superclass_file, parent_file)
    name = _dataset_name(name or os.path.basename(input_dir.rstrip(os.sep)))
    load = functools.partial(_load_folder_class, root=input_dir, skip_bad_images=skip_bad_images, options=options)
    jobs = [writer.ClassJob(class_name, split, functools.partial(load, classes[class_name]),
                            functools.partial(manifest_lib.folder_digest, classes[class_name], input_dir))
            for split in spec_lib.SPLITS for class_name in splits[split]]
    provenance = {"converter": "image_folder", "input_dir": input_dir, "split": split_description,
                  **options.provenance(), "files_per_class": {job.name: len(classes[job.name]) for job in jobs}}
    return writer.DatasetPlan(os.path.join(os.fspath(output_dir), name), name, jobs, provenance, make_spec)


def convert_image_folder(input_dir: str, output_dir: str, name: Optional[str] = None,
                         split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                         split_file: Optional[str] = None, seed: int = 0, skip_bad_images: bool = False,
                         max_side: Optional[int] = None, jpeg_quality: int = DEFAULT_JPEG_QUALITY,
                         workers: int = 2, progress: bool = True, image_format: str = "jpeg", channels: int = 3,
                         superclass_file: Optional[str] = None, parent_file: Optional[str] = None,
                         target_size: Optional[int] = None) -> writer.WriteReport:
    """Converts ``input_dir/<class>/<images>`` to ``output_dir/<name>`` (default name: the folder's)."""
    plan = plan_image_folder(input_dir, output_dir, name, split_fractions, split_file, seed, skip_bad_images,
                             max_side, jpeg_quality, image_format, channels, superclass_file, parent_file)
    return plan.write(workers=workers, parallel="thread", progress=progress, target_size=target_size)


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
                 skip_bad_images: bool, options: ImageOptions):
        self.builder, self.splits = builder, list(splits)
        self.image_key, self.label_key = image_key, label_key
        self.classes_per_pass = classes_per_pass
        self.skip_bad_images, self.options = skip_bad_images, options
        self.groups: List[List[int]] = []
        self.cache: Dict[int, List[Tuple[str, bytes]]] = {}
        self.lock = threading.Lock()

    def _dataset(self, split: str):
        import tensorflow_datasets as tfds

        return self.builder.as_dataset(split=split, decoders={self.image_key: tfds.decode.SkipDecoding()},
                                       shuffle_files=False)

    def _examples(self):
        for split in self.splits:
            for number, example in enumerate(self._dataset(split).as_numpy_iterator()):
                yield split, number, example

    def label_counts(self) -> Dict[int, int]:
        counts: Dict[int, int] = {}
        for split in self.splits:
            for label in self._dataset(split).map(lambda e: e[self.label_key]).as_numpy_iterator():
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
        return _prepare_all(items, self.skip_bad_images, self.options)


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
              jpeg_quality: int = DEFAULT_JPEG_QUALITY, classes_per_pass: int = 0, image_format: str = "jpeg",
              channels: int = 3, superclass_file: Optional[str] = None, parent_file: Optional[str] = None):
    """Checks a prepared TFDS dataset; returns (plan, before_load hook). Reads the labels once."""
    import tensorflow_datasets as tfds

    options = ImageOptions(image_format, channels, max_side, jpeg_quality)
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
    reader = _TfdsReader(builder, tfds_splits, image_key, label_key, int(classes_per_pass), skip_bad_images, options)
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
    if split_file is not None and superclass_file is None:
        # A split file may name a class with no images in the chosen TFDS splits: say so precisely.
        listed = read_split_file(split_file)
        empty = [n for names_ in listed.values() for n in names_ if n in absent]
        if empty:
            raise ConvertError(f"Split file {split_file} names class(es) {empty[:10]} that have no images in "
                               f"{source}.")
    small = [n for i, n in enumerate(names) if 0 < counts.get(i, 0) < writer.MIN_IMAGES_PER_CLASS]
    splits, split_description, make_spec = _plan_classes(present, split_file, split_fractions, seed, source,
                                                         superclass_file, parent_file)
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
                  **options.provenance(),
                  "examples_per_class": {n: counts.get(label_of[n], 0) for split in spec_lib.SPLITS
                                         for n in splits[split]}}
    plan = writer.DatasetPlan(os.path.join(os.fspath(output_dir), out_name), out_name, jobs, provenance, make_spec)
    return plan, functools.partial(reader.plan, label_of=label_of)


def convert_tfds(name: str, output_dir: str, data_dir: Optional[str] = None, download: bool = False,
                 progress: bool = True, target_size: Optional[int] = None, **kwargs) -> writer.WriteReport:
    """Converts a prepared TFDS image-classification dataset; kwargs as :func:`plan_tfds`."""
    plan, before_load = plan_tfds(name, output_dir, data_dir, download, **kwargs)
    return plan.write(workers=1, progress=progress, before_load=before_load, target_size=target_size)
