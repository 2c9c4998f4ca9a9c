"""Dataset specifications (``dataset_spec.json``) in Meta-Dataset's three formats.

- flat (``DatasetSpecification``): ``classes_per_split`` counts; class ids are contiguous and
  ordered TRAIN, VALID, TEST.
- two-level (``BiLevelDatasetSpecification``, Omniglot): ``superclasses_per_split`` counts and
  ``classes_per_superclass``; superclass ids are ordered by split and class ids by superclass.
- hierarchical (``HierarchicalDatasetSpecification``, ImageNet): a WordNet DAG per split; the
  split's classes are the DAG's leaves, with contiguous ids per split in sorted ``wn_id`` order
  (``class_names`` maps id -> ``wn_id``); ``images_per_class`` is keyed by split then ``wn_id`` and
  also lists internal nodes (the images under them).

The JSON written here has the same schema as the files Meta-Dataset ships, so its reader loads
them. The ``path`` field of shipped files is a placeholder; :func:`load_spec` replaces it with the
folder that holds the records.

Bad input raises :class:`SpecError` naming the file and the key that is wrong.
"""
from __future__ import annotations

import copy
import enum
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Union

from lite_tf import atomic
from lite_tf.errors import DataError

SPEC_FILE = "dataset_spec.json"
DEFAULT_FILE_PATTERN = "{}.tfrecords"


class SpecError(DataError):
    """A dataset specification that cannot be read or is inconsistent."""


class Split(str, enum.Enum):
    TRAIN = "TRAIN"
    VALID = "VALID"
    TEST = "TEST"

    @classmethod
    def of(cls, split) -> "Split":
        """Accepts a Split, or a name in any case (``"train"``, ``"valid"``/``"validation"``, ``"test"``)."""
        if isinstance(split, Split):
            return split
        if isinstance(split, str):
            name = split.strip().upper()
            if name == "VALIDATION":
                name = "VALID"
            if name in cls.__members__:
                return cls[name]
        raise SpecError(f"Unknown split {split!r}; expected one of TRAIN, VALID, TEST.")


TRAIN, VALID, TEST = Split.TRAIN, Split.VALID, Split.TEST
SPLITS = (TRAIN, VALID, TEST)


def _int_keys(mapping: Mapping, what: str, source: str) -> Dict[int, int]:
    try:
        return {int(k): int(v) for k, v in mapping.items()}
    except (TypeError, ValueError, AttributeError):
        raise SpecError(f"{source}: {what} must map integer ids to integers.") from None


def _split_counts(counts: Mapping, what: str, source: str) -> Dict[Split, int]:
    out = {}
    for split in SPLITS:
        if split.value not in counts:
            raise SpecError(f"{source}: {what} has no entry for split {split.value}.")
        out[split] = int(counts[split.value])
    return out


class DatasetSpec:
    """Flat specification: class ids contiguous per split, in order TRAIN, VALID, TEST."""

    kind = "flat"
    json_class = "DatasetSpecification"

    def __init__(self, name: str, path: str, classes_per_split: Mapping, images_per_class: Mapping[int, int],
                 class_names: Optional[Mapping[int, str]] = None, file_pattern: str = DEFAULT_FILE_PATTERN):
        self.name = str(name)
        self.path = os.fspath(path) if path is not None else None
        self.classes_per_split = {Split.of(k): int(v) for k, v in classes_per_split.items()}
        self.images_per_class = {int(k): int(v) for k, v in images_per_class.items()}
        self.class_names = {int(k): str(v) for k, v in (class_names or {}).items()}
        self.file_pattern = file_pattern
        self._check()

    def _check(self):
        if set(self.classes_per_split) != set(SPLITS):
            raise SpecError(f"Dataset {self.name}: classes_per_split needs TRAIN, VALID and TEST.")
        total = sum(self.classes_per_split.values())
        missing = [c for c in range(total) if c not in self.images_per_class]
        if missing:
            raise SpecError(
                f"Dataset {self.name}: images_per_class has no count for class id(s) {missing[:10]} "
                f"(expected ids 0..{total - 1})."
            )
        if self.file_pattern.count("{}") != 1:
            raise SpecError(f"Dataset {self.name}: file_pattern {self.file_pattern!r} must hold one '{{}}'.")

    def classes(self, split) -> List[int]:
        """Absolute class ids of a split."""
        split = Split.of(split)
        offset = 0
        for s in SPLITS:
            if s == split:
                return list(range(offset, offset + self.classes_per_split[s]))
            offset += self.classes_per_split[s]
        raise AssertionError(split)

    def num_classes(self, split) -> int:
        return len(self.classes(split))

    def class_file(self, class_id: int) -> str:
        """The record file of one class (``<path>/<class_id>.tfrecords``)."""
        if self.path is None:
            raise SpecError(f"Dataset {self.name}: the spec has no records path.")
        return os.path.join(self.path, self.file_pattern.format(int(class_id)))

    def with_images_per_class(self, images_per_class: Mapping[int, int], path: Optional[str] = None):
        """A copy with other per-class counts (e.g. shrunk for tests) and optionally another path."""
        counts = {int(k): int(v) for k, v in images_per_class.items()}
        if set(counts) != set(self.images_per_class):
            raise SpecError(f"Dataset {self.name}: new images_per_class must cover the same class ids.")
        new = copy.copy(self)
        new.images_per_class = counts
        new.path = self.path if path is None else os.fspath(path)
        return new

    def to_json_dict(self) -> dict:
        return {
            "name": self.name,
            "classes_per_split": {s.value: self.classes_per_split[s] for s in SPLITS},
            "images_per_class": {str(k): v for k, v in sorted(self.images_per_class.items())},
            "class_names": {str(k): v for k, v in sorted(self.class_names.items())},
            "path": self.path,
            "file_pattern": self.file_pattern,
            "__class__": self.json_class,
        }

    def __repr__(self):
        counts = "/".join(str(self.num_classes(s)) for s in SPLITS)
        return f"{type(self).__name__}(name={self.name!r}, classes={counts}, path={self.path!r})"


