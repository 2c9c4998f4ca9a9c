"""On-device export: a personalised recogniser as a SavedModel or a .tflite file.

``export_learner`` writes a built learner; ``export_run`` rebuilds a training run (experiment.gin
plus a checkpoint) and writes it. Either way the model has two signatures (recognizer.py):
``personalize(context_images, context_labels) -> state`` and ``classify(images, **state) -> logits``.
``runner.load`` runs what was written. A JSON file beside the model (``<file>.tflite.json``, or
``lite_tf_export.json`` inside the SavedModel folder) holds what the runner needs (image size,
caps, state names) and, for a quantised file, its measured accuracy beside the float model's.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterable, Optional, Sequence, Tuple

import numpy as np

from lite_tf import atomic
from lite_tf.errors import ConfigError, DataError

FORMATS = ("saved_model", "tflite")
QUANTIZATIONS = ("none", "dynamic", "int8")
DEFAULT_MAX_WAY = 15  # ORBIT's object cap; Simple CNAPs' state grows as max_way * D^2
DEFAULT_MAX_CONTEXT = 1000  # the largest support set lite_tf meta-trains with
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def personalize_chunk(learner=None) -> int:
    """Context images embedded at a time: the learner's personalisation chunk, which is the run's
    LiteConfig.chunk_size (set by EpisodicModel), else the gin-bound LiteConfig's (one binding)."""
    from lite_tf.lite import LiteConfig

    return int(getattr(learner, "support_chunk_size", None) or LiteConfig().chunk_size)


def _write_bytes(path: str, data: bytes) -> None:
    with atomic.atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            stream.write(data)


def build_recognizer(learner, image_size: int, max_way: int = DEFAULT_MAX_WAY,
                     max_context: int = DEFAULT_MAX_CONTEXT, chunk_size: Optional[int] = None):
    """The two-signature ``Recognizer`` of ``learner`` (built for ``image_size`` if it is not yet);
    ``write`` it in any format (one recogniser traces its signatures once for every format)."""
    from lite_tf.export.recognizer import Recognizer

    if not getattr(learner, "built", False):
        learner.build_for(image_size)
    return Recognizer(learner, int(image_size), max_way, max_context, chunk_size or personalize_chunk(learner))


def _save(recognizer, path: str) -> None:
    import tensorflow as tf

    signatures = {"personalize": recognizer.personalize.get_concrete_function(),
                  "classify": recognizer.classify.get_concrete_function()}
    # custom gradients (EfficientNet's swish) captured inside the chunk loop cannot be saved; an
    # inference artefact needs none
    tf.saved_model.save(recognizer, path, signatures=signatures,
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))


def _representative(recognizer, images: np.ndarray, labels: np.ndarray, samples: int = 8):
    """(signature, inputs) pairs for int8 calibration: context chunks and query batches with their state."""
    import tensorflow as tf

    # classes interleaved, so the first max_context images still hold every class
    rank = np.zeros(len(labels), int)
    for label in np.unique(labels):
        rank[labels == label] = np.arange(np.sum(labels == label))
    context = np.lexsort((labels, rank))[:recognizer.max_context]
    context_images, context_labels = images[context], labels[context]
    state = recognizer.personalize(tf.constant(context_images), tf.constant(context_labels))
    order = np.random.default_rng(0).permutation(len(images))

    def generator():
        for start in range(0, min(len(order), samples * 8), 8):
            batch = order[start:start + 8]
            yield "personalize", {"context_images": context_images, "context_labels": context_labels}
            yield "classify", {"images": images[batch], **{name: value.numpy() for name, value in state.items()}}
    return generator


def _repacked(function, structure):
    import tensorflow as tf

    return lambda *args: tf.nest.pack_sequence_as(structure, tf.nest.flatten(function(*args)))


def frozen(recognizer):
    """A variable-free copy of the two signatures, weights as constants (cached on the recogniser).

    Both formats are written from it: the TFLite converter leaves variables that a
    ``tf.while_loop`` body reads as READ_VARIABLE ops of an uninitialised LiteRT resource (garbage
    logits), and a frozen SavedModel saves and loads several times faster than one holding the
    Keras layers (a deployment artefact needs no trainable variables).
    """
    if getattr(recognizer, "frozen_", None) is not None:
        return recognizer.frozen_
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    module = tf.Module()
    for name in ("personalize", "classify"):
        function = getattr(recognizer, name)
        concrete = function.get_concrete_function()
        constant = convert_variables_to_constants_v2(concrete)

        setattr(module, name, tf.function(_repacked(constant, concrete.structured_outputs),
                                          input_signature=function.input_signature))
    recognizer.frozen_ = module
    return module


def _tflite(recognizer, quantize: str, calibration: Optional[Tuple[np.ndarray, np.ndarray]]) -> bytes:
    import tensorflow as tf

    folder = tempfile.mkdtemp(prefix="lite_tf_export_")
    try:
        _save(frozen(recognizer), folder)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=["personalize", "classify"])
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "int8":
            if calibration is None:
                raise ConfigError("--quantize=int8 needs --representative_data (an image folder, one subfolder per "
                                  "class) to calibrate activations.")
            converter.representative_dataset = _representative(recognizer, *calibration)
        return converter.convert()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def export_learner(learner, image_size: int, output: str, format: str = "saved_model", quantize: str = "none",
                   representative: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                   evaluation: Optional[Tuple[np.ndarray, np.ndarray]] = None, max_way: int = DEFAULT_MAX_WAY,
                   max_context: int = DEFAULT_MAX_CONTEXT, chunk_size: Optional[int] = None,
                   extra: Optional[dict] = None) -> dict:
    """Writes ``learner`` to ``output``; returns the metadata written beside it (see ``write``)."""
    recognizer = build_recognizer(learner, image_size, max_way, max_context, chunk_size)
    return write(recognizer, output, format, quantize, representative, evaluation, extra)


