"""Child side of the step cases (lite, learner, orbit): memory and time of training steps.

One process builds one model (learner, backbone, LITE mode, dtype policy) and one synthetic episode
(N support, M query images), runs a warm-up step (which traces) and ``steps`` timed steps, and
reports the peak memory over all of them above the level just before the first (host resident,
and the GPU allocator's peak on a GPU) and the median timed step. With ``overhead`` a LITE row also
times, in the same process, an inference pass over the N support images and a full step on h
support images plus the queries: LITE's overhead ratio is its step / (inference + small step).
"""
from __future__ import annotations

import statistics
import time

from lite_tf.bench.episodes import synthetic_episode


def _configure(spec: dict) -> None:
    """Gin files/bindings, the Keras dtype policy and the seed, before anything is built."""
    import gin
    import keras

    from lite_tf import model as _  # noqa: F401  every configurable registered before gin locks
    from lite_tf import registry, runtime

    registry.load_plugins()
    gin.parse_config_files_and_bindings(spec["gin_files"], spec["gin_bindings"])
    runtime.apply()
    keras.config.set_dtype_policy(spec["dtype_policy"])
    keras.utils.set_random_seed(0)


def _model(spec: dict, lite):
    import keras

    from lite_tf import EpisodicModel, optimizers, registry

    kwargs = {"backbone": spec["backbone"]} if spec["backbone"] else {}
    learner = registry.get_learner(spec["learner"])(**kwargs)
    model = EpisodicModel(learner, spec["image_size"], lite=lite, seed=0)
    optimizer = keras.optimizers.Adam if spec.get("optimizer") == "keras_adam" else optimizers.Adam
    model.compile(optimizer(1e-4), run_eagerly=spec["run_eagerly"])
    return model


def _timed(fn, repeats: int) -> tuple:
    """(first call's seconds, median of the next ``repeats`` calls' seconds), outputs fetched."""
    import tensorflow as tf

    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn())
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:] or times)


def measure(spec: dict) -> dict:
    import tensorflow as tf

    from lite_tf import LiteConfig, episode_signature, memory
    from lite_tf.lite import chunked_map

    _configure(spec)
    size, n, query, way = spec["image_size"], spec["support_size"], spec["query_size"], spec["way"]
    signature = episode_signature(size, getattr(tf, spec["image_dtype"]))

    def episode(support_count):
        arrays = synthetic_episode(way, support_count, query, size, image_dtype=spec["image_dtype"], seed=0)
        return {key: tf.constant(value) for key, value in arrays.items()}

    def compiled(fn):
        return fn if spec["run_eagerly"] else tf.function(fn, input_signature=[signature], reduce_retracing=True)

    extra = {"h": spec["h"]} if spec["h"] is not None else {}
    model = _model(spec, LiteConfig(mode=spec["mode"], chunk_size=spec["chunk_size"], **extra))
    data = episode(n)
    step = compiled(model.train_step)
    meter = memory.PeakMeter()
    trace = None
    if not spec["run_eagerly"]:  # the first step's split: tracing, then the first call (Grappler, kernels)
        start = time.perf_counter()
        step.get_concrete_function(signature)
        trace = time.perf_counter() - start
    first, median = _timed(lambda: step(data), spec["steps"])
    row = {**meter.read(), "first_step_s": first + (trace or 0.0), "trace_s": trace, "step_s": median,
           "images_per_s": (n + query) / median,
           # the backbone the learner built (its own default or gin's when --backbone is unset)
           "backbone": spec["backbone"] or getattr(getattr(model.learner, "backbone", None), "name", None)}
    if spec["overhead"] and spec["mode"] == "lite":
        row.update(_overhead(spec, model, data, episode, compiled, median, chunked_map))
    return row


def _overhead(spec, model, data, episode, compiled, step_s, chunked_map) -> dict:
    """LITE step time / (inference over N + full step on h support and the queries)."""
    import inspect

    from lite_tf import LiteConfig

    features = getattr(model.learner, "features", None)
    if features is None or len(inspect.signature(features).parameters) != 2:  # (images, training)
        return {"overhead_note": f"{spec['learner']} has no task-independent features(images); not measured"}
    inference = compiled(lambda ep: chunked_map(lambda x: features(x), ep["support_images"], spec["chunk_size"]))
    _, inference_s = _timed(lambda: inference(data), spec["steps"])
    small_model = _model(spec, LiteConfig(mode="full", chunk_size=spec["chunk_size"]))
    small_model.set_weights(model.get_weights())
    small_step = compiled(small_model.train_step)
    small_data = episode(min(max(spec["h"], spec["way"]), spec["support_size"]))  # every class needs one
    _, small_s = _timed(lambda: small_step(small_data), spec["steps"])
    return {"inference_s": inference_s, "small_step_s": small_s, "overhead_ratio": step_s / (inference_s + small_s)}
