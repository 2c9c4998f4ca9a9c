"""Memory and time of one meta-training step: a learner with LITE versus full back-propagation.

Each (mode, support size) runs in a fresh Python process so peak memory is not shared between
configurations. A worker builds the model and a synthetic episode, records its resident memory (the
pre-step baseline), runs ``--tasks`` training steps (one Adam step per task, graph mode, the first
one also traces), and reports the peak RSS above the baseline (the kernel's high-water mark, reset at
the baseline) and the median time of the steps after the first. The first step's tracing is inside the peak; at
benchmark sizes activations dominate it, at toy sizes tracing does (so the 3x target needs real sizes).

Targets (as in the foundation benchmark): LITE peak memory roughly flat in N; full
back-propagation at N=100 at least 3x LITE's.

Full run (Simple CNAPs + FiLM EfficientNet-B0, 224 px; needs ~20+ GB free and a long time on CPU):
  python tools/benchmark_learners.py --learner=simple_cnaps --image_size=224 --sizes=100,500 \
      --modes=lite,full --h=40 --chunk_size=40 --tasks=5
Quick check at small sizes:
  python tools/benchmark_learners.py --image_size=64 --sizes=20,40 --h=8 --chunk_size=8 --tasks=2 --queries=8
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags

from lite_tf import atomic, memory

FLAGS = flags.FLAGS
def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_string("learner", "simple_cnaps", "Registered learner name.")
    flags.DEFINE_string("backbone", "efficientnet_b0_film", "Registered backbone name (random weights).")
    flags.DEFINE_integer("image_size", 224, "Square image size.")
    flags.DEFINE_list("sizes", ["100", "500"], "Support set sizes N.")
    flags.DEFINE_list("modes", ["lite", "full"], "LITE modes to compare: lite and/or full.")
    flags.DEFINE_integer("h", 40, "LITE subset size.")
    flags.DEFINE_integer("chunk_size", 40, "No-gradient chunk size.")
    flags.DEFINE_integer("way", 5, "Classes per task.")
    flags.DEFINE_integer("queries", 40, "Query images per task (one query batch).")
    flags.DEFINE_integer("tasks", 5, "Training steps (tasks) per configuration; the first also traces.")
    flags.DEFINE_string("output", None, "Optional JSON file for the results.")
    flags.DEFINE_string("worker", None, "Internal: run one configuration 'mode:N' and print JSON.")





def run_worker(mode: str, support_size: int) -> dict:
    """One configuration in this process; returns its measurements."""
    import keras
    import numpy as np
    import tensorflow as tf

    from lite_tf import EpisodicModel, LiteConfig, episode_signature
    from lite_tf.registry import get_backbone, get_learner

    size = FLAGS.image_size
    backbone = get_backbone(FLAGS.backbone)(image_size=size)
    learner = get_learner(FLAGS.learner)(backbone=backbone)
    lite = LiteConfig(mode=mode, h=FLAGS.h, chunk_size=FLAGS.chunk_size)
    model = EpisodicModel(learner, size, lite=lite, seed=0)
    model.compile(keras.optimizers.Adam(1e-3))
    rng = np.random.default_rng(0)
    way = FLAGS.way
    # uint8 images: the mapper converts them chunk by chunk, as a real pipeline would feed them.
    episode = {
        "support_images": tf.constant(rng.integers(0, 256, (support_size, size, size, 3), dtype=np.uint8)),
        "support_labels": tf.constant(np.arange(support_size) % way, tf.int32),
        "query_images": tf.constant(rng.integers(0, 256, (FLAGS.queries, size, size, 3), dtype=np.uint8)),
        "query_labels": tf.constant(np.arange(FLAGS.queries) % way, tf.int32),
        "way": tf.constant(way, tf.int32),
    }
    step = tf.function(model.train_step, input_signature=[episode_signature(size, tf.uint8)])
    baseline = memory.resident_bytes()
    memory.reset_peak_resident()  # the peak below is this measurement's own
    times = []
    for _ in range(FLAGS.tasks):
        start = time.perf_counter()
        logs = step(episode)
        float(logs["loss"])
        times.append(time.perf_counter() - start)
    peak = memory.peak_resident_bytes()
    gib = lambda value: value / 2 ** 30
    return {"mode": mode, "support_size": support_size, "baseline_gib": gib(baseline),
            "peak_above_baseline_gib": gib(peak - baseline),
            "median_step_s": statistics.median(times[1:] or times), "first_step_s": times[0], "tasks": FLAGS.tasks}


def run_in_subprocess(mode: str, support_size: int) -> dict:
    argv = [sys.executable, os.path.abspath(__file__), f"--worker={mode}:{support_size}"]
    argv += [f"--{name}={FLAGS[name].serialize().split('=', 1)[1]}" for name in
             ("learner", "backbone", "image_size", "h", "chunk_size", "way", "queries", "tasks")]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    result = subprocess.run(argv, capture_output=True, text=True, env=env)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"Benchmark worker {mode}:{support_size} failed (exit {result.returncode}):\n"
                           f"{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def check_targets(results: list) -> list:
    """Lines saying whether LITE is flat in N and full >= 3x LITE at the smallest common N."""
    by = {(r["mode"], r["support_size"]): r["peak_above_baseline_gib"] for r in results}
    lines = []
    lite_sizes = sorted(n for m, n in by if m == "lite")
    if len(lite_sizes) >= 2:
        small, large = by[("lite", lite_sizes[0])], by[("lite", lite_sizes[-1])]
        ratio = large / max(small, 1e-9)
        lines.append(f"LITE memory N={lite_sizes[-1]} / N={lite_sizes[0]}: {ratio:.2f}x "
                     f"({'PASS' if ratio <= 1.25 else 'FAIL'}: flat means <= 1.25x)")
    common = sorted(n for m, n in by if m == "full" and ("lite", n) in by)
    if common:
        n = common[0]
        ratio = by[("full", n)] / max(by[("lite", n)], 1e-9)
        lines.append(f"full / LITE memory at N={n}: {ratio:.2f}x ({'PASS' if ratio >= 3 else 'FAIL'}: target >= 3x)")
    return lines


def main(argv):
    del argv
    if FLAGS.worker:
        mode, size = FLAGS.worker.split(":")
        print(json.dumps(run_worker(mode, int(size))), flush=True)
        return
    results = []
    for mode in FLAGS.modes:
        for size in FLAGS.sizes:
            print(f"running {FLAGS.learner} {mode} N={size} at {FLAGS.image_size}px ...", flush=True)
            results.append(run_in_subprocess(mode, int(size)))
            r = results[-1]
            print(f"  peak above baseline {r['peak_above_baseline_gib']:.2f} GiB, "
                  f"median step {r['median_step_s']:.2f} s (first {r['first_step_s']:.1f} s)", flush=True)
    print(f"\n{'mode':<6} {'N':>5} {'peak GiB':>9} {'median s':>9}")
    for r in results:
        print(f"{r['mode']:<6} {r['support_size']:>5} {r['peak_above_baseline_gib']:>9.2f} {r['median_step_s']:>9.2f}")
    for line in check_targets(results):
        print(line)
    if FLAGS.output:
        atomic.write_json(FLAGS.output, results, indent=2)


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