def write(recognizer, output: str, format: str = "saved_model", quantize: str = "none",
          representative: Optional[Tuple[np.ndarray, np.ndarray]] = None,
          evaluation: Optional[Tuple[np.ndarray, np.ndarray]] = None, extra: Optional[dict] = None) -> dict:
    """Writes a recogniser as a SavedModel folder or a .tflite file, and its metadata beside it.

    ``representative`` / ``evaluation``: (uint8 images, int labels) from ``read_image_folder``; the
    first calibrates int8, the second measures a quantised file's accuracy against the float one.
    The SavedModel keeps the in-graph input checks; the TFLite converter drops them (runner.py
    checks the same rules in Python).
    """
    if format not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}; got {format!r}.")
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}; got {quantize!r}.")
    if format == "saved_model" and quantize != "none":
        raise ConfigError("--quantize applies to --format=tflite only (a SavedModel stays float32).")
    meta = {"learner": type(recognizer.learner).__name__, "format": format, "quantize": quantize,
            "image_size": recognizer.image_size, "max_way": recognizer.max_way,
            "max_context": recognizer.max_context, "chunk_size": recognizer.chunk_size,
            "state": list(recognizer.state_spec), **(extra or {})}
    from lite_tf.export.runner import metadata_path

    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    if format == "saved_model":
        if os.path.exists(output):
            shutil.rmtree(output) if os.path.isdir(output) else os.remove(output)
        _save(frozen(recognizer), output)
    else:
        _write_bytes(output, _tflite(recognizer, quantize, representative))
        if quantize != "none" and evaluation is not None:
            meta["accuracy"] = _quantization_accuracy(recognizer, output, meta, evaluation)
    atomic.write_json(metadata_path(output), meta, indent=1)
    return meta


def _quantization_accuracy(recognizer, output: str, meta: dict, evaluation) -> dict:
    """Accuracy of the quantised file and of the float model on one task drawn from ``evaluation``."""
    from lite_tf.export import runner

    context, queries = split_task(*evaluation)
    folder = tempfile.mkdtemp(prefix="lite_tf_export_float_")
    try:
        float_path = os.path.join(folder, "float.tflite")
        _write_bytes(float_path, _tflite(recognizer, "none", None))
        results = {}
        for name, path in (("float32", float_path), (meta["quantize"], output)):
            model = runner.TFLiteRecognizer(path, meta)
            state = model.personalize(*context)
            results[name] = float(np.mean(model.predict(queries[0], state) == queries[1]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"float32": results["float32"], "quantized": results[meta["quantize"]],
            "drop": results["float32"] - results[meta["quantize"]], "context_images": int(len(context[1])),
            "query_images": int(len(queries[1]))}


def split_task(images: np.ndarray, labels: np.ndarray):
    """((context images, labels), (query images, labels)): the first half of each class is context."""
    context = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        context[members[:max(1, len(members) // 2)]] = True
    if context.all():
        raise DataError("The evaluation images leave no query image: every class needs at least 2 images.")
    return (images[context], labels[context]), (images[~context], labels[~context])


def read_image_folder(root: str, image_size: int, per_class: int = 40) -> Tuple[np.ndarray, np.ndarray]:
    """(uint8 [N, S, S, 3], int32 [N]) from ``root``: one subfolder per class, images anywhere below it
    (an ORBIT user's folder qualifies), the first ``per_class`` sorted images of each, resized to S."""
    from PIL import Image

    if not os.path.isdir(root):
        raise DataError(f"Image folder {root!r} does not exist.")
    classes = sorted(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name)))
    images, labels = [], []
    for label, name in enumerate(classes):
        paths = sorted(os.path.join(folder, file) for folder, _, files in os.walk(os.path.join(root, name))
                       for file in files if file.lower().endswith(IMAGE_SUFFIXES))[:per_class]
        for path in paths:
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB").resize((image_size, image_size), Image.BILINEAR)))
            labels.append(label)
    if len(classes) < 2 or not images:
        raise DataError(f"Image folder {root!r} needs at least 2 class subfolders holding "
                        f"{'/'.join(IMAGE_SUFFIXES)} images; found {len(classes)} class(es), {len(images)} image(s).")
    return np.stack(images).astype(np.uint8), np.asarray(labels, np.int32)


def export_run(model_dir: Optional[str], output: str, format: str = "saved_model", quantize: str = "none",
               representative_data: Optional[str] = None, evaluation_data: Optional[str] = None,
               checkpoint: str = "best", bindings: Sequence[str] = (), configs: Iterable[str] = (),
               max_way: int = DEFAULT_MAX_WAY, max_context: int = DEFAULT_MAX_CONTEXT) -> dict:
    """Rebuilds a training run (or ``configs`` without one), loads ``checkpoint`` and exports its learner."""
    from lite_tf import experiment

    if model_dir:
        experiment.load_run_config(model_dir, bindings)
    else:
        experiment.parse_gin(list(configs), bindings)
    model, _ = experiment.build(compile=False)
    weights = experiment.load_weights(model, model_dir, checkpoint)
    size = model.image_size
    representative = read_image_folder(representative_data, size) if representative_data else None
    evaluation = read_image_folder(evaluation_data, size) if evaluation_data else representative
    return export_learner(model.learner, size, output, format, quantize, representative, evaluation, max_way,
                          max_context, extra={"weights": os.path.basename(weights) if os.path.exists(weights)
                                              else weights})
