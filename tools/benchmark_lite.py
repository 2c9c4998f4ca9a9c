"""Memory and time of one LITE training step vs full back-propagation, each case in a fresh process.

For every support size N and mode (LITE with each h, and full back-propagation) a worker process
builds the learner, records its resident memory, runs ``--repeats`` training steps on a synthetic
episode (5 classes, N support images, one batch of ``--query`` queries) and reports the peak
resident memory above that baseline and the median step time. LITE workers also time, in the same
process, an inference pass over the N support images and a full training step on h support images
plus the queries alone: the LITE overhead ratio is step time / (inference + small step).

Example (the README table):
  python -m tools.benchmark_lite --output=bench_out/lite.md
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_string("learner", "protonets", "Registered learner name.")
    flags.DEFINE_string("backbone", "efficientnet_b0", "Registered backbone name (passed as learner backbone=).")
    flags.DEFINE_integer("image_size", 224, "Image size in pixels.")
    flags.DEFINE_list("support_sizes", ["50", "100", "200", "400", "1000"], "Support set sizes N.")
    flags.DEFINE_list("h", ["8", "40"], "LITE subset sizes.")
    flags.DEFINE_integer("chunk_size", 40, "No-gradient chunk size.")
    flags.DEFINE_integer("query", 16, "Query images (one batch).")
    flags.DEFINE_integer("way", 5, "Classes per episode.")
    flags.DEFINE_integer("repeats", 3, "Timed steps per case (after one warm-up step).")
    flags.DEFINE_bool("full", True, "Also measure full back-propagation.")
    flags.DEFINE_float("memory_limit_gb", 20.0, "Skip full back-propagation where it is predicted to exceed this.")
    flags.DEFINE_bool("run_eagerly", False, "Run the step eagerly instead of as a tf.function.")
    flags.DEFINE_string("output", None, "Write the Markdown table here (and the raw results as .json beside it).")
    flags.DEFINE_string("worker", None, "Internal: run one case given as JSON and print its result.")


FLAGS = flags.FLAGS

GIB = 1024 ** 3


def _peak_rss_reset() -> None:
    """Resets the kernel's high-water mark of resident memory for this process (Linux)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _rss_and_peak() -> tuple:
    values = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _ = line.split()
                values[key[:-1]] = int(amount) * 1024
    return values["VmRSS"], values["VmHWM"]


