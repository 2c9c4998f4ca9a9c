"""The one result format of every benchmark case: a JSON document of flat rows plus a Markdown
rendering, both written atomically (a crashed run never leaves a file that looks complete).

Document: ``{"schema": SCHEMA, "machine": {...}, "settings": {...}, "rows": [...], "summary": [...]}``.
Every row has ``case``, ``part`` ('step' or 'pipeline'), ``status`` (lite_tf.bench.runner.STATUSES)
and ``error``; rows that finished also have the memory fields of ``lite_tf.memory.PeakMeter``
(host peak above baseline, GPU allocator peak or None), ``device`` and their part's metrics.
"""
from __future__ import annotations

import math
import os
from typing import List

from lite_tf import atomic
from lite_tf.bench.runner import STATUSES
from lite_tf.errors import DataError

SCHEMA = "lite_tf.bench/1"
CASES = ("lite", "learner", "pipeline", "orbit", "training", "gradient", "export")
# (key, header, format) per part: the table's columns, and what a finished row must hold.
COLUMNS = {
    "step": [("learner", "learner", "{}"), ("backbone", "backbone", "{}"), ("support_size", "N", "{}"),
             ("query_size", "queries", "{}"), ("mode", "mode", "{}"), ("h", "h", "{}"),
             ("dtype_policy", "dtype policy", "{}"), ("optimizer", "optimizer", "{}"), ("host_peak_above_baseline_gib", "host peak above baseline (GiB)",
                                                     "{:.2f}"),
             ("gpu_peak_gib", "GPU peak (GiB)", "{:.2f}"), ("first_step_s", "first step (s)", "{:.2f}"),
             ("trace_s", "of it tracing (s)", "{:.2f}"),
             ("step_s", "median step (s)", "{:.2f}"), ("images_per_s", "images/s consumed", "{:.1f}"),
             ("inference_s", "inference N (s)", "{:.2f}"), ("small_step_s", "step on h + queries (s)", "{:.2f}"),
             ("overhead_ratio", "overhead ratio", "{:.3f}")],
    "pipeline": [("pipeline", "pipeline", "{}"), ("sources", "sources", "{}"), ("image_size", "px", "{}"),
                 ("image_dtype", "dtype", "{}"),
                 ("episodes_per_s", "episodes/s", "{:.2f}"), ("images_per_s", "images/s", "{:.0f}"),
                 ("images_per_cpu_s", "images per CPU-second", "{:.0f}"), ("cpu_cores_busy", "cores busy", "{:.2f}"),
                 ("mean_images_per_episode", "images/episode", "{:.0f}"),
                 ("host_peak_above_baseline_gib", "pipeline peak memory (GiB)", "{:.2f}"),
                 ("gpu_peak_gib", "GPU peak (GiB)", "{:.2f}")],
    # personalize_s ({N: seconds}) is spread into one column per N by ``table``
    "export": [("learner", "learner", "{}"), ("backbone", "backbone", "{}"), ("image_size", "px", "{}"),
               ("file_mib", ".tflite (MiB)", "{:.1f}"), ("personalize_s", "personalise (s)", "{}"),
               ("classify_frame_ms", "classify one frame (ms)", "{:.1f}"), ("threads", "threads", "{}"),
               ("host_peak_above_baseline_gib", "interpreter peak (GiB)", "{:.2f}")],
    # The studies (lite_tf/bench/training_study.py, gradient_study.py) render their own summary tables.
    "train": [("config", "configuration", "{}"), ("seed", "seed", "{}"), ("episodes", "episodes", "{}"),
              ("test_accuracy", "test accuracy", "{:.3f}"), ("train_s", "training (s)", "{:.1f}"),
              ("host_peak_above_baseline_gib", "host peak above baseline (GiB)", "{:.2f}"),
              ("gpu_peak_gib", "GPU peak (GiB)", "{:.2f}")],
    "gradient": [("config", "configuration", "{}"), ("support_size", "N", "{}"), ("draws", "K", "{}"),
                 ("bias", "bias", "{:.4f}"), ("relative_variance", "relative variance", "{:.4f}"),
                 ("cosine", "cosine", "{:.4f}"), ("step_s", "step (s)", "{:.4f}"),
                 ("host_peak_above_baseline_gib", "host peak above baseline (GiB)", "{:.2f}"),
                 ("gpu_peak_gib", "GPU peak (GiB)", "{:.2f}")],
}
OPTIONAL = {"gpu_peak_gib", "sources", "pipeline", "backbone", "h", "inference_s", "small_step_s", "overhead_ratio",
            "optimizer", "trace_s"}
