"""Evaluates a model on ORBIT CLE-VE and CLU-VE; prints the metrics and writes the results JSON.

  python -m tools.orbit_evaluate --model_dir=runs/orbit_protonets --split=test

Like tools/evaluate.py, the experiment is rebuilt from <model_dir>/experiment.gin (plus
--gin_bindings) and --checkpoint is loaded from it ('best', 'latest', 'init' or a weights file).
Without a training run, --gin_config names the experiment and --checkpoint a weights file (or init).
Tasks come from the gin-configured ``orbit_eval_tasks`` (gin/data/orbit.gin) at the model's image
size. The results file holds the per-video and per-user metrics with 95% intervals, the
personalisation cost and each target video's per-frame predictions (lite_tf/eval/orbit_evaluation.py).
"""
from __future__ import annotations

import dataclasses
import os

from absl import flags

import tools  # noqa: F401  (quiet TensorFlow start-up, before TensorFlow is imported)
from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model_dir", None, "A training run's folder (holds experiment.gin).")
    flags.DEFINE_multi_string("gin_config", [], "Gin config file(s), only when there is no --model_dir.")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. \"ORBIT_ROOT = '/data/orbit'\".")
    flags.DEFINE_string("checkpoint", "best", "'best', 'latest', 'init' (untrained, same seed) or a weights file.")
    flags.DEFINE_enum("split", None, ["train", "validation", "test"], "Split to evaluate (default: gin's).")
    flags.DEFINE_list("target_types", None, "clean (CLE-VE), clutter (CLU-VE); default: gin's (both).")
    flags.DEFINE_integer("tasks_per_user", None, "Tasks per user (default: gin's).")
    flags.DEFINE_string("output", None, "Results JSON (default: <model_dir or .>/orbit_<split>_results.json).")
    flags.DEFINE_integer("batch_size", 256, "Frames per forward pass.")
    flags.DEFINE_bool("count_macs", True, "Report the MACs to personalise (traces the learner 6 times).")
    flags.DEFINE_integer("max_tasks", None, "Stop after this many tasks (smoke tests).")
    flags.DEFINE_bool("strict", False, "Fail on any ORBIT folder problem (stray files, empty videos, a user "
                      "with one object...) instead of skipping and counting it.")


def parse_gin(configs, bindings) -> None:
    """The launchers' gin parsing (lite_tf.experiment.parse_gin), for a --gin_config experiment."""
    from lite_tf.experiment import parse_gin as parse_experiment

    parse_experiment(configs, bindings)


def build_and_evaluate(split=None, target_types=None, tasks_per_user=None, checkpoint="best", model_dir=None,
                       batch_size=256, count_macs=True, max_tasks=None, output=None, progress=True,
                       strict=False) -> dict:
    """Builds the parsed experiment's model, loads ``checkpoint``, evaluates, writes and returns the results."""
    from lite_tf import experiment
    from lite_tf.data.orbit import orbit_eval_tasks
    from lite_tf.eval.orbit_evaluation import evaluate_orbit, format_results, write_results

    experiment.check_checkpoint(model_dir, checkpoint)
    model, _ = experiment.build(compile=False)
    weights = experiment.load_weights(model, model_dir, checkpoint)
    overrides = {k: v for k, v in (("split", split), ("target_types", target_types),
                                   ("tasks_per_user", tasks_per_user)) if v is not None}
    tasks = orbit_eval_tasks(frame_size=model.image_size, strict=strict, **overrides)
    results = evaluate_orbit(model, tasks, model.image_size, batch_size=batch_size, count_macs=count_macs,
                             progress=progress, max_tasks=max_tasks)
    results.update(split=tasks.split, frame_size=model.image_size, weights=weights,
                   data=tasks.index.describe(), skipped=dict(tasks.skipped),
                   protocol=dataclasses.asdict(tasks.protocol),
                   learner=type(model.learner).__name__)
    output = output or os.path.join(model_dir or ".", f"orbit_{tasks.split}_results.json")
    write_results(output, results)
    print(format_results(results))
    print(f"Results (metrics and per-frame predictions) written to {output}")
    results["output"] = output
    return results


def main(argv) -> int:
    cli.no_arguments(argv)
    from lite_tf import experiment

    if FLAGS.model_dir and FLAGS.gin_config:
        raise experiment.ExperimentError("Pass --model_dir (its experiment.gin is used) or --gin_config, not both.")
    if FLAGS.model_dir:
        experiment.load_run_config(FLAGS.model_dir, FLAGS.gin_bindings)
    elif FLAGS.gin_config:
        parse_gin(FLAGS.gin_config, FLAGS.gin_bindings)
    else:
        raise experiment.ExperimentError("Pass --model_dir (a training run) or --gin_config (an experiment file).")
    build_and_evaluate(split=FLAGS.split, target_types=FLAGS.target_types, tasks_per_user=FLAGS.tasks_per_user,
                       checkpoint=FLAGS.checkpoint, model_dir=FLAGS.model_dir, batch_size=FLAGS.batch_size,
                       count_macs=FLAGS.count_macs, max_tasks=FLAGS.max_tasks, output=FLAGS.output,
                       strict=FLAGS.strict)
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
