"""VTAB-v2 (gin ``sources.vtab``) and VTAB+MD (``sources.vtab_md``) as registered data sources.

Both are scored by the ``large_task`` evaluator (lite_tf/eval/large_task.py): each VTAB task is one
large task, adapted to once from its 1000-image support set and scored on its whole test split.
``sources.vtab_md`` adds the eight MD-v2 test sources, scored by test episodes, from Meta-Dataset
records or Google's TFDS build. ``episodes`` also offers a VTAB task as a sequence of episodes that
share its support set, each with the next batch of the test split as queries (as in
google-research/meta-dataset's VTAB-plus-MD.md).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import tensorflow as tf

from lite_tf.data.md_tfds import MD_V2_TEST
from lite_tf.data.vtab.reader import open_task
from lite_tf.data.vtab.tasks import PROTOCOLS, TASK_NAMES, TASKS, get_task
from lite_tf.errors import ConfigError
from lite_tf.registry import register_source
from lite_tf.source import Source


@register_source("vtab")
class VtabSource(Source):
    """VTAB-v2 tasks read from a prepared TFDS data dir (``data_root`` or ``tfds_data_dir``).

    Args:
      tfds_data_dir: the TFDS data dir (the launcher's ``--data_root`` overrides it when given).
      protocol: "vtab1k" (train800val200 support, VTAB test split) or "lite" (the official LITE
        code's variant: train[:1000] support, PIL Lanczos, DR "original", SUN397 from ``sun397_dir``).
      sun397_dir: the SUN397 image folder the "lite" protocol reads (lite_tf/data/vtab/image_folder.py).
      query_batch_size: test images per episode (``episodes`` only).
      download: let TFDS download and prepare a missing dataset (off: a missing one is an error).
    """

    evaluator = "large_task"

    def __init__(self, tfds_data_dir: Optional[str] = None, protocol: str = "vtab1k",
                 query_batch_size: int = 500, download: bool = False, sun397_dir: Optional[str] = None):
        if protocol not in PROTOCOLS:
            raise ConfigError(f"sources.vtab.protocol must be one of {PROTOCOLS}; got {protocol!r}.")
        if not isinstance(query_batch_size, int) or query_batch_size <= 0:
            raise ConfigError(f"sources.vtab.query_batch_size must be a positive integer; got {query_batch_size!r}.")
        self.tfds_data_dir, self.protocol = tfds_data_dir, protocol
        self.query_batch_size, self.download, self.sun397_dir = query_batch_size, download, sun397_dir

    def dataset_names(self, data_root: Optional[str] = None) -> Sequence[str]:
        return TASK_NAMES

    def describe(self) -> dict:
        described = {"source": "vtab", "protocol": self.protocol}
        if self.protocol == "lite" and self.sun397_dir:   # the folder decides SUN397's split
            described["sun397_dir"] = os.path.abspath(self.sun397_dir)
        return described

    def results_folder(self) -> str:
        """The folder name of this source's large-task results inside a run."""
        return f"vtab_md_{self.protocol}"

    @staticmethod
    def _check_split(split: str) -> None:
        if split != "test":
            raise ConfigError(f"VTAB has only a 'test' split (it is for evaluation); got {split!r}.")

    def large_task(self, name: str, split: str, *, image_size: int, data_root: Optional[str] = None):
        self._check_split(split)
        if name not in TASKS:
            return None
        data_dir = data_root or self.tfds_data_dir
        if data_dir is None:
            raise ConfigError(f"Task {name!r} is a VTAB task: give --tfds_data_dir (or --data_root).")
        return open_task(name, data_dir, image_size, self.protocol, self.download, self.sun397_dir)

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> tf.data.Dataset:
        """Every test batch of each task in ``datasets`` (default all 18) once, as episodes.

        ``seed`` is unused (the episodes are fixed by the protocol).
        """
        del seed
        self._check_split(split)
        names = list(datasets) if datasets else list(TASK_NAMES)
        for name in names:
            get_task(name)
        episodes = None
        for name in names:  # opened now (fails fast if unprepared); images read only when iterated
            task = self.large_task(name, split, image_size=image_size, data_root=data_root)
            task_episodes = task.support().flat_map(
                lambda support_images, support_labels, q=task.queries(self.query_batch_size), way=task.way:
                q.map(lambda images, labels: {
                    "support_images": support_images, "support_labels": support_labels, "query_images": images,
                    "query_labels": labels, "way": tf.constant(way, tf.int32)}))
            episodes = task_episodes if episodes is None else episodes.concatenate(task_episodes)
        return episodes


@register_source("vtab_md")
class VtabMdSource(VtabSource):
    """VTAB+MD: the eight MD-v2 test sources (test episodes) and the 18 VTAB-v2 tasks (large tasks).

    Args:
      records: Meta-Dataset records root (one folder per MD-v2 source).
      md_tfds_data_dir: or a TFDS data dir holding Google's ``meta_dataset`` build.
      tfds_data_dir, protocol, download, sun397_dir: the VTAB tasks, as ``sources.vtab``.
    """

    def __init__(self, records: Optional[str] = None, md_tfds_data_dir: Optional[str] = None,
                 tfds_data_dir: Optional[str] = None, protocol: str = "vtab1k", download: bool = False,
                 sun397_dir: Optional[str] = None):
        super().__init__(tfds_data_dir, protocol, download=download, sun397_dir=sun397_dir)
        if records and md_tfds_data_dir:
            raise ConfigError("Give --records or --md_tfds_data_dir for MD-v2, not both.")
        self.records, self.md_tfds_data_dir = records, md_tfds_data_dir

    def dataset_names(self, data_root: Optional[str] = None) -> Sequence[str]:
        """Every task the given data covers, in the paper's order."""
        names = list(MD_V2_TEST) if (self.records or self.md_tfds_data_dir) else []
        if self.tfds_data_dir is not None or data_root is not None:
            names += list(TASK_NAMES)
        return names

    def check_tasks(self, datasets: Optional[Sequence[str]], data_root: Optional[str] = None) -> list:
        """The task names to evaluate (default: all the given data covers), each with its data."""
        tasks = list(datasets) if datasets else self.dataset_names(data_root)
        if not tasks:
            raise ConfigError("Nothing to evaluate: give --records or --md_tfds_data_dir (MD-v2) and/or "
                              "--tfds_data_dir (VTAB-v2), or --tasks.")
        for name in tasks:
            if name not in TASKS and name not in MD_V2_TEST:
                raise ConfigError(f"Unknown VTAB+MD task {name!r}. MD-v2: {', '.join(MD_V2_TEST)}; VTAB-v2: "
                                  f"{', '.join(TASK_NAMES)}.")
            if name in MD_V2_TEST and not (self.records or self.md_tfds_data_dir):
                raise ConfigError(f"Task {name!r} is a Meta-Dataset source: give --records or --md_tfds_data_dir.")
            if name in TASKS and self.tfds_data_dir is None and data_root is None:
                raise ConfigError(f"Task {name!r} is a VTAB task: give --tfds_data_dir.")
        return tasks

    def describe(self) -> dict:
        return {**super().describe(), "source": "vtab_md", "md_data": "records" if self.records else "tfds"}

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> tf.data.Dataset:
        """MD-v2 test episodes of ``datasets`` (MD-v2 source names); VTAB names as ``sources.vtab``."""
        names = list(datasets or ())
        if not names or any(name in TASKS for name in names):
            return super().episodes(split, image_size=image_size, seed=seed, data_root=data_root, datasets=names)
        self._check_split(split)
        self.check_tasks(names, data_root)
        if self.records:
            from lite_tf.data.metadataset.pipeline import make_episode_dataset

            return make_episode_dataset(self.records, "test", image_size=image_size, datasets=names, seed=seed)
        from lite_tf.data.md_tfds import make_tfds_episode_dataset

        return make_tfds_episode_dataset(self.md_tfds_data_dir, names, "test", image_size, "v2", seed)
