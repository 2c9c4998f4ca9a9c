"""The one shape every evaluation follows (Meta-Dataset episodes, ORBIT videos, VTAB+MD tasks).

An ``Evaluator`` takes a model and a data source and returns results as a dict::

    {"split": str, "datasets": {name: {<metric>: float, "ci95": float | None, ...}},
     "table": str, ...}   # "table" is Markdown of the per-dataset rows; other keys are extras

Every row has its headline ``accuracy`` and the 95% half width ``ci95`` (None when one sample
gives no interval). ``write`` stores results atomically as <output>.json and <output>.md, so a
results file exists only when the evaluation finished.

Evaluators are plugins (``lite_tf.registry.register_evaluator``, gin ``evaluators.<name>``). A source
names the one its runs are scored with (``lite_tf.source.Source.evaluator``: ``episodes``, ``orbit``,
``large_task``); an experiment may bind another (``Training.evaluator``). ``lite_tf.experiment.evaluate``
is the one orchestrator: it builds the model, loads the weights, picks the evaluator and writes.
"""
from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

from lite_tf import atomic
from lite_tf.errors import DataError

log = logging.getLogger(__name__)


class Evaluator:
    """Scores ``model`` on ``source``'s ``split``, one row per dataset (sub-source)."""

    #: default results name, <model_dir>/<output_name>_<split>.json / .md
    output_name = "eval"

    def evaluate(self, model, source, split: str, *, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None, output: Optional[str] = None) -> dict:
        """Results in the shape above. ``output`` (the results path without extension) is where a
        resumable evaluator keeps its finished parts; the orchestrator writes the results there."""
        raise NotImplementedError

    def default_output(self, model_dir: str, split: str, source) -> str:
        """Where results go when the user names no --output: <model_dir>/<output_name>_<split>."""
        return os.path.join(model_dir, f"{self.output_name}_{split}")

    def datasets_to_evaluate(self, training, split: str, data_root: Optional[str],
                             datasets: Optional[Sequence[str]] = None) -> list:
        """The names to report (checked against the source), warning about classes seen in training.

        Sources may offer two optional hooks: ``training_datasets(data_root)`` (the default datasets
        to report) and ``seen_in_training(dataset, split, train_split, data_root)`` (how many
        evaluated classes training could have drawn; a warning names such datasets).
        """
        source = training.source
        known = list(source.dataset_names(data_root))
        if datasets is None:
            datasets = training.eval_datasets
        if datasets is None and hasattr(source, "training_datasets"):
            datasets = source.training_datasets(data_root)
        names = list(datasets) if datasets is not None else known
        unknown = [name for name in names if known and name not in known]
        if unknown:
            raise DataError(f"No dataset {', '.join(map(repr, unknown))} under --data_root={data_root!r}; "
                            f"it holds: {', '.join(known)}.")
        if hasattr(source, "seen_in_training"):
            for name in names:
                seen = source.seen_in_training(name, split, training.train_split, data_root)
                if seen:
                    log.warning("Dataset %r: %d of its %s classes are %s classes the run trained on; its score "
                                "is not a held-out result.", name, seen, split, training.train_split)
        return names or [None]

    def title(self, results: dict, weights: str) -> str:
        """The heading of the .md file (subclasses add their settings)."""
        return f"Evaluation of {weights} on the {results['split']} split"

    def write(self, results: dict, output: str, title: str) -> None:
        """<output>.json (everything) and <output>.md (title and table), each written atomically."""
        atomic.write_json(output + ".json", results, indent=1)
        atomic.write_text(output + ".md", f"{title}\n\n{results['table']}\n")
