"""The benchmark harness: settings -> planned measurements -> one fresh process each -> one document.

Each case builds specs (one per row; ``target`` names the child function that measures it), and
the run loop hands each to ``runner.run_in_child``. Cases: ``lite`` (LITE vs full back-propagation:
memory and time against N, with LITE's overhead ratio), ``learner`` (the same step measurement per learner, without the overhead timing),
``pipeline`` (images/s of the Meta-Dataset pipeline on any records folder, or on generated records),
``orbit`` (the ORBIT task pipeline, then steps on ORBIT-sized tasks), ``export`` (a personalised
recogniser on the device: .tflite size, personalisation and per-frame latency in the LiteRT
interpreter, peak memory; lite_tf/bench/export.py). Every setting left as None
takes its case's default (``CASE_DEFAULTS``), so one set of flag names serves every case.
"""
from __future__ import annotations

import dataclasses
import datetime
import itertools
import os
import platform
import tempfile
import time
from typing import Callable, List, Optional

from lite_tf.bench import results, runner, targets
from lite_tf.errors import ConfigError

STEP_TARGET = "lite_tf.bench.step:measure"
PIPELINE_TARGET = "lite_tf.bench.pipeline:measure"
ORBIT_PIPELINE_TARGET = "lite_tf.bench.pipeline:measure_orbit"
REFERENCE_TARGET = "lite_tf.bench.reference:measure"
EXPORT_TARGET = "lite_tf.bench.export:measure"
DECODED_CACHE = ("on", "off")
DTYPE_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
# step rows' optimizer: the fused Adam the toolkit uses (lite_tf/optimizers.py) or Keras's own, to compare
OPTIMIZERS = ("adam", "keras_adam")

_STEP_COMMON = {"image_size": 224, "way": 5, "chunk_size": 40, "memory_limit_gb": None}
CASE_DEFAULTS = {
    "lite": {**_STEP_COMMON, "learner": ["protonets"], "backbone": "efficientnet_b0",
             "support_sizes": [50, 100, 200, 400, 1000], "query_size": 16, "h": [8, 40], "image_dtype": "float32",
             "steps": 3, "memory_limit_gb": 20.0},
    "learner": {**_STEP_COMMON, "learner": ["simple_cnaps"], "backbone": None, "support_sizes": [100, 500],
                "query_size": 40, "h": [40], "image_dtype": "uint8", "steps": 3},
    "pipeline": {"image_size": 224, "image_dtype": "float32", "episodes": 30},
    "orbit": {**_STEP_COMMON, "learner": ["protonets"], "backbone": "efficientnet_b0", "support_sizes": [200],
              "query_size": 40, "h": [16], "image_dtype": "uint8", "steps": 2, "episodes": 20},
    # backbone None: each learner's paper backbone (lite_tf/bench/export.py BACKBONES); threads None: all cores
    "export": {"learner": ["protonets", "simple_cnaps", "cnaps", "finetuner"], "backbone": None,
               "image_sizes": [84, 224], "support_sizes": [50, 200], "way": 5, "steps": 2, "threads": None},
}


@dataclasses.dataclass
class Settings:
    """What to measure. None means: the case's default (CASE_DEFAULTS)."""
    case: List[str]
    learner: Optional[List[str]] = None
    backbone: Optional[str] = None
    support_sizes: Optional[List[int]] = None
    query_size: Optional[int] = None
    way: Optional[int] = None
    modes: List[str] = dataclasses.field(default_factory=lambda: ["lite", "full"])
    h: Optional[List[int]] = None
    chunk_size: Optional[int] = None
    image_size: Optional[int] = None
    image_sizes: Optional[List[int]] = None
    threads: Optional[int] = None
    image_dtype: Optional[str] = None
    steps: Optional[int] = None
    run_eagerly: bool = False
    dtype_policy: List[str] = dataclasses.field(default_factory=lambda: ["float32"])
    optimizer: List[str] = dataclasses.field(default_factory=lambda: ["adam"])
    gin_files: List[str] = dataclasses.field(default_factory=list)
    gin_bindings: List[str] = dataclasses.field(default_factory=list)
    memory_limit_gb: Optional[float] = None
    records_dir: Optional[str] = None
    decoded_cache: List[str] = dataclasses.field(default_factory=lambda: ["on"])
    reference_dir: Optional[str] = None
    reference_decoders: List[str] = dataclasses.field(default_factory=lambda: ["standard", "plain"])
    orbit_dir: Optional[str] = None
    work_dir: Optional[str] = None
    split: str = "TRAIN"
    sources: List[int] = dataclasses.field(default_factory=lambda: [1, 3])
    episodes: Optional[int] = None
    warmup: int = 3
    classes: int = 30
    images_per_class: int = 40
    record_size: int = 256
    frames_per_video: int = 40
    subsample_factor: int = 1
    seed: int = 0
    case_timeout_s: Optional[float] = None
    time_budget_s: Optional[float] = None

    def get(self, case: str, name: str):
        value = getattr(self, name)
        return CASE_DEFAULTS[case].get(name) if value is None else value