REQUIRED = {part: tuple(key for key, _, _ in columns if key not in OPTIONAL) + ("host_baseline_gib", "device")
            for part, columns in COLUMNS.items()}


def peak_gib(row: dict) -> float:
    """The memory a row needed on its device: the GPU allocator's peak there, else host memory."""
    return row["gpu_peak_gib"] if row.get("gpu_peak_gib") is not None else row["host_peak_above_baseline_gib"]


def validate(document) -> None:
    """Raises DataError naming the first row/key that does not follow the schema."""
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        raise DataError(f"benchmark results: expected a dict with schema {SCHEMA!r}.")
    for key, kind in (("machine", dict), ("settings", dict), ("rows", list), ("summary", list)):
        if not isinstance(document.get(key), kind):
            raise DataError(f"benchmark results: {key!r} must be a {kind.__name__}.")
    for index, row in enumerate(document["rows"]):
        where = f"benchmark results row {index}"
        if row.get("case") not in CASES or row.get("part") not in COLUMNS or row.get("status") not in STATUSES:
            raise DataError(f"{where}: case/part/status must be in {CASES}/{tuple(COLUMNS)}/{STATUSES}; got "
                            f"{row.get('case')!r}/{row.get('part')!r}/{row.get('status')!r}.")
        if row["status"] != "ok":
            if not isinstance(row.get("error"), str) or not row["error"]:
                raise DataError(f"{where}: status {row['status']!r} needs an 'error' line.")
            continue
        if "gpu_peak_gib" not in row:
            raise DataError(f"{where} ({row['case']}): 'gpu_peak_gib' must be present (None without a GPU).")
        for key in REQUIRED[row["part"]]:
            value = row.get(key)
            if value is None or (isinstance(value, float) and not math.isfinite(value)):  # NaN/inf are not JSON
                raise DataError(f"{where} ({row['case']}): {key!r} must be present and finite; got {value!r}.")


def _cell(row: dict, key: str, form: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if isinstance(value, list):
        return str(len(value))
    return form.format(value)


def _spread(rows: List[dict], columns: list) -> tuple:
    """Dict-valued cells ({N: seconds}) become one column per key (export: personalisation per N)."""
    spread, flat = [], [dict(row) for row in rows]
    for key, header, form in columns:
        keys = sorted({k for row in rows if isinstance(row.get(key), dict) for k in row[key]}, key=int)
        if not keys:
            spread.append((key, header, form))
            continue
        for k in keys:
            spread.append((f"{key}[{k}]", f"{header} N={k}", "{:.2f}"))
            for row, out in zip(rows, flat):
                out[f"{key}[{k}]"] = (row.get(key) or {}).get(k)
    return flat, spread


def table(rows: List[dict]) -> str:
    """A Markdown table of rows of one part; columns no row fills are left out."""
    rows, columns = _spread(rows, COLUMNS[rows[0]["part"]])
    columns = [column for column in columns if any(row.get(column[0]) is not None for row in rows)]
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " | status |",
             "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        status = "ok" if row["status"] == "ok" else f"{row['status']}: {row['error']}"
        lines.append("| " + " | ".join(_cell(row, key, form) for key, _, form in columns) + f" | {status} |")
    return "\n".join(lines)


def markdown(document: dict) -> str:
    machine = ", ".join(f"{key} {value}" for key, value in document["machine"].items())
    parts = [f"Machine: {machine}. One fresh process per row; memory is the peak above the process's "
             f"memory just before the first step (GPU: TF's allocator peak)."]
    groups: dict = {}
    for row in document["rows"]:
        groups.setdefault((row["case"], row["part"]), []).append(row)
    for (case, part), rows in groups.items():
        parts.append(f"### {case} ({part})\n\n" + table(rows))
    if document["summary"]:
        parts.append("\n".join(f"- {line}" for line in document["summary"]))
    return "\n\n".join(parts) + "\n"


def output_paths(output: str) -> tuple:
    """``bench/lite.json`` or ``bench/lite.md`` or ``bench/lite`` -> (bench/lite.json, bench/lite.md)."""
    stem, extension = os.path.splitext(output)
    stem = stem if extension in (".json", ".md") else output
    return stem + ".json", stem + ".md"


def write(output: str, document: dict) -> tuple:
    """Validates, then writes the JSON and the Markdown beside it; returns both paths."""
    validate(document)
    json_path, markdown_path = output_paths(output)
    atomic.write_json(json_path, document, indent=1)
    atomic.write_text(markdown_path, markdown(document))
    return json_path, markdown_path

