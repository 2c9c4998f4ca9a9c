"""ORBIT evaluation: personalise a model to each task's context frames, predict every target frame.

Works with any registered learner inside an EpisodicModel. When the learner implements
``personalize`` (returns a Keras model from frames to logits), the task is adapted once and timed;
otherwise every batch of target frames goes through the model's episode inference path with the
context (correct, slower, and the adaptation time is not separable, so it is reported as null).

``evaluate_orbit`` returns a JSON-ready dict: per target type ("clean" = CLE-VE, "clutter" =
CLU-VE) the per-video and per-user metrics with 95% intervals, the personalisation cost (MACs to
adapt, fitted from traced graphs, and wall-clock seconds per task), the model's parameter count,
and for every user and task each target video's per-frame predictions.
"""
from __future__ import annotations

import time
from typing import Iterable, Optional

import numpy as np
import tensorflow as tf

from lite_tf.data.orbit.pipeline import load_frames
from lite_tf.data.orbit.tasks import OrbitTask
from lite_tf.eval.confidence import mean_confidence_interval
from lite_tf.eval.macs import PersonalizationMacs
from lite_tf.eval.orbit_metrics import VideoResult, summarize
from lite_tf import atomic


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
            logits = self.head(tf.cast(frames, tf.float32) / 127.5 - 1.0 if frames.dtype == np.uint8 else frames,
                               training=False)
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


def evaluate_orbit(model, tasks: Iterable[OrbitTask], frame_size: int, batch_size: int = 256,
                   count_macs: bool = True, progress: bool = True, max_tasks: Optional[int] = None) -> dict:
    """Scores every target frame of ``tasks``; returns metrics and per-frame predictions (see module)."""
    macs = PersonalizationMacs(model.learner, frame_size) if count_macs else None
    videos = {"clean": [], "clutter": []}
    task_rows, costs = [], {"clean": [], "clutter": []}
    iterator = tasks
    if progress:
        from tqdm import tqdm
        iterator = tqdm(tasks, desc="ORBIT tasks", unit="task")
    for count, task in enumerate(iterator):
        if max_tasks is not None and count >= max_tasks:
            break
        context = _concatenate(load_frames(task.context_paths, frame_size, batch_size))
        adapted = _Personalized(model, context, task.context_labels, task.way)
        task_macs = macs(len(task.context_paths), task.way) if macs is not None else None
        rows = []
        for target in task.targets:
            predictions = np.concatenate([adapted.predict(batch) for batch in
                                          load_frames(target.paths, frame_size, batch_size)])
            result = VideoResult(task.user, task.task, target.object_name, target.label, target.video,
                                 target.video_type, predictions.tolist(), list(target.frame_numbers))
            videos[task.target_type].append(result)
            rows.append({"video": target.video, "object": target.object_name, "label": target.label,
                         "video_type": target.video_type, **result.metrics(),
                         "frame_numbers": result.frame_numbers, "predictions": result.predictions})
        costs[task.target_type].append((adapted.seconds, task_macs))
        task_rows.append({"user": task.user, "task": task.task, "target_type": task.target_type,
                          "objects": task.object_names, "context_frames": len(task.context_paths),
                          "context_videos": task.context_videos, "personalization_seconds": adapted.seconds,
                          "personalization_macs": task_macs, "videos": rows})
    results = {"parameters": count_parameters(model), "metrics": {}, "personalization": {}, "tasks": task_rows}
    if macs is not None:
        results["personalization_macs_model"] = {**macs.coefficients(), "per_target_frame": macs.per_query_macs}
    names = {"clean": "CLE-VE", "clutter": "CLU-VE"}
    for kind, kind_videos in videos.items():
        if not kind_videos:
            continue
        results["metrics"][names[kind]] = summarize(kind_videos)
        seconds = [s for s, _ in costs[kind] if s is not None]
        task_macs = [m for _, m in costs[kind] if m is not None]
        results["personalization"][names[kind]] = {
            "tasks": len(costs[kind]),
            "seconds": dict(zip(("mean", "ci95"), mean_confidence_interval(seconds))) if seconds else None,
            "macs": dict(zip(("mean", "ci95"), mean_confidence_interval(task_macs))) if task_macs else None,
        }
    if not results["metrics"]:
        raise ValueError("evaluate_orbit scored no target video: the task list was empty.")
    return results


def format_results(results: dict) -> str:
    """Human-readable table of the summary (percent for accuracies and FTR)."""
    lines = [f"parameters: {results['parameters']['parameters']:,} "
             f"(trainable {results['parameters']['trainable_parameters']:,})"]
    for name, summary in results["metrics"].items():
        for level in ("per_video", "per_user"):
            cells = [f"{metric} {values['mean'] * 100:.2f} +- {values['ci95'] * 100:.2f}"
                     for metric, values in summary[level].items()]
            count = next(iter(summary[level].values()))["n"]
            lines.append(f"{name} {level} (n={count}): " + ", ".join(cells))
        cost = results["personalization"][name]
        if cost["macs"]:
            lines.append(f"{name} personalisation: {cost['macs']['mean'] / 1e9:.3f} GMACs"
                         + (f", {cost['seconds']['mean']:.3f} s" if cost["seconds"] else ", time n/a")
                         + f" per task ({cost['tasks']} tasks)")
    return "\n".join(lines)


def write_results(path: str, results: dict) -> None:
    """Writes ``results`` as JSON atomically (a half-written results file is never left behind)."""
    atomic.write_json(path, results)
