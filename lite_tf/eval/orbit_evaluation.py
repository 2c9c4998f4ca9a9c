"""ORBIT evaluation: personalise a model to each task's context frames, predict every target frame.

Works with any registered learner inside an EpisodicModel. When the learner implements
``personalize`` (returns a Keras model from frames to logits), the task is adapted once and timed;
otherwise every batch of target frames goes through the model's episode inference path with the
context (correct, slower, and the adaptation time is not separable, so it is reported as null).

``evaluate_orbit`` returns a JSON-ready dict: per target type ("clean" = CLE-VE, "clutter" =
CLU-VE) the per-video, per-user, per-task and per-object metrics with 95% intervals
(lite_tf/eval/orbit_metrics.py), the personalisation cost as mean (std) over tasks like the official
code reports it (MACs to adapt, fitted from traced graphs, and wall-clock seconds), the model's
parameter count, and for every user and task each target video's per-frame predictions.

Frames are scored one by one. A protocol with clips longer than one frame (neurips21) builds the
clips and each target frame's clip history (lite_tf/data/orbit/tasks.py), but pooling features over
a clip needs learner support that lite_tf's learners do not have yet: the results say so
(``clip_features_pooled: false``).
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Iterable, Optional, Sequence

import numpy as np

from lite_tf import atomic
from lite_tf.data.orbit.pipeline import load_frames, orbit_eval_tasks
from lite_tf.data.orbit.tasks import OrbitTask
from lite_tf.errors import ConfigError, DataError
from lite_tf.eval.macs import PersonalizationMacs
from lite_tf.eval.orbit_metrics import VideoResult, mean_std, summarize
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
                          "context_clips": task.num_context_clips, "clip_length": task.clip_length,
                          "context_videos": task.context_videos, "personalization_seconds": adapted.seconds,
                          "personalization_macs": task_macs, "videos": rows})
    clip_lengths = sorted({row["clip_length"] for row in task_rows})
    results = {"parameters": count_parameters(model), "metrics": {}, "personalization": {}, "tasks": task_rows,
               "clip_features_pooled": False if clip_lengths and clip_lengths[-1] > 1 else None}
    if macs is not None:
        results["personalization_macs_model"] = {**macs.coefficients(), "per_target_frame": macs.per_query_macs}
    names = {"clean": "CLE-VE", "clutter": "CLU-VE"}
    for kind, kind_videos in videos.items():
        if not kind_videos:
            continue
        results["metrics"][names[kind]] = summarize(kind_videos)
        results["personalization"][names[kind]] = {
            "tasks": len(costs[kind]),
            "seconds": mean_std([s for s, _ in costs[kind]]),
            "macs": mean_std([m for _, m in costs[kind]]),
        }
    if not results["metrics"]:
        raise DataError("evaluate_orbit scored no target video: the task list was empty.")
    return results


def format_value(values: dict) -> str:
    """'71.25 +- 1.03' (percent), or '71.25 +- n/a' when one value gives no interval."""
    half = "n/a" if values["ci95"] is None else f"{values['ci95'] * 100:.2f}"
    return f"{values['mean'] * 100:.2f} +- {half}"


def format_results(results: dict) -> str:
    """Human-readable table of the summary (percent for accuracies and FTR; cost as mean (std))."""
    lines = [f"parameters: {results['parameters']['parameters']:,} "
             f"(trainable {results['parameters']['trainable_parameters']:,})"]
    for name, summary in results["metrics"].items():
        for level in ("per_video", "per_user", "per_task", "per_object"):
            cells = [f"{metric} {format_value(values)}" for metric, values in summary[level].items()]
            count = next(iter(summary[level].values()))["n"]
            lines.append(f"{name} {level} (n={count}): " + ", ".join(cells))
        cost = results["personalization"][name]
        macs, seconds = cost["macs"], cost["seconds"]
        lines.append(f"{name} personalisation per task ({cost['tasks']} tasks): MACs "
                     + (f"{macs['mean'] / 1e9:.3f}G ({macs['std'] / 1e9:.3f}G)" if macs else "n/a")
                     + ", time " + (f"{seconds['mean']:.3f}s ({seconds['std']:.3f}s)" if seconds else "n/a"))
    return "\n".join(lines)


def write_results(path: str, results: dict) -> None:
    """Writes ``results`` as JSON atomically (a half-written results file is never left behind)."""
    atomic.write_json(path, results)


def parse_experiment(model_dir: Optional[str] = None, configs: Sequence[str] = (), bindings: Sequence[str] = ()):
    """Parses a run's experiment.gin (``model_dir``) or, without a run, the experiment files ``configs``."""
    from lite_tf import experiment

    if model_dir and configs:
        raise ConfigError("Pass --model_dir (its experiment.gin is used) or --gin_config, not both.")
    if model_dir:
        return experiment.load_run_config(model_dir, bindings)
    if configs:
        return experiment.parse_gin(configs, bindings)
    raise ConfigError("Pass --model_dir (a training run) or --gin_config (an experiment file).")


def build_and_evaluate(split=None, target_types=None, tasks_per_user=None, checkpoint="best", model_dir=None,
                       batch_size=256, count_macs=True, max_tasks=None, output=None, progress=True,
                       strict=False) -> dict:
    """Builds the parsed experiment's model, loads ``checkpoint``, evaluates; writes the results to
    ``output`` (default <model_dir or .>/orbit_<split>_results.json) and returns them (with "output").

    Tasks come from the gin-configured ``orbit_eval_tasks`` at the model's image size; ``split``,
    ``target_types`` and ``tasks_per_user`` override gin's when given.
    """
    from lite_tf import experiment

    experiment.check_checkpoint(model_dir, checkpoint)
    model, _ = experiment.build(compile=False)
    weights = experiment.load_weights(model, model_dir, checkpoint)
    overrides = {k: v for k, v in (("split", split), ("target_types", target_types),
                                   ("tasks_per_user", tasks_per_user)) if v is not None}
    tasks = orbit_eval_tasks(frame_size=model.image_size, strict=strict, **overrides)
    results = evaluate_orbit(model, tasks, model.image_size, batch_size=batch_size, count_macs=count_macs,
                             progress=progress, max_tasks=max_tasks)
    results.update(split=tasks.split, frame_size=model.image_size, weights=weights,
                   data=tasks.index.describe(), skipped=dict(tasks.skipped),
                   protocol=dataclasses.asdict(tasks.protocol),
                   learner=type(model.learner).__name__)
    output = output or os.path.join(model_dir or ".", f"orbit_{tasks.split}_results.json")
    write_results(output, results)
    results["output"] = output
    return results
