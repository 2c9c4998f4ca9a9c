"""Evaluates a model on ORBIT CLE-VE and CLU-VE; prints the metrics and writes the results files.

An alias of tools/evaluate.py with the ``orbit`` evaluator's options as flags (and --gin_config for
weights without a training run).

  python -m tools.orbit_evaluate --model_dir=runs/orbit_protonets --split=test

Like tools/evaluate.py (which also evaluates an ORBIT run, with the defaults below), the experiment
is rebuilt from <model_dir>/experiment.gin (plus --gin_bindings) and --checkpoint is loaded from it
('best', 'latest', 'init' or a weights file). Without a training run, --gin_config names the
experiment and --checkpoint a weights file (or init). Tasks come from the gin-configured
``orbit_eval_tasks`` (gin/data/orbit.gin) at the model's image size. <output>.json holds the
per-video, per-user, per-task and per-object metrics with 95% intervals, the personalisation cost
and each target video's per-frame predictions; <output>.md the tables. The work is
lite_tf.experiment.evaluate with the ``orbit`` evaluator (lite_tf/eval/orbit_evaluation.py).
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", None, "A training run's folder (holds experiment.gin).")
    flags.DEFINE_multi_string("gin_config", [], "Gin config file(s), only when there is no --model_dir.")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. \"ORBIT_ROOT = '/data/orbit'\".")
    flags.DEFINE_string("checkpoint", "best", "'best', 'latest', 'init' (untrained, same seed) or a weights file.")
    flags.DEFINE_enum("split", None, ["train", "validation", "test"], "Split to evaluate (default: "
                      "Training.test_split).")
    flags.DEFINE_list("target_types", None, "clean (CLE-VE), clutter (CLU-VE); default: both.")
    flags.DEFINE_integer("tasks_per_user", None, "Tasks per user (default: gin's).")
    flags.DEFINE_string("output", None, "Results path without extension (default: <model_dir or .>/orbit_<split>).")
    flags.DEFINE_integer("batch_size", 256, "Frames per forward pass.")
    flags.DEFINE_bool("count_macs", True, "Report the MACs to personalise (traces the learner 6 times).")
    flags.DEFINE_integer("max_tasks", None, "Stop after this many tasks (smoke tests).")
    flags.DEFINE_bool("strict", False, "Fail on any ORBIT folder problem (stray files, empty videos, a user "
                      "with one object...) instead of skipping and counting it.")


def main(argv) -> int:
    cli.no_arguments(argv)
    from lite_tf.experiment import evaluate

    options = {"batch_size": FLAGS.batch_size, "count_macs": FLAGS.count_macs, "max_tasks": FLAGS.max_tasks,
               "strict": FLAGS.strict, "tasks_per_user": FLAGS.tasks_per_user}
    results = evaluate(FLAGS.model_dir, bindings=FLAGS.gin_bindings, datasets=FLAGS.target_types, split=FLAGS.split,
                       checkpoint=FLAGS.checkpoint, output=FLAGS.output, evaluator="orbit", options=options,
                       configs=FLAGS.gin_config)
    print(results["table"])
    print(f"Results (metrics and per-frame predictions) written to {results['output']}.json and .md")
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
