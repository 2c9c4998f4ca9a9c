"""Benchmarks: LITE vs full back-propagation, per-learner steps, the Meta-Dataset pipeline, ORBIT, and
exported recognisers on the device (LiteRT).

Every row runs in a fresh process; results go to one JSON document and a Markdown table beside it
(lite_tf/bench/results.py). Flags left unset take the case's defaults (lite_tf/bench/harness.py).

  python -m tools.benchmark --case=lite --output=bench_out/lite.json
  python -m tools.benchmark --case=pipeline --records_dir=/path/to/records --sources=1
  python -m tools.benchmark --case=pipeline --sources=1 --decoded_cache=on,off --reference_dir=/path/to/meta-dataset
  python -m tools.benchmark --case=learner,lite --image_size=32 --backbone=conv4 --support_sizes=8,16 \
      --h=4 --chunk_size=4 --query_size=4 --steps=1
  python -m tools.benchmark --case=export --output=bench_out/export.json
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_list("case", None, "Cases to run: lite, learner, pipeline, orbit, export.")
    flags.DEFINE_list("learner", None, "Registered learner name(s).")
    flags.DEFINE_string("backbone", None, "Registered backbone name (default: the case's, or the learner's own).")
    flags.DEFINE_list("support_sizes", None, "Support set sizes N.")
    flags.DEFINE_integer("query_size", None, "Query images per episode (one batch).")
    flags.DEFINE_integer("way", None, "Classes per episode.")
    flags.DEFINE_list("modes", ["lite", "full"], "LiteConfig modes (any mode LiteConfig accepts).")
    flags.DEFINE_list("h", None, "LITE subset sizes (mode 'lite' only).")
    flags.DEFINE_integer("chunk_size", None, "No-gradient chunk size.")
    flags.DEFINE_integer("image_size", None, "Image size in pixels.")
    flags.DEFINE_list("image_sizes", None, "export: image sizes, one row each per learner (default 84,224).")
    flags.DEFINE_integer("threads", None, "export: LiteRT interpreter threads (default: every core).")
    flags.DEFINE_string("image_dtype", None, "uint8 or float32: the episodes' (or the pipeline's) image dtype.")
    flags.DEFINE_integer("steps", None, "Timed training steps per row, after one warm-up step.")
    flags.DEFINE_bool("run_eagerly", False, "Run steps eagerly instead of as tf.functions.")
    flags.DEFINE_list("dtype_policy", ["float32"], "Keras dtype policies: float32, mixed_float16, mixed_bfloat16.")
    flags.DEFINE_list("optimizer", ["adam"], "Step rows' optimizer(s): adam (lite_tf.optimizers.Adam, fused) or "
                      "keras_adam (keras.optimizers.Adam), one row each.")
    flags.DEFINE_multi_string("gin_file", [], "Gin files parsed in each step child (e.g. gin/benchmarks/tiny.gin).")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings parsed in each step child.")
    flags.DEFINE_float("memory_limit_gb", None, "Skip full back-propagation rows predicted to need more.")
    flags.DEFINE_string("records_dir", None, "pipeline: a records folder (a dataset folder or a root of them); "
                                             "default: generated records.")
    flags.DEFINE_string("orbit_dir", None, "orbit: an ORBIT root; default: a generated one.")
    flags.DEFINE_string("work_dir", None, "Where generated data is kept (default: a temporary folder).")
    flags.DEFINE_string("split", "TRAIN", "pipeline: the split read.")
    flags.DEFINE_list("decoded_cache", ["on"], "pipeline: 'on' (records decoded once when they fit "
                      "make_episode_dataset.decoded_cache_bytes), 'off' (decoded per episode); one row each.")
    flags.DEFINE_string("reference_dir", None, "pipeline: a google-research/meta-dataset checkout; adds rows timing "
                        "Google's reference pipeline on the same records, each in a fresh process.")
    flags.DEFINE_list("reference_decoders", ["standard", "plain"], "pipeline: the reference's decoders: 'standard' "
                      "(its data_config.gin: support augmentation on at amount 0) and/or 'plain' (none).")
    flags.DEFINE_list("sources", ["1", "3"], "pipeline: numbers of sources, one row each.")
    flags.DEFINE_integer("episodes", None, "pipeline / orbit: episodes (tasks) timed, after the warm-up.")
    flags.DEFINE_integer("warmup", 3, "pipeline: episodes drawn before timing.")
    flags.DEFINE_integer("classes", 30, "pipeline: classes per generated source.")
    flags.DEFINE_integer("images_per_class", 40, "pipeline: images per generated class.")
    flags.DEFINE_integer("record_size", 256, "pipeline: side of the generated JPEGs.")
    flags.DEFINE_integer("frames_per_video", 40, "orbit: frames per generated video.")
    flags.DEFINE_integer("subsample_factor", 1, "orbit: frame sub-sampling of the task pipeline.")
    flags.DEFINE_integer("seed", 0, "Episode seed of the pipelines.")
    flags.DEFINE_float("case_timeout_s", None, "Stop a row's process after this long (reported as timeout).")
    flags.DEFINE_float("time_budget_s", None, "Rows not started within this budget are reported as skipped.")
    flags.DEFINE_string("output", None, "Write results here: X.json and the Markdown table X.md.")


def main(argv) -> int:
    cli.no_arguments(argv)
    from lite_tf.bench import harness, results

    settings = harness.Settings(
        case=FLAGS.case or [], learner=FLAGS.learner, backbone=FLAGS.backbone,
        support_sizes=cli.integers(FLAGS.support_sizes, "support_sizes"), query_size=FLAGS.query_size, way=FLAGS.way,
        modes=FLAGS.modes, h=cli.integers(FLAGS.h, "h"), chunk_size=FLAGS.chunk_size, image_size=FLAGS.image_size,
        image_sizes=cli.integers(FLAGS.image_sizes, "image_sizes"), threads=FLAGS.threads,
        image_dtype=FLAGS.image_dtype, steps=FLAGS.steps, run_eagerly=FLAGS.run_eagerly,
        dtype_policy=FLAGS.dtype_policy, optimizer=FLAGS.optimizer, gin_files=FLAGS.gin_file, gin_bindings=FLAGS.gin_bindings,
        memory_limit_gb=FLAGS.memory_limit_gb, records_dir=FLAGS.records_dir, orbit_dir=FLAGS.orbit_dir,
        decoded_cache=FLAGS.decoded_cache, reference_dir=FLAGS.reference_dir,
        reference_decoders=FLAGS.reference_decoders,
        work_dir=FLAGS.work_dir, split=FLAGS.split, sources=cli.integers(FLAGS.sources, "sources"),
        episodes=FLAGS.episodes, warmup=FLAGS.warmup, classes=FLAGS.classes, images_per_class=FLAGS.images_per_class,
        record_size=FLAGS.record_size, frames_per_video=FLAGS.frames_per_video,
        subsample_factor=FLAGS.subsample_factor, seed=FLAGS.seed, case_timeout_s=FLAGS.case_timeout_s,
        time_budget_s=FLAGS.time_budget_s)
    document = harness.run(settings)
    print("\n" + results.markdown(document))
    if FLAGS.output:
        print("wrote " + " and ".join(results.write(FLAGS.output, document)))
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
