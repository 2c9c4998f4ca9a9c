"""The 18 VTAB-v2 tasks of VTAB+MD: TFDS dataset, label function, class count and splits.

Splits follow google-research/task_adaptation (VTAB-1k): the support set is ``train800val200``,
the first 800 images of the task's train split plus the first 200 of its validation split (where a
dataset has no validation split, VTAB carves train/val/test out of the TFDS splits by fixed
percentages, reproduced below); the queries are the task's whole test split.

``protocol="lite"`` is the official LITE code's variant (cambridge-mlg/LITE ``src/run.py``
``_test_transfer_learning`` and ``src/tf_dataset_reader.py``, the paper's numbers): support
``train[:1000]``, queries the TFDS ``test`` split (``train[1000:]`` where there is none), CLEVR's
``validation`` split as its test set (CLEVR's TFDS test split has no labels; VTAB-1k does the same),
``diabetic_retinopathy_detection`` without a config, i.e. TFDS's default ``original`` images (VTAB-1k:
``btgraham-300``), and SUN397 from an image-folder copy (``src/image_folder_reader.py``, see
lite_tf/data/vtab/image_folder.py). Label functions are the same in both.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Mapping, Tuple, Union

from lite_tf.data.vtab import labels as L
from lite_tf.errors import ConfigError

NATURAL, SPECIALIZED, STRUCTURED = "natural", "specialized", "structured"
GROUPS = (NATURAL, SPECIALIZED, STRUCTURED)
PROTOCOLS = ("vtab1k", "lite")
SUPPORT_SIZE = 1000

# How a task's VTAB-1k splits are cut from its TFDS splits (task_adaptation's data/*.py).
#   "validation": train[:800]+validation[:200], test = test
#   ("percent", p): train = first p% of the TFDS train split; val200 follows it; test = test
#   ("carve", p_train, p_val): train/val/test all cut from the TFDS train split
#   "test_half": smallnorb: val = test[:50%], test = test[50%:]
Cut = Union[str, Tuple]


@dataclasses.dataclass(frozen=True)
class VtabTask:
    """One VTAB task: where its images live in TFDS and how its labels and splits are made."""

    name: str             # the task's name in results and --tasks
    group: str            # natural, specialized or structured
    tfds_name: str        # TFDS name with config and VTAB's version pattern
    num_classes: int
    label_fn: Callable
    cut: Cut
    test_split: str = "test"     # TFDS split the test set comes from (CLEVR: validation)
    binary_image: bool = False   # pixels stored as 0/1 (dSprites): scaled to 0/255
    manual_download: str = ""    # why ``tfds build`` needs files placed by hand, if it does
    lite_tfds_name: str = ""     # the TFDS name the LITE protocol reads, when it differs (DR: "original")
    lite_image_folder: bool = False  # the LITE protocol reads an image folder instead (SUN397)

    @property
    def dataset(self) -> str:
        """The TFDS dataset name without version (for messages and ``tfds build``)."""
        return self.tfds_name.split(":")[0]

    def tfds_name_for(self, protocol: str = "vtab1k") -> str:
        """The TFDS name (with config and version pattern) ``protocol`` reads."""
        return self.lite_tfds_name if protocol == "lite" and self.lite_tfds_name else self.tfds_name

    def dataset_for(self, protocol: str = "vtab1k") -> str:
        return self.tfds_name_for(protocol).split(":")[0]

    def splits(self, split_sizes: Mapping[str, int], protocol: str = "vtab1k") -> Tuple[str, str]:
        """(support split, query split) as TFDS split strings, from the TFDS split sizes."""
        if protocol not in PROTOCOLS:
            raise ConfigError(f"Unknown VTAB protocol {protocol!r}; expected one of {PROTOCOLS}.")
        for needed in self._needed_splits(protocol):
            if needed not in split_sizes:
                raise ConfigError(f"VTAB task {self.name!r}: TFDS dataset {self.dataset!r} has no {needed!r} "
                                  f"split (it has {sorted(split_sizes)}).")
        if protocol == "lite":
            test = self.test_split if self.test_split in split_sizes else f"train[{SUPPORT_SIZE}:]"
            return f"train[:{SUPPORT_SIZE}]", test
        cut = self.cut
        if cut == "validation":
            return "train[:800]+validation[:200]", self.test_split
        if cut == "test_half":
            return "train[:800]+test[:200]", "test[50%:]"
        total = split_sizes["train"]
        if cut[0] == "percent":
            train = cut[1] * total // 100
            return f"train[:800]+train[{train}:{train + 200}]", self.test_split
        if cut[0] == "carve":
            train, val = cut[1] * total // 100, cut[2] * total // 100
            return f"train[:800]+train[{train}:{train + 200}]", f"train[{train + val}:]"
        raise AssertionError(f"bad cut {cut!r}")

    def _needed_splits(self, protocol: str):
        if protocol == "lite":
            return ("train",)
        if self.cut == "validation":
            return ("train", "validation", self.test_split)
        if self.cut == "test_half":
            return ("train", "test")
        if self.cut[0] == "percent":
            return ("train", self.test_split)
        return ("train",)


_TASKS = (
    VtabTask("caltech101", NATURAL, "caltech101:3.*.*", 102, L.feature("label"), ("percent", 90)),
    VtabTask("cifar100", NATURAL, "cifar100:3.*.*", 100, L.feature("label"), ("percent", 90)),
    VtabTask("oxford_flowers102", NATURAL, "oxford_flowers102:2.*.*", 102, L.feature("label"), "validation"),
    VtabTask("oxford_iiit_pet", NATURAL, "oxford_iiit_pet:3.*.*", 37, L.feature("label"), ("percent", 80)),
    VtabTask("sun397", NATURAL, "sun397/tfds:4.*.*", 397, L.feature("label"), "validation", lite_image_folder=True),
    VtabTask("svhn", NATURAL, "svhn_cropped:3.*.*", 10, L.feature("label"), ("percent", 90)),
    VtabTask("diabetic_retinopathy", SPECIALIZED, "diabetic_retinopathy_detection/btgraham-300:3.*.*", 5,
             L.feature("label"), "validation", lite_tfds_name="diabetic_retinopathy_detection/original:3.*.*",
             manual_download="the Kaggle Diabetic Retinopathy Detection files (train.zip.*, test.zip.*, "
                             "trainLabels.csv.zip, ...) must be downloaded by hand into the TFDS manual dir "
                             "(<tfds_data_dir>/downloads/manual/)"),
    VtabTask("eurosat", SPECIALIZED, "eurosat/rgb:2.*.*", 10, L.feature("label"), ("carve", 60, 20)),
    VtabTask("resisc45", SPECIALIZED, "resisc45:3.*.*", 45, L.feature("label"), ("carve", 60, 20),
             manual_download="NWPU-RESISC45.rar must be downloaded by hand (OneDrive link in the TFDS catalog) "
                             "into the TFDS manual dir (<tfds_data_dir>/downloads/manual/)"),
    VtabTask("patch_camelyon", SPECIALIZED, "patch_camelyon:2.*.*", 2, L.feature("label"), "validation"),
    VtabTask("clevr_count", STRUCTURED, "clevr:3.*.*", 8, L.clevr_count, ("percent", 90), test_split="validation"),
    VtabTask("clevr_distance", STRUCTURED, "clevr:3.*.*", 6, L.clevr_closest_distance, ("percent", 90),
             test_split="validation"),
    VtabTask("dmlab", STRUCTURED, "dmlab:2.0.1", 6, L.feature("label"), "validation"),
    VtabTask("dsprites_location", STRUCTURED, "dsprites:2.*.*", 16, L.coarse("label_x_position", 32, 16),
             ("carve", 80, 10), binary_image=True),
    VtabTask("dsprites_orientation", STRUCTURED, "dsprites:2.*.*", 16, L.coarse("label_orientation", 40, 16),
             ("carve", 80, 10), binary_image=True),
    VtabTask("smallnorb_azimuth", STRUCTURED, "smallnorb:2.*.*", 18, L.feature("label_azimuth"), "test_half"),
    VtabTask("smallnorb_elevation", STRUCTURED, "smallnorb:2.*.*", 9, L.feature("label_elevation"), "test_half"),
    VtabTask("kitti_distance", STRUCTURED, "kitti:3.*.*", 4, L.kitti_closest_vehicle_distance, "validation"),
)

TASKS: Dict[str, VtabTask] = {task.name: task for task in _TASKS}
TASK_NAMES = tuple(TASKS)


def get_task(name: str) -> VtabTask:
    """The task called ``name``; unknown names list the known ones."""
    if name not in TASKS:
        raise ConfigError(f"Unknown VTAB task {name!r}. Known tasks: {', '.join(TASK_NAMES)}.")
    return TASKS[name]


def tasks_in(group: str):
    return [task for task in _TASKS if task.group == group]