def validate(settings: Settings) -> None:
    """One-line ConfigErrors for settings that cannot work, before any process starts."""
    unknown = [case for case in settings.case if case not in CASE_DEFAULTS]
    if unknown or not settings.case:
        raise ConfigError(f"Unknown benchmark case {', '.join(unknown) or '(none)'}; expected one or more of "
                          f"{', '.join(CASE_DEFAULTS)}.")
    bad = [policy for policy in settings.dtype_policy if policy not in DTYPE_POLICIES]
    if bad:
        raise ConfigError(f"Unknown --dtype_policy {', '.join(bad)}; expected one or more of "
                          f"{', '.join(DTYPE_POLICIES)}.")
    bad = [name for name in settings.optimizer if name not in OPTIMIZERS]
    if bad or not settings.optimizer:
        raise ConfigError(f"Unknown --optimizer {', '.join(bad) or '(none)'}; expected one or more of "
                          f"{', '.join(OPTIMIZERS)}.")
    if settings.image_dtype not in (None, "uint8", "float32"):
        raise ConfigError(f"--image_dtype must be uint8 or float32; got {settings.image_dtype!r}.")
    for name in ("support_sizes", "h", "sources"):
        values = getattr(settings, name) or []
        if any(int(value) < 1 for value in values):
            raise ConfigError(f"--{name} must be positive integers; got {values}.")
    bad = [value for value in settings.decoded_cache if value not in DECODED_CACHE] or (
        [] if settings.decoded_cache else ["(none)"])
    if bad:
        raise ConfigError(f"--decoded_cache must be one or more of {', '.join(DECODED_CACHE)}; got {', '.join(bad)}.")
    if settings.reference_dir is not None:
        from lite_tf.bench import reference

        reference.check_reference_dir(settings.reference_dir)
        bad = [value for value in settings.reference_decoders if value not in reference.DECODERS]
        if bad or not settings.reference_decoders:
            raise ConfigError(f"--reference_decoders must be one or more of {', '.join(reference.DECODERS)}; "
                              f"got {', '.join(bad) or '(none)'}.")
    for path in settings.gin_files:
        if not os.path.isfile(path):
            raise ConfigError(f"--gin_file {path!r} does not exist.")
    if any(case in settings.case for case in ("lite", "learner", "orbit")):
        from lite_tf.lite import LiteConfig  # whatever modes LiteConfig accepts ('exact' once it exists)

        for mode in settings.modes:
            try:
                LiteConfig(mode=mode)
            except ValueError as error:
                raise ConfigError(f"--modes: {error}") from None


def _step_specs(settings: Settings, case: str) -> list:
    """One spec per (N, learner, mode[, h], dtype policy); only 'lite' takes several h.

    N is the outer loop: a run cut short by its time budget still holds complete comparisons at
    the smaller sizes, and full back-propagation's memory at larger N is predicted from smaller N.
    """
    get = lambda name: settings.get(case, name)  # noqa: E731
    specs = []
    for n in sorted(int(value) for value in get("support_sizes")):
        for learner in get("learner"):
            for mode in settings.modes:
                for h in ([int(value) for value in get("h")] if mode == "lite" else [None]):
                    for policy, optimizer in itertools.product(settings.dtype_policy, settings.optimizer):
                        specs.append({
                            "case": case, "part": "step", "target": STEP_TARGET, "learner": learner,
                            "backbone": get("backbone"),
                            "mode": mode, "h": h, "support_size": n, "query_size": get("query_size"),
                            "way": get("way"), "chunk_size": get("chunk_size"), "image_size": get("image_size"),
                            "image_dtype": get("image_dtype"), "steps": get("steps"), "dtype_policy": policy,
                            "optimizer": optimizer,
                            "run_eagerly": settings.run_eagerly, "overhead": case == "lite",
                            "gin_files": [os.path.abspath(path) for path in settings.gin_files],
                            "gin_bindings": list(settings.gin_bindings)})
    return specs


