"""The interface every data source plugin implements (Meta-Dataset records, ORBIT, VTAB, ...).

A source is registered by name (``lite_tf.registry.register_source``), constructed from gin as
``Training.source = @sources.<name>()`` and asked for episodes by the experiment, which passes the
image size it bound once for the whole run. A source never builds models and never imports
evaluation code: it names its evaluator (a registered plugin, ``lite_tf.registry.get_evaluator``)
in ``evaluator``, which ``lite_tf.experiment.evaluate`` uses unless the experiment binds another.
"""
from __future__ import annotations

import inspect
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

    def episodes_from(self, first_episode: int, split: str, **options) -> tf.data.Dataset:
        """Episodes ``first_episode``, ``first_episode + 1``, ... of ``episodes(split, **options)``.

        A resumed training run continues its stream here, so it trains on exactly the episodes an
        uninterrupted run would. A source whose ``episodes`` takes a ``first_episode`` keyword (its
        episode ``n`` is a function of the seed and ``n``: Meta-Dataset, ORBIT) starts there at no
        cost; for any other, the episodes before are read and dropped (``skip``).
        """
        if "first_episode" in inspect.signature(self.episodes).parameters:
            return self.episodes(split, first_episode=first_episode, **options)
        episodes = self.episodes(split, **options)
        return episodes.skip(first_episode) if first_episode else episodes

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
