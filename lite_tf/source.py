"""The interface every data source plugin implements (Meta-Dataset records, ORBIT, VTAB, ...).

A source is registered by name (``lite_tf.registry.register_source``), constructed from gin as
``Training.source = @sources.<name>()`` and asked for episodes by the experiment, which passes the
image size it bound once for the whole run. A source never builds models.
"""
from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf


class Source:
    """Turns a data location into ``tf.data`` datasets of episodes (see lite_tf/episode.py)."""

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

    def evaluator(self, episodes: Optional[int] = None, seed: Optional[int] = None, progress: bool = True):
        """The ``lite_tf.eval.evaluator.Evaluator`` this source's runs are scored with.

        The default is Meta-Dataset-style test episodes (``EpisodeEvaluator``); ``episodes`` and
        ``seed`` left None take its defaults. A source scored another way overrides this.
        """
        from lite_tf.eval.episodes import EpisodeEvaluator

        options = {key: value for key, value in (("episodes", episodes), ("seed", seed)) if value is not None}
        return EpisodeEvaluator(progress=progress, **options)
