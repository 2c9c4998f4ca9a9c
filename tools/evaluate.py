"""Evaluate a trained model on test episodes: mean accuracy with a 95% confidence interval per dataset.

  python -m tools.evaluate --model_dir=runs/quickstart --data_root=demo_data

Rebuilds the experiment from <model_dir>/experiment.gin, loads --checkpoint and scores it with the
evaluator of the run's data source (or --source): --episodes episodes of each dataset's test split
for Meta-Dataset-style sources (lite_tf/eval/episodes.py, written to <model_dir>/eval_<split>),
every CLE-VE / CLU-VE task for an ORBIT run (lite_tf/eval/orbit_evaluation.py,
<model_dir>/orbit_<split>; tools/orbit_evaluate.py has its options), each VTAB task as one large
task (lite_tf/eval/large_task.py, <model_dir>/vtab_md_<protocol>/; tools/evaluate_vtab_md.py has
its options). Prints a Markdown table and writes <output>.json and .md.
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", None, "A training run's folder (holds experiment.gin).")
    flags.DEFINE_string("data_root", None, "Root folder of the data.")
    flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings applied after the run's experiment.gin.")
    flags.DEFINE_list("datasets", None, "Datasets to evaluate separately (default: the run's own, "
                      "Training.eval_datasets, else the datasets it trained on).")
    flags.DEFINE_integer("episodes", None, "Test episodes per dataset (default 600; not for ORBIT runs).")
    flags.DEFINE_string("split", None, "Split to evaluate (default: Training.test_split).")
    flags.DEFINE_string("checkpoint", "best", "'best' (best validation accuracy), 'latest', 'init' (untrained, "
                        "same seed) or a weights file.")
    flags.DEFINE_integer("seed", None, "Seed of the test episodes (default 12345; ORBIT: gin's task seed).")
    flags.DEFINE_string("output", None, "Output path without extension (default <model_dir>/eval_<split>, "
                        "ORBIT: orbit_<split>, VTAB: vtab_md_<protocol>/results).")
    flags.DEFINE_string("source", None, "Evaluate on another registered data source than the run's, e.g. vtab or "
                        "vtab_md (bind its locations with --gin_bindings, e.g. \"sources.vtab_md.records = "
                        "'/data/records'\"; --data_root is its TFDS data dir).")
    flags.DEFINE_string("evaluator", None, "A registered evaluator (episodes, orbit, large_task) instead of the "
                        "one the source names.")


def main(argv) -> int:
    cli.no_arguments(argv)
    from lite_tf.experiment import evaluate

    results = evaluate(FLAGS.model_dir, FLAGS.data_root, FLAGS.gin_bindings, FLAGS.datasets, FLAGS.episodes,
                       FLAGS.split, FLAGS.checkpoint, FLAGS.seed, FLAGS.output, evaluator=FLAGS.evaluator,
                       source=FLAGS.source)
    print(results["table"])
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
