"""Benchmark the Meta-Dataset episode pipeline: episodes/s, images/s and peak memory.

Makes its own records (``--classes`` x ``--images_per_class`` random-ish ``--record_size`` px JPEGs per
source) in a temporary folder, so it runs offline anywhere; then runs every case (number of sources)
in a fresh Python process and prints one line per case (and ``--json_out`` if given).

Full run (the figures in the report):
  python -m tools.benchmark_pipeline --sources=1,3 --image_size=224 --episodes=30
On a shared machine wall-clock rates depend on the other load; images per CPU-second (user + system
time of the worker) does much less, and times the number of free cores bounds the rate.
Memory is the peak resident memory of the worker process minus its memory right before the
pipeline was built (TensorFlow itself excluded).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from lite_tf import memory

FLAGS = flags.FLAGS
def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_list("sources", ["1", "3"], "Numbers of sources to benchmark, one fresh process each.")
    flags.DEFINE_integer("image_size", 224, "Output image size in pixels.")
    flags.DEFINE_integer("episodes", 30, "Episodes timed per case (after the warm-up).")
    flags.DEFINE_integer("warmup", 3, "Episodes drawn before timing starts.")
    flags.DEFINE_integer("classes", 30, "Classes per source (all in TRAIN).")
    flags.DEFINE_integer("images_per_class", 40, "Images per class.")
    flags.DEFINE_integer("record_size", 256, "Side of the JPEGs stored in the records.")
    flags.DEFINE_enum("image_dtype", "float32", ["float32", "uint8"], "Pipeline output dtype.")
    flags.DEFINE_string("records_dir", None, "Reuse/keep records here instead of a temporary folder.")
    flags.DEFINE_string("json_out", None, "Also write the results to this JSON file.")
    flags.DEFINE_integer("seed", 0, "Episode seed.")
    flags.DEFINE_string("worker", None, "Internal: run one case on these comma-separated dataset folders.")





def make_records(root: str) -> list:
    """One flat dataset per source with ``--classes`` train classes; reuses complete folders."""
    from lite_tf.data.synthetic import fake

    most = max(int(n) for n in FLAGS.sources)
    folders = []
    for i in range(most):
        folder = os.path.join(root, f"source_{i}")
        if not os.path.exists(os.path.join(folder, "dataset_spec.json")):
            spec = fake.flat_toy_spec(f"source_{i}", folder, classes=(FLAGS.classes, 0, 0),
                                      images=FLAGS.images_per_class)
            fake.write_fake_dataset(spec, folder, image_size=FLAGS.record_size, seed=i)
        folders.append(folder)
    return folders


def run_worker(folders: list) -> dict:
    import tensorflow as tf

    from lite_tf.data.metadataset import pipeline

    baseline = memory.resident_bytes()
    memory.reset_peak_resident()  # the peak below is this measurement's own
    started = time.perf_counter()
    dataset = pipeline.make_episode_dataset(folders, "TRAIN", image_size=FLAGS.image_size, seed=FLAGS.seed,
                                            image_dtype=getattr(tf, FLAGS.image_dtype))
    iterator = iter(dataset)
    for _ in range(FLAGS.warmup):
        next(iterator)
    first = time.perf_counter() - started
    images = support = 0
    cpu_start = sum(os.times()[:2])
    start = time.perf_counter()
    for _ in range(FLAGS.episodes):
        episode = next(iterator)
        n = int(episode["support_images"].shape[0])
        images += n + int(episode["query_images"].shape[0])
        support += n
    seconds = time.perf_counter() - start
    cpu_seconds = sum(os.times()[:2]) - cpu_start
    peak = memory.peak_resident_bytes()
    return {
        "sources": len(folders),
        "image_size": FLAGS.image_size,
        "image_dtype": FLAGS.image_dtype,
        "episodes": FLAGS.episodes,
        "episodes_per_s": FLAGS.episodes / seconds,
        "images_per_s": images / seconds,
        "images_per_cpu_s": images / cpu_seconds,
        "cpu_cores_busy": cpu_seconds / seconds,
        "mean_images_per_episode": images / FLAGS.episodes,
        "mean_support_per_episode": support / FLAGS.episodes,
        "warmup_s": first,
        "pipeline_peak_memory_gb": (peak - baseline) / 2**30,
        "process_peak_memory_gb": peak / 2**30,
    }


def main(argv):
    del argv
    if FLAGS.worker:
        print("RESULT " + json.dumps(run_worker(FLAGS.worker.split(","))), flush=True)
        return
    temporary = None
    root = FLAGS.records_dir
    if root is None:
        temporary = tempfile.TemporaryDirectory(prefix="lite_tf_bench_")
        root = temporary.name
    try:
        started = time.perf_counter()
        folders = make_records(root)
        print(f"records ready in {root} ({time.perf_counter() - started:.1f} s)", flush=True)
        results = []
        for count in FLAGS.sources:
            count = int(count)
            command = [sys.executable, "-m", "tools.benchmark_pipeline", "--worker=" + ",".join(folders[:count])]
            for name in ("image_size", "episodes", "warmup", "image_dtype", "seed"):
                command.append(f"--{name}={getattr(FLAGS, name)}")
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            output = subprocess.run(command, capture_output=True, text=True, env=env)
            lines = [line for line in output.stdout.splitlines() if line.startswith("RESULT ")]
            if output.returncode != 0 or not lines:
                raise RuntimeError(f"benchmark worker for {count} source(s) failed:\n{output.stderr[-3000:]}")
            result = json.loads(lines[-1][len("RESULT "):])
            results.append(result)
            print(f"sources={count} size={result['image_size']} dtype={result['image_dtype']}: "
                  f"{result['episodes_per_s']:.2f} episodes/s, {result['images_per_s']:.0f} images/s "
                  f"({result['mean_images_per_episode']:.0f} images/episode; {result['images_per_cpu_s']:.0f} images "
                  f"per CPU-second, {result['cpu_cores_busy']:.2f} cores busy), pipeline peak memory "
                  f"{result['pipeline_peak_memory_gb']:.2f} GB (process {result['process_peak_memory_gb']:.2f} GB)",
                  flush=True)
        if FLAGS.json_out:
            with open(FLAGS.json_out, "w") as f:
                json.dump(results, f, indent=2)
    finally:
        if temporary is not None:
            temporary.cleanup()


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
