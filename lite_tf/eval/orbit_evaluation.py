"""ORBIT evaluation: personalise a model to each task's context frames, predict every target frame.

Works with any registered learner inside an EpisodicModel. When the learner implements
``personalize`` (returns a Keras model from frames, or clips, to logits), the task is adapted once and
timed; otherwise every batch of target frames (or clips) goes through the model's episode inference path with the
context (correct, slower, and the adaptation time is not separable, so it is reported as null).

``OrbitEvaluator`` follows the one evaluator shape (lite_tf/eval/evaluator.py): its datasets are
the target types, "clean" (CLE-VE) and "clutter" (CLU-VE), each row holding the headline frame
accuracy over videos as ``accuracy`` / ``ci95``, the per-video, per-user, per-task and per-object
metrics with 95% intervals (lite_tf/eval/orbit_metrics.py) and the personalisation cost as mean
(std) over tasks like the official code reports it (MACs to adapt, fitted from traced graphs, and
wall-clock seconds). Extra keys hold the model's parameter count, the protocol and data, and for
every user and task each target video's per-frame predictions.

Clip features (the neurips21 protocol, ``OrbitProtocol.pool_clip_features``, as the official models
of the LITE paper compute them, lite_tf/clips.py): the context set is a set of clips of
``clip_length`` frames, each embedded frame by frame and mean-pooled into one example; every scored
target frame is predicted from its clip history (``TargetVideo.history()``: the frame and its
``clip_length - 1`` predecessors) as one pooled clip. Results say ``clip_features_pooled``: true
(pooled), false (clips scored frame by frame) or null (1-frame clips). MACs per task count every
context frame the extractor embeds.

Every drawn task is scored, repeated or not, as the official code does (a task identical to an
earlier task of the same user is not computed again: its predictions are the earlier task's). Each
row's ``identical_tasks_once`` holds the same metrics with each distinct task counted once (lite_tf's
extra figure; it weights users by their distinct tasks, not by the tasks drawn).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Optional, Sequence

import numpy as np

from lite_tf.clips import split_clip_model
from lite_tf.data.orbit.pipeline import OrbitEvalTasks, load_frames
from lite_tf.errors import ConfigError, DataError
from lite_tf.eval.evaluator import Evaluator
from lite_tf.macs import PersonalizationMacs
from lite_tf.eval.orbit_metrics import METRICS, VideoResult, mean_std, summarize
from lite_tf.images import to_float_images
from lite_tf.registry import register_evaluator


def _concatenate(batches) -> np.ndarray:
    return np.concatenate(list(batches), axis=0)


class _Personalized:
    """Predicts object indices for batches of target frames (or clips) of one task."""

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

    def logits(self, inputs: np.ndarray) -> np.ndarray:
        """[n, way] logits of frames [n, S, S, 3] or clips [n, T, S, S, 3] (uint8 or [-1, 1])."""
        if self.head is not None:
            return np.asarray(self.head(to_float_images(inputs), training=False))
        images, labels, way = self.context
        return np.asarray(self.model.predict_step({
            "support_images": images, "support_labels": labels, "query_images": inputs,
            "query_labels": np.zeros(len(inputs), np.int32), "way": np.int32(way)}))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return np.argmax(self.logits(inputs), axis=-1).astype(np.int64)

    def history_logits(self, frames: np.ndarray, history: np.ndarray, batch_size: int) -> np.ndarray:
        """[len(history), way] logits of each clip ``frames[history[i]]``. A personalised clip model
        (lite_tf/clips.py) embeds each frame once and pools the histories from those features (the
        same numbers, ``clip_length`` times less work); otherwise every history clip is run whole."""
        halves = split_clip_model(self.head) if self.head is not None else None
        if halves is None:
            return np.concatenate([self.logits(batch) for batch in history_batches(frames, history, batch_size)])
        frame_model, clip_head = halves
        features = np.concatenate([np.asarray(frame_model(to_float_images(frames[start:start + batch_size])))
                                   for start in range(0, len(frames), batch_size)])
        pooled = features[history].mean(axis=1, dtype=np.float64).astype(features.dtype)
        return np.concatenate([np.asarray(clip_head(pooled[start:start + batch_size]))
                               for start in range(0, len(pooled), batch_size)])


def personalize_task(model, context_frames: np.ndarray, context_labels: np.ndarray, way: int,
                     clip_length: Optional[int] = None) -> _Personalized:
    """Adapts ``model`` to one task's context frames (clip after clip, one label per frame); with
    ``clip_length`` the frames form clips of that many frames, each one pooled example."""
    if clip_length is None:
        return _Personalized(model, context_frames, np.asarray(context_labels, np.int32), way)
    clips = context_frames.reshape((-1, clip_length) + context_frames.shape[1:])
    return _Personalized(model, clips, np.asarray(context_labels, np.int32)[::clip_length], way)


def history_batches(frames: np.ndarray, history: np.ndarray, batch_size: int):
    """Clips [b, T, S, S, 3] of each scored frame's history (``TargetVideo.history()`` positions into
    ``frames``), about ``batch_size`` frames at a time."""
    step = max(1, batch_size // history.shape[1])
    for start in range(0, len(history), step):
        yield frames[history[start:start + step]]


def count_parameters(model) -> dict:
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    total = int(sum(np.prod(v.shape) for v in model.variables if "seed" not in v.path))
    return {"parameters": total, "trainable_parameters": trainable}


@register_evaluator("orbit")
class OrbitEvaluator(Evaluator):
    """Personalises to every CLE-VE / CLU-VE task of a split and scores each target frame.

    Args:
      batch_size: frames per forward pass.
      count_macs: report the MACs to personalise (traces the learner a few times).
      max_tasks: stop after this many tasks (smoke tests); None: every task.
      progress: a progress bar over tasks.
      strict: fail on any ORBIT folder problem instead of skipping and counting it.
      tasks_per_user, seed: override the gin-bound ``orbit_eval_tasks`` values when not None.
      episodes: refused (ORBIT scores every task of its protocol); here so the message says so.
    """

    output_name = "orbit"
    NAMES = {"clean": "CLE-VE", "clutter": "CLU-VE"}

    def __init__(self, batch_size: int = 256, count_macs: bool = True, max_tasks: Optional[int] = None,
                 progress: bool = True, strict: bool = False, tasks_per_user: Optional[int] = None,
                 seed: Optional[int] = None, episodes: Optional[int] = None):
        if episodes is not None:
            raise ConfigError("sources.orbit is evaluated on every task of the protocol (tasks per user), not "
                              f"on a number of episodes; drop --episodes={episodes}.")
        for name, value in (("batch_size", batch_size), ("max_tasks", max_tasks), ("tasks_per_user", tasks_per_user)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"--{name} must be a positive integer; got {value!r}.")
        self.batch_size, self.count_macs, self.max_tasks = batch_size, count_macs, max_tasks
        self.progress, self.strict, self.tasks_per_user, self.seed = progress, strict, tasks_per_user, seed

    def evaluate(self, model, source, split: str, *, data_root: Optional[str] = None,
                 datasets: Optional[Sequence[str]] = None, output: Optional[str] = None) -> dict:
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
        distinct = {kind: [] for kind in self.NAMES}  # each distinct task once
        task_rows, costs = [], {kind: [] for kind in self.NAMES}
        iterator = tasks
        if self.progress:
            from tqdm import tqdm
            iterator = tqdm(tasks, desc="ORBIT tasks", unit="task")
        pooled_any = unpooled_any = False
        done = {}  # (target type, user, task number) -> (rows, video results, cost) of computed tasks
        for count, task in enumerate(iterator):
            if self.max_tasks is not None and count >= self.max_tasks:
                break
            pooled = tasks.protocol.pool_clip_features and task.clip_length > 1
            pooled_any, unpooled_any = pooled_any or pooled, unpooled_any or task.clip_length > 1 and not pooled
            repeat = getattr(task, "repeat_of", None)
            if repeat is not None and (task.target_type, task.user, repeat) in done:
                rows, results, cost = done[(task.target_type, task.user, repeat)]
                results = [dataclasses.replace(r, task=task.task) for r in results]
            else:
                rows, results, cost = self._score_task(model, task, macs, frame_size, pooled)
                done[(task.target_type, task.user, task.task)] = (rows, results, cost)
            videos[task.target_type].extend(results)
            if repeat is None:
                distinct[task.target_type].extend(results)
            costs[task.target_type].append(cost)
            task_rows.append({"user": task.user, "task": task.task, "target_type": task.target_type,
                              "objects": task.object_names, "context_frames": len(task.context_paths),
                              "context_clips": task.num_context_clips, "clip_length": task.clip_length,
                              "repeat_of": repeat, "context_videos": task.context_videos,
                              "personalization_seconds": cost[0], "personalization_macs": cost[1], "videos": rows})
        rows = {kind: self._row(kind, kind_videos, costs[kind], distinct[kind])
                for kind, kind_videos in videos.items() if kind_videos}
        if not rows:
            raise DataError("OrbitEvaluator scored no target video: the task list was empty.")
        results = {"split": tasks.split, "datasets": rows, "table": markdown_table(rows),
                   "parameters": count_parameters(model), "learner": type(model.learner).__name__,
                   "frame_size": frame_size, "protocol": dataclasses.asdict(tasks.protocol),
                   "data": tasks.index.describe(), "skipped": dict(tasks.skipped), "tasks": task_rows,
                   "clip_features_pooled": False if unpooled_any else (True if pooled_any else None)}
        if macs is not None:
            results["personalization_macs_model"] = {**macs.coefficients(), "per_target_frame": macs.per_query_macs}
        return results

    def personalized(self, model, context_frames, context_labels, way, clip_length=None):
        """One task's adapted predictor (``.seconds``, ``.predict``, ``.history_logits``); the hook
        lite_tf/export/orbit.py overrides to score with an exported file."""
        return personalize_task(model, context_frames, context_labels, way, clip_length)

    def _score_task(self, model, task, macs, frame_size: int, pooled: bool):
        """(video rows, VideoResults, (seconds, MACs)) of one task: personalise, predict every target frame."""
        context = _concatenate(load_frames(task.context_paths, frame_size, self.batch_size))
        adapted = self.personalized(model, context, task.context_labels, task.way,
                                    task.clip_length if pooled else None)
        task_macs = macs(len(task.context_paths), task.way) if macs is not None else None
        rows, results = [], []
        for target in task.targets:
            frames = load_frames(target.paths, frame_size, self.batch_size)
            if pooled and target.clip_length > 1:
                logits = adapted.history_logits(_concatenate(frames), target.history(), self.batch_size)
                predictions = np.argmax(logits, axis=-1).astype(np.int64)
            else:
                predictions = np.concatenate([adapted.predict(batch) for batch in frames])
            result = VideoResult(task.user, task.task, target.object_name, target.label, target.video,
                                 target.video_type, predictions.tolist(), list(target.frame_numbers))
            results.append(result)
            rows.append({"video": target.video, "object": target.object_name, "label": target.label,
                         "video_type": target.video_type, **result.metrics(),
                         "frame_numbers": result.frame_numbers, "predictions": result.predictions})
        return rows, results, (adapted.seconds, task_macs)

    def _row(self, kind: str, videos: list, costs: list, distinct: list) -> dict:
        return aggregate_row(self.NAMES[kind], videos, costs, distinct)

    def title(self, results: dict, weights: str) -> str:
        parameters = results["parameters"]
        return (f"ORBIT evaluation of {weights} ({results['learner']}, {parameters['parameters']:,} parameters, "
                f"{parameters['trainable_parameters']:,} trainable; {results['frame_size']} px frames) "
                f"on the {results['split']} split")


def aggregate_row(name: str, videos: list, costs: list, distinct: Optional[list] = None) -> dict:
    """One target type's results over every scored task (``videos``, the official aggregation) and,
    as ``identical_tasks_once``, over ``distinct`` (each distinct task once)."""
    summary = summarize(videos)
    headline = summary["per_video"]["frame_accuracy"]
    row = {"name": name, "accuracy": headline["mean"], "ci95": headline["ci95"], "videos": headline["n"], **summary,
           "personalization": {"tasks": len(costs), "seconds": mean_std([s for s, _ in costs]),
                               "macs": mean_std([m for _, m in costs])}}
    if distinct:
        once = summarize(distinct)
        row["identical_tasks_once"] = {
            "note": "lite_tf's extra figure: each distinct task of a user counted once (the headline scores "
                    "every drawn task, as the official code)",
            "tasks": len({(v.user, v.task) for v in distinct}), "videos": once["per_video"]["frame_accuracy"]["n"],
            "per_video": once["per_video"], "per_user": once["per_user"]}
    return row


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
        once = row.get("identical_tasks_once")
        if once is not None and once["tasks"] < row["personalization"]["tasks"]:  # repeated tasks were drawn
            cells = " | ".join(_percent(once["per_video"].get(metric)) for metric in METRICS)
            lines.append(f"| {kind} ({row['name']}) | per video, each distinct task once (lite_tf extra) | "
                         f"{once['videos']} | {cells} |")
    lines += ["", "| dataset | tasks | personalisation MACs per task, mean (std) | seconds per task, mean (std) |",
              "|---|---|---|---|"]
    for kind, row in rows.items():
        cost = row["personalization"]
        lines.append(f"| {kind} ({row['name']}) | {cost['tasks']} | {_mean_std(cost['macs'], 1e9, 'G')} | "
                     f"{_mean_std(cost['seconds'], 1.0, 's')} |")
    return "\n".join(lines)
