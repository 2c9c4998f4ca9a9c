"""ORBIT evaluation: personalise a model to each task's context frames, predict every target frame.

Works with any registered learner inside an EpisodicModel. When the learner implements
``personalize`` (returns a Keras model from frames to logits), the task is adapted once and timed;
otherwise every batch of target frames goes through the model's episode inference path with the
context (correct, slower, and the adaptation time is not separable, so it is reported as null).

``OrbitEvaluator`` follows the one evaluator shape (lite_tf/eval/evaluator.py): its datasets are
the target types, "clean" (CLE-VE) and "clutter" (CLU-VE), each row holding the headline frame
accuracy over videos as ``accuracy`` / ``ci95``, the per-video, per-user, per-task and per-object
metrics with 95% intervals (lite_tf/eval/orbit_metrics.py) and the personalisation cost as mean
(std) over tasks like the official code reports it (MACs to adapt, fitted from traced graphs, and
wall-clock seconds). Extra keys hold the model's parameter count, the protocol and data, and for
every user and task each target video's per-frame predictions.

Frames are scored one by one. A protocol with clips longer than one frame (neurips21) builds the
clips and each target frame's clip history (lite_tf/data/orbit/tasks.py), but pooling features over
a clip needs learner support that lite_tf's learners do not have yet: the results say so
(``clip_features_pooled: false``).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

import numpy as np

from lite_tf.data.orbit.pipeline import OrbitEvalTasks, load_frames
from lite_tf.errors import ConfigError, DataError
from lite_tf.eval.evaluator import Evaluator
from lite_tf.eval.macs import PersonalizationMacs
from lite_tf.eval.orbit_metrics import METRICS, VideoResult, mean_std, summarize
from lite_tf.images import to_float_images


def _concatenate(batches) -> np.ndarray:
    return np.concatenate(list(batches), axis=0)


class _Personalized:
    """Predicts object indices for batches of target frames of one task."""

    def __init__(self, model, context_images, context_labels, way):
        self.model = model
        self.context = (context_images, context_labels, way)
        self.seconds = None
        self.head = None
        try:
            start = time.perf_counter()
            head = model.learner.personalize(context_images, context_labels, way)
            self.seconds = time.perf_counter() - start
            self.head = head
        except NotImplementedError:
            pass

    def predict(self, frames: np.ndarray) -> np.ndarray:
        if self.head is not None:
            logits = self.head(to_float_images(frames), training=False)
        else:
            images, labels, way = self.context
            logits = self.model.predict_step({"support_images": images, "support_labels": labels,
                                              "query_images": frames, "query_labels": np.zeros(len(frames), np.int32),
                                              "way": np.int32(way)})
        return np.argmax(np.asarray(logits), axis=-1).astype(np.int64)


def count_parameters(model) -> dict:
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    total = int(sum(np.prod(v.shape) for v in model.variables if "seed" not in v.path))
    return {"parameters": total, "trainable_parameters": trainable}


class OrbitEvaluator(Evaluator):
    """Personalises to every CLE-VE / CLU-VE task of a split and scores each target frame.

    Args:
      batch_size: frames per forward pass.
      count_macs: report the MACs to personalise (traces the learner a few times).
      max_tasks: stop after this many tasks (smoke tests); None: every task.
      progress: a progress bar over tasks.
      strict: fail on any ORBIT folder problem instead of skipping and counting it.
      tasks_per_user, seed: override the gin-bound ``orbit_eval_tasks`` values when not None.
    """

    output_name = "orbit"
    NAMES = {"clean": "CLE-VE", "clutter": "CLU-VE"}
    # (model, context frames, labels, way) -> .seconds, .predict(frames); lite_tf/export/orbit.py swaps it
    personalized = _Personalized

    def __init__(self, batch_size: int = 256, count_macs: bool = True, max_tasks: Optional[int] = None,
                 progress: bool = True, strict: bool = False, tasks_per_user: Optional[int] = None,
                 seed: Optional[int] = None):
        for name, value in (("batch_size", batch_size), ("max_tasks", max_tasks), ("tasks_per_user", tasks_per_user)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"--{name} must be a positive integer; got {value!r}.")
        self.batch_size, self.count_macs, self.max_tasks = batch_size, count_macs, max_tasks
        self.progress, self.strict, self.tasks_per_user, self.seed = progress, strict, tasks_per_user, seed

    def evaluate(self, model, source, split: str, *, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None) -> dict:
        """``source`` is ``sources.orbit`` (its ``eval_tasks``); ``datasets`` the target types."""
        if not hasattr(source, "eval_tasks"):
            raise ConfigError(f"OrbitEvaluator needs an ORBIT source (sources.orbit); got {type(source).__name__}.")
        tasks = source.eval_tasks(split, image_size=model.image_size, data_root=data_root,
                                  datasets=[name for name in datasets or () if name is not None] or None,
                                  tasks_per_user=self.tasks_per_user, seed=self.seed, strict=self.strict)
        return self.evaluate_tasks(model, tasks)

    def evaluate_tasks(self, model, tasks: OrbitEvalTasks) -> dict:
        """Scores every target frame of ``tasks`` (see module docstring for the results)."""
        if tasks.frame_size != model.image_size:
            raise DataError(f"The ORBIT tasks are at {tasks.frame_size} px, the model's image_size is "
                            f"{model.image_size}.")
        frame_size = model.image_size
        macs = PersonalizationMacs(model.learner, frame_size) if self.count_macs else None
        videos = {kind: [] for kind in self.NAMES}
        task_rows, costs = [], {kind: [] for kind in self.NAMES}
        iterator = tasks
        if self.progress:
            from tqdm import tqdm
            iterator = tqdm(tasks, desc="ORBIT tasks", unit="task")
        for count, task in enumerate(iterator):
            if self.max_tasks is not None and count >= self.max_tasks:
                break
            context = _concatenate(load_frames(task.context_paths, frame_size, self.batch_size))
            adapted = self.personalized(model, context, task.context_labels, task.way)
            task_macs = macs(len(task.context_paths), task.way) if macs is not None else None
            rows = []
            for target in task.targets:
                predictions = np.concatenate([adapted.predict(batch) for batch in
                                              load_frames(target.paths, frame_size, self.batch_size)])
                result = VideoResult(task.user, task.task, target.object_name, target.label, target.video,
                                     target.video_type, predictions.tolist(), list(target.frame_numbers))
                videos[task.target_type].append(result)
                rows.append({"video": target.video, "object": target.object_name, "label": target.label,
                             "video_type": target.video_type, **result.metrics(),
                             "frame_numbers": result.frame_numbers, "predictions": result.predictions})
            costs[task.target_type].append((adapted.seconds, task_macs))
            task_rows.append({"user": task.user, "task": task.task, "target_type": task.target_type,
                              "objects": task.object_names, "context_frames": len(task.context_paths),
                              "context_clips": task.num_context_clips, "clip_length": task.clip_length,
                              "context_videos": task.context_videos, "personalization_seconds": adapted.seconds,
                              "personalization_macs": task_macs, "videos": rows})
        rows = {kind: self._row(kind, kind_videos, costs[kind]) for kind, kind_videos in videos.items() if kind_videos}
        if not rows:
            raise DataError("OrbitEvaluator scored no target video: the task list was empty.")
        clip_lengths = sorted({row["clip_length"] for row in task_rows})
        results = {"split": tasks.split, "datasets": rows, "table": markdown_table(rows),
                   "parameters": count_parameters(model), "learner": type(model.learner).__name__,
                   "frame_size": frame_size, "protocol": dataclasses.asdict(tasks.protocol),
                   "data": tasks.index.describe(), "skipped": dict(tasks.skipped), "tasks": task_rows,
                   "clip_features_pooled": False if clip_lengths and clip_lengths[-1] > 1 else None}
        if macs is not None:
            results["personalization_macs_model"] = {**macs.coefficients(), "per_target_frame": macs.per_query_macs}
        return results

    def _row(self, kind: str, videos: list, costs: list) -> dict:
        summary = summarize(videos)
        headline = summary["per_video"]["frame_accuracy"]
        return {"name": self.NAMES[kind], "accuracy": headline["mean"], "ci95": headline["ci95"],
                "videos": headline["n"], **summary,
                "personalization": {"tasks": len(costs), "seconds": mean_std([s for s, _ in costs]),
                                    "macs": mean_std([m for _, m in costs])}}

    def title(self, results: dict, weights: str) -> str:
        parameters = results["parameters"]
        return (f"ORBIT evaluation of {weights} ({results['learner']}, {parameters['parameters']:,} parameters, "
                f"{parameters['trainable_parameters']:,} trainable; {results['frame_size']} px frames) "
                f"on the {results['split']} split")


def _percent(values: Optional[dict]) -> str:
    """'71.25 +- 1.03' (percent), '71.25 +- n/a' when one value gives no interval, '-' when absent."""
    if values is None:
        return "-"
    half = "n/a" if values["ci95"] is None else f"{values['ci95'] * 100:.2f}"
    return f"{values['mean'] * 100:.2f} +- {half}"


def _mean_std(values: Optional[dict], scale: float, unit: str) -> str:
    return "n/a" if values is None else f"{values['mean'] / scale:.3f}{unit} ({values['std'] / scale:.3f}{unit})"


def markdown_table(rows: dict) -> str:
    """The metrics of every level (percent, +- the 95% interval), then the personalisation cost."""
    lines = ["| dataset | level | n | frame accuracy (%) | video accuracy (%) | frames to recognition (%) |",
             "|---|---|---|---|---|---|"]
    for kind, row in rows.items():
        for level in ("per_video", "per_user", "per_task", "per_object"):
            metrics = row[level]
            cells = " | ".join(_percent(metrics.get(metric)) for metric in METRICS)
            lines.append(f"| {kind} ({row['name']}) | {level.replace('_', ' ')} | "
                         f"{metrics['frame_accuracy']['n']} | {cells} |")
    lines += ["", "| dataset | tasks | personalisation MACs per task, mean (std) | seconds per task, mean (std) |",
              "|---|---|---|---|"]
    for kind, row in rows.items():
        cost = row["personalization"]
        lines.append(f"| {kind} ({row['name']}) | {cost['tasks']} | {_mean_std(cost['macs'], 1e9, 'G')} | "
                     f"{_mean_std(cost['seconds'], 1.0, 's')} |")
    return "\n".join(lines)