def _pipeline_specs(settings: Settings, work_dir: str, log: Callable) -> list:
    from lite_tf.bench import pipeline

    if settings.records_dir:
        folders = pipeline.record_folders(settings.records_dir)
        if max(settings.sources) > len(folders):
            raise ConfigError(f"--sources asks for {max(settings.sources)} sources but --records_dir "
                              f"{settings.records_dir!r} holds {len(folders)} dataset folder(s).")
    else:
        started = time.perf_counter()
        folders = pipeline.generate_records(os.path.join(work_dir, "records"), max(settings.sources),
                                            settings.classes, settings.images_per_class, settings.record_size)
        log(f"records ready in {os.path.dirname(folders[0])} ({time.perf_counter() - started:.1f} s)")
    common = {"case": "pipeline", "part": "pipeline", "split": settings.split,
              "image_size": settings.get("pipeline", "image_size"), "episodes": settings.get("pipeline", "episodes"),
              "warmup": settings.warmup, "seed": settings.seed}
    specs = []
    for count in settings.sources:
        for cache in settings.decoded_cache:
            specs.append({**common, "target": PIPELINE_TARGET, "sources": count, "folders": folders[:count],
                          "pipeline": "lite_tf" if cache == "on" else "lite_tf, no decoded cache",
                          "decoded_cache": cache == "on", "image_dtype": settings.get("pipeline", "image_dtype")})
        if settings.reference_dir is not None:
            from lite_tf.bench import reference

            for decoders in settings.reference_decoders:
                specs.append({**common, "target": REFERENCE_TARGET, "sources": count, "folders": folders[:count],
                              "pipeline": f"reference ({decoders} decoders)", "reference_decoders": decoders,
                              "reference_dir": reference.check_reference_dir(settings.reference_dir),
                              "image_dtype": "float32"})
    return specs


def _orbit_specs(settings: Settings, work_dir: str, log: Callable) -> list:
    from lite_tf.bench import pipeline

    size = settings.get("orbit", "image_size")
    root = settings.orbit_dir
    if root is None:
        started = time.perf_counter()
        root = pipeline.generate_orbit(os.path.join(work_dir, f"orbit{size}"), size, settings.frames_per_video)
        log(f"ORBIT folder ready in {root} ({time.perf_counter() - started:.1f} s)")
    elif not os.path.isdir(os.path.join(root, "train")):
        raise ConfigError(f"--orbit_dir {root!r} has no train/ folder.")
    task_pipeline = {"case": "orbit", "part": "pipeline", "pipeline": "orbit tasks", "target": ORBIT_PIPELINE_TARGET,
                     "orbit_dir": root,
                     "image_size": size,
                     "image_dtype": settings.get("orbit", "image_dtype"), "episodes": settings.get("orbit", "episodes"),
                     "subsample_factor": settings.subsample_factor}
    return [task_pipeline] + _step_specs(settings, "orbit")


def _export_specs(settings: Settings) -> list:
    """One spec per (image size, learner): the .tflite file, then its interpreter costs."""
    from lite_tf.bench.export import backbone_of

    get = lambda name: settings.get("export", name)  # noqa: E731
    sizes = settings.image_sizes or ([settings.image_size] if settings.image_size else get("image_sizes"))
    return [{"case": "export", "part": "export", "target": EXPORT_TARGET, "learner": learner,
             "backbone": backbone_of(learner, get("backbone")), "image_size": int(size),
             "support_sizes": sorted(int(n) for n in get("support_sizes")), "way": get("way"), "steps": get("steps"),
             "threads": get("threads") or os.cpu_count()}
            for size in sizes for learner in get("learner")]


def _skip_reason(spec: dict, done: list, settings: Settings, deadline: Optional[float]) -> Optional[str]:
    if deadline is not None and time.monotonic() >= deadline:
        return f"time budget of {settings.time_budget_s:g} s spent"
    limit = settings.get(spec["case"], "memory_limit_gb") if spec["part"] == "step" else None
    if limit is None or spec["mode"] != "full":
        return None
    same = [row for row in done if row["status"] == "ok" and row["part"] == "step" and row["mode"] == "full"
            and all(row[key] == spec[key] for key in ("case", "learner", "dtype_policy", "query_size"))]
    if not same:
        return None
    largest = max(same, key=lambda row: row["support_size"])
    per_image = results.peak_gib(largest) / (largest["support_size"] + largest["query_size"])
    predicted = per_image * (spec["support_size"] + spec["query_size"])
    return f"predicted {predicted:.1f} GiB > {limit:g} GiB limit" if predicted > limit else None


