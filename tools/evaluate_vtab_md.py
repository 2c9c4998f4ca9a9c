"""Evaluate a trained model on VTAB+MD: MD-v2 test sources and the 18 VTAB-v2 tasks, one table.

  lite_tf_evaluate_vtab_md --model_dir=runs/mdv2_simple_cnaps --records=/data/records \
      --tfds_data_dir=/data/tensorflow_datasets

Rebuilds the experiment from <model_dir>/experiment.gin, loads its best weights (--checkpoint),
and writes <output_dir>/tasks/<task>.json per finished task (a rerun skips those), results.json
(the evaluator shape: one row per task, plus the section averages) and the paper-layout results.md
(default output_dir: <model_dir>/vtab_md_<protocol>). An alias of tools/evaluate.py for the
``sources.vtab_md`` data with the ``large_task`` evaluator (lite_tf/eval/large_task.py), whose
locations and options it takes as flags.
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", None, "A training run's folder (holds experiment.gin).")
    flags.DEFINE_string("records", None, "Meta-Dataset records root (one folder per source) for MD-v2.")
    flags.DEFINE_string("md_tfds_data_dir", None, "Or: TFDS data dir holding Google's meta_dataset TFDS build.")
    flags.DEFINE_string("tfds_data_dir", None, "TFDS data dir with the VTAB datasets prepared.")
    flags.DEFINE_list("tasks", None, "Subset of tasks (MD-v2 source names and/or VTAB task names).")
    flags.DEFINE_enum("protocol", "vtab1k", ["vtab1k", "lite"],
                      "vtab1k: train800val200 support, TF bilinear (VTAB-1k); lite: the official LITE code's "
                      "(train[:1000] support, PIL Lanczos, DR 'original', SUN397 from --sun397_dir).")
    flags.DEFINE_string("sun397_dir", None, "--protocol=lite: the SUN397 image folder (lite_tf_prepare_lite_data "
                        "--dataset=sun397 writes one from TFDS).")
    flags.DEFINE_bool("download", False, "Let TFDS download and prepare missing VTAB datasets.")
    flags.DEFINE_string("output_dir", None, "Results folder (default <model_dir>/vtab_md_<protocol>).")
    flags.DEFINE_string("checkpoint", "best", "'best', 'latest', or a weights file.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings applied after the run's experiment.gin.")
    flags.DEFINE_integer("batch_size", 256, "Test images per forward pass (VTAB).")
    flags.DEFINE_integer("md_episodes", 600, "Test episodes per MD-v2 source.")
    flags.DEFINE_integer("seed", 12345, "Seed of the MD-v2 test episodes.")
    flags.DEFINE_bool("count_macs", True, "Report personalisation MACs (traces the learner a few times).")


def main(argv) -> int:
    cli.no_arguments(argv)
    import os

    from lite_tf.experiment import evaluate
    from lite_tf.sources.vtab import VtabMdSource

    source = VtabMdSource(records=FLAGS.records, md_tfds_data_dir=FLAGS.md_tfds_data_dir,
                          tfds_data_dir=FLAGS.tfds_data_dir, protocol=FLAGS.protocol, download=FLAGS.download,
                          sun397_dir=FLAGS.sun397_dir)
    output = os.path.join(FLAGS.output_dir, "results") if FLAGS.output_dir else None
    results = evaluate(FLAGS.model_dir, bindings=FLAGS.gin_bindings, datasets=FLAGS.tasks, split="test",
                       checkpoint=FLAGS.checkpoint, episodes=FLAGS.md_episodes, seed=FLAGS.seed, output=output,
                       evaluator="large_task", source=source,
                       options={"batch_size": FLAGS.batch_size, "count_macs": FLAGS.count_macs})
    print(results["table"])
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
