"""ORBIT metrics: frame accuracy, video accuracy and frames-to-recognition, per video and per user.

One target video gives a sequence of frame predictions (object indices within its task) and one
true label. The per-video metrics are:

- frame accuracy: share of frames predicted right;
- video accuracy: 1 if the most frequent frame prediction is right. Ties between equally frequent
  predictions go to the smallest object index (as ``np.argmax`` of the counts, and ``torch.mode``
  in the reference code), so a tie counts as right only when the true label is that smallest one;
- frames-to-recognition (FTR): index of the first right frame divided by the number of frames;
  1.0 when no frame is right (lower is better).

Aggregates (``summarize``), each a mean with a 95% interval 1.96 * std / sqrt(n)
(lite_tf/eval/confidence.py; ``ci95`` is None, printed "n/a", when n < 2):
- "per_video" pools every video of every task and user (the headline numbers of both papers);
- "per_user" first averages each user's videos (all their tasks), then averages over users
  (results-neurips21-paper ``TestEvaluator``);
- "per_task" and "per_object": frame accuracy over the pooled frames of each task, and of each
  (user, object) over all its tasks, then averaged (HEAD ``TestEvaluator.get_mean_stats``).
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from lite_tf.eval.confidence import mean_confidence_interval
from lite_tf.errors import DataError, WrongTypeError

METRICS = ("frame_accuracy", "video_accuracy", "frames_to_recognition")


def _predictions(predictions) -> np.ndarray:
    array = np.asarray(predictions)
    if array.ndim != 1 or array.size == 0:
        raise DataError(f"A video's frame predictions must be a non-empty 1-D array; got shape {array.shape}.")
    if not np.issubdtype(array.dtype, np.integer):
        raise WrongTypeError(f"Frame predictions must be integer object indices; got dtype {array.dtype}.")
    if array.min() < 0:
        raise DataError(f"Frame predictions must be >= 0; got {array.min()}.")
    return array


def frame_accuracy(predictions: Sequence[int], label: int) -> float:
    """Share of the video's frames predicted as ``label``."""
    return float(np.mean(_predictions(predictions) == label))


def video_accuracy(predictions: Sequence[int], label: int) -> float:
    """1.0 if the most frequent prediction is ``label`` (ties: smallest index wins), else 0.0."""
    return float(int(np.argmax(np.bincount(_predictions(predictions)))) == label)


def frames_to_recognition(predictions: Sequence[int], label: int) -> float:
    """Index of the first frame predicted right / number of frames; 1.0 if none is right."""
    array = _predictions(predictions)
    right = np.flatnonzero(array == label)
    return float(right[0] / array.size) if right.size else 1.0


def video_metrics(predictions: Sequence[int], label: int) -> Dict[str, float]:
    return {
        "frame_accuracy": frame_accuracy(predictions, label),
        "video_accuracy": video_accuracy(predictions, label),
        "frames_to_recognition": frames_to_recognition(predictions, label),
    }


@dataclasses.dataclass
class VideoResult:
    """The predictions for one target video of one task."""

    user: str
    task: int
    object_name: str
    label: int
    video: str
    video_type: str  # "clean" or "clutter"
    predictions: List[int]
    frame_numbers: List[int] = dataclasses.field(default_factory=list)

    def metrics(self) -> Dict[str, float]:
        return video_metrics(np.asarray(self.predictions, dtype=np.int64), self.label)


def interval(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """{mean, ci95, n}; ci95 is None when fewer than two values give no spread to measure."""
    mean, half_width = mean_confidence_interval(values)
    return {"mean": mean, "ci95": half_width if len(values) >= 2 else None, "n": len(values)}


def mean_std(values: Sequence[float]) -> Optional[Dict[str, float]]:
    """{mean, std, n} (population std, as the official OpsCounter reports MACs and time), or None."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def _pooled_frame_accuracy(groups: Dict[tuple, List[VideoResult]]) -> List[float]:
    return [float(np.mean(np.concatenate([np.asarray(v.predictions) == v.label for v in group])))
            for group in groups.values()]


def summarize(videos: Iterable[VideoResult]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{"per_video" | "per_user": {metric: {mean, ci95, n}}, "per_task" | "per_object":
    {"frame_accuracy": {...}}} over ``videos`` (see module docstring)."""
    videos = list(videos)
    if not videos:
        raise DataError("summarize needs at least one video result; got none.")
    rows = [video.metrics() for video in videos]
    by_user: "OrderedDict[str, List[Dict[str, float]]]" = OrderedDict()
    by_task: "OrderedDict[tuple, List[VideoResult]]" = OrderedDict()
    by_object: "OrderedDict[tuple, List[VideoResult]]" = OrderedDict()
    for video, row in zip(videos, rows):
        by_user.setdefault(video.user, []).append(row)
        by_task.setdefault((video.user, video.task), []).append(video)
        by_object.setdefault((video.user, video.object_name), []).append(video)
    summary = {"per_video": {}, "per_user": {}}
    for metric in METRICS:
        pooled = [row[metric] for row in rows]
        user_means = [float(np.mean([row[metric] for row in user_rows])) for user_rows in by_user.values()]
        summary["per_video"][metric] = interval(pooled)
        summary["per_user"][metric] = interval(user_means)
    summary["per_task"] = {"frame_accuracy": interval(_pooled_frame_accuracy(by_task))}
    summary["per_object"] = {"frame_accuracy": interval(_pooled_frame_accuracy(by_object))}
    return summary
