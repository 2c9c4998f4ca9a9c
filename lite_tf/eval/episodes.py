"""Meta-Dataset-style evaluation: N test episodes per dataset, mean accuracy with a 95% interval."""
from __future__ import annotations

import sys
import time
from typing import Optional, Sequence

from lite_tf.errors import ConfigError, DataError
from lite_tf.eval.confidence import mean_confidence_interval
from lite_tf.eval.evaluator import Evaluator

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


class EpisodeEvaluator(Evaluator):
    """``episodes`` seeded test episodes of each dataset, support set mapped in inference mode."""

    def __init__(self, episodes: int = 600, seed: int = 12345, progress: bool = True):
        if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
            raise ConfigError(f"--episodes must be a positive integer; got {episodes!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"--seed must be an integer; got {seed!r}.")
        self.episodes, self.seed, self.progress = episodes, seed, progress

    def title(self, results: dict, weights: str) -> str:
        return f"{super().title(results, weights)} ({self.episodes} episodes per dataset)"

    def episode_accuracies(self, model, dataset) -> list:
        """Accuracy of each episode; the progress bar shows the running mean."""
        import tensorflow as tf
        from keras.utils import Progbar

        from lite_tf.episode import episode_signature

        signature = episode_signature(model.image_size, dataset.element_spec["support_images"].dtype)
        step = tf.function(lambda episode: model.evaluate_episode(episode)[1], input_signature=[signature])
        progress = None
        if self.progress:  # a live bar on a terminal; one line at the end in logs
            progress = Progbar(self.episodes, unit_name="episode", verbose=1 if sys.stdout.isatty() else 2,
                               stateful_metrics=["mean_accuracy"])
        accuracies = []
        for episode in dataset.take(self.episodes):
            accuracies.append(float(step(episode)))
            if progress is not None:
                progress.add(1, values=[("mean_accuracy", sum(accuracies) / len(accuracies))])
        if len(accuracies) < self.episodes:
            raise DataError(f"The test data ran out after {len(accuracies)} of {self.episodes} episodes.")
        return accuracies

    def evaluate(self, model, source, split: str, *, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> dict:
        rows = {}
        for name in datasets or [None]:
            started = time.time()
            data = source.episodes(split, image_size=model.image_size, seed=self.seed, data_root=data_root,
                                   datasets=[name] if name else None)
            accuracies = self.episode_accuracies(model, data)
            mean, half_width = interval(accuracies)
            rows[name or "all"] = {"accuracy": mean, "ci95": half_width, "episodes": len(accuracies),
                                   "seconds": time.time() - started}
        return {"split": split, "episodes": self.episodes, "seed": self.seed, "datasets": rows,
                "table": markdown_table(rows)}