class BiLevelDatasetSpec(DatasetSpec):
    """Two-level specification (Omniglot): superclasses (alphabets) split, classes nested in them."""

    kind = "bilevel"
    json_class = "BiLevelDatasetSpecification"

    def __init__(self, name: str, path: str, superclasses_per_split: Mapping, classes_per_superclass: Mapping[int, int],
                 images_per_class: Mapping[int, int], class_names: Optional[Mapping[int, str]] = None,
                 superclass_names: Optional[Mapping[int, str]] = None, file_pattern: str = DEFAULT_FILE_PATTERN):
        self.superclasses_per_split = {Split.of(k): int(v) for k, v in superclasses_per_split.items()}
        self.classes_per_superclass = {int(k): int(v) for k, v in classes_per_superclass.items()}
        self.superclass_names = {int(k): str(v) for k, v in (superclass_names or {}).items()}
        if set(self.superclasses_per_split) != set(SPLITS):
            raise SpecError(f"Dataset {name}: superclasses_per_split needs TRAIN, VALID and TEST.")
        total = sum(self.superclasses_per_split.values())
        missing = [s for s in range(total) if s not in self.classes_per_superclass]
        if missing:
            raise SpecError(f"Dataset {name}: classes_per_superclass has no entry for superclass(es) {missing[:10]}.")
        # Class id offset of every superclass (classes are numbered superclass by superclass).
        self._superclass_offset = {}
        offset = 0
        for superclass in range(total):
            self._superclass_offset[superclass] = offset
            offset += self.classes_per_superclass[superclass]
        classes_per_split = {split: sum(self.classes_per_superclass[s] for s in self._superclass_range(split))
                             for split in SPLITS}
        super().__init__(name, path, classes_per_split, images_per_class, class_names, file_pattern)

    def _superclass_range(self, split) -> range:
        split = Split.of(split)
        offset = 0
        for s in SPLITS:
            if s == split:
                return range(offset, offset + self.superclasses_per_split[s])
            offset += self.superclasses_per_split[s]
        raise AssertionError(split)

    def superclasses(self, split) -> List[int]:
        """Absolute superclass (alphabet) ids of a split."""
        return list(self._superclass_range(split))

    def classes_of_superclass(self, superclass: int) -> List[int]:
        """Absolute class ids inside one superclass."""
        start = self._superclass_offset[int(superclass)]
        return list(range(start, start + self.classes_per_superclass[int(superclass)]))

    def to_json_dict(self) -> dict:
        return {
            "name": self.name,
            "superclasses_per_split": {s.value: self.superclasses_per_split[s] for s in SPLITS},
            "classes_per_superclass": {str(k): v for k, v in sorted(self.classes_per_superclass.items())},
            "images_per_class": {str(k): v for k, v in sorted(self.images_per_class.items())},
            "superclass_names": {str(k): v for k, v in sorted(self.superclass_names.items())},
            "class_names": {str(k): v for k, v in sorted(self.class_names.items())},
            "path": self.path,
            "file_pattern": self.file_pattern,
            "__class__": self.json_class,
        }


