"""Large-task evaluation (VTAB+MD): adapt once to a 1000-image support set, score a whole test split.

``evaluate_large_task`` personalises the learner once per task (``learner.personalize``: a chunked
support pass, so memory does not grow with the support size), then streams the test split through
the personalised Keras model in batches. Per task it reports the accuracy with a 95% binomial
interval over test images (1.96 * sqrt(p (1 - p) / n)), the personalisation seconds and MACs, the
scoring throughput (test images per second) and the peak memory of the task (resident bytes, and
GPU bytes when a GPU is used).

MD-v2 sources are scored the usual Meta-Dataset way (``evaluate_episodes``: many small episodes,
mean accuracy with the 1.96 * std / sqrt(n) interval over episodes).

``VtabMdEvaluator`` follows the one evaluator shape (lite_tf/eval/evaluator.py): its datasets are the
tasks (MD-v2 sources and the 18 VTAB-v2 tasks), each row with ``accuracy`` and ``ci95``; the section
averages are the extra key ``averages`` and rows of the paper-layout table. It writes one results
file per task into its output folder atomically as soon as the task ends, so a killed run keeps
its finished tasks and a rerun skips them; after every task it rewrites ``results.json`` and
``results.md`` (``Evaluator.write``).
"""
from __future__ import annotations

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
from lite_tf.eval.confidence import Z_95, mean_confidence_interval
from lite_tf.errors import ConfigError, DataError
from lite_tf.eval.evaluator import Evaluator
from lite_tf.images import to_float_images

# The paper's layout: MD-v2 test sources, then VTAB-v2 natural, specialized, structured.
VTAB_GROUPS = {group: tuple(task.name for task in vtab_tasks.tasks_in(group)) for group in vtab_tasks.GROUPS}
SECTIONS = (("MD-v2", MD_V2_TEST),) + tuple((f"VTAB {group}", names) for group, names in VTAB_GROUPS.items())
TASK_DIR = "tasks"
RESULTS = "results"  # <output_dir>/results.json and results.md


def binomial_interval(correct: int, total: int, z: float = Z_95) -> tuple:
    """(accuracy, half width) of ``correct`` out of ``total`` images: z * sqrt(p (1 - p) / n)."""
    if total <= 0:
        raise ValueError("binomial_interval needs at least one test image.")
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
    ``lite_tf.eval.macs.PersonalizationMacs`` for learners that do not count their own MACs.
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


def evaluate_episodes(model, name: str, dataset: tf.data.Dataset, episodes: int) -> dict:
    """Meta-Dataset scoring of ``episodes`` episodes of ``dataset`` (model.evaluate_episode)."""
    from lite_tf.episode import episode_signature

    peak = _PeakMemory()
    peak.start()
    step = tf.function(lambda episode: model.evaluate_episode(episode)[1],
                       input_signature=[episode_signature(model.image_size,
                                                          dataset.element_spec["support_images"].dtype)])
    accuracies, queries = [], 0
    start = time.perf_counter()
    for episode in dataset.take(episodes):
        accuracies.append(float(step(episode)))
        queries += int(episode["query_labels"].shape[0])
    seconds = time.perf_counter() - start
    if len(accuracies) < episodes:
        raise DataError(f"Source {name!r}: the episodes ran out after {len(accuracies)} of {episodes}.")
    mean, half_width = mean_confidence_interval(accuracies)
    return {"task": name, "kind": "episodes", "accuracy": mean, "ci95": half_width, "episodes": episodes,
            "test_images": queries, "seconds": seconds, "images_per_second": queries / max(seconds, 1e-9),
            **peak.stop()}


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
def default_tasks(records: Optional[str], md_tfds_data_dir: Optional[str], tfds_data_dir: Optional[str]) -> list:
    """Every task the given data covers, in the paper's order."""
    tasks = list(MD_V2_TEST) if (records or md_tfds_data_dir) else []
    if tfds_data_dir is not None:
        tasks += [name for _, names in SECTIONS[1:] for name in names]
    return tasks


