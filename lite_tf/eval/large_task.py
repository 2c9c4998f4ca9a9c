"""Large-task evaluation (VTAB+MD): adapt once to a 1000-image support set, score a whole test split.

``evaluate_large_task`` personalises the learner once per task (``learner.personalize``: a chunked
support pass, so memory does not grow with the support size), then streams the test split through
the personalised Keras model in batches. Per task it reports the accuracy with a 95% binomial
interval over test images (1.96 * sqrt(p (1 - p) / n)), the personalisation seconds and MACs, the
scoring throughput (test images per second) and the peak memory of the task (resident bytes, and
GPU bytes when a GPU is used).

Datasets the source offers as episodes rather than as one large task (VTAB+MD's MD-v2 sources) are
scored the usual Meta-Dataset way (``lite_tf.eval.episodes.score_episodes``: many small episodes,
mean accuracy with the 1.96 * std / sqrt(n) interval over episodes).

``LargeTaskEvaluator`` (registered as ``large_task``; the evaluator of ``sources.vtab`` and
``sources.vtab_md``) follows the one evaluator shape (lite_tf/eval/evaluator.py): its datasets are
the tasks, each row with ``accuracy`` and ``ci95``; the section averages are the extra key
``averages`` and rows of the paper-layout table. It writes one results file per task atomically as
soon as the task ends (``<output folder>/tasks/``), so a killed run keeps its finished tasks and a
rerun skips them; after every task it rewrites the results files (``Evaluator.write``). Finished
tasks carry a fingerprint of the evaluation, the weights' content digest included, so a rerun with
other weights (even written over the same file) is refused instead of mixing two models.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from typing import Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from lite_tf import atomic, memory
from lite_tf.data.md_tfds import MD_V2_TEST
from lite_tf.data.vtab import tasks as vtab_tasks
from lite_tf.errors import ConfigError, DataError
from lite_tf.eval.confidence import Z_95, mean_confidence_interval
from lite_tf.eval.episodes import check_count, score_episodes
from lite_tf.eval.evaluator import Evaluator
from lite_tf.images import to_float_images
from lite_tf.registry import register_evaluator

# The paper's layout: MD-v2 test sources, then VTAB-v2 natural, specialized, structured.
VTAB_GROUPS = {group: tuple(task.name for task in vtab_tasks.tasks_in(group)) for group in vtab_tasks.GROUPS}
SECTIONS = (("MD-v2", MD_V2_TEST),) + tuple((f"VTAB {group}", names) for group, names in VTAB_GROUPS.items())
TASK_DIR = "tasks"
RESULTS = "results"  # <output_dir>/results.json and results.md


def binomial_interval(correct: int, total: int, z: float = Z_95) -> tuple:
    """(accuracy, half width) of ``correct`` out of ``total`` images: z * sqrt(p (1 - p) / n)."""
    if total <= 0:
        raise DataError("binomial_interval needs at least one test image.")
    p = correct / total
    return p, z * math.sqrt(p * (1.0 - p) / total)


class _PeakMemory:
    """Peak resident (and GPU) bytes between ``start`` and ``stop``."""

    def __init__(self):
        self.gpu = bool(tf.config.list_logical_devices("GPU"))

    def start(self):
        self.exact = memory.reset_peak_resident()
        if self.gpu:
            tf.config.experimental.reset_memory_stats("GPU:0")

    def stop(self) -> dict:
        result = {"peak_resident_bytes": memory.peak_resident_bytes(), "peak_since_task_start": self.exact}
        if self.gpu:
            result["peak_gpu_bytes"] = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        return result


def personalization_macs(learner, image_size: int, support_size: int, way: int, counter=None) -> Optional[int]:
    """MACs of the personalisation just run: the learner's own count, else the traced fit (macs.py)."""
    cost = getattr(learner, "last_personalization_cost", None)
    if cost and cost.get("macs") is not None:
        return int(cost["macs"])
    if counter is None:
        return None
    return int(counter(support_size, way))


