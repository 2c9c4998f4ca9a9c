"""ORBIT on an exported recogniser: personalise on a user's clean videos and score the targets with
the exported file only (SavedModel or .tflite), through OrbitEvaluator's tasks and metrics.

The Keras model is never built: the evaluator gets a stand-in exposing the file's image size, and
each task is personalised by the file's ``personalize`` signature and scored by ``classify``.
"""
from __future__ import annotations

import time
import types

import numpy as np

from lite_tf.errors import ConfigError
from lite_tf.eval.orbit_evaluation import OrbitEvaluator
from lite_tf.export import runner


class _ExportedPersonalized:
    """One task's state from the exported file; predicts object indices of uint8 frames."""

    def __init__(self, recognizer, context_images, context_labels, way):
        self.recognizer = recognizer
        start = time.perf_counter()
        self.state = recognizer.personalize(np.asarray(context_images, np.uint8), np.asarray(context_labels))
        self.seconds = time.perf_counter() - start

    def predict(self, frames: np.ndarray) -> np.ndarray:
        return self.recognizer.predict(np.asarray(frames, np.uint8), self.state).astype(np.int64)


class ExportedOrbitEvaluator(OrbitEvaluator):
    """OrbitEvaluator whose tasks are personalised and scored by an exported file (MACs are not
    counted: there is no Keras graph to trace)."""

    def __init__(self, recognizer, **options):
        super().__init__(**{"count_macs": False, **options})
        self.recognizer = recognizer

    def personalized(self, model, context_images, context_labels, way, clip_length=None):
        if clip_length is not None:
            raise ConfigError("An exported recogniser personalises on frames; this ORBIT protocol pools clip "
                              "features (OrbitProtocol.pool_clip_features = True): bind it False, or use the "
                              "challenge protocol (1-frame clips), to score an exported file.")
        return _ExportedPersonalized(self.recognizer, context_images, context_labels, way)


def stand_in(recognizer) -> types.SimpleNamespace:
    """What OrbitEvaluator reads from a model: image size, learner name, variables (none here)."""
    learner = type(recognizer.meta["learner"], (), {})()
    return types.SimpleNamespace(image_size=recognizer.image_size, learner=learner, variables=[],
                                 trainable_variables=[])


def evaluate_exported(path: str, tasks, num_threads: int = None, **options) -> dict:
    """ORBIT results (OrbitEvaluator's shape) of the exported file at ``path`` on ``tasks``."""
    recognizer = runner.load(path, num_threads=num_threads)
    results = ExportedOrbitEvaluator(recognizer, **options).evaluate_tasks(stand_in(recognizer), tasks)
    results["exported"] = {key: recognizer.meta[key] for key in ("format", "quantize", "max_way", "max_context")}
    return results
