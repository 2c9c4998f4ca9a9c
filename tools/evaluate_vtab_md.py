"""Evaluate a trained model on VTAB+MD: MD-v2 test sources and the 18 VTAB-v2 tasks, one table.

  lite_tf_evaluate_vtab_md --model_dir=runs/mdv2_simple_cnaps --records=/data/records \
      --tfds_data_dir=/data/tensorflow_datasets

Rebuilds the experiment from <model_dir>/experiment.gin, loads its best weights (--checkpoint),
and writes <output_dir>/tasks/<task>.json per finished task (a rerun skips those), results.json
and the paper-layout results.md (default output_dir: <model_dir>/vtab_md_<protocol>).
The work is in lite_tf/eval/large_task.py; this file only parses flags.
"""
from __future__ import annotations

import os
import sys

from absl import app, flags


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagValues:
    """Defines this tool's flags (at run time, so tools can share flag names in one process)."""
    fv = dict(flag_values=flag_values)
    flags.DEFINE_string("model_dir", None, "A training run's folder (holds experiment.gin).", **fv)
    flags.DEFINE_string("records", None, "Meta-Dataset records root (one folder per source) for MD-v2.", **fv)
    flags.DEFINE_string("md_tfds_data_dir", None, "Or: TFDS data dir holding Google's meta_dataset TFDS build.", **fv)
    flags.DEFINE_string("tfds_data_dir", None, "TFDS data dir with the VTAB datasets prepared.", **fv)
    flags.DEFINE_list("tasks", None, "Subset of tasks (MD-v2 source names and/or VTAB task names).", **fv)
    flags.DEFINE_enum("protocol", "vtab1k", ["vtab1k", "lite"],
                      "vtab1k: train800val200 support (VTAB-1k); lite: the official LITE code's train[:1000].", **fv)
    flags.DEFINE_bool("download", False, "Let TFDS download and prepare missing VTAB datasets.", **fv)
    flags.DEFINE_string("output_dir", None, "Results folder (default <model_dir>/vtab_md_<protocol>).", **fv)
    flags.DEFINE_string("checkpoint", "best", "'best', 'latest', or a weights file.", **fv)
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings applied after the run's experiment.gin.", **fv)
    flags.DEFINE_integer("batch_size", 256, "Test images per forward pass (VTAB).", **fv)
    flags.DEFINE_integer("md_episodes", 600, "Test episodes per MD-v2 source.", **fv)
    flags.DEFINE_integer("seed", 12345, "Seed of the MD-v2 test episodes.", **fv)
    flags.DEFINE_bool("count_macs", True, "Report personalisation MACs (traces the learner a few times).", **fv)
    return flag_values


def evaluate(model_dir: str, checkpoint: str = "best", bindings=(), output_dir=None, protocol="vtab1k", **kwargs):
    """Builds the run's model, loads its weights and runs lite_tf.eval.large_task.evaluate_vtab_md."""
    import lite_tf.sources.metadataset_tfds  # noqa: F401  (registers sources.metadataset_tfds)
    import lite_tf.data.vtab  # noqa: F401  (registers sources.vtab)
    from lite_tf.eval.large_task import evaluate_vtab_md
    from tools import experiment
    from tools.evaluate import load_weights

    config_path = os.path.join(model_dir, experiment.EXPERIMENT_FILE)
    if not os.path.exists(config_path):
        raise experiment.ExperimentError(f"{model_dir!r} has no {experiment.EXPERIMENT_FILE}: not a training run.")
    experiment.parse_gin([config_path], bindings)
    model, _ = experiment.build()
    weights = load_weights(model, model_dir, checkpoint)
    output_dir = output_dir or os.path.join(model_dir, f"vtab_md_{protocol}")
    return evaluate_vtab_md(model, output_dir, protocol=protocol, fingerprint={"weights": os.path.abspath(weights)},
                            **kwargs)


def main(argv, FLAGS: flags.FlagValues = flags.FLAGS) -> int:
    """The tool's body on parsed flags; returns the exit status."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    if FLAGS.records and FLAGS.md_tfds_data_dir:
        raise app.UsageError("Give --records or --md_tfds_data_dir for MD-v2, not both.")
    from lite_tf.errors import LiteTfError
    from tools.experiment import ExperimentError

    try:
        results = evaluate(FLAGS.model_dir, FLAGS.checkpoint, FLAGS.gin_bindings, FLAGS.output_dir, FLAGS.protocol,
                           tasks=FLAGS.tasks, records=FLAGS.records, tfds_data_dir=FLAGS.tfds_data_dir,
                           md_tfds_data_dir=FLAGS.md_tfds_data_dir, download=FLAGS.download,
                           batch_size=FLAGS.batch_size, md_episodes=FLAGS.md_episodes, seed=FLAGS.seed,
                           count_macs=FLAGS.count_macs)
    except (LiteTfError, ExperimentError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(results["table"])
    return 0


def run():
    """Console-script entry point."""
    define_flags()
    app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
    run()
