"""ORBIT benchmarks: task-pipeline throughput, and peak memory of a LITE vs full-backprop step.

Full run (real-sized; takes a while on CPU, needs ~10+ GB for full back-propagation at N=200):
  python -m tools.benchmark_orbit --mode=all --frame_size=224 --support_size=200 --query_size=40 \
      --backbone=efficientnet_b0 --h=16 --chunk_size=40 --output=bench_out/orbit.json
Quick check:
  python -m tools.benchmark_orbit --mode=all --frame_size=32 --support_size=24 --query_size=8 \
      --backbone=conv4 --h=4 --chunk_size=8 --num_tasks=4 --steps=2

pipeline: frames per second of ``orbit_train_dataset`` (index, sampling, parallel decode) over
  ``--num_tasks`` tasks after one warm-up task, on ``--data_root`` or a generated ORBIT folder.
memory: one training step of ``--learner`` on an ORBIT-sized task (``--support_size`` context frames,
  ``--query_size`` target frames) in each LITE mode, each in a fresh process; reports the process's
  peak resident memory above its resident memory just before the first step, and the median step
  time after the first (tracing) step.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from lite_tf import atomic, memory

FLAGS = flags.FLAGS
def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_enum("mode", "all", ["pipeline", "memory", "all"], "What to measure.")
    flags.DEFINE_string("data_root", None, "An ORBIT root for the pipeline benchmark (default: generate one).")
    flags.DEFINE_string("work_dir", None, "Where to generate data (default: a temporary folder).")
    flags.DEFINE_integer("frame_size", 224, "Frame size in pixels.")
    flags.DEFINE_integer("num_tasks", 20, "Tasks timed by the pipeline benchmark.")
    flags.DEFINE_integer("frames_per_video", 40, "Frames per generated video.")
    flags.DEFINE_integer("subsample_factor", 1, "Frame sub-sampling of the benchmarked pipeline.")
    flags.DEFINE_string("learner", "protonets", "Registered learner for the memory benchmark.")
    flags.DEFINE_string("backbone", "efficientnet_b0", "Backbone bound as <learner>.backbone.")
    flags.DEFINE_integer("support_size", 200, "Context frames in the memory benchmark's task.")
    flags.DEFINE_integer("query_size", 40, "Target frames in the memory benchmark's task.")
    flags.DEFINE_integer("way", 5, "Objects in the memory benchmark's task.")
    flags.DEFINE_integer("h", 16, "LITE back-propagated subset size.")
    flags.DEFINE_integer("chunk_size", 40, "LITE no-gradient chunk size.")
    flags.DEFINE_integer("steps", 3, "Training steps per memory run (the first traces).")
    flags.DEFINE_list("lite_modes", ["lite", "full"], "LiteConfig modes compared by the memory benchmark.")
    flags.DEFINE_string("output", None, "Write the measurements as JSON here.")
    flags.DEFINE_string("child_mode", None, "Internal: run one memory measurement in this process.")





def benchmark_pipeline() -> dict:
    from lite_tf.data.orbit import orbit_train_dataset
    import dataclasses

    from lite_tf.data.orbit.pipeline import orbit_train_dataset
    from lite_tf.data.orbit.protocol import NEURIPS21
    from lite_tf.data.orbit.synthetic import make_orbit_folder

    root = FLAGS.data_root
    if root is None:
        root = os.path.join(FLAGS.work_dir or tempfile.mkdtemp(prefix="orbit_bench_"), f"orbit{FLAGS.frame_size}")
        if not os.path.isdir(os.path.join(root, "train")):
            start = time.perf_counter()
            make_orbit_folder(root, users={"train": 4}, objects_per_user=5, clean_videos=4, clutter_videos=2,
                              frames_per_video=FLAGS.frames_per_video, frame_size=FLAGS.frame_size)
            print(f"generated {root} in {time.perf_counter() - start:.1f} s")
    protocol = dataclasses.replace(NEURIPS21, frame_subsample_factor=FLAGS.subsample_factor)
    dataset = orbit_train_dataset(root, frame_size=FLAGS.frame_size, protocol=protocol, num_tasks=FLAGS.num_tasks + 1,
                                  cache_dir=os.path.join(root, ".cache"))
    iterator = iter(dataset)
    next(iterator)  # warm-up: index, tracing, thread pools
    frames, start = 0, time.perf_counter()
    for episode in iterator:
        frames += int(episode["support_images"].shape[0] + episode["query_images"].shape[0])
    seconds = time.perf_counter() - start
    result = {"frame_size": FLAGS.frame_size, "tasks": FLAGS.num_tasks, "frames": frames, "seconds": seconds,
              "frames_per_second": frames / seconds, "cpu_count": os.cpu_count()}
    print(f"pipeline: {frames} frames in {FLAGS.num_tasks} tasks, {seconds:.2f} s -> "
          f"{result['frames_per_second']:.0f} frames/s at {FLAGS.frame_size} px")
    return result


def child_step(mode: str) -> dict:
    """One memory measurement in this (fresh) process."""
    import keras
    import numpy as np
    import tensorflow as tf

    from lite_tf.lite import LiteConfig
    from lite_tf.model import EpisodicModel
    from lite_tf.registry import get_learner

    rng = np.random.default_rng(0)
    size, n, m = FLAGS.frame_size, FLAGS.support_size, FLAGS.query_size
    episode = {"support_images": tf.constant(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)),
               "support_labels": tf.constant(np.arange(n) % FLAGS.way, tf.int32),
               "query_images": tf.constant(rng.integers(0, 256, (m, size, size, 3), dtype=np.uint8)),
               "query_labels": tf.constant(np.arange(m) % FLAGS.way, tf.int32),
               "way": tf.constant(FLAGS.way, tf.int32)}
    learner = get_learner(FLAGS.learner)(backbone=FLAGS.backbone)
    model = EpisodicModel(learner, size, lite=LiteConfig(mode=mode, h=FLAGS.h, chunk_size=FLAGS.chunk_size), seed=0)
    model.compile(keras.optimizers.Adam(1e-4))
    step = tf.function(model.train_step)
    baseline = memory.resident_bytes()
    memory.reset_peak_resident()  # the peak below is this measurement's own
    times = []
    for _ in range(FLAGS.steps):
        start = time.perf_counter()
        logs = step(episode)
        float(logs["loss"])
        times.append(time.perf_counter() - start)
    peak = memory.peak_resident_bytes()
    return {"mode": mode, "support_size": n, "query_size": m, "frame_size": size, "h": FLAGS.h,
            "chunk_size": FLAGS.chunk_size, "learner": FLAGS.learner, "backbone": FLAGS.backbone,
            "baseline_rss_gib": baseline / 2 ** 30, "peak_rss_gib": peak / 2 ** 30,
            "peak_above_baseline_gib": (peak - baseline) / 2 ** 30, "first_step_s": times[0],
            "median_step_s": statistics.median(times[1:]) if len(times) > 1 else None}


def benchmark_memory() -> list:
    results = []
    passthrough = [f"--{name}={getattr(FLAGS, name)}" for name in
                   ("frame_size", "learner", "backbone", "support_size", "query_size", "way", "h", "chunk_size",
                    "steps")]
    for mode in FLAGS.lite_modes:
        command = [sys.executable, "-m", "tools.benchmark_orbit", f"--child_mode={mode}", *passthrough]
        process = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
        if process.returncode != 0 or not lines:
            result = {"mode": mode, "error": f"exit {process.returncode}: {process.stderr[-2000:]}"}
            print(f"memory {mode}: FAILED (exit {process.returncode}; killed for memory if -9)")
        else:
            result = json.loads(lines[-1][len("RESULT "):])
            median = result["median_step_s"]
            print(f"memory {mode}: N={result['support_size']} at {result['frame_size']} px, {result['backbone']}: "
                  f"peak {result['peak_rss_gib']:.2f} GiB ({result['peak_above_baseline_gib']:.2f} GiB above "
                  f"baseline), first step {result['first_step_s']:.2f} s"
                  + (f", median step {median:.2f} s" if median is not None else ""))
        results.append(result)
    return results


def main(argv):
    del argv
    if FLAGS.child_mode:
        print("RESULT " + json.dumps(child_step(FLAGS.child_mode)), flush=True)
        return
    report = {}
    if FLAGS.mode in ("pipeline", "all"):
        report["pipeline"] = benchmark_pipeline()
    if FLAGS.mode in ("memory", "all"):
        report["memory"] = benchmark_memory()
    if FLAGS.output:
        atomic.write_json(FLAGS.output, report, indent=2)


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