def evaluate_large_task(learner, task, image_size: int, batch_size: int = 256, macs_counter=None) -> dict:
    """Personalise once on ``task``'s support set, score all its queries; returns the task's row.

    ``task`` is a :class:`lite_tf.data.vtab.LargeTask`; ``macs_counter`` a
    ``lite_tf.macs.PersonalizationMacs`` for learners that do not count their own MACs.
    """
    peak = _PeakMemory()
    peak.start()
    support_images, support_labels = next(iter(task.support()))
    if int(support_images.shape[1]) != image_size:
        raise DataError(f"Task {task.name!r}: support images are {support_images.shape[1]} px, the model's "
                        f"image_size is {image_size}.")
    # Adapt to the classes the support set has (VTAB-1k's 1000 images need not cover every class,
    # e.g. SUN397): a class with no support image cannot be predicted; its test images count as errors.
    present = np.unique(support_labels.numpy())
    relabel = np.full(task.way, -1, np.int32)
    relabel[present] = np.arange(len(present), dtype=np.int32)
    start = time.perf_counter()
    try:
        personalized = learner.personalize(support_images, tf.gather(relabel, support_labels), len(present))
    except NotImplementedError as error:
        raise ConfigError(f"Large-task evaluation needs learner.personalize(): {error}") from None
    personalization_seconds = time.perf_counter() - start
    macs = personalization_macs(learner, image_size, int(support_images.shape[0]), len(present), macs_counter)
    del support_images
    classes = tf.constant(present, tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, image_size, image_size, 3], tf.uint8),
                                  tf.TensorSpec([None], tf.int32)])
    def score(images, labels):
        logits = personalized(to_float_images(images), training=False)
        predictions = tf.gather(classes, tf.argmax(logits, axis=-1, output_type=tf.int32))
        return tf.reduce_sum(tf.cast(tf.equal(predictions, labels), tf.int64))

    correct = total = 0
    start = time.perf_counter()
    for images, labels in task.queries(batch_size):
        correct += int(score(images, labels))
        total += int(labels.shape[0])
    scoring_seconds = time.perf_counter() - start
    if total != task.num_queries:
        raise DataError(f"Task {task.name!r}: scored {total} test images, its split has {task.num_queries}.")
    accuracy, half_width = binomial_interval(correct, total)
    return {"task": task.name, "kind": "large_task", "accuracy": accuracy, "ci95": half_width,
            "correct": correct, "test_images": total, "way": task.way, "support_classes": int(len(present)),
            "support_images": task.num_support,
            "personalization_seconds": personalization_seconds, "personalization_macs": macs,
            "scoring_seconds": scoring_seconds, "images_per_second": total / max(scoring_seconds, 1e-9),
            **peak.stop(), **task.description}


def episodes_row(model, name: str, dataset: tf.data.Dataset, episodes: int) -> dict:
    """The row of a dataset scored by ``episodes`` Meta-Dataset test episodes."""
    peak = _PeakMemory()
    peak.start()
    scored = score_episodes(model, dataset, episodes, name)
    mean, half_width = mean_confidence_interval(scored["accuracies"])
    return {"task": name, "kind": "episodes", "accuracy": mean, "ci95": half_width, "episodes": episodes,
            "test_images": scored["test_images"], "seconds": scored["seconds"],
            "images_per_second": scored["test_images"] / max(scored["seconds"], 1e-9), **peak.stop()}


# ---------------------------------------------------------------------------------- the table
def summarize(rows: Mapping[str, dict]) -> dict:
    """Averages of the tasks present: per section, all of VTAB, and over every task.

    Each average is the plain mean of the task accuracies it covers, with the number of tasks it
    covers and of tasks it should cover (an average over a subset says so).
    """
    def average(names):
        present = [rows[name]["accuracy"] for name in names if name in rows]
        return {"accuracy": float(np.mean(present)) if present else None, "tasks": len(present),
                "of": len(names)}

    vtab = [name for _, names in SECTIONS[1:] for name in names]
    every = [name for _, names in SECTIONS for name in names]
    extra = [name for name in rows if name not in every]
    averages = {section: average(names) for section, names in SECTIONS}
    averages["VTAB all"] = average(vtab)
    averages["overall"] = average(every + extra)
    return averages