class VtabMdEvaluator(Evaluator):
    """VTAB+MD (or ``datasets`` of it) into ``output_dir``, resumable task by task.

    MD-v2 sources come from Meta-Dataset records (``records``, one folder per source) or from
    Google's TFDS build (``md_tfds_data_dir``); VTAB tasks from the prepared TFDS data dir
    ``tfds_data_dir`` (``protocol``: "vtab1k" or "lite", see lite_tf/data/vtab; "lite" reads SUN397
    from the image folder ``sun397_dir``). ``fingerprint`` (e.g. the weights' digest) is stored with
    every task result; a finished task with a different fingerprint is an error, so a resumed run
    never mixes two models.
    """

    def __init__(self, output_dir: str, records: Optional[str] = None, tfds_data_dir: Optional[str] = None,
                 md_tfds_data_dir: Optional[str] = None, protocol: str = "vtab1k", download: bool = False,
                 sun397_dir: Optional[str] = None,
                 batch_size: int = 256, md_episodes: int = 600, seed: int = 12345, count_macs: bool = True,
                 fingerprint: Optional[Mapping] = None, log: Callable[[str], None] = print):
        if records and md_tfds_data_dir:
            raise ConfigError("Give --records or --md_tfds_data_dir for MD-v2, not both.")
        self.output_dir, self.records, self.tfds_data_dir = output_dir, records, tfds_data_dir
        self.md_tfds_data_dir, self.protocol, self.download = md_tfds_data_dir, protocol, download
        self.sun397_dir = sun397_dir
        self.batch_size, self.md_episodes, self.seed, self.count_macs = batch_size, md_episodes, seed, count_macs
        self.fingerprint, self.log = dict(fingerprint or {}), log

    def check_tasks(self, datasets: Optional[Sequence[str]]) -> list:
        """The task names to evaluate (default: all the given data covers), each with its data."""
        from lite_tf.data import vtab

        tasks = list(datasets) if datasets else default_tasks(self.records, self.md_tfds_data_dir, self.tfds_data_dir)
        if not tasks:
            raise ConfigError("Nothing to evaluate: give --records or --md_tfds_data_dir (MD-v2) and/or "
                              "--tfds_data_dir (VTAB-v2), or --tasks.")
        md_data = self.records or self.md_tfds_data_dir
        for name in tasks:
            if name not in vtab.TASKS and name not in MD_V2_TEST:
                raise ConfigError(f"Unknown VTAB+MD task {name!r}. MD-v2: {', '.join(MD_V2_TEST)}; VTAB-v2: "
                                  f"{', '.join(vtab.TASK_NAMES)}.")
            if name in MD_V2_TEST and not md_data:
                raise ConfigError(f"Task {name!r} is a Meta-Dataset source: give --records or --md_tfds_data_dir.")
            if name in vtab.TASKS and self.tfds_data_dir is None:
                raise ConfigError(f"Task {name!r} is a VTAB task: give --tfds_data_dir.")
        return tasks

    def evaluate(self, model, source=None, split: str = "test", *, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> dict:
        """Scores ``model`` (an EpisodicModel) on the test split of each task in ``datasets``.

        VTAB+MD reads its own benchmark data (the constructor's locations), so ``source`` and
        ``data_root`` must be None, and ``split`` "test".
        """
        from lite_tf.data import vtab

        if source is not None or data_root is not None:
            raise ConfigError("VtabMdEvaluator reads the VTAB+MD data given to its constructor; pass no source "
                              "or data_root.")
        if split != "test":
            raise ConfigError(f"VTAB+MD has only a 'test' split; got {split!r}.")
        tasks = self.check_tasks(datasets)
        image_size = model.image_size
        counter = None
        if self.count_macs:
            from lite_tf.eval.macs import PersonalizationMacs

            counter = PersonalizationMacs(model.learner, image_size)
        large_tasks = {name: vtab.open_task(name, self.tfds_data_dir, image_size, self.protocol, self.download,
                                            self.sun397_dir)
                       for name in tasks if name in vtab.TASKS}  # every VTAB dataset checked before any work

        def score(name: str) -> dict:
            if name in large_tasks:
                return evaluate_large_task(model.learner, large_tasks[name], image_size, self.batch_size, counter)
            return evaluate_episodes(model, name, self.md_episodes_for(name, image_size), self.md_episodes)

        fingerprint = {"image_size": image_size, "protocol": self.protocol, "md_episodes": self.md_episodes,
                       "seed": self.seed, "md_data": "records" if self.records else "tfds", **self.fingerprint}
        if self.protocol == "lite" and "sun397" in large_tasks:
            fingerprint["sun397_dir"] = os.path.abspath(self.sun397_dir)
        title = (f"VTAB+MD: {type(model.learner).__name__} at {image_size} px, VTAB protocol {self.protocol}, "
                 f"{self.md_episodes} MD-v2 episodes per source")
        return self.resume(tasks, score, fingerprint, title)

    def md_episodes_for(self, name: str, image_size: int) -> tf.data.Dataset:
        if self.records:
            from lite_tf.data.metadataset.pipeline import make_episode_dataset

            return make_episode_dataset(self.records, "test", image_size=image_size, datasets=[name], seed=self.seed)
        from lite_tf.data.md_tfds import make_tfds_episode_dataset

        return make_tfds_episode_dataset(self.md_tfds_data_dir, [name], "test", image_size, "v2", self.seed)

    def resume(self, tasks: Sequence[str], score: Callable[[str], dict], fingerprint: Mapping,
               title: str) -> dict:
        """Evaluates each name in ``tasks`` with ``score(name) -> row`` unless already done in
        ``output_dir``; rewrites results.json / results.md after every task; returns the results."""
        task_dir = os.path.join(self.output_dir, TASK_DIR)
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
            self._write_summary(rows, fingerprint, title)
        return self._write_summary(rows, fingerprint, title)

    def _write_summary(self, rows: Mapping[str, dict], fingerprint: dict, title: str) -> dict:
        averages = summarize(rows)
        results = {"split": "test", "datasets": dict(rows), "table": markdown_table(rows, averages),
                   "averages": averages, "fingerprint": fingerprint, "title": title}
        self.write(results, os.path.join(self.output_dir, RESULTS), title)
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
            old = row.get("fingerprint") or {}
            changed = sorted(key for key in set(old) | set(fingerprint) if old.get(key) != fingerprint.get(key))
            what = "; ".join(f"{key}: {old.get(key)!r} then, {fingerprint.get(key)!r} now" for key in changed)
            raise ConfigError(f"{path} was written by a different evaluation ({what}); use a new --output_dir, "
                              f"or delete it to re-run.")
        rows[row["task"]] = row
    return rows


def weights_digest(path: str) -> str:
    """SHA-256 of the weights' content: a file, a checkpoint prefix's files or a folder's files (names
    and bytes, sorted). The resume guard keys on it, so weights overwritten in place are another
    evaluation; a name that is no file (``init``: the seeded untrained weights) is its own key."""
    import glob
    import hashlib

    if os.path.isfile(path):
        files = [path]
    elif os.path.isdir(path):
        files = sorted(os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names)
    else:
        files = sorted(file for file in glob.glob(glob.escape(path) + "*") if os.path.isfile(file))
    if not files:
        return path
    digest = hashlib.sha256()
    for file in files:
        if len(files) > 1:
            digest.update(os.path.basename(file).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def evaluate_run(model_dir: str, checkpoint: str = "best", bindings: Sequence[str] = (),
                 output_dir: Optional[str] = None, protocol: str = "vtab1k", tasks: Optional[Sequence[str]] = None,
                 **options) -> dict:
    """A training run's model (rebuilt from its experiment.gin, ``checkpoint`` loaded) on VTAB+MD.

    ``output_dir`` defaults to <model_dir>/vtab_md_<protocol>; ``options`` go to ``VtabMdEvaluator``.
    """
    from lite_tf import experiment

    experiment.check_checkpoint(model_dir, checkpoint)
    evaluator = VtabMdEvaluator(output_dir or os.path.join(model_dir, f"vtab_md_{protocol}"), protocol=protocol,
                                **options)
    evaluator.check_tasks(tasks)  # before building anything
    model, _ = experiment.load_run(model_dir, bindings)
    weights = experiment.load_weights(model, model_dir, checkpoint)
    evaluator.fingerprint["weights_sha256"] = weights_digest(weights)
    return evaluator.evaluate(model, datasets=tasks)
