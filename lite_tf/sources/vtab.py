"""VTAB-v2 as a registered data source (gin ``sources.vtab``): each task as a sequence of episodes.

As in google-research/meta-dataset's VTAB-plus-MD.md, a task becomes several episodes that share
its 1000-image support set, each with the next batch of the test split as queries; accuracy over
all of them equals accuracy over the whole test split. Large-task evaluation
(``lite_tf.eval.large_task``) uses :func:`lite_tf.data.vtab.reader.open_task` directly instead,
adapting once per task. An episode's ``way`` is the task's class count; a class without a support
image still gets whatever classifier the learner builds from no examples (large-task evaluation
instead adapts to the classes present, see ``lite_tf.eval.large_task``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from lite_tf.data.vtab.reader import open_task
from lite_tf.data.vtab.tasks import PROTOCOLS, TASK_NAMES, get_task
from lite_tf.errors import ConfigError
from lite_tf.registry import register_source
from lite_tf.source import Source


@register_source("vtab")
class VtabSource(Source):
    """VTAB-v2 tasks read from a prepared TFDS data dir (``data_root`` or ``tfds_data_dir``).

    Args:
      tfds_data_dir: the TFDS data dir (the experiment's ``data_root`` overrides it when given).
      protocol: "vtab1k" (train800val200 support, VTAB test split) or "lite" (the official LITE
        code's variant: train[:1000] support, PIL Lanczos, DR "original", SUN397 from ``sun397_dir``).
      sun397_dir: the SUN397 image folder the "lite" protocol reads (lite_tf/data/vtab/image_folder.py).
      query_batch_size: test images per episode.
      download: let TFDS download and prepare a missing dataset (off: a missing one is an error).
    """

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

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> tf.data.Dataset:
        """Every test batch of each task in ``datasets`` (default all 18) once, as episodes.

        VTAB is an evaluation benchmark: only ``split="test"`` exists. ``seed`` is unused (the
        episodes are fixed by the protocol).
        """
        del seed
        if split != "test":
            raise ConfigError(f"sources.vtab has only a 'test' split (VTAB is for evaluation); got {split!r}.")
        names = list(datasets) if datasets else list(TASK_NAMES)
        for name in names:
            get_task(name)
        data_dir = data_root or self.tfds_data_dir
        episodes = None
        for name in names:  # opened now (fails fast if unprepared); images read only when iterated
            task = open_task(name, data_dir, image_size, self.protocol, self.download, self.sun397_dir)
            task_episodes = task.support().flat_map(
                lambda support_images, support_labels, q=task.queries(self.query_batch_size), way=task.way:
                q.map(lambda images, labels: {
                    "support_images": support_images, "support_labels": support_labels, "query_images": images,
                    "query_labels": labels, "way": tf.constant(way, tf.int32)}))
            episodes = task_episodes if episodes is None else episodes.concatenate(task_episodes)
        return episodes