def _cell(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def markdown_table(rows: Mapping[str, dict], averages: Optional[dict] = None) -> str:
    """Markdown table in the paper's layout: each section's tasks then its average, then VTAB all
    and the overall average. Accuracies in percent, +- the 95% interval."""
    averages = averages or summarize(rows)
    lines = [
        "| section | task | accuracy (%) | 95% CI (+-) | test images | personalise (s) | GMACs | images/s |",
        "|---|---|---|---|---|---|---|---|"]

    def average_line(label, data):
        note = "" if data["tasks"] == data["of"] else f" ({data['tasks']} of {data['of']} tasks)"
        lines.append(f"| **{label}** | **average**{note} | **{_cell(data['accuracy'])}** | | | | | |")

    for section, names in SECTIONS:
        for name in names:
            row = rows.get(name)
            if row is None:
                continue
            macs = row.get("personalization_macs")
            seconds = row.get("personalization_seconds")
            lines.append(f"| {section} | {name} | {_cell(row['accuracy'])} | {_cell(row['ci95'])} | "
                         f"{row['test_images']} | {'-' if seconds is None else f'{seconds:.2f}'} | "
                         f"{'-' if macs is None else f'{macs / 1e9:.2f}'} | {row['images_per_second']:.1f} |")
        average_line(section, averages[section])
    average_line("VTAB all", averages["VTAB all"])
    average_line("overall", averages["overall"])
    return "\n".join(lines)


# ---------------------------------------------------------------------------- the evaluator
def weights_digest(model) -> str:
    """SHA-256 of every variable's value: the same weights give the same digest wherever they came from."""
    digest = hashlib.sha256()
    for variable in sorted(model.weights, key=lambda v: v.path):
        digest.update(variable.path.encode())
        digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()


@register_evaluator("large_task")
class LargeTaskEvaluator(Evaluator):
    """Each dataset of the source as one large task (or as test episodes), resumable task by task.

    Args:
      batch_size: test images per forward pass.
      episodes: test episodes for a dataset the source offers as episodes (VTAB+MD's MD-v2 sources).
      seed: seed of those episodes.
      count_macs: report personalisation MACs (traces the learner a few times).
      progress: print a line per finished task.
    """

    output_name = "large_tasks"

    def __init__(self, batch_size: int = 256, episodes: int = 600, seed: int = 12345, count_macs: bool = True,
                 progress: bool = True, log: Callable[[str], None] = print):
        check_count("batch_size", batch_size)
        check_count("episodes", episodes)
        self.batch_size, self.episodes, self.seed, self.count_macs = batch_size, episodes, seed, count_macs
        self.log = log if progress else (lambda _: None)

    def default_output(self, model_dir: str, split: str, source) -> str:
        """<model_dir>/<the source's results folder, e.g. vtab_md_vtab1k>/results."""
        folder = source.results_folder() if hasattr(source, "results_folder") else f"{self.output_name}_{split}"
        return os.path.join(model_dir, folder, RESULTS)

    def check(self, source, datasets: Optional[Sequence[str]], data_root: Optional[str]) -> list:
        """The task names to evaluate, each with its data (before anything is built)."""
        if hasattr(source, "check_tasks"):
            return source.check_tasks(datasets, data_root)
        return list(datasets) if datasets else list(source.dataset_names(data_root))

    def evaluate(self, model, source, split: str = "test", *, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None, output: Optional[str] = None) -> dict:
        """Scores ``model`` (an EpisodicModel) on each task of ``source`` in ``datasets``; finished
        tasks are kept in ``<dirname(output)>/tasks`` (``output`` is required: it makes the run resumable)."""
        if output is None:
            raise ConfigError("The large-task evaluator needs an output path (its finished tasks are kept there).")
        tasks = self.check(source, datasets, data_root)
        image_size = model.image_size
        counter = None
        if self.count_macs:
            from lite_tf.macs import PersonalizationMacs

            counter = PersonalizationMacs(model.learner, image_size)
        large_tasks = {}  # every large task opened (its data checked) before any work
        for name in tasks:
            task = source.large_task(name, split, image_size=image_size, data_root=data_root)
            if task is not None:
                large_tasks[name] = task

        def score(name: str) -> dict:
            if name in large_tasks:
                return evaluate_large_task(model.learner, large_tasks[name], image_size, self.batch_size, counter)
            data = source.episodes(split, image_size=image_size, seed=self.seed, data_root=data_root, datasets=[name])
            return episodes_row(model, name, data, self.episodes)

        fingerprint = {"image_size": image_size, **source.describe(), "md_episodes": self.episodes,
                       "seed": self.seed, "weights_sha256": weights_digest(model)}
        protocol = getattr(source, "protocol", None)
        title = (f"VTAB+MD: {type(model.learner).__name__} at {image_size} px"
                 + (f", VTAB protocol {protocol}" if protocol else "")
                 + f", {self.episodes} MD-v2 episodes per source")
        return self.resume(tasks, score, fingerprint, title, output)

    def resume(self, tasks: Sequence[str], score: Callable[[str], dict], fingerprint: Mapping,
               title: str, output: str) -> dict:
        """Evaluates each name in ``tasks`` with ``score(name) -> row`` unless already done beside
        ``output``; rewrites <output>.json / .md after every task; returns the results."""
        task_dir = os.path.join(os.path.dirname(os.path.abspath(output)), TASK_DIR)
        os.makedirs(task_dir, exist_ok=True)
        fingerprint = json.loads(json.dumps(dict(fingerprint)))
        rows = _load_finished(task_dir, fingerprint)
        for name in tasks:
            if name in rows:
                self.log(f"{name}: done already ({100 * rows[name]['accuracy']:.2f}%), skipped")
                continue
            row = score(name)
            row["fingerprint"] = fingerprint
            atomic.write_json(os.path.join(task_dir, f"{name}.json"), row, indent=1)
            rows[name] = row
            self.log(f"{name}: {100 * row['accuracy']:.2f} +- {100 * row['ci95']:.2f}% "
                     f"({row['test_images']} test images)")
            self._write_summary(rows, fingerprint, title, output)
        return self._write_summary(rows, fingerprint, title, output)

    def title(self, results: dict, weights: str) -> str:
        return results["title"]

    def _write_summary(self, rows: Mapping[str, dict], fingerprint: dict, title: str, output: str) -> dict:
        averages = summarize(rows)
        results = {"split": "test", "datasets": dict(rows), "table": markdown_table(rows, averages),
                   "averages": averages, "fingerprint": fingerprint, "title": title}
        self.write(results, output, title)
        return results


def _load_finished(task_dir: str, fingerprint: dict) -> Dict[str, dict]:
    rows = {}
    for entry in sorted(os.listdir(task_dir)):
        if not entry.endswith(".json") or entry.startswith("."):
            continue
        path = os.path.join(task_dir, entry)
        try:
            with open(path) as handle:
                row = json.load(handle)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} is not valid JSON ({error}); delete it to re-run that task.") from None
        if row.get("fingerprint") != fingerprint:
            changed = sorted(key for key in set(fingerprint) | set(row.get("fingerprint") or {})
                             if (row.get("fingerprint") or {}).get(key) != fingerprint.get(key))
            raise ConfigError(f"{path} was written by a different evaluation (changed: {', '.join(changed)}); "
                              "use a new --output_dir, or delete it to re-run.")
        rows[row["task"]] = row
    return rows