def machine() -> dict:
    import psutil

    return {"cpu": platform.machine(), "cores": os.cpu_count(),
            "memory": f"{psutil.virtual_memory().total / 2 ** 30:.0f} GiB", "python": platform.python_version()}


def run(settings: Settings, log: Callable = print) -> dict:
    """Measures every planned row, each in a fresh process; returns the results document."""
    validate(settings)
    deadline = None if settings.time_budget_s is None else time.monotonic() + settings.time_budget_s
    temporary = None
    work_dir = settings.work_dir
    if work_dir is None and any(case in settings.case for case in ("pipeline", "orbit")):
        temporary = tempfile.TemporaryDirectory(prefix="lite_tf_bench_data_")
        work_dir = temporary.name
    rows: list = []
    try:
        specs = []
        for case in settings.case:
            if case == "pipeline":
                specs += _pipeline_specs(settings, work_dir, log)
            elif case == "orbit":
                specs += _orbit_specs(settings, work_dir, log)
            elif case == "export":
                specs += _export_specs(settings)
            else:
                specs += _step_specs(settings, case)
        for spec in specs:
            reason = _skip_reason(spec, rows, settings, deadline)
            if reason is not None:
                rows.append({**spec, "status": "skipped", "error": reason})
            else:
                timeout = settings.case_timeout_s
                if deadline is not None:
                    timeout = min(timeout or float("inf"), max(deadline - time.monotonic(), 1.0))
                rows.append(runner.run_in_child(spec["target"], spec, timeout))
            log(describe(rows[-1]))
    finally:
        if temporary is not None:
            temporary.cleanup()
    for row in rows:
        row.pop("folders", None)  # temporary paths; 'sources' keeps the count
    return {"schema": results.SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "machine": machine(), "settings": dataclasses.asdict(settings), "rows": rows,
            "summary": targets.summary(rows)}


def describe(row: dict) -> str:
    """One progress line per row."""
    if row["part"] == "export":
        what = f"export: {row['learner']} {row['backbone']} {row['image_size']} px"
        if row["status"] == "ok":
            times = ", ".join(f"N={n} {s:.2f} s" for n, s in row["personalize_s"].items())
            return (f"{what}: {row['file_mib']:.1f} MiB, personalize {times}, classify "
                    f"{row['classify_frame_ms']:.1f} ms/frame ({row['threads']} threads), "
                    f"peak {row['host_peak_above_baseline_gib']:.2f} GiB")
        return f"{what}: {row['status']}: {row['error']}"
    if row["part"] == "step":
        what = (f"{row['case']}: {row['learner']} {row['mode']}{'' if row['h'] is None else ' h=%d' % row['h']} "
                f"N={row['support_size']} {row['dtype_policy']}"
                f"{'' if row.get('optimizer', 'adam') == 'adam' else ' ' + row['optimizer']}")
        if row["status"] == "ok":
            gpu = "" if row["gpu_peak_gib"] is None else f", GPU peak {row['gpu_peak_gib']:.2f} GiB"
            return (f"{what}: host peak {row['host_peak_above_baseline_gib']:.2f} GiB above baseline{gpu}, "
                    f"median step {row['step_s']:.2f} s (first {row['first_step_s']:.1f} s"
                    f"{'' if row.get('trace_s') is None else ', of it tracing %.1f s' % row['trace_s']})")
    else:
        what = (f"{row['pipeline']} ({row['sources']} source(s), {row['image_size']} px, {row['image_dtype']})"
                if row["case"] == "pipeline"
                else f"orbit task pipeline ({row['image_size']} px)")
        if row["status"] == "ok":
            return (f"{what}: {row['episodes_per_s']:.2f} episodes/s, {row['images_per_s']:.0f} images/s, "
                    f"{row['images_per_cpu_s']:.0f} per CPU-second, peak {row['host_peak_above_baseline_gib']:.2f} GiB")
    return f"{what}: {row['status']}: {row['error']}"
