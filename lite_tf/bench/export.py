"""Child side of the ``export`` case: what a personalised recogniser costs on the device.

``measure`` (one fresh process per learner, backbone and image size) builds the learner with
untrained weights (the cost does not depend on their values), writes the float32 .tflite file,
then runs ``interpreter`` in a second fresh process, which only loads the file in the LiteRT
interpreter (``num_threads`` stated) and times ``personalize`` on N context frames (one warm-up
call, then the median of ``steps``) for each N, and ``classify`` on one frame (median of 20), with
its peak resident memory above the level before the interpreter was created.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np

# The backbones the papers pair with each learner (LITE / ORBIT, EfficientNet-B0 at 84 and 224 px).
BACKBONES = {"protonets": "efficientnet_b0", "finetuner": "efficientnet_b0",
             "simple_cnaps": "efficientnet_b0_film", "cnaps": "efficientnet_b0_film"}
CLASSIFY_REPEATS = 20


def backbone_of(learner: str, backbone):
    return backbone or BACKBONES.get(learner)


def measure(spec: dict) -> dict:
    import keras

    from lite_tf import registry
    from lite_tf.bench.runner import run_in_child
    from lite_tf.export import export_learner

    registry.load_plugins()
    keras.utils.set_random_seed(0)
    kwargs = {"backbone": spec["backbone"]} if spec["backbone"] else {}
    learner = registry.get_learner(spec["learner"])(**kwargs)
    size = spec["image_size"]
    with tempfile.TemporaryDirectory(prefix="lite_tf_bench_export_") as folder:
        path = os.path.join(folder, "recognizer.tflite")
        start = time.perf_counter()
        export_learner(learner, size, path, "tflite", max_way=spec["way"], max_context=max(spec["support_sizes"]))
        export_s = time.perf_counter() - start
        file_mib = os.path.getsize(path) / 2 ** 20
        row = run_in_child("lite_tf.bench.export:interpreter", {**spec, "path": path})
    if row["status"] != "ok":
        raise RuntimeError(f"interpreter process: {row['status']}: {row['error']}")
    keep = ("host_baseline_gib", "host_peak_above_baseline_gib", "gpu_peak_gib", "personalize_s", "classify_frame_ms",
            "first_personalize_s", "interpreter", "threads")
    return {"export_s": export_s, "file_mib": file_mib, **{key: row[key] for key in keep}}


def _median_time(fn, repeats: int) -> tuple:
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def interpreter(spec: dict) -> dict:
    from lite_tf import memory
    from lite_tf.export import runner

    meter = memory.PeakMeter()
    model = runner.TFLiteRecognizer(spec["path"], runner.read_metadata(spec["path"]), num_threads=spec["threads"])
    rng = np.random.default_rng(0)
    size, way = spec["image_size"], spec["way"]
    personalize, first, state = {}, {}, None
    for count in sorted(spec["support_sizes"]):
        images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
        labels = (np.arange(count) % way).astype(np.int32)
        holder = {}
        first[str(count)], personalize[str(count)] = _median_time(
            lambda: holder.update(state=model.personalize(images, labels)), spec["steps"])
        state = holder["state"]
    frame = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    _, classify = _median_time(lambda: model.classify(frame, state), CLASSIFY_REPEATS)
    return {**meter.read(), "personalize_s": personalize, "first_personalize_s": first, "classify_frame_ms": classify * 1000,
            "interpreter": type(model.interpreter).__module__, "threads": spec["threads"]}