def _leaf_class_ids(name: str, split: Split, leaves: Sequence[str], offset: int,
                    class_names: Mapping[int, str]) -> Dict[str, int]:
    """wn_id -> class id for one split's leaves, which own ids offset .. offset + len(leaves) - 1.

    Meta-Dataset's converter numbers them in sorted order; its reader takes the ids from
    ``class_names`` in any order, and its TFDS builder relies on that: it rewrites the
    ilsvrc_2012_v2 spec with v1's ``class_names`` (v1's class order). So any order is accepted as
    long as the split's id range names exactly the split's leaves.
    """
    ids = range(offset, offset + len(leaves))
    named = {class_names.get(class_id): class_id for class_id in ids}
    if set(named) == set(leaves):
        return {wn_id: named[wn_id] for wn_id in leaves}
    wrong = next(c for c in ids if class_names.get(c) not in set(leaves) or named[class_names.get(c)] != c)
    raise SpecError(
        f"Dataset {name}: class_names of split {split.value} (ids {offset}..{offset + len(leaves) - 1}) must name "
        f"the split's {len(leaves)} leaves, each once; class {wrong} is {class_names.get(wrong)!r}, which "
        f"{'is named twice' if class_names.get(wrong) in set(leaves) else 'is not a leaf of this split'}.")


class HierarchicalDatasetSpec(DatasetSpec):
    """Hierarchical specification (ImageNet): a DAG of WordNet nodes per split, classes are leaves.

    ``graph(split)`` maps every node ``wn_id`` to its children; ``leaves_under(split)`` maps every
    node to the sorted class ids of the leaves it spans.
    """

    kind = "hierarchical"
    json_class = "HierarchicalDatasetSpecification"

    def __init__(self, name: str, path: str, split_subgraphs: Mapping[str, Sequence[Mapping]],
                 class_names: Mapping[int, str], images_per_class: Mapping[int, int],
                 file_pattern: str = DEFAULT_FILE_PATTERN):
        self.split_subgraphs = {}
        for split in SPLITS:
            nodes = split_subgraphs.get(split.value, split_subgraphs.get(split))
            if nodes is None:
                raise SpecError(f"Dataset {name}: split_subgraphs has no entry for split {split.value}.")
            self.split_subgraphs[split] = [dict(node) for node in nodes]
        class_names = {int(k): str(v) for k, v in class_names.items()}
        self._class_of_wn_id = {}
        classes_per_split = {}
        offset = 0
        for split in SPLITS:
            nodes = self.split_subgraphs[split]
            leaves = sorted(n["wn_id"] for n in nodes if not n.get("children_ids"))
            self._class_of_wn_id.update(_leaf_class_ids(name, split, leaves, offset, class_names))
            classes_per_split[split] = len(leaves)
            offset += len(leaves)
        self._graphs = {}
        self._leaves_under = {}
        for split in SPLITS:
            children = {}
            for node in self.split_subgraphs[split]:
                children[node["wn_id"]] = list(node.get("children_ids", []))
            for wn_id, kids in children.items():
                for kid in kids:
                    if kid not in children:
                        raise SpecError(f"Dataset {name}: node {wn_id} of split {split.value} has unknown child {kid}.")
            self._graphs[split] = children
            self._leaves_under[split] = self._compute_leaves(children)
        super().__init__(name, path, classes_per_split, images_per_class, class_names, file_pattern)

    def _compute_leaves(self, children: Dict[str, List[str]]) -> Dict[str, List[int]]:
        memo: Dict[str, frozenset] = {}

        def leaves(wn_id):
            if wn_id not in memo:
                kids = children[wn_id]
                if not kids:
                    memo[wn_id] = frozenset([self._class_of_wn_id[wn_id]])
                else:
                    memo[wn_id] = frozenset().union(*(leaves(k) for k in kids))
            return memo[wn_id]

        for wn_id in children:
            leaves(wn_id)
        return {wn_id: sorted(ids) for wn_id, ids in memo.items()}

    def graph(self, split) -> Dict[str, List[str]]:
        return self._graphs[Split.of(split)]

    def leaves_under(self, split) -> Dict[str, List[int]]:
        """Every node of the split's DAG -> sorted class ids of the leaves it spans."""
        return self._leaves_under[Split.of(split)]

    def class_id_of(self, wn_id: str) -> int:
        return self._class_of_wn_id[wn_id]

    def to_json_dict(self) -> dict:
        images_per_node = {}
        for split in SPLITS:
            counts = {}
            for node in self.split_subgraphs[split]:
                ids = self._leaves_under[split][node["wn_id"]]
                counts[node["wn_id"]] = sum(self.images_per_class[c] for c in ids)
            images_per_node[split.value] = counts
        return {
            "name": self.name,
            "split_subgraphs": {s.value: self.split_subgraphs[s] for s in SPLITS},
            "images_per_class": images_per_node,
            "class_names": {str(k): v for k, v in sorted(self.class_names.items())},
            "path": self.path,
            "file_pattern": self.file_pattern,
            "__class__": self.json_class,
        }


AnySpec = Union[DatasetSpec, BiLevelDatasetSpec, HierarchicalDatasetSpec]


