"""Run an exported recogniser (SavedModel or .tflite) through one small API, as a phone app would.

``load(path)`` returns an object with ``personalize(context_images, context_labels) -> state``,
``classify(images, state) -> logits [B, max_way]`` and ``predict(images, state) -> class indices``.
A .tflite file runs in the LiteRT interpreter (``ai_edge_litert``, the ``[litert]`` extra; TF 2.21's
``tf.lite.Interpreter`` is deprecated and only the fallback). TFLite drops the SavedModel's
in-graph asserts, so this runner checks the same things in Python first and raises a one-line
``DataError``: the interpreter never sees a wrong size, dtype, too many images, a label out of
range or an empty class.
"""
from __future__ import annotations

import json
import os
from typing import Dict

import numpy as np

from lite_tf.errors import ConfigError, DataError

METADATA_SUFFIX = ".json"  # beside a .tflite file, or inside a SavedModel folder as lite_tf_export.json


def metadata_path(path: str) -> str:
    return os.path.join(path, "lite_tf_export.json") if os.path.isdir(path) else path + METADATA_SUFFIX


def read_metadata(path: str) -> dict:
    meta = metadata_path(path)
    if not os.path.isfile(meta):
        raise ConfigError(f"{path!r} has no export metadata {meta!r}: not written by lite_tf_export.")
    with open(meta) as stream:
        return json.load(stream)


def interpreter_class():
    """LiteRT's interpreter, or TF's deprecated one when ai-edge-litert is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            Interpreter = tf.lite.Interpreter
    return Interpreter


class ExportedRecognizer:
    """Checks inputs in Python (the same rules as the SavedModel's asserts), then runs the model."""

    def __init__(self, path: str, meta: dict):
        self.path, self.meta = path, meta
        self.image_size, self.max_way, self.max_context = meta["image_size"], meta["max_way"], meta["max_context"]

    def check_images(self, images, name: str) -> np.ndarray:
        images = np.asarray(images)
        size = self.image_size
        if images.dtype != np.uint8:
            raise DataError(f"{name} must be uint8 camera pixels [N, {size}, {size}, 3]; got dtype {images.dtype}.")
        if images.ndim != 4 or images.shape[1:] != (size, size, 3):
            raise DataError(f"{name} must have shape [N, {size}, {size}, 3] (resize before calling {self.path}); "
                            f"got {list(images.shape)}.")
        if images.shape[0] == 0:
            raise DataError(f"{name} holds no image.")
        return images

    def check_context(self, images, labels):
        images = self.check_images(images, "context_images")
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (images.shape[0],):
            raise DataError(f"context_labels must be {images.shape[0]} integer labels (one per image); got "
                            f"dtype {labels.dtype} shape {list(labels.shape)}.")
        if images.shape[0] > self.max_context:
            raise DataError(f"{images.shape[0]} context images is more than this export's max_context="
                            f"{self.max_context}.")
        if labels.min() < 0 or labels.max() >= self.max_way:
            raise DataError(f"context label {labels.min() if labels.min() < 0 else labels.max()} is outside "
                            f"[0, max_way={self.max_way}).")
        empty = sorted(set(range(int(labels.max()) + 1)) - set(labels.tolist()))
        if empty:
            raise DataError(f"class {empty[0]} has no context image (labels must be 0..way-1, each used).")
        return images, labels.astype(np.int32)

    def personalize(self, context_images, context_labels) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def classify(self, images, state) -> np.ndarray:
        raise NotImplementedError

    def predict(self, images, state) -> np.ndarray:
        return np.argmax(self.classify(images, state), axis=-1)


class SavedModelRecognizer(ExportedRecognizer):
    def __init__(self, path: str, meta: dict):
        super().__init__(path, meta)
        import tensorflow as tf

        self.model = tf.saved_model.load(path)  # keep a reference: the signatures' variables live in it

    def personalize(self, context_images, context_labels):
        images, labels = self.check_context(context_images, context_labels)
        state = self.model.signatures["personalize"](context_images=images, context_labels=labels)
        return {name: value.numpy() for name, value in state.items()}

    def classify(self, images, state):
        images = self.check_images(images, "images")
        return self.model.signatures["classify"](images=images, **state)["logits"].numpy()


class TFLiteRecognizer(ExportedRecognizer):
    def __init__(self, path: str, meta: dict, num_threads: int = None):
        super().__init__(path, meta)
        self.interpreter = interpreter_class()(model_path=path, num_threads=num_threads)
        self.personalize_runner = self.interpreter.get_signature_runner("personalize")
        self.classify_runner = self.interpreter.get_signature_runner("classify")

    def personalize(self, context_images, context_labels):
        images, labels = self.check_context(context_images, context_labels)
        return dict(self.personalize_runner(context_images=images, context_labels=labels))

    def classify(self, images, state):
        images = self.check_images(images, "images")
        return self.classify_runner(images=images, **state)["logits"]


def load(path: str, num_threads: int = None) -> ExportedRecognizer:
    """An exported SavedModel folder or .tflite file, ready to personalise and classify."""
    meta = read_metadata(path)
    if os.path.isdir(path):
        return SavedModelRecognizer(path, meta)
    return TFLiteRecognizer(path, meta, num_threads=num_threads)
