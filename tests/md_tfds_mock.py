"""A small Meta-Dataset TFDS build for the tests: a TFDS builder that writes what meta_dataset's
builder writes (one ``all_classes`` split sorted by class, specs and class slices in the metadata),
in three shards so that classes cross shard files; optionally with wrong stored labels."""
from __future__ import annotations

import types
from typing import Optional

import numpy as np
import tensorflow_datasets as tfds

CLASSES = {"TRAIN": 5, "VALID": 2, "TEST": 6}
IMAGES = [4 + (c % 3) for c in range(sum(CLASSES.values()))]  # 4, 5, 6 images per class


def colour(class_id: int) -> np.ndarray:
    return np.array([20 * class_id, 255 - 20 * class_id, 60 + 10 * class_id], np.uint8)


def _spec(name: str) -> dict:
    ids = range(len(IMAGES))
    return {"name": name, "classes_per_split": CLASSES, "images_per_class": {str(c): IMAGES[c] for c in ids},
            "class_names": {str(c): f"class_{c}" for c in ids}, "path": "unused", "file_pattern": "{}.tfrecords",
            "__class__": "DatasetSpecification"}


def _slices():
    starts = np.cumsum([0] + IMAGES)
    relative, first = {}, 0
    for split, count in CLASSES.items():
        relative[split.lower()] = {rel: (int(starts[first + rel]), int(starts[first + rel + 1])) for rel in range(count)}
        first += count
    return relative


class MetaDataset(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Stands in for meta_dataset's builder: same name, features, split and metadata layout."""

    name = "meta_dataset"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="aircraft")]
    WRONG_LABELS: dict = {}

    def _info(self):
        slices = _slices()
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(encoding_format="jpeg"), "format": tfds.features.Text(),
                "filename": tfds.features.Text(), "label": tfds.features.ClassLabel(num_classes=len(IMAGES)),
                "class_name": tfds.features.Text()}),
            metadata=tfds.core.MetadataDict(
                dataset_specs={"v1": _spec("aircraft"), "v2": _spec("aircraft")},
                relative_class_slices={"v1": slices, "v2": slices},
                meta_split_slices={}, class_names=[f"class_{c}" for c in range(len(IMAGES))],
                total_num_examples=sum(IMAGES)),
            disable_shuffling=True, supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"all_classes": self._generate_examples()}

    def _generate_examples(self):
        index = 0
        for class_id, count in enumerate(IMAGES):
            for _ in range(count):
                yield index, {"image": np.tile(colour(class_id), (12, 12, 1)), "format": "JPEG",
                              "filename": f"{index}.jpg", "label": self.WRONG_LABELS.get(index, class_id),
                              "class_name": f"class_{class_id}"}
                index += 1


def build(root: str, wrong_labels: Optional[dict] = None) -> str:
    """Prepares the ``aircraft`` build under ``root`` (a TFDS data dir); ``wrong_labels``: {position
    in all_classes: the label stored there instead of its class}."""
    builder = types.new_class("MetaDataset", (MetaDataset,), {"skip_registration": True},
                              lambda namespace: namespace.update(WRONG_LABELS=dict(wrong_labels or {})))
    builder(config="aircraft", data_dir=root, file_format="tfrecord").download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=3))
    return root