def spec_from_json_dict(data: Mapping, source: str = "<dict>", path: Optional[str] = None) -> AnySpec:
    """Builds a spec from the decoded JSON; ``path`` (if given) replaces the stored one."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: expected a JSON object, got {type(data).__name__}.")
    kind = data.get("__class__", "DatasetSpecification")
    try:
        name = data["name"]
        records_path = data.get("path") if path is None else path
        pattern = data.get("file_pattern", DEFAULT_FILE_PATTERN)
        if kind == "DatasetSpecification":
            return DatasetSpec(
                name, records_path,
                _split_counts(data["classes_per_split"], "classes_per_split", source),
                _int_keys(data["images_per_class"], "images_per_class", source),
                data.get("class_names"), pattern)
        if kind == "BiLevelDatasetSpecification":
            return BiLevelDatasetSpec(
                name, records_path,
                _split_counts(data["superclasses_per_split"], "superclasses_per_split", source),
                _int_keys(data["classes_per_superclass"], "classes_per_superclass", source),
                _int_keys(data["images_per_class"], "images_per_class", source),
                data.get("class_names"), data.get("superclass_names"), pattern)
        if kind == "HierarchicalDatasetSpecification":
            class_names = {int(k): v for k, v in data["class_names"].items()}
            per_split = data["images_per_class"]
            images = {}
            for split in SPLITS:
                counts = per_split.get(split.value)
                if counts is None:
                    raise SpecError(f"{source}: images_per_class has no entry for split {split.value}.")
                images.update(counts)
            images_per_class = {}
            for class_id, wn_id in class_names.items():
                if wn_id not in images:
                    raise SpecError(f"{source}: images_per_class has no count for class {class_id} ({wn_id}).")
                images_per_class[class_id] = int(images[wn_id])
            return HierarchicalDatasetSpec(name, records_path, data["split_subgraphs"], class_names,
                                           images_per_class, pattern)
    except KeyError as error:
        raise SpecError(f"{source}: missing key {error.args[0]!r} for a {kind}.") from None
    except SpecError as error:
        if source in str(error):
            raise
        raise SpecError(f"{source}: {error}") from None
    raise SpecError(
        f"{source}: unknown __class__ {kind!r}; expected DatasetSpecification, "
        "BiLevelDatasetSpecification or HierarchicalDatasetSpecification."
    )


def load_spec(path_or_dir: str, records_dir: Optional[str] = None) -> AnySpec:
    """Reads ``dataset_spec.json`` (a file, or a folder holding one).

    The spec's ``path`` becomes ``records_dir`` if given, else the folder holding the JSON file.
    """
    path_or_dir = os.fspath(path_or_dir)
    file = os.path.join(path_or_dir, SPEC_FILE) if os.path.isdir(path_or_dir) else path_or_dir
    if not os.path.exists(file):
        raise SpecError(f"No dataset specification at {file}; expected a {SPEC_FILE} written by the converter.")
    try:
        with open(file) as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise SpecError(f"{file} is not valid JSON: {error}") from None
    folder = records_dir if records_dir is not None else os.path.dirname(os.path.abspath(file))
    return spec_from_json_dict(data, source=file, path=os.fspath(folder))


def make_flat_spec(name: str, path: str, classes_per_split: Mapping, images_per_class: Mapping[int, int],
                   class_names: Optional[Mapping[int, str]] = None) -> DatasetSpec:
    """A flat spec. ``classes_per_split`` maps each split to a count or to its list of class ids
    (which must then be contiguous and ordered TRAIN, VALID, TEST, as Meta-Dataset requires)."""
    counts = {}
    expected_start = 0
    for split in SPLITS:
        value = classes_per_split.get(split, classes_per_split.get(split.value, 0))
        if isinstance(value, int):
            counts[split] = value
        else:
            ids = [int(c) for c in value]
            if ids != list(range(expected_start, expected_start + len(ids))):
                raise SpecError(
                    f"Dataset {name}: class ids of split {split.value} must be {expected_start}.."
                    f"{expected_start + len(ids) - 1} (contiguous, ordered TRAIN, VALID, TEST); got {ids[:10]}..."
                )
            counts[split] = len(ids)
        expected_start += counts[split]
    if class_names is None:
        class_names = {c: str(c) for c in range(expected_start)}
    return DatasetSpec(name, path, counts, images_per_class, class_names)


def write_spec(spec: AnySpec, dataset_dir: str) -> str:
    """Atomically writes ``<dataset_dir>/dataset_spec.json`` and returns its path."""
    dataset_dir = os.fspath(dataset_dir)
    os.makedirs(dataset_dir, exist_ok=True)
    target = os.path.join(dataset_dir, SPEC_FILE)
    data = spec.to_json_dict()
    atomic.write_json(target, data, indent=2)
    return target
