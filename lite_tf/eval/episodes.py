"""Meta-Dataset-style evaluation: N test episodes per dataset, mean accuracy with a 95% interval.

``score_episodes`` is the one loop that scores episodes in lite_tf: ``EpisodeEvaluator`` (the
default evaluator) and the large-task evaluator's Meta-Dataset rows both call it.
"""
from __future__ import annotations

import sys
import time
from typing import Optional, Sequence

from lite_tf.errors import ConfigError, DataError
from lite_tf.eval.confidence import mean_confidence_interval
from lite_tf.eval.evaluator import Evaluator
from lite_tf.registry import register_evaluator


def interval(values) -> tuple:
    """(mean, half width); the half width is None below two values (no interval from one sample)."""
    mean, half_width = mean_confidence_interval(values)
    return mean, (half_width if len(values) >= 2 else None)


def markdown_table(rows: dict) -> str:
    table = ["| dataset | accuracy (%) | 95% CI (+-) | episodes |", "|---|---|---|---|"]
    for name, row in rows.items():
        ci = "n/a" if row["ci95"] is None else f"{100 * row['ci95']:.2f}"
        table.append(f"| {name} | {100 * row['accuracy']:.2f} | {ci} | {row['episodes']} |")
    return "\n".join(table)


def check_count(name: str, value, what: str = "a positive integer") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"--{name} must be {what}; got {value!r}.")


def score_episodes(model, dataset, episodes: int, name: Optional[str] = None, progress: bool = False) -> dict:
    """Accuracy of each of the first ``episodes`` episodes of ``dataset`` (support set mapped in
    inference mode), the query images scored and the seconds taken; a live progress bar on request.

    Fewer episodes than asked is a DataError naming ``name``.
    """
    import tensorflow as tf
    from keras.utils import Progbar

    from lite_tf.episode import episode_signature

    signature = episode_signature(model.image_size, dataset.element_spec["support_images"].dtype)
    step = tf.function(lambda episode: model.evaluate_episode(episode)[1], input_signature=[signature])
    bar = None
    if progress:  # a live bar on a terminal; one line at the end in logs
        bar = Progbar(episodes, unit_name="episode", verbose=1 if sys.stdout.isatty() else 2,
                      stateful_metrics=["mean_accuracy"])
    accuracies, queries = [], 0
    start = time.perf_counter()
    for episode in dataset.take(episodes):
        accuracies.append(float(step(episode)))
        queries += int(episode["query_labels"].shape[0])
        if bar is not None:
            bar.add(1, values=[("mean_accuracy", sum(accuracies) / len(accuracies))])
    if len(accuracies) < episodes:
        where = f"Dataset {name!r}: the" if name else "The"
        raise DataError(f"{where} test data ran out after {len(accuracies)} of {episodes} episodes.")
    return {"accuracies": accuracies, "test_images": queries, "seconds": time.perf_counter() - start}


@register_evaluator("episodes")
class EpisodeEvaluator(Evaluator):
    """``episodes`` seeded test episodes of each dataset, support set mapped in inference mode."""

    def __init__(self, episodes: int = 600, seed: int = 12345, progress: bool = True):
        check_count("episodes", episodes)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"--seed must be an integer; got {seed!r}.")
        self.episodes, self.seed, self.progress = episodes, seed, progress

    def title(self, results: dict, weights: str) -> str:
        return f"{super().title(results, weights)} ({self.episodes} episodes per dataset)"

    def evaluate(self, model, source, split: str, *, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None, output: Optional[str] = None) -> dict:
        rows = {}
        for name in datasets or [None]:
            started = time.time()
            data = source.episodes(split, image_size=model.image_size, seed=self.seed, data_root=data_root,
                                   datasets=[name] if name else None)
            accuracies = score_episodes(model, data, self.episodes, name, self.progress)["accuracies"]
            mean, half_width = interval(accuracies)
            rows[name or "all"] = {"accuracy": mean, "ci95": half_width, "episodes": len(accuracies),
                                   "seconds": time.time() - started}
        return {"split": split, "episodes": self.episodes, "seed": self.seed, "datasets": rows,
                "table": markdown_table(rows)}
