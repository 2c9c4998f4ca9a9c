"""The interface every data source plugin implements (Meta-Dataset records, ORBIT, VTAB, ...).

A source is registered by name (``lite_tf.registry.register_source``), constructed from gin as
``Training.source = @sources.<name>()`` and asked for episodes by the experiment, which passes the
image size it bound once for the whole run. A source never builds models and never imports
evaluation code: it names its evaluator (a registered plugin, ``lite_tf.registry.get_evaluator``)
in ``evaluator``, which ``lite_tf.experiment.evaluate`` uses unless the experiment binds another.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf


class Source:
    """Turns a data location into ``tf.data`` datasets of episodes (see lite_tf/episode.py)."""

    #: the registered evaluator this source's runs are scored with by default
    evaluator = "episodes"

    def episodes(self, split: str, *, image_size: int, seed: int, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> tf.data.Dataset:
        """Episodes of ``split`` resized to ``image_size``; ``datasets`` picks sub-sources by name.

        ``data_root`` is the launcher's ``--data_root`` (a source may also take its location from
        its own constructor). Bad locations raise ``lite_tf.errors.DataError`` naming the path.
        """
        raise NotImplementedError

    def dataset_names(self, data_root: Optional[str] = None) -> Sequence[str]:
        """The sub-source names ``episodes(datasets=...)`` accepts (evaluation reports each)."""
        return ()

    def large_task(self, name: str, split: str, *, image_size: int, data_root: Optional[str] = None):
        """Dataset ``name`` as one large task (a ``lite_tf.data.vtab.LargeTask``: one support set, a
        whole test split of queries), or None when it is scored by episodes. VTAB overrides this."""
        return None

    def describe(self) -> dict:
        """What identifies this source's evaluation data (stored with resumable results)."""
        return {"source": type(self).__name__}