def run_case(case: dict) -> dict:
    """One case in this (fresh) process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from lite_tf import EpisodicModel, LiteConfig, episode_signature, registry
    from lite_tf.lite import chunked_map

    keras.utils.set_random_seed(0)
    size, n, way, query = case["image_size"], case["n"], case["way"], case["query"]
    rng = np.random.default_rng(0)

    def episode(support_count):
        labels = np.arange(support_count) % way
        return {
            "support_images": tf.constant(rng.uniform(-1, 1, (support_count, size, size, 3)), tf.float32),
            "support_labels": tf.constant(labels, tf.int32),
            "query_images": tf.constant(rng.uniform(-1, 1, (query, size, size, 3)), tf.float32),
            "query_labels": tf.constant(np.arange(query) % way, tf.int32),
            "way": tf.constant(way, tf.int32),
        }

    def build(config):
        learner = registry.get_learner(case["learner"])(backbone=case["backbone"])
        model = EpisodicModel(learner, size, lite=config, seed=0)
        model.compile(keras.optimizers.Adam(1e-4), run_eagerly=case["run_eagerly"])
        return model

    def timed(fn, repeats):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = fn()
            tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def compiled(fn):
        if case["run_eagerly"]:
            return fn
        return tf.function(fn, input_signature=[episode_signature(size)], reduce_retracing=True)

    if case["mode"] == "full":
        config = LiteConfig(mode="full", chunk_size=case["chunk_size"])
    else:
        config = LiteConfig(mode="lite", h=case["h"], chunk_size=case["chunk_size"])
    model = build(config)
    data = episode(n)
    step = compiled(model.train_step)
    rss_before, _ = _rss_and_peak()
    _peak_rss_reset()
    step(data)  # warm-up: traces, allocates
    step_time = timed(lambda: step(data), case["repeats"])
    _, peak = _rss_and_peak()
    result = {**case, "baseline_gib": rss_before / GIB, "peak_above_baseline_gib": (peak - rss_before) / GIB,
              "step_s": step_time}
    if case["mode"] == "lite":
        features = model.learner.features
        inference = compiled(lambda ep: chunked_map(lambda x: features(x), ep["support_images"], case["chunk_size"]))
        inference(data)
        result["inference_s"] = timed(lambda: inference(data), case["repeats"])
        small_model = build(LiteConfig(mode="full"))
        small_model.set_weights(model.get_weights())
        small_step = compiled(small_model.train_step)
        small_data = episode(min(max(case["h"], way), n))  # every class needs a support image
        small_step(small_data)
        result["small_step_s"] = timed(lambda: small_step(small_data), case["repeats"])
        result["overhead_ratio"] = step_time / (result["inference_s"] + result["small_step_s"])
    return result


def _spawn(case: dict) -> dict:
    command = [sys.executable, "-m", "tools.benchmark_lite", f"--worker={json.dumps(case)}"]
    started = time.time()
    process = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode < 0:
        return {**case, "error": f"killed by signal {-process.returncode} (out of memory on this machine?)"}
    if process.returncode != 0 or not lines:
        errors = [line for line in (process.stderr or "").splitlines() if "Error" in line]
        return {**case, "error": f"worker exited with {process.returncode}: {(errors or ['no error line'])[-1]}"}
    result = json.loads(lines[-1][len("RESULT "):])
    result["wall_s"] = time.time() - started
    return result


def _table(results: list) -> str:
    rows = ["| N | mode | h | peak memory above baseline (GiB) | median step (s) | inference N (s) | "
            "step on h + queries (s) | overhead ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "skipped" in r:
            rows.append(f"| {r['n']} | {r['mode']} | - | skipped: {r['skipped']} | | | | |")
            continue
        if "error" in r:
            rows.append(f"| {r['n']} | {r['mode']} | {r.get('h', '-')} | error: {r['error']} | | | | |")
            continue
        extra = (f"{r['inference_s']:.2f} | {r['small_step_s']:.2f} | {r['overhead_ratio']:.3f}"
                 if r["mode"] == "lite" else "- | - | -")
        rows.append(f"| {r['n']} | {r['mode']} | {r.get('h', '-') if r['mode'] == 'lite' else 'all'} | "
                    f"{r['peak_above_baseline_gib']:.2f} | {r['step_s']:.2f} | {extra} |")
    return "\n".join(rows)


def _summary(results: list) -> str:
    ok = [r for r in results if "peak_above_baseline_gib" in r]
    lines = []
    for h in sorted({r["h"] for r in ok if r["mode"] == "lite"}):
        lite = {r["n"]: r for r in ok if r["mode"] == "lite" and r["h"] == h}
        if 100 in lite and max(lite) > 100:
            top = max(lite)
            ratio = lite[top]["peak_above_baseline_gib"] / lite[100]["peak_above_baseline_gib"]
            lines.append(f"- LITE h={h}: peak memory at N={top} is {ratio:.2f}x its peak at N=100 (target <= 1.3x).")
        worst = max((r["overhead_ratio"] for r in lite.values()), default=None)
        if worst is not None:
            lines.append(f"- LITE h={h}: largest overhead ratio {worst:.3f} (target <= 1.15).")
    full = {r["n"]: r for r in ok if r["mode"] == "full"}
    smallest_h = min((r["h"] for r in ok if r["mode"] == "lite"), default=None)
    lite8 = {r["n"]: r for r in ok if r["mode"] == "lite" and r["h"] == smallest_h}
    if 100 in full and 100 in lite8:
        ratio = full[100]["peak_above_baseline_gib"] / lite8[100]["peak_above_baseline_gib"]
        lines.append(f"- Full back-propagation at N=100 needs {ratio:.2f}x the memory of LITE h={lite8[100]['h']} "
                     f"(target >= 3x).")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.worker:
        print("RESULT " + json.dumps(run_case(json.loads(FLAGS.worker))), flush=True)
        return
    base = {"learner": FLAGS.learner, "backbone": FLAGS.backbone, "image_size": FLAGS.image_size,
            "chunk_size": FLAGS.chunk_size, "query": FLAGS.query, "way": FLAGS.way,
            "repeats": FLAGS.repeats, "run_eagerly": FLAGS.run_eagerly}
    results = []
    full_per_image = None  # GiB per support image, from the largest full case so far
    for n in sorted(int(value) for value in FLAGS.support_sizes):
        for h in (int(value) for value in FLAGS.h):
            results.append(_spawn({**base, "mode": "lite", "h": h, "n": n}))
            print(json.dumps(results[-1]), flush=True)
        if not FLAGS.full:
            continue
        if full_per_image is not None and full_per_image * (n + FLAGS.query) > FLAGS.memory_limit_gb:
            predicted = full_per_image * (n + FLAGS.query)
            results.append({**base, "mode": "full", "n": n,
                            "skipped": f"predicted {predicted:.1f} GiB > {FLAGS.memory_limit_gb:g} GiB limit"})
        else:
            results.append(_spawn({**base, "mode": "full", "n": n}))
            if "peak_above_baseline_gib" in results[-1]:
                full_per_image = results[-1]["peak_above_baseline_gib"] / (n + FLAGS.query)
        print(json.dumps(results[-1]), flush=True)
    import platform

    import psutil

    machine = (f"{platform.machine()}, {psutil.cpu_count()} cores, "
               f"{psutil.virtual_memory().total / GIB:.0f} GiB RAM, {platform.python_version()}")
    report = (f"{FLAGS.learner} + {FLAGS.backbone}, {FLAGS.image_size} px, {FLAGS.way}-way, "
              f"{FLAGS.query} queries, chunk {FLAGS.chunk_size}, {'eager' if FLAGS.run_eagerly else 'graph'} mode, "
              f"median of {FLAGS.repeats} steps after a warm-up, one fresh process per row. Machine: {machine}.\n\n"
              + _table(results) + "\n\n" + _summary(results) + "\n")
    print(report)
    if FLAGS.output:
        from lite_tf import atomic

        atomic.write_text(FLAGS.output, report)
        atomic.write_json(os.path.splitext(FLAGS.output)[0] + ".json", results, indent=1)


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
