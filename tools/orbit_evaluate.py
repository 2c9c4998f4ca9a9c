"""Evaluates a model on ORBIT CLE-VE and CLU-VE; prints the metrics and writes the results JSON.

  python -m tools.orbit_evaluate --gin_config=gin/experiments/orbit_protonets.gin \
      --gin_bindings="ORBIT_ROOT = '/data/orbit'" --model_dir=runs/orbit_protonets --split=test

The model is the gin-configured ``EpisodicModel`` (learner, image size); its weights come from
``--weights`` (a Keras ``.weights.h5`` file) or the newest ``*.weights.h5`` in ``--model_dir``.
Tasks come from the gin-configured ``orbit_eval_tasks`` (gin/data/orbit.gin). The results file
holds the per-video and per-user metrics with 95% intervals, the personalisation cost and, for every
user and task, each target video's per-frame predictions (lite_tf/eval/orbit_evaluation.py).
"""
import dataclasses
import glob
import logging
import os

from absl import app, flags

FLAGS = flags.FLAGS
def define_flags():
    """Defines this tool's flags (only when it runs, so tools can be imported together)."""
    flags.DEFINE_multi_string("gin_config", [], "Gin config file(s).")
    flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. \"ORBIT_ROOT = '/data/orbit'\".")
    flags.DEFINE_string("model_dir", None, "Training output folder; its newest *.weights.h5 is loaded.")
    flags.DEFINE_string("weights", None, "A .weights.h5 file (overrides --model_dir's).")
    flags.DEFINE_bool("allow_untrained", False, "Evaluate freshly initialised weights when none are given.")
    flags.DEFINE_enum("split", None, ["train", "validation", "test"], "Split to evaluate (default: gin's).")
    flags.DEFINE_list("target_types", None, "clean (CLE-VE), clutter (CLU-VE); default: gin's (both).")
    flags.DEFINE_integer("tasks_per_user", None, "Tasks per user (default: gin's).")
    flags.DEFINE_string("output", None, "Results JSON (default: <model_dir or .>/orbit_<split>_results.json).")
    flags.DEFINE_integer("batch_size", 256, "Frames per forward pass.")
    flags.DEFINE_bool("count_macs", True, "Report the MACs to personalise (traces the learner 6 times).")
    flags.DEFINE_integer("max_tasks", None, "Stop after this many tasks (smoke tests).")
    flags.DEFINE_bool("strict", False, "Fail on any ORBIT folder problem (stray files, empty videos, a user "
                      "with one object...) instead of skipping and counting it.")



def find_weights(model_dir: str) -> str:
    candidates = glob.glob(os.path.join(model_dir, "**", "*.weights.h5"), recursive=True)
    if not candidates:
        raise FileNotFoundError(f"No *.weights.h5 file under --model_dir={model_dir}; pass --weights.")
    return max(candidates, key=os.path.getmtime)


def parse_gin(configs, bindings) -> None:
    """The launchers' gin parsing: every plugin and configurable (Training too) registered."""
    from tools.experiment import parse_gin as parse_experiment

    parse_experiment(configs, bindings)


def build_and_evaluate(split=None, target_types=None, tasks_per_user=None, weights=None, model_dir=None,
                       allow_untrained=False, batch_size=256, count_macs=True, max_tasks=None, output=None,
                       progress=True, strict=False) -> dict:
    """Builds the gin-configured model and tasks, evaluates, writes and returns the results."""
    from lite_tf.data.orbit.pipeline import orbit_eval_tasks
    from lite_tf.eval.orbit_evaluation import evaluate_orbit, format_results, write_results
    from lite_tf.model import EpisodicModel

    model = EpisodicModel()
    if weights is None and model_dir is not None:
        weights = find_weights(model_dir)
    if weights is not None:
        model.load_weights(weights)
    elif not allow_untrained:
        raise ValueError("No weights: pass --weights or --model_dir (or --allow_untrained to evaluate an "
                         "untrained model).")
    else:
        logging.warning("Evaluating an untrained model (no --weights / --model_dir).")
    overrides = {k: v for k, v in (("split", split), ("target_types", target_types),
                                   ("tasks_per_user", tasks_per_user)) if v is not None}
    tasks = orbit_eval_tasks(strict=strict, **overrides)
    if tasks.frame_size != model.image_size:
        raise ValueError(f"orbit_eval_tasks.frame_size ({tasks.frame_size}) differs from the model's image_size "
                         f"({model.image_size}); bind FRAME_SIZE once in gin.")
    results = evaluate_orbit(model, tasks, tasks.frame_size, batch_size=batch_size, count_macs=count_macs,
                             progress=progress, max_tasks=max_tasks)
    results.update(split=tasks.split, frame_size=tasks.frame_size, weights=weights,
                   protocol=dataclasses.asdict(tasks.protocol),
                   data=tasks.index.describe(), skipped=dict(tasks.skipped),
                   learner=type(model.learner).__name__)
    output = output or os.path.join(model_dir or ".", f"orbit_{tasks.split}_results.json")
    write_results(output, results)
    print(format_results(results))
    print(f"Results (metrics and per-frame predictions) written to {output}")
    results["output"] = output
    return results


def main(argv):
    del argv
    parse_gin(FLAGS.gin_config, FLAGS.gin_bindings)
    build_and_evaluate(split=FLAGS.split, target_types=FLAGS.target_types, tasks_per_user=FLAGS.tasks_per_user,
                       weights=FLAGS.weights, model_dir=FLAGS.model_dir, allow_untrained=FLAGS.allow_untrained,
                       batch_size=FLAGS.batch_size, count_macs=FLAGS.count_macs, max_tasks=FLAGS.max_tasks,
                       output=FLAGS.output, strict=FLAGS.strict)


def run():
    """Console-script entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
